package node

import (
	"strconv"
	"strings"
	"time"

	"longlink/loop"
)

// An ack is cumulative, so a client needs at most one per stream per message it
// handled, and coalescing ones (the JavaScript client sends one per stream per 10
// ms) far fewer. Past ackRate a second (bursts of ackBurst) a connection's acks are
// refused with 429: they all go through one node-wide queue, which one flooding
// client must not fill for the others.
const (
	ackRate  = 1000
	ackBurst = 2000
)

// onAck takes a v2 client's acknowledgement: cumulative in its own user stream
// ({"stream":"user:42","offset":18}, with "epoch" optional), or of one message sent
// to the connection by id ({"message":"<id>"}). It is not answered unless it is
// malformed: acks are many, and one lost is one message delivered again.
func (n *Node) onAck(c *loop.Conn, m *clientMsg) {
	if e := n.ext(c); !e.Buckets[len(e.Buckets)-1].Take(time.Now().UnixNano(), ackRate, ackBurst) {
		n.acksLimited.Inc()
		n.loop.SendText(c, replyError(m.ID, 429, "ack: over this connection's 1000 acks a second; acknowledge cumulatively (the last offset handled covers every earlier one)"))
		return
	}
	switch {
	case m.Message != "":
		if len(m.Message) > 256 {
			n.loop.SendText(c, replyError(m.ID, 400, "ack: message id is longer than 256 bytes"))
			return
		}
		n.hub.AckMessage(c.ID(), m.Message)
	case m.Stream != "":
		if u, ok := strings.CutPrefix(m.Stream, "user:"); !ok || u != c.User() {
			n.loop.SendText(c, replyError(m.ID, 400, "ack: a connection acknowledges its own user stream ("+
				strconv.Quote("user:"+c.User())+") or a message by id; "+strconv.Quote(m.Stream)+" is neither"))
			return
		}
		if len(m.Epoch) > 64 {
			n.loop.SendText(c, replyError(m.ID, 400, "ack: epoch is longer than 64 bytes: not one the welcome gave"))
			return
		}
		if m.Offset == 0 {
			n.loop.SendText(c, replyError(m.ID, 400, "ack: offset must be the stream offset of the last message handled (1 or more)"))
			return
		}
		n.hub.Ack(c.ID(), m.Stream, m.Epoch, m.Offset)
	default:
		n.loop.SendText(c, replyError(m.ID, 400, `ack needs "stream" and "offset", or "message"`))
	}
}
