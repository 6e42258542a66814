package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"longlink/loop"
	"longlink/push"
)

// hub implements push.Hub: local delivery through loop, remote through cluster.
// Its methods run on HTTP handler goroutines; onMessage runs on the cluster's receive
// goroutine of one peer (so messages from one peer are handled in order).
type hub struct {
	n *Node

	qid     atomic.Uint64
	mu      sync.Mutex
	waiting map[uint64]chan []byte // query id -> answer

	forwardDrops *metrics.Counter
	answering    chan struct{} // bounds concurrent answers to peers' queries
	answers      sync.WaitGroup
	closed       chan struct{}
	closeOnce    sync.Once
}

func newHub(n *Node) *hub {
	return &hub{
		n:            n,
		waiting:      map[uint64]chan []byte{},
		forwardDrops: n.set.NewCounter(`longlink_push_errors_total{reason="forward_overloaded"}`),
		answering:    make(chan struct{}, maxAnswering),
		closed:       make(chan struct{}),
	}
}

func (h *hub) close() { h.closeOnce.Do(func() { close(h.closed) }) }

// maxAnswering bounds the goroutines answering peers' presence and kick queries.
const maxAnswering = 256

// statusError carries an HTTP status to the push API.
type statusError struct {
	status int
	msg    string
}

func (e *statusError) Error() string   { return e.msg }
func (e *statusError) HTTPStatus() int { return e.status }

func hubErr(err error) error {
	switch {
	case errors.Is(err, loop.ErrOverloaded):
		return &statusError{503, "gateway overloaded: delivery queue full, retry later"}
	case errors.Is(err, loop.ErrStopped):
		return &statusError{503, "node is shutting down; retry on another node"}
	case errors.Is(err, context.DeadlineExceeded):
		return &statusError{504, "delivery did not finish in time"}
	}
	return err
}

// presence is loop's OnPresence: it keeps the cluster's routing table current.
func (h *hub) presence(kind loop.PresenceKind, name string, present bool) {
	c := h.n.Cluster()
	if c == nil {
		return // Start announces everything once the cluster exists
	}
	if kind == loop.PresenceUser {
		c.SetLocalUser(name, present)
	} else {
		c.SetLocalRoom(name, present)
	}
}

func toTargets(t push.Target) loop.Targets {
	return loop.Targets{All: t.All, Users: t.Users, Connections: t.Connections, Rooms: t.Rooms}
}

// Deliver queues m on the local loops, forwards it to the peers that may hold a
// recipient, then waits for the local writes. Queuing locally first means a push
// refused here (overloaded, stopping) is refused before any peer has it, so the
// caller's retry cannot duplicate it; forwarding before waiting lets peers work while
// this node writes.
func (h *hub) Deliver(m *push.Message) (push.Result, error) {
	var res push.Result
	if h.n.draining.Load() {
		return res, &statusError{503, "node is shutting down; retry on another node"}
	}
	frame := loop.PrepareFrame(m.Binary, m.Data)
	pending, err := h.n.loop.Submit(frame, toTargets(m.To), m.Accepted)
	if err != nil {
		return res, hubErr(err)
	}
	if peers := h.peersFor(m.To); len(peers) > 0 {
		payload := m.AppendBinary([]byte{wirePush})
		for _, p := range peers {
			if err := h.n.Cluster().Send(p, payload); err == nil {
				res.Forwarded++
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n, err := pending.Wait(ctx)
	res.Delivered = n
	if err != nil {
		return res, hubErr(err)
	}
	if len(m.To.Users) > 0 {
		res.OfflineUsers = h.offlineByTable(pending.Offline())
	}
	return res, nil
}

// peersFor returns the peers a message must be forwarded to: all for broadcasts, the
// nodes named by connection ids, and the nodes the routing table says (or cannot rule
// out) hold the users and rooms.
func (h *hub) peersFor(t push.Target) []string {
	c := h.n.Cluster()
	if c == nil {
		return nil
	}
	if t.All {
		return c.AliveNodes()
	}
	var peers []string
	if len(t.Users) > 0 {
		peers = append(peers, c.NodesForUsers(t.Users)...)
	}
	if len(t.Rooms) > 0 {
		peers = append(peers, c.NodesForRooms(t.Rooms)...)
	}
	if len(t.Connections) > 0 {
		alive := c.AliveNodes()
		for _, id := range t.Connections {
			if node := nodeOfConn(id); node != "" && node != h.n.cfg.NodeName && slices.Contains(alive, node) {
				peers = append(peers, node)
			}
		}
	}
	slices.Sort(peers)
	return slices.Compact(peers)
}

// nodeOfConn returns the node prefix of a connection id ("<node>.<incarnation>-<seq>").
func nodeOfConn(id string) string {
	i := strings.LastIndexByte(id, '.')
	if i <= 0 {
		return ""
	}
	return id[:i]
}

// offlineByTable narrows the users with no connection here (as Submit found them) to
// those that, per the routing table, have none anywhere else. A user the table cannot
// rule out counts as online.
func (h *hub) offlineByTable(local []string) []string {
	if len(local) == 0 || h.n.Cluster() == nil {
		return local
	}
	var out []string
	for _, u := range local {
		if len(h.n.Cluster().NodesForUsers([]string{u})) == 0 {
			out = append(out, u)
		}
	}
	return out
}

// onMessage handles a payload from a peer.
func (h *hub) onMessage(from string, payload []byte) {
	if len(payload) == 0 {
		return
	}
	switch payload[0] {
	case wirePush:
		var m push.Message
		if err := m.UnmarshalBinary(payload[1:]); err != nil {
			h.n.log.Warn("dropping malformed push from peer", "peer", from, "err", err)
			return
		}
		h.deliverForwarded(&m)
	case wireQuery:
		id, op, body, err := parseQuery(payload[1:])
		if err != nil {
			h.n.log.Warn("dropping malformed query from peer", "peer", from, "err", err)
			return
		}
		// Queries may wait on this node's loops; answer off the receive goroutine so
		// pushes from the same peer keep flowing.
		body = slices.Clone(body)
		select {
		case h.answering <- struct{}{}:
			h.answers.Add(1)
			go func() {
				defer func() { <-h.answering; h.answers.Done() }()
				h.answer(from, id, op, body)
			}()
		default:
			// More queries in flight than a node should ever see: drop this one; the
			// asker answers its caller with 503 after its timeout.
			// The cluster owns this counter now (created in cluster.New).
			h.n.set.GetOrCreateCounter(`longlink_cluster_query_drops_total`).Inc()
		}
	case wireResponse:
		id, body, err := parseResponse(payload[1:])
		if err != nil {
			return
		}
		h.mu.Lock()
		ch := h.waiting[id]
		h.mu.Unlock()
		if ch != nil {
			select {
			case ch <- slices.Clone(body):
			default:
			}
		}
	}
}

// deliverForwarded queues a peer's push on the local loops without waiting for the
// writes, so the receive goroutine keeps the peer's order without stalling on them.
// A full inbox is retried briefly, then the message is dropped and counted.
func (h *hub) deliverForwarded(m *push.Message) {
	frame := loop.PrepareFrame(m.Binary, m.Data)
	deadline := time.Now().Add(time.Second)
	for {
		err := h.n.loop.Enqueue(frame, toTargets(m.To), m.Accepted)
		if !errors.Is(err, loop.ErrOverloaded) {
			return
		}
		if time.Now().After(deadline) {
			h.forwardDrops.Inc()
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// ask sends a query to peers and collects their answers until all replied or the
// query timeout. It returns answers by peer and the peers that did not answer.
func (h *hub) ask(peers []string, op byte, body []byte) (map[string][]byte, []string) {
	answers := map[string][]byte{}
	if len(peers) == 0 {
		return answers, nil
	}
	type reply struct {
		peer string
		body []byte
	}
	replies := make(chan reply, len(peers))
	var ids []uint64
	sent := 0
	for _, p := range peers {
		id := h.qid.Add(1)
		ch := make(chan []byte, 1)
		h.mu.Lock()
		h.waiting[id] = ch
		h.mu.Unlock()
		if err := h.n.Cluster().Send(p, appendQuery(nil, id, op, body)); err != nil {
			// Never sent, so never answered: do not wait for it.
			h.mu.Lock()
			delete(h.waiting, id)
			h.mu.Unlock()
			continue
		}
		ids = append(ids, id)
		sent++
		go func(p string) {
			select {
			case b := <-ch:
				replies <- reply{p, b}
			case <-time.After(h.n.cfg.QueryTimeout):
			case <-h.closed:
			}
		}(p)
	}
	timeout := time.After(h.n.cfg.QueryTimeout)
collect:
	for len(answers) < sent {
		select {
		case r := <-replies:
			answers[r.peer] = r.body
		case <-timeout:
			break collect
		case <-h.closed:
			break collect
		}
	}
	h.mu.Lock()
	for _, id := range ids {
		delete(h.waiting, id)
	}
	h.mu.Unlock()
	var missing []string
	for _, p := range peers {
		if _, ok := answers[p]; !ok {
			missing = append(missing, p)
		}
	}
	return answers, missing
}

// answer runs a peer's query locally and sends the JSON answer back.
func (h *hub) answer(from string, id uint64, op byte, body []byte) {
	var out any
	ctx, cancel := context.WithTimeout(context.Background(), h.n.cfg.QueryTimeout)
	defer cancel()
	switch op {
	case opUser:
		out = h.localUser(string(body))
	case opRoom:
		ri := h.n.loop.RoomMembers(string(body))
		out = roomAnswer{Members: ri.Users, Connections: ri.Connections}
	case opStats:
		out = h.localStats()
	case opKickConn, opKickUser:
		var kb kickBody
		if json.Unmarshal(body, &kb) != nil {
			return
		}
		var n int
		if op == opKickConn {
			n, _ = h.n.loop.KickConnection(ctx, kb.ID, kb.Reason)
		} else {
			n, _ = h.n.loop.KickUser(ctx, kb.ID, kb.Reason)
		}
		out = n
	case opOnline:
		var users []string
		if json.Unmarshal(body, &users) != nil {
			return
		}
		out = h.n.loop.Offline(users)
	case opJoin, opLeave:
		var rb roomBody
		if json.Unmarshal(body, &rb) != nil {
			return
		}
		var n int
		if op == opJoin {
			n, _, _ = h.n.loop.JoinRoom(ctx, rb.Room, rb.Users)
		} else {
			n, _, _ = h.n.loop.LeaveRoom(ctx, rb.Room, rb.Users)
		}
		out = n
	default:
		return
	}
	b, err := json.Marshal(out)
	if err != nil {
		panic("BUG: node: cannot encode query answer: " + err.Error())
	}
	h.n.Cluster().Send(from, appendResponse(nil, id, b))
}

func (h *hub) alivePeers() []string {
	if h.n.Cluster() == nil {
		return nil
	}
	return h.n.Cluster().AliveNodes()
}

func (h *hub) localUser(id string) []push.ConnInfo {
	infos := h.n.loop.UserConnections(id)
	out := make([]push.ConnInfo, 0, len(infos))
	for _, ci := range infos {
		out = append(out, push.ConnInfo{ID: ci.ID, User: ci.User, Node: h.n.cfg.NodeName, Remote: ci.Remote,
			Device: ci.Device, Since: time.Unix(0, ci.Since).UTC(), Rooms: ci.Rooms})
	}
	return out
}

// User lists the user's connections on every node that may hold them.
func (h *hub) User(id string) ([]push.ConnInfo, error) {
	out := h.localUser(id)
	var peers []string
	if h.n.Cluster() != nil {
		peers = h.n.Cluster().NodesForUsers([]string{id})
	}
	answers, missing := h.ask(peers, opUser, []byte(id))
	for _, b := range answers {
		var cs []push.ConnInfo
		if json.Unmarshal(b, &cs) == nil {
			out = append(out, cs...)
		}
	}
	if len(out) == 0 && len(missing) > 0 {
		return nil, &statusError{503, fmt.Sprintf("nodes %s did not answer; the user may be connected there", strings.Join(missing, ", "))}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Since.Before(out[j].Since) })
	return out, nil
}

// Room counts a room across nodes: members are distinct users.
func (h *hub) Room(room string) (push.RoomInfo, error) {
	local := h.n.loop.RoomMembers(room)
	ri := push.RoomInfo{Room: room, Nodes: map[string]int{}}
	users := map[string]struct{}{}
	add := func(node string, a roomAnswer) {
		if a.Connections == 0 {
			return
		}
		ri.Nodes[node] = a.Connections
		ri.Connections += a.Connections
		for _, u := range a.Members {
			users[u] = struct{}{}
		}
	}
	add(h.n.cfg.NodeName, roomAnswer{Members: local.Users, Connections: local.Connections})
	var peers []string
	if h.n.Cluster() != nil {
		peers = h.n.Cluster().NodesForRooms([]string{room})
	}
	answers, _ := h.ask(peers, opRoom, []byte(room))
	for p, b := range answers {
		var a roomAnswer
		if json.Unmarshal(b, &a) == nil {
			add(p, a)
		}
	}
	ri.Members = len(users)
	return ri, nil
}

type nodeStats struct {
	Node        string `json:"node"`
	Connections int    `json:"connections"`
	Users       int    `json:"users"`
	Rooms       int    `json:"rooms"`
	Draining    bool   `json:"draining"`
}

func (h *hub) localStats() nodeStats {
	return nodeStats{Node: h.n.cfg.NodeName, Connections: h.n.loop.Connections(), Users: h.n.loop.Users(),
		Rooms: h.n.loop.Rooms(), Draining: h.n.draining.Load()}
}

// Stats sums every node's counts. Users connected to several nodes count once per
// node in the total (the per-node figures are exact).
func (h *hub) Stats() (any, error) {
	self := h.localStats()
	nodes := []nodeStats{self}
	answers, missing := h.ask(h.alivePeers(), opStats, nil)
	for _, b := range answers {
		var s nodeStats
		if json.Unmarshal(b, &s) == nil {
			nodes = append(nodes, s)
		}
	}
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].Node < nodes[j].Node })
	total := nodeStats{Node: "total"}
	for _, s := range nodes {
		total.Connections += s.Connections
		total.Users += s.Users
		total.Rooms += s.Rooms
	}
	return map[string]any{
		"node":        self.Node,
		"connections": total.Connections,
		"users":       total.Users,
		"rooms":       total.Rooms,
		"nodes":       nodes,
		"unreachable": missing,
	}, nil
}

func (h *hub) kick(op byte, id, reason string, peers []string) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), h.n.cfg.QueryTimeout)
	defer cancel()
	var n int
	var err error
	if op == opKickConn {
		n, err = h.n.loop.KickConnection(ctx, id, reason)
	} else {
		n, err = h.n.loop.KickUser(ctx, id, reason)
	}
	if err != nil {
		return n, hubErr(err)
	}
	body, _ := json.Marshal(kickBody{ID: id, Reason: reason})
	answers, missing := h.ask(peers, op, body)
	for _, b := range answers {
		var k int
		if json.Unmarshal(b, &k) == nil {
			n += k
		}
	}
	if n == 0 && len(missing) > 0 {
		return 0, &statusError{503, fmt.Sprintf("nodes %s did not answer", strings.Join(missing, ", "))}
	}
	return n, nil
}

func (h *hub) KickConnection(id, reason string) (int, error) {
	var peers []string
	if node := nodeOfConn(id); node != "" && node != h.n.cfg.NodeName && slices.Contains(h.alivePeers(), node) {
		peers = []string{node}
	}
	return h.kick(opKickConn, id, reason, peers)
}

func (h *hub) KickUser(id, reason string) (int, error) {
	var peers []string
	if h.n.Cluster() != nil {
		peers = h.n.Cluster().NodesForUsers([]string{id})
	}
	return h.kick(opKickUser, id, reason, peers)
}

// Online asks the nodes that may hold users which of them they do not hold.
func (h *hub) Online(users []string) ([]string, error) {
	offline := h.n.loop.Offline(users)
	if len(offline) == 0 || h.n.Cluster() == nil {
		return offline, nil
	}
	peers := h.n.Cluster().NodesForUsers(offline)
	body, _ := json.Marshal(offline)
	answers, missing := h.ask(peers, opOnline, body)
	if len(missing) > 0 {
		return nil, &statusError{503, fmt.Sprintf("nodes %s did not answer", strings.Join(missing, ", "))}
	}
	still := offline
	for _, b := range answers {
		var off []string
		if json.Unmarshal(b, &off) != nil {
			continue
		}
		still = slices.DeleteFunc(still, func(u string) bool { return !slices.Contains(off, u) })
	}
	return still, nil
}

func (h *hub) room(op byte, room string, users []string) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), h.n.cfg.QueryTimeout)
	defer cancel()
	var n int
	var err error
	if op == opJoin {
		n, _, err = h.n.loop.JoinRoom(ctx, room, users)
	} else {
		n, _, err = h.n.loop.LeaveRoom(ctx, room, users)
	}
	if err != nil {
		return n, hubErr(err)
	}
	var peers []string
	if h.n.Cluster() != nil {
		peers = h.n.Cluster().NodesForUsers(users)
	}
	body, _ := json.Marshal(roomBody{Room: room, Users: users})
	answers, missing := h.ask(peers, op, body)
	for _, b := range answers {
		var k int
		if json.Unmarshal(b, &k) == nil {
			n += k
		}
	}
	if len(missing) > 0 {
		return n, &statusError{503, fmt.Sprintf("nodes %s did not answer; the room change may be partial", strings.Join(missing, ", "))}
	}
	return n, nil
}

func (h *hub) JoinRoom(room string, users []string) (int, error) { return h.room(opJoin, room, users) }
func (h *hub) LeaveRoom(room string, users []string) (int, error) {
	return h.room(opLeave, room, users)
}
