package loop

import (
	"context"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"longlink/internal/testutil"
)

// admitServer starts a server whose Admit hands each Admission to the test.
func admitServer(t *testing.T, mod func(*Config)) (*Server, chan *Admission, chan *Conn) {
	t.Helper()
	pending := make(chan *Admission, 16)
	msgs := make(chan *Conn, 16)
	s := startServer(t, func(c *Config) {
		c.Admit = func(a *Admission) { pending <- a }
		c.OnMessage = func(c *Conn, _ bool, _ []byte) { msgs <- c }
		if mod != nil {
			mod(c)
		}
	})
	return s, pending, msgs
}

func nextAdmission(t *testing.T, ch chan *Admission) *Admission {
	t.Helper()
	select {
	case a := <-ch:
		return a
	case <-time.After(5 * time.Second):
		t.Fatal("Admit was not called")
		return nil
	}
}

// TestAdmitAllows: Admit sees the request; the connection waits unregistered (a push
// does not reach it) until Done, which adds a room and metadata.
func TestAdmitAllows(t *testing.T) {
	s, pending, msgs := admitServer(t, nil)
	c := rawConnect(t, s)
	tok := testutil.Token(t, testSecret, "u1", "lobby")
	if _, err := c.Write([]byte(upgradeRequest(s.Addrs()[0], "/ws?token="+tok, "X-Test: one\r\n", "X-Test: two\r\n"))); err != nil {
		t.Fatal(err)
	}
	a := nextAdmission(t, pending)
	if a.User != "u1" || a.Token != tok || a.V2 || !a.Remote.Addr().IsLoopback() || !strings.HasPrefix(a.ConnID, "t1.") {
		t.Fatalf("admission %+v", a)
	}
	h := string(a.Header)
	if !strings.Contains(h, "X-Test: one\r\nX-Test: two") || !strings.HasPrefix(h, "Host: ") || !strings.HasSuffix(h, "two\r\n") {
		t.Fatalf("header lines %q", h)
	}
	// Not registered yet: neither the user nor the token's room reaches it.
	if n, _ := s.Deliver(context.Background(), PrepareFrame(false, []byte("early")), Targets{Users: []string{"u1"}, Rooms: []string{"lobby"}}, 0); n != 0 {
		t.Fatalf("a waiting connection was delivered to (%d)", n)
	}
	if s.Connections() != 0 || s.m.handshaking.Load() != 1 {
		t.Fatalf("connections %d, handshaking %d", s.Connections(), s.m.handshaking.Load())
	}
	go a.Done(AdmitResult{Rooms: []string{"extra"}, Meta: `{"plan":"gold"}`})
	if resp := c.response(t); resp.StatusCode != 101 {
		t.Fatalf("upgrade: %s", resp.Status)
	}
	select {
	case <-a.Context().Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the admission's context was not released")
	}
	for _, room := range []string{"extra", "lobby"} {
		if n, _ := s.Deliver(context.Background(), PrepareFrame(false, []byte(room)), Targets{Rooms: []string{room}}, 0); n != 1 {
			t.Fatalf("push to %s reached %d", room, n)
		}
		if f := c.next(t); string(f.Payload) != room {
			t.Fatalf("got %q, want %q", f.Payload, room)
		}
	}
	c.send(t, frame(true, 0, ws.OpText, []byte("hi"), true))
	select {
	case conn := <-msgs:
		if conn.Meta() != `{"plan":"gold"}` || conn.User() != "u1" || conn.ID() != a.ConnID {
			t.Fatalf("conn meta %q user %q id %q", conn.Meta(), conn.User(), conn.ID())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("message not received")
	}
	a.Done(AdmitResult{Err: &AuthError{Status: 403}}) // a second Done is ignored
	c.send(t, frame(true, 0, ws.OpPing, []byte("p"), true))
	if f := c.next(t); f.Header.OpCode != ws.OpPong {
		t.Fatalf("after a second Done: %v", f.Header.OpCode)
	}
}

// TestAdmitRefuses: the decision's status, reason and Retry-After are the upgrade's
// HTTP answer, counted by kind.
func TestAdmitRefuses(t *testing.T) {
	s, pending, _ := admitServer(t, nil)
	for _, tc := range []struct {
		status, retry  int
		reason, metric string
	}{
		{403, 0, "not on the guest list", "hook_refused"},
		{503, 1, "connect hook unavailable", "hook_failed"},
	} {
		c := rawConnect(t, s)
		c.Write([]byte(upgradeRequest(s.Addrs()[0], "/ws?token="+testutil.Token(t, testSecret, "u2"))))
		a := nextAdmission(t, pending)
		a.Done(AdmitResult{Err: &AuthError{Status: tc.status, Reason: tc.reason}, RetryAfter: tc.retry})
		resp := c.response(t)
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != tc.status || string(body) != tc.reason+"\n" {
			t.Fatalf("got %s %q, want %d %q", resp.Status, body, tc.status, tc.reason)
		}
		if got, want := resp.Header.Get("Retry-After"), map[bool]string{true: "1", false: ""}[tc.retry > 0]; got != want {
			t.Fatalf("Retry-After %q, want %q", got, want)
		}
		c.expectEOF(t)
		if v := testutil.Scrape(t, s.cfg.Metrics)[`longlink_handshake_failures_total{reason="`+tc.metric+`"}`]; v != 1 {
			t.Fatalf("%s = %v", tc.metric, v)
		}
	}
	testutil.WaitFor(t, 5*time.Second, "no connection left", func() bool {
		return s.m.handshaking.Load() == 0 && s.Connections() == 0
	})
}

// TestAdmitClientLeaves: a client that goes away while its decision is pending
// cancels it and leaves nothing behind; the late Done does nothing.
func TestAdmitClientLeaves(t *testing.T) {
	s, pending, _ := admitServer(t, nil)
	c := rawConnect(t, s)
	c.Write([]byte(upgradeRequest(s.Addrs()[0], "/ws?token="+testutil.Token(t, testSecret, "u3"))))
	a := nextAdmission(t, pending)
	c.Close()
	select {
	case <-a.Context().Done():
	case <-time.After(5 * time.Second):
		t.Fatal("closing did not cancel the admission")
	}
	testutil.WaitFor(t, 5*time.Second, "handshaking 0", func() bool { return s.m.handshaking.Load() == 0 })
	a.Done(AdmitResult{Rooms: []string{"x"}})
	// The Done task has run once a later task on every loop has.
	var wg sync.WaitGroup
	for _, sh := range s.shardList() {
		wg.Add(1)
		sh.el.Execute(context.Background(), runnable(func() {
			if len(sh.admitting) != 0 {
				t.Errorf("loop %d still holds %d admissions", sh.idx, len(sh.admitting))
			}
			wg.Done()
		}))
	}
	wg.Wait()
	if s.Connections() != 0 || s.Users() != 0 || s.Rooms() != 0 {
		t.Fatalf("connections %d users %d rooms %d", s.Connections(), s.Users(), s.Rooms())
	}
}

// TestAdmitDeadline: the handshake timeout still applies while the decision is
// pending.
func TestAdmitDeadline(t *testing.T) {
	s, pending, _ := admitServer(t, func(c *Config) { c.HandshakeTimeout = 300 * time.Millisecond })
	c := rawConnect(t, s)
	c.Write([]byte(upgradeRequest(s.Addrs()[0], "/ws?token="+testutil.Token(t, testSecret, "u4"))))
	a := nextAdmission(t, pending)
	c.expectEOF(t)
	<-a.Context().Done()
	if v := testutil.Scrape(t, s.cfg.Metrics)[`longlink_handshake_failures_total{reason="timeout"}`]; v != 1 {
		t.Fatalf("timeouts = %v", v)
	}
}

// TestAdmitEarlyData: frames sent before the 101 are read once it is out, without
// the client sending again; more than maxWaitingInbound drops the client.
func TestAdmitEarlyData(t *testing.T) {
	s, pending, msgs := admitServer(t, nil)
	c := rawConnect(t, s)
	c.Write([]byte(upgradeRequest(s.Addrs()[0], "/ws?token="+testutil.Token(t, testSecret, "u5"))))
	a := nextAdmission(t, pending)
	c.send(t, frame(true, 0, ws.OpText, []byte("early"), true))
	a.Done(AdmitResult{})
	if resp := c.response(t); resp.StatusCode != 101 {
		t.Fatalf("upgrade: %s", resp.Status)
	}
	select {
	case <-msgs:
	case <-time.After(5 * time.Second):
		t.Fatal("the early message was not read after the 101")
	}

	c2 := rawConnect(t, s)
	c2.Write([]byte(upgradeRequest(s.Addrs()[0], "/ws?token="+testutil.Token(t, testSecret, "u6"))))
	a2 := nextAdmission(t, pending)
	big := frame(true, 0, ws.OpBinary, make([]byte, maxWaitingInbound+1), true)
	c2.Write(big) // may fail part-way once the server has closed
	c2.expectEOF(t)
	<-a2.Context().Done()
	if v := testutil.Scrape(t, s.cfg.Metrics)[`longlink_handshake_failures_total{reason="early_data"}`]; v != 1 {
		t.Fatalf("early_data = %v", v)
	}
}
