package hub

import (
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"longlink/loop"
	"longlink/stream"
	"longlink/webhook"
)

type sinkRec struct {
	mu sync.Mutex
	ev []webhook.Event
}

func (s *sinkRec) Emit(e webhook.Event) { s.mu.Lock(); s.ev = append(s.ev, e); s.mu.Unlock() }
func (s *sinkRec) count(typ, user string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, e := range s.ev {
		if e.Type == typ && e.User == user {
			n++
		}
	}
	return n
}

// TestFeedSequencing: a delta the receiver cannot place (no snapshot yet, a gap, a
// new epoch) is answered resync; a snapshot starts the feed; adds, haves and drops
// decide online and offline after the grace.
func TestFeedSequencing(t *testing.T) {
	sink := &sinkRec{}
	h, err := New(Config{NodeName: "a", Local: newFakeLocal(), Events: sink, PresenceGrace: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	p := h.pr
	req := func(epoch, base uint64, reset bool, ops ...wbuf) byte {
		var flags byte
		if reset {
			flags = flagReset
		}
		b := wbuf{chPresence}.uv(epoch).uv(base).byte1(flags)
		for _, op := range ops {
			b = append(b, op...)
		}
		ans := p.onFeed("b", b)
		if len(ans) != 1 {
			t.Fatalf("answer %v", ans)
		}
		return ans[0]
	}
	add := func(u string) wbuf { return wbuf(nil).byte1(fAdd).str(u) }
	have := func(u string) wbuf { return wbuf(nil).byte1(fHave).str(u) }
	drop := func(u string) wbuf { return wbuf(nil).byte1(fDrop).str("b").str(u).uv(uint64(time.Now().UnixNano())) }
	testWait := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal(what)
			}
		}
	}
	if a := req(7, 0, false, add("u1")); a != feedResync {
		t.Fatalf("delta before any snapshot: %d, want resync", a)
	}
	if a := req(7, 0, true, add("u1"), have("u2")); a != feedOK {
		t.Fatalf("snapshot: %d", a)
	}
	if sink.count(webhook.UserOnline, "u1") != 1 || sink.count(webhook.UserOnline, "u2") != 0 {
		t.Fatal("add must tell online; have (already told by a previous owner) must not")
	}
	if a := req(7, 5, false); a != feedResync {
		t.Fatalf("gap: %d, want resync", a)
	}
	if a := req(8, 1, false); a != feedResync {
		t.Fatalf("new epoch without a snapshot: %d, want resync", a)
	}
	if a := req(7, 1, false, drop("u1")); a != feedOK {
		t.Fatalf("delta in sequence: %d", a)
	}
	// A reconnect within the grace: no offline, no second online.
	if a := req(7, 2, false, add("u1")); a != feedOK {
		t.Fatal("add")
	}
	time.Sleep(300 * time.Millisecond)
	if sink.count(webhook.UserOffline, "u1") != 0 || sink.count(webhook.UserOnline, "u1") != 1 {
		t.Fatal("reconnect within the grace changed state")
	}
	if a := req(7, 3, false, drop("u1"), drop("u2")); a != feedOK {
		t.Fatal("drop")
	}
	testWait("offline after the grace", func() bool {
		return sink.count(webhook.UserOffline, "u1") == 1 && sink.count(webhook.UserOffline, "u2") == 1
	})
	if a := p.onFeed("b", wbuf{chPresence}.uv(7).uv(4).byte1(0).byte1(99)); len(a) != 1 || a[0] != feedResync {
		t.Fatalf("malformed op: %v, want resync", a)
	}
}

// TestFeedFailureCounted: a presence feed to a peer that does not answer is counted
// (and resent in full once it answers again).
func TestFeedFailureCounted(t *testing.T) {
	net := newFakeNet()
	set := metrics.NewSet()
	a, _ := net.add(t, "a", func(c *Config) { c.Events, c.Metrics = &sinkRec{}, set })
	net.add(t, "b", func(c *Config) { c.Events = &sinkRec{} })
	net.mu.Lock()
	net.down["b"] = true
	net.mu.Unlock()
	// A user whose stream b owns: a tells b of its first connection here.
	user := "f"
	for i := 0; stream.NewRing([]string{"a", "b"}).Owner("user:"+user) != "b"; i++ {
		user = "f" + strconv.Itoa(i)
	}
	a.OnPresence(loop.PresenceUser, user, true)
	failures := set.GetOrCreateCounter(`longlink_presence_feed_failures_total`)
	for deadline := time.Now().Add(10 * time.Second); failures.Get() == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("a feed to a peer that does not answer was not counted")
		}
	}
}

// TestPresenceReconcilesAfterDrops: after the presence queue dropped ops, the node's
// tables are rebuilt from the loops' registry, so its watcher learns of connections
// that opened or closed meanwhile (a lost close would otherwise be reported again
// when this node dies).
func TestPresenceReconcilesAfterDrops(t *testing.T) {
	net := newFakeNet()
	a, la := net.add(t, "a", func(c *Config) { c.Events = &sinkRec{} })
	bset := metrics.NewSet()
	net.add(t, "b", func(c *Config) { c.Events, c.Metrics = &sinkRec{}, bset })
	watched := func() float64 {
		m := map[string]float64{}
		for _, line := range strings.Split(metricsText(bset), "\n") {
			if name, v, ok := strings.Cut(line, " "); ok {
				f, _ := strconv.ParseFloat(v, 64)
				m[name] = f
			}
		}
		return m["longlink_presence_watched_connections"]
	}
	drop := func() {
		a.pr.qMu.Lock()
		a.pr.qDrop = true
		a.pr.qMu.Unlock()
	}
	wait := func(want float64) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); watched() != want; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("b watches %v of a's connections, want %v", watched(), want)
			}
		}
	}
	// A connection whose open op was lost: the registry has it.
	la.addConn("u", "a.x-1", time.Now().UnixNano())
	drop()
	wait(1)
	// And its close op lost too.
	la.mu.Lock()
	delete(la.conns, "u")
	la.mu.Unlock()
	drop()
	wait(0)
}

func metricsText(set *metrics.Set) string {
	var b strings.Builder
	set.WritePrometheus(&b)
	return b.String()
}
