package cluster

import (
	"encoding/binary"
	"errors"
	"sync"
)

// Routing table.
//
// Each node owns a versioned table of the users and rooms it holds: an epoch
// (random per process, so a node that rejoins under the same name starts a
// fresh history) and a sequence number bumped by every change. Peers learn it
// over the forwarding link the node already keeps to every peer: every new
// link starts with a snapshot (begin{epoch,seq}, chunks, end), followed by
// delta batches {epoch, from, count, ops}. The link is one ordered TCP
// stream, so deltas cannot be reordered or silently lost: a delta that does
// not fit the peer's queue turns into "send a snapshot next"; a gap seen by
// the receiver closes the link, which forces a reconnect and a new snapshot.
//
// A receiver trusts a peer's table only while the link that delivered its
// snapshot is open. Without one (peer just joined, link broken, reconnecting)
// the peer is "unsure" and NodesForUsers/NodesForRooms return it, so callers
// send rather than drop.

const (
	opPresent = 1 << 0
	opRoom    = 1 << 1

	// maxPendingOps bounds the unflushed local delta; past it the delta is
	// discarded and every peer gets a snapshot instead.
	maxPendingBytes = 4 << 20
	// maxRouteName bounds one user id or room name in a route table: the
	// longest id the API accepts (push's maxIDLen).
	maxRouteName = 256
	// snapChunkBytes is the target size of one snapshot chunk frame.
	snapChunkBytes = 64 << 10
)

func appendOp(b []byte, room, present bool, name string) []byte {
	var op byte
	if present {
		op |= opPresent
	}
	if room {
		op |= opRoom
	}
	b = append(b, op)
	return appendString(b, name)
}

// localRoutes is what this node holds. set is called from event loops.
type localRoutes struct {
	mu          sync.Mutex
	users       map[string]struct{}
	rooms       map[string]struct{}
	seq         uint64
	pending     []byte // encoded ops not yet flushed
	pendingFrom uint64 // seq of the first pending op
	pendingN    uint64
	overflow    bool // pending was discarded: all peers need a snapshot
}

func newLocalRoutes() *localRoutes {
	return &localRoutes{users: map[string]struct{}{}, rooms: map[string]struct{}{}}
}

// set records a change; it is idempotent (repeating a state is not a change).
func (l *localRoutes) set(room bool, name string, present bool) {
	l.mu.Lock()
	m := l.users
	if room {
		m = l.rooms
	}
	if _, have := m[name]; have == present {
		l.mu.Unlock()
		return
	}
	if present {
		m[name] = struct{}{}
	} else {
		delete(m, name)
	}
	l.seq++
	if !l.overflow {
		if l.pendingN == 0 {
			l.pendingFrom = l.seq
		}
		l.pending = appendOp(l.pending, room, present, name)
		l.pendingN++
		if len(l.pending) > maxPendingBytes {
			l.pending, l.pendingN, l.overflow = nil, 0, true
		}
	}
	l.mu.Unlock()
}

// takeDelta appends one delta frame with the pending ops to dst and resets
// the pending batch. overflow reports that deltas were lost and every peer
// must be sent a snapshot.
func (l *localRoutes) takeDelta(dst []byte, epoch uint64) (out []byte, ops int, overflow bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	overflow = l.overflow
	l.overflow = false
	if l.pendingN == 0 {
		return dst, 0, overflow
	}
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0, kindRouteDelta)
	dst = binary.BigEndian.AppendUint64(dst, epoch)
	dst = binary.AppendUvarint(dst, l.pendingFrom)
	dst = binary.AppendUvarint(dst, l.pendingN)
	dst = append(dst, l.pending...)
	binary.BigEndian.PutUint32(dst[start:], uint32(len(dst)-start-4))
	ops = int(l.pendingN)
	l.pending, l.pendingN = l.pending[:0], 0
	if cap(l.pending) > snapChunkBytes*4 {
		l.pending = nil // let a burst's buffer go
	}
	return dst, ops, overflow
}

// snapshot copies the table. It holds the lock for one pass over the maps
// (tens of milliseconds at a million users); it runs once per new link.
func (l *localRoutes) snapshot() (seq uint64, users, rooms []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	users = make([]string, 0, len(l.users))
	for u := range l.users {
		users = append(users, u)
	}
	rooms = make([]string, 0, len(l.rooms))
	for r := range l.rooms {
		rooms = append(rooms, r)
	}
	return l.seq, users, rooms
}

// remoteNode is one peer's table as last received.
type remoteNode struct {
	epoch, seq uint64
	users      map[string]struct{}
	rooms      map[string]struct{}
	connID     uint64 // link that delivered the snapshot; 0 = not synced
	max        int    // Config.MaxPeerRoutes: users plus rooms
}

func newRemoteNode(epoch, seq uint64, max int) *remoteNode {
	return &remoteNode{epoch: epoch, seq: seq, max: max, users: map[string]struct{}{}, rooms: map[string]struct{}{}}
}

var (
	errRouteLimit  = errors.New("cluster: peer route table over MaxPeerRoutes")
	errRouteFrame  = errors.New("cluster: malformed route frame")
	errRouteGap    = errors.New("cluster: route delta gap")
	errRouteNoSnap = errors.New("cluster: route delta without snapshot")
)

// applyOps applies encoded ops, skipping the first skip of them.
func (rn *remoteNode) applyOps(b []byte, skip uint64) (applied int, err error) {
	for len(b) > 0 {
		op := b[0]
		// The length is checked before the name is copied out.
		l, k := binary.Uvarint(b[1:])
		if k <= 0 || l == 0 || l > maxRouteName || uint64(len(b)-1-k) < l || op&^(opPresent|opRoom) != 0 {
			return applied, errRouteFrame
		}
		nameB := b[1+k : 1+k+int(l)]
		b = b[1+k+int(l):]
		if skip > 0 {
			skip--
			continue
		}
		m := rn.users
		if op&opRoom != 0 {
			m = rn.rooms
		}
		if op&opPresent != 0 {
			if _, have := m[string(nameB)]; !have {
				if len(rn.users)+len(rn.rooms) >= rn.max {
					return applied, errRouteLimit
				}
				m[string(nameB)] = struct{}{}
			}
		} else {
			delete(m, string(nameB))
		}
		applied++
	}
	return applied, nil
}

// remoteRoutes holds every peer's table.
type remoteRoutes struct {
	mu    sync.RWMutex
	nodes map[string]*remoteNode
}

func newRemoteRoutes() *remoteRoutes { return &remoteRoutes{nodes: map[string]*remoteNode{}} }

// applyDelta applies one delta frame body received from node on link connID.
func (rr *remoteRoutes) applyDelta(node string, connID uint64, body []byte) (int, error) {
	if len(body) < 8 {
		return 0, errRouteFrame
	}
	epoch := binary.BigEndian.Uint64(body)
	b := body[8:]
	from, n := binary.Uvarint(b)
	if n <= 0 {
		return 0, errRouteFrame
	}
	b = b[n:]
	count, n := binary.Uvarint(b)
	if n <= 0 || count == 0 {
		return 0, errRouteFrame
	}
	b = b[n:]
	rr.mu.Lock()
	defer rr.mu.Unlock()
	rn := rr.nodes[node]
	if rn == nil || rn.connID != connID || rn.epoch != epoch {
		return 0, errRouteNoSnap
	}
	last := from + count - 1
	if last <= rn.seq {
		return 0, nil // already covered by the snapshot
	}
	if from > rn.seq+1 {
		return 0, errRouteGap
	}
	applied, err := rn.applyOps(b, rn.seq+1-from)
	if err != nil {
		return applied, err
	}
	rn.seq = last
	return applied, nil
}

// install replaces node's table with a completed snapshot from link connID.
func (rr *remoteRoutes) install(node string, connID uint64, rn *remoteNode) {
	rn.connID = connID
	rr.mu.Lock()
	rr.nodes[node] = rn
	rr.mu.Unlock()
}

// linkClosed marks node unsure if connID was the link its table came from, and
// returns the size of the table it dropped.
func (rr *remoteRoutes) linkClosed(node string, connID uint64) int {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	if rn := rr.nodes[node]; rn != nil && rn.connID == connID {
		delete(rr.nodes, node)
		return len(rn.users) + len(rn.rooms)
	}
	return 0
}

// drop forgets a node that died or left.
func (rr *remoteRoutes) drop(node string) {
	rr.mu.Lock()
	delete(rr.nodes, node)
	rr.mu.Unlock()
}

// nodesFor returns the peers among alive that hold any key, plus the peers
// whose table is not known (unsure).
func (rr *remoteRoutes) nodesFor(room bool, keys []string, alive []string) []string {
	var out []string
	rr.mu.RLock()
	defer rr.mu.RUnlock()
	for _, node := range alive {
		rn := rr.nodes[node]
		if rn == nil {
			out = append(out, node)
			continue
		}
		m := rn.users
		if room {
			m = rn.rooms
		}
		for _, k := range keys {
			if _, ok := m[k]; ok {
				out = append(out, node)
				break
			}
		}
	}
	return out
}
