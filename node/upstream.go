package node

import "longlink/loop"

func (n *Node) onSend(c *loop.Conn, m *clientMsg) {
	n.loop.SendText(c, replyError(m.ID, 501, "send: being built"))
}
