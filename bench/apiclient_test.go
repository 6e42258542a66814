package bench

import (
	"bufio"
	"context"
	"net"
	"strings"
	"testing"
	"time"
)

// Consecutive answers on one keep-alive connection reuse the body buffer.
func TestReadResponseReusesBody(t *testing.T) {
	one := "HTTP/1.1 202 Accepted\r\nContent-Length: 26\r\n\r\n{\"id\":\"a\",\"delivered\":10}\n"
	br := bufio.NewReader(strings.NewReader(strings.Repeat(one, 200)))
	var buf []byte
	read := func() {
		st, body, _, err := readResponse(br, buf[:0])
		if err != nil || st != 202 || string(body) != "{\"id\":\"a\",\"delivered\":10}\n" {
			t.Fatalf("status %d body %q err %v", st, body, err)
		}
		buf = body
	}
	read()
	if allocs := testing.AllocsPerRun(100, read); allocs != 0 {
		t.Fatalf("%.1f allocations per response, want 0", allocs)
	}
}

// arm sets the deadline rarely but never lets one call run unbounded.
func TestAPIConnArmDeadline(t *testing.T) {
	c1, c2 := net.Pipe()
	defer c1.Close()
	defer c2.Close()
	a := &apiConn{conn: c1}
	t0 := time.Unix(1_000_000, 0)
	a.arm(context.Background(), t0)
	if want := t0.Add(callTimeout).UnixNano(); a.armed != want {
		t.Fatalf("first call: armed %d, want %d", a.armed, want)
	}
	first := a.armed
	// Calls within the slack keep the deadline.
	a.arm(context.Background(), t0.Add(rearmSlack-time.Millisecond))
	if a.armed != first {
		t.Fatalf("re-armed within the slack: %d", a.armed)
	}
	// Past the slack the remaining time would fall below callTimeout-rearmSlack.
	now := t0.Add(rearmSlack + time.Millisecond)
	a.arm(context.Background(), now)
	if a.armed != now.Add(callTimeout).UnixNano() {
		t.Fatalf("not re-armed after the slack: %d", a.armed)
	}
	// A context deadline nearer than callTimeout wins and is then kept.
	dl := now.Add(time.Second)
	ctx, cancel := context.WithDeadline(context.Background(), dl)
	defer cancel()
	a.arm(ctx, now)
	if a.armed != dl.UnixNano() {
		t.Fatalf("context deadline ignored: %d, want %d", a.armed, dl.UnixNano())
	}
	a.armed = dl.UnixNano()
	a.arm(ctx, now.Add(500*time.Millisecond))
	if a.armed != dl.UnixNano() {
		t.Fatalf("context deadline re-armed: %d", a.armed)
	}
}

// The deadline arm sets is real: a call to a server that never answers
// ends with a timeout instead of hanging.
func TestAPIConnTimesOut(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			defer c.Close()
			buf := make([]byte, 4096)
			for {
				if _, err := c.Read(buf); err != nil {
					return
				}
			}
		}
	}()
	a := newAPIConn(ln.Addr().String(), "k")
	defer a.close()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, reason := a.push(ctx, []byte(`{}`))
	// The connection's deadline and the context's timer fire together, so
	// either reason may be reported; what matters is that the call ended.
	if reason != "cancelled" && reason != "transport" {
		t.Fatalf("reason %q (%v), want cancelled or transport", reason, a.lastErr)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("call took %v despite a 200ms deadline", d)
	}
}
