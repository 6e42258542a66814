package node

import "longlink/loop"

func (n *Node) onSubscribe(c *loop.Conn, m *clientMsg, join bool) {
	n.loop.SendText(c, replyError(m.ID, 501, "subscribe: being built"))
}
