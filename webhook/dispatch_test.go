package webhook

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// lineFormat is a test Format: a batch is its strings, one a line, with a header
// X-Lines; it counts outcomes and weighs a string by its length.
type lineFormat struct {
	counts [NumOutcomes]atomic.Int64
}

func (f *lineFormat) Encode(batch []string) ([]byte, string) {
	body := []byte(strings.Join(batch, "\n"))
	return body, strconv.Itoa(len(batch))
}

func (f *lineFormat) Header(h http.Header, _ []byte, tag string, attempt int) {
	h.Set("X-Lines", tag)
	h.Set("X-Try", strconv.Itoa(attempt))
}

func (f *lineFormat) Count(_ string, o Outcome, n int) { f.counts[o].Add(int64(n)) }
func (f *lineFormat) Size(v string) int                { return len(v) }

// lineSink records the lines of each POST; fail makes it answer 500.
type lineSink struct {
	mu    sync.Mutex
	lines []string
	tries []string
	fail  atomic.Bool
	stall chan struct{}
}

func (ls *lineSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	if ls.stall != nil {
		<-ls.stall
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	ls.tries = append(ls.tries, r.Header.Get("X-Lines")+"/"+r.Header.Get("X-Try")+"/"+r.Header.Get("Content-Type"))
	if ls.fail.Load() {
		w.WriteHeader(500)
		return
	}
	ls.lines = append(ls.lines, strings.Split(string(b), "\n")...)
}

func (ls *lineSink) snapshot() ([]string, []string) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return append([]string(nil), ls.lines...), append([]string(nil), ls.tries...)
}

func newDispatcher(t *testing.T, url string, f *lineFormat, mod func(*DispatcherConfig[string])) (*Dispatcher[string], *metrics.Set) {
	t.Helper()
	set := metrics.NewSet()
	cfg := DispatcherConfig[string]{
		Config: Config{URLs: []string{url}, Metrics: set,
			BatchDelay: 5 * time.Millisecond, MinBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond},
		Format: f, MetricPrefix: "test_hook", MetricLabels: `app="a"`,
	}
	if mod != nil {
		mod(&cfg)
	}
	d, err := NewDispatcher(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Shutdown(0) })
	return d, set
}

// TestDispatcherFormat: the Format's body and headers go out, retries carry the
// same tag with a new attempt number, and the per-URL metrics carry the prefix
// and labels.
func TestDispatcherFormat(t *testing.T) {
	ls := &lineSink{}
	ls.fail.Store(true)
	srv := httptest.NewServer(ls)
	defer srv.Close()
	f := &lineFormat{}
	d, set := newDispatcher(t, srv.URL, f, func(c *DispatcherConfig[string]) { c.BatchDelay = 50 * time.Millisecond })
	d.Offer("a")
	d.Offer("b")
	waitFor(t, 5*time.Second, func() bool { _, tr := ls.snapshot(); return len(tr) >= 2 })
	ls.fail.Store(false)
	waitFor(t, 5*time.Second, func() bool { l, _ := ls.snapshot(); return len(l) == 2 })
	// The receiver has the lines before the sender has read its answer and counted
	// the batch: wait for the count, not only for the lines.
	waitFor(t, 5*time.Second, func() bool { return f.counts[Delivered].Load() >= 2 })
	lines, tries := ls.snapshot()
	if lines[0] != "a" || lines[1] != "b" {
		t.Fatalf("lines %q", lines)
	}
	for i, tr := range tries {
		if want := "2/" + strconv.Itoa(i+1) + "/application/json"; tr != want {
			t.Fatalf("attempt %d: %q, want %q", i+1, tr, want)
		}
	}
	if f.counts[Delivered].Load() != 2 {
		t.Errorf("delivered %d", f.counts[Delivered].Load())
	}
	for name, min := range map[string]float64{
		`test_hook_requests_total{app="a",receiver="0",class="5xx"}`: 2,
		`test_hook_requests_total{app="a",receiver="0",class="2xx"}`: 1,
		`test_hook_retries_total{app="a",receiver="0"}`:              2,
		`test_hook_queue_capacity{app="a"}`:                          10000,
	} {
		if got := counter(set, name); got < min {
			t.Errorf("%s = %v, want >= %v", name, got, min)
		}
	}
}

// TestDispatcherQueueBytes: with QueueBytes, what waits for a URL is bounded by
// the Format's sizes; the excess is DroppedOverflow, and the bytes come back once
// a batch is delivered.
func TestDispatcherQueueBytes(t *testing.T) {
	ls := &lineSink{stall: make(chan struct{})}
	srv := httptest.NewServer(ls)
	defer srv.Close()
	f := &lineFormat{}
	d, _ := newDispatcher(t, srv.URL, f, func(c *DispatcherConfig[string]) { c.QueueBytes = 10; c.BatchSize = 1 })
	d.Offer("12345") // in flight, stalled: 5 bytes held
	waitFor(t, 5*time.Second, func() bool { return d.recv[0].inflight.Load() == 1 })
	d.Offer("1234") // 9
	d.Offer("12")   // 11: over
	d.Offer("1")    // 10
	d.Offer("x")    // 11: over
	if got := f.counts[DroppedOverflow].Load(); got != 2 {
		t.Fatalf("dropped_overflow %d, want 2", got)
	}
	close(ls.stall)
	waitFor(t, 5*time.Second, func() bool { l, _ := ls.snapshot(); return len(l) == 3 })
	waitFor(t, 5*time.Second, func() bool { return d.recv[0].qbytes.Load() == 0 })
	d.Offer("0123456789") // fits again
	waitFor(t, 5*time.Second, func() bool { l, _ := ls.snapshot(); return len(l) == 4 })
	d.Close()
	d.Offer("late")
	if got := f.counts[DroppedShutdown].Load(); got != 1 {
		t.Fatalf("dropped_shutdown %d, want 1", got)
	}
}

func TestDispatcherConfigErrors(t *testing.T) {
	f := &lineFormat{}
	for _, tc := range []struct {
		cfg  DispatcherConfig[string]
		want string
	}{
		{DispatcherConfig[string]{Config: Config{URLs: []string{"http://x/"}}}, "Format is required"},
		{DispatcherConfig[string]{Config: Config{URLs: []string{"http://x/"}, Secret: secret}, Format: f}, "native format"},
		{DispatcherConfig[string]{Config: Config{URLs: []string{"mailto:x"}}, Format: f}, "want an absolute http"},
		{DispatcherConfig[string]{Config: Config{URLs: []string{"http://x/"}, QueueBytes: -1}, Format: f}, "QueueBytes"},
	} {
		if _, err := NewDispatcher(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: err %v, want %q", tc.cfg.Config, err, tc.want)
		}
	}
	d, err := NewDispatcher(DispatcherConfig[string]{Format: f})
	if d != nil || err != nil {
		t.Fatalf("no URLs: %v %v", d, err)
	}
	d.Offer("x") // nil: no panic
	d.Close()
	if DroppedExpired.String() != "dropped_expired" || Outcome(9).String() != "unknown" {
		t.Error("Outcome.String")
	}
}
