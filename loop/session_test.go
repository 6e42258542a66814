package loop

import (
	"context"
	"encoding/base64"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"

	"longlink/internal/testutil"
)

func TestTokenCases(t *testing.T) {
	s := startServer(t, func(c *Config) { c.AllowedOrigins = []string{"https://app.example"} })
	host := s.Addrs()[0]
	good := testutil.Token(t, testSecret, "u1")
	forged := testutil.Token(t, "some-other-secret-0123456789", "u1")
	expired, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{
		Subject: "u1", ExpiresAt: jwt.NewNumericDate(time.Now().Add(-time.Hour)),
	}).SignedString([]byte(testSecret))
	b64 := base64.RawURLEncoding.EncodeToString
	none := b64([]byte(`{"alg":"none"}`)) + "." + b64([]byte(`{"sub":"u1","exp":9999999999}`)) + "."
	cases := []struct {
		name   string
		target string
		extra  []string
		status int
		reason string
	}{
		{"query token", "/ws?token=" + good, nil, 101, ""},
		{"bearer header", "/ws", []string{"Authorization: Bearer " + good + "\r\n"}, 101, ""},
		{"subprotocol", "/ws", []string{"Sec-WebSocket-Protocol: longlink, " + good + "\r\n"}, 101, ""},
		{"allowed origin", "/ws?token=" + good, []string{"Origin: https://app.example\r\n"}, 101, ""},
		{"no token", "/ws", nil, 401, "missing"},
		{"forged", "/ws?token=" + forged, nil, 401, "signature"},
		{"expired", "/ws?token=" + expired, nil, 401, "expired"},
		{"alg none", "/ws?token=" + none, nil, 401, "algorithm"},
		{"malformed", "/ws?token=abc.def", nil, 401, "malformed"},
		{"foreign origin", "/ws?token=" + good, []string{"Origin: https://evil.example\r\n"}, 403, "origin"},
	}
	parent := t
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := rawConnect(parent, s) // held open until the parent ends, to be counted
			resp := c.request(t, upgradeRequest(host, tc.target, tc.extra...))
			if resp.StatusCode != tc.status {
				t.Fatalf("status = %d, want %d", resp.StatusCode, tc.status)
			}
			if tc.status != 101 {
				body, _ := io.ReadAll(resp.Body)
				if !strings.Contains(string(body), tc.reason) {
					t.Fatalf("body %q does not say %q", body, tc.reason)
				}
				return
			}
			if strings.Contains(tc.name, "subprotocol") && resp.Header.Get("Sec-WebSocket-Protocol") != "longlink" {
				t.Fatalf("selected subprotocol %q, want longlink", resp.Header.Get("Sec-WebSocket-Protocol"))
			}
		})
	}
	testutil.WaitFor(t, 2*time.Second, "4 open connections", func() bool { return s.Connections() == 4 })
	if got := s.m.failures["unauthorized"].Get(); got != 5 {
		t.Errorf("unauthorized = %d, want 5", got)
	}
	if got := s.m.failures["forbidden"].Get(); got != 1 {
		t.Errorf("forbidden = %d, want 1", got)
	}
}

func TestMaxConnsPerUserEvictsOldest(t *testing.T) {
	s := startServer(t, func(c *Config) { c.MaxConnsPerUser = 3 })
	var cs []*rawClient
	for i := 0; i < 3; i++ {
		cs = append(cs, rawDial(t, s, "u1"))
		testutil.WaitFor(t, time.Second, "connection counted", func() bool { return s.Connections() == i+1 })
	}
	rawDial(t, s, "u1")
	reason := cs[0].expectClose(t, CloseReplaced)
	if !strings.Contains(reason, "replaced") {
		t.Errorf("reason %q", reason)
	}
	testutil.WaitFor(t, 2*time.Second, "3 connections for u1", func() bool {
		return s.Connections() == 3 && len(s.UserConnections("u1")) == 3
	})
	if s.m.evictions.Get() != 1 || s.Users() != 1 {
		t.Fatalf("evictions=%d users=%d", s.m.evictions.Get(), s.Users())
	}
}

func TestHandshakeTimeout(t *testing.T) {
	s := startServer(t, func(c *Config) { c.HandshakeTimeout = 300 * time.Millisecond })
	c := rawConnect(t, s)
	c.send(t, []byte("GET /ws HTTP/1.1\r\n")) // and never finishes
	start := time.Now()
	c.expectEOF(t)
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("dropped after %v", d)
	}
	testutil.WaitFor(t, time.Second, "timeout counted", func() bool { return s.m.failures["timeout"].Get() == 1 })
}

func TestServerPingsAndIdleTimeout(t *testing.T) {
	s := startServer(t, func(c *Config) {
		c.PingInterval = 200 * time.Millisecond
		c.IdleTimeout = 800 * time.Millisecond
	})
	c := rawDial(t, s, "u1")
	// A silent client is pinged...
	if f := c.next(t); f.Header.OpCode != ws.OpPing {
		t.Fatalf("got %v, want ping", f.Header.OpCode)
	}
	// ...answering pongs keeps it alive past the idle timeout...
	deadline := time.Now().Add(1500 * time.Millisecond)
	for time.Now().Before(deadline) {
		f := c.next(t)
		if f.Header.OpCode != ws.OpPing {
			t.Fatalf("got %v", f.Header.OpCode)
		}
		c.send(t, frame(true, 0, ws.OpPong, f.Payload, true))
	}
	// ...and going silent gets it closed.
	c.expectClose(t, 1001)
	testutil.WaitFor(t, time.Second, "no connections", func() bool { return s.Connections() == 0 })
}

func TestSlowConsumerIsClosed(t *testing.T) {
	s := startServer(t, func(c *Config) { c.MaxOutbound = 64 << 10 })
	slow := rawDial(t, s, "slow") // never reads
	fast := rawDial(t, s, "fast")
	testutil.WaitFor(t, time.Second, "2 connections", func() bool { return s.Connections() == 2 })
	frame := PrepareFrame(true, make([]byte, 16<<10))
	received := make(chan int, 1)
	got := make(chan struct{}, 1)
	go func() { // the fast client reads everything
		n := 0
		for {
			fast.SetReadDeadline(time.Now().Add(3 * time.Second))
			if _, err := ws.ReadFrame(fast.br); err != nil {
				received <- n
				return
			}
			n++
			got <- struct{}{}
		}
	}()
	// The kernel buffers a few MB before gnet has to queue, so push until the slow
	// client is cut off; bounded by count. Each push waits until the fast client has
	// read the one before: a reader starved on a loaded machine would otherwise fall
	// 64 KiB behind and be cut off as well, rightly.
	sent := 0
	for i := 0; i < 2000 && s.m.slowConsumers.Get() == 0; i++ {
		if _, err := s.Deliver(context.Background(), frame, Targets{Users: []string{"slow", "fast"}}, 0); err != nil {
			t.Fatal(err)
		}
		sent++
		select {
		case <-got:
		case <-time.After(5 * time.Second):
			t.Fatalf("fast client did not receive message %d", sent)
		}
	}
	if s.m.slowConsumers.Get() != 1 {
		t.Fatal("slow consumer never closed")
	}
	testutil.WaitFor(t, 2*time.Second, "slow consumer gone", func() bool { return len(s.UserConnections("slow")) == 0 })
	if len(s.UserConnections("fast")) != 1 {
		t.Fatal("the fast consumer was harmed")
	}
	if n := <-received; n != sent {
		t.Fatalf("fast client received %d of %d messages", n, sent)
	}
	_ = slow
}

func TestGracefulDrain(t *testing.T) {
	s := startServer(t, nil)
	var cs []*rawClient
	for i := 0; i < 20; i++ {
		cs = append(cs, rawDial(t, s, "u"+string(rune('a'+i))))
	}
	testutil.WaitFor(t, time.Second, "20 connections", func() bool { return s.Connections() == 20 })
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Add(1)
		go func(c *rawClient) { // a well-behaved client answers the close
			defer wg.Done()
			for {
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				f, err := ws.ReadFrame(c.br)
				if err != nil {
					t.Errorf("read: %v", err)
					return
				}
				if f.Header.OpCode == ws.OpClose {
					if code := uint16(f.Payload[0])<<8 | uint16(f.Payload[1]); code != 1001 {
						t.Errorf("close code %d, want 1001", code)
					}
					c.Write(frame(true, 0, ws.OpClose, f.Payload[:2], true))
					return
				}
			}
		}(c)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if left := s.Drain(ctx); left != 0 {
		t.Fatalf("%d connections left after drain", left)
	}
	wg.Wait()
	// New clients are refused while draining.
	c := rawConnect(t, s)
	if resp := c.request(t, upgradeRequest(s.Addrs()[0], "/ws?token="+testutil.Token(t, testSecret, "late"))); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("status %d during drain", resp.StatusCode)
	}
}

// TestManyConnections holds 5,000 real WebSocket connections and checks the counts
// are exact, then that they return to zero.
func TestManyConnections(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	const n = 5000
	s := startServer(t, nil)
	conns := make([]*websocket.Conn, n)
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	errs := 0
	for i := 0; i < n; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			user := "user-" + itoa(i%(n/10))
			c, _, err := websocket.DefaultDialer.Dial("ws://"+s.Addrs()[0]+"/ws?token="+testutil.Token(t, testSecret, user), nil)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs++
				return
			}
			conns[i] = c
		}(i)
	}
	wg.Wait()
	if errs > 0 {
		t.Fatalf("%d dials failed", errs)
	}
	testutil.WaitFor(t, 5*time.Second, "5000 connections", func() bool { return s.Connections() == n })
	if s.Users() != n/10 {
		t.Fatalf("users = %d, want %d", s.Users(), n/10)
	}
	// One broadcast reaches all of them.
	got, err := s.Deliver(context.Background(), PrepareFrame(false, []byte("all")), Targets{All: true}, 0)
	if err != nil || got != n {
		t.Fatalf("broadcast wrote %d (%v), want %d", got, err, n)
	}
	for _, c := range conns {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, b, err := c.ReadMessage(); err != nil || string(b) != "all" {
			t.Fatalf("read %q %v", b, err)
		}
		c.Close()
	}
	testutil.WaitFor(t, 10*time.Second, "0 connections", func() bool { return s.Connections() == 0 && s.Users() == 0 })
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{byte('0' + i%10)}, b...)
	}
	return string(b)
}

func TestTokenExpiryClosesWith4003(t *testing.T) {
	s := startServer(t, func(c *Config) {
		c.Authenticate = func(token string) (Identity, *AuthError) {
			return Identity{User: "u1", Expires: time.Now().Add(300 * time.Millisecond)}, nil
		}
	})
	c := rawDial(t, s, "u1")
	start := time.Now()
	reason := c.expectClose(t, CloseTokenExpired)
	if d := time.Since(start); d > 3*time.Second || !strings.Contains(reason, "expired") {
		t.Fatalf("closed after %v with %q", d, reason)
	}
}
