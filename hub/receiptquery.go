package hub

import (
	"context"
	"time"

	"longlink/push"
)

// The wire form of a target's state, and the hub's receipt API: GET
// /v1/messages/{id} across the cluster, and the acks the node takes from its clients.

func (b wbuf) status(st *push.TargetStatus) wbuf {
	var flags byte
	if st.Ack {
		flags = 1
	}
	b = b.str(st.Status).byte1(flags).uv(uint64(len(st.Delivered)))
	for n, c := range st.Delivered {
		b = b.str(n).uv(uint64(c))
	}
	var at int64
	if st.AckedAt != nil {
		at = st.AckedAt.UnixNano()
	}
	return b.str(st.AckedBy).uv(uint64(at)).str(st.Reason)
}

func (r *rbuf) status() push.TargetStatus {
	st := push.TargetStatus{Status: r.str(), Ack: r.byte1() == 1, Delivered: map[string]int{}}
	for n := r.count(2); n > 0 && r.err == nil; n-- {
		node, c := r.str(), int(r.uv())
		st.Delivered[node] = c
	}
	st.AckedBy = r.str()
	if at := int64(r.uv()); at != 0 {
		t := time.Unix(0, at).UTC()
		st.AckedAt = &t
	}
	st.Reason = r.str()
	return st
}

// ---- the hub's API ----

// Receipt implements push.Hub: this node's records of id and every peer's, merged.
func (h *Hub) Receipt(id string) (*push.Receipt, error) {
	expire, targets := h.rc.query(id)
	if peers := h.remote.AliveNodes(); len(peers) > 0 {
		ctx, cancel := contextWithTimeout(h.cfg.QueryTimeout)
		answers, _ := h.remote.Ask(ctx, peers, wbuf{opReceipt}.str(id))
		cancel()
		for _, body := range answers {
			rb := rbuf{b: body}
			e := int64(rb.uv())
			n := rb.count(2)
			for ; n > 0 && rb.err == nil; n-- {
				t, st := rb.str(), rb.status()
				if rb.err != nil {
					break
				}
				if targets == nil {
					targets = map[string]push.TargetStatus{}
				}
				targets[t] = merge(targets[t], st)
			}
			expire = max(expire, e)
		}
	}
	if targets == nil {
		return nil, nil
	}
	return &push.Receipt{ID: id, Expires: time.Unix(0, expire).UTC(), Targets: targets}, nil
}

// merge combines two nodes' records of one target (after an owner change both may
// hold one): the more final state, and every node's deliveries.
func merge(a, b push.TargetStatus) push.TargetStatus {
	if a.Status == "" {
		return b
	}
	rank := func(s string) int {
		switch s {
		case push.StatusAcked:
			return 3
		case push.StatusExpired:
			return 2
		case push.StatusDelivered:
			return 1
		}
		return 0
	}
	out := a
	if rank(b.Status) > rank(a.Status) {
		out = b
	}
	d := map[string]int{}
	for n, c := range a.Delivered {
		d[n] = c
	}
	for n, c := range b.Delivered {
		d[n] = max(d[n], c)
	}
	out.Delivered = d
	if out.Status == push.StatusPending && len(d) > 0 {
		out.Status = push.StatusDelivered
	}
	return out
}

func (h *Hub) onReceiptQuery(arg []byte) []byte {
	rb := rbuf{b: arg}
	id := rb.str()
	if rb.err != nil {
		return nil
	}
	expire, targets := h.rc.query(id)
	b := wbuf{}.uv(uint64(expire)).uv(uint64(len(targets)))
	for t, st := range targets {
		b = b.str(t).status(&st)
	}
	return b
}

// Ack takes a v2 client's cumulative ack of its user stream (epoch "" means the
// owner's current one). It runs on the connection's loop and only queues.
func (h *Hub) Ack(connID, stream, epoch string, offset uint64) {
	h.rc.onClientAck(ackNote{stream: stream, epoch: epoch, offset: offset, conn: connID, at: time.Now().UnixNano()})
}

// AckMessage takes a connection's ack of a message sent to it by connection id.
// It runs on the connection's loop and only queues.
func (h *Hub) AckMessage(connID, id string) {
	h.rc.onClientAck(ackNote{message: id, conn: connID, at: time.Now().UnixNano()})
}

func contextWithTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}
