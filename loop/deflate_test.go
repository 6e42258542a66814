package loop

import (
	"bytes"
	"compress/flate"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gorilla/websocket"

	"longlink/internal/testutil"
	"longlink/wsproto"
)

// json2K is the shared 2 KB JSON payload (testutil.JSON2K).
func json2K() []byte { return testutil.JSON2K() }

// deflateDial upgrades as user offering the Sec-WebSocket-Extensions value offer
// ("" for none) and returns the client and the 101.
func deflateDial(t testing.TB, s *Server, user, target, offer string) (*rawClient, *http.Response) {
	t.Helper()
	c := rawConnect(t, s)
	var extra []string
	if offer != "" {
		extra = append(extra, "Sec-WebSocket-Extensions: "+offer+"\r\n")
	}
	if target == "" {
		target = "/ws"
	}
	resp := c.request(t, upgradeRequest(s.Addrs()[0], target+"?token="+testutil.Token(t, testSecret, user), extra...))
	if resp.StatusCode != 101 {
		t.Fatalf("upgrade: %s", resp.Status)
	}
	return c, resp
}

// inflateMessage reads what a server frame carries: its payload, inflated when RSV1
// is set (RFC 7692 §7.2.2), with the standard library's inflater.
func inflateMessage(t testing.TB, f ws.Frame) []byte {
	t.Helper()
	if !f.Header.Rsv1() {
		return f.Payload
	}
	r := flate.NewReader(io.MultiReader(bytes.NewReader(f.Payload), bytes.NewReader([]byte{0, 0, 0xff, 0xff, 1, 0, 0, 0xff, 0xff})))
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("inflating a server message: %v", err)
	}
	return out
}

// deflateSaved sums the loops' per-recipient counters.
func deflateFrames(s *Server) (frames, saved uint64) {
	for _, sh := range s.shardList() {
		frames += sh.deflateFrames.Load()
		saved += sh.deflateSaved.Load()
	}
	return frames, saved
}

// TestDeflateBroadcastCompressedOnce broadcasts a 2 KB JSON message to gorilla
// clients that negotiate permessage-deflate, one that does not, and a raw client
// that reads the frame as it is on the wire: the message is compressed once, every
// negotiated recipient gets the same compressed frame, the other gets it plain, and
// a small message goes uncompressed.
func TestDeflateBroadcastCompressedOnce(t *testing.T) {
	s := startServer(t, func(c *Config) { c.Deflate = true; c.Loops = 2 })
	url := "ws://" + s.Addrs()[0] + "/ws?token="
	var gz []*websocket.Conn
	for i := range 4 {
		d := websocket.Dialer{EnableCompression: true}
		c, resp, err := d.Dial(url+testutil.Token(t, testSecret, fmt.Sprintf("g%d", i)), nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if got := resp.Header.Get("Sec-WebSocket-Extensions"); got != wsproto.DeflateAnswer(wsproto.DeflateNoLimit) {
			t.Fatalf("gorilla's offer answered with %q", got)
		}
		gz = append(gz, c)
	}
	plainC, resp, err := websocket.DefaultDialer.Dial(url+testutil.Token(t, testSecret, "plain"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { plainC.Close() })
	if got := resp.Header.Get("Sec-WebSocket-Extensions"); got != "" {
		t.Fatalf("no offer, yet the 101 has Sec-WebSocket-Extensions: %q", got)
	}
	raw, resp2 := deflateDial(t, s, "raw", "", "permessage-deflate; client_max_window_bits")
	if got := resp2.Header.Get("Sec-WebSocket-Extensions"); got != wsproto.DeflateAnswer(wsproto.DeflateNoLimit) {
		t.Fatalf("Chromium's offer answered with %q", got)
	}
	testutil.WaitFor(t, 5*time.Second, "6 connections", func() bool { return s.Connections() == 6 })
	if n := s.m.deflateConns.Get(); n != 5 {
		t.Fatalf("longlink_deflate_connections_total = %d, want 5", n)
	}

	msg := json2K()
	frame := PrepareFrame(false, msg)
	if got, err := s.Deliver(context.Background(), frame, Targets{All: true}, 0); err != nil || got != 6 {
		t.Fatalf("broadcast wrote %d (%v), want 6", got, err)
	}
	for _, c := range append(gz, plainC) {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, b, err := c.ReadMessage(); err != nil || !bytes.Equal(b, msg) {
			t.Fatalf("read %d bytes, %v; want the 2 KB message", len(b), err)
		}
	}
	f := raw.next(t)
	if !f.Header.Rsv1() || len(f.Payload) >= len(msg)/2 {
		t.Fatalf("raw client got RSV1=%v, %d bytes for %d", f.Header.Rsv1(), len(f.Payload), len(msg))
	}
	if got := inflateMessage(t, f); !bytes.Equal(got, msg) {
		t.Fatal("the compressed frame does not inflate to the message")
	}
	if n := s.m.deflateMessages.Get(); n != 1 {
		t.Fatalf("compressed %d times for 5 negotiated recipients on 2 loops, want once", n)
	}
	frames, saved := deflateFrames(s)
	if frames != 5 || saved != 5*uint64(len(frame)-len(f.Payload)-4) {
		t.Fatalf("deflate frames %d saved %d; want 5 and 5×%d", frames, saved, len(frame)-len(f.Payload)-4)
	}

	// Under DeflateMinBytes (256): as it is.
	if got, err := s.Deliver(context.Background(), PrepareFrame(false, []byte(`{"small":true}`)), Targets{Users: []string{"raw"}}, 0); err != nil || got != 1 {
		t.Fatalf("small push wrote %d (%v)", got, err)
	}
	if f := raw.next(t); f.Header.Rsv1() || string(f.Payload) != `{"small":true}` {
		t.Fatalf("small message: RSV1=%v %q", f.Header.Rsv1(), f.Payload)
	}
	if n := s.m.deflateMessages.Get(); n != 1 {
		t.Fatalf("a small message was compressed (%d)", n)
	}
}

// TestDeflateStampedVariants: a stamped message reaches a plain and a v2 client that
// both negotiated deflate; each kind of frame (the plain bytes, the v2 envelope) is
// compressed once, however many recipients take it.
func TestDeflateStampedVariants(t *testing.T) {
	s := startServer(t, func(c *Config) { c.Deflate = true })
	offer := "permessage-deflate"
	var plains, v2s []*rawClient
	for i := range 3 {
		c, _ := deflateDial(t, s, fmt.Sprintf("p%d", i), "", offer)
		plains = append(plains, c)
	}
	for i := range 3 { // v2 clients, asked for with the query form
		c := rawConnect(t, s)
		resp := c.request(t, upgradeRequest(s.Addrs()[0], "/ws?protocol=v2&token="+testutil.Token(t, testSecret, fmt.Sprintf("x%d", i)),
			"Sec-WebSocket-Extensions: "+offer+"\r\n"))
		if resp.StatusCode != 101 || resp.Header.Get("Sec-WebSocket-Extensions") == "" {
			t.Fatalf("v2 upgrade: %s %q", resp.Status, resp.Header.Get("Sec-WebSocket-Extensions"))
		}
		v2s = append(v2s, c)
	}
	testutil.WaitFor(t, 5*time.Second, "connections", func() bool { return s.Connections() == 6 })
	msg := json2K()
	st := &Stamped{ID: "m1", JSON: true, Data: msg, Plain: PrepareFrame(false, msg), Keys: []Key{{Kind: KeyAll, Stream: "all"}}}
	p, err := s.SubmitStamped(st, 0)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := p.Wait(context.Background()); err != nil || n != 6 {
		t.Fatalf("stamped wrote %d (%v), want 6", n, err)
	}
	for _, c := range plains {
		f := c.next(t)
		if !f.Header.Rsv1() || !bytes.Equal(inflateMessage(t, f), msg) {
			t.Fatalf("plain client: RSV1=%v", f.Header.Rsv1())
		}
	}
	for _, c := range v2s {
		f := c.next(t)
		for f.Header.OpCode == ws.OpText && !f.Header.Rsv1() && strings.Contains(string(f.Payload), `"welcome"`) {
			f = c.next(t)
		}
		got := inflateMessage(t, f)
		if !f.Header.Rsv1() || !bytes.Contains(got, msg) || !bytes.HasPrefix(got, []byte(`{"type":"push","id":"m1"`)) {
			t.Fatalf("v2 client: RSV1=%v %.80s", f.Header.Rsv1(), got)
		}
	}
	if n := s.m.deflateMessages.Get(); n != 2 {
		t.Fatalf("compressed %d times, want 2 (plain bytes and v2 envelope)", n)
	}
}

// TestDeflateEcho: a gorilla client that compresses what it sends gets the echo
// back; a decompression bomb is refused with 1009; RSV1 from a client that did not
// negotiate is 1002; and with Deflate off the offer is declined.
func TestDeflateEcho(t *testing.T) {
	s := startServer(t, func(c *Config) { c.Deflate = true; c.Echo = true; c.MaxMessage = 64 << 10 })
	d := websocket.Dialer{EnableCompression: true}
	c, _, err := d.Dial("ws://"+s.Addrs()[0]+"/ws?token="+testutil.Token(t, testSecret, "e"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.EnableWriteCompression(true)
	msg := json2K()
	for range 3 {
		if err := c.WriteMessage(websocket.TextMessage, msg); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, b, err := c.ReadMessage(); err != nil || !bytes.Equal(b, msg) {
			t.Fatalf("echo: %d bytes, %v", len(b), err)
		}
	}
	if n := s.m.deflateMessages.Get(); n != 3 {
		t.Fatalf("echoes compressed %d, want 3", n)
	}

	// 64 KiB + 1 of zeros compresses to a few hundred bytes.
	var zb bytes.Buffer
	w, _ := flate.NewWriter(&zb, flate.BestCompression)
	w.Write(make([]byte, 64<<10+1))
	w.Flush()
	bomb := zb.Bytes()[:zb.Len()-4]
	raw, _ := deflateDial(t, s, "bomb", "", "permessage-deflate")
	raw.send(t, framePayloadRSV1(ws.OpBinary, bomb))
	raw.expectClose(t, wsproto.CloseTooBig)

	plain := rawDial(t, s, "norsv")
	plain.send(t, framePayloadRSV1(ws.OpText, bomb))
	plain.expectClose(t, wsproto.CloseProtocolError)

	off := startServer(t, func(c *Config) { c.Deflate = false; c.Echo = true })
	c2, resp, err := d.Dial("ws://"+off.Addrs()[0]+"/ws?token="+testutil.Token(t, testSecret, "off"), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if got := resp.Header.Get("Sec-WebSocket-Extensions"); got != "" {
		t.Fatalf("Deflate off, yet the offer was accepted: %q", got)
	}
	c2.EnableWriteCompression(true) // without negotiation gorilla sends plain frames
	if err := c2.WriteMessage(websocket.TextMessage, msg); err != nil {
		t.Fatal(err)
	}
	c2.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, b, err := c2.ReadMessage(); err != nil || !bytes.Equal(b, msg) {
		t.Fatalf("echo without deflate: %d bytes, %v", len(b), err)
	}
}

// framePayloadRSV1 is one final masked client frame with RSV1 set.
func framePayloadRSV1(op ws.OpCode, p []byte) []byte { return frame(true, 0x4, op, p, true) }

// TestDeflatePusher: Pusher connections (pusher-js in a browser offers deflate) get a
// channel's event compressed, built once for the channel's subscribers; the
// connection_established event before it goes uncompressed.
func TestDeflatePusher(t *testing.T) {
	s := startPusherServer(t, func(c *Config) { c.Deflate = true })
	const room = "pusher/app1/big"
	var clients []*rawClient
	for range 3 {
		c := rawConnect(t, s)
		resp := c.request(t, upgradeRequest(s.Addrs()[0], "/app/key1"+pusherQuery, "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"))
		if resp.StatusCode != 101 || resp.Header.Get("Sec-WebSocket-Extensions") != wsproto.DeflateAnswer(wsproto.DeflateNoLimit) {
			t.Fatalf("Pusher upgrade: %s, extensions %q", resp.Status, resp.Header.Get("Sec-WebSocket-Extensions"))
		}
		id := c.established(t, 120)
		conn := s.ConnBySocketID(id)
		errc := make(chan error, 1)
		s.Do(conn, func(bool) { _, err := s.JoinConn(conn, room); errc <- err })
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	msg := json2K()
	st := &Stamped{ID: "m1", JSON: true, Data: msg, Plain: PrepareFrame(false, msg), Keys: []Key{{Kind: KeyRoom, Name: room, Stream: "room:" + room}}, Event: "update"}
	p, err := s.SubmitStamped(st, 0)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := p.Wait(context.Background()); err != nil || n != 3 {
		t.Fatalf("wrote %d (%v), want 3", n, err)
	}
	want := AppendPusherEvent(nil, "update", "big", false, msg)
	for _, c := range clients {
		f := c.next(t)
		if !f.Header.Rsv1() || !bytes.Equal(inflateMessage(t, f), want) {
			t.Fatalf("Pusher event: RSV1=%v", f.Header.Rsv1())
		}
	}
	if n := s.m.deflateMessages.Get(); n != 1 {
		t.Fatalf("the channel's event compressed %d times, want once", n)
	}
}

// TestDeflatedNoAllocs: once a frame's compressed variant exists, choosing it for
// another recipient allocates nothing (the per-recipient hot path).
func TestDeflatedNoAllocs(t *testing.T) {
	s := newTestServer(t, func(c *Config) { c.Deflate = true })
	sh := &shard{srv: s}
	c := &Conn{sh: sh}
	c.parser.Deflate = wsproto.DeflateNoLimit
	frame := PrepareFrame(false, json2K())
	var z deflateCache
	first := sh.deflated(c, frame, &z)
	if len(first) >= len(frame) || first[0]&0x40 == 0 {
		t.Fatalf("not compressed: %d bytes", len(first))
	}
	if a := testing.AllocsPerRun(100, func() { sh.deflated(c, frame, &z) }); a != 0 {
		t.Fatalf("deflated allocates %v per recipient", a)
	}
	plain := &Conn{sh: sh}
	if f := sh.deflated(plain, frame, &z); &f[0] != &frame[0] {
		t.Fatal("a connection without deflate got the compressed frame")
	}
	small := &Conn{sh: sh}
	small.parser.Deflate = 9 // server_max_window_bits=9: at most 512-byte messages compressed
	if f := sh.deflated(small, frame, &z); &f[0] != &frame[0] {
		t.Fatal("a 2 KB message compressed for a 512-byte window")
	}
}
