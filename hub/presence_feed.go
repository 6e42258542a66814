package hub

import (
	"context"
	"sync"
	"time"

	"longlink/webhook"
)

// The feeds of presence.go on the wire. A request is
//
//	opFeed, channel, epoch, base, flags, ops...
//
// epoch identifies the sending process; base is how many requests of this feed the
// destination has applied since the last snapshot (0 with flagReset, which starts
// one); ops run to the end. The answer is one byte, feedOK or feedResync.
const (
	opFeed    byte = 'F'
	flagReset byte = 1
)

type feedReq struct {
	key   feedKey
	f     *feed
	reqs  [][]byte
	adds  []string
	reset bool
	err   error
	resyn bool
}

// sendRound sends every feed that has something to say, or is due a keepalive:
// feeds in parallel, each feed's requests in order. It returns when all have
// answered or timed out (feedTimeout each).
func (p *presence) sendRound(now time.Time) {
	var work []*feedReq
	for k, f := range p.feeds {
		if !f.reset && len(f.ops) == 0 && now.Sub(f.last) < feedKeepalive {
			continue
		}
		f.last = now
		r := &feedReq{key: k, f: f, reset: f.reset}
		var ops []wbuf
		if f.reset {
			ops, r.adds = p.snapshot(k)
		} else {
			ops, r.adds = f.ops, f.adds
		}
		f.ops, f.size, f.adds = nil, 0, nil
		r.reqs = p.chunk(k.ch, f.seq, r.reset, ops)
		work = append(work, r)
	}
	if len(work) == 0 {
		return
	}
	var wg sync.WaitGroup
	for _, r := range work {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, body := range r.reqs {
				ctx, cancel := context.WithTimeout(context.Background(), feedTimeout)
				ans, err := p.h.remote.Request(ctx, r.key.node, body)
				cancel()
				if err != nil || len(ans) != 1 {
					r.err = errWire
					if err != nil {
						r.err = err
					}
					return
				}
				if ans[0] == feedResync {
					r.resyn = true
					return
				}
			}
		}()
	}
	wg.Wait()
	for _, r := range work {
		f := r.f
		switch {
		case r.err != nil:
			p.m.failures.Inc()
			f.reset = true
			f.ops, f.size, f.adds = nil, 0, nil
			if !contains(p.members, r.key.node) {
				delete(p.feeds, r.key)
			}
		case r.resyn:
			p.m.resyncs.Inc()
			f.reset = true
			f.ops, f.size, f.adds = nil, 0, nil
		default:
			if r.reset {
				f.seq, f.reset = 0, false
			}
			f.seq += uint64(len(r.reqs))
			for _, u := range r.adds {
				if _, ok := p.localUser[u]; ok {
					p.localUser[u] = true
				}
			}
			if f.release {
				delete(p.feeds, r.key)
			}
		}
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// snapshot is everything the destination of feed k should know of this node: all
// its open connections (its watcher), or its users that k's node owns, with the
// recent drops of users it owns (so an owner that took over a user in its grace
// still says offline). A released feed's snapshot is empty.
func (p *presence) snapshot(k feedKey) (ops []wbuf, adds []string) {
	f := p.feeds[k]
	if f != nil && f.release {
		return nil, nil
	}
	if k.ch == chWatch {
		for id, c := range p.local {
			ops = append(ops, wbuf(nil).byte1(fOpened).str(id).str(c.user).str(c.remote))
		}
		return ops, nil
	}
	for u, acked := range p.localUser {
		if p.lastOwner(u) != k.node {
			continue
		}
		if acked {
			ops = append(ops, wbuf(nil).byte1(fHave).str(u))
		} else {
			ops = append(ops, wbuf(nil).byte1(fAdd).str(u))
			adds = append(adds, u)
		}
	}
	for g, at := range p.gone {
		if p.lastOwner(g.user) == k.node {
			ops = append(ops, wbuf(nil).byte1(fDrop).str(g.node).str(g.user).uv(uint64(at.UnixNano())))
		}
	}
	return ops, adds
}

// chunk packs ops into requests of at most about feedChunk bytes; a snapshot's
// first request resets, the rest continue it. There is always at least one request
// (an empty delta is the keepalive).
func (p *presence) chunk(ch byte, base uint64, reset bool, ops []wbuf) [][]byte {
	var reqs [][]byte
	head := func() wbuf {
		var flags byte
		if reset && len(reqs) == 0 {
			flags = flagReset
		}
		b := base + uint64(len(reqs))
		if reset {
			b = uint64(len(reqs))
		}
		return wbuf{opFeed, ch}.uv(p.epoch).uv(b).byte1(flags)
	}
	cur := head()
	n := 0
	for _, op := range ops {
		if n > 0 && len(cur)+len(op) > feedChunk {
			reqs = append(reqs, cur)
			cur = head()
			n = 0
		}
		cur = append(cur, op...)
		n++
	}
	return append(reqs, cur)
}

// onFeed applies a feed request from a peer (a cluster answering goroutine).
func (p *presence) onFeed(from string, arg []byte) []byte {
	if p == nil {
		// Webhooks are off here (every node should be configured alike): nothing to
		// keep, and an answer keeps the source from waiting for a timeout.
		return []byte{feedOK}
	}
	if len(arg) < 1 {
		return nil
	}
	r := &rbuf{b: arg[1:]}
	ch := arg[0]
	epoch, base, flags := r.uv(), r.uv(), r.byte1()
	if r.err != nil || (ch != chWatch && ch != chPresence) {
		return nil
	}
	now := time.Now()
	p.omu.Lock()
	defer p.omu.Unlock()
	k := feedKey{from, ch}
	src := p.srcs[k]
	if flags&flagReset != 0 {
		src = &source{epoch: epoch}
		p.srcs[k] = src
		if d, ok := p.died[from]; ok && d.epoch == epoch {
			// The node was declared dead and is back: what was reported of it is undone.
			if ch == chPresence && d.presence {
				src.returned, d.presence = true, false
			}
			if ch == chWatch && d.conns != nil {
				src.returned = true
			}
			p.died[from] = d
		}
		if ch == chWatch {
			p.watched[from] = &watchedNode{conns: map[string]connRec{}}
		} else {
			for u, rec := range p.records {
				if contains(rec.holders, from) {
					p.dropHolder(u, from, now)
				}
			}
		}
	} else if src == nil || src.epoch != epoch || src.seq != base {
		return []byte{feedResync}
	}
	src.seq++
	var died map[string]connRec
	if ch == chWatch && src.returned {
		died = p.died[from].conns
	}
	for len(r.b) > 0 && r.err == nil {
		switch op := r.byte1(); op {
		case fOpened:
			id, user, rem := r.str(), r.str(), r.str()
			w := p.watched[from]
			if r.err != nil || w == nil {
				break
			}
			if len(w.conns) >= maxWatchedConns {
				p.m.limitDrops.Inc()
				break
			}
			w.conns[id] = connRec{user, rem}
			if c, ok := died[id]; ok {
				delete(died, id)
				p.sink.Emit(webhook.Event{Type: webhook.ConnectionOpened, Node: from, Reporter: p.self, User: c.user,
					Connection: id, Remote: c.remote, Reason: "resumed: node " + from + " is back after being declared dead"})
			}
		case fClosed:
			id := r.str()
			if w := p.watched[from]; w != nil {
				delete(w.conns, id)
			}
		case fAdd, fHave:
			u := r.str()
			if r.err == nil && u != "" {
				p.addHolder(u, from, op == fAdd, src.returned)
			}
		case fDrop:
			node, u, at := r.str(), r.str(), r.uv()
			if r.err == nil {
				p.dropHolder(u, node, time.Unix(0, int64(at)))
			}
		default:
			r.err = errWire
		}
	}
	if r.err != nil {
		// A malformed feed: forget the source, which resends a snapshot.
		delete(p.srcs, k)
		p.h.log.Warn("hub: malformed presence feed", "from", from)
		return []byte{feedResync}
	}
	return []byte{feedOK}
}
