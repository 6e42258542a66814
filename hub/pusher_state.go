package hub

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"longlink/loop"
	"longlink/pusher"
)

// Pusher channels across the cluster (issue 14; docs/pusher.md, "Cluster").
//
// Local side. The node tells the hub of each (connection, channel) subscription
// (PusherJoin, PusherLeave, on the connection's loop). The hub counts them per
// (app, channel) and, on presence channels, per (app, channel, user) under lmu: an
// O(1) map update, never a wait. A change that starts or ends this node's holding
// of a channel or of a member marks the key dirty; once per pusherTick the Pusher
// goroutine (run) compares the dirty keys with what it has published and turns the
// differences into ops: occupy/vacate a channel, join/leave a member with its info.
// So the local table is always exact and a change shorter than a tick is coalesced
// (no op at all). Past maxPusherDirty dirty keys the set is dropped and run compares
// everything instead (longlink_pusher_state_local_rescans_total): nothing is lost.
//
// Feeds. Every node tells EVERY other alive node what it holds, as a feed per peer
// (pusher_feed.go; the mechanism of presence_feed.go): numbered batched deltas,
// an epoch per process, a snapshot when the receiver lost track (resync), when the
// peer is new on the ring, or when a delta would grow past maxFeedPending. A
// snapshot is applied in generations, so a receiver removes only what the snapshot
// no longer holds once its last chunk arrived: no member flaps while it is sent.
// One request per peer is in flight at a time, on a goroutine of its own, so a
// frozen peer delays only its own feed.
//
// Cluster table. Every node keeps, under cmu, channel -> holding nodes and
// (channel, user) -> holding nodes with each holder's info, itself included (its
// own ops are applied by run as those of any source). A member's info is the info
// of the holder that made it a member, kept while it stays one. From the table run
// derives, once per tick, in the order the records changed:
//
//   - Member callbacks: a member record that gained its first holder or lost its
//     last one (a user on two nodes leaving one: nothing).
//   - Webhooks. Every node runs the same debounce on its own table, as if it
//     owned every channel, and only the owner on the ring of the channel's room
//     stream calls Webhook. So a new owner has the state of the old one: a member
//     or channel that became live is "announced" (channel_occupied, member_added
//     on its owner); one that has no holder is announced gone (channel_vacated,
//     member_removed) when it has had none for Grace, by the node that owned it
//     when the debounce started if that node is still alive, else by the current
//     owner. A record that has a holder again within Grace produces neither.
//
// Nodes that leave. A source that is not on the ring any more (left, dead, or cut
// off from this node: the cluster drops it from AliveNodes before OnNodeLeft, so
// the ring is enough) loses all its holdings here at the next tick; a feed from a
// node that is not on this node's ring is answered resync and not applied. A node
// that comes back with the same epoch (it was frozen or cut off, not dead) sends
// a snapshot: its members are members again (Member callbacks, and webhooks if
// they were gone for longer than Grace).
//
// A node that joins knows nothing of what was announced before it. A source flags
// in its snapshots the holdings it had before the receiver was on its ring: the
// owner then was another node, which announced them. In the first snapshot of a
// source the receiver has never heard of (by name and epoch) those are taken as
// announced: they give Member callbacks but no webhook. Everything else, and
// everything in later snapshots (a node back from the dead), is new.
//
// What can be lost or duplicated (docs/pusher.md, "Cluster"):
//
//   - kill -9 of a node: its holdings go at the next tick of each node that sees it
//     gone (member_removed/channel_vacated after Grace on the owner). A webhook
//     handed to Webhook by a node that dies before sending it is lost; a debounce
//     the dead node had started is finished by the new owner (same table).
//   - freeze (SIGSTOP) longer than the failure detector: as a kill; when it
//     resumes it re-adds its holdings (member_added again after Grace). Its own
//     view is stale until the others' snapshots reach it; in that time it may
//     emit webhooks it no longer owns: duplicates.
//   - partition: each side treats the other as gone and its owners emit for their
//     side: removed/vacated on each side for the other's holdings, and duplicates
//     of occupied/added when the sides merge for channels seen on one side only.
//   - flapping membership: a node out and in within Grace changes nothing visible
//     in webhooks; Member callbacks follow each change.
//   - two nodes that see different rings for a moment can both or neither think
//     they own a channel: a transition in that moment may be duplicated or lost.
//   - a change shorter than a tick is not seen at all.
//
// Bounds (nothing a peer or a client sends grows without one, every drop counted
// in longlink_pusher_state_dropped_total{reason}): this node's subscriptions
// (maxPusherSubs; its channels and members as a peer accepts them from one source),
// each source's holdings here (maxPusherSrcChannels, maxPusherSrcMembers), the
// table's records (maxPusherChannels, maxPusherMembers, a record lingering for Grace
// after its last holder included), info (pusher.MaxUserInfo: a longer one is kept as
// no info), names (pusher's limits: app 256, channel 200, user 128 bytes), each
// feed's unsent delta (maxFeedPending, then a snapshot), a count answer (4 MiB).
//
// Who owns what: lmu guards the local table and the dirty keys (loops, run, count
// queries); cmu guards the cluster table, the sources and the debounce queue (feed
// requests on cluster goroutines, run, readers on any goroutine); run alone owns the
// feeds and the ring it last saw; sentMu guards the finished feed requests.

// PusherHooks is what the node gives the hub for Pusher channels (Config.Pusher;
// nil: Pusher off, every Pusher* method is a cheap no-op or an empty answer, and
// a peer's Pusher feed is acknowledged and ignored).
type PusherHooks struct {
	// Member is called when a user becomes a member of presence channel (app,
	// channel) anywhere in the cluster (its first connection on any node,
	// added=true) or stops being one (its last connection anywhere left, or the
	// node holding it died or left, added=false; m.Info is nil then). Called on
	// the hub's Pusher goroutine, in the order this node learned the changes, for
	// this node's own connections too; must not block. m.Info is the hub's copy:
	// do not modify it. Nil: not called.
	Member func(app, channel string, m pusher.Member, added bool)
	// Webhook is called on exactly one node of the cluster, the owner on the ring
	// of RoomStream(loop.PusherRoom(app, channel)), for each cluster-wide
	// transition: "channel_occupied" (first subscriber anywhere),
	// "channel_vacated" (none anywhere for Grace), "member_added" (a user's first
	// connection anywhere), "member_removed" (none for Grace). userID is "" for
	// channel events. Called on the Pusher goroutine; must not block. Nil: not
	// called.
	Webhook func(app, name, channel, userID string)
	// Grace is the debounce of channel_vacated and member_removed: a channel or
	// member back within it produces neither event. Zero means 3s (Pusher's
	// documented "up to three seconds").
	Grace time.Duration
}

// Pusher webhook names (PusherHooks.Webhook).
const (
	PusherChannelOccupied = "channel_occupied"
	PusherChannelVacated  = "channel_vacated"
	PusherMemberAdded     = "member_added"
	PusherMemberRemoved   = "member_removed"
)

const (
	defaultPusherGrace = 3 * time.Second
	pusherTick         = 25 * time.Millisecond
	// pusherRetry spaces snapshots to a peer that answered resync (it may not see
	// this node alive yet, and would refuse each one).
	pusherRetry = 200 * time.Millisecond

	maxPusherSubs        = 1 << 22 // this node's (connection, channel) subscriptions
	maxPusherSrcChannels = 1 << 19 // channels one node may hold in this node's table
	maxPusherSrcMembers  = 1 << 20 // members one node may hold in this node's table
	maxPusherChannels    = 1 << 20 // channel records in the table
	maxPusherMembers     = 1 << 21 // member records in the table
	maxPusherDirty       = 1 << 16 // local dirty keys before a full comparison
	maxPusherCountsBytes = 4 << 20 // one node's subscription-count answer
	maxPusherAppID       = 256     // pusher.ParseApp's limit
)

// pusherLimits are the bounds above; a test lowers them.
type pusherLimits struct {
	subs, srcChannels, srcMembers, channels, members, dirty, countsBytes int
}

type pchKey struct{ app, channel string }

// pmKey is a member (user != "") or, with user "", a channel.
type pmKey struct{ app, channel, user string }

// plChan is one local channel: its subscribed connections and presence members.
type plChan struct {
	socks map[string]string  // socket id -> user id ("" outside presence channels)
	users map[string]*plUser // presence members with a connection here
}

type plUser struct {
	n    int    // connections here
	info []byte // of the first of them
}

// prec is a record of the cluster table: a channel (user "") or a member.
type prec struct {
	app, channel, user string
	holders            []pholder        // nodes holding it (few)
	members            map[string]*prec // a channel's members
	nlive              int              // a channel's members with a holder
	info               []byte           // a member's info while it is one

	dirty   bool      // in pusherState.dirty
	told    bool      // a member: Member(added) was called last
	hooked  bool      // announced (occupied/added) and not yet announced gone
	inDue   bool      // in the debounce queue
	deleted bool      // removed from the table
	emptyAt time.Time // when it lost its last holder
	owner   string    // owner when its debounce started
}

type pholder struct {
	node string
	info []byte
}

// psrc is what one node holds in the table, by generation of the snapshot that
// last stated it; for this node, by the publication that made it (pubSeq).
type psrc struct {
	epoch, seq uint64
	gen        uint64
	first      bool // its first snapshot here since (name, epoch) was first heard of
	broken     bool // a malformed request: the next delta is answered resync
	chans      map[pchKey]uint64
	members    map[pmKey]uint64
}

type knownSrc struct {
	epoch uint64
	at    time.Time // last seen on the ring
}

type pdue struct {
	r  *prec
	at time.Time
}

// pusherState is the hub's Pusher channel state; nil when Config.Pusher is nil.
type pusherState struct {
	h     *Hub
	hooks PusherHooks
	self  string
	epoch uint64
	m     *pusherMetrics
	lim   pusherLimits
	stop  chan struct{}
	done  chan struct{}
	once  sync.Once
	wg    sync.WaitGroup // feed requests in flight

	lmu     sync.Mutex
	local   map[string]map[string]*plChan // app -> channel
	nsubs   int
	nlch    int // local channels
	nlm     int // local members
	dirtyCh map[pchKey]struct{}
	dirtyM  map[pmKey]struct{}
	rescan  bool

	// owned by run
	feeds   map[string]*pfeed
	members []string // the ring's members at the last tick
	pubSeq  uint64   // publications of this node's holdings (under cmu too)

	sentMu sync.Mutex
	sent   []psent

	cmu     sync.RWMutex
	apps    map[string]map[string]*prec // app -> channel -> record
	nch, nm int                         // records
	srcs    map[string]*psrc
	known   map[string]knownSrc
	alive   []string   // ring members (self included), as run last saw them
	ring    *ringState // for owners
	dirty   []*prec    // records changed since the last tick, in order
	due     []pdue     // debounces, oldest first from dueHead
	dueHead int
}

type pusherMetrics struct {
	limit, localLimit, infoLarge, invalid *metrics.Counter
	resyncs, failures, rescans            *metrics.Counter
	hooks                                 map[string]*metrics.Counter
}

// newPusherState creates the Pusher metrics (always, so that a node exports them
// whether or not it uses Pusher) and, when cfg.Pusher is set, the state and its
// goroutine.
func newPusherState(h *Hub, cfg Config) *pusherState {
	set := cfg.Metrics
	m := &pusherMetrics{
		limit:      set.NewCounter(`longlink_pusher_state_dropped_total{reason="limit"}`),
		localLimit: set.NewCounter(`longlink_pusher_state_dropped_total{reason="local_limit"}`),
		infoLarge:  set.NewCounter(`longlink_pusher_state_dropped_total{reason="info_too_large"}`),
		invalid:    set.NewCounter(`longlink_pusher_state_dropped_total{reason="invalid"}`),
		resyncs:    set.NewCounter(`longlink_pusher_state_feed_resyncs_total`),
		failures:   set.NewCounter(`longlink_pusher_state_feed_failures_total`),
		rescans:    set.NewCounter(`longlink_pusher_state_local_rescans_total`),
		hooks:      map[string]*metrics.Counter{},
	}
	for _, name := range []string{PusherChannelOccupied, PusherChannelVacated, PusherMemberAdded, PusherMemberRemoved} {
		m.hooks[name] = set.NewCounter(`longlink_pusher_state_webhooks_total{event="` + name + `"}`)
	}
	var p *pusherState
	if cfg.Pusher != nil {
		p = &pusherState{
			h: h, hooks: *cfg.Pusher, self: cfg.NodeName, epoch: uint64(time.Now().UnixNano()), m: m,
			lim: pusherLimits{subs: maxPusherSubs, srcChannels: maxPusherSrcChannels, srcMembers: maxPusherSrcMembers,
				channels: maxPusherChannels, members: maxPusherMembers, dirty: maxPusherDirty, countsBytes: maxPusherCountsBytes},
			stop: make(chan struct{}), done: make(chan struct{}),
			local: map[string]map[string]*plChan{}, dirtyCh: map[pchKey]struct{}{}, dirtyM: map[pmKey]struct{}{},
			feeds: map[string]*pfeed{},
			apps:  map[string]map[string]*prec{}, srcs: map[string]*psrc{}, known: map[string]knownSrc{},
		}
		if p.hooks.Grace == 0 {
			p.hooks.Grace = defaultPusherGrace
		}
		p.srcs[p.self] = newSrc(p.epoch)
	}
	set.NewGauge(`longlink_pusher_state_channels`, func() float64 { return float64(p.records(false)) })
	set.NewGauge(`longlink_pusher_state_members`, func() float64 { return float64(p.records(true)) })
	set.NewGauge(`longlink_pusher_state_local_subscriptions`, func() float64 {
		if p == nil {
			return 0
		}
		p.lmu.Lock()
		defer p.lmu.Unlock()
		return float64(p.nsubs)
	})
	if p != nil {
		go p.run()
	}
	return p
}

func newSrc(epoch uint64) *psrc {
	return &psrc{epoch: epoch, chans: map[pchKey]uint64{}, members: map[pmKey]uint64{}}
}

func (p *pusherState) records(members bool) int {
	if p == nil {
		return 0
	}
	p.cmu.RLock()
	defer p.cmu.RUnlock()
	if members {
		return p.nm
	}
	return p.nch
}

func (p *pusherState) close() {
	if p == nil {
		return
	}
	p.once.Do(func() { close(p.stop) })
	<-p.done
}

// validPusherKey checks the names a node or a peer gives (pusher's limits; the
// loop and the protocol layer have checked a local client's already).
func validPusherKey(app, channel, user string, member bool) bool {
	if app == "" || len(app) > maxPusherAppID || channel == "" || len(channel) > pusher.MaxChannelName {
		return false
	}
	return !member || (user != "" && len(user) <= pusher.MaxUserID)
}

// PusherJoin records that a local connection (socketID) subscribed to (app,
// channel); m is its presence member on presence- channels, nil on others. Called
// on the connection's event loop: it never blocks (a map update under a short
// lock); the cluster learns of it from the Pusher goroutine within a tick or so. A
// second join of the same socket and channel is ignored. Over this node's bounds
// the subscription is not recorded (longlink_pusher_state_dropped_total
// {reason="local_limit"}) and its leave is ignored; an info over
// pusher.MaxUserInfo is kept as none (reason="info_too_large").
func (h *Hub) PusherJoin(app, channel, socketID string, m *pusher.Member) {
	p := h.ps
	if p == nil {
		return
	}
	user := ""
	var info []byte
	if m != nil {
		user, info = m.ID, m.Info
	}
	if socketID == "" || !validPusherKey(app, channel, user, m != nil) {
		p.m.invalid.Inc()
		return
	}
	if len(info) > pusher.MaxUserInfo {
		p.m.infoLarge.Inc()
		info = nil
	}
	p.lmu.Lock()
	defer p.lmu.Unlock()
	c := p.local[app][channel]
	var u *plUser
	if c != nil {
		if _, dup := c.socks[socketID]; dup {
			return
		}
		u = c.users[user]
	}
	if p.nsubs >= p.lim.subs || (c == nil && p.nlch >= p.lim.srcChannels) || (m != nil && u == nil && p.nlm >= p.lim.srcMembers) {
		p.m.localLimit.Inc()
		return
	}
	if c == nil {
		chs := p.local[app]
		if chs == nil {
			chs = map[string]*plChan{}
			p.local[app] = chs
		}
		c = &plChan{socks: map[string]string{}}
		chs[channel] = c
		p.nlch++
		p.markLocal(pmKey{app, channel, ""})
	}
	c.socks[socketID] = user
	p.nsubs++
	if m == nil {
		return
	}
	if u == nil {
		if c.users == nil {
			c.users = map[string]*plUser{}
		}
		u = &plUser{info: slices.Clone(info)}
		c.users[user] = u
		p.nlm++
		p.markLocal(pmKey{app, channel, user})
	}
	u.n++
}

// PusherLeave records that the connection left the channel (unsubscribe or close).
// userID is the one given at join ("" outside presence channels); the hub uses the
// one it recorded. A leave without a recorded join is ignored. Never blocks.
func (h *Hub) PusherLeave(app, channel, socketID, userID string) {
	p := h.ps
	if p == nil {
		return
	}
	p.lmu.Lock()
	defer p.lmu.Unlock()
	c := p.local[app][channel]
	if c == nil {
		return
	}
	user, ok := c.socks[socketID]
	if !ok {
		return
	}
	delete(c.socks, socketID)
	p.nsubs--
	if u := c.users[user]; user != "" && u != nil {
		if u.n--; u.n == 0 {
			delete(c.users, user)
			p.nlm--
			p.markLocal(pmKey{app, channel, user})
		}
	}
	if len(c.socks) == 0 {
		delete(p.local[app], channel)
		if len(p.local[app]) == 0 {
			delete(p.local, app)
		}
		p.nlch--
		p.markLocal(pmKey{app, channel, ""})
	}
}

// markLocal notes a local holding that started or ended. Called with lmu held.
func (p *pusherState) markLocal(k pmKey) {
	if p.rescan {
		return
	}
	if len(p.dirtyCh)+len(p.dirtyM) >= p.lim.dirty {
		p.rescan = true
		clear(p.dirtyCh)
		clear(p.dirtyM)
		return
	}
	if k.user == "" {
		p.dirtyCh[pchKey{k.app, k.channel}] = struct{}{}
	} else {
		p.dirtyM[k] = struct{}{}
	}
}

// PusherMembers returns the presence channel's members cluster-wide as this node
// knows them now (each user once, with the info it became a member with), sorted
// by id; nil for none. Infos are the hub's copies: do not modify them. Any
// goroutine.
func (h *Hub) PusherMembers(app, channel string) []pusher.Member {
	p := h.ps
	if p == nil {
		return nil
	}
	// This node's own members come from its local table, which a join or leave
	// changes at once, not from the cluster table, which learns them a tick later:
	// a subscriber is then told of a member who joined on this node just before it
	// (and not of one who just left), in the order they did.
	// A member keeps the info it became a member with (the cluster table's) once the
	// table has it.
	var local map[string][]byte
	p.lmu.Lock()
	if lc := p.local[app][channel]; lc != nil && len(lc.users) > 0 {
		local = make(map[string][]byte, len(lc.users))
		for user, u := range lc.users {
			local[user] = u.info
		}
	}
	p.lmu.Unlock()
	var out []pusher.Member
	p.cmu.RLock()
	if c := p.apps[app][channel]; c != nil && c.nlive > 0 {
		for _, m := range c.members {
			if len(m.holders) == 0 {
				continue
			}
			if _, here := local[m.user]; here || heldElsewhere(m.holders, p.self) {
				out = append(out, pusher.Member{ID: m.user, Info: m.info})
				delete(local, m.user)
			}
		}
	}
	p.cmu.RUnlock()
	for user, info := range local {
		out = append(out, pusher.Member{ID: user, Info: info})
	}
	slices.SortFunc(out, func(a, b pusher.Member) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// heldElsewhere reports whether a node other than self holds the member.
func heldElsewhere(holders []pholder, self string) bool {
	for _, h := range holders {
		if h.node != self {
			return true
		}
	}
	return false
}

// PusherMemberCount is len(PusherMembers(app, channel)).
func (h *Hub) PusherMemberCount(app, channel string) int {
	return len(h.PusherMembers(app, channel))
}

// PusherOccupied returns the app's channels with at least one subscriber anywhere
// in the cluster, as this node knows, whose names start with prefix, sorted. Any
// goroutine.
func (h *Hub) PusherOccupied(app, prefix string) []string {
	p := h.ps
	if p == nil {
		return nil
	}
	var out []string
	p.cmu.RLock()
	for name, c := range p.apps[app] {
		if len(c.holders) > 0 && strings.HasPrefix(name, prefix) {
			out = append(out, name)
		}
	}
	p.cmu.RUnlock()
	slices.Sort(out)
	return out
}

// PusherChannelOccupied reports whether the app's channel has a subscriber
// anywhere in the cluster, as this node knows: PusherOccupied for one name, without
// walking the app's channels (the HTTP API asks it per channel of a trigger). Any
// goroutine.
func (h *Hub) PusherChannelOccupied(app, channel string) bool {
	p := h.ps
	if p == nil {
		return false
	}
	p.cmu.RLock()
	defer p.cmu.RUnlock()
	c := p.apps[app][channel]
	return c != nil && len(c.holders) > 0
}

// pusherCounts is one node's answer to opPusherCounts.
type pusherCounts struct {
	Counts  map[string]int `json:"counts"`
	TooMany bool           `json:"too_many,omitempty"`
}

// PusherSubscriptionCounts returns how many connections are subscribed to each of
// the app's channels whose names start with prefix (exactly channel prefix when
// exact is true), summed over every alive node: this node's own counts and each
// peer's, asked in parallel. It blocks up to QueryTimeout; an error (503) when a
// node did not answer, or (400) when more channels match than one node may answer
// for (4 MiB of names). Channels without subscribers are left out.
func (h *Hub) PusherSubscriptionCounts(app, prefix string, exact bool) (map[string]int, error) {
	p := h.ps
	if p == nil {
		return map[string]int{}, nil
	}
	own := p.localCounts(app, prefix, exact)
	if own.TooMany {
		return nil, errTooManyChannels(prefix)
	}
	out := own.Counts
	arg := wbuf(nil).str(app).str(prefix).byte1(byte(b2i(exact)))
	answers, missing := h.ask(h.remote.AliveNodes(), opPusherCounts, arg)
	for node, b := range answers {
		var a pusherCounts
		if json.Unmarshal(b, &a) != nil {
			missing = append(missing, node)
			continue
		}
		if a.TooMany {
			return nil, errTooManyChannels(prefix)
		}
		for ch, n := range a.Counts {
			out[ch] += n
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return nil, &statusError{503, fmt.Sprintf("nodes %s did not answer; subscription counts would be short", strings.Join(missing, ", "))}
	}
	return out, nil
}

func errTooManyChannels(prefix string) error {
	return &statusError{400, fmt.Sprintf("too many channels start with %q to count; use a longer prefix", prefix)}
}

// localCounts counts this node's subscriptions per matching channel, up to the
// answer's bound. It holds lmu for a walk of the app's local channels.
func (p *pusherState) localCounts(app, prefix string, exact bool) pusherCounts {
	out := pusherCounts{Counts: map[string]int{}}
	p.lmu.Lock()
	defer p.lmu.Unlock()
	if exact {
		if c := p.local[app][prefix]; c != nil {
			out.Counts[prefix] = len(c.socks)
		}
		return out
	}
	size := 0
	for name, c := range p.local[app] {
		if !strings.HasPrefix(name, prefix) {
			continue
		}
		if size += len(name) + 16; size > p.lim.countsBytes {
			return pusherCounts{TooMany: true}
		}
		out.Counts[name] = len(c.socks)
	}
	return out
}

// onCounts answers a peer's opPusherCounts: {app, prefix, exact}.
func (p *pusherState) onCounts(arg []byte) []byte {
	r := &rbuf{b: arg}
	app, prefix, exact := r.str(), r.str(), r.byte1()
	if r.err != nil || len(r.b) != 0 {
		return nil
	}
	out := pusherCounts{Counts: map[string]int{}}
	if p != nil {
		out = p.localCounts(app, prefix, exact == 1)
	}
	b, err := json.Marshal(out)
	if err != nil {
		panic("BUG: hub: cannot encode pusher counts: " + err.Error())
	}
	return b
}

// pusherOwner is the node that emits webhooks for a channel on ring rs.
func pusherOwner(rs *ringState, app, channel string) string {
	return rs.ring.Owner(RoomStream(loop.PusherRoom(app, channel)))
}
