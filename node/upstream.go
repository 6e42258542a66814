package node

import (
	"bytes"
	"encoding/json"
	"strconv"
	"time"

	"longlink/internal/jsonstr"
	"longlink/loop"
	"longlink/upstream"
)

// Upstream messages (docs/protocol.md, "send"): a v2 client's
// {"type":"send","id":7,"business":"chat","data":{...}} goes to the business's
// back-end (package upstream) and its answer comes back as a reply with the same id.
// Everything that stops it on the way (no id, the rate limits, an unknown business,
// no free slot) is answered here, on the loop; what the back-end does is answered
// from the request's goroutine with Server.Send. Every send gets exactly one answer.

func (n *Node) onSend(c *loop.Conn, m *clientMsg) {
	if noID(m.ID) {
		n.loop.SendText(c, replyError(nil, 400, "send needs an id: the reply carries it"))
		return
	}
	if !n.takeClient(c) {
		n.up.Client.RateLimitedSend.Inc()
		n.loop.SendText(c, replyError(m.ID, 429, n.clientRateReason()))
		return
	}
	if m.Business == "" {
		n.loop.SendText(c, replyError(m.ID, 400, `send needs a "business"`))
		return
	}
	b := n.up.Business(m.Business)
	if b == nil {
		n.up.Client.UnknownBusiness.Inc()
		n.loop.SendText(c, replyError(m.ID, 404, "unknown business "+quoteShort(m.Business)))
		return
	}
	if !n.takeBiz(c, b) {
		b.Rejected(upstream.RejectRate, 429)
		n.loop.SendText(c, replyError(m.ID, 429, bizRateReason(b)))
		return
	}
	// m's slices are copies (encoding/json copies a RawMessage), so the goroutine
	// may keep them after the payload is gone.
	id := m.ID
	who := upstream.Caller{User: c.User(), Conn: c.ID(), Meta: c.Meta()}
	if !b.Send(who, id, m.Data, func(r upstream.Reply) { n.loop.Send(c, replyOf(id, r)) }) {
		n.loop.SendText(c, replyOf(id, b.Busy()))
	}
}

// noID reports whether a client message came without an id to answer to.
func noID(id json.RawMessage) bool { return len(id) == 0 || bytes.Equal(id, []byte("null")) }

// ext returns c's extension state with its rate buckets (client, then one per
// business, then acks: acks.go). On c's loop.
func (n *Node) ext(c *loop.Conn) *loop.Ext {
	e := c.Ext()
	if e == nil {
		e = &loop.Ext{}
		c.SetExt(e)
	}
	if e.Buckets == nil {
		e.Buckets = make([]loop.Bucket, 2+n.up.Len())
	}
	return e
}

// takeClient takes a token of c's own rate limit (Config.Upstream.ClientRate).
func (n *Node) takeClient(c *loop.Conn) bool {
	rate, burst := n.up.ClientRate()
	if rate <= 0 {
		return true
	}
	return n.ext(c).Buckets[0].Take(time.Now().UnixNano(), rate, burst)
}

// takeBiz takes a token of c's rate limit for b (b.Rate; none when zero).
func (n *Node) takeBiz(c *loop.Conn, b *upstream.Biz) bool {
	if b.Rate <= 0 {
		return true
	}
	return n.ext(c).Buckets[1+b.Index].Take(time.Now().UnixNano(), b.Rate, float64(b.Burst))
}

func (n *Node) clientRateReason() string {
	rate, burst := n.up.ClientRate()
	return "over this connection's limit of " + strconv.FormatFloat(rate, 'g', -1, 64) + " requests a second (burst " +
		strconv.FormatFloat(burst, 'g', -1, 64) + "); slow down"
}

func bizRateReason(b *upstream.Biz) string {
	return "over business " + b.Name + "'s limit of " + strconv.FormatFloat(b.Rate, 'g', -1, 64) +
		" requests a second per connection (burst " + strconv.Itoa(b.Burst) + "); slow down"
}

// quoteShort quotes a client-given name for a reason, cut to 64 bytes.
func quoteShort(s string) string {
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	return strconv.Quote(s)
}

// replyOf is the reply for r: {"type":"reply","id":id,"status":..,"data":..} for a
// back-end's 2xx, with "reason" (and the back-end's JSON body as "data", if any) for
// a failure.
func replyOf(id json.RawMessage, r upstream.Reply) []byte {
	if r.Reason == "" {
		return replyOK(id, r.Status, r.Data)
	}
	b := make([]byte, 0, 64+len(id)+len(r.Reason)+len(r.Data))
	b = append(b, `{"type":"reply","id":`...)
	b = append(b, id...)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(r.Status), 10)
	b = append(b, `,"reason":`...)
	b = jsonstr.Append(b, r.Reason)
	if len(r.Data) > 0 {
		b = append(b, `,"data":`...)
		b = append(b, r.Data...)
	}
	return append(b, '}')
}
