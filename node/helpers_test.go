package node

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/gorilla/websocket"

	"longlink/cluster"
	"longlink/internal/testutil"
	"longlink/loop"
	"longlink/push"
)

const (
	testSecret = "test-secret-0123456789abcdef"
	testKey    = "test-api-key"
)

func TestMain(m *testing.M) { os.Exit(testutil.Main(m, 20)) }

// startNode starts a real node on loopback port 0 and stops it when the test ends.
func startNode(t testing.TB, mod func(*Config)) *Node {
	t.Helper()
	cfg := Config{
		TokenSecret:  []byte(testSecret),
		DrainTimeout: 3 * time.Second,
		Loop:         loop.Config{Addrs: []string{"127.0.0.1:0"}, Loops: 2},
		Push:         push.Config{APIKeys: []string{testKey}},
		API:          APIConfig{Addr: "127.0.0.1:0"},
		Cluster:      cluster.Config{GossipAddr: "127.0.0.1:0", ForwardAddr: "127.0.0.1:0", Probe: 200 * time.Millisecond},
		Metrics:      metrics.NewSet(),
		Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if testing.Verbose() {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	if mod != nil {
		mod(&cfg)
	}
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	testutil.CleanupWithin(t, 10*time.Second, func(ctx context.Context) { n.Shutdown(ctx) })
	return n
}

func wsURL(n *Node) string { return "ws://" + n.ClientAddrs()[0] + "/ws" }

// dial connects a real WebSocket client as user.
func dial(t testing.TB, n *Node, user string, rooms ...string) *websocket.Conn {
	t.Helper()
	c, resp, err := websocket.DefaultDialer.Dial(wsURL(n)+"?token="+url.QueryEscape(testutil.Token(t, testSecret, user, rooms...)), nil)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial as %s: %v (status %d)", user, err, status)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// read returns the next data message or fails after timeout.
func read(t testing.TB, c *websocket.Conn, timeout time.Duration) (int, string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(timeout))
	typ, b, err := c.ReadMessage()
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return typ, string(b)
}

// settled pushes a marker to every connection on n and asserts that the next message
// each of cs receives is that marker: nothing else was delivered to them before it.
// (gorilla's connections cannot be read again after a read timeout, so absence is
// proven with a marker rather than a timeout.)
func settled(t testing.TB, n *Node, cs ...*websocket.Conn) {
	t.Helper()
	marker := fmt.Sprintf("marker-%d", time.Now().UnixNano())
	if r := doPush(t, n, `{"to":{"all":true},"data":"`+marker+`"}`); r.Status != 202 {
		t.Fatalf("marker push: %d %s", r.Status, r.Raw)
	}
	for i, c := range cs {
		if _, m := read(t, c, 2*time.Second); m != marker {
			t.Fatalf("connection %d received %q, want nothing before the marker", i, m)
		}
	}
}

// silent asserts that c receives no data message within d. It must be the last read
// on c.
func silent(t testing.TB, c *websocket.Conn, d time.Duration) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(d))
	typ, b, err := c.ReadMessage()
	if err == nil {
		t.Fatalf("unexpected message (type %d): %q", typ, b)
	}
	if ne, ok := err.(interface{ Timeout() bool }); !ok || !ne.Timeout() {
		t.Fatalf("want a timeout, got %v", err)
	}
}

type apiResp = testutil.Response

// call sends an API request authenticated with testKey.
func call(t testing.TB, n *Node, method, path, body string) apiResp {
	t.Helper()
	return testutil.Do(t, method, "http://"+n.APIAddr()+path, body, testutil.Bearer(testKey)...)
}

func doPush(t testing.TB, n *Node, body string) apiResp {
	t.Helper()
	return call(t, n, "POST", "/v1/push", body)
}

// scrape returns the value of one series from /metrics (-1 if absent).
func scrape(t testing.TB, n *Node, name string) float64 {
	t.Helper()
	if v, ok := testutil.Metrics(t, n.APIAddr())[name]; ok {
		return v
	}
	return -1
}
