package loop

import (
	"context"
	"errors"
	"slices"

	"github.com/panjf2000/gnet/v2"
)

// What the receiver of client messages (Config.OnMessage: the node) keeps per
// connection, and the room changes a connection asks for itself.
//
// Ext is owned by the connection's loop like the rest of its state: it is read and
// written only in OnMessage or in a function Do runs. It is nil until something needs
// it (a token that lists rooms the client may subscribe, the first rate-limited
// message), so an idle connection holds only the pointer.

// Ext is a connection's extension state.
type Ext struct {
	// Subscribe are the rooms (or "prefix*" patterns) the token lets the client
	// subscribe itself (Identity.Subscribe).
	Subscribe []string
	// Buckets are rate-limit buckets, indexed as the receiver chooses (node: 0 is
	// the client's own, 1+i business i's), allocated at the first limited message.
	Buckets []Bucket

	// PusherApp is a Pusher connection's app id, set by the loop at the handshake
	// (KindPusher; pusher.go). A receiver that replaces Ext keeps it: JoinConn lets
	// a Pusher connection into its own app's rooms only.
	PusherApp string
	// PusherUser is the user a Pusher connection signed in as (pusher:signin), for
	// the receiver to set and read on the loop. Conn.User stays "": it is read by
	// other goroutines without a lock, so it never changes after the connection is
	// published.
	PusherUser string
	// Pusher is the receiver's own state of a Pusher connection (node: its channels,
	// presence members, client-event bucket), on the loop like the rest of Ext.
	Pusher any
}

// Bucket is a token bucket: rate tokens a second, at most burst held. The zero
// Bucket is full.
type Bucket struct {
	tokens float64
	last   int64 // unix nanoseconds of the last refill; 0: never used
}

// Take takes one token at now (unix nanoseconds) and reports whether there was one.
// rate <= 0 means no limit.
func (b *Bucket) Take(now int64, rate, burst float64) bool {
	if rate <= 0 {
		return true
	}
	burst = max(burst, 1)
	if b.last == 0 {
		b.tokens, b.last = burst, now
	} else if now > b.last {
		b.tokens = min(burst, b.tokens+float64(now-b.last)*rate/1e9)
		b.last = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// Ext returns c's extension state (nil: none yet). Only on c's loop.
func (c *Conn) Ext() *Ext { return c.ext }

// SetExt sets c's extension state. Only on c's loop.
func (c *Conn) SetExt(e *Ext) { c.ext = e }

// ErrClosed: the connection closed before the function given to Do could run.
var ErrClosed = errors.New("loop: connection closed")

// Do runs fn on c's loop, after what the loop is doing, with open reporting whether
// c is still open. It fails (ErrStopped) without running fn when the loops have
// stopped. fn must not block.
func (s *Server) Do(c *Conn, fn func(open bool)) error {
	err := c.sh.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
		fn(c.state == stateOpen && c.w == nil)
		return nil
	}))
	if err != nil {
		return ErrStopped
	}
	return nil
}

// ErrForeignRoom: a Pusher connection may join only the rooms of its own app's
// channels (PusherRoom with its app id).
var ErrForeignRoom = errors.New("loop: a Pusher connection joins only its own app's channel rooms")

// JoinConn puts c, and only c (not the user's other or later connections, unlike
// JoinRoom), into room: the registry (room counts, presence) and this loop's room
// index, so every push this loop handles after the call reaches it. It runs on c's
// loop (OnMessage, Do) and reports whether c joined now (false: it was in room
// already); err is ErrClosed when c is not open, ErrForeignRoom when c is a Pusher
// connection and room is not one of its app's channels.
func (s *Server) JoinConn(c *Conn, room string) (joined bool, err error) {
	if c.state != stateOpen || c.w != nil {
		return false, ErrClosed
	}
	if c.kind == KindPusher {
		if app, _, ok := PusherChannel(room); !ok || app != c.PusherApp() {
			return false, ErrForeignRoom
		}
	}
	us := s.reg.lockOf(c)
	us.mu.Lock()
	if !slices.Contains(c.rooms, room) {
		c.rooms = append(c.rooms, room)
		s.reg.roomAdd(room, c.user)
		joined = true
	}
	us.mu.Unlock()
	if joined {
		c.sh.joinRoom(room, c)
	}
	return joined, nil
}

// LeaveConn takes c out of room (registry and room index) and reports whether it
// was in it. It runs on c's loop. A room the user was joined to through the API
// stays in the user's session: the user's later connections still join it.
func (s *Server) LeaveConn(c *Conn, room string) bool {
	if c.state != stateOpen {
		return false
	}
	us := s.reg.lockOf(c)
	us.mu.Lock()
	i := slices.Index(c.rooms, room)
	if i >= 0 {
		c.rooms = slices.Delete(c.rooms, i, i+1)
		s.reg.roomRemove(room, c.user)
	}
	us.mu.Unlock()
	if i >= 0 {
		c.sh.leaveRoom(room, c)
	}
	return i >= 0
}

// ConnRooms appends c's rooms to dst. Any goroutine.
func (s *Server) ConnRooms(c *Conn, dst []string) []string {
	us := s.reg.lockOf(c)
	us.mu.Lock()
	dst = append(dst, c.rooms...)
	us.mu.Unlock()
	return dst
}

// syncRoom sets c's membership of room in this loop's index to what the registry
// says. Room jobs use it rather than applying their own change: the registry changes
// under its lock in one order, but a job (an API join or leave) and a connection's
// own JoinConn or LeaveConn reach the index in another, and the index must end as the
// registry is.
func (sh *shard) syncRoom(room string, c *Conn) {
	us := sh.srv.reg.lockOf(c)
	us.mu.Lock()
	in := slices.Contains(c.rooms, room)
	us.mu.Unlock()
	if in && c.state != stateClosed {
		sh.joinRoom(room, c)
	} else {
		sh.leaveRoom(room, c)
	}
}
