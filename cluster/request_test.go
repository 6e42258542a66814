package cluster

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"longlink/internal/testutil"
)

// echo answers "<node>:<from>:<body>".
func echo(node string) func(string, []byte) []byte {
	return func(from string, body []byte) []byte { return []byte(node + ":" + from + ":" + string(body)) }
}

// gate blocks OnRequest calls until opened. Tests register release as a cleanup
// after starting the nodes, so it runs before they stop (shutdown waits for the
// callbacks).
type gate struct {
	started atomic.Int64
	open    chan struct{}
	once    sync.Once
}

func newGate() *gate { return &gate{open: make(chan struct{})} }

func (g *gate) release() { g.once.Do(func() { close(g.open) }) }

func (g *gate) onRequest(from string, body []byte) []byte {
	g.started.Add(1)
	<-g.open
	return append([]byte("late:"), body...)
}

func waitingLen(c *Cluster) int {
	c.req.mu.Lock()
	defer c.req.mu.Unlock()
	return len(c.req.waiting)
}

func TestRequestAndAsk(t *testing.T) {
	nodes := startCluster(t, 3, func(i int, cfg *Config) { cfg.OnRequest = echo(cfg.NodeName) })
	a := nodes[0]
	ctx := context.Background()
	got, err := a.Request(ctx, "node1", []byte("hi"))
	if err != nil || string(got) != "node1:node0:hi" {
		t.Fatalf("Request = %q, %v", got, err)
	}
	// Both directions, concurrently, each answer to its own id.
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			from, to := nodes[i%3], nodes[(i+1)%3]
			body := strings.Repeat("x", i)
			got, err := from.Request(ctx, to.Name(), []byte(body))
			if want := to.Name() + ":" + from.Name() + ":" + body; err != nil || string(got) != want {
				t.Errorf("Request %d = %q, %v; want %q", i, got, err, want)
			}
		}()
	}
	wg.Wait()
	answers, missing := a.Ask(ctx, []string{"node2", "node1", "node2"}, []byte("q"))
	if len(missing) != 0 || len(answers) != 2 || string(answers["node1"]) != "node1:node0:q" || string(answers["node2"]) != "node2:node0:q" {
		t.Fatalf("Ask = %q, missing %v", answers, missing)
	}
	if _, err := a.Request(ctx, "nobody", nil); !errors.Is(err, ErrUnknownNode) {
		t.Fatalf("Request to an unknown node: %v", err)
	}
	for _, c := range nodes {
		if n := waitingLen(c); n != 0 {
			t.Fatalf("%s keeps %d waiters after every request ended", c.Name(), n)
		}
	}
}

// A request whose Send already failed can never be answered, yet ask waited the whole
// QueryTimeout for it (moved from node: TestAskDoesNotWaitForUnsentQueries).
func TestAskDoesNotWaitForUnsentQueries(t *testing.T) {
	c := startNode(t, func() Config { cfg := testConfig("solo"); cfg.RequestTimeout = time.Second; return cfg }())
	start := time.Now()
	_, missing := c.Ask(context.Background(), []string{"no-such-peer"}, nil)
	if d := time.Since(start); d > 200*time.Millisecond {
		t.Fatalf("ask took %v for a peer it never reached (missing=%v)", d, missing)
	}
	if !slices.Equal(missing, []string{"no-such-peer"}) {
		t.Fatalf("missing = %v", missing)
	}
	var nilCluster *Cluster
	if answers, missing := nilCluster.Ask(context.Background(), []string{"a", "a", "b"}, nil); len(answers) != 0 || !slices.Equal(missing, []string{"a", "b"}) {
		t.Fatalf("nil cluster Ask = %v, %v", answers, missing)
	}
}

func TestRequestTimesOutOnStalledOrDeadPeer(t *testing.T) {
	g := newGate()
	nodes := startCluster(t, 3, func(i int, cfg *Config) {
		cfg.RequestTimeout = 300 * time.Millisecond
		cfg.OnRequest = echo(cfg.NodeName)
		if i == 1 {
			cfg.OnRequest = g.onRequest
		}
	})
	t.Cleanup(g.release)
	a := nodes[0]
	start := time.Now()
	if _, err := a.Request(context.Background(), "node1", []byte("x")); !errors.Is(err, ErrTimeout) {
		t.Fatalf("Request to a stalled peer: %v, want ErrTimeout", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("Request took %v with a 300ms RequestTimeout", d)
	}
	answers, missing := a.Ask(context.Background(), []string{"node1", "node2"}, []byte("y"))
	if !slices.Equal(missing, []string{"node1"}) || string(answers["node2"]) != "node2:node0:y" {
		t.Fatalf("Ask with node1 stalled = %q, missing %v", answers, missing)
	}
	// The stalled answers arrive late, for ids nobody waits for: dropped.
	g.release()
	testutil.WaitFor(t, 5*time.Second, "late answers sent", func() bool { return nodes[1].m.forwardMessages.Get() > 0 })
	if n := waitingLen(a); n != 0 {
		t.Fatalf("%d waiters left", n)
	}
	// A context deadline ends the wait before RequestTimeout.
	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	<-ctx.Done()
	if _, err := a.Request(ctx, "node2", nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Request with an expired ctx: %v", err)
	}
	// A dead peer: the request either fails at once (already noticed) or times out.
	nodes[2].Kill()
	start = time.Now()
	if _, err := a.Request(context.Background(), "node2", nil); !errors.Is(err, ErrTimeout) && !errors.Is(err, ErrUnknownNode) {
		t.Fatalf("Request to a killed peer: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("Request to a killed peer took %v", d)
	}
}

func TestAnsweringIsBounded(t *testing.T) {
	g := newGate()
	nodes := startCluster(t, 2, func(i int, cfg *Config) {
		cfg.RequestTimeout = 30 * time.Second
		if i == 1 {
			cfg.MaxAnswering = 2
			cfg.OnRequest = g.onRequest
		}
	})
	t.Cleanup(g.release)
	a, b := nodes[0], nodes[1]
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type result struct {
		body []byte
		err  error
	}
	results := make(chan result, 5)
	for i := range 5 {
		go func() {
			body, err := a.Request(ctx, "node1", []byte{byte('0' + i)})
			results <- result{body, err}
		}()
	}
	testutil.WaitFor(t, 5*time.Second, "2 answering, 3 dropped", func() bool {
		return g.started.Load() == 2 && b.m.queryDrops.Get() == 3
	})
	g.release()
	for range 2 {
		if r := <-results; r.err != nil || !strings.HasPrefix(string(r.body), "late:") {
			t.Fatalf("answered request: %q, %v", r.body, r.err)
		}
	}
	cancel() // the dropped three would wait for RequestTimeout
	for range 3 {
		if r := <-results; !errors.Is(r.err, context.Canceled) {
			t.Fatalf("dropped request: %q, %v", r.body, r.err)
		}
	}
	if g.started.Load() != 2 {
		t.Fatalf("OnRequest ran %d times, want 2", g.started.Load())
	}
}

func TestShutdownUnblocksWaiters(t *testing.T) {
	g := newGate()
	nodes := startCluster(t, 2, func(i int, cfg *Config) {
		cfg.RequestTimeout = 30 * time.Second
		cfg.OnRequest = g.onRequest
	})
	t.Cleanup(g.release)
	done := make(chan error, 2)
	go func() {
		_, err := nodes[0].Request(context.Background(), "node1", nil)
		done <- err
	}()
	go func() {
		_, missing := nodes[0].Ask(context.Background(), []string{"node1"}, nil)
		if len(missing) != 1 {
			done <- errors.New("Ask: node1 not missing")
		}
		done <- ErrClosed
	}()
	testutil.WaitFor(t, 5*time.Second, "both requests answering", func() bool { return g.started.Load() == 2 })
	start := time.Now()
	nodes[0].Kill()
	for range 2 {
		if err := <-done; !errors.Is(err, ErrClosed) {
			t.Fatalf("waiter ended with %v, want ErrClosed", err)
		}
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("waiters took %v to notice the shutdown", d)
	}
}

func TestAnswerOverFrameLimitIsDropped(t *testing.T) {
	nodes := startCluster(t, 2, func(i int, cfg *Config) {
		cfg.RequestTimeout = 300 * time.Millisecond
		cfg.MaxFrame = 64 << 10
		cfg.OnRequest = func(string, []byte) []byte { return make([]byte, 64<<10) }
	})
	failures := nodes[1].m.forwardFailures.Get()
	if _, err := nodes[0].Request(context.Background(), "node1", nil); !errors.Is(err, ErrTimeout) {
		t.Fatalf("Request answered over MaxFrame: %v, want ErrTimeout", err)
	}
	testutil.WaitFor(t, 5*time.Second, "oversized answer counted", func() bool { return nodes[1].m.forwardFailures.Get() > failures })
}

// Answers are taken only for a waiting id and only from the node it was sent to.
func TestAnswerFromWrongNodeOrUnknownIDDropped(t *testing.T) {
	c := fuzzCluster()
	ch := make(chan answer, 2)
	c.req.waiting[7] = waiter{node: "peer", ch: ch}
	c.deliverAnswer("other", 7, []byte("forged"))
	c.deliverAnswer("peer", 8, []byte("unknown id"))
	if len(ch) != 0 {
		t.Fatalf("delivered %q", (<-ch).body)
	}
	buf := []byte("real")
	c.deliverAnswer("peer", 7, buf)
	c.deliverAnswer("peer", 7, []byte("again"))
	buf[0] = 'X' // the reader reuses its buffer
	if len(ch) != 1 || string((<-ch).body) != "real" {
		t.Fatal("the real answer was not delivered exactly once as a copy")
	}
}
