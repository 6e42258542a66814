package loop

import (
	"bytes"
	"strings"
	"testing"

	"github.com/gobwas/ws"

	"longlink/internal/testutil"
	"longlink/wsproto"
)

// TestProtocolViolations checks every framing rule of RFC 6455 the gateway enforces,
// each ending with the right close code and a closed socket.
func TestProtocolViolations(t *testing.T) {
	s := startServer(t, func(c *Config) { c.MaxMessage = 1000; c.Echo = true })
	cases := []struct {
		name   string
		frames [][]byte
		code   uint16
	}{
		{"unmasked frame", [][]byte{frame(true, 0, ws.OpText, []byte("hi"), false)}, 1002},
		{"RSV1 set", [][]byte{frame(true, 4, ws.OpText, []byte("hi"), true)}, 1002},
		{"RSV3 set", [][]byte{frame(true, 1, ws.OpBinary, []byte("hi"), true)}, 1002},
		{"reserved opcode 3", [][]byte{frame(true, 0, 3, nil, true)}, 1002},
		{"reserved opcode 0xB", [][]byte{frame(true, 0, 0xB, nil, true)}, 1002},
		{"fragmented ping", [][]byte{frame(false, 0, ws.OpPing, []byte("x"), true)}, 1002},
		{"ping over 125 bytes", [][]byte{frame(true, 0, ws.OpPing, bytes.Repeat([]byte("x"), 126), true)}, 1002},
		{"continuation without start", [][]byte{frame(true, 0, ws.OpContinuation, []byte("x"), true)}, 1002},
		{"text inside fragmented message", [][]byte{
			frame(false, 0, ws.OpText, []byte("a"), true), frame(true, 0, ws.OpText, []byte("b"), true)}, 1002},
		{"invalid UTF-8", [][]byte{frame(true, 0, ws.OpText, []byte{0xce, 0xba, 0xff}, true)}, 1007},
		{"invalid UTF-8 across fragments", [][]byte{
			frame(false, 0, ws.OpText, []byte{0xce}, true), frame(true, 0, ws.OpContinuation, []byte{0x41}, true)}, 1007},
		{"frame over max message", [][]byte{frame(true, 0, ws.OpBinary, make([]byte, 1001), true)}, 1009},
		{"fragments over max message", [][]byte{
			frame(false, 0, ws.OpBinary, make([]byte, 600), true), frame(true, 0, ws.OpContinuation, make([]byte, 600), true)}, 1009},
		{"close with 1-byte payload", [][]byte{frame(true, 0, ws.OpClose, []byte{3}, true)}, 1002},
		{"close with invalid code 1005", [][]byte{frame(true, 0, ws.OpClose, closePayload(1005, ""), true)}, 1002},
		{"close with invalid code 999", [][]byte{frame(true, 0, ws.OpClose, closePayload(999, ""), true)}, 1002},
		{"close with invalid UTF-8 reason", [][]byte{frame(true, 0, ws.OpClose, closePayload(1000, "\xff"), true)}, 1007},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := rawDial(t, s, "u1")
			c.send(t, tc.frames...)
			c.expectClose(t, tc.code)
		})
	}
}

func TestCloseHandshakeEchoesCode(t *testing.T) {
	s := startServer(t, nil)
	for _, code := range []uint16{1000, 1001, 3000, 4999} {
		c := rawDial(t, s, "u1")
		c.send(t, frame(true, 0, ws.OpClose, closePayload(code, "bye"), true))
		c.expectClose(t, code)
	}
	// A close without a code is answered with an empty close.
	c := rawDial(t, s, "u1")
	c.send(t, frame(true, 0, ws.OpClose, nil, true))
	f := c.next(t)
	if f.Header.OpCode != ws.OpClose || len(f.Payload) != 0 {
		t.Fatalf("got %v %q, want an empty close", f.Header.OpCode, f.Payload)
	}
	c.expectEOF(t)
}

func TestPingPongAndEcho(t *testing.T) {
	s := startServer(t, func(c *Config) { c.Echo = true })
	c := rawDial(t, s, "u1")
	c.send(t, frame(true, 0, ws.OpPing, []byte("app-ping"), true))
	if f := c.next(t); f.Header.OpCode != ws.OpPong || string(f.Payload) != "app-ping" {
		t.Fatalf("got %v %q, want pong app-ping", f.Header.OpCode, f.Payload)
	}
	// Fragmented text with a ping in the middle: the pong comes first, then the
	// reassembled message.
	c.send(t,
		frame(false, 0, ws.OpText, []byte("Hello, "), true),
		frame(true, 0, ws.OpPing, []byte("mid"), true),
		frame(false, 0, ws.OpContinuation, []byte("wor"), true),
		frame(true, 0, ws.OpContinuation, []byte("ld ✓"), true))
	if f := c.next(t); f.Header.OpCode != ws.OpPong || string(f.Payload) != "mid" {
		t.Fatalf("got %v %q, want pong mid", f.Header.OpCode, f.Payload)
	}
	if f := c.next(t); f.Header.OpCode != ws.OpText || string(f.Payload) != "Hello, world ✓" || !f.Header.Fin {
		t.Fatalf("got %v %q", f.Header.OpCode, f.Payload)
	}
	bin := bytes.Repeat([]byte{0, 1, 2, 0xff}, 20000)
	c.send(t, frame(true, 0, ws.OpBinary, bin, true))
	if f := c.next(t); f.Header.OpCode != ws.OpBinary || !bytes.Equal(f.Payload, bin) {
		t.Fatalf("binary echo differs (%d bytes)", len(f.Payload))
	}
	// A frame written one byte at a time is parsed the same.
	for _, b := range frame(true, 0, ws.OpText, []byte("slow"), true) {
		c.send(t, []byte{b})
	}
	if f := c.next(t); string(f.Payload) != "slow" {
		t.Fatalf("got %q", f.Payload)
	}
	c.send(t, frame(true, 0, ws.OpClose, closePayload(1000, ""), true))
	c.expectClose(t, 1000)
}

func TestSplitHandshake(t *testing.T) {
	s := startServer(t, func(c *Config) { c.Echo = true })
	c := rawConnect(t, s)
	req := upgradeRequest(s.Addrs()[0], "/ws?token="+testutil.Token(t, testSecret, "u1"))
	// The request and the first frame arrive byte by byte in separate segments.
	all := append([]byte(req), frame(true, 0, ws.OpText, []byte("first"), true)...)
	for _, b := range all {
		c.send(t, []byte{b})
	}
	if resp := c.response(t); resp.StatusCode != 101 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if f := c.next(t); string(f.Payload) != "first" {
		t.Fatalf("got %q", f.Payload)
	}
}

func TestBadUpgradeRequests(t *testing.T) {
	s := startServer(t, nil)
	host := s.Addrs()[0]
	tok := testutil.Token(t, testSecret, "u1")
	cases := []struct {
		name, req string
		status    int
	}{
		{"not HTTP", "HELLO\r\n\r\n", 400},
		{"plain GET of /ws", "GET /ws?token=" + tok + " HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"wrong path", upgradeRequest(host, "/chat?token="+tok), 404},
		{"POST", strings.Replace(upgradeRequest(host, "/ws?token="+tok), "GET", "POST", 1), 405},
		{"version 8", strings.Replace(upgradeRequest(host, "/ws?token="+tok), "Version: 13", "Version: 8", 1), 426},
		{"huge head", "GET /ws HTTP/1.1\r\nX: " + strings.Repeat("a", 9000) + "\r\n\r\n", 431},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := rawConnect(t, s)
			resp := c.request(t, tc.req)
			if resp.StatusCode != tc.status {
				t.Fatalf("status = %d, want %d", resp.StatusCode, tc.status)
			}
			c.expectEOF(t)
		})
	}
	if got := s.m.failures["bad_request"].Get(); got < 5 {
		t.Errorf("bad_request failures = %d, want >= 5", got)
	}
}

// The token in Sec-WebSocket-Protocol is the entry beside "longlink", whatever its
// shape; without "longlink" the entries are another protocol's, not a token.
func TestTokenOfSubprotocol(t *testing.T) {
	f := func(query, auth string, protocols []string, wantToken, wantProto string) {
		t.Helper()
		req := wsproto.Request{RawQuery: query, Authorization: auth, Protocols: protocols}
		if tok, proto := tokenOf(&req); tok != wantToken || proto != wantProto {
			t.Fatalf("tokenOf(%q, %q, %q) = %q, %q; want %q, %q", query, auth, protocols, tok, proto, wantToken, wantProto)
		}
	}
	f("", "", []string{"longlink", "a.b.c"}, "a.b.c", "longlink")
	f("", "", []string{"longlink", "opaque-token"}, "opaque-token", "longlink")
	f("", "", []string{"opaque-token", "longlink"}, "opaque-token", "longlink")
	f("", "", []string{"chat", "a.b.c"}, "", "")
	f("token=q", "", []string{"longlink", "p"}, "q", "longlink")
	f("", "Bearer h", []string{"longlink", "p"}, "h", "longlink")
	f("", "", nil, "", "")
}
