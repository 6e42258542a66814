package node

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"longlink/internal/testutil"
)

// dialAPI opens a raw TCP connection to n's API port.
func dialAPI(t *testing.T, n *Node) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", n.APIAddr(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// get sends GET path on the open connection c and returns the answer.
func get(t *testing.T, c net.Conn, br *bufio.Reader, path string) (*http.Response, string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

// waitClosed reads c until the server closes it, failing if it sends anything or
// stays open past d.
func waitClosed(t *testing.T, c net.Conn, d time.Duration, what string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	n, err := c.Read(make([]byte, 1))
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		t.Fatalf("%s: still open after %v", what, d)
	case n > 0 || (err != io.EOF && !errors.Is(err, os.ErrClosed) && !strings.Contains(err.Error(), "reset")):
		t.Fatalf("%s: read %d bytes, %v; want the server to close", what, n, err)
	}
}

// Security review, issue 10: the API port had no connection cap, so idle or silent
// connections took descriptors from the budget WebSocket clients count on. Over
// APIMaxConns a new connection must get a JSON 503 at once and be closed, counted,
// while the connections already open keep working.
func TestAPIConnectionCap(t *testing.T) {
	const limit, extra = 8, 5
	n := startNode(t, func(c *Config) { c.API.MaxConns = limit })
	held := make([]net.Conn, limit)
	for i := range held {
		held[i] = dialAPI(t, n)
	}
	// The listener accepts in order, so the held connections are counted before any
	// of the extra ones is accepted.
	for i := 0; i < extra; i++ {
		c := dialAPI(t, n)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("connection %d over the cap: %v, want a 503", limit+i+1, err)
		}
		b, _ := io.ReadAll(resp.Body)
		jsonError(t, resp, string(b), 503, "connections")
		waitClosed(t, c, 5*time.Second, "connection over the cap")
	}
	// The held connections are served, and the refusals were counted.
	br := bufio.NewReader(held[0])
	if resp, body := get(t, held[0], br, "/healthz"); resp.StatusCode != 200 {
		t.Fatalf("held connection: %d %s", resp.StatusCode, body)
	}
	_, metricsText := get(t, held[0], br, "/metrics")
	m, _ := testutil.ParseMetrics(metricsText)
	for series, want := range map[string]float64{`longlink_api_rejected_total{reason="max_conns"}`: 5, "longlink_api_connections": 8} {
		if got, ok := m[series]; !ok || got != want {
			t.Errorf("/metrics: %s = %v (present %v), want %v", series, got, ok, want)
		}
	}
	// Closing held connections frees their places.
	held[1].Close()
	held[2].Close()
	testutil.WaitFor(t, 5*time.Second, "a free place on the API port", func() bool {
		c, err := net.DialTimeout("tcp", n.APIAddr(), time.Second)
		if err != nil {
			return false
		}
		defer c.Close()
		// Until the server has seen the closes, this one is refused: a 503, or a
		// reset if the request was still unread when the server closed.
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		return err == nil && resp.StatusCode == 200
	})
}

// A keep-alive connection that sends nothing more is closed after APIIdleTimeout,
// and a connection that never sends a byte after APIReadTimeout.
func TestAPIIdleAndSilentConnectionsClosed(t *testing.T) {
	n := startNode(t, func(c *Config) {
		c.API.IdleTimeout = 300 * time.Millisecond
		c.API.ReadTimeout = 300 * time.Millisecond
	})
	idle := dialAPI(t, n)
	start := time.Now() // before the request: the idle wait starts after its answer
	if resp, body := get(t, idle, bufio.NewReader(idle), "/healthz"); resp.StatusCode != 200 {
		t.Fatalf("healthz: %d %s", resp.StatusCode, body)
	}
	waitClosed(t, idle, 10*time.Second, "idle keep-alive connection")
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Errorf("idle connection closed after %v, before the 300ms idle timeout", d)
	}
	// A connection that never sends a byte is told why (408) and closed.
	silent := dialAPI(t, n)
	silent.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(silent), nil)
	if err != nil {
		t.Fatalf("silent connection: %v, want a 408", err)
	}
	b, _ := io.ReadAll(resp.Body)
	jsonError(t, resp, string(b), http.StatusRequestTimeout, "not received in time")
	waitClosed(t, silent, 10*time.Second, "silent connection")
}

func TestAPIConnBudget(t *testing.T) {
	f := func(limit uint64, want int) {
		t.Helper()
		if got := APIConnBudget(limit); got != want {
			t.Errorf("APIConnBudget(%d) = %d, want %d", limit, got, want)
		}
	}
	f(20000, 636)       // the reserve is at its 700 maximum from 14,000 files
	f(14000, 636)       //
	f(4000, 136)        // reserve 200
	f(2560, 64)         // reserve 128: less 64 and half agree
	f(1024, 32)         // reserve 64: half of it
	f(10, 4)            // reserve 9
	f(1<<40, 1024)      // effectively unlimited
	f(^uint64(0), 1024) // RLIM_INFINITY
}
