package node

import (
	"bytes"
	"encoding/json"
	"strconv"

	"longlink/internal/jsonstr"
	"longlink/loop"
)

// Messages from v2 clients (docs/protocol.md, "Client messages"). Each is one JSON
// object with a "type": ack (hub: receipts), send (upstream to a business),
// subscribe and unsubscribe (rooms). A message with an "id" is answered with a
// {"type":"reply","id":...} carrying a status; one that cannot be understood is
// answered with status 400 and a reason, never dropped in silence. Plain clients'
// messages are counted and dropped, as before: they have no way to get an answer.

// clientMsg is a v2 client message, every type's fields in one struct.
type clientMsg struct {
	Type     string          `json:"type"`
	ID       json.RawMessage `json:"id"`       // the client's request id, echoed in the reply
	Stream   string          `json:"stream"`   // ack
	Epoch    string          `json:"epoch"`    // ack (optional)
	Offset   uint64          `json:"offset"`   // ack
	Message  string          `json:"message"`  // ack of a message by id (connection targets)
	Business string          `json:"business"` // send
	Data     json.RawMessage `json:"data"`     // send
	Room     string          `json:"room"`     // subscribe, unsubscribe
}

// maxClientID bounds the request id echoed back, so a reply stays small.
const maxClientID = 128

// onClientMessage is loop's OnMessage. It runs on the connection's loop.
func (n *Node) onClientMessage(c *loop.Conn, binary bool, payload []byte) {
	if !c.V2() {
		return
	}
	if binary {
		n.loop.SendText(c, replyError(nil, 400, "v2 client messages are JSON text messages"))
		return
	}
	var m clientMsg
	if parseAckFast(payload, &m) {
		n.onAck(c, &m)
		return
	}
	if err := json.Unmarshal(payload, &m); err != nil {
		n.loop.SendText(c, replyError(nil, 400, "not a JSON object: "+err.Error()))
		return
	}
	if len(m.ID) > maxClientID || !validID(m.ID) {
		n.loop.SendText(c, replyError(nil, 400, "id must be a number or a string of at most 128 bytes"))
		return
	}
	switch m.Type {
	case "ack":
		n.onAck(c, &m)
	case "send":
		n.onSend(c, &m)
	case "subscribe":
		n.onSubscribe(c, &m, true)
	case "unsubscribe":
		n.onSubscribe(c, &m, false)
	case "ping":
		// The JavaScript client's heartbeat ({"type":"ping"}): activity, no answer.
	default:
		n.loop.SendText(c, replyError(m.ID, 400, "unknown message type "+strconv.Quote(m.Type)+": ack, send, subscribe or unsubscribe"))
	}
}

// validID accepts an absent id, a JSON number or a JSON string.
func validID(id json.RawMessage) bool {
	if len(id) == 0 || bytes.Equal(id, []byte("null")) {
		return true
	}
	switch id[0] {
	case '"':
		return true
	case '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		return true
	}
	return false
}

// replyError is {"type":"reply","id":id,"status":status,"reason":reason}; without an
// id the client cannot match it, so it says "error" instead of "reply".
func replyError(id json.RawMessage, status int, reason string) []byte {
	b := make([]byte, 0, 64+len(reason))
	if len(id) == 0 {
		b = append(b, `{"type":"error"`...)
	} else {
		b = append(b, `{"type":"reply","id":`...)
		b = append(b, id...)
	}
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, `,"reason":`...)
	b = jsonstr.Append(b, reason)
	return append(b, '}')
}

// replyOK is {"type":"reply","id":id,"status":status[,"data":data]}.
func replyOK(id json.RawMessage, status int, data []byte) []byte {
	b := make([]byte, 0, 48+len(id)+len(data))
	b = append(b, `{"type":"reply","id":`...)
	if len(id) == 0 {
		b = append(b, "null"...)
	} else {
		b = append(b, id...)
	}
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(status), 10)
	if len(data) > 0 {
		b = append(b, `,"data":`...)
		b = append(b, data...)
	}
	return append(b, '}')
}
