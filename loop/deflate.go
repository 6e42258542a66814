package loop

import (
	"sync"

	"longlink/wsproto"
)

// permessage-deflate on the loop (wsproto/deflate.go has the wire side).
//
// A connection negotiates it in its upgrade (Config.Deflate); its mode is the one
// byte c.parser.Deflate, which the parser reads for incoming messages and the loop
// for outgoing ones. Every pushed frame (plain bytes, v2 envelope, Pusher event)
// has a compressed variant next to it, a deflateCache beside the frame or frame
// cache it varies (Stamped, Key, delivery): built once, lazily, by the first loop
// that has a negotiated recipient for it, and shared by every other one. The server never takes context over from
// one message to the next (server_no_context_takeover), so one compressed frame is
// right for every connection. A frame under Config.DeflateMinBytes, larger than a
// connection's window, or that compression would not make smaller goes as it is.
// Frames the loop builds for one connection (echo, pong, close, welcome, replay,
// position) go uncompressed: RFC 7692 lets each message choose.

// negotiateDeflate sets c's deflate mode from the request's offers (handshake).
func (s *Server) negotiateDeflate(c *Conn, req *wsproto.Request) {
	if !s.cfg.Deflate || req.Extensions == "" {
		return
	}
	if mode, ok := wsproto.NegotiateDeflate(req.Extensions); ok {
		c.parser.Deflate = mode
		s.m.deflateConns.Inc()
	}
}

// extensions is the Sec-WebSocket-Extensions value of c's 101 ("" for none).
func (c *Conn) extensions() string { return wsproto.DeflateAnswer(c.parser.Deflate) }

// deflateCache is the compressed variant of one shared frame: built by the first
// loop that needs it while any other loop that needs it meanwhile waits (for one
// compression, a few µs for 2 KiB: less than compressing it again), then read by
// all. f is nil when compression would not make the frame smaller.
type deflateCache struct {
	once sync.Once
	f    []byte
}

// deflated returns what c gets for plain, a shared frame whose compressed variant
// is cached in z: that variant when c negotiated deflate and it applies, plain
// otherwise. It runs on c's loop; z is shared by every loop.
func (sh *shard) deflated(c *Conn, plain []byte, z *deflateCache) []byte {
	mode := c.parser.Deflate
	if mode == 0 || len(plain) < 2 {
		return plain
	}
	n := len(plain) - 2 // the payload: our frames have the shortest header for it
	switch plain[1] & 0x7F {
	case 126:
		n -= 2
	case 127:
		n -= 8
	}
	if n < sh.srv.cfg.DeflateMinBytes || n > wsproto.DeflateWindow(mode) {
		return plain
	}
	z.once.Do(func() {
		m := sh.srv.m
		if z.f = wsproto.DeflateFrame(plain); z.f == nil {
			m.deflateSkipped.Inc()
			return
		}
		m.deflateMessages.Inc()
		m.deflateIn.Add(len(plain))
		m.deflateOut.Add(len(z.f))
	})
	if z.f == nil {
		return plain
	}
	sh.deflateFrames.Add(1)
	sh.deflateSaved.Add(uint64(len(plain) - len(z.f)))
	return z.f
}
