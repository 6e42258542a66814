package node

import (
	"strconv"

	"longlink/loop"
)

// onAck takes a v2 client's acknowledgement: cumulative in its own user stream
// ({"stream":"user:42","offset":18}, with "epoch" optional), or of one message sent
// to the connection by id ({"message":"<id>"}). It is not answered unless it is
// malformed: acks are many, and one lost is one message delivered again.
func (n *Node) onAck(c *loop.Conn, m *clientMsg) {
	switch {
	case m.Message != "":
		if len(m.Message) > 256 {
			n.loop.SendText(c, replyError(m.ID, 400, "ack: message id is longer than 256 bytes"))
			return
		}
		n.hub.AckMessage(c.ID(), m.Message)
	case m.Stream != "":
		if m.Stream != "user:"+c.User() {
			n.loop.SendText(c, replyError(m.ID, 400, "ack: a connection acknowledges its own user stream ("+
				strconv.Quote("user:"+c.User())+") or a message by id; "+strconv.Quote(m.Stream)+" is neither"))
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
