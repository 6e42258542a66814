package hub

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"longlink/loop"
	"longlink/push"
	"longlink/stream"
)

// Streams: ordered, stored, replicated delivery (docs/delivery.md).
//
// Every message for users, rooms or everyone is appended to one stream per target
// (user:<id>, room:<name>, all). A stream's owner is the first node of its list on
// the ring (stream.Ring over the alive members); the next Replicas-1 nodes hold
// copies. The node that accepted the push (the origin) sends each owner the keys it
// owns (opAppend). The owner, one batch at a time (the committer):
//
//  1. stamps each key with the stream's next offset (a message id already in the
//     stream gets its old position back: retries are idempotent);
//  2. sends the entries to the replicas (opReplicate) and waits for their answers;
//     a replica that holds a longer history refuses, the owner rolls back, syncs
//     (opSync) and the origin retries;
//  3. commits (readers see the entries) and fans the stamped copy out: to its own
//     loops and, as wireStamped data, to the peers its routing table says hold a
//     subscriber. One sequencer per stream and FIFO links keep each stream in order
//     on every node;
//  4. answers: the positions and how many nodes store each key.
//
// A connection is made known to the owners of its streams before its 101
// (OnUpgrade): this node flushes its routing delta and asks each owner (opSubscribe),
// whose answer also carries the stream heads and, for a v2 client resuming, what it
// missed. A push accepted after the 101 therefore reaches the connection whichever
// node accepted it.
//
// Membership changes: every node copies the histories it holds to their new holders
// (handoffLoop, opHandoff); an owner that may have just taken a stream over waits
// Settle, then syncs it from the other holders (opSync) before stamping.
//
// Who owns what: rs (the ring of the cluster's current view) is replaced under ringMu
// whenever ringNow sees the alive set change; the committer owns the batch it is
// processing, under seqMu; seen is guarded by seenMu; the store has its own lock.

// defaultSettle is how long after a membership change a node waits before it extends
// a stream it may have just become the owner of (one it holds nothing of, or a stale
// one): long enough for the other nodes' views to converge (a few gossip rounds), so
// the previous owner has stopped stamping and what it stamped is there to be synced.
const defaultSettle = 500 * time.Millisecond

// Replicas default.
const defaultReplicas = 2

// appendTimeout bounds one append or subscribe request to a peer; the origin retries
// (the owner may have moved) until StoreTimeout. It exceeds what an owner may spend
// before answering (a sync, syncTimeout, plus replication, replicaTimeout), so a slow
// owner is not taken for a dead one.
const (
	appendTimeout  = 2 * time.Second
	syncTimeout    = 500 * time.Millisecond
	replicaTimeout = time.Second
)

// maxReplayBytes bounds the history replayed to one connection (one subscribe answer,
// under the cluster's frame limit): the streams past it are reported not recovered.
const maxReplayBytes = 4 << 20

// ownerRing is the ring the origin of a push or a subscribe uses: rs.ring, except that
// a node that is leaving leaves itself out (its committer refuses everything), and
// nil once it has left (it knows no peer to store on).
func (s *streams) ownerRing(rs *ringState) *stream.Ring {
	if !s.h.draining() {
		return rs.ring
	}
	if len(rs.alive) == 0 {
		return nil
	}
	rs.noSelfOnce.Do(func() { rs.noSelf = stream.NewRing(rs.alive) })
	return rs.noSelf
}

type ringState struct {
	noSelfOnce sync.Once
	noSelf     *stream.Ring
	since      time.Time // when this view replaced the previous one
	alive      []string  // the peers it was built from
	ring       *stream.Ring
	changed    chan struct{} // closed when this ring is replaced
}

// streams is the hub's stream machinery.
type streams struct {
	h        *Hub
	store    *stream.Store
	replicas int
	timeout  time.Duration // StoreTimeout
	settle   time.Duration

	ringMu sync.Mutex
	rs     *ringState

	seqMu sync.Mutex // held by whoever processes a batch: stamps and fan-out in order
	// syncing (under seqMu) holds the streams a subscribe is syncing with their other
	// holders, without seqMu for the round trips (syncIfUnknown); the committer
	// retries appends to them, and other subscribes wait on the channel.
	syncing   map[string]chan struct{}
	qMu       sync.Mutex
	queue     []*appendJob
	wake      chan struct{}
	stop      chan struct{}
	wg        sync.WaitGroup // committer, sweeper, handoffLoop
	handoffCh chan struct{}
	stopOnce  sync.Once

	seenMu sync.Mutex
	seen   map[string]stream.Position // last position fanned out to this node's loops
}

// appendJob is one origin's request to this node as owner.
type appendJob struct {
	m      *push.Message
	keys   []skey
	ttl    int64  // absolute expiry, unix nanoseconds
	origin string // the node that accepted the push (receipts tell it when it waits)

	// results, set by the committer
	status  byte
	pos     []stream.Position
	kcopies []int  // nodes storing each key
	fresh   []bool // the key was stamped by this job in this batch (not a dup)
	copies  int
	pending Pending
	track   *loop.Track // the local copy's counts, for a message with a receipt
	forward int
	offline []string
	done    chan struct{}
	// The results' room for a job of one key, the common case: no slices to make.
	one struct {
		pos     [1]stream.Position
		kcopies [1]int
		fresh   [1]bool
	}
}

func newStreams(h *Hub, cfg Config) *streams {
	s := &streams{
		h:         h,
		store:     stream.New(cfg.History),
		replicas:  cfg.Replicas,
		timeout:   cfg.StoreTimeout,
		settle:    cfg.Settle,
		wake:      make(chan struct{}, 1),
		handoffCh: make(chan struct{}, 1),
		stop:      make(chan struct{}),
		seen:      map[string]stream.Position{},
		syncing:   map[string]chan struct{}{},
	}
	s.rs = &ringState{ring: stream.NewRing([]string{h.cfg.NodeName}), changed: make(chan struct{})}
	h.st = s // before the goroutines: they reach the streams through the hub
	s.wg.Add(4)
	go func() { defer s.wg.Done(); h.rc.ackLoop(s.stop) }()
	go s.committer()
	go s.sweeper()
	go s.handoffLoop()
	return s
}

func (s *streams) close() {
	s.stopOnce.Do(func() { close(s.stop) })
	s.wg.Wait()
}

// ringNow returns the ring of the cluster's current view: rebuilt here when the
// alive set changed, so it is never behind what the cluster reports (OnMembers can
// lag a moment behind a join).
func (s *streams) ringNow() *ringState {
	alive := s.h.remote.AliveNodes()
	s.ringMu.Lock()
	rs := s.rs
	same := slices.Equal(rs.alive, alive)
	s.ringMu.Unlock()
	if !same {
		s.onMembers(alive)
		s.ringMu.Lock()
		rs = s.rs
		s.ringMu.Unlock()
	}
	return rs
}

// OnMembers rebuilds the ring from the alive members. Streams this node now owns but
// did not before are marked stale: before extending one, the node asks the other
// holders for what they have.
func (s *streams) onMembers(alive []string) {
	alive = slices.Clone(alive)
	ring := stream.NewRing(append(slices.Clone(alive), s.h.cfg.NodeName))
	s.ringMu.Lock()
	old := s.rs
	if slices.Equal(old.alive, alive) {
		s.ringMu.Unlock()
		return
	}
	// The streams this node gains are marked stale before anyone can see the new
	// ring, so no stamp under it skips their sync. Lock order: ringMu, then the store.
	self := s.h.cfg.NodeName
	var gained []string
	for _, name := range s.store.Names() {
		if ring.Owner(name) == self && old.ring.Owner(name) != self {
			gained = append(gained, name)
		}
	}
	s.store.MarkStale(gained)
	s.rs = &ringState{since: time.Now(), alive: alive, ring: ring, changed: make(chan struct{})}
	s.ringMu.Unlock()
	close(old.changed)
	s.h.m.ringChanges.Inc()
	select {
	case s.handoffCh <- struct{}{}:
	default:
	}
}

// handoffLoop copies, after every membership change, each history this node holds
// to the nodes that now hold that stream with it: a node that joined or came back,
// or a replica that replaced one that left, gets what was stored before it arrived,
// so the next failure does not lose it. A holder keeps the longer history (onHandoff).
func (s *streams) handoffLoop() {
	defer s.wg.Done()
	for {
		select {
		case <-s.stop:
			return
		case <-s.handoffCh:
		}
		s.handoffRound()
	}
}

// handoffChunk bounds one handoff request (the cluster's frame limit is larger).
const handoffChunk = 1 << 20

func (s *streams) handoffRound() {
	ring := s.ringNow().ring
	if len(ring.Members()) < 2 {
		return
	}
	self := s.h.cfg.NodeName
	per := map[string][]string{}
	for _, name := range s.store.Names() {
		for _, n := range ring.Holders(name, s.replicas) {
			if n != self {
				per[n] = append(per[n], name)
			}
		}
	}
	for node, names := range per {
		b := wbuf{opHandoff}
		n := 0
		flush := func() {
			if n == 0 {
				return
			}
			body := wbuf{opHandoff}.uv(uint64(n))
			body = append(body, b[1:]...)
			ctx, cancel := context.WithTimeout(context.Background(), replicaTimeout)
			if _, err := s.h.remote.Request(ctx, node, body); err != nil {
				s.h.m.handoffFailures.Inc()
			} else {
				s.h.m.handoffStreams.Add(n)
			}
			cancel()
			b, n = wbuf{opHandoff}, 0
		}
		for _, name := range names {
			pos, _, entries, ok := s.store.Export(name)
			if !ok {
				continue
			}
			b = b.str(name).pos(pos).uv(uint64(len(entries)))
			for i := range entries {
				b = b.entry(&entries[i])
			}
			acked, _ := s.store.Acked(name)
			b = b.uv(acked.Offset)
			if n++; len(b) > handoffChunk {
				flush()
			}
			select {
			case <-s.stop:
				return
			default:
			}
		}
		flush()
	}
}

// onHandoff takes the histories a peer holds of streams this node holds too, where
// they are longer than what is here.
func (s *streams) onHandoff(arg []byte) []byte {
	r := rbuf{b: arg}
	for n := r.count(3); n > 0 && r.err == nil; n-- {
		name := r.str()
		pos := r.pos()
		var entries []stream.Entry
		for m := r.count(4); m > 0; m-- {
			entries = append(entries, r.entry())
		}
		acked := r.uv()
		if r.err != nil {
			break
		}
		s.seqMu.Lock() // not under the committer's feet: it may be stamping this stream
		local, _, _, ok := s.store.Export(name)
		adopt := !ok || longer(pos, local)
		if adopt {
			s.store.Adopt(name, pos, entries)
			s.h.m.historyAdopted.Inc()
			if s.ringNow().ring.Owner(name) == s.h.cfg.NodeName {
				// Another holder may have more (the previous owner): ask before
				// extending it.
				s.store.SetStale(name)
			}
		}
		s.seqMu.Unlock()
		// Acks are cumulative: the furthest any holder knows counts.
		s.store.Ack(name, stream.Position{Epoch: pos.Epoch, Offset: acked})
	}
	return []byte{}
}

// stallAfter is how long the sweeper may not run before the node assumes it was
// frozen (SIGSTOP, a stalled VM) long enough for the cluster to declare it dead and
// stop sending it messages: about the failure-detection time.
const stallAfter = 1500 * time.Millisecond

func (s *streams) sweeper() {
	defer s.wg.Done()
	const tick = 250 * time.Millisecond
	t := time.NewTicker(tick)
	defer t.Stop()
	last := time.Now()
	n := 0
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			// Monotonic time: a process that was stopped sees the whole gap.
			now := time.Now()
			if gap := now.Sub(last); gap > stallAfter && len(s.ringNow().ring.Members()) > 1 {
				s.h.m.stalls.Inc()
				s.h.log.Warn("this node was frozen; v2 clients reconnect to recover what it missed", "for", gap.Round(time.Millisecond))
				s.h.local.ResumeV2(loop.KeyAll, "", "resume: this node was unreachable")
			}
			last = now
			if n++; n%4 == 0 {
				if e := s.store.Sweep(); e > 0 {
					s.h.m.historyExpired.Add(e)
				}
				s.h.rc.sweep(now.UnixNano())
			}
			s.h.rc.expireDropped()
		}
	}
}

// ---- origin: Deliver ----

// deliverStreams appends m to its streams on their owners and returns once every key
// is stored (or the store timeout passes).
func (s *streams) deliver(m *push.Message) (res push.Result, err error) {
	keys := keysOf(m.To)
	deadline := time.Now().Add(s.timeout)
	// m.Data aliases the API's request buffer, reused once Deliver returns; the
	// history and the v2 frames (built later, on the loops) keep this one copy.
	m.Data = slices.Clone(m.Data)
	ttl := s.store.Config().TTL
	if m.TTL > 0 {
		ttl = m.TTL
	}
	expire := m.Accepted + int64(ttl)
	if m.Wait > 0 {
		// Registered before anything is sent, so no target's news can come first.
		w := s.h.rc.watch(m)
		defer s.h.rc.unwatch(m.ID, w)
		defer func() {
			if res.Targets != nil || err != nil {
				return
			}
			res.Targets, res.Complete = w.result(time.Unix(0, m.Accepted+int64(m.Wait)))
		}()
	}
	if len(m.To.Connections) > 0 {
		// Connection ids have no stream: the origin sends them directly, and each
		// receiving node lets a connection also matched by a stream take it from that
		// stream's copy.
		n, fwd, unknown, err := s.deliverConns(m, len(keys) > 0)
		if err != nil {
			return res, err
		}
		res.Delivered += n
		res.Forwarded += fwd
		res.UnknownConnections = unknown
	}
	if len(keys) == 0 {
		return res, nil
	}
	left := keys
	stored := -1
	var offline []string
	for attempt := 0; len(left) > 0; attempt++ {
		rs := s.ringNow()
		ring := s.ownerRing(rs)
		if ring == nil {
			return res, &statusError{503, fmt.Sprintf("message %s not stored on %d of its %d streams: this node left the cluster meanwhile (shutting down); retry on another node", m.ID, len(left), len(keys))}
		}
		type result struct {
			owner string
			ans   appendAnswer
			err   error
		}
		var (
			owners  []string
			groups  map[string][]skey // nil with one owner: it has every key of cur
			one     [1]string
			only    result
			results chan result
		)
		cur := left
		if o, ok := soleOwner(ring, left); ok {
			// The common case (one user, one room, everyone, or a node alone): no
			// grouping, no goroutine, no channel.
			one[0], owners = o, one[:]
			a, err := s.appendAt(o, m, left, expire)
			only = result{o, a, err}
		} else {
			owners, groups = byOwner(ring, left)
			results = make(chan result, len(owners))
			for _, o := range owners {
				go func(o string, ks []skey) {
					a, err := s.appendAt(o, m, ks, expire)
					results <- result{o, a, err}
				}(o, groups[o])
			}
		}
		left = nil
		retryNow := true
		var lastErr error
		for range owners {
			r := only
			if results != nil {
				r = <-results
			}
			if r.err == nil && r.ans.status == statusOK {
				res.Delivered += r.ans.delivered
				res.Forwarded += r.ans.forwarded
				offline = append(offline, r.ans.offline...)
				if stored < 0 || r.ans.copies < stored {
					stored = r.ans.copies
				}
				continue
			}
			if groups == nil {
				left = cur
			} else {
				left = append(left, groups[r.owner]...)
			}
			if r.err != nil {
				lastErr = fmt.Errorf("owner %s: %w", r.owner, r.err)
				retryNow = false
			} else if r.ans.status != statusRetry {
				lastErr = fmt.Errorf("owner %s answered %s", r.owner, statusText(r.ans.status))
				retryNow = false
			}
		}
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			s.h.m.storeTimeouts.Inc()
			return res, &statusError{503, fmt.Sprintf("message %s not stored on %d of its %d streams within %s (%v); nothing is promised for them, retry", m.ID, len(left), len(keys), s.timeout, lastErr)}
		}
		s.h.m.appendRetries.Inc()
		wait := 100 * time.Millisecond
		if retryNow {
			wait = 20 * time.Millisecond // the owner is settling or resyncing
		}
		if !retryNow || attempt > 0 {
			// The owner is unreachable, not the owner any more, or busy: wait for the
			// membership to change (failure detection) or a moment.
			select {
			case <-rs.changed:
			case <-time.After(wait):
			}
		}
	}
	if m.NoHistory {
		stored = 0
	}
	res.Stored = max(stored, 0)
	res.OfflineUsers = offline
	return res, nil
}

// soleOwner reports the owner of keys when one node owns them all.
func soleOwner(ring *stream.Ring, keys []skey) (string, bool) {
	o := ring.Owner(keys[0].stream())
	for _, k := range keys[1:] {
		if ring.Owner(k.stream()) != o {
			return "", false
		}
	}
	return o, true
}

// byOwner groups keys by their owner on ring, owners in the order first seen.
func byOwner(ring *stream.Ring, keys []skey) (owners []string, groups map[string][]skey) {
	groups = map[string][]skey{}
	for _, k := range keys {
		o := ring.Owner(k.stream())
		if _, ok := groups[o]; !ok {
			owners = append(owners, o)
		}
		groups[o] = append(groups[o], k)
	}
	return owners, groups
}

func statusText(st byte) string {
	switch st {
	case statusNotOwner:
		return "not the owner"
	case statusRetry:
		return "retry"
	case statusBusy:
		return "busy"
	}
	return "ok"
}

// appendAnswer is an owner's answer to opAppend.
type appendAnswer struct {
	status    byte
	copies    int
	delivered int
	forwarded int
	offline   []string
}

func (s *streams) appendAt(owner string, m *push.Message, keys []skey, expire int64) (appendAnswer, error) {
	if owner == s.h.cfg.NodeName {
		if len(s.ringNow().ring.Members()) == 1 {
			// Alone: nothing to replicate, so no batching to gain; stamp and fan out
			// here, in order with the committer's batches (seqMu).
			j := &appendJob{m: m, keys: keys, ttl: expire, origin: owner, done: make(chan struct{})}
			s.seqMu.Lock()
			s.process([]*appendJob{j})
			s.seqMu.Unlock()
			return s.finish(j), nil
		}
		j := s.submit(m, keys, expire, owner)
		return s.finish(j), nil
	}
	b := wbuf{opAppend}.uv(uint64(expire)).uv(uint64(len(keys)))
	for _, k := range keys {
		b = b.key(k)
	}
	b = wbuf(m.AppendBinary(b))
	ctx, cancel := context.WithTimeout(context.Background(), appendTimeout)
	defer cancel()
	out, err := s.h.remote.Request(ctx, owner, b)
	if err != nil {
		return appendAnswer{}, err
	}
	r := rbuf{b: out}
	a := appendAnswer{status: r.byte1(), copies: int(r.uv()), delivered: int(r.uv()), forwarded: int(r.uv())}
	for n := r.count(1); n > 0; n-- {
		a.offline = append(a.offline, r.str())
	}
	if r.err != nil {
		return appendAnswer{}, r.err
	}
	return a, nil
}

// onAppend answers a peer's opAppend: it runs on a cluster answering goroutine.
func (s *streams) onAppend(from string, arg []byte) []byte {
	r := rbuf{b: arg}
	expire := int64(r.uv())
	n := r.count(2)
	keys := make([]skey, 0, n)
	for ; n > 0; n-- {
		keys = append(keys, r.key())
	}
	if r.err != nil {
		return nil
	}
	m := new(push.Message)
	if err := m.UnmarshalBinary(r.b); err != nil {
		return nil
	}
	a := s.finish(s.submit(m, keys, expire, from))
	b := wbuf{a.status}.uv(uint64(a.copies)).uv(uint64(a.delivered)).uv(uint64(a.forwarded)).uv(uint64(len(a.offline)))
	for _, u := range a.offline {
		b = b.str(u)
	}
	return b
}

// ---- owner: the committer ----

func (s *streams) submit(m *push.Message, keys []skey, expire int64, origin string) *appendJob {
	j := &appendJob{m: m, keys: keys, ttl: expire, origin: origin, done: make(chan struct{})}
	s.qMu.Lock()
	s.queue = append(s.queue, j)
	s.qMu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	return j
}

// finish waits for j and, when this node delivered locally, for those writes.
func (s *streams) finish(j *appendJob) appendAnswer {
	<-j.done
	a := appendAnswer{status: j.status, copies: j.copies, forwarded: j.forward, offline: j.offline}
	if j.status == statusOK && j.pending != nil {
		a.delivered, _ = j.pending.WaitFor(deliverTimeout)
		if j.track != nil {
			s.h.rc.report(j.m, j.ttl, s.h.cfg.NodeName, j.track)
		}
	}
	return a
}

// maxBatch bounds the jobs one committer round takes.
const maxBatch = 512

func (s *streams) committer() {
	defer s.wg.Done()
	for {
		select {
		case <-s.stop:
			s.failQueued()
			return
		case <-s.wake:
		}
		for {
			s.qMu.Lock()
			n := min(len(s.queue), maxBatch)
			batch := slices.Clone(s.queue[:n])
			s.queue = append(s.queue[:0], s.queue[n:]...)
			s.qMu.Unlock()
			if n == 0 {
				break
			}
			s.seqMu.Lock()
			s.process(batch)
			s.seqMu.Unlock()
		}
	}
}

func (s *streams) failQueued() {
	s.qMu.Lock()
	q := s.queue
	s.queue = nil
	s.qMu.Unlock()
	for _, j := range q {
		j.status = statusBusy
		close(j.done)
	}
}

// replEntry is one entry bound for one replica.
type replEntry struct {
	job *appendJob
	ki  int
}

// process runs one batch: stamp, replicate, commit, fan out, answer.
func (s *streams) process(batch []*appendJob) {
	self := s.h.cfg.NodeName
	rs := s.ringNow()
	ring := rs.ring
	// Any change counts, a shrink to this node alone included: that is what a node
	// sees when a peer's leave and another's rejoin under a reused name overlap.
	settling := time.Since(rs.since) < s.settle
	if s.h.draining() {
		// A node that is leaving keeps no new history: the origin waits for the ring
		// to drop it and appends at the next owner, which holds copies of everything
		// this node committed (and this node, as an origin, skips itself: ownerRing).
		// Once it has left it sees itself alone, which is not ownership of everything.
		for _, j := range batch {
			j.status = statusNotOwner
			close(j.done)
		}
		return
	}
	var repl map[string][]replEntry // made for the first replica entry
	for _, j := range batch {
		if len(j.keys) == 1 {
			j.one.pos, j.one.kcopies, j.one.fresh = [1]stream.Position{}, [1]int{}, [1]bool{}
			j.pos, j.kcopies, j.fresh = j.one.pos[:], j.one.kcopies[:], j.one.fresh[:]
		} else {
			j.pos = make([]stream.Position, len(j.keys))
			j.kcopies = make([]int, len(j.keys))
			j.fresh = make([]bool, len(j.keys))
		}
		// Every key must be ours before any is stamped: a job is stored whole or not.
		for _, k := range j.keys {
			name := k.stream()
			if ring.Owner(name) != self {
				j.status = statusNotOwner
				break
			}
			if _, ok := s.syncing[name]; ok {
				// A subscribe is replacing its history from the other holders:
				// the origin retries in a moment (as while settling).
				j.status = statusRetry
				s.h.m.settleWaits.Inc()
				break
			}
		}
		if j.status != statusOK || j.m.NoHistory {
			continue
		}
		if settling {
			for _, k := range j.keys {
				if name := k.stream(); !s.store.Has(name) || s.store.Stale(name) {
					j.status = statusRetry
					s.h.m.settleWaits.Inc()
					break
				}
			}
			if j.status != statusOK {
				continue
			}
		}
		for ki, k := range j.keys {
			name := k.stream()
			if s.store.Stale(name) {
				s.syncStream(ring, name)
			}
			holders := ring.Holders(name, s.replicas)
			pos, dup, stale := s.store.Stamp(name, entryOf(j.m, j.ttl))
			if stale { // a sync that could not finish; Stamp never stores then
				j.status = statusRetry
				continue
			}
			j.pos[ki] = pos
			j.kcopies[ki] = len(holders)
			if dup {
				continue // replicated when it was first stored
			}
			j.fresh[ki] = true
			for _, r := range holders[1:] {
				if repl == nil {
					repl = map[string][]replEntry{}
				}
				repl[r] = append(repl[r], replEntry{j, ki})
			}
		}
	}
	if len(repl) > 0 {
		s.replicate(repl)
	}
	s.rollbackRetries(batch)
	for _, j := range batch {
		if j.status != statusOK {
			continue
		}
		for ki, k := range j.keys {
			if j.pos[ki].Epoch != "" {
				s.store.Commit(k.stream(), j.pos[ki])
			}
		}
	}
	for _, j := range batch {
		if j.status == statusOK {
			if j.m.Receipt {
				s.h.rc.open(j.m, j.ttl, j.origin, userTargets(j.keys))
			}
			s.fanOut(j)
		}
		j.copies = 0
		if !j.m.NoHistory && len(j.kcopies) > 0 {
			j.copies = slices.Min(j.kcopies)
		}
		close(j.done)
	}
}

// replicate sends each replica its entries at once and waits for every answer. An
// entry a replica did not take lowers its job's copy count; one it refused (it holds
// a longer history) rolls the stream back and makes the job retry.
func (s *streams) replicate(repl map[string][]replEntry) {
	type answer struct {
		node string
		ok   []bool
		err  error
	}
	answers := make(chan answer, len(repl))
	for node, es := range repl {
		b := wbuf{opReplicate}.uv(uint64(len(es)))
		for _, re := range es {
			k := re.job.keys[re.ki]
			e := entryOf(re.job.m, re.job.ttl)
			e.Offset = re.job.pos[re.ki].Offset
			b = b.str(k.stream()).str(re.job.pos[re.ki].Epoch).entry(&e)
		}
		go func(node string, body []byte, n int) {
			ctx, cancel := context.WithTimeout(context.Background(), replicaTimeout)
			defer cancel()
			out, err := s.h.remote.Request(ctx, node, body)
			a := answer{node: node, err: err}
			if err == nil {
				r := rbuf{b: out}
				a.ok = make([]bool, n)
				for i := 0; i < n; i++ {
					a.ok[i] = r.byte1() == 1
				}
				if r.err != nil {
					a.ok, a.err = nil, r.err
				}
			}
			answers <- a
		}(node, b, len(es))
	}
	type streamAt struct {
		name string
		pos  stream.Position
	}
	var refused []streamAt
	for range repl {
		a := <-answers
		es := repl[a.node]
		for i, re := range es {
			switch {
			case a.err != nil:
				re.job.kcopies[re.ki]-- // not stored there (counted: fewer copies than asked)
				s.h.m.replicaFailures.Inc()
			case !a.ok[i]:
				refused = append(refused, streamAt{re.job.keys[re.ki].stream(), re.job.pos[re.ki]})
				re.job.status = statusRetry
			}
		}
	}
	s.h.m.replicaRefusals.Add(len(refused))
}

// rollbackRetries gives back everything the batch's retrying jobs stamped: each
// stream is rolled back to the first offset such a job stamped in it, and every job
// with a position at or after that offset in that stream (stamped after it, or a
// duplicate of an entry that goes) retries too, until nothing changes. Nothing of a
// job that retries is committed or fanned out, so no other job can overtake it in a
// stream and no answer names a position that was rolled back.
func (s *streams) rollbackRetries(batch []*appendJob) {
	type at struct{ name, epoch string }
	points := map[at]uint64{}
	for changed := true; changed; {
		changed = false
		for _, j := range batch {
			if j.status != statusRetry {
				continue
			}
			for ki, k := range j.keys {
				if p := j.pos[ki]; j.fresh[ki] {
					key := at{k.stream(), p.Epoch}
					if cur, ok := points[key]; !ok || p.Offset < cur {
						points[key] = p.Offset
						changed = true
					}
				}
			}
		}
		for _, j := range batch {
			if j.status != statusOK {
				continue
			}
			for ki, k := range j.keys {
				if p := j.pos[ki]; p.Epoch != "" {
					if from, ok := points[at{k.stream(), p.Epoch}]; ok && p.Offset >= from {
						j.status = statusRetry
						changed = true
						break
					}
				}
			}
		}
	}
	for key, from := range points {
		s.store.Rollback(key.name, stream.Position{Epoch: key.epoch, Offset: from})
	}
}

// onReplicate stores a peer's entries as a replica.
func (s *streams) onReplicate(arg []byte) []byte {
	r := rbuf{b: arg}
	n := r.count(4)
	out := make([]byte, 0, n)
	for i := 0; i < n; i++ {
		name := r.str()
		epoch := r.str()
		e := r.entry()
		if r.err != nil {
			return nil
		}
		ok, _ := s.store.Apply(name, stream.Position{Epoch: epoch, Offset: e.Offset}, e)
		if ok {
			out = append(out, 1)
		} else {
			out = append(out, 0)
		}
	}
	return out
}

// syncStream brings a stale stream up to date with the other holders: the longest
// history wins (of the same epoch: the higher offset; across epochs: the one with
// more messages, then the newer epoch). It runs on the committer, under seqMu.
func (s *streams) syncStream(ring *stream.Ring, name string) {
	s.applySync(name, s.askSync(ring, name))
}

// syncHead is one other holder's history of a stream, as askSync got it.
type syncHead struct {
	pos     stream.Position
	entries []stream.Entry
	acked   uint64
}

// askSync asks the other holders of name for their history. It is a network round
// trip (up to syncTimeout), so no lock may be held that others wait for.
func (s *streams) askSync(ring *stream.Ring, name string) []syncHead {
	self := s.h.cfg.NodeName
	var others []string
	for _, n := range ring.Holders(name, s.replicas+1) {
		if n != self {
			others = append(others, n)
		}
	}
	if len(others) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), syncTimeout)
	answers, missing := s.h.remote.Ask(ctx, others, wbuf{opSync}.str(name))
	cancel()
	if len(missing) > 0 {
		s.h.m.syncFailures.Inc()
	}
	var got []syncHead
	for _, body := range answers {
		r := rbuf{b: body}
		if r.byte1() != 1 {
			continue
		}
		h := syncHead{pos: r.pos()}
		r.uv() // the first offset held: the entries say it
		for n := r.count(4); n > 0; n-- {
			h.entries = append(h.entries, r.entry())
		}
		h.acked = r.uv()
		if r.err != nil {
			continue
		}
		got = append(got, h)
	}
	return got
}

// applySync adopts the longest history in got when it beats the local one (read now,
// not when the holders were asked: a handoff may have brought more meanwhile), or
// marks the local one fresh. The caller holds seqMu.
func (s *streams) applySync(name string, got []syncHead) {
	best := -1
	for i := range got {
		if best < 0 || longer(got[i].pos, got[best].pos) {
			best = i
		}
	}
	local, _, _, ok := s.store.Export(name)
	if best >= 0 && (!ok || longer(got[best].pos, local)) {
		s.store.Adopt(name, got[best].pos, got[best].entries)
		s.h.m.historyAdopted.Inc()
	} else {
		s.store.Fresh(name)
	}
	// Acks are cumulative: the furthest any holder knows counts, applied once the
	// history is settled (an adopted one of another epoch starts unacked).
	for i := range got {
		s.store.Ack(name, stream.Position{Epoch: got[i].pos.Epoch, Offset: got[i].acked})
	}
}

// longer reports whether history a should win over b: more messages, and between
// equally long histories of two epochs the older epoch (the one announced first, so
// the one clients are likelier to hold).
func longer(a, b stream.Position) bool {
	if a.Epoch == b.Epoch {
		return a.Offset > b.Offset
	}
	if a.Offset != b.Offset {
		return a.Offset > b.Offset
	}
	return stream.Older(a.Epoch, b.Epoch)
}

func (s *streams) onSync(arg []byte) []byte {
	r := rbuf{b: arg}
	name := r.str()
	if r.err != nil {
		return nil
	}
	pos, first, entries, ok := s.store.Export(name)
	if !ok {
		return []byte{0}
	}
	b := wbuf{1}.pos(pos).uv(first).uv(uint64(len(entries)))
	for i := range entries {
		b = b.entry(&entries[i])
	}
	acked, _ := s.store.Acked(name)
	return b.uv(acked.Offset)
}

// ---- fan-out ----

// fanOut hands a committed job to this node's loops and to the peers that hold a
// subscriber of any of its keys.
func (s *streams) fanOut(j *appendJob) {
	h := s.h
	// This node's loops skip what they already had (a retried append that was
	// stored and fanned out before its answer was lost).
	lkeys, lpos := s.dropSeen(slices.Clone(j.keys), slices.Clone(j.pos))
	st := s.stamped(j.m, lkeys, lpos, nil)
	if j.m.Receipt {
		st.Track = &loop.Track{}
		j.track = st.Track
	}
	if p, err := h.local.SubmitStamped(st, j.m.Accepted); err == nil {
		j.pending = p
		for _, k := range j.keys {
			if k.kind == loop.KeyUser && slices.Contains(p.Offline(), k.name) && len(h.remote.NodesForUsers([]string{k.name})) == 0 {
				j.offline = append(j.offline, k.name)
			}
		}
	} else {
		h.forwardDrops.Inc()
	}
	peers := s.peersFor(j.keys)
	if len(peers) == 0 {
		return
	}
	b := wbuf{wireStamped}.uv(uint64(len(j.keys)))
	for ki, k := range j.keys {
		b = b.key(k).pos(j.pos[ki])
	}
	b = b.uv(0) // connection ids: none (the origin sends those)
	payload := j.m.AppendBinary(b)
	for _, p := range peers {
		if err := h.remote.Send(p, payload); err == nil {
			j.forward++
		}
	}
}

func (s *streams) peersFor(keys []skey) []string {
	r := s.h.remote
	var users, rooms []string
	for _, k := range keys {
		switch k.kind {
		case loop.KeyAll:
			return r.AliveNodes()
		case loop.KeyUser:
			users = append(users, k.name)
		case loop.KeyRoom:
			rooms = append(rooms, k.name)
		}
	}
	var peers []string
	if len(users) > 0 {
		peers = append(peers, r.NodesForUsers(users)...)
	}
	if len(rooms) > 0 {
		peers = append(peers, r.NodesForRooms(rooms)...)
	}
	slices.Sort(peers)
	return slices.Compact(peers)
}

// stamped builds the loops' form of one copy.
func (s *streams) stamped(m *push.Message, keys []skey, pos []stream.Position, conns []string) *loop.Stamped {
	return s.stampedWith(m, loop.PrepareFrame(m.Binary, m.Data), keys, pos, conns)
}

// stampedWith is stamped with the plain frame already built (m.Data may point into it).
func (s *streams) stampedWith(m *push.Message, plain []byte, keys []skey, pos []stream.Position, conns []string) *loop.Stamped {
	st := &loop.Stamped{ID: m.ID, Binary: m.Binary, JSON: m.JSON, Data: m.Data, Conns: conns, Plain: plain, Ack: m.Ack}
	if p := m.Pusher; p != nil {
		st.Event, st.ExcludeSocket, st.PusherUser, st.PusherRaw = p.Event, p.ExcludeSocket, p.UserID, p.Raw
	}
	st.Keys = make([]loop.Key, len(keys))
	for i, k := range keys {
		st.Keys[i] = loop.Key{Kind: k.kind, Name: k.name, Stream: k.stream()}
		if pos != nil {
			st.Keys[i].Epoch, st.Keys[i].Offset = pos[i].Epoch, pos[i].Offset
		}
	}
	// Other copies exist when the message has targets this copy does not cover: keys
	// owned elsewhere, or connection ids sent by the origin.
	// (Counted without building the keys: on every copy's hot path. A target listed
	// twice counts twice, which only makes the copy check primary for nothing.)
	if n := len(m.To.Users) + len(m.To.Rooms) + b2i(m.To.All); n != len(keys) || len(m.To.Connections) > 0 && len(keys) > 0 || len(conns) > 0 && n > 0 {
		t := toTargets(m.To)
		st.Full = &t
	}
	return st
}

// onStamped is a fan-out copy from a stream owner (or connection ids from an origin),
// on the peer's link reader.
func (s *streams) onStamped(from string, payload []byte) {
	r := rbuf{b: payload}
	n := r.count(2)
	keys := make([]skey, 0, n)
	pos := make([]stream.Position, 0, n)
	for ; n > 0; n-- {
		keys = append(keys, r.key())
		pos = append(pos, r.pos())
	}
	var conns []string
	for n := r.count(1); n > 0; n-- {
		conns = append(conns, r.str())
	}
	if r.err != nil {
		s.h.log.Warn("dropping malformed stream message from peer", "peer", from)
		return
	}
	var m push.Message
	// Data aliases payload (the link's buffer) until it is copied into the plain
	// frame, its one copy: the loops build v2 frames later from that copy.
	if err := m.UnmarshalBinaryAlias(r.b); err != nil {
		s.h.log.Warn("dropping malformed stream message from peer", "peer", from, "err", err)
		return
	}
	keys, pos = s.dropSeen(keys, pos)
	if len(keys) == 0 && len(conns) == 0 {
		return
	}
	plain := loop.PrepareFrame(m.Binary, m.Data)
	m.Data = plain[len(plain)-len(m.Data):]
	st := s.stampedWith(&m, plain, keys, pos, conns)
	if m.Receipt {
		// Counted as the loops write it, and reported to the owner that sent the
		// copy; this node holds the records of its own connection targets.
		st.Track = &loop.Track{}
		if local := s.localConns(conns); len(local) > 0 {
			s.h.rc.open(&m, m.Accepted+int64(s.ttlOf(&m)), from, local)
		}
		p, err := s.h.local.SubmitStamped(st, m.Accepted)
		if err != nil {
			s.h.forwardDrops.Inc()
			return
		}
		s.h.rc.track(&m, st, p, from)
		return
	}
	if err := s.h.local.EnqueueStamped(st, m.Accepted); errors.Is(err, loop.ErrOverloaded) {
		s.h.forwardDrops.Inc()
	}
}

// localConns returns "connection:<id>" for the ids of conns this node holds.
func (s *streams) localConns(conns []string) []string {
	var out []string
	for _, c := range conns {
		if nodeOfConn(c) == s.h.cfg.NodeName {
			out = append(out, "connection:"+c)
		}
	}
	return out
}

// ttlOf is how long m is kept: its own ttl or the history's.
func (s *streams) ttlOf(m *push.Message) time.Duration {
	if m.TTL > 0 {
		return m.TTL
	}
	return s.store.Config().TTL
}

// userTargets returns "user:<id>" for the user keys of keys.
func userTargets(keys []skey) []string {
	var out []string
	for _, k := range keys {
		if k.kind == loop.KeyUser {
			out = append(out, k.stream())
		}
	}
	return out
}

// forgetSeen drops what dropSeen remembers of a stream that just got its first
// subscriber on this node: while it had none, this node was not sent its messages,
// which is no gap.
func (s *streams) forgetSeen(name string) {
	s.seenMu.Lock()
	delete(s.seen, name)
	s.seenMu.Unlock()
}

// dropSeen removes the keys this node's loops already had at that position or later
// (a retried append fanned out again), records the rest, and counts gaps: a position
// past the next one means this node missed messages of that stream.
func (s *streams) dropSeen(keys []skey, pos []stream.Position) ([]skey, []stream.Position) {
	var resume []skey
	defer func() {
		// After seenMu is released: ResumeV2 takes the registry's locks, and the
		// registry calls OnPresence (which takes seenMu) under them.
		for _, k := range resume {
			s.h.local.ResumeV2(k.kind, k.name, "resume: this node missed messages of "+k.stream())
		}
	}()
	s.seenMu.Lock()
	defer s.seenMu.Unlock()
	if len(s.seen) > 1<<20 {
		s.seen = map[string]stream.Position{}
	}
	ok := 0
	for i, k := range keys {
		p := pos[i]
		if p.Epoch != "" {
			name := k.stream()
			last, known := s.seen[name]
			if known && last.Epoch == p.Epoch {
				if p.Offset <= last.Offset {
					continue
				}
				if p.Offset > last.Offset+1 {
					// Messages of this stream never reached this node (it was cut
					// off or frozen, a link dropped them): v2 clients reconnect and
					// recover them; plain ones have lost them (counted).
					s.h.m.streamGaps.Inc()
					resume = append(resume, k)
				}
			}
			s.seen[name] = p
		}
		keys[ok], pos[ok] = k, p
		ok++
	}
	return keys[:ok], pos[:ok]
}

// deliverConns sends m to the connection ids it names: locally and to their nodes.
// withKeys says streams deliver the rest, so a connection matched by a stream is left
// to that copy.
// It also returns the ids that are open nowhere, as far as this node can tell without
// asking (like offline_users, from what it holds and what the cluster says): this
// node's ids that are not open here (closed, or of an earlier run) and ids of nodes
// that are not alive members. An id of a live peer is that peer's to deliver and is
// never reported.
func (s *streams) deliverConns(m *push.Message, withKeys bool) (int, int, []string, error) {
	h := s.h
	st := s.stamped(m, nil, nil, m.To.Connections)
	if !withKeys {
		st.Full = nil
	}
	if m.Receipt {
		st.Track = &loop.Track{}
		if local := s.localConns(m.To.Connections); len(local) > 0 {
			h.rc.open(m, m.Accepted+int64(s.ttlOf(m)), h.cfg.NodeName, local)
		}
	}
	p, err := h.local.SubmitStamped(st, m.Accepted)
	if err != nil {
		return 0, 0, nil, hubErr(err)
	}
	var unknown []string
	if missing := p.Missing(); len(missing) > 0 {
		alive := h.remote.AliveNodes()
		for _, id := range missing {
			if node := nodeOfConn(id); node == "" || node == h.cfg.NodeName || !slices.Contains(alive, node) {
				unknown = append(unknown, id)
			}
		}
	}
	fwd := 0
	if peers := h.peersFor(h.remote, push.Target{Connections: m.To.Connections}); len(peers) > 0 {
		b := wbuf{wireStamped}.uv(0).uv(uint64(len(m.To.Connections)))
		for _, c := range m.To.Connections {
			b = b.str(c)
		}
		payload := m.AppendBinary(b)
		for _, peer := range peers {
			if h.remote.Send(peer, payload) == nil {
				fwd++
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), deliverTimeout)
	defer cancel()
	n, err := p.Wait(ctx)
	if st.Track != nil {
		h.rc.report(m, m.Accepted+int64(s.ttlOf(m)), h.cfg.NodeName, st.Track)
	}
	if err != nil {
		return n, fwd, unknown, hubErr(err)
	}
	return n, fwd, unknown, nil
}
