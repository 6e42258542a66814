package node

import (
	"encoding/json"
	"strconv"
	"strings"
	"unicode/utf8"

	"longlink/auth"
	"longlink/hub"
	"longlink/internal/jsonstr"
	"longlink/loop"
	"longlink/upstream"
)

// Rooms a v2 client subscribes itself to (docs/protocol.md, "subscribe"). A room
// may be namespaced by a business ("chat/lobby": business chat), whose limits then
// apply (its rate, its rooms per connection) and whose subscribe hook may allow it.
//
// A subscribe is allowed when the token lists the room (its subscribe claim, exactly
// or by a "prefix*" pattern whose prefix holds the business's '/', or its rooms
// claim), else when the business's hook answers 2xx. Then, in this order: the loop
// puts the connection in the room (registry, presence, room index: JoinConn), the
// hub makes the room stream's owner aware this node holds a subscriber and reads the
// stream's head (hub.SubscribeRoom), and only then the reply goes out, so every push
// accepted after the client reads it reaches the connection, on any node.
//
// Where it runs: the checks and the join on the connection's loop; a hook call on a
// goroutine holding one of the business's in-flight slots; the owner's answer, in a
// cluster, on a goroutine holding one of the node's SubscribeInFlight slots (a node
// alone answers on the loop). Every subscribe gets exactly one reply.

// maxRoomName bounds a room a client names (as the rooms claim does).
const maxRoomName = auth.MaxUserID

func (n *Node) onSubscribe(c *loop.Conn, m *clientMsg, join bool) {
	verb := "subscribe"
	if !join {
		verb = "unsubscribe"
	}
	cm := n.up.Client
	if noID(m.ID) {
		n.loop.SendText(c, replyError(nil, 400, verb+" needs an id: the reply carries it"))
		return
	}
	if !n.takeClient(c) {
		if join {
			cm.RateLimitedSubscribe.Inc()
		} else {
			cm.RateLimitedUnsubscribe.Inc()
		}
		n.loop.SendText(c, replyError(m.ID, 429, n.clientRateReason()))
		return
	}
	room := m.Room
	if reason := badRoom(room); reason != "" {
		cm.SubscribeBad.Inc()
		n.loop.SendText(c, replyError(m.ID, 400, reason))
		return
	}
	b, namespaced := n.up.ForRoom(room)
	if namespaced && b == nil {
		cm.UnknownBusiness.Inc()
		n.loop.SendText(c, replyError(m.ID, 404, "unknown business "+quoteShort(room[:strings.IndexByte(room, '/')])+" (the part of the room before '/')"))
		return
	}
	if b != nil && !n.takeBiz(c, b) {
		b.Rejected(upstream.RejectRate, 429)
		n.loop.SendText(c, replyError(m.ID, 429, bizRateReason(b)))
		return
	}
	if !join {
		if n.loop.LeaveConn(c, room) {
			cm.UnsubscribeLeft.Inc()
			n.loop.SendText(c, replyOK(m.ID, 200, streamData(room, nil)))
		} else {
			cm.UnsubscribeNotIn.Inc()
			n.loop.SendText(c, replyError(m.ID, 404, "not subscribed to "+quoteShort(room)))
		}
		return
	}
	id := m.ID
	if reason, in := n.overRooms(c, b, room); reason != "" {
		b.Rejected(upstream.RejectRooms, 403)
		cm.SubscribeLimit.Inc()
		n.loop.SendText(c, replyError(id, 403, reason))
		return
	} else if in {
		cm.SubscribeAlready.Inc()
		n.joinAndAnswer(c, id, room, b)
		return
	}
	if e := c.Ext(); e != nil && tokenAllows(e.Subscribe, room) {
		cm.SubscribeToken.Inc()
		n.joinAndAnswer(c, id, room, b)
		return
	}
	if b == nil || b.SubscribeURL == "" {
		cm.SubscribeRefused.Inc()
		why := "the token does not list room " + quoteShort(room)
		if b != nil {
			why += " and business " + b.Name + " has no subscribe hook"
		}
		n.loop.SendText(c, replyError(id, 403, why))
		return
	}
	who := upstream.Caller{User: c.User(), Conn: c.ID(), Meta: c.Meta()}
	ok := b.Subscribe(who, room, func(r upstream.Reply) {
		if r.Status < 200 || r.Status > 299 {
			cm.SubscribeRefused.Inc()
			n.loop.Send(c, replyError(id, r.Status, r.Reason))
			return
		}
		cm.SubscribeHook.Inc()
		// Back on the loop to join; a stopped loop has no client left to answer.
		_ = n.loop.Do(c, func(open bool) {
			if open {
				n.joinAndAnswer(c, id, room, b)
			}
		})
	})
	if !ok {
		cm.SubscribeBusy.Inc()
		n.loop.SendText(c, replyOf(id, b.Busy()))
	}
}

// badRoom says what is wrong with a room a client names ("" when nothing).
func badRoom(room string) string {
	switch {
	case room == "":
		return `needs a "room"`
	case len(room) > maxRoomName:
		return "room names are at most " + strconv.Itoa(maxRoomName) + " bytes"
	case !utf8.ValidString(room):
		return "room names are UTF-8"
	case strings.HasPrefix(room, "/") || strings.HasSuffix(room, "/"):
		return "room " + quoteShort(room) + ": a business's room is business/name"
	}
	for i := 0; i < len(room); i++ {
		if room[i] < 0x20 || room[i] == 0x7f {
			return "room names hold no control characters"
		}
	}
	return ""
}

// overRooms reports, on c's loop, whether c is in room already, and if not, why it
// may not join another room of b ("" when it may).
func (n *Node) overRooms(c *loop.Conn, b *upstream.Biz, room string) (reason string, in bool) {
	rooms := n.loop.ConnRooms(c, nil)
	count := 0
	for _, r := range rooms {
		if r == room {
			return "", true
		}
		if b != nil && len(r) > len(b.Name) && r[len(b.Name)] == '/' && strings.HasPrefix(r, b.Name) {
			count++
		}
	}
	if b != nil && count >= b.MaxRooms {
		return "this connection is in " + strconv.Itoa(count) + " rooms of business " + b.Name + ", its limit; unsubscribe one first", false
	}
	return "", false
}

// tokenAllows reports whether the token's list (subscribe and rooms claims) lets a
// client subscribe to room: an exact name, or "prefix*" where prefix holds a '/'
// (a pattern covers one business's rooms, whose rooms limit bounds it; a bare "*"
// or "lob*" covers nothing).
func tokenAllows(list []string, room string) bool {
	for _, p := range list {
		if p == room {
			return true
		}
		if prefix, ok := strings.CutSuffix(p, "*"); ok && strings.IndexByte(prefix, '/') > 0 && strings.HasPrefix(room, prefix) {
			return true
		}
	}
	return false
}

// joinAndAnswer runs on c's loop once the subscribe is allowed: it joins c to room
// (again checking b's rooms limit: hook answers may race), then answers with the
// stream's head once the owner knows this node holds c.
func (n *Node) joinAndAnswer(c *loop.Conn, id json.RawMessage, room string, b *upstream.Biz) {
	if reason, in := n.overRooms(c, b, room); reason != "" && !in {
		b.Rejected(upstream.RejectRooms, 403)
		n.up.Client.SubscribeLimit.Inc()
		n.loop.SendText(c, replyError(id, 403, reason))
		return
	}
	joined, err := n.loop.JoinConn(c, room)
	if err != nil {
		return // closed: no one to answer
	}
	if head, ok := n.hub.RoomHeadLocal(room); ok {
		n.loop.SendText(c, replyOK(id, 200, streamData(room, &head)))
		return
	}
	ok := n.up.GoRoom(func() {
		head, err := n.hub.SubscribeRoom(room)
		if err != nil {
			n.up.Client.SubscribeFailed.Inc()
			if joined {
				// Undo, so the client's view (not subscribed) is the node's; the
				// leave runs on the loop before the reply below.
				_ = n.loop.Do(c, func(open bool) {
					if open {
						n.loop.LeaveConn(c, room)
					}
				})
			}
			n.loop.Send(c, replyError(id, 503, "could not reach the owner of "+hub.RoomStream(room)+": "+err.Error()))
			return
		}
		n.loop.Send(c, replyOK(id, 200, streamData(room, &head)))
	})
	if !ok {
		n.up.Client.SubscribeBusy.Inc()
		if joined {
			n.loop.LeaveConn(c, room)
		}
		n.loop.SendText(c, replyError(id, 503, "too many subscribes waiting on this node; retry"))
	}
}

// streamData is {"stream":"room:<room>"[,"epoch":..,"offset":..]}.
func streamData(room string, head *loop.Head) []byte {
	b := make([]byte, 0, 64+len(room))
	b = append(b, `{"stream":`...)
	b = jsonstr.Append(b, hub.RoomStream(room))
	if head != nil {
		b = append(b, `,"epoch":`...)
		b = jsonstr.Append(b, head.Epoch)
		b = append(b, `,"offset":`...)
		b = strconv.AppendUint(b, head.Offset, 10)
	}
	return append(b, '}')
}
