package webhook

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

var secret = []byte("test-webhook-secret")

// recorder is a receiver that checks signatures and keeps every event in order.
type recorder struct {
	mu      sync.Mutex
	events  []Event
	posts   int
	fail    atomic.Bool // answer 503
	stall   chan struct{}
	badSigs int
}

func (rc *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if rc.stall != nil {
		<-rc.stall
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.posts++
	if r.Header.Get(HeaderSignature) != Sign(secret, body) || r.Header.Get("Content-Type") != "application/json" {
		rc.badSigs++
		w.WriteHeader(400)
		return
	}
	if rc.fail.Load() {
		w.WriteHeader(503)
		return
	}
	var b batchBody
	if err := json.Unmarshal(body, &b); err != nil {
		w.WriteHeader(400)
		return
	}
	rc.events = append(rc.events, b.Events...)
	w.WriteHeader(204)
}

func (rc *recorder) snapshot() ([]Event, int) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]Event(nil), rc.events...), rc.posts
}

func waitFor(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func counter(set *metrics.Set, name string) float64 {
	var sb strings.Builder
	set.WritePrometheus(&sb)
	for _, line := range strings.Split(sb.String(), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			var f float64
			json.Unmarshal([]byte(v), &f)
			return f
		}
	}
	return 0
}

func newSender(t *testing.T, url string, mod func(*Config)) (*Sender, *metrics.Set) {
	t.Helper()
	set := metrics.NewSet()
	cfg := Config{URLs: []string{url}, Secret: secret, NodeName: "n1", Metrics: set,
		BatchDelay: 5 * time.Millisecond, MinBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(0) })
	return s, set
}

func TestSenderOrderAndBatching(t *testing.T) {
	rc := &recorder{}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	s, set := newSender(t, srv.URL, func(c *Config) { c.BatchSize = 10; c.BatchDelay = 50 * time.Millisecond })
	for i := range 95 {
		s.Emit(Event{Type: ConnectionOpened, Connection: string(rune('a' + i%26)), Code: i + 1})
	}
	waitFor(t, 5*time.Second, func() bool { ev, _ := rc.snapshot(); return len(ev) == 95 })
	// The receiver records a batch before the sender reads the answer and counts it.
	const delivered = `longlink_webhook_events_total{event="connection.opened",outcome="delivered"}`
	waitFor(t, 5*time.Second, func() bool { return counter(set, delivered) >= 95 })
	ev, posts := rc.snapshot()
	for i, e := range ev {
		if e.Code != i+1 || e.ID == "" || e.Time.IsZero() {
			t.Fatalf("event %d: %+v (order or fields)", i, e)
		}
	}
	if posts < 10 || posts > 20 {
		t.Errorf("%d POSTs for 95 events in batches of at most 10", posts)
	}
	if got := counter(set, delivered); got != 95 {
		t.Errorf("delivered counter %v, want 95", got)
	}
}

func TestSenderRetriesInOrderAfterOutage(t *testing.T) {
	rc := &recorder{}
	rc.fail.Store(true)
	srv := httptest.NewServer(rc)
	defer srv.Close()
	s, set := newSender(t, srv.URL, func(c *Config) { c.BatchSize = 3 })
	for i := range 10 {
		s.Emit(Event{Type: UserOnline, User: "u", Code: i + 1})
	}
	waitFor(t, 5*time.Second, func() bool { _, p := rc.snapshot(); return p >= 5 })
	rc.fail.Store(false)
	waitFor(t, 5*time.Second, func() bool { ev, _ := rc.snapshot(); return len(ev) == 10 })
	ev, _ := rc.snapshot()
	seen := map[string]bool{}
	for i, e := range ev {
		if e.Code != i+1 || seen[e.ID] {
			t.Fatalf("event %d: %+v: out of order or twice", i, e)
		}
		seen[e.ID] = true
	}
	if counter(set, `longlink_webhook_retries_total{receiver="0"}`) < 4 {
		t.Error("retries not counted")
	}
	if counter(set, `longlink_webhook_requests_total{receiver="0",class="5xx"}`) < 5 {
		t.Error("5xx answers not counted")
	}
}

func TestSenderWindowExpiry(t *testing.T) {
	rc := &recorder{}
	rc.fail.Store(true)
	srv := httptest.NewServer(rc)
	defer srv.Close()
	s, set := newSender(t, srv.URL, func(c *Config) { c.RetryWindow = 100 * time.Millisecond })
	s.Emit(Event{Type: UserOffline, User: "u1"})
	waitFor(t, 5*time.Second, func() bool {
		return counter(set, `longlink_webhook_events_total{event="user.offline",outcome="dropped_expired"}`) == 1
	})
	// The next batch is sent after the expired one: the receiver is back.
	rc.fail.Store(false)
	s.Emit(Event{Type: UserOffline, User: "u2"})
	waitFor(t, 5*time.Second, func() bool { ev, _ := rc.snapshot(); return len(ev) == 1 })
	if ev, _ := rc.snapshot(); ev[0].User != "u2" {
		t.Fatalf("got %+v", ev)
	}
}

func TestSenderOverflowCounted(t *testing.T) {
	rc := &recorder{stall: make(chan struct{})}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	defer close(rc.stall)
	s, set := newSender(t, srv.URL, func(c *Config) { c.QueueSize = 4; c.BatchSize = 1 })
	s.Emit(Event{Type: ConnectionClosed})
	// The first is in flight (the receiver stalls); four fit the queue, five do not.
	waitFor(t, 5*time.Second, func() bool {
		return counter(set, `longlink_webhook_queue_length{receiver="0"}`) == 1 && len(s.recv[0].q) == 0
	})
	for range 9 {
		s.Emit(Event{Type: ConnectionClosed})
	}
	if got := counter(set, `longlink_webhook_events_total{event="connection.closed",outcome="dropped_overflow"}`); got != 5 {
		t.Fatalf("dropped_overflow %v, want 5", got)
	}
	if got := counter(set, `longlink_webhook_queue_length{receiver="0"}`); got != 5 {
		t.Fatalf("queue length %v, want 5", got)
	}
}

func TestSenderCloseFlushes(t *testing.T) {
	rc := &recorder{}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	s, set := newSender(t, srv.URL, func(c *Config) { c.BatchDelay = time.Hour; c.BatchSize = 1000 })
	for range 50 {
		s.Emit(Event{Type: MessageExpired, Message: "m"})
	}
	start := time.Now()
	s.Shutdown(5 * time.Second)
	if ev, _ := rc.snapshot(); len(ev) != 50 {
		t.Fatalf("close flushed %d of 50", len(ev))
	}
	if time.Since(start) > 2*time.Second {
		t.Errorf("close waited %v with a batch delay of an hour", time.Since(start))
	}
	s.Emit(Event{Type: MessageExpired})
	if got := counter(set, `longlink_webhook_events_total{event="message.expired",outcome="dropped_shutdown"}`); got != 1 {
		t.Errorf("emit after close: dropped_shutdown %v", got)
	}
}

func TestSenderCloseBounded(t *testing.T) {
	rc := &recorder{}
	rc.fail.Store(true)
	srv := httptest.NewServer(rc)
	defer srv.Close()
	s, set := newSender(t, srv.URL, nil)
	for range 3 {
		s.Emit(Event{Type: UserOnline})
	}
	waitFor(t, 5*time.Second, func() bool { _, p := rc.snapshot(); return p >= 1 })
	start := time.Now()
	s.Shutdown(200 * time.Millisecond)
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("shutdown took %v with a bound of 200ms", d)
	}
	if got := counter(set, `longlink_webhook_events_total{event="user.online",outcome="dropped_shutdown"}`); got != 3 {
		t.Fatalf("dropped_shutdown %v, want 3", got)
	}
}

func TestSenderFilterAndIsolation(t *testing.T) {
	slow := &recorder{stall: make(chan struct{})}
	fast := &recorder{}
	s1, s2 := httptest.NewServer(slow), httptest.NewServer(fast)
	defer s1.Close()
	defer s2.Close()
	defer close(slow.stall)
	s, _ := newSender(t, s1.URL, func(c *Config) { c.URLs = append(c.URLs, s2.URL); c.Events = []string{UserOnline} })
	if s.Wants(UserOffline) || !s.Wants(UserOnline) {
		t.Fatal("Wants ignores Events")
	}
	s.Emit(Event{Type: UserOffline})
	for range 5 {
		s.Emit(Event{Type: UserOnline})
	}
	// The stalled receiver does not delay the other one.
	waitFor(t, 5*time.Second, func() bool { ev, _ := fast.snapshot(); return len(ev) == 5 })
}

func TestBackoff(t *testing.T) {
	for attempt, want := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 3: 400 * time.Millisecond, 10: time.Second, 60: time.Second} {
		for range 100 {
			d := Backoff(100*time.Millisecond, time.Second, attempt)
			if d < want/2 || d > want {
				t.Fatalf("attempt %d: %v outside [%v, %v]", attempt, d, want/2, want)
			}
		}
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{URLs: []string{"http://x/"}}, "Secret is required"},
		{Config{URLs: []string{"ftp://x/"}, Secret: secret}, "want an absolute http"},
		{Config{URLs: []string{"http://x/"}, Secret: secret, Events: []string{"user.onlin"}}, `unknown event "user.onlin"`},
		{Config{URLs: []string{"http://x/"}, Secret: secret, QueueSize: -1}, "QueueSize"},
	} {
		if _, err := New(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: err %v, want %q", tc.cfg, err, tc.want)
		}
	}
	if s, err := New(Config{}); s != nil || err != nil {
		t.Fatalf("no URLs: %v %v", s, err)
	}
	var nilSender *Sender
	nilSender.Emit(Event{Type: UserOnline}) // no panic
	nilSender.Close()
	if _, err := ParseEvents("user.online, bogus"); err == nil || !strings.Contains(err.Error(), `"bogus"`) {
		t.Errorf("ParseEvents: %v", err)
	}
	if ev, _ := ParseEvents(""); len(ev) != len(Types) {
		t.Errorf("ParseEvents(\"\") = %v", ev)
	}
}
