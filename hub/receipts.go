package hub

import (
	"slices"
	"strings"
	"sync"
	"time"

	"longlink/loop"
	"longlink/push"
	"longlink/webhook"
)

// Receipts and acknowledgements (docs/api.md, "Receipts and acknowledgements").
//
// A push with a receipt (push.Message.Receipt: "ack", "wait" or "receipt") has a
// record per target where the facts about that target meet:
//
//   - a user target's on the owner of its stream user:<id>. The owner opens it when it
//     stores the message; the nodes it fans the copy out to write it, count the
//     connections per user (loop.Track) and report them back (wireDelivered); a v2
//     client's cumulative ack goes from its node to the owner (wireAck), which applies
//     it to the stream (stream.Store.Ack, which names the messages it newly covers),
//     records who acknowledged them, and copies the ack to the stream's replicas
//     (wireAckCopy) so a new owner does not deliver acknowledged messages again.
//   - a connection target's on the node that holds the connection, which writes it
//     and to which the connection acks it by message id.
//
// A record that changes while its origin waits for it ("wait") is sent there
// (wireReceipt) and the origin's waiter answers once every target is final.
// GET /v1/messages/{id} asks every node for what it holds of the id (opReceipt).
//
// Records live until the message's ttl, then a minute more as "expired" or their final
// state, within Config.MaxReceipts (oldest first beyond it, counted). They are not
// replicated: when a stream's owner dies, its records of that stream's messages go
// with it; the messages themselves, their ack state and their redelivery survive on
// the replicas, and message.expired is then sent by the new owner.
//
// Who owns what: everything below is guarded by receipts.mu; waiters by wmu. Nothing
// here is called on an event loop except ackLocal/onClientAck, which only queue.

const (
	// receiptLinger keeps a record past its message's ttl, so its final state can
	// still be read.
	receiptLinger = time.Minute
	// defaultMaxReceipts bounds the records one node keeps.
	defaultMaxReceipts = 1 << 18
	// ackQueue bounds the acks waiting to be sent to their owners; past it an ack is
	// dropped and counted (the message is delivered again: at least once).
	ackQueue = 1 << 16
	// ackFlush is how long acks may wait to be coalesced.
	ackFlush = 5 * time.Millisecond
	// maxReporters bounds the goroutines waiting for local writes to report them.
	maxReporters = 4096
	// recentAcks is how long a connection's last stream ack is remembered: longer
	// than a report may wait for the loops (deliverTimeout).
	recentAcks = 30 * time.Second
)

type receipts struct {
	h   *Hub
	max int // targets held at most (Config.MaxReceipts)

	mu      sync.Mutex
	byID    map[string]*receipt
	order   []*receipt // insertion order, for the MaxReceipts bound
	targets int        // held by the receipts in byID: what MaxReceipts bounds

	// via: connection targets that took their message through their user's
	// stream, by connection: a stream ack from that connection acknowledges them.
	// Entries go with the ack or with their receipt (sweep).
	via map[string][]viaAck
	// recent is the last stream ack of each connection ("conn\x00stream"), for a
	// write reported after its ack came (the report waits for the loops, the client
	// may be faster). Entries go after recentAcks.
	recent map[string]ackNote

	wmu     sync.Mutex
	waiters map[string]*waiter

	acks      chan ackNote
	reporters chan struct{}
}

// receipt is what this node holds of one message's targets.
type receipt struct {
	id     string
	expire int64  // the message's ttl, unix nanoseconds
	notify string // the origin waiting for changes, "" none
	until  int64  // ... until then
	// Most messages have one target here: it is held inline, a map only beyond.
	one   string
	oneSt *tstate
	more  map[string]*tstate
	gone  bool // evicted or swept: order may still hold it
}

func (rc *receipt) target(t string) *tstate {
	if rc.one == t {
		return rc.oneSt
	}
	return rc.more[t]
}

func (rc *receipt) add(t string, ts *tstate) {
	switch {
	case rc.oneSt == nil:
		rc.one, rc.oneSt = t, ts
	default:
		if rc.more == nil {
			rc.more = map[string]*tstate{}
		}
		rc.more[t] = ts
	}
}

// count is how many targets rc holds.
func (rc *receipt) count() int {
	if rc.oneSt == nil {
		return 0
	}
	return 1 + len(rc.more)
}

func (rc *receipt) each(fn func(t string, ts *tstate)) {
	if rc.oneSt != nil {
		fn(rc.one, rc.oneSt)
	}
	for t, ts := range rc.more {
		fn(t, ts)
	}
}

// tstate is one target's facts.
type tstate struct {
	ack       bool
	delivered []nodeCount // a few nodes: a slice costs a third of a map
	ackedBy   string
	ackedAt   int64
	expired   string // reason; "" not expired
}

// nodeCount is how many connections a node wrote a message to.
type nodeCount struct {
	node string
	n    int
}

func (t *tstate) status() push.TargetStatus {
	st := push.TargetStatus{Ack: t.ack, Delivered: make(map[string]int, len(t.delivered))}
	for _, d := range t.delivered {
		st.Delivered[d.node] = d.n
	}
	switch {
	case t.ackedBy != "":
		st.Status = push.StatusAcked
		st.AckedBy = t.ackedBy
		at := time.Unix(0, t.ackedAt).UTC()
		st.AckedAt = &at
	case t.expired != "":
		st.Status, st.Reason = push.StatusExpired, t.expired
	case len(t.delivered) > 0:
		st.Status = push.StatusDelivered
	default:
		st.Status = push.StatusPending
	}
	return st
}

// viaAck is a connection target written at offset of stream.
type viaAck struct {
	id, stream string
	offset     uint64
}

// ackNote is one client ack on its way to the stream's owner.
type ackNote struct {
	stream string
	epoch  string // "" the owner's current epoch
	offset uint64
	conn   string
	at     int64
	// message, when set, acks that message to connection conn (a connection
	// target) instead of a stream.
	message string
}

func newReceipts(h *Hub, max int) *receipts {
	if max <= 0 {
		max = defaultMaxReceipts
	}
	return &receipts{
		h: h, max: max,
		byID: map[string]*receipt{}, via: map[string][]viaAck{}, recent: map[string]ackNote{},
		waiters:   map[string]*waiter{},
		acks:      make(chan ackNote, ackQueue),
		reporters: make(chan struct{}, maxReporters),
	}
}

// open makes (or extends: a retried append) the record of id for targets, each
// "user:<id>" or "connection:<id>".
func (r *receipts) open(m *push.Message, expire int64, origin string, targets []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rc := r.byID[m.ID]
	if rc == nil {
		rc = &receipt{id: m.ID, expire: expire}
		r.byID[m.ID] = rc
		r.order = append(r.order, rc)
	}
	var known []string // targets with news from before the origin was known
	if m.Wait > 0 && origin != "" && rc.notify == "" {
		rc.notify, rc.until = origin, m.Accepted+int64(m.Wait)
		rc.each(func(t string, ts *tstate) { known = append(known, t) })
	}
	for _, t := range targets {
		if rc.target(t) == nil {
			rc.add(t, &tstate{ack: m.Ack})
			r.targets++
		}
	}
	r.bound()
	if len(known) > 0 && !rc.gone {
		sts := make([]push.TargetStatus, len(known))
		for i, t := range known {
			sts[i] = rc.target(t).status()
		}
		go func() { // not under mu: tell may call back into the waiters
			for i, t := range known {
				r.tell(origin, m.ID, t, &sts[i])
			}
		}()
	}
}

// bound evicts the oldest records while their targets are beyond max (under mu).
// The newest record stays whatever its size: a push's receipt is kept or not whole.
func (r *receipts) bound() {
	for r.targets > r.max && len(r.order) > 1 {
		old := r.order[0]
		r.order[0] = nil
		r.order = r.order[1:]
		if !old.gone {
			r.forget(old)
			r.h.m.receiptsEvicted.Inc()
		}
	}
	if cap(r.order) > 1024 && len(r.order) < cap(r.order)/4 {
		r.order = slices.Clone(r.order)
	}
}

// update applies fn to target t of id and sends the change to a waiting origin.
func (r *receipts) update(id, t string, fn func(*tstate) bool) {
	r.mu.Lock()
	rc := r.byID[id]
	if rc == nil {
		r.mu.Unlock()
		return
	}
	ts := rc.target(t)
	if ts == nil || !fn(ts) {
		r.mu.Unlock()
		return
	}
	notify := ""
	if rc.notify != "" && time.Now().UnixNano() < rc.until {
		notify = rc.notify
	}
	st := ts.status()
	r.mu.Unlock()
	if notify != "" {
		r.tell(notify, id, t, &st)
	}
}

func (r *receipts) delivered(id, t, node string, n int) {
	if n <= 0 {
		return
	}
	r.update(id, t, func(ts *tstate) bool {
		for i := range ts.delivered {
			if d := &ts.delivered[i]; d.node == node {
				if d.n >= n {
					return false
				}
				d.n = n
				return true
			}
		}
		ts.delivered = append(ts.delivered, nodeCount{node, n})
		return true
	})
}

func (r *receipts) acked(id, t, conn string, at int64) {
	r.update(id, t, func(ts *tstate) bool {
		if ts.ackedBy != "" || !ts.ack {
			return false
		}
		ts.ackedBy, ts.ackedAt = conn, at
		return true
	})
}

func (r *receipts) expired(id, t, reason string) {
	r.update(id, t, func(ts *tstate) bool {
		if ts.ackedBy != "" || ts.expired != "" {
			return false
		}
		ts.expired = reason
		return true
	})
}

// query returns what this node holds of id.
func (r *receipts) query(id string) (expire int64, out map[string]push.TargetStatus) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rc := r.byID[id]
	if rc == nil {
		return 0, nil
	}
	out = make(map[string]push.TargetStatus, 1+len(rc.more))
	rc.each(func(t string, ts *tstate) { out[t] = ts.status() })
	return rc.expire, out
}

// sweep expires the connection targets that were not acknowledged within the ttl
// (user targets expire with their stream entries: expireDropped) and forgets records
// past their linger.
func (r *receipts) sweep(now int64) {
	type exp struct{ id, target string }
	var expiring []exp
	r.mu.Lock()
	for id, rc := range r.byID {
		if now >= rc.expire+int64(receiptLinger) {
			r.forget(rc)
			continue
		}
		if now < rc.expire {
			continue
		}
		rc.each(func(t string, ts *tstate) {
			if ts.ack && ts.ackedBy == "" && ts.expired == "" && strings.HasPrefix(t, "connection:") {
				expiring = append(expiring, exp{id, t})
			}
		})
	}
	for k, a := range r.recent {
		if now-a.at > int64(recentAcks) {
			delete(r.recent, k)
		}
	}
	for conn, vs := range r.via {
		kept := vs[:0]
		for _, v := range vs {
			if r.byID[v.id] != nil {
				kept = append(kept, v)
			}
		}
		if len(kept) == 0 {
			delete(r.via, conn)
		} else {
			r.via[conn] = kept
		}
	}
	if len(r.order) > 0 && len(r.byID) < len(r.order)/2 {
		kept := r.order[:0]
		for _, rc := range r.order {
			if !rc.gone {
				kept = append(kept, rc)
			}
		}
		clear(r.order[len(kept):])
		r.order = kept
	}
	r.mu.Unlock()
	for _, e := range expiring {
		r.expired(e.id, e.target, "ttl")
		r.h.m.expired[expTTL].Inc()
		r.h.emit(webhook.Event{Type: "message.expired", Message: e.id, Target: e.target, Reason: "ttl"})
	}
}

// forget drops rc (under mu).
func (r *receipts) forget(rc *receipt) {
	rc.gone = true
	delete(r.byID, rc.id)
	r.targets -= rc.count()
}

// len is how many targets the receipts hold.
func (r *receipts) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.targets
}

// ---- waiting at the origin ----

// waiter collects the states of one message's targets while its push waits.
type waiter struct {
	mu      sync.Mutex
	targets map[string]push.TargetStatus
	left    int // targets not final
	done    chan struct{}
}

// watch registers a waiter for m before it is appended, so no change is missed.
func (r *receipts) watch(m *push.Message) *waiter {
	w := &waiter{targets: map[string]push.TargetStatus{}, done: make(chan struct{})}
	for _, u := range m.To.Users {
		w.targets["user:"+u] = push.TargetStatus{Status: push.StatusPending, Ack: m.Ack, Delivered: map[string]int{}}
	}
	for _, c := range m.To.Connections {
		w.targets["connection:"+c] = push.TargetStatus{Status: push.StatusPending, Ack: m.Ack, Delivered: map[string]int{}}
	}
	w.left = len(w.targets)
	r.wmu.Lock()
	r.waiters[m.ID] = w
	r.wmu.Unlock()
	return w
}

func (r *receipts) unwatch(id string, w *waiter) {
	r.wmu.Lock()
	if r.waiters[id] == w {
		delete(r.waiters, id)
	}
	r.wmu.Unlock()
}

// seen records a target's state at the origin.
func (r *receipts) seen(id, t string, st *push.TargetStatus) {
	r.wmu.Lock()
	w := r.waiters[id]
	r.wmu.Unlock()
	if w == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	old, ok := w.targets[t]
	if !ok || old.Final() {
		return
	}
	w.targets[t] = *st
	if st.Final() {
		if w.left--; w.left == 0 {
			close(w.done)
		}
	}
}

// result waits for w until deadline and returns the targets' states.
func (w *waiter) result(deadline time.Time) (map[string]push.TargetStatus, bool) {
	w.mu.Lock()
	left := w.left
	w.mu.Unlock()
	if left > 0 {
		t := time.NewTimer(time.Until(deadline))
		select {
		case <-w.done:
		case <-t.C:
		}
		t.Stop()
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return maps(w.targets), w.left == 0
}

func maps(m map[string]push.TargetStatus) map[string]push.TargetStatus {
	out := make(map[string]push.TargetStatus, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// tell sends a target's new state to the origin waiting for it.
func (r *receipts) tell(origin, id, t string, st *push.TargetStatus) {
	if origin == r.h.cfg.NodeName {
		r.seen(id, t, st)
		return
	}
	b := wbuf{wireReceipt}.str(id).str(t).status(st)
	if r.h.remote.Send(origin, b) != nil {
		r.h.m.receiptNotesLost.Inc()
	}
}

func (r *receipts) onReceiptNote(payload []byte) {
	rb := rbuf{b: payload}
	id, t := rb.str(), rb.str()
	st := rb.status()
	if rb.err != nil {
		return
	}
	r.seen(id, t, &st)
}

// ---- delivery reports ----

// track gives a copy of a message with a receipt a loop.Track, and reports its counts
// once the loops wrote it: user targets to the owner that sent the copy (from; this
// node: recorded here), connection targets recorded here. It never blocks: past
// maxReporters waiting reports, the counts are lost (counted).
func (r *receipts) track(m *push.Message, st *loop.Stamped, p Pending, from string) {
	tr := st.Track
	select {
	case r.reporters <- struct{}{}:
	default:
		r.h.m.reportsLost.Inc()
		return
	}
	mc := *m // the caller's m is reused; what report reads is copied
	mc.Data, mc.To = nil, push.Target{}
	expire := m.Accepted + int64(r.h.st.ttlOf(m))
	go func() {
		defer func() { <-r.reporters }()
		r.waitPending(p)
		r.report(&mc, expire, from, tr)
	}()
}

func (r *receipts) waitPending(p Pending) {
	ctx, cancel := contextWithTimeout(deliverTimeout)
	defer cancel()
	p.Wait(ctx)
}

// report records or sends what tr counted for message id.
func (r *receipts) report(m *push.Message, expire int64, owner string, tr *loop.Track) {
	id := m.ID
	self := r.h.cfg.NodeName
	for _, c := range tr.Conns() {
		r.delivered(id, "connection:"+c, self, 1)
	}
	if via := tr.Via(); len(via) > 0 {
		// This node holds these connections' receipts; the origin's copy for them
		// may not have arrived yet (it opens the same record and tells its waiter).
		targets := make([]string, len(via))
		for i, v := range via {
			targets[i] = "connection:" + v.Conn
		}
		r.open(m, expire, "", targets)
		var early []ackNote // acks that came before this report
		r.mu.Lock()
		for _, v := range via {
			if a, ok := r.recent[v.Conn+"\x00"+v.Stream]; ok && a.offset >= v.Offset {
				early = append(early, a)
				continue
			}
			r.via[v.Conn] = append(r.via[v.Conn], viaAck{id, v.Stream, v.Offset})
		}
		r.mu.Unlock()
		for _, t := range targets {
			r.delivered(id, t, self, 1)
		}
		for _, a := range early {
			r.acked(id, "connection:"+a.conn, a.conn, a.at)
		}
	}
	users := tr.Users()
	if len(users) == 0 {
		return
	}
	if owner == self {
		for u, n := range users {
			r.delivered(id, "user:"+u, self, n)
		}
		return
	}
	b := wbuf{wireDelivered}.str(id).uv(uint64(len(users)))
	for u, n := range users {
		b = b.str(u).uv(uint64(n))
	}
	if r.h.remote.Send(owner, b) != nil {
		r.h.m.reportsLost.Inc()
	}
}

// replayed reports messages of user stream name replayed to one connection here.
func (r *receipts) replayed(name string, ids []string) {
	self := r.h.cfg.NodeName
	owner := r.h.st.ringNow().ring.Owner(name)
	u := strings.TrimPrefix(name, "user:")
	for _, id := range ids {
		if owner == self {
			r.delivered(id, name, self, 1)
			continue
		}
		if r.h.remote.Send(owner, wbuf{wireDelivered}.str(id).uv(1).str(u).uv(1)) != nil {
			r.h.m.reportsLost.Inc()
		}
	}
}

func (r *receipts) onDelivered(from string, payload []byte) {
	rb := rbuf{b: payload}
	id := rb.str()
	for n := rb.count(2); n > 0 && rb.err == nil; n-- {
		u, c := rb.str(), int(rb.uv())
		if rb.err == nil {
			r.delivered(id, "user:"+u, from, c)
		}
	}
}

// ---- expiry ----

// expireDropped handles the unacknowledged entries the store dropped: the owner of
// each stream sends message.expired (a replica stays silent: once per message).
func (r *receipts) expireDropped() {
	s := r.h.st
	drops, lost := s.store.TakeDropped()
	if lost > 0 {
		r.h.m.expiredLost.Add(int(lost))
	}
	if len(drops) == 0 {
		return
	}
	ring := s.ringNow().ring
	self := r.h.cfg.NodeName
	for _, d := range drops {
		if ring.Owner(d.Stream) != self {
			continue
		}
		reason := expTTL
		if d.Reason == "evicted" {
			reason = expEvicted
		}
		r.h.m.expired[reason].Inc()
		r.expired(d.ID, d.Stream, d.Reason)
		e := webhook.Event{Type: "message.expired", Message: d.ID, Target: d.Stream, Reason: d.Reason}
		if u, ok := strings.CutPrefix(d.Stream, "user:"); ok {
			e.User = u
		}
		r.h.emit(e)
	}
}

// Expiry reasons, indexes into hubMetrics.expired.
const (
	expTTL = iota
	expEvicted
)
