package hub

import (
	"time"

	"longlink/stream"
)

// Acknowledgements: from a client's node to its stream's owner, applied there and
// copied to the replicas (receipts.go says where they fit).

// onClientAck takes a v2 client's ack on its loop: queued, never blocking.
func (r *receipts) onClientAck(a ackNote) {
	select {
	case r.acks <- a:
	default:
		r.h.m.acksDropped.Inc()
	}
}

// ackLoop coalesces the queued acks per stream and sends each owner its batch.
func (r *receipts) ackLoop(stop <-chan struct{}) {
	pending := map[string]ackNote{}
	var t *time.Timer
	var tc <-chan time.Time
	flush := func() {
		if len(pending) == 0 {
			return
		}
		rs := r.h.st.ringNow()
		per := map[string][]ackNote{}
		for _, a := range pending {
			o := rs.ring.Owner(a.stream)
			per[o] = append(per[o], a)
		}
		clear(pending)
		for o, as := range per {
			if o == r.h.cfg.NodeName {
				r.applyAcks(as)
				continue
			}
			b := wbuf{wireAck}.uv(uint64(len(as)))
			for _, a := range as {
				b = b.str(a.stream).str(a.epoch).uv(a.offset).str(a.conn).uv(uint64(a.at))
			}
			if r.h.remote.Send(o, b) != nil {
				r.h.m.acksDropped.Add(len(as))
			}
		}
	}
	for {
		select {
		case <-stop:
			return
		case a := <-r.acks:
			if a.message != "" {
				r.acked(a.message, "connection:"+a.conn, a.conn, a.at)
				continue
			}
			r.viaAcked(a)
			if old, ok := pending[a.stream]; !ok || a.offset > old.offset || a.epoch != old.epoch {
				pending[a.stream] = a
			}
			if len(pending) >= 1024 {
				flush()
			} else if tc == nil {
				t = time.NewTimer(ackFlush)
				tc = t.C
			}
		case <-tc:
			tc = nil
			flush()
		}
	}
}

// viaAcked acknowledges the connection targets that a's connection took through
// the stream a covers.
func (r *receipts) viaAcked(a ackNote) {
	r.mu.Lock()
	key := a.conn + "\x00" + a.stream
	if old, ok := r.recent[key]; !ok || a.offset >= old.offset {
		r.recent[key] = a
	}
	vs := r.via[a.conn]
	var done []string
	kept := vs[:0]
	for _, v := range vs {
		if v.stream == a.stream && v.offset <= a.offset {
			done = append(done, v.id)
		} else {
			kept = append(kept, v)
		}
	}
	if len(kept) == 0 {
		delete(r.via, a.conn)
	} else {
		r.via[a.conn] = kept
	}
	r.mu.Unlock()
	for _, id := range done {
		r.acked(id, "connection:"+a.conn, a.conn, a.at)
	}
}

func (r *receipts) onAcks(payload []byte) {
	rb := rbuf{b: payload}
	n := rb.count(5)
	as := make([]ackNote, 0, n)
	for ; n > 0; n-- {
		a := ackNote{stream: rb.str(), epoch: rb.str(), offset: rb.uv(), conn: rb.str(), at: int64(rb.uv())}
		if rb.err != nil {
			return
		}
		as = append(as, a)
	}
	r.applyAcks(as)
}

// applyAcks applies acks as the owner of their streams: to the history, the
// receipts, and the replicas.
func (r *receipts) applyAcks(as []ackNote) {
	s := r.h.st
	ring := s.ringNow().ring
	copies := map[string]wbuf{}
	counts := map[string]int{}
	for _, a := range as {
		epoch := a.epoch
		if epoch == "" {
			head, ok := s.store.Head(a.stream)
			if !ok {
				continue
			}
			epoch = head.Epoch
		}
		pos := stream.Position{Epoch: epoch, Offset: a.offset}
		r.h.m.acks.Inc()
		for _, id := range s.store.Ack(a.stream, pos) {
			r.acked(id, a.stream, a.conn, a.at)
		}
		for _, n := range ring.Holders(a.stream, s.replicas)[1:] {
			copies[n] = copies[n].str(a.stream).pos(pos)
			counts[n]++
		}
	}
	for n, b := range copies {
		body := append(wbuf{wireAckCopy}.uv(uint64(counts[n])), b...)
		if r.h.remote.Send(n, body) != nil {
			r.h.m.ackCopiesLost.Inc()
		}
	}
}

func (r *receipts) onAckCopy(payload []byte) {
	rb := rbuf{b: payload}
	for n := rb.count(2); n > 0 && rb.err == nil; n-- {
		name, pos := rb.str(), rb.pos()
		if rb.err == nil {
			r.h.st.store.Ack(name, pos)
		}
	}
}
