package cluster

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"sort"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"longlink/internal/testutil"
)

func TestJoinMembersAndMeta(t *testing.T) {
	var conns [3]atomic.Int64
	nodes := startCluster(t, 3, func(i int, cfg *Config) {
		cfg.Meta = func() NodeMeta {
			return NodeMeta{ClientAddr: "10.0.0." + strconv.Itoa(i) + ":80", APIAddr: "api" + strconv.Itoa(i), Connections: int(conns[i].Load())}
		}
	})
	for i, c := range nodes {
		ms := c.Members()
		if len(ms) != 3 {
			t.Fatalf("node%d: %d members, want 3: %+v", i, len(ms), ms)
		}
		if !sort.SliceIsSorted(ms, func(a, b int) bool { return ms[a].Name < ms[b].Name }) {
			t.Fatalf("members not sorted: %+v", ms)
		}
		for j, m := range ms {
			if m.Name != fmt.Sprintf("node%d", j) || m.State != stateAlive || m.Self != (i == j) {
				t.Fatalf("node%d member %d: %+v", i, j, m)
			}
			if m.ClientAddr != fmt.Sprintf("10.0.0.%d:80", j) || m.APIAddr != fmt.Sprintf("api%d", j) {
				t.Fatalf("node%d sees meta of %s as %+v", i, m.Name, m)
			}
		}
		if got := c.AliveNodes(); slices.Contains(got, c.Name()) || len(got) != 2 {
			t.Fatalf("node%d AliveNodes = %v", i, got)
		}
	}
	conns[1].Store(42)
	nodes[1].UpdateMeta()
	testutil.WaitFor(t, 5*time.Second, "connection count gossiped", func() bool {
		return nodes[0].Members()[1].Connections == 42 && nodes[2].Members()[1].Connections == 42
	})
	if got := nodes[0].countMembers(stateAlive); got != 3 {
		t.Fatalf("alive gauge = %d, want 3", got)
	}
}

func TestSendAndBroadcastExactlyOnceInOrder(t *testing.T) {
	const n = 10000
	recs := []*recorder{newRecorder(), newRecorder(), newRecorder()}
	nodes := startCluster(t, 3, func(i int, cfg *Config) { cfg.OnMessage = recs[i].onMessage })
	a, b, c := nodes[0], nodes[1], nodes[2]
	for i := range uint64(n) {
		if err := a.Send(b.Name(), seqPayload(i, 16)); err != nil {
			t.Fatalf("Send %d: %v", i, err)
		}
		if got := c.Broadcast(seqPayload(i, 32)); got != 2 {
			t.Fatalf("Broadcast %d reached %d peers, want 2", i, got)
		}
	}
	testutil.WaitFor(t, 10*time.Second, "all messages", func() bool {
		return recs[1].count("node0") >= n && recs[0].count("node2") >= n && recs[1].count("node2") >= n
	})
	check := func(rec *recorder, from string) {
		t.Helper()
		seqs := rec.seqsFrom(from)
		if len(seqs) != n {
			t.Fatalf("got %d messages from %s, want exactly %d", len(seqs), from, n)
		}
		for i, s := range seqs {
			if s != uint64(i) {
				t.Fatalf("message %d from %s has seq %d: order broken", i, from, s)
			}
		}
	}
	check(recs[1], "node0")
	check(recs[0], "node2")
	check(recs[1], "node2")
	if got := recs[2].count("node0"); got != 0 {
		t.Fatalf("node2 got %d messages not addressed to it", got)
	}
	never(t, 200*time.Millisecond, "a duplicate arrived", func() bool { return recs[1].count("node0") != n })
	if got := a.m.forwardMessages.Get(); got != n {
		t.Fatalf("forward_messages_total = %d, want %d", got, n)
	}
	if got := b.m.received.Get(); got != 2*n {
		t.Fatalf("received_messages_total = %d, want %d", got, 2*n)
	}
	if err := a.Send("nope", []byte("x")); !errors.Is(err, ErrUnknownNode) {
		t.Fatalf("Send to unknown node: %v", err)
	}
	if err := a.Send(b.Name(), make([]byte, a.cfg.QueueBytes)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("Send too large: %v", err)
	}
}

func TestRoutePropagation(t *testing.T) {
	nodes := startCluster(t, 3, nil)
	a, b, c := nodes[0], nodes[1], nodes[2]
	waitSynced(t, nodes)

	const rounds = 20
	var windows []time.Duration
	for i := range rounds {
		user := "user-" + strconv.Itoa(i)
		start := time.Now()
		a.SetLocalUser(user, true)
		testutil.WaitFor(t, 5*time.Second, "user visible on peers", func() bool {
			return slices.Equal(b.NodesForUsers([]string{user}), []string{"node0"}) &&
				slices.Equal(c.NodesForUsers([]string{"x", user}), []string{"node0"})
		})
		windows = append(windows, time.Since(start))
	}
	slices.Sort(windows)
	t.Logf("route propagation window over %d connects: min %s, median %s, max %s",
		rounds, windows[0], windows[rounds/2], windows[rounds-1])
	if windows[rounds/2] > 500*time.Millisecond {
		t.Fatalf("median propagation %s, want well under 500ms", windows[rounds/2])
	}

	// Disconnect removes; other peers' users route only to them.
	a.SetLocalUser("user-0", false)
	c.SetLocalUser("user-c", true)
	a.SetLocalRoom("room-1", true)
	c.SetLocalRoom("room-1", true)
	testutil.WaitFor(t, 5*time.Second, "removal and rooms propagated", func() bool {
		return len(b.NodesForUsers([]string{"user-0"})) == 0 &&
			slices.Equal(b.NodesForUsers([]string{"user-c", "user-1"}), []string{"node0", "node2"}) &&
			slices.Equal(b.NodesForRooms([]string{"room-1"}), []string{"node0", "node2"}) &&
			slices.Equal(a.NodesForRooms([]string{"room-1"}), []string{"node2"})
	})
	if len(b.NodesForRooms([]string{"room-2"})) != 0 {
		t.Fatal("room-2 routed somewhere")
	}
	if b.m.routeUpdates.Get() == 0 {
		t.Fatal("route_updates_total not counted")
	}
}

// TestRouteSnapshotForLateJoiner checks that a node joining after the table
// was built receives it as a snapshot, and reports the holder as unsure
// until then.
func TestRouteSnapshotForLateJoiner(t *testing.T) {
	nodes := startCluster(t, 2, nil)
	for i := range 20000 { // several 64 KiB snapshot chunks
		nodes[0].SetLocalUser("u"+strconv.Itoa(i), true)
	}
	nodes[0].SetLocalRoom("r", true)
	late := startNode(t, testConfig("late", nodes[1].GossipAddr()))
	testutil.WaitFor(t, 10*time.Second, "late joiner sees both", func() bool { return len(late.AliveNodes()) == 2 })
	testutil.WaitFor(t, 10*time.Second, "late joiner synced", func() bool {
		return len(late.NodesForUsers([]string{"nobody"})) == 0
	})
	if got := late.NodesForUsers([]string{"u19999"}); !slices.Equal(got, []string{"node0"}) {
		t.Fatalf("NodesForUsers(u19999) = %v", got)
	}
	if got := late.NodesForRooms([]string{"r"}); !slices.Equal(got, []string{"node0"}) {
		t.Fatalf("NodesForRooms(r) = %v", got)
	}
}

func TestKillDetected(t *testing.T) {
	var left atomic.Value
	left.Store("")
	nodes := startCluster(t, 3, func(i int, cfg *Config) {
		if i == 0 {
			cfg.OnNodeLeft = func(name string) { left.Store(name) }
		}
	})
	a, c := nodes[0], nodes[2]
	waitSynced(t, nodes)
	c.SetLocalUser("on-c", true)
	testutil.WaitFor(t, 5*time.Second, "route to c", func() bool {
		return slices.Equal(a.NodesForUsers([]string{"on-c"}), []string{"node2"})
	})
	start := time.Now()
	c.Kill()
	testutil.WaitFor(t, 5*time.Second, "kill detected", func() bool {
		return !slices.Contains(a.AliveNodes(), "node2") && left.Load() == "node2"
	})
	t.Logf("killed node detected after %s (probe 200ms)", time.Since(start))
	if got := a.NodesForUsers([]string{"on-c", "nobody"}); len(got) != 0 {
		t.Fatalf("dead node still routed: %v", got)
	}
	if err := a.Send("node2", []byte("x")); !errors.Is(err, ErrUnknownNode) {
		t.Fatalf("Send to dead node: %v", err)
	}
	if st := a.Members()[2]; st.Name != "node2" || st.State != stateDead {
		t.Fatalf("dead member listed as %+v", st)
	}
	if got := a.countMembers(stateDead); got != 1 {
		t.Fatalf("dead gauge = %d", got)
	}
}

func TestLeaveAndRejoin(t *testing.T) {
	rec := newRecorder()
	nodes := startCluster(t, 3, func(i int, cfg *Config) {
		if i == 0 {
			cfg.OnMessage = rec.onMessage
		}
	})
	a, c := nodes[0], nodes[2]
	for i := range uint64(100) {
		if err := c.Send("node0", seqPayload(i, 8)); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	if err := c.Leave(2 * time.Second); err != nil {
		t.Fatalf("Leave: %v", err)
	}
	if got := rec.count("node2"); got != 100 {
		// Leave flushes the queue before shutting down.
		testutil.WaitFor(t, time.Second, "flushed messages", func() bool { return rec.count("node2") == 100 })
	}
	testutil.WaitFor(t, 3*time.Second, "leave seen", func() bool {
		ms := a.Members()
		return len(a.AliveNodes()) == 1 && ms[2].State == stateLeft
	})
	t.Logf("graceful leave took %s until peers saw it", time.Since(start))
	if err := c.Leave(time.Second); !errors.Is(err, ErrClosed) {
		t.Fatalf("second Leave: %v", err)
	}

	// Same name again, new ports, new process state.
	rec2 := newRecorder()
	cfg := testConfig("node2", a.GossipAddr())
	cfg.OnMessage = rec2.onMessage
	c2 := startNode(t, cfg)
	testutil.WaitFor(t, 10*time.Second, "rejoin", func() bool {
		return slices.Contains(a.AliveNodes(), "node2") && len(c2.AliveNodes()) == 2
	})
	c2.SetLocalUser("back", true)
	// Synced both ways, not merely "unsure" (which also routes to node2).
	testutil.WaitFor(t, 10*time.Second, "rejoined node's routes", func() bool {
		return slices.Equal(a.NodesForUsers([]string{"back"}), []string{"node2"}) &&
			len(a.NodesForUsers([]string{"nobody"})) == 0 && len(c2.NodesForUsers([]string{"nobody"})) == 0
	})
	// The old incarnation's leave may still be gossiped while node2 rejoins,
	// so a can see node2 leave once more and come back: forwarding is
	// at-most-once and a message queued for a peer that is removed is
	// dropped — counted, never silent. Resend only after a counted loss.
	for try := 0; ; try++ {
		failures := a.m.forwardFailures.Get()
		if err := a.Send("node2", seqPayload(7, 8)); err != nil && !errors.Is(err, ErrUnknownNode) {
			t.Fatal(err)
		}
		testutil.WaitFor(t, 20*time.Second, "message to rejoined node, or its loss counted", func() bool {
			return rec2.count("node0") > 0 || a.m.forwardFailures.Get() > failures
		})
		if rec2.count("node0") > 0 {
			break
		}
		if try == 5 {
			t.Fatalf("message to the rejoined node lost %d times", try+1)
		}
		t.Logf("try %d: loss counted while membership settled; resending", try)
		testutil.WaitFor(t, 10*time.Second, "node2 back", func() bool { return slices.Contains(a.AliveNodes(), "node2") })
	}
}

func TestForeignClusterRefused(t *testing.T) {
	nodes := startCluster(t, 2, nil)
	a := nodes[0]
	for _, tc := range []struct{ name, key, cluster string }{
		{"wrong-key", otherKey, "test"},
		{"wrong-name", testKey, "other"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig("intruder-"+tc.name, a.GossipAddr())
			cfg.ClusterKey, cfg.ClusterName = tc.key, tc.cluster
			x := startNode(t, cfg)
			never(t, 1500*time.Millisecond, "foreign node merged", func() bool {
				return len(x.AliveNodes()) != 0 || len(a.AliveNodes()) != 1 || len(a.Members()) != 2
			})
			// Even with the forward address, its links are refused.
			before := a.m.handshakeFailures.Get()
			conn, err := x.dialPeer(a.ForwardAddr())
			if err == nil {
				conn.Close()
				t.Fatal("foreign node completed the forwarding handshake")
			}
			testutil.WaitFor(t, 2*time.Second, "handshake failure counted", func() bool {
				return a.m.handshakeFailures.Get() > before
			})
		})
	}
}

func TestForwardPortRejectsRawInjection(t *testing.T) {
	rec := newRecorder()
	nodes := startCluster(t, 2, func(i int, cfg *Config) { cfg.OnMessage = rec.onMessage })
	a := nodes[0]
	before := a.m.handshakeFailures.Get()
	for _, hello := range [][]byte{
		appendFrame(nil, kindData, []byte("injected without handshake")),
		append(append([]byte("LLF1"), make([]byte, nonceLen)...), append([]byte{4}, "evil"...)...),
	} {
		conn, err := net.Dial("tcp", a.ForwardAddr())
		if err != nil {
			t.Fatal(err)
		}
		conn.Write(hello)
		// A forged proof followed by a data frame.
		conn.Write(make([]byte, 32))
		conn.Write(appendFrame(nil, kindData, []byte("injected")))
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 256)
		for {
			if _, err := conn.Read(buf); err != nil {
				break // the node closed the connection
			}
		}
		conn.Close()
	}
	testutil.WaitFor(t, 2*time.Second, "rejections counted", func() bool { return a.m.handshakeFailures.Get() >= before+2 })
	if a.m.received.Get() != 0 || rec.count("evil") != 0 {
		t.Fatal("an unauthenticated frame was delivered")
	}
}

func TestStuckPeerDoesNotBlockOthers(t *testing.T) {
	release := make(chan struct{})
	var stuck atomic.Bool
	recC := newRecorder()
	nodes := startCluster(t, 3, func(i int, cfg *Config) {
		switch i {
		case 0:
			cfg.QueueBytes = 256 << 10
		case 1:
			cfg.OnMessage = func(string, []byte) {
				stuck.Store(true)
				<-release
			}
		case 2:
			cfg.OnMessage = recC.onMessage
		}
	})
	a := nodes[0]
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()
	payload := make([]byte, 4<<10)
	full := false
	// The kernel buffers several MiB before the writer blocks; bounded at 64 MiB.
	for i := 0; i < 16384 && !full; i++ {
		if err := a.Send("node1", payload); errors.Is(err, ErrQueueFull) {
			full = true
		} else if err != nil {
			t.Fatal(err)
		}
		if i%256 == 0 {
			time.Sleep(time.Millisecond) // let the writer fill the socket
		}
	}
	if !full {
		t.Fatal("queue to the stuck peer never filled")
	}
	// The queue can fill before the link is even up; the peer gets stuck on the first
	// message the link delivers.
	testutil.WaitFor(t, 5*time.Second, "peer stuck in OnMessage", stuck.Load)
	start := time.Now()
	for i := range uint64(1000) {
		if err := a.Send("node2", seqPayload(i, 64)); err != nil {
			t.Fatalf("Send to healthy peer blocked by stuck one: %v", err)
		}
	}
	testutil.WaitFor(t, 2*time.Second, "healthy peer served", func() bool { return recC.count("node0") == 1000 })
	t.Logf("1000 messages to a healthy peer in %s while another peer is stuck", time.Since(start))
	if a.m.forwardFailures.Get() == 0 {
		t.Fatal("dropped message not counted")
	}
	close(release)
}

func TestJoinRetriesInBackground(t *testing.T) {
	// Reserve a port for the node that starts later.
	addr := testutil.FreeAddr(t, "udp")

	b := startNode(t, testConfig("early", addr))
	if len(b.AliveNodes()) != 0 {
		t.Fatal("joined nothing yet has peers")
	}
	cfg := testConfig("late-seed")
	cfg.GossipAddr = addr
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Kill)
	if err := a.Start(); err != nil {
		t.Skipf("reserved port taken meanwhile: %v", err)
	}
	testutil.WaitFor(t, 10*time.Second, "background join", func() bool {
		return slices.Equal(b.AliveNodes(), []string{"late-seed"})
	})
}

func TestSingleNode(t *testing.T) {
	cfg := testConfig("solo")
	cfg.ClusterKey = ""
	c := startNode(t, cfg)
	if got := c.AliveNodes(); len(got) != 0 {
		t.Fatalf("AliveNodes = %v", got)
	}
	c.SetLocalUser("u", true)
	if got := c.NodesForUsers([]string{"u"}); len(got) != 0 {
		t.Fatalf("NodesForUsers = %v", got)
	}
	if n := c.Broadcast([]byte("x")); n != 0 {
		t.Fatalf("Broadcast reached %d", n)
	}
	if err := c.Leave(time.Second); err != nil {
		t.Fatal(err)
	}
}

// TestRouteResyncAfterLinkLoss: when a link carrying a table breaks, the
// receiver treats the sender as unsure until the sender reconnects and sends
// a fresh snapshot.
func TestRouteResyncAfterLinkLoss(t *testing.T) {
	nodes := startCluster(t, 2, nil)
	a, b := nodes[0], nodes[1]
	a.SetLocalUser("u", true)
	testutil.WaitFor(t, 5*time.Second, "route", func() bool {
		return slices.Equal(b.NodesForUsers([]string{"u"}), []string{"node0"}) && len(b.NodesForUsers([]string{"x"})) == 0
	})
	retries := a.m.forwardRetries.Get()
	b.closeInboundFrom("node0")
	testutil.WaitFor(t, 5*time.Second, "writer noticed the closed link", func() bool { return a.m.forwardRetries.Get() > retries })
	testutil.WaitFor(t, 5*time.Second, "resynced", func() bool {
		return len(b.NodesForUsers([]string{"x"})) == 0 && slices.Equal(b.NodesForUsers([]string{"u"}), []string{"node0"})
	})
}

// TestRouteDeltaOverflowFallsBackToSnapshot: a delta that does not fit the
// peer queue is replaced by a snapshot, so nothing is lost.
func TestRouteDeltaOverflowFallsBackToSnapshot(t *testing.T) {
	nodes := startCluster(t, 2, func(i int, cfg *Config) { cfg.QueueBytes = 4 << 10 })
	a, b := nodes[0], nodes[1]
	waitSynced(t, nodes)
	const n = 3000 // one flush of this many ops is far over 4 KiB
	for i := range n {
		a.SetLocalUser("user-"+strconv.Itoa(i), true)
	}
	testutil.WaitFor(t, 5*time.Second, "all users routed", func() bool {
		for _, i := range []int{0, n / 2, n - 1} {
			if !slices.Equal(b.NodesForUsers([]string{"user-" + strconv.Itoa(i)}), []string{"node0"}) {
				return false
			}
		}
		return true
	})
	b.remote.mu.RLock()
	got := len(b.remote.nodes["node0"].users)
	b.remote.mu.RUnlock()
	if got != n {
		t.Fatalf("b knows %d users of a, want %d", got, n)
	}
}
