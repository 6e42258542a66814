package loop

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/gobwas/ws"

	"longlink/internal/testutil"
)

// An idle connection's struct is one 256-byte size class: a field more costs every
// connection 32 bytes (the next class), so it must fit in the padding.
func TestConnSizeClass(t *testing.T) {
	if n := unsafe.Sizeof(Conn{}); n > 256 {
		t.Fatalf("loop.Conn is %d bytes, over its 256-byte size class", n)
	}
}

func TestBucket(t *testing.T) {
	var b Bucket
	now := int64(1e9)
	for i := range 3 {
		if !b.Take(now, 10, 3) {
			t.Fatalf("take %d of a full bucket of 3 refused", i)
		}
	}
	if b.Take(now, 10, 3) {
		t.Fatal("a fourth take in the same instant allowed")
	}
	if !b.Take(now+100e6, 10, 3) { // 100 ms at 10/s: one token
		t.Fatal("refill after 100ms refused")
	}
	if b.Take(now+100e6, 10, 3) {
		t.Fatal("refill gave more than one token")
	}
	if !b.Take(now+10e9, 10, 3) || !b.Take(now+10e9, 10, 3) || !b.Take(now+10e9, 10, 3) || b.Take(now+10e9, 10, 3) {
		t.Fatal("a long pause refills to the burst, not beyond")
	}
	var off Bucket
	for range 100 {
		if !off.Take(now, 0, 0) {
			t.Fatal("rate 0 is no limit")
		}
	}
}

// JoinConn and LeaveConn change one connection's rooms, not its user's other
// connections', and pushes to the room follow at once; an API LeaveRoom afterwards
// still wins (the index follows the registry).
func TestJoinConnOneConnection(t *testing.T) {
	var sp atomic.Pointer[Server] // set before any client connects
	s := newTestServer(t, func(c *Config) {
		c.OnMessage = func(c *Conn, _ bool, p []byte) {
			s := sp.Load()
			verb, room, _ := strings.Cut(string(p), ":")
			var out string
			switch verb {
			case "join":
				joined, err := s.JoinConn(c, room)
				out = "joined=" + boolStr(joined) + " err=" + errStr(err)
			case "leave":
				out = "left=" + boolStr(s.LeaveConn(c, room))
			case "rooms":
				out = strings.Join(s.ConnRooms(c, nil), ",")
			}
			s.SendText(c, []byte(out))
		}
	})
	sp.Store(s)
	start(t, s)
	a, b := rawDial(t, s, "u1"), rawDial(t, s, "u1")
	ask := func(c *rawClient, msg, want string) {
		t.Helper()
		c.send(t, frame(true, 0, ws.OpText, []byte(msg), true))
		if f := c.next(t); string(f.Payload) != want {
			t.Fatalf("%s: got %q, want %q", msg, f.Payload, want)
		}
	}
	ask(a, "join:r", "joined=true err=")
	ask(a, "join:r", "joined=false err=")
	ask(a, "rooms:", "r")
	ask(b, "rooms:", "")
	if ri := s.Room("r"); ri.Connections != 1 || ri.Members != 1 {
		t.Fatalf("room counts %+v, want one connection of one member", ri)
	}
	push := func(data string) int {
		n, err := s.Deliver(context.Background(), PrepareFrame(false, []byte(data)), Targets{Rooms: []string{"r"}}, 0)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := push("m1"); n != 1 {
		t.Fatalf("push to the room reached %d connections, want 1", n)
	}
	if f := a.next(t); string(f.Payload) != "m1" {
		t.Fatalf("a got %q", f.Payload)
	}
	ask(a, "leave:r", "left=true")
	ask(a, "leave:r", "left=false")
	if n := push("m2"); n != 0 {
		t.Fatalf("push after leave reached %d", n)
	}
	// API join (both connections), then one connection leaves itself, then the API
	// leaves: nothing stays in the index.
	if _, _, err := s.JoinRoom(context.Background(), "q", []string{"u1"}); err != nil {
		t.Fatal(err)
	}
	ask(b, "leave:q", "left=true")
	ask(b, "join:q", "joined=true err=")
	if _, _, err := s.LeaveRoom(context.Background(), "q", []string{"u1"}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 5*time.Second, "room q empty", func() bool { return s.Room("q").Connections == 0 })
	n, err := s.Deliver(context.Background(), PrepareFrame(false, []byte("m3")), Targets{Rooms: []string{"q"}}, 0)
	if err != nil || n != 0 {
		t.Fatalf("push to a room everyone left reached %d (%v)", n, err)
	}
}

func boolStr(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

func errStr(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
