package hub

import (
	"bytes"
	"errors"
	"runtime"
	"slices"
	"testing"
	"time"

	"longlink/cluster"
	"longlink/loop"
	"longlink/push"
	"longlink/stream"
)

func httpStatus(err error) int {
	var s interface{ HTTPStatus() int }
	if errors.As(err, &s) {
		return s.HTTPStatus()
	}
	return 0
}

func TestNewValidates(t *testing.T) {
	f := func(cfg Config, want string) {
		t.Helper()
		if h, err := New(cfg); err == nil {
			h.Close()
			t.Fatalf("New accepted a config without %s", want)
		} else if !bytes.Contains([]byte(err.Error()), []byte(want)) {
			t.Fatalf("New(%+v) = %v, want an error naming %s", cfg, err, want)
		}
	}
	f(Config{Local: newFakeLocal()}, "NodeName")
	f(Config{NodeName: "a"}, "Local")
	f(Config{NodeName: "a", Local: newFakeLocal(), QueryTimeout: -1}, "QueryTimeout")
}

// holds counts how often l was handed a copy naming user (submitted or enqueued).
func copiesFor(l *fakeLocal, user string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, t := range l.targets {
		if slices.Contains(t.Users, user) {
			n++
		}
	}
	return n
}

func TestDeliverReachesEveryHolderOnceAndStoresTwice(t *testing.T) {
	net := newFakeNet()
	a, la := net.add(t, "a", nil)
	_, lb := net.add(t, "b", nil)
	_, lc := net.add(t, "c", nil)
	la.addConn("here", "a.1-1", 1)
	lb.addConn("there", "b.1-1", 1)
	m := &push.Message{ID: "a-1", Data: []byte("hello"), To: push.Target{Users: []string{"here", "there", "nobody"}}}
	res, err := a.Deliver(m)
	if err != nil {
		t.Fatal(err)
	}
	if res.Stored != 2 || !slices.Equal(res.OfflineUsers, []string{"nobody"}) {
		t.Fatalf("result %+v, want stored 2 and nobody offline", res)
	}
	if copiesFor(la, "here") != 1 || copiesFor(lb, "there") != 1 {
		t.Fatalf("copies: a got %d for here, b %d for there; want 1 each", copiesFor(la, "here"), copiesFor(lb, "there"))
	}
	if copiesFor(lc, "here")+copiesFor(lc, "there") > 2 {
		t.Fatal("c was sent copies for users it does not hold")
	}
	// Every stream is held by its owner and one replica.
	for _, u := range m.To.Users {
		held := 0
		for _, h := range []*Hub{net.hubs["a"], net.hubs["b"], net.hubs["c"]} {
			if p, ok := h.st.store.Head("user:" + u); ok && p.Offset == 1 {
				held++
			}
		}
		if held != 2 {
			t.Fatalf("user:%s is stored on %d nodes, want 2", u, held)
		}
	}
}

func TestDeliverRefusedWhileDraining(t *testing.T) {
	draining := true
	net := newFakeNet()
	a, la := net.add(t, "a", func(c *Config) { c.Draining = func() bool { return draining } })
	if _, err := a.Deliver(&push.Message{To: push.Target{All: true}}); httpStatus(err) != 503 || len(la.submitted) != 0 {
		t.Fatalf("draining: %v, %d submitted", err, len(la.submitted))
	}
}

func TestPeersFor(t *testing.T) {
	net := newFakeNet()
	a, _ := net.add(t, "a", nil)
	_, lb := net.add(t, "b", nil)
	_, lc := net.add(t, "c", nil)
	lb.addConn("u", "b.1-1", 1)
	lc.rooms["r"] = loop.RoomInfo{Connections: 1}
	r := a.remote
	f := func(to push.Target, want ...string) {
		t.Helper()
		if got := a.peersFor(r, to); !slices.Equal(got, want) {
			t.Fatalf("peersFor(%+v) = %v, want %v", to, got, want)
		}
	}
	f(push.Target{All: true}, "b", "c")
	f(push.Target{Users: []string{"u", "v"}}, "b")
	f(push.Target{Rooms: []string{"r"}}, "c")
	f(push.Target{Users: []string{"u"}, Rooms: []string{"r"}, Connections: []string{"b.9-9", "c.2-2"}}, "b", "c")
	f(push.Target{Connections: []string{"a.1-1", "x.1-1", "nodot", ".1-1"}}) // self, not alive, malformed
	f(push.Target{Connections: []string{"b.1-1"}}, "b")
	f(push.Target{})
}

// A forwarded push that finds a loop inbox full is dropped at once and counted: one
// attempt, no sleeping on the link reader.
func TestForwardedPushOverloadedIsDroppedAtOnce(t *testing.T) {
	net := newFakeNet()
	a, _ := net.add(t, "a", nil)
	b, lb := net.add(t, "b", nil)
	lb.enqueueErr = loop.ErrOverloaded
	start := time.Now()
	if _, err := a.Deliver(&push.Message{Data: []byte("x"), To: push.Target{All: true}}); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Fatalf("delivery took %v", d)
	}
	if len(lb.enqueued) != 1 || b.forwardDrops.Get() != 1 {
		t.Fatalf("%d attempts, %d drops; want 1 and 1", len(lb.enqueued), b.forwardDrops.Get())
	}
	lb.enqueueErr = loop.ErrStopped // stopping: not an overload, not counted
	a.Deliver(&push.Message{Data: []byte("x"), To: push.Target{All: true}})
	if b.forwardDrops.Get() != 1 {
		t.Fatal("a push refused by stopping loops counted as forward_overloaded")
	}
}

// The receiving node copies a forwarded payload once, into the frame; the frame
// outlives the link's buffer.
func TestForwardedPayloadCopiedOnceIntoFrame(t *testing.T) {
	b, lb := newFakeNet().add(t, "b", nil)
	m := push.Message{ID: "a-1", Binary: true, Data: bytes.Repeat([]byte{7}, 100<<10), To: push.Target{Rooms: []string{"r"}}}
	payload := stampedPayload(&m, 1)
	b.OnMessage("a", payload)
	clear(payload)
	if len(lb.enqueued) != 1 || !bytes.Equal(lb.enqueued[0], loop.PrepareFrame(true, m.Data)) || !slices.Equal(lb.targets[0].Rooms, []string{"r"}) {
		t.Fatal("forwarded frame or targets wrong, or they alias the link buffer")
	}
	if raceEnabled {
		return
	}
	const runs = 20
	payloads := make([][]byte, runs)
	for i := range payloads {
		payloads[i] = stampedPayload(&m, uint64(2+i)) // a new position each time: not a repeat
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := range runs {
		b.OnMessage("a", payloads[i])
		lb.enqueued = lb.enqueued[:0]
		lb.targets = lb.targets[:0]
	}
	runtime.ReadMemStats(&after)
	if allocated := (after.TotalAlloc - before.TotalAlloc) / runs; allocated > uint64(len(m.Data))*3/2 {
		t.Fatalf("OnMessage allocates %d bytes for a %d-byte payload: copied more than once", allocated, len(m.Data))
	}
	// Nothing but pushes travels as data; anything else is ignored.
	b.OnMessage("a", []byte("Qxyz"))
	b.OnMessage("a", nil)
	b.OnMessage("a", []byte{wireStamped, 9, 9})
	if len(lb.enqueued) != 0 {
		t.Fatal("a non-push payload was delivered")
	}
}

func TestQueriesAcrossNodes(t *testing.T) {
	net := newFakeNet()
	a, la := net.add(t, "a", nil)
	_, lb := net.add(t, "b", nil)
	_, lc := net.add(t, "c", nil)
	la.addConn("u", "a.1-1", 30)
	lb.addConn("u", "b.1-1", 10)
	lc.addConn("u", "c.1-1", 20)
	lb.addConn("v", "b.1-2", 5)
	la.rooms["r"] = loop.RoomInfo{Connections: 1, Users: []string{"u"}}
	lb.rooms["r"] = loop.RoomInfo{Connections: 2, Users: []string{"u", "v"}}

	cs, err := a.User("u")
	if err != nil || len(cs) != 3 || cs[0].ID != "b.1-1" || cs[1].Node != "c" || cs[2].Node != "a" {
		t.Fatalf("User = %+v, %v", cs, err)
	}
	ri, _ := a.Room("r")
	if ri.Connections != 3 || ri.Members != 2 || ri.Nodes["a"] != 1 || ri.Nodes["b"] != 2 || len(ri.Nodes) != 2 {
		t.Fatalf("Room = %+v", ri)
	}
	st, _ := a.Stats()
	if s := st.(map[string]any); s["connections"] != 4 || s["users"] != 4 || len(s["nodes"].([]nodeStats)) != 3 || s["unreachable"] != nil && len(s["unreachable"].([]string)) != 0 {
		t.Fatalf("Stats = %+v", s)
	}
	if off, err := a.Online([]string{"u", "v", "w"}); err != nil || !slices.Equal(off, []string{"w"}) {
		t.Fatalf("Online = %v, %v", off, err)
	}
	if n, err := a.JoinRoom("q", []string{"u", "v"}); err != nil || n != 4 {
		t.Fatalf("JoinRoom = %d, %v", n, err)
	}
	if n, err := a.KickConnection("c.1-1", "bye"); err != nil || n != 1 || !slices.Equal(lc.kicked, []string{"c.1-1"}) {
		t.Fatalf("KickConnection = %d, %v; c kicked %v", n, err, lc.kicked)
	}
	if n, err := a.KickUser("u", "bye"); err != nil || n != 2 {
		t.Fatalf("KickUser = %d, %v", n, err)
	}

	// A node that does not answer: the calls say so as they did in node.
	lc.addConn("x", "c.1-3", 1)
	net.down["c"] = true
	if _, err := a.User("x"); httpStatus(err) != 503 {
		t.Fatalf("User with its only node down: %v", err)
	}
	if _, err := a.Online([]string{"x"}); httpStatus(err) != 503 {
		t.Fatalf("Online with a node down: %v", err)
	}
	if _, err := a.JoinRoom("q", []string{"x"}); httpStatus(err) != 503 {
		t.Fatalf("JoinRoom with a node down: %v", err)
	}
	if n, err := a.KickUser("x", ""); httpStatus(err) != 503 || n != 0 {
		t.Fatalf("KickUser with a node down: %d, %v", n, err)
	}
	st, _ = a.Stats()
	if u := st.(map[string]any)["unreachable"].([]string); !slices.Equal(u, []string{"c"}) {
		t.Fatalf("unreachable = %v", u)
	}
}

// Malformed queries are not answered (the asker times out, as before).
func TestOnRequestMalformed(t *testing.T) {
	h, _ := newFakeNet().add(t, "a", nil)
	for _, body := range [][]byte{nil, {'?'}, {opKickUser, '{'}, {opOnline, 'x'}, {opJoin}} {
		if out := h.OnRequest("b", body); out != nil {
			t.Fatalf("OnRequest(%q) = %q, want no answer", body, out)
		}
	}
	if out := h.OnRequest("b", []byte{opStats}); !bytes.Contains(out, []byte(`"node":"a"`)) {
		t.Fatalf("stats answer %s", out)
	}
}

func TestStandaloneAndNilCluster(t *testing.T) {
	l := newFakeLocal()
	l.addConn("u", "a.1-1", 1)
	check := func(what string, remote Remote) {
		t.Helper()
		h, err := New(Config{NodeName: "a", Local: l, Remote: remote, Logger: quiet})
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		res, err := h.Deliver(&push.Message{To: push.Target{Users: []string{"u", "v"}, All: false}})
		if err != nil || res.Delivered != 1 || res.Forwarded != 0 || !slices.Equal(res.OfflineUsers, []string{"v"}) {
			t.Fatalf("%s: Deliver = %+v, %v", what, res, err)
		}
		if off, err := h.Online([]string{"u", "v"}); err != nil || !slices.Equal(off, []string{"v"}) {
			t.Fatalf("%s: Online = %v, %v", what, off, err)
		}
		if cs, err := h.User("u"); err != nil || len(cs) != 1 {
			t.Fatalf("%s: User = %v, %v", what, cs, err)
		}
		st, _ := h.Stats()
		if s := st.(map[string]any); s["connections"] != 1 || s["unreachable"] != nil && len(s["unreachable"].([]string)) != 0 {
			t.Fatalf("%s: Stats = %+v", what, s)
		}
		h.OnPresence(loop.PresenceUser, "u", true)
	}
	check("no Remote", nil)
	var c *cluster.Cluster // a standalone node's cluster: a nil pointer in the interface
	check("nil *cluster.Cluster", c)
}

func TestOnPresence(t *testing.T) {
	net := newFakeNet()
	h, _ := net.add(t, "a", nil)
	r := h.remote.(*fakeRemote)
	h.OnPresence(loop.PresenceUser, "u", true)
	h.OnPresence(loop.PresenceRoom, "r", true)
	h.OnPresence(loop.PresenceUser, "u", false)
	if !slices.Equal(r.presence, []string{"u+u", "r+r", "u-u"}) {
		t.Fatalf("presence %v", r.presence)
	}
}

// stampedPayload is the fan-out copy an owner sends for m, covering its rooms at
// offset off of epoch "e".
func stampedPayload(m *push.Message, off uint64) []byte {
	b := wbuf{wireStamped}.uv(uint64(len(m.To.Rooms)))
	for _, r := range m.To.Rooms {
		b = b.key(skey{loop.KeyRoom, r}).pos(stream.Position{Epoch: "e", Offset: off})
	}
	b = b.uv(0)
	return m.AppendBinary(b)
}
