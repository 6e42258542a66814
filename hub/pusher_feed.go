package hub

import (
	"bytes"
	"context"
	"slices"
	"time"

	"longlink/pusher"
)

// The Pusher goroutine, the cluster table and the feeds of pusher_state.go.
//
// A feed request is
//
//	opPusherFeed, epoch, base, flags, ops...
//
// as presence's (presence_feed.go): epoch identifies the sending process, base is
// how many requests of this feed the receiver has applied since the last snapshot
// (0 on the snapshot's first request, flagged pfReset), and the last request of a
// snapshot is flagged pfLast: the receiver then removes what the source held that
// the snapshot did not state. The answer is one byte, feedOK or feedResync.
const (
	opPusherFeed   byte = 'P' // {epoch, base, flags, ops} -> feedOK or feedResync
	opPusherCounts byte = 'Q' // {app, prefix, exact}      -> pusherCounts (JSON)

	pfReset byte = 1
	pfLast  byte = 2

	pOccupy byte = 1 // app, channel: the source holds a subscriber
	pVacate byte = 2 // app, channel: it holds none any more
	pJoin   byte = 3 // app, channel, user, info: the source holds the member (or its info changed)
	pLeave  byte = 4 // app, channel, user
	// pOld, or'ed into a snapshot's pOccupy or pJoin: the source held it before
	// the receiver was on its ring.
	pOld byte = 0x80
)

// pfeed is what this node tells one peer; busy while a request is in flight.
type pfeed struct {
	feed
	busy      bool
	notBefore time.Time // no request before (after a resync)
	since     uint64    // pubSeq when the peer came on this node's ring
}

// psent is a finished feed round, handed from its goroutine to run.
type psent struct {
	node   string
	f      *pfeed
	reset  bool
	n      int // requests applied
	err    error
	resync bool
}

// pchange is a local holding as it is now (present) for a key that changed.
type pchange struct {
	k       pmKey
	present bool
	info    []byte
}

// pevent is a callback to make once cmu is released.
type pevent struct {
	hook         string // a webhook's name; "" for a Member callback
	app, channel string
	m            pusher.Member
	added        bool
}

func (p *pusherState) run() {
	defer close(p.done)
	t := time.NewTicker(pusherTick)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			p.wg.Wait()
			return
		case <-t.C:
		}
		now := time.Now()
		p.collectSent(now)
		p.checkRing(now)
		p.publishLocal(now)
		p.fire(p.settle(now))
		p.sendRound(now)
	}
}

// checkRing follows the ring: sources no longer on it lose their holdings, and a
// peer new on it gets a feed (a snapshot first). Peers that stay on it keep theirs:
// every peer is told everything, so where owners moved does not change what it
// should know, and one that lost track of this node answers resync.
func (p *pusherState) checkRing(now time.Time) {
	rs := p.h.st.ringNow()
	members := rs.ring.Members()
	p.cmu.Lock()
	p.ring = rs
	if p.alive != nil && slices.Equal(members, p.alive) {
		p.cmu.Unlock()
		return
	}
	p.alive = slices.Clone(members)
	for n, s := range p.srcs {
		if n != p.self && !slices.Contains(members, n) {
			p.dropSource(n, s, now)
		}
	}
	for n, k := range p.known {
		if slices.Contains(members, n) {
			k.at = now
			p.known[n] = k
		} else if now.Sub(k.at) > diedMemory {
			delete(p.known, n)
		}
	}
	p.cmu.Unlock()
	p.members = slices.Clone(members)
	for _, n := range members {
		if n != p.self && p.feeds[n] == nil {
			p.feeds[n] = &pfeed{feed: feed{reset: true}, since: p.pubSeq}
		}
	}
	for n := range p.feeds {
		if !slices.Contains(members, n) {
			delete(p.feeds, n)
		}
	}
}

// takeLocal returns the local holdings whose keys changed since the last call, or
// all of them (full) after the dirty set overflowed.
func (p *pusherState) takeLocal() (changes []pchange, full bool) {
	p.lmu.Lock()
	defer p.lmu.Unlock()
	if p.rescan {
		p.rescan = false
		p.m.rescans.Inc()
		for app, chs := range p.local {
			for name, c := range chs {
				changes = append(changes, pchange{k: pmKey{app, name, ""}, present: true})
				for u, pu := range c.users {
					changes = append(changes, pchange{k: pmKey{app, name, u}, present: true, info: pu.info})
				}
			}
		}
		return changes, true
	}
	for k := range p.dirtyCh {
		changes = append(changes, pchange{k: pmKey{k.app, k.channel, ""}, present: p.local[k.app][k.channel] != nil})
	}
	for k := range p.dirtyM {
		ch := pchange{k: k}
		if c := p.local[k.app][k.channel]; c != nil {
			if u := c.users[k.user]; u != nil {
				ch.present, ch.info = true, u.info
			}
		}
		changes = append(changes, ch)
	}
	clear(p.dirtyCh)
	clear(p.dirtyM)
	return changes, false
}

// changeRank orders a tick's changes as Pusher orders its events: a channel
// occupied before its members are added, members removed before it is vacated.
func changeRank(c *pchange) int {
	switch {
	case c.present && c.k.user == "":
		return 0
	case c.present:
		return 1
	case c.k.user != "":
		return 2
	}
	return 3
}

// publishLocal applies this node's changed holdings to its own table and queues
// them on every peer's feed.
func (p *pusherState) publishLocal(now time.Time) {
	changes, full := p.takeLocal()
	if len(changes) == 0 && !full {
		return
	}
	p.cmu.Lock()
	s := p.srcs[p.self]
	if full {
		want := make(map[pmKey]struct{}, len(changes))
		for _, c := range changes {
			want[c.k] = struct{}{}
		}
		for mk := range s.members {
			if _, ok := want[mk]; !ok {
				changes = append(changes, pchange{k: mk})
			}
		}
		for ck := range s.chans {
			if k := (pmKey{ck.app, ck.channel, ""}); !mapHas(want, k) {
				changes = append(changes, pchange{k: k})
			}
		}
	}
	slices.SortStableFunc(changes, func(a, b pchange) int { return changeRank(&a) - changeRank(&b) })
	var ops []wbuf
	for i := range changes {
		if op := p.publish(s, &changes[i], now); op != nil {
			ops = append(ops, op)
		}
	}
	p.cmu.Unlock()
	for _, f := range p.feeds {
		for _, op := range ops {
			f.addOp(op)
		}
	}
}

func mapHas(m map[pmKey]struct{}, k pmKey) bool { _, ok := m[k]; return ok }

// publish makes this node's entry in the table what c says, and returns the op
// that tells a peer (nil: nothing changed). Called with cmu held.
func (p *pusherState) publish(s *psrc, c *pchange, now time.Time) wbuf {
	k := c.k
	p.pubSeq++
	s.gen = p.pubSeq
	if k.user == "" {
		_, had := s.chans[pchKey{k.app, k.channel}]
		switch {
		case c.present && !had:
			p.hold(s, p.self, k, nil, false)
			return wbuf(nil).byte1(pOccupy).str(k.app).str(k.channel)
		case !c.present && had:
			p.unhold(s, p.self, k, now)
			return wbuf(nil).byte1(pVacate).str(k.app).str(k.channel)
		}
		return nil
	}
	_, had := s.members[k]
	switch {
	case c.present && (!had || !bytes.Equal(p.heldInfo(k, p.self), c.info)):
		p.hold(s, p.self, k, c.info, false)
		return wbuf(nil).byte1(pJoin).str(k.app).str(k.channel).str(k.user).bytes(c.info)
	case !c.present && had:
		p.unhold(s, p.self, k, now)
		return wbuf(nil).byte1(pLeave).str(k.app).str(k.channel).str(k.user)
	}
	return nil
}

func (p *pusherState) memberRec(k pmKey) *prec {
	if c := p.apps[k.app][k.channel]; c != nil {
		return c.members[k.user]
	}
	return nil
}

// heldInfo is the info node holds member k with. Called with cmu held.
func (p *pusherState) heldInfo(k pmKey, node string) []byte {
	if m := p.memberRec(k); m != nil {
		for _, h := range m.holders {
			if h.node == node {
				return h.info
			}
		}
	}
	return nil
}

func (p *pusherState) markDirty(r *prec) {
	if !r.dirty {
		r.dirty = true
		p.dirty = append(p.dirty, r)
	}
}

// chanRec returns the channel's record, creating it when create and the table has
// room (or exempt: this node's own holdings, bounded by its local limits).
func (p *pusherState) chanRec(app, channel string, exempt bool) *prec {
	chs := p.apps[app]
	if c := chs[channel]; c != nil {
		return c
	}
	if !exempt && p.nch >= p.lim.channels {
		return nil
	}
	if chs == nil {
		chs = map[string]*prec{}
		p.apps[app] = chs
	}
	c := &prec{app: app, channel: channel}
	chs[channel] = c
	p.nch++
	p.markDirty(c)
	return c
}

// hold records that from (source s) holds k: a channel, or a member with info (a
// second hold of the same member updates its info). announced: it was announced
// before this node knew of it. Over a bound it is dropped and counted. Called with
// cmu held.
func (p *pusherState) hold(s *psrc, from string, k pmKey, info []byte, announced bool) {
	exempt := from == p.self
	if k.user == "" {
		ck := pchKey{k.app, k.channel}
		if _, ok := s.chans[ck]; ok {
			s.chans[ck] = s.gen
			return
		}
		if !exempt && len(s.chans) >= p.lim.srcChannels {
			p.m.limit.Inc()
			return
		}
		c := p.chanRec(k.app, k.channel, exempt)
		if c == nil {
			p.m.limit.Inc()
			return
		}
		s.chans[ck] = s.gen
		c.holders = append(c.holders, pholder{node: from})
		if len(c.holders) == 1 {
			p.becameLive(c, announced)
		}
		return
	}
	if _, ok := s.members[k]; ok {
		if !exempt { // this node's keeps the publication that made it
			s.members[k] = s.gen
		}
		m := p.memberRec(k)
		for i := range m.holders {
			if m.holders[i].node == from {
				m.holders[i].info = info
			}
		}
		return
	}
	if !exempt && len(s.members) >= p.lim.srcMembers {
		p.m.limit.Inc()
		return
	}
	c := p.chanRec(k.app, k.channel, exempt)
	if c == nil {
		p.m.limit.Inc()
		return
	}
	m := c.members[k.user]
	if m == nil {
		if !exempt && p.nm >= p.lim.members {
			p.m.limit.Inc() // c, if new, is dirty: run removes it
			return
		}
		if c.members == nil {
			c.members = map[string]*prec{}
		}
		m = &prec{app: k.app, channel: k.channel, user: k.user}
		c.members[k.user] = m
		p.nm++
		p.markDirty(m)
	}
	s.members[k] = s.gen
	m.holders = append(m.holders, pholder{from, info})
	if len(m.holders) == 1 {
		m.info = info
		c.nlive++
		p.becameLive(m, announced)
	}
}

// becameLive: r has its first holder; announced, it needs no webhook.
func (p *pusherState) becameLive(r *prec, announced bool) {
	r.emptyAt = time.Time{}
	if announced {
		r.hooked = true
	}
	p.markDirty(r)
}

// unhold records that from no longer holds k. Called with cmu held.
func (p *pusherState) unhold(s *psrc, from string, k pmKey, now time.Time) {
	var r *prec
	if k.user == "" {
		ck := pchKey{k.app, k.channel}
		if _, ok := s.chans[ck]; !ok {
			return
		}
		delete(s.chans, ck)
		r = p.apps[k.app][k.channel]
	} else {
		if _, ok := s.members[k]; !ok {
			return
		}
		delete(s.members, k)
		r = p.memberRec(k)
	}
	i := -1
	if r != nil {
		i = slices.IndexFunc(r.holders, func(h pholder) bool { return h.node == from })
	}
	if i < 0 {
		panic("BUG: hub: pusher source " + from + " holds " + k.app + "/" + k.channel + "/" + k.user + " without a record")
	}
	r.holders = slices.Delete(r.holders, i, i+1)
	if len(r.holders) > 0 {
		return // a member keeps the info it became one with
	}
	r.emptyAt = now
	if r.user != "" {
		r.info = nil
		p.apps[k.app][k.channel].nlive--
	}
	p.markDirty(r)
}

// dropSource removes everything node held (it left the ring, or restarted).
// Called with cmu held.
func (p *pusherState) dropSource(node string, s *psrc, now time.Time) {
	for mk := range s.members {
		p.unhold(s, node, mk, now)
	}
	for ck := range s.chans {
		p.unhold(s, node, pmKey{ck.app, ck.channel, ""}, now)
	}
	delete(p.srcs, node)
}

// sweep removes what s held before its current snapshot and did not state again.
func (p *pusherState) sweep(node string, s *psrc, now time.Time) {
	for mk, g := range s.members {
		if g != s.gen {
			p.unhold(s, node, mk, now)
		}
	}
	for ck, g := range s.chans {
		if g != s.gen {
			p.unhold(s, node, pmKey{ck.app, ck.channel, ""}, now)
		}
	}
}

func (p *pusherState) ownerOf(r *prec) string { return pusherOwner(p.ring, r.app, r.channel) }

func (p *pusherState) hookEvent(r *prec, added bool) pevent {
	e := pevent{app: r.app, channel: r.channel, m: pusher.Member{ID: r.user}}
	switch {
	case r.user == "" && added:
		e.hook = PusherChannelOccupied
	case r.user == "":
		e.hook = PusherChannelVacated
	case added:
		e.hook = PusherMemberAdded
	default:
		e.hook = PusherMemberRemoved
	}
	return e
}

// settle turns the records that changed into Member callbacks and announcements,
// starts the debounce of those left without a holder, ends the debounces that are
// due, and forgets records nothing refers to any more. It returns the callbacks
// to make, in order.
func (p *pusherState) settle(now time.Time) []pevent {
	var evs []pevent
	p.cmu.Lock()
	defer p.cmu.Unlock()
	dirty := p.dirty
	p.dirty = nil
	for _, r := range dirty {
		r.dirty = false
		if r.deleted {
			continue
		}
		live := len(r.holders) > 0
		if r.user != "" && live != r.told {
			r.told = live
			m := pusher.Member{ID: r.user}
			if live {
				m.Info = r.info
			}
			evs = append(evs, pevent{app: r.app, channel: r.channel, m: m, added: live})
		}
		switch {
		case live && !r.hooked:
			r.hooked = true
			if p.ownerOf(r) == p.self {
				evs = append(evs, p.hookEvent(r, true))
			}
		case !live && r.hooked:
			// The owner now decides, unless it is gone when the grace ends.
			r.owner = p.ownerOf(r)
			if !r.inDue {
				r.inDue = true
				p.due = append(p.due, pdue{r, r.emptyAt})
			}
		}
		p.maybeDelete(r)
	}
	for p.dueHead < len(p.due) {
		d := p.due[p.dueHead]
		r := d.r
		switch {
		case len(r.holders) > 0: // back within the grace: neither event
			p.dueHead++
			r.inDue = false
			continue
		case !r.emptyAt.Equal(d.at): // back and gone again: its grace restarted
			p.dueHead++
			p.due = append(p.due, pdue{r, r.emptyAt})
			continue
		case now.Sub(r.emptyAt) < p.hooks.Grace:
		default:
			p.dueHead++
			r.inDue, r.hooked = false, false
			emitter := r.owner
			if !slices.Contains(p.alive, emitter) {
				emitter = p.ownerOf(r)
			}
			if emitter == p.self {
				evs = append(evs, p.hookEvent(r, false))
			}
			p.maybeDelete(r)
			continue
		}
		break
	}
	if p.dueHead == len(p.due) {
		clear(p.due)
		p.due, p.dueHead = p.due[:0], 0
	} else if p.dueHead > 1024 && 2*p.dueHead > len(p.due) {
		n := copy(p.due, p.due[p.dueHead:])
		clear(p.due[n:])
		p.due, p.dueHead = p.due[:n], 0
	}
	return evs
}

// maybeDelete removes r from the table when nothing refers to it: no holder, no
// announcement or Member callback to undo, no debounce, not waiting in the dirty
// list. Called with cmu held.
func (p *pusherState) maybeDelete(r *prec) {
	if r.deleted || r.dirty || r.hooked || r.inDue || r.told || len(r.holders) > 0 {
		return
	}
	if r.user != "" {
		c := p.apps[r.app][r.channel]
		delete(c.members, r.user)
		p.nm--
		r.deleted = true
		p.maybeDelete(c)
		return
	}
	if len(r.members) > 0 {
		return
	}
	chs := p.apps[r.app]
	delete(chs, r.channel)
	if len(chs) == 0 {
		delete(p.apps, r.app)
	}
	p.nch--
	r.deleted = true
}

func (p *pusherState) fire(evs []pevent) {
	for i := range evs {
		e := &evs[i]
		if e.hook == "" {
			if p.hooks.Member != nil {
				p.hooks.Member(e.app, e.channel, e.m, e.added)
			}
			continue
		}
		p.m.hooks[e.hook].Inc()
		if p.hooks.Webhook != nil {
			p.hooks.Webhook(e.app, e.hook, e.channel, e.m.ID)
		}
	}
}

// sendRound starts a request on every feed that is idle and has something to say
// or is due a keepalive. It does not wait: each finishes on its own goroutine
// (feedTimeout a request) and is collected at a later tick.
func (p *pusherState) sendRound(now time.Time) {
	for node, f := range p.feeds {
		if f.busy || now.Before(f.notBefore) {
			continue
		}
		if !f.reset && len(f.ops) == 0 && now.Sub(f.last) < feedKeepalive {
			continue
		}
		f.last = now
		reset := f.reset
		ops := f.ops
		if reset {
			ops = p.snapshot(f.since)
		}
		f.ops, f.size, f.reset = nil, 0, false
		reqs := p.chunk(f.seq, reset, ops)
		f.busy = true
		p.wg.Add(1)
		go p.sendFeed(node, f, reset, reqs)
	}
}

func (p *pusherState) sendFeed(node string, f *pfeed, reset bool, reqs [][]byte) {
	defer p.wg.Done()
	res := psent{node: node, f: f, reset: reset}
	for _, body := range reqs {
		ctx, cancel := context.WithTimeout(context.Background(), feedTimeout)
		ans, err := p.h.remote.Request(ctx, node, body)
		cancel()
		if err != nil || len(ans) != 1 {
			res.err = errWire
			if err != nil {
				res.err = err
			}
			break
		}
		if ans[0] == feedResync {
			res.resync = true
			break
		}
		res.n++
	}
	p.sentMu.Lock()
	p.sent = append(p.sent, res)
	p.sentMu.Unlock()
}

// collectSent applies the finished rounds: a failed or refused one makes the next
// a snapshot (its delta is in the table, which the snapshot states).
func (p *pusherState) collectSent(now time.Time) {
	p.sentMu.Lock()
	done := p.sent
	p.sent = nil
	p.sentMu.Unlock()
	for _, r := range done {
		f := r.f
		if p.feeds[r.node] != f {
			continue // the peer left the ring meanwhile
		}
		f.busy = false
		switch {
		case r.err != nil:
			p.m.failures.Inc()
			f.reset, f.ops, f.size = true, nil, 0
		case r.resync:
			p.m.resyncs.Inc()
			f.reset, f.ops, f.size = true, nil, 0
			f.notBefore = now.Add(pusherRetry)
		case r.reset:
			f.seq = uint64(r.n)
		default:
			f.seq += uint64(r.n)
		}
	}
}

// snapshot is everything this node holds, channels first; what it held before
// publication since (the peer was not on its ring) is flagged pOld.
func (p *pusherState) snapshot(since uint64) []wbuf {
	p.cmu.RLock()
	defer p.cmu.RUnlock()
	s := p.srcs[p.self]
	old := func(seq uint64) byte {
		if seq <= since {
			return pOld
		}
		return 0
	}
	ops := make([]wbuf, 0, len(s.chans)+len(s.members))
	for ck, seq := range s.chans {
		ops = append(ops, wbuf(nil).byte1(pOccupy|old(seq)).str(ck.app).str(ck.channel))
	}
	for mk, seq := range s.members {
		ops = append(ops, wbuf(nil).byte1(pJoin|old(seq)).str(mk.app).str(mk.channel).str(mk.user).bytes(p.heldInfo(mk, p.self)))
	}
	return ops
}

// chunk packs ops into requests of at most about feedChunk bytes. There is always
// at least one (an empty delta is the keepalive, an empty snapshot says "nothing").
func (p *pusherState) chunk(base uint64, reset bool, ops []wbuf) [][]byte {
	groups := [][]wbuf{nil}
	size := 0
	for _, op := range ops {
		if g := groups[len(groups)-1]; len(g) > 0 && size+len(op) > feedChunk {
			groups = append(groups, nil)
			size = 0
		}
		groups[len(groups)-1] = append(groups[len(groups)-1], op)
		size += len(op)
	}
	reqs := make([][]byte, len(groups))
	for i, g := range groups {
		var flags byte
		b := base + uint64(i)
		if reset {
			b = uint64(i)
			if i == 0 {
				flags |= pfReset
			}
			if i == len(groups)-1 {
				flags |= pfLast
			}
		}
		req := wbuf{opPusherFeed}.uv(p.epoch).uv(b).byte1(flags)
		for _, op := range g {
			req = append(req, op...)
		}
		reqs[i] = req
	}
	return reqs
}

// onFeed applies a peer's feed request (a cluster answering goroutine).
func (p *pusherState) onFeed(from string, arg []byte) []byte {
	if p == nil {
		// Pusher is off here (every node should be configured alike): nothing to
		// keep, and an answer keeps the source from waiting for a timeout.
		return []byte{feedOK}
	}
	r := &rbuf{b: arg}
	epoch, base, flags := r.uv(), r.uv(), r.byte1()
	if r.err != nil {
		return nil
	}
	now := time.Now()
	p.cmu.Lock()
	defer p.cmu.Unlock()
	if from == p.self || !slices.Contains(p.alive, from) {
		// Not on this node's ring (yet, or any more): what it holds is not counted
		// here; it retries with a snapshot.
		return []byte{feedResync}
	}
	s := p.srcs[from]
	if flags&pfReset != 0 {
		if s == nil || s.epoch != epoch {
			if s != nil {
				p.dropSource(from, s, now) // a new process: the old one's holdings are gone
			}
			k, seen := p.known[from]
			s = newSrc(epoch)
			s.first = !seen || k.epoch != epoch
			p.srcs[from] = s
			p.known[from] = knownSrc{epoch: epoch, at: now}
		}
		s.gen++
		s.seq, s.broken = 0, false
	} else if s == nil || s.broken || s.epoch != epoch || s.seq != base {
		return []byte{feedResync}
	}
	s.seq++
	for len(r.b) > 0 && r.err == nil {
		op := r.byte1()
		announced := op&pOld != 0 && s.first
		op &^= pOld
		switch op {
		case pOccupy, pVacate:
			app, ch := r.str(), r.str()
			if r.err != nil {
				break
			}
			if !validPusherKey(app, ch, "", false) {
				p.m.invalid.Inc()
				continue
			}
			if op == pOccupy {
				p.hold(s, from, pmKey{app, ch, ""}, nil, announced)
			} else {
				p.unhold(s, from, pmKey{app, ch, ""}, now)
			}
		case pJoin:
			app, ch, user, info := r.str(), r.str(), r.str(), r.raw()
			if r.err != nil {
				break
			}
			if !validPusherKey(app, ch, user, true) {
				p.m.invalid.Inc()
				continue
			}
			if len(info) > pusher.MaxUserInfo {
				p.m.infoLarge.Inc()
				info = nil
			}
			// A copy: the request's buffer must not stay pinned by a small info.
			p.hold(s, from, pmKey{app, ch, user}, bytes.Clone(info), announced)
		case pLeave:
			app, ch, user := r.str(), r.str(), r.str()
			if r.err == nil {
				p.unhold(s, from, pmKey{app, ch, user}, now)
			}
		default:
			r.err = errWire
		}
	}
	if r.err != nil {
		// Keep what it held (no flapping) until its snapshot restates it.
		s.broken = true
		p.m.invalid.Inc()
		p.h.log.Warn("hub: malformed pusher feed", "from", from)
		return []byte{feedResync}
	}
	if flags&pfLast != 0 {
		p.sweep(from, s, now)
		s.first = false
	}
	return []byte{feedOK}
}
