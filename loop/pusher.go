package loop

import (
	"bytes"
	"context"
	"encoding/base64"
	"hash/fnv"
	"strconv"
	"strings"
	"time"

	"github.com/panjf2000/gnet/v2"

	"longlink/pusher"
	"longlink/wsproto"
)

// The loop's side of the Pusher Channels protocol, version 7 (docs/pusher.md, "Client
// port"): what a Pusher connection needs from the loop before the protocol layer
// (package pusher, wired by node through Config.OnPusherMessage) can speak to it.
//
//   - The handshake: GET /app/{key}?protocol=7 with no token (Pusher authenticates per
//     channel). Config.PusherApp names the key's app. A known key and protocol 7 are
//     upgraded as a KindPusher connection; otherwise the client is still upgraded, then
//     gets pusher:error and a close with the spec's code (4001 no such app, 4007
//     unsupported protocol, 4008 no protocol, 4100 over capacity, 4200 draining), which
//     is what Pusher libraries understand (an HTTP error makes them retry blindly).
//   - The socket id, "<node>.<conn>" (Server.SocketID), and
//     pusher:connection_established right after the 101, before anything held.
//   - Envelopes: a message reaches a Pusher connection only through the room of one of
//     its channels, PusherRoom(appID, channel) = "pusher/<appID>/<channel>", and only
//     when it has an Event: {"event":...,"channel":...,"data":"..."}, encoded once per
//     (message, room) and shared like the v2 envelopes. Everything else (broadcasts to
//     all, user and connection-id targets, plain Deliver frames) skips it, counted in
//     longlink_pusher_skipped_total. Stamped.ExcludeSocket skips the trigger's sender.
//   - Keepalive: the client's pusher:ping is answered pusher:pong on the loop; a client
//     silent for PusherActivityTimeout gets pusher:ping (not a WebSocket ping), and
//     one silent PusherPongTimeout more is closed with 4201.
//
// A Pusher connection has no user: User is "" and stays so (other goroutines read it
// without a lock, so it never changes after publish). It is registered by number only
// (registry.addAnonymous): no session, no MaxConnsPerUser, no user presence, no user
// stream. A user the client signs in as (pusher:signin) is the receiver's to keep, in
// Ext.PusherUser, on the loop; server-to-user events reach it through the room of its
// "#server-to-user-<id>" channel like any other channel.

// Pusher close codes the loop sends (the spec's 4000-4299: 4000-4099 do not
// reconnect, 4100-4199 reconnect after a back-off, 4200-4299 reconnect at once).
const (
	PusherCloseAppNotFound         uint16 = pusher.CodeAppNotFound
	PusherCloseUnsupportedProtocol uint16 = pusher.CodeUnsupportedProtocol
	PusherCloseNoProtocol          uint16 = pusher.CodeNoProtocolVersion
	PusherCloseOverCapacity        uint16 = pusher.CodeOverCapacity
	PusherCloseReconnect           uint16 = pusher.CodeReconnect
	PusherClosePongTimeout         uint16 = pusher.CodePongNotReceived
)

// PusherProtocol is the protocol version the loop speaks (?protocol=).
const PusherProtocol = "7"

const pusherPathPrefix = "/app/"

// pusherRoomPrefix starts the room of every Pusher channel: "pusher/<appID>/<channel>".
// App ids hold no '/' (the app's config refuses them) and channel names hold none
// (the spec's alphabet), so the room names one (app, channel) and two apps never
// share a room.
const pusherRoomPrefix = "pusher/"

// PusherRoom is the room of channel in app appID.
func PusherRoom(appID, channel string) string {
	return pusherRoomPrefix + appID + "/" + channel
}

// PusherChannel splits a room made by PusherRoom; ok is false for any other room.
func PusherChannel(room string) (appID, channel string, ok bool) {
	rest, ok := strings.CutPrefix(room, pusherRoomPrefix)
	if !ok {
		return "", "", false
	}
	appID, channel, ok = strings.Cut(rest, "/")
	if !ok || appID == "" || channel == "" {
		return "", "", false
	}
	return appID, channel, true
}

// pusherHandshake answers a request for /app/{key}. It returns gnet.Close when the
// client was refused (after its 101 and pusher:error) and gnet.None when it was
// upgraded, or handed to OnUpgrade.
func (s *Server) pusherHandshake(c *Conn, req *wsproto.Request) gnet.Action {
	key := req.Path[len(pusherPathPrefix):]
	if key == "" || strings.Contains(key, "/") {
		return s.reject(c, "bad_request", &wsproto.HTTPError{Status: 404, Reason: "not found: Pusher clients connect to /app/{key}"})
	}
	if he := req.ValidateUpgrade(); he != nil {
		return s.reject(c, "bad_request", he)
	}
	if !s.originAllowed(req.Origin) {
		return s.reject(c, "forbidden", &wsproto.HTTPError{Status: 403, Reason: "origin not allowed"})
	}
	switch p := wsproto.QueryValue(req.RawQuery, "protocol"); {
	case p == "":
		return s.pusherRefuse(c, req.Key, "pusher_protocol", PusherCloseNoProtocol, "No protocol version supplied")
	case p != PusherProtocol:
		return s.pusherRefuse(c, req.Key, "pusher_protocol", PusherCloseUnsupportedProtocol, "Unsupported protocol version "+strconv.Quote(p)+": this server speaks 7")
	}
	appID, ok := s.cfg.PusherApp(key)
	if !ok {
		return s.pusherRefuse(c, req.Key, "pusher_app", PusherCloseAppNotFound, "App key "+strconv.Quote(key)+" not in this cluster")
	}
	if s.draining.Load() {
		return s.pusherRefuse(c, req.Key, "draining", PusherCloseReconnect, "Server is shutting down: reconnect")
	}
	if s.cfg.MaxConns > 0 && int(s.m.open.Load()) >= s.cfg.MaxConns {
		return s.pusherRefuse(c, req.Key, "over_capacity", PusherCloseOverCapacity, "Over capacity")
	}
	c.num = s.connSeq.Add(1)
	c.kind = KindPusher
	s.negotiateDeflate(c, req) // deflate.go
	c.remote = remoteOf(c)
	c.device = req.UserAgent
	if len(c.device) > maxDevice {
		c.device = strings.ToValidUTF8(c.device[:maxDevice], "")
	}
	// Set before the connection is published; the receiver may replace Ext later,
	// keeping PusherApp (see Ext).
	c.ext = &Ext{PusherApp: appID}
	// No connect hook (Config.Admit): it decides on tokens, which Pusher clients do
	// not have; the app's auth endpoint decides per channel instead.
	s.upgrade(c, nil, time.Time{}, req.Key, "", "")
	return gnet.None
}

// pusherRefuse upgrades c only to tell it, in its protocol, why it cannot stay:
// the 101, pusher:error and a close frame with code, in one write, then the close.
func (s *Server) pusherRefuse(c *Conn, key, reason string, code uint16, msg string) gnet.Action {
	s.m.handshakeFailure(reason)
	b := wsproto.AppendUpgradeResponse(c.sh.scratch[:0], key, "")
	b = wsproto.AppendFrame(b, wsproto.KindText, AppendPusherError(nil, code, msg))
	b = wsproto.AppendClose(b, code, "")
	c.sh.scratch = b
	s.m.closeCode(code)
	c.gc.Write(b)
	return gnet.Close
}

// AppendPusherError appends the pusher:error event with code and message
// (pusher.AppendError: data is an object here, not a string).
func AppendPusherError(b []byte, code uint16, msg string) []byte {
	return pusher.AppendError(b, int(code), msg)
}

// pusherEstablished is c's pusher:connection_established frame.
func (s *Server) pusherEstablished(c *Conn) []byte {
	id := string(s.appendSocketID(make([]byte, 0, 32), c.num))
	return TextFrame(pusher.AppendConnectionEstablished(make([]byte, 0, 128), id, int(s.cfg.PusherActivityTimeout/time.Second)))
}

// Frames the loop sends Pusher connections as they are.
var (
	pusherPongFrame = TextFrame(pusher.AppendPong(nil))
	pusherPingFrame = TextFrame(pusher.AppendPing(nil))
)

// pusherMessage handles a data message of Pusher connection c: pusher:ping here,
// anything else to OnPusherMessage. It reports false when c was closed (a failed
// write) or is closing (a binary frame: not part of the protocol).
func (s *Server) pusherMessage(c *Conn, binary bool, payload []byte) bool {
	if binary {
		c.sh.startClose(c, wsproto.CloseUnsupported, "binary frames are not part of the Pusher protocol")
		return false
	}
	if isPusherPing(payload) {
		return s.writeOwn(c, pusherPongFrame)
	}
	if s.cfg.OnPusherMessage != nil {
		s.cfg.OnPusherMessage(c, payload)
	}
	return c.state == stateOpen
}

// isPusherPing reports whether payload is a pusher:ping event. Only a message that
// holds the name is decoded (pusher.ParseFrame allocates nothing), so other messages
// cost one scan here and are parsed by the receiver.
func isPusherPing(payload []byte) bool {
	if !bytes.Contains(payload, []byte(`pusher:ping`)) {
		return false
	}
	f, err := pusher.ParseFrame(payload)
	return err == nil && string(f.Event) == "pusher:ping"
}

// sweepPusher is the sweep's keepalive for Pusher connection c at now: pusher:ping
// after PusherActivityTimeout of silence, 4201 after PusherPongTimeout more. It
// reports whether c was closed (removed from the loop's list).
func (sh *shard) sweepPusher(c *Conn, now uint32) bool {
	s := sh.srv
	silent := now - c.lastSeen
	switch {
	case silent >= s.pusherDeadTicks:
		s.sendClose(c, PusherClosePongTimeout, "Pong reply not received")
		s.closeNow(c)
		return true
	case now >= c.deadline && silent >= s.pusherActivityTicks:
		// Once per silence, as for WebSocket pings (sweep): the deadline moves only
		// when a ping goes out.
		c.deadline = now + s.pusherActivityTicks
		s.writeOwn(c, pusherPingFrame)
		return c.state == stateClosed
	}
	return false
}

// pusherFrame is the Pusher event of st for a Pusher connection reached through key
// index k, or nil when it gets none: k is not the room of a Pusher channel, or st has
// no Event. The frame is built once per (message, room) by the first loop that
// needs it. A PusherRaw message (a client event) keeps its data value as is; any
// other has its data sent as a JSON string.
func (st *Stamped) pusherFrame(k int) []byte {
	if k < 0 || st.Event == "" {
		return nil
	}
	key := &st.Keys[k]
	if key.Kind != KeyRoom {
		return nil
	}
	if f := key.pusher.Load(); f != nil {
		return *f
	}
	_, channel, ok := PusherChannel(key.Name)
	if !ok {
		return nil
	}
	b := make([]byte, 0, len(st.Data)*5/4+len(st.Event)+len(channel)+len(st.PusherUser)+64)
	if st.PusherRaw && !st.Binary {
		// A client event: its data value relayed as the sender wrote it.
		b = pusher.AppendClientEvent(b, st.Event, channel, st.Data, st.PusherUser)
	} else {
		b = AppendPusherEvent(b, st.Event, channel, st.Binary, st.Data)
	}
	f := TextFrame(b)
	key.pusher.Store(&f)
	return f
}

// AppendPusherEvent appends {"event":<event>,"channel":<channel>,"data":<string>}. The
// data is always a JSON string, as the protocol wants: the characters of a string
// message, the text of a JSON value (clients parse it), the base64 of binary data.
func AppendPusherEvent(b []byte, event, channel string, binary bool, data []byte) []byte {
	if binary {
		data = base64.StdEncoding.AppendEncode(nil, data)
	}
	return pusher.AppendEvent(b, event, channel, data)
}

// Socket ids. Pusher libraries accept only ^\d+\.\d+$, so the connection id
// ("<NodeID>.<incarnation>-<n>") cannot serve: a socket id is "<node>.<n>", where n is
// the connection's number and node a 32-bit FNV-1a hash of "<NodeID>.<incarnation>-".
// Every run of every node gets its own node number unless two collide: among k node
// runs alive together the odds that any two share one are about k(k-1)/2³³ (k = 10:
// 1 in 95 million; k = 100: 1 in 870,000). A collision only matters for
// ExcludeSocket: a trigger's socket_id would also skip the connection with the same
// number on the other node, once; nothing is ever delivered to the wrong client.

// nodeNumber is the node number of socket ids for a node's id prefix.
func nodeNumber(idPrefix string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(idPrefix))
	return h.Sum32()
}

func (s *Server) appendSocketID(b []byte, num uint64) []byte {
	b = strconv.AppendUint(b, uint64(s.nodeNum), 10)
	b = append(b, '.')
	return strconv.AppendUint(b, num, 10)
}

// SocketID is c's Pusher socket id ("<node>.<n>"). Any goroutine. Every connection
// has one; Pusher clients are told theirs in pusher:connection_established.
func (c *Conn) SocketID() string {
	return string(c.sh.srv.appendSocketID(make([]byte, 0, 24), c.num))
}

// NodeNumber is the node part of this node's socket ids.
func (s *Server) NodeNumber() uint32 { return s.nodeNum }

// ParseSocketID splits a socket id into its node number and connection number; ok
// is false when id is not "<uint32>.<uint64>" in decimal.
func ParseSocketID(id string) (node uint32, num uint64, ok bool) {
	a, b, found := strings.Cut(id, ".")
	if !found || a == "" || b == "" || a[0] == '+' || b[0] == '+' {
		return 0, 0, false
	}
	n, err := strconv.ParseUint(a, 10, 32)
	if err != nil {
		return 0, 0, false
	}
	m, err := strconv.ParseUint(b, 10, 64)
	if err != nil {
		return 0, 0, false
	}
	return uint32(n), m, true
}

// ConnBySocketID returns the connection of socket id on this node, nil when it is
// malformed, of another node or closed. Any goroutine.
func (s *Server) ConnBySocketID(id string) *Conn {
	if id == "" {
		return nil
	}
	node, num, ok := ParseSocketID(id)
	if !ok || node != s.nodeNum {
		return nil
	}
	return s.reg.conn(num)
}

// excluded is the connection a delivery's ExcludeSocket names on this node: a
// Pusher connection, or nil.
func (s *Server) excluded(socketID string) *Conn {
	if c := s.ConnBySocketID(socketID); c != nil && c.kind == KindPusher {
		return c
	}
	return nil
}

// PusherApp is the app id of a Pusher connection ("" for others). Only on c's loop
// (it lives in Ext, which the receiver may replace), or in Config.OnUpgrade through
// Upgrade.PusherApp.
func (c *Conn) PusherApp() string {
	if c.kind != KindPusher || c.ext == nil {
		return ""
	}
	return c.ext.PusherApp
}

// Kind is the protocol c speaks. Any goroutine: it is fixed before c is published.
func (c *Conn) Kind() ConnKind { return c.kind }

// keepaliveTicks is how long c may be silent before the sweep pings it: the Pusher
// activity timeout for a Pusher connection, PingInterval for others.
func (s *Server) keepaliveTicks(c *Conn) uint32 {
	if c.kind == KindPusher {
		return s.pusherActivityTicks
	}
	return s.pingTicks
}

// CloseConn closes c with code and reason after what is already queued for it (a
// pusher:error sent just before goes out first). Any goroutine; nothing happens
// when c is closed already.
func (s *Server) CloseConn(c *Conn, code uint16, reason string) { s.closeOn(c, code, reason) }

// EachInRoom runs fn on each loop for every connection of that loop in room, on the
// loop (fn may use everything a loop callback may, and must not block). It fails
// (ErrStopped) when the loops have stopped. Connections joining or leaving room
// meanwhile are seen or not, as their loop's order says.
func (s *Server) EachInRoom(room string, fn func(c *Conn)) error {
	for _, sh := range s.shardList() {
		err := sh.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			for c := range sh.rooms[room] {
				if c.state == stateOpen && c.w == nil {
					fn(c)
				}
			}
			return nil
		}))
		if err != nil {
			return ErrStopped
		}
	}
	return nil
}
