package hub

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"longlink/loop"
	"longlink/stream"
)

// OnUpgrade is loop's OnUpgrade: before a connection's 101, the owners of its streams
// learn that this node holds it (the routing delta is flushed first, and links are
// FIFO, so the owner applies it before it answers), and a v2 client gets the heads of
// its streams and what it missed since the positions it presented.
//
// It runs on the loop: when every owner is this node it answers there; otherwise it
// asks the owners from a goroutine and finishes the upgrade from it.
func (h *Hub) OnUpgrade(u *loop.Upgrade) {
	s := h.st
	since, err := parseSince(u.Since)
	if err != nil {
		// Refusing would make a client retry the same URL forever: resume nothing,
		// and the welcome's missing "recovered" tells it so.
		h.m.badSince.Inc()
		h.log.Debug("ignoring since", "conn", u.ConnID, "err", err)
		since = nil
	}
	keys := make([]skey, 0, 2+len(u.Rooms))
	if u.Kind != loop.KindPusher {
		// A Pusher connection has no user (its User is ""), so no user stream.
		keys = append(keys, skey{loop.KeyUser, u.User})
	}
	for _, r := range u.Rooms {
		keys = append(keys, skey{loop.KeyRoom, r})
	}
	if u.V2 {
		keys = append(keys, skey{kind: loop.KeyAll})
	}
	rs := s.ringNow()
	self := h.cfg.NodeName
	remote := false
	for _, k := range keys {
		if k.kind != loop.KeyAll && rs.ring.Owner(k.stream()) != self {
			remote = true
			break
		}
	}
	// A plain client needs no history: only that the owners know it is here, which
	// a node that owns all its streams already does.
	if !u.V2 && !remote {
		u.Done(loop.UpgradeResult{})
		return
	}
	// Inline on the loop only when nothing needs a peer: a node alone. In a cluster
	// even streams this node owns may need their replicas (ensure), off the loop.
	if !remote && len(rs.ring.Members()) == 1 {
		u.Done(s.upgradeResult(u, keys, since, s.readLocal(keys, since)))
		return
	}
	go func() {
		got, err := s.subscribe(keys, since, u.V2)
		if err != nil {
			h.m.subscribeFailures.Inc()
			u.Done(loop.UpgradeResult{Err: &loop.AuthError{Status: 503, Reason: err.Error()}})
			return
		}
		u.Done(s.upgradeResult(u, keys, since, got))
	}()
}

// barrier returns once the owner of stream k knows this node holds a subscriber of
// it: a room joined through the API gets every push accepted after the join returns.
func (s *streams) barrier(k skey) error {
	if len(s.ringNow().ring.Members()) == 1 {
		return nil
	}
	_, err := s.subscribe([]skey{k}, nil, false)
	return err
}

// streamRead is what an owner knows of one stream for a subscriber.
type streamRead struct {
	head      stream.Position
	recovered bool
	entries   []stream.Entry
}

// syncIfUnknown syncs a stream this owner holds no history of, or a stale one, before
// answering a subscriber: a node that just took the stream over (it joined, or came
// back) must not make up a new epoch for a stream the other holders have.
//
// Its round trips to the other holders run without seqMu: held across them, one slow
// or frozen holder would stall every append and subscribe on this node (up to
// syncTimeout and replicaTimeout each) and fill its answer pool. The stream is marked
// syncing instead: the committer retries appends to it, and another subscribe of it
// waits for this one.
func (s *streams) syncIfUnknown(ring *stream.Ring, name string) {
	for {
		if s.store.Has(name) && !s.store.Stale(name) {
			return
		}
		s.seqMu.Lock()
		if s.store.Has(name) && !s.store.Stale(name) {
			s.seqMu.Unlock()
			return
		}
		if wait, ok := s.syncing[name]; ok {
			s.seqMu.Unlock()
			<-wait
			continue
		}
		done := make(chan struct{})
		s.syncing[name] = done
		s.seqMu.Unlock()
		s.syncUnknown(ring, name)
		s.seqMu.Lock()
		delete(s.syncing, name)
		s.seqMu.Unlock()
		close(done)
		return
	}
}

// syncUnknown is syncIfUnknown's work, with name marked syncing: nothing else stamps
// or syncs it meanwhile, and seqMu is taken only to change the store.
func (s *streams) syncUnknown(ring *stream.Ring, name string) {
	got := s.askSync(ring, name)
	s.seqMu.Lock()
	if !s.store.Has(name) || s.store.Stale(name) {
		s.applySync(name, got)
	}
	pos, created := s.store.Create(name)
	s.seqMu.Unlock()
	if !created {
		return
	}
	// A new stream: its replicas learn its epoch now, so one that takes over keeps
	// it (a client's position in an empty stream stays valid).
	holders := ring.Holders(name, s.replicas)
	if len(holders) < 2 {
		return
	}
	b := wbuf{opReplicate}.uv(1)
	e := stream.Entry{}
	b = b.str(name).str(pos.Epoch).entry(&e)
	ctx, cancel := context.WithTimeout(context.Background(), replicaTimeout)
	defer cancel()
	answers, missing := s.h.remote.Ask(ctx, holders[1:], b)
	if len(missing) > 0 {
		s.h.m.replicaFailures.Add(len(missing))
	}
	for _, a := range answers {
		if len(a) == 1 && a[0] == 0 {
			// A holder has messages of this stream after all (it came back while we
			// asked): take its history.
			got := s.askSync(ring, name)
			s.seqMu.Lock()
			s.store.SetStale(name)
			s.applySync(name, got)
			s.seqMu.Unlock()
			return
		}
	}
}

// parseSince reads ?since=: {"user:42":{"epoch":"e","offset":18},...}.
func parseSince(raw string) (map[string]stream.Position, error) {
	if raw == "" {
		return nil, nil
	}
	var in map[string]struct {
		Epoch  string `json:"epoch"`
		Offset uint64 `json:"offset"`
	}
	if err := json.Unmarshal([]byte(raw), &in); err != nil {
		return nil, fmt.Errorf("since is not a JSON object of stream positions ({\"user:42\":{\"epoch\":\"...\",\"offset\":17}}): %v", err)
	}
	if len(in) > 256 {
		return nil, fmt.Errorf("since names %d streams, at most 256", len(in))
	}
	out := make(map[string]stream.Position, len(in))
	for name, p := range in {
		if p.Epoch == "" {
			return nil, fmt.Errorf("since: stream %q has no epoch", name)
		}
		out[name] = stream.Position{Epoch: p.Epoch, Offset: p.Offset}
	}
	return out, nil
}

func (s *streams) readLocal(keys []skey, since map[string]stream.Position) map[string]streamRead {
	out := make(map[string]streamRead, len(keys))
	ring := s.ringNow().ring
	budget := maxReplayBytes // what one connection is replayed at most
	for _, k := range keys {
		name := k.stream()
		s.syncIfUnknown(ring, name)
		entries, head, rec := s.read(name, since[name], max(budget, 0))
		for i := range entries {
			budget -= len(entries[i].Data)
		}
		out[name] = streamRead{head: head, recovered: rec, entries: entries}
	}
	return out
}

// read is what a v2 subscriber of stream name gets: the entries after since, and
// before them, in a user stream, the messages that asked for an ack and have none:
// the client may have received them without handling them (its ack never arrived).
func (s *streams) read(name string, since stream.Position, budget int) ([]stream.Entry, stream.Position, bool) {
	entries, head, rec := s.store.Read(name, since, budget)
	if !strings.HasPrefix(name, "user:") {
		return entries, head, rec
	}
	upTo := head.Offset
	if rec && since.Epoch == head.Epoch {
		upTo = since.Offset // what follows is in entries already
	}
	for i := range entries {
		budget -= len(entries[i].Data)
	}
	if un := s.store.Unacked(name, upTo, max(budget, 0)); len(un) > 0 {
		s.h.m.redelivered.Add(len(un))
		entries = append(un, entries...)
	}
	return entries, head, rec
}

// subscribe asks every owner of keys (this node included) for the heads and, where
// since names a position, the entries after it. Owners that fail are retried at the
// owner of the next ring until StoreTimeout.
func (s *streams) subscribe(keys []skey, since map[string]stream.Position, v2 bool) (map[string]streamRead, error) {
	h := s.h
	self := h.cfg.NodeName
	h.remote.FlushRoutes()
	out := make(map[string]streamRead, len(keys))
	left := keys
	deadline := time.Now().Add(s.timeout)
	for len(left) > 0 {
		rs := s.ringNow()
		ring := s.ownerRing(rs)
		if ring == nil {
			return nil, fmt.Errorf("this node is shutting down; connect to another")
		}
		owners, groups := byOwner(ring, left)
		type result struct {
			owner string
			got   map[string]streamRead
			err   error
		}
		results := make(chan result, len(owners))
		for _, o := range owners {
			go func(o string, ks []skey) {
				switch {
				case o == self && !v2:
					results <- result{o, nil, nil} // a barrier: this node knows itself
				case o == self:
					results <- result{o, s.readLocal(ks, since), nil}
				default:
					got, err := s.subscribeAt(o, ks, since, !v2)
					results <- result{o, got, err}
				}
			}(o, groups[o])
		}
		left = nil
		var lastErr error
		for range owners {
			r := <-results
			if r.err != nil {
				lastErr = fmt.Errorf("owner %s: %w", r.owner, r.err)
				left = append(left, groups[r.owner]...)
				continue
			}
			for name, sr := range r.got {
				out[name] = sr
			}
		}
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("the owners of this connection's streams did not answer within %s (%v); retry", s.timeout, lastErr)
		}
		select {
		case <-rs.changed:
		case <-time.After(100 * time.Millisecond):
		}
		h.remote.FlushRoutes()
	}
	return out, nil
}

// subscribeAt asks owner; barrier asks only that it knows this node holds a
// subscriber (a plain client, a room join): no history is read or created.
func (s *streams) subscribeAt(owner string, keys []skey, since map[string]stream.Position, barrier bool) (map[string]streamRead, error) {
	var flags byte
	if barrier {
		flags = subscribeBarrier
	}
	b := wbuf{opSubscribe, flags}.uv(uint64(len(keys)))
	for _, k := range keys {
		b = b.str(k.stream()).pos(since[k.stream()])
	}
	ctx, cancel := context.WithTimeout(context.Background(), appendTimeout)
	defer cancel()
	body, err := s.h.remote.Request(ctx, owner, b)
	if err != nil {
		return nil, err
	}
	r := rbuf{b: body}
	if r.byte1() != statusOK {
		return nil, fmt.Errorf("not the owner")
	}
	out := make(map[string]streamRead, len(keys))
	for n := r.count(3); n > 0; n-- {
		name := r.str()
		sr := streamRead{head: r.pos(), recovered: r.byte1() == 1}
		for m := r.count(4); m > 0; m-- {
			sr.entries = append(sr.entries, r.entry())
		}
		out[name] = sr
	}
	if r.err != nil {
		return nil, r.err
	}
	return out, nil
}

// onSubscribe answers a peer's opSubscribe as the owner of the streams it names.
func (s *streams) onSubscribe(arg []byte) []byte {
	r := rbuf{b: arg}
	flags := r.byte1()
	n := r.count(2)
	names := make([]string, 0, n)
	since := make(map[string]stream.Position, n)
	for ; n > 0; n-- {
		name := r.str()
		p := r.pos()
		names = append(names, name)
		if p.Epoch != "" {
			since[name] = p
		}
	}
	if r.err != nil {
		return nil
	}
	ring := s.ringNow().ring
	for _, name := range names {
		if ring.Owner(name) != s.h.cfg.NodeName {
			return []byte{statusNotOwner}
		}
	}
	if flags&subscribeBarrier != 0 {
		// The route delta that came before this request on the link is applied.
		return wbuf{statusOK}.uv(0)
	}
	b := wbuf{statusOK}.uv(uint64(len(names)))
	budget := maxReplayBytes // for the whole answer: it must fit a cluster frame
	for _, name := range names {
		s.syncIfUnknown(ring, name)
		entries, head, rec := s.read(name, since[name], max(budget, 0))
		for i := range entries {
			budget -= len(entries[i].Data)
		}
		var recb byte
		if rec {
			recb = 1
		}
		b = b.str(name).pos(head).byte1(recb).uv(uint64(len(entries)))
		for i := range entries {
			b = b.entry(&entries[i])
		}
	}
	return b
}

// upgradeResult builds the welcome and the replay of a v2 client (nothing for a plain
// one: it gets live messages only).
func (s *streams) upgradeResult(u *loop.Upgrade, keys []skey, since map[string]stream.Position, got map[string]streamRead) loop.UpgradeResult {
	if !u.V2 {
		return loop.UpgradeResult{}
	}
	res := loop.UpgradeResult{Heads: make(map[string]loop.Head, len(keys))}
	w := append([]byte(nil), `{"type":"welcome","connection":`...)
	w = loop.AppendJSONString(w, u.ConnID)
	w = append(w, `,"node":`...)
	w = loop.AppendJSONString(w, s.h.cfg.NodeName)
	w = append(w, `,"streams":{`...)
	var replay [][]byte
	sent := map[string]struct{}{}
	for i, k := range keys {
		name := k.stream()
		sr := got[name]
		if i > 0 {
			w = append(w, ',')
		}
		w = loop.AppendJSONString(w, name)
		w = append(w, `:{"epoch":`...)
		w = loop.AppendJSONString(w, sr.head.Epoch)
		w = append(w, `,"offset":`...)
		w = strconv.AppendUint(w, sr.head.Offset, 10)
		if _, asked := since[name]; asked {
			if sr.recovered {
				w = append(w, `,"recovered":true`...)
			} else {
				w = append(w, `,"recovered":false`...)
				s.h.m.recoveriesLost.Inc()
			}
		}
		w = append(w, '}')
		res.Heads[name] = loop.Head{Epoch: sr.head.Epoch, Offset: sr.head.Offset}
		var acked []string
		for _, e := range sr.entries {
			// A message reached through several streams is replayed once.
			if _, dup := sent[e.ID]; dup {
				continue
			}
			sent[e.ID] = struct{}{}
			replay = append(replay, replayFrame(name, sr.head.Epoch, &e))
			if e.Ack {
				acked = append(acked, e.ID)
			}
		}
		if len(acked) > 0 && k.kind == loop.KeyUser {
			// Its receipt learns it reached a connection (written right after
			// the 101, in Frames).
			s.h.rc.replayed(name, acked)
		}
		if len(sr.entries) > 0 {
			s.h.m.recoveredMessages.Add(len(sr.entries))
		}
	}
	w = append(w, "}}"...)
	res.Frames = append(slices.Grow(res.Frames, 1+len(replay)), loop.TextFrame(w))
	res.Frames = append(res.Frames, replay...)
	return res
}

func replayFrame(name, epoch string, e *stream.Entry) []byte {
	b := append([]byte(nil), `{"type":"push","id":`...)
	b = loop.AppendJSONString(b, e.ID)
	b = append(b, `,"stream":`...)
	b = loop.AppendJSONString(b, name)
	b = append(b, `,"epoch":`...)
	b = loop.AppendJSONString(b, epoch)
	b = append(b, `,"offset":`...)
	b = strconv.AppendUint(b, e.Offset, 10)
	if e.Ack {
		b = append(b, `,"ack":true`...)
	}
	b = loop.AppendData(b, e.Binary, e.JSON, e.Data)
	b = append(b, '}')
	return loop.TextFrame(b)
}
