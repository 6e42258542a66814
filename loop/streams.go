package loop

import (
	"context"
	"encoding/base64"
	"maps"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"

	"longlink/internal/jsonstr"
	"longlink/wsproto"
)

// Streams and the v2 protocol, as the loop sees them.
//
// The hub stamps each message with its position in every stream it was appended to
// (user:<id>, room:<name>, all) and hands the loop a Stamped delivery. Plain clients get
// Stamped.Plain, exactly the pushed bytes; v2 clients get a JSON envelope per stream,
// encoded once per (message, stream) and shared by every v2 recipient of that stream.
//
// A message can reach this node in several copies, one per stream owner (each owner
// covers the streams it owns). Each connection takes it from exactly one copy: the one
// that covers the first of the message's targets it matches, in the order users, rooms
// (as listed), all, connection ids (see primary).
//
// An upgrade can wait before its 101: the connection is registered (so pushes reach it),
// then Config.OnUpgrade asks the streams' owners to know this node holds it and, for a
// v2 client resuming, for what it missed. Until Upgrade.Done the connection's frames are
// held; Done writes the 101, the frames the hub built (welcome, replay), and then the
// held frames the replay did not already cover.

// KeyKind is the kind of stream a Key names.
type KeyKind uint8

const (
	KeyUser KeyKind = iota
	KeyRoom
	KeyAll
)

// Key is one stream a Stamped message covers, with the message's position in it.
type Key struct {
	Kind   KeyKind
	Name   string // user id, room name; "" for all
	Stream string // "user:<id>", "room:<name>", "all"
	Epoch  string // "" when the message was not stored (history off)
	Offset uint64

	v2     atomic.Pointer[[]byte] // the v2 frame, built by the first loop that needs it
	pos    atomic.Pointer[[]byte] // the v2 position message, likewise
	pusher atomic.Pointer[[]byte] // the Pusher event of a Pusher channel's room (pusher.go), likewise

	// Compressed variants of v2 and pusher for connections that negotiated
	// permessage-deflate (deflate.go), likewise built once.
	v2Z, pusherZ deflateCache
}

// Stamped is one copy of a message for this node's loops.
type Stamped struct {
	ID     string
	Binary bool
	JSON   bool // Data is a JSON value's text; otherwise a string's characters
	Data   []byte
	Plain  []byte // PrepareFrame(Binary, Data)
	Keys   []Key
	// Conns are connection ids this copy covers (targets without a stream).
	Conns []string
	// Full is every target of the message when other copies cover some of them, so a
	// connection matched here and there takes it once. Nil: this copy is the only one.
	Full *Targets
	// Ack marks the v2 envelopes "ack":true: the client acknowledges the message.
	Ack bool
	// Track, when set, counts the connections of each user and connection target
	// the loops wrote this copy to (receipts).
	Track *Track
	// Event is the Pusher event name. Pusher connections take a message only through
	// the room of one of their channels (PusherRoom) and only when it has an Event
	// (pusher.go); others ignore it.
	Event string
	// ExcludeSocket is a Pusher socket id ("<node>.<conn>", Conn.SocketID) that
	// does not get this copy, on whichever node it is: the trigger's socket_id, so a
	// client does not receive its own event. Only a Pusher connection is excluded
	// (a v2 one would miss a position of its stream). "" excludes nothing.
	ExcludeSocket string
	// PusherUser is a client event's sender on a presence channel: its frame carries
	// "user_id" (pusher.AppendClientEvent). "" for none.
	PusherUser string
	// PusherRaw sends Data (a JSON value) as the Pusher event's data as is (a client
	// event); otherwise it goes as a JSON string.
	PusherRaw bool

	usersOnce sync.Once
	users     map[string]struct{}
	conn      atomic.Pointer[[]byte] // v2 frame for connection-id recipients
	// Compressed variants of Plain and conn (deflate.go), built once when needed.
	plainZ, connZ deflateCache
}

// Head is a stream position in an UpgradeResult.
type Head struct {
	Epoch  string
	Offset uint64
}

// streamHead is one entry of Conn.replayed.
type streamHead struct {
	stream string
	Head
}

// Upgrade is a handshake waiting for Config.OnUpgrade to finish it.
type Upgrade struct {
	ConnID string
	User   string
	Rooms  []string // the connection's rooms (token and inherited)
	V2     bool
	// Kind is the connection's protocol. A KindPusher connection has no user (User
	// is "") and so no user stream; PusherApp is its app id.
	Kind      ConnKind
	PusherApp string
	Since     string // the ?since= value, URL-decoded; "" when absent

	s        *Server
	c        *Conn
	key      string
	protocol string
	mu       sync.Mutex // loopSide and result: Done may run while OnUpgrade has not returned
	loopSide bool       // OnUpgrade is still running on the loop
	result   *UpgradeResult
	done     atomic.Bool
}

// UpgradeResult finishes an Upgrade.
type UpgradeResult struct {
	// Err refuses the upgrade with this status and reason (503: retry).
	Err *AuthError
	// Frames are written right after the 101, in order (welcome, replay).
	Frames [][]byte
	// Heads: a held frame of a stream at or below its head here was in Frames already
	// (v2 connections only).
	Heads map[string]Head
}

// Done finishes the upgrade. Any goroutine may call it, once; later calls are ignored.
func (u *Upgrade) Done(r UpgradeResult) {
	if !u.done.CompareAndSwap(false, true) {
		return
	}
	u.mu.Lock()
	if u.loopSide {
		u.result = &r
		u.mu.Unlock()
		return
	}
	u.mu.Unlock()
	sh := u.c.sh
	_ = sh.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
		u.s.finishUpgrade(u, &r)
		// Not when finished inline from OnTraffic: that call goes on with the bytes
		// after the request itself.
		u.s.readEarly(u.c)
		return nil
	}))
}

// waiting is a connection's state between its registration and its 101.
type waiting struct {
	u     *Upgrade
	held  []heldFrame
	bytes int
}

type heldFrame struct {
	frame  []byte
	stream string // "" for frames of no stream
	epoch  string
	offset uint64
}

// maxHeld bounds the frames held for one waiting connection; past it (or past
// MaxOutbound bytes) the connection is closed: its client retries.
const maxHeld = 1024

// maxWaitingInbound is what a waiting client may send before its 101 (it should send
// nothing) before it is dropped.
const maxWaitingInbound = 64 << 10

// hold keeps frame for c until its 101. It reports false when c is over its bounds
// (and closes it).
func (sh *shard) hold(c *Conn, frame []byte, k *Key) bool {
	w := c.w
	if len(w.held) >= maxHeld || w.bytes+len(frame) > sh.srv.cfg.MaxOutbound {
		sh.srv.m.handshakeFailure("held_overflow")
		sh.srv.closeNow(c)
		return false
	}
	h := heldFrame{frame: frame}
	if k != nil {
		h.stream, h.epoch, h.offset = k.Stream, k.Epoch, k.Offset
	}
	w.held = append(w.held, h)
	w.bytes += len(frame)
	return true
}

// finishUpgrade runs on c's loop: it writes the 101 and what follows, or the refusal.
func (s *Server) finishUpgrade(u *Upgrade, r *UpgradeResult) {
	c := u.c
	if c.state != stateOpen || c.w == nil || c.w.u != u {
		return // closed (timeout, kick, drain) while waiting
	}
	w := c.w
	if r.Err != nil {
		c.w = nil
		s.m.handshakeFailure("streams")
		st := r.Err.Status
		if st == 0 {
			st = 503
		}
		c.sh.scratch = wsproto.AppendHTTPError(c.sh.scratch[:0], &wsproto.HTTPError{Status: st, Reason: r.Err.Reason, Header: "Retry-After: 1\r\n"})
		c.gc.Write(c.sh.scratch)
		s.closeNow(c)
		return
	}
	c.w = nil
	if c.kind == KindV2 && len(r.Heads) > 0 {
		// The welcome's heads: what is at or below them the client has (replayed, or
		// from before it was entitled to it). See Conn.replayed.
		c.replayed = make([]streamHead, 0, len(r.Heads))
		for name, hd := range r.Heads {
			c.replayed = append(c.replayed, streamHead{name, hd})
		}
	}
	frames := make([][]byte, 0, 1+len(r.Frames)+len(w.held))
	frames = append(frames, wsproto.AppendUpgradeResponseExt(nil, u.key, u.protocol, c.extensions()))
	if c.kind == KindPusher {
		frames = append(frames, s.pusherEstablished(c)) // first, as the protocol wants
	}
	frames = append(frames, r.Frames...)
	for _, h := range w.held {
		if c.kind == KindV2 && h.epoch != "" {
			if hd, ok := r.Heads[h.stream]; ok && hd.Epoch == h.epoch && h.offset <= hd.Offset {
				continue
			}
		}
		frames = append(frames, h.frame)
	}
	n := 0
	for _, f := range frames[1:] {
		n += len(f)
	}
	c.gc.Writev(frames) // on failure gnet closes c; OnClose unpublishes it
	c.sh.framesOut.Add(uint64(len(frames) - 1))
	c.sh.bytesOut.Add(uint64(n))
	c.deadline = s.clock.ticks() + s.keepaliveTicks(c)
	s.announce(c)
}

// primary reports whether connection c, matched through key index k of st (-1: a
// connection id), takes st from this copy: no earlier target of the whole message
// matches it. Targets in this copy that come earlier were tried first and set c.seq.
func (sh *shard) primary(c *Conn, st *Stamped, k int) bool {
	f := st.Full
	if f == nil {
		return true
	}
	rank := len(f.Rooms) + 2 // connection id
	if k >= 0 {
		key := &st.Keys[k]
		switch key.Kind {
		case KeyUser:
			return true
		case KeyRoom:
			for i, r := range f.Rooms {
				if r == key.Name {
					rank = 1 + i
					break
				}
			}
		case KeyAll:
			rank = 1 + len(f.Rooms)
		}
	}
	if st.hasUser(c.user) {
		return false
	}
	for i := 0; i < len(f.Rooms) && 1+i < rank; i++ {
		if _, in := sh.rooms[f.Rooms[i]][c]; in {
			return false
		}
	}
	return !(f.All && 1+len(f.Rooms) < rank)
}

func (st *Stamped) hasUser(u string) bool {
	users := st.Full.Users
	if len(users) <= 16 {
		for _, x := range users {
			if x == u {
				return true
			}
		}
		return false
	}
	st.usersOnce.Do(func() {
		st.users = make(map[string]struct{}, len(users))
		for _, x := range users {
			st.users[x] = struct{}{}
		}
	})
	_, ok := st.users[u]
	return ok
}

// frameFor returns what c gets of st through key index k (-1: a connection id):
// its compressed variant when c negotiated permessage-deflate and it applies.
func (st *Stamped) frameFor(c *Conn, k int) []byte {
	switch c.kind {
	case KindPlain:
		return c.sh.deflated(c, st.Plain, &st.plainZ)
	case KindPusher:
		f := st.pusherFrame(k) // nil: not a Pusher event of one of its channels
		if f == nil {
			return nil
		}
		return c.sh.deflated(c, f, &st.Keys[k].pusherZ)
	}
	var p *atomic.Pointer[[]byte]
	var z *deflateCache
	var key *Key
	if k >= 0 {
		key = &st.Keys[k]
		p, z = &key.v2, &key.v2Z
	} else {
		p, z = &st.conn, &st.connZ
	}
	if f := p.Load(); f != nil {
		return c.sh.deflated(c, *f, z)
	}
	f := st.appendV2(nil, key)
	p.Store(&f)
	return c.sh.deflated(c, f, z)
}

// positionFrame is the v2 message that moves a connection's position in stream key
// for st, which it takes through another stream.
func (st *Stamped) positionFrame(key *Key) []byte {
	if f := key.pos.Load(); f != nil {
		return *f
	}
	b := append(make([]byte, 0, 96+len(key.Stream)), `{"type":"position","stream":`...)
	b = AppendJSONString(b, key.Stream)
	b = append(b, `,"epoch":`...)
	b = AppendJSONString(b, key.Epoch)
	b = append(b, `,"offset":`...)
	b = strconv.AppendUint(b, key.Offset, 10)
	b = append(b, `,"id":`...)
	b = AppendJSONString(b, st.ID)
	b = append(b, '}')
	f := TextFrame(b)
	key.pos.Store(&f)
	return f
}

// appendV2 appends the v2 envelope of st in stream key (nil: none) as a text frame.
func (st *Stamped) appendV2(dst []byte, key *Key) []byte {
	b := make([]byte, 0, len(st.Data)*4/3+128)
	b = append(b, `{"type":"push","id":`...)
	b = AppendJSONString(b, st.ID)
	if key != nil {
		b = append(b, `,"stream":`...)
		b = AppendJSONString(b, key.Stream)
		if key.Epoch != "" {
			b = append(b, `,"epoch":`...)
			b = AppendJSONString(b, key.Epoch)
			b = append(b, `,"offset":`...)
			b = strconv.AppendUint(b, key.Offset, 10)
		}
	}
	if st.Ack {
		b = append(b, `,"ack":true`...)
	}
	b = AppendData(b, st.Binary, st.JSON, st.Data)
	b = append(b, '}')
	return wsproto.AppendFrame(dst, wsproto.KindText, b)
}

// Track counts where one copy of a message with a receipt was written. The loops
// add to it as they write; read it once the copy's Pending is done.
type Track struct {
	mu    sync.Mutex
	users map[string]int // user -> connections written through its user stream
	conns []string       // connection ids written as connection targets
	via   []Via          // connection targets written through their user's stream
}

// Via is a connection target that took the message through its user's stream (a
// connection takes a message once, and a user target comes first): it acknowledges
// it there, at Offset.
type Via struct {
	Conn, Stream string
	Offset       uint64
}

// Via returns the connection targets written through their user streams (a copy).
func (t *Track) Via() []Via {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.via)
}

// Users returns, per user target, the connections written so far: a copy, since a
// loop may still be writing (a Pending given up on after its timeout).
func (t *Track) Users() map[string]int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return maps.Clone(t.users)
}

// Conns returns the connection targets written so far (a copy).
func (t *Track) Conns() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.conns)
}

// wrote records c, reached through key index k of st (-1: a connection id).
func (t *Track) wrote(st *Stamped, c *Conn, k int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case k < 0:
		t.conns = append(t.conns, c.ID())
	case st.Keys[k].Kind == KeyUser:
		if t.users == nil {
			t.users = map[string]int{}
		}
		t.users[st.Keys[k].Name]++
		if f := st.Full; f != nil && len(f.Connections) > 0 {
			if id := c.ID(); slices.Contains(f.Connections, id) {
				t.via = append(t.via, Via{Conn: id, Stream: st.Keys[k].Stream, Offset: st.Keys[k].Offset})
			}
		}
	}
}

// AppendData appends `,"data":...` or `,"data_base64":"..."` for a message's bytes.
func AppendData(b []byte, binary, isJSON bool, data []byte) []byte {
	switch {
	case binary:
		b = append(b, `,"data_base64":"`...)
		b = base64.StdEncoding.AppendEncode(b, data)
		b = append(b, '"')
	case isJSON:
		b = append(b, `,"data":`...)
		b = append(b, data...)
	default:
		b = append(b, `,"data":`...)
		b = AppendJSONString(b, string(data))
	}
	return b
}

// AppendJSONString appends s as a JSON string (jsonstr.Append), for the hub's
// welcome and replay envelopes.
func AppendJSONString(b []byte, s string) []byte { return jsonstr.Append(b, s) }

func timeNow() int64 { return time.Now().UnixNano() }

// TextFrame encodes payload as one server text frame.
func TextFrame(payload []byte) []byte {
	return wsproto.AppendFrame(make([]byte, 0, wsproto.HeaderSize(len(payload))+len(payload)), wsproto.KindText, payload)
}

// CloseResume is the close code that tells a v2 client to reconnect with its
// positions: this node could not vouch that it received every message of a stream it
// takes (RFC 6455 1012, service restart).
const CloseResume = 1012

// ResumeV2 closes, with CloseResume, the v2 connections that take stream kind/name
// (KeyAll: every v2 connection), so their clients reconnect and recover what this
// node missed. Pusher connections of a Pusher channel's room (KeyAll: every one)
// are closed with 4200 instead, their protocol's "reconnect now". Plain connections
// stay: they cannot recover. It returns at once.
func (s *Server) ResumeV2(kind KeyKind, name, reason string) {
	if kind == KeyUser {
		for _, c := range s.reg.userConns(nil, name) {
			if c.kind == KindV2 {
				s.closeOn(c, CloseResume, reason)
			}
		}
		return
	}
	_, _, pusherRoom := PusherChannel(name)
	for _, sh := range s.shardList() {
		sh := sh
		_ = sh.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			var conns []*Conn
			if kind == KeyAll {
				conns = append(conns, sh.conns...)
			} else {
				for c := range sh.rooms[name] {
					conns = append(conns, c)
				}
			}
			for _, c := range conns {
				switch {
				case c.state != stateOpen:
				case c.kind == KindV2:
					sh.startClose(c, CloseResume, reason)
				case c.kind == KindPusher && (kind == KeyAll || pusherRoom):
					// Pusher has no replay: a client that may have missed a
					// channel's events reconnects (4200) and resubscribes, so its
					// app knows to refetch instead of silently missing them.
					sh.startClose(c, PusherCloseReconnect, reason)
				}
			}
			return nil
		}))
	}
}
