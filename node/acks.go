package node

import "longlink/loop"

func (n *Node) onAck(c *loop.Conn, m *clientMsg) {
	n.loop.SendText(c, replyError(m.ID, 501, "acks: being built"))
}
