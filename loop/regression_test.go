package loop

// Regression tests for defects found in review: each failed before its fix.

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/panjf2000/gnet/v2"

	"longlink/internal/testutil"
)

// A client that was active just before the ping deadline is not pinged for another
// full interval; with IdleTimeout < 2*PingInterval it is closed as idle without ever
// having been pinged, though it answers every ping.
//
// Timeline: activity at 0.2 s, ping interval 2 s, idle timeout 3.4 s. The defect
// pinged at 4 s, after the idle close at 3.6 s; the fix pings at 2.2 s. Each pong then
// has 1.4 s to arrive before the idle timeout: a loop or ticker starved that long on
// a loaded machine closes the client as idle, correctly. (With 1 s and 1.2 s and
// activity at 0.7 s that slack was 0.2 s, and the test failed under load.)
func TestPingAfterActivityNearDeadline(t *testing.T) {
	s := startServer(t, func(c *Config) {
		c.PingInterval = 2 * time.Second
		c.IdleTimeout = 3400 * time.Millisecond
	})
	c := rawDial(t, s, "u1")
	time.Sleep(200 * time.Millisecond) // be active before the first ping deadline
	c.send(t, frame(true, 0, ws.OpPong, nil, true))
	end := time.Now().Add(4500 * time.Millisecond) // past the defect's idle close
	for time.Now().Before(end) {
		f := c.next(t)
		switch f.Header.OpCode {
		case ws.OpPing:
			c.send(t, frame(true, 0, ws.OpPong, f.Payload, true))
		case ws.OpClose:
			t.Fatalf("responsive client closed: %q", f.Payload)
		}
	}
}

// longlink_loop_connections is documented as "the same count per event loop" as
// longlink_connections, but it includes handshaking sockets.
func TestLoopConnectionsExcludeHandshaking(t *testing.T) {
	s := startServer(t, nil)
	rawConnect(t, s) // never upgrades
	testutil.WaitFor(t, 2*time.Second, "handshaking", func() bool { return s.m.handshaking.Load() == 1 })
	var sum int64
	for _, sh := range s.shardList() {
		sum += sh.nOpen.Load()
	}
	if sum != int64(s.Connections()) {
		t.Fatalf("sum(loop_connections)=%d, connections=%d", sum, s.Connections())
	}
}

// A JoinRoom whose ctx ends while the inbox is full keeps the registry change but never
// updates the loop's room index; retrying the join is then a no-op, so the connection
// is counted in the room but never receives room pushes.
func TestJoinCompletesAfterCallerTimeout(t *testing.T) {
	s := startServer(t, func(c *Config) { c.MaxQueue = 4; c.Loops = 1 })
	c := rawDial(t, s, "u1")
	testutil.WaitFor(t, 2*time.Second, "published", func() bool { return s.Users() == 1 })
	sh := s.shardList()[0]
	release := make(chan struct{})
	sh.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error { <-release; return nil }))
	frameB := PrepareFrame(false, []byte("x"))
	for i := 0; i < 100; i++ {
		if err := s.Enqueue(frameB, Targets{Users: []string{"u1"}}, 0); errors.Is(err, ErrOverloaded) {
			break
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	_, _, err := s.JoinRoom(ctx, "r", []string{"u1"})
	cancel()
	if err == nil {
		t.Fatal("expected the join to time out while the loop is blocked")
	}
	close(release)
	for i := 0; i < 4; i++ { // drain the queued "x" frames
		c.next(t)
	}
	n, _, err := s.JoinRoom(context.Background(), "r", []string{"u1"})
	t.Logf("retry joined=%d err=%v Room=%+v", n, err, s.Room("r"))
	got, _ := s.Deliver(context.Background(), PrepareFrame(false, []byte("room")), Targets{Rooms: []string{"r"}}, 0)
	if s.Room("r").Connections != 1 || got != 1 {
		t.Fatalf("room r has %d connections in the registry and a room push reached %d; want 1 and 1", s.Room("r").Connections, got)
	}
}

// OnPresence runs after the registry lock is released, so a "user gone" from one loop
// can land after a "user present" from another: the final state says absent while the
// user is connected (peers then stop forwarding its pushes).
func TestPresenceEventsStayOrdered(t *testing.T) {
	var mu sync.Mutex
	last := map[string]bool{}
	hold := make(chan struct{})
	var once sync.Once
	s := startServer(t, func(c *Config) {
		c.OnPresence = func(k PresenceKind, name string, present bool) {
			if k != PresenceUser {
				return
			}
			if name == "u" && !present {
				once.Do(func() {
					select { // simulate the loop goroutine being preempted here
					case <-hold:
					case <-time.After(time.Second):
					}
				})
			}
			mu.Lock()
			last[name] = present
			mu.Unlock()
		}
	})
	c1 := rawDial(t, s, "u")
	testutil.WaitFor(t, 2*time.Second, "u", func() bool { return s.Users() == 1 })
	x := s.reg.userConns(nil, "u")[0].sh
	var fillers []*rawClient
	for i := 0; i < 3; i++ {
		fillers = append(fillers, rawDial(t, s, string(rune('a'+i))))
	}
	testutil.WaitFor(t, 2*time.Second, "fillers", func() bool { return s.Users() == 4 })
	// Keep loop x busier than the other so the reconnect lands on the other loop.
	for i, f := range fillers {
		if s.reg.userConns(nil, string(rune('a'+i)))[0].sh != x {
			f.Close()
		}
	}
	testutil.WaitFor(t, 2*time.Second, "other loop empty", func() bool {
		for _, sh := range s.shardList() {
			if sh != x && sh.nConns.Load() != 0 {
				return false
			}
		}
		return x.nConns.Load() >= 2
	})
	c1.Close()
	time.Sleep(100 * time.Millisecond) // loop x is now inside OnPresence(u,false)
	rawDial(t, s, "u")
	testutil.WaitFor(t, 2*time.Second, "reconnected", func() bool { return len(s.UserConnections("u")) == 1 })
	close(hold)
	time.Sleep(100 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if len(s.UserConnections("u")) == 1 && !last["u"] {
		t.Fatalf("user u is connected but the last presence event said absent")
	}
}

// tickAt truncates to uint32: a token expiring ~13.6 years out (or any far-future exp)
// wraps to a small tick count and the connection is closed with 4003 at once.
func TestFarFutureExpiryNeverWraps(t *testing.T) {
	c := newClock()
	c.advance()
	far := c.start.Add(time.Duration(1<<32) * clockTick)
	// 0 means "never expires"; any other value must lie in the future.
	if got := c.tickAt(far); got != 0 && got <= c.ticks()+1000 {
		t.Fatalf("tickAt(start+2^32 ticks) = %d: expiry wrapped into the past", got)
	}
	if got := c.tickAt(time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)); got != 0 {
		t.Fatalf("tickAt(year 9999) = %d, want 0 (never)", got)
	}
}

// After Stop, Deliver reports success with 0 recipients instead of ErrStopped.
func TestDeliverAfterStopFails(t *testing.T) {
	s := startServer(t, nil)
	rawDial(t, s, "u1")
	testutil.WaitFor(t, 2*time.Second, "u1", func() bool { return s.Users() == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s.Stop(ctx)
	n, err := s.Deliver(ctx, PrepareFrame(false, []byte("x")), Targets{All: true}, 0)
	if !errors.Is(err, ErrStopped) {
		t.Fatalf("Deliver after Stop = %d, %v; want ErrStopped", n, err)
	}
}
