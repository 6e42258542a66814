package hub

import (
	"slices"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"longlink/loop"
	"longlink/webhook"
)

// Presence and connection events (docs/webhooks.md).
//
// connection.opened and connection.closed are emitted by the node that holds the
// connection, from the loop's OnOpen and OnClose. user.online and user.offline are
// decided by the owner of the stream user:<id> on the ring (the same ring as the
// streams'): every node tells the owner of each of its users when the user gets its
// first connection here (add) and loses its last (drop); the owner keeps, per user,
// which nodes hold it, emits user.online when the first node adds it and
// user.offline when none has held it for PresenceGrace.
//
// So that a node's death still produces its connections' connection.closed and
// its users' drops, every node keeps its watcher (the next alive node after it on
// the sorted ring of names) informed of its open connections. When a node dies, its
// watcher emits connection.closed (1006) for each of them and sends the owners of
// their users a drop on the dead node's behalf.
//
// Both travel as feeds (opFeed): per destination and channel, batched deltas
// answered in order, each numbered; a receiver that has lost track (it restarted,
// the source died and came back, a delta failed) answers resync, and the source
// then sends a snapshot of what that destination should know. A source also resends
// snapshots whenever the ring changes: the owners of its users may have moved, and
// a snapshot removes what the destination knew of it before.
//
// Who owns what: the loops and the hub's callbacks append to queue under qMu and
// never wait; one goroutine (run) owns the local side (local connections and
// users, the feeds) and sends the feeds once per presenceTick; the receiving side
// (watched connections, user records, sources) is guarded by omu and changed by
// feed requests (cluster goroutines) and by run.

const (
	defaultPresenceGrace = 3 * time.Second
	presenceTick         = 50 * time.Millisecond
	// feedKeepalive: a source with nothing to say still checks each destination this
	// often, so a destination that lost track of it (it was declared dead and came
	// back) asks for a snapshot within about a second.
	feedKeepalive = time.Second
	feedTimeout   = time.Second
	// feedChunk bounds one feed request; a larger snapshot goes in several.
	feedChunk = 256 << 10
	// maxPresenceQueue bounds what the loops queue between two ticks; past it the
	// rest is dropped and counted (the loops' handshake rate cannot reach it).
	maxPresenceQueue = 1 << 18
	// maxFeedPending bounds a feed's unsent delta; past it the delta is discarded
	// and a snapshot sent instead.
	maxFeedPending = 4 << 20
	// maxWatchedConns and maxOwnedUsers bound what peers can make this node hold.
	maxWatchedConns = 1 << 21
	maxOwnedUsers   = 1 << 22
	// diedMemory is how long a dead node's connections are remembered, so that if it
	// comes back (it was frozen, not dead) its connections are announced again.
	diedMemory = time.Hour
)

// Feed channels.
const (
	chWatch    byte = 'w' // a node's open connections, to its watcher
	chPresence byte = 'p' // a node's users, to their owners
)

// presence is the hub's presence and connection-event machinery. A nil *presence
// (webhooks off, or no connection or user event selected) does nothing.
type presence struct {
	h      *Hub
	sink   webhook.Sink
	self   string
	epoch  uint64
	grace  time.Duration
	conns  bool // connection.* wanted
	users  bool // user.* wanted: presence feeds run
	m      presenceMetrics
	stop   chan struct{}
	done   chan struct{}
	closer sync.Once

	qMu   sync.Mutex
	queue []localOp
	ctl   []nodeLeft // never dropped: one per membership event
	qDrop bool

	// owned by run
	local     map[string]connRec       // open connections here
	localUser map[string]bool          // users with a connection here -> add acknowledged by an owner
	gone      map[goneKey]time.Time    // drops to keep in snapshots until grace+1s after
	feeds     map[feedKey]*feed        // by destination and channel
	members   []string                 // the ring's members at the last tick
	watcher   string                   // who watches this node ("" alone)
	lastOwner func(user string) string // owner on the current ring

	omu     sync.Mutex
	watched map[string]*watchedNode // node -> its open connections
	srcs    map[feedKey]*source     // who feeds this node what
	records map[string]*userRecord  // users this node owns that are online
	due     map[string]time.Time    // users without a holder: offline at this time
	died    map[string]diedNode     // nodes declared dead recently
}

type connRec struct{ user, remote string }

type localOp struct {
	kind byte // 'o' opened, 'c' closed, 'u' user present, 'x' user absent
	id   string
	user string
	rem  string
	at   int64
}

type nodeLeft struct {
	name string
	dead bool
}

type goneKey struct{ node, user string }

type feedKey struct {
	node string
	ch   byte
}

// feed is what this node tells one destination on one channel.
type feed struct {
	seq     uint64    // requests acknowledged since the last snapshot
	reset   bool      // the next request is a snapshot
	release bool      // send an empty snapshot, then forget the feed (no longer its watcher)
	ops     []wbuf    // the delta, one op each
	size    int       // bytes of ops
	adds    []string  // users whose add is in ops
	last    time.Time // last request sent
}

// source is what this node knows of one feed it receives.
type source struct {
	epoch, seq uint64
	returned   bool // the source was declared dead and came back (same epoch)
}

type watchedNode struct {
	conns map[string]connRec
}

type userRecord struct {
	holders []string // nodes holding the user (few)
	first   string   // node of the add that made it online
}

// diedNode remembers a node declared dead, by the epoch of its feeds: if the same
// process feeds this node again (it was frozen or cut off, not dead), what was
// reported closed or offline for it is announced again.
type diedNode struct {
	epoch    uint64
	at       time.Time
	conns    map[string]connRec // reported closed by this node (its watcher)
	presence bool               // its next presence snapshot counts as new holdings
}

type presenceMetrics struct {
	queueDrops, limitDrops, resyncs, failures, deadConns *metrics.Counter
}

// Feed ops.
const (
	fOpened byte = 1 // id, user, remote
	fClosed byte = 2 // id
	fAdd    byte = 3 // user: the first connection, not yet acknowledged by an owner
	fHave   byte = 4 // user: held, its online already told
	fDrop   byte = 5 // node, user, unix nanos: node no longer holds user since then
)

// Answers.
const (
	feedOK     byte = 0
	feedResync byte = 1
)

// wanter is what the hub asks of a Sink that selects events (*webhook.Sender).
type wanter interface{ Wants(t string) bool }

func wants(s webhook.Sink, t string) bool {
	if w, ok := s.(wanter); ok {
		return w.Wants(t)
	}
	return s != nil
}

func newPresence(h *Hub, cfg Config) *presence {
	s := cfg.Events
	if s == nil {
		return nil
	}
	p := &presence{
		h: h, sink: s, self: cfg.NodeName, grace: cfg.PresenceGrace,
		conns: wants(s, webhook.ConnectionOpened) || wants(s, webhook.ConnectionClosed),
		users: wants(s, webhook.UserOnline) || wants(s, webhook.UserOffline),
		stop:  make(chan struct{}), done: make(chan struct{}),
		local: map[string]connRec{}, localUser: map[string]bool{}, gone: map[goneKey]time.Time{},
		feeds:   map[feedKey]*feed{},
		watched: map[string]*watchedNode{}, srcs: map[feedKey]*source{}, records: map[string]*userRecord{},
		due: map[string]time.Time{}, died: map[string]diedNode{},
	}
	if !p.conns && !p.users {
		return nil
	}
	p.epoch = uint64(time.Now().UnixNano())
	set := cfg.Metrics
	p.m = presenceMetrics{
		queueDrops: set.NewCounter(`longlink_presence_dropped_total{reason="queue_full"}`),
		limitDrops: set.NewCounter(`longlink_presence_dropped_total{reason="limit"}`),
		resyncs:    set.NewCounter(`longlink_presence_feed_resyncs_total`),
		failures:   set.NewCounter(`longlink_presence_feed_failures_total`),
		deadConns:  set.NewCounter(`longlink_presence_dead_node_connections_total`),
	}
	set.NewGauge(`longlink_presence_watched_connections`, func() float64 {
		p.omu.Lock()
		defer p.omu.Unlock()
		n := 0
		for _, w := range p.watched {
			n += len(w.conns)
		}
		return float64(n)
	})
	set.NewGauge(`longlink_presence_owned_users`, func() float64 {
		p.omu.Lock()
		defer p.omu.Unlock()
		return float64(len(p.records))
	})
	go p.run()
	return p
}

func (p *presence) close() {
	if p == nil {
		return
	}
	p.closer.Do(func() { close(p.stop) })
	<-p.done
}

func (p *presence) push(op localOp) {
	p.qMu.Lock()
	if len(p.queue) >= maxPresenceQueue {
		p.qDrop = true
		p.qMu.Unlock()
		p.m.queueDrops.Inc()
		return
	}
	p.queue = append(p.queue, op)
	p.qMu.Unlock()
}

// OnConnOpen is loop's OnOpen: it runs on c's loop after the 101 and emits
// connection.opened. It never blocks.
func (h *Hub) OnConnOpen(c *loop.Conn) {
	p := h.pr
	if p == nil {
		return
	}
	id, rem := c.ID(), c.Remote().String()
	p.sink.Emit(webhook.Event{Type: webhook.ConnectionOpened, Node: p.self, User: c.User(), Connection: id, Remote: rem})
	p.push(localOp{kind: 'o', id: id, user: c.User(), rem: rem})
}

// OnConnClose is loop's OnClose: it runs on c's loop and emits connection.closed
// with the code the connection ended with. It never blocks.
func (h *Hub) OnConnClose(c *loop.Conn, code uint16, reason string) {
	p := h.pr
	if p == nil {
		return
	}
	id := c.ID()
	p.sink.Emit(webhook.Event{Type: webhook.ConnectionClosed, Node: p.self, User: c.User(), Connection: id,
		Remote: c.Remote().String(), Code: int(code), Reason: reason})
	p.push(localOp{kind: 'c', id: id})
}

// OnNodeLeft is the cluster's OnNodeLeft: name left (dead false) or was declared
// dead. Its connections and users are settled on the presence goroutine.
func (h *Hub) OnNodeLeft(name string, dead bool) {
	p := h.pr
	if p == nil {
		return
	}
	p.qMu.Lock()
	p.ctl = append(p.ctl, nodeLeft{name, dead})
	p.qMu.Unlock()
}

// onUser is called from OnPresence (on a loop, under the registry lock): only queued.
func (p *presence) onUser(user string, present bool) {
	if p == nil || !p.users {
		return
	}
	k := byte('x')
	if present {
		k = 'u'
	}
	p.push(localOp{kind: k, user: user, at: time.Now().UnixNano()})
}

func (p *presence) run() {
	defer close(p.done)
	t := time.NewTicker(presenceTick)
	defer t.Stop()
	var batch []localOp
	var ctl []nodeLeft
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
		now := time.Now()
		p.checkRing()
		p.qMu.Lock()
		batch, p.queue = p.queue, batch[:0]
		ctl, p.ctl = p.ctl, ctl[:0]
		dropped := p.qDrop
		if p.qDrop {
			// Lost ops: what peers hold of this node may be wrong; resend it all,
			// once the tables are made right again (below).
			p.qDrop = false
			for _, f := range p.feeds {
				f.reset = true
			}
		}
		p.qMu.Unlock()
		for _, l := range ctl {
			p.nodeLeft(l, now)
		}
		for i := range batch {
			p.apply(&batch[i])
		}
		clear(batch)
		if dropped {
			p.reconcile()
		}
		p.expire(now)
		p.sendRound(now)
	}
}

// checkRing recomputes the watcher and the owners when the alive set changed: every
// presence feed becomes a snapshot (owners may have moved), the records this node
// no longer owns are forgotten, and a new watcher gets a snapshot while the old one
// is told to forget this node.
func (p *presence) checkRing() {
	ring := p.h.st.ringNow().ring
	members := ring.Members()
	if p.lastOwner != nil && slices.Equal(members, p.members) {
		return
	}
	p.members = slices.Clone(members)
	p.omu.Lock()
	p.lastOwner = func(user string) string { return ring.Owner("user:" + user) }
	p.omu.Unlock()
	w := watcherOf(p.self, members)
	if w != p.watcher {
		if old := p.feeds[feedKey{p.watcher, chWatch}]; old != nil {
			old.release, old.reset = true, true
		}
		p.watcher = w
		if w != "" {
			f := p.feed(w, chWatch)
			f.reset, f.release = true, false
		}
	}
	if p.users {
		for _, n := range members {
			if n != p.self {
				p.feed(n, chPresence).reset = true
			}
		}
		for k := range p.feeds {
			if k.ch == chPresence && !slices.Contains(members, k.node) {
				delete(p.feeds, k)
			}
		}
		p.omu.Lock()
		for u := range p.records {
			if p.lastOwner(u) != p.self {
				delete(p.records, u)
				delete(p.due, u)
			}
		}
		for u := range p.due {
			if p.lastOwner(u) != p.self {
				delete(p.due, u)
			}
		}
		p.omu.Unlock()
	}
	for k := range p.feeds {
		if k.ch == chWatch && k.node != p.watcher && !slices.Contains(members, k.node) {
			delete(p.feeds, k)
		}
	}
}

// watcherOf is the node after self in the sorted members, wrapping; "" alone.
func watcherOf(self string, members []string) string {
	sorted := slices.Clone(members)
	if !slices.Contains(sorted, self) {
		sorted = append(sorted, self)
	}
	slices.Sort(sorted)
	if len(sorted) < 2 {
		return ""
	}
	i, _ := slices.BinarySearch(sorted, self)
	return sorted[(i+1)%len(sorted)]
}

func (p *presence) feed(node string, ch byte) *feed {
	k := feedKey{node, ch}
	f := p.feeds[k]
	if f == nil {
		f = &feed{reset: true}
		p.feeds[k] = f
	}
	return f
}

// addOp appends an op to a feed's delta (nothing while a snapshot is due: it will
// carry the current state).
func (f *feed) addOp(op wbuf) {
	if f.reset {
		return
	}
	if f.size+len(op) > maxFeedPending {
		f.reset, f.ops, f.size, f.adds = true, nil, 0, nil
		return
	}
	f.ops = append(f.ops, op)
	f.size += len(op)
}

// reconcile makes the tables of this node's connections and users what the loops'
// registry says, after ops were dropped (a queue overflow): the ops it applies are
// the ones that were lost. Every op is idempotent, so ops queued meanwhile, applied
// next round, agree with it.
func (p *presence) reconcile() {
	now := time.Now().UnixNano()
	users := map[string]bool{}
	conns := map[string]connRec{}
	for _, u := range p.h.local.LocalUsers() {
		users[u] = true
		for _, c := range p.h.local.UserConnections(u) {
			conns[c.ID] = connRec{c.User, c.Remote}
		}
	}
	for id := range p.local {
		if _, ok := conns[id]; !ok {
			p.apply(&localOp{kind: 'c', id: id})
		}
	}
	for id, c := range conns {
		if _, ok := p.local[id]; !ok {
			p.apply(&localOp{kind: 'o', id: id, user: c.user, rem: c.remote})
		}
	}
	if !p.users {
		return
	}
	for u := range p.localUser {
		if !users[u] {
			p.apply(&localOp{kind: 'x', user: u, at: now})
		}
	}
	for u := range users {
		if _, ok := p.localUser[u]; !ok {
			p.apply(&localOp{kind: 'u', user: u, at: now})
		}
	}
}

func (p *presence) apply(op *localOp) {
	switch op.kind {
	case 'o':
		p.local[op.id] = connRec{op.user, op.rem}
		if p.watcher != "" {
			p.feed(p.watcher, chWatch).addOp(wbuf(nil).byte1(fOpened).str(op.id).str(op.user).str(op.rem))
		}
	case 'c':
		if _, ok := p.local[op.id]; !ok {
			return
		}
		delete(p.local, op.id)
		if p.watcher != "" {
			p.feed(p.watcher, chWatch).addOp(wbuf(nil).byte1(fClosed).str(op.id))
		}
	case 'u':
		if _, ok := p.localUser[op.user]; ok {
			return
		}
		delete(p.gone, goneKey{p.self, op.user})
		owner := p.lastOwner(op.user)
		if owner == p.self {
			p.localUser[op.user] = true
			p.omu.Lock()
			p.addHolder(op.user, p.self, true, false)
			p.omu.Unlock()
			return
		}
		p.localUser[op.user] = false
		f := p.feed(owner, chPresence)
		f.addOp(wbuf(nil).byte1(fAdd).str(op.user))
		if !f.reset {
			f.adds = append(f.adds, op.user)
		}
	case 'x':
		if _, ok := p.localUser[op.user]; !ok {
			return
		}
		delete(p.localUser, op.user)
		p.drop(p.self, op.user, op.at)
	}
}

// drop tells the owner of user that node no longer holds it since at, and keeps the
// drop for snapshots until the grace has passed.
func (p *presence) drop(node, user string, at int64) {
	p.gone[goneKey{node, user}] = time.Unix(0, at)
	owner := p.lastOwner(user)
	if owner == p.self {
		p.omu.Lock()
		p.dropHolder(user, node, time.Unix(0, at))
		p.omu.Unlock()
		return
	}
	p.feed(owner, chPresence).addOp(wbuf(nil).byte1(fDrop).str(node).str(user).uv(uint64(at)))
}

// nodeLeft settles a node that left or died: this node stops counting it as a
// holder of the users it owns and, as the dead node's watcher, reports its
// connections closed and drops its users at their owners.
func (p *presence) nodeLeft(l nodeLeft, now time.Time) {
	p.omu.Lock()
	w := p.watched[l.name]
	delete(p.watched, l.name)
	var epoch uint64
	for _, ch := range []byte{chWatch, chPresence} {
		if s := p.srcs[feedKey{l.name, ch}]; s != nil {
			epoch = s.epoch
		}
		delete(p.srcs, feedKey{l.name, ch})
	}
	for u := range p.records {
		p.dropHolder(u, l.name, now)
	}
	// Only its watcher reports a dead node's connections, so they go once.
	mine := w != nil && l.dead && watcherOf(l.name, append(slices.Clone(p.members), l.name)) == p.self
	if l.dead && epoch != 0 {
		d := diedNode{epoch: epoch, at: now, presence: true}
		if mine {
			d.conns = w.conns
		}
		p.died[l.name] = d
	}
	p.omu.Unlock()
	if !mine {
		return
	}
	reason := "node " + l.name + " died"
	users := map[string]bool{}
	for id, c := range w.conns {
		p.m.deadConns.Inc()
		p.sink.Emit(webhook.Event{Type: webhook.ConnectionClosed, Node: l.name, Reporter: p.self, User: c.user,
			Connection: id, Remote: c.remote, Code: int(loop.CloseAbnormal), Reason: reason})
		users[c.user] = true
	}
	if p.users {
		for u := range users {
			p.drop(l.name, u, now.UnixNano())
		}
	}
}

// expire forgets drops past the grace, and emits user.offline for owned users
// without a holder since the grace.
func (p *presence) expire(now time.Time) {
	for k, at := range p.gone {
		if now.Sub(at) > p.grace+time.Second {
			delete(p.gone, k)
		}
	}
	p.omu.Lock()
	var off []webhook.Event
	for u, at := range p.due {
		if now.Before(at) {
			continue
		}
		delete(p.due, u)
		r := p.records[u]
		if r == nil || len(r.holders) > 0 {
			continue
		}
		delete(p.records, u)
		off = append(off, webhook.Event{Type: webhook.UserOffline, User: u, Node: r.first, Reporter: p.self,
			Time: at.Add(-p.grace).UTC()})
	}
	for n, d := range p.died {
		if now.Sub(d.at) > diedMemory {
			delete(p.died, n)
		}
	}
	p.omu.Unlock()
	for _, e := range off {
		p.sink.Emit(e)
	}
}

// addHolder records that node holds user. add: it is the node's first connection
// (told online unless already); returned: the node came back from the dead (its
// holdings count as new). Called with omu held.
func (p *presence) addHolder(user, node string, add, returned bool) {
	r := p.records[user]
	delete(p.due, user)
	if r == nil {
		if len(p.records) >= maxOwnedUsers {
			p.m.limitDrops.Inc()
			return
		}
		r = &userRecord{first: node}
		p.records[user] = r
		if add || returned {
			p.sink.Emit(webhook.Event{Type: webhook.UserOnline, User: user, Node: node, Reporter: p.self})
		}
	}
	if !slices.Contains(r.holders, node) {
		r.holders = append(r.holders, node)
	}
}

// dropHolder records that node no longer holds user since at. A user this node has
// no record of is one whose previous owner knew it online (an owner change): it
// gets a record without holders. Called with omu held.
func (p *presence) dropHolder(user, node string, at time.Time) {
	r := p.records[user]
	if r == nil {
		if p.lastOwner == nil || p.lastOwner(user) != p.self || len(p.records) >= maxOwnedUsers {
			return
		}
		r = &userRecord{first: node}
		p.records[user] = r
	}
	i := slices.Index(r.holders, node)
	if i >= 0 {
		r.holders = slices.Delete(r.holders, i, i+1)
	} else if len(r.holders) > 0 {
		return
	}
	if len(r.holders) == 0 {
		if _, ok := p.due[user]; !ok {
			p.due[user] = at.Add(p.grace)
		}
	}
}
