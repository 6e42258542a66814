package loop

import (
	"context"
	"net/netip"

	"github.com/panjf2000/gnet/v2"

	"longlink/wsproto"
)

// Client messages: what a connection sends reaches Config.OnMessage with the
// connection itself, so the receiver can answer it later (Send) and read who sent it.
// The accessors below read the fields a connection is given before it is published,
// which never change afterwards: any goroutine may call them.

// User is the connection's user id (from its token); "" for a Pusher connection,
// signed in or not (see pusher.go).
func (c *Conn) User() string { return c.user }

// V2 reports whether the connection speaks the v2 protocol.
func (c *Conn) V2() bool { return c.kind == KindV2 }

// Meta is the connection's metadata, a JSON object's text ("" when none): what the
// connect hook added.
func (c *Conn) Meta() string { return c.meta }

// Remote is the client's address.
func (c *Conn) Remote() netip.AddrPort { return c.remote }

// Send writes payload to c as one text frame, from any goroutine: the write runs on
// c's loop, after what that loop is doing, and is dropped if c has closed by then.
// A connection whose unread bytes would pass MaxOutbound is closed as a slow
// consumer, as for pushes. payload must not be changed after the call.
func (s *Server) Send(c *Conn, payload []byte) {
	frame := TextFrame(payload)
	_ = c.sh.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
		if c.state == stateOpen {
			s.writeOwn(c, frame)
		}
		return nil
	}))
}

// SendText writes payload to c as one text frame from c's own loop (inside
// OnMessage): at once, before anything queued. It reports false when c was closed by
// the write or as a slow consumer.
func (s *Server) SendText(c *Conn, payload []byte) bool {
	sh := c.sh
	sh.scratch = wsproto.AppendFrame(sh.scratch[:0], wsproto.KindText, payload)
	return s.writeOwn(c, sh.scratch)
}
