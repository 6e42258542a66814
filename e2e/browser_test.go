package e2e

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"longlink/internal/testutil"
)

// prodFlags configure a node as in production: fixed secrets, so no dev tokens.
// --demo-push enables the page's push form, off by default once an API key is set.
var prodFlags = []string{"--token-secret", tokenSecret, "--api-key", apiKey, "--demo-push"}

const (
	tokenSecret    = "e2e-token-secret-0123456789abcdef"
	apiKey         = "e2e-api-key"
	defaultBrowser = "/usr/bin/chromium"
)

// TestBrowserPushAndReconnect is the whole user story in a real browser: the demo
// page connects, receives a push sent to the API, survives a server restart (1001,
// then refused connections, then the node is back on the same ports) and receives
// pushes again, including one sent from the page's own form.
func TestBrowserPushAndReconnect(t *testing.T) {
	chromium := requireTools(t)
	testutil.Binary(t) // built before the browser starts

	srv := startServer(t, prodFlags...)
	drv := startDriver(t, chromium, "http://"+srv.API+"/demo/?minBackoffMs=100&maxBackoffMs=1000")

	// The node runs with --token-secret, so it mints no dev tokens: paste one, as a
	// production user would.
	tok := testutil.Token(t, tokenSecret, "42")
	drv.do(t, map[string]any{"cmd": "open", "user": "42", "token": tok, "timeoutMs": 20000})
	// The page speaks v2 (the JavaScript client's default): its first message is the
	// welcome naming its streams.
	drv.do(t, map[string]any{"cmd": "expectLog", "text": "streams=user:42,all"})
	// The node agrees: one connection, one user (docs/metrics.md).
	waitMetric(t, srv, "longlink_connections", 1)
	waitMetric(t, srv, "longlink_users", 1)

	nonce := time.Now().UnixNano()
	first := fmt.Sprintf("hello-e2e-1-%d", nonce)
	push(t, srv, `{"to":{"users":["42"]},"data":"`+first+`"}`)
	drv.do(t, map[string]any{"cmd": "expect", "text": first})

	// A push that asks for an acknowledgement and waits for it: the JavaScript client
	// acks once the page's handler has returned, so the answer says acked (200).
	acked := fmt.Sprintf("ack-e2e-%d", nonce)
	r := testutil.Do(t, http.MethodPost, "http://"+srv.API+"/v1/push",
		`{"to":{"users":["42"]},"data":"`+acked+`","ack":true,"wait":"10s"}`, testutil.Bearer(apiKey)...)
	if r.Status != http.StatusOK || !strings.Contains(r.Raw, `"complete":true`) || !strings.Contains(r.Raw, `"status":"acked"`) {
		t.Fatalf("push with ack and wait to the browser: %d %s", r.Status, r.Raw)
	}
	drv.do(t, map[string]any{"cmd": "expect", "text": acked})

	srv.Stop(t, 30*time.Second)
	drv.do(t, map[string]any{"cmd": "status", "not": "open"})
	// A draining node says "going away", which the client answers by reconnecting.
	drv.do(t, map[string]any{"cmd": "expectLog", "text": "close code=1001"})
	srv = restartServer(t, srv, prodFlags...)
	drv.do(t, map[string]any{"cmd": "status", "is": "open", "timeoutMs": 20000})
	waitMetric(t, srv, "longlink_connections", 1)
	// The page resumed with its positions; a standalone node that restarted has lost
	// its history, and the client says so to the application instead of skipping it.
	drv.do(t, map[string]any{"cmd": "expectLog", "text": "lost stream=user:42"})
	if m := testutil.Metrics(t, srv.API); m[`longlink_stream_recoveries_total{result="not_recovered"}`] < 1 {
		t.Errorf("the node did not count the page's failed recovery: %v", m[`longlink_stream_recoveries_total{result="not_recovered"}`])
	}

	second := fmt.Sprintf("hello-e2e-2-%d", nonce)
	push(t, srv, `{"to":{"all":true},"data":"`+second+`"}`)
	drv.do(t, map[string]any{"cmd": "expect", "text": second})

	third := fmt.Sprintf("hello-e2e-3-%d", nonce)
	drv.do(t, map[string]any{"cmd": "push", "text": third, "target": "user"})
	drv.do(t, map[string]any{"cmd": "expect", "text": third})
}

// TestBrowserDevMode runs a node the way a newcomer does, with no secrets: the page
// fetches dev tokens from /demo/token, finds the node through GET /v1/endpoint
// (cross-origin, so CORS must allow it) and pushes through the same-origin proxy.
func TestBrowserDevMode(t *testing.T) {
	chromium := requireTools(t)
	testutil.Binary(t) // built before the browser starts

	srv := startServer(t)
	drv := startDriver(t, chromium, "http://"+srv.API+"/demo/?user=7")
	drv.do(t, map[string]any{"cmd": "open", "user": "7", "timeoutMs": 20000})
	waitMetric(t, srv, "longlink_connections", 1)

	nonce := time.Now().UnixNano()
	toUser := fmt.Sprintf("dev-user-%d", nonce)
	drv.do(t, map[string]any{"cmd": "push", "text": toUser, "target": "user"})
	drv.do(t, map[string]any{"cmd": "expect", "text": toUser})
	toAll := fmt.Sprintf("dev-all-%d", nonce)
	drv.do(t, map[string]any{"cmd": "push", "text": toAll, "target": "all"})
	drv.do(t, map[string]any{"cmd": "expect", "text": toAll})
	drv.do(t, map[string]any{"cmd": "expectLog", "text": "open ws://" + srv.Client + "/ws"})
}

// TestBrowserDemoShowsWhatItDoes is the production page (real secrets, no
// --demo-push): the URL box is pre-filled from GET /v1/endpoint but is what the page
// connects to (here another node's URL, typed in), the user shown is the pasted
// token's, and the missing push form is explained with the shell line to use instead.
// LONGLINK_DEMO_SCREENSHOT=path saves a screenshot of the connected page.
func TestBrowserDemoShowsWhatItDoes(t *testing.T) {
	chromium := requireTools(t)
	testutil.Binary(t) // built before the browser starts

	prod := []string{"--token-secret", tokenSecret, "--api-key", apiKey}
	page := startServer(t, prod...)  // serves the page
	other := startServer(t, prod...) // the node typed into the box
	drv := startDriver(t, chromium, "http://"+page.API+"/demo/?minBackoffMs=100&maxBackoffMs=1000")
	drv.do(t, map[string]any{"cmd": "load"})
	if r := drv.read(t, "#url"); r["value"] != "ws://"+page.Client+"/ws" {
		t.Errorf("URL box pre-filled with %v, want the endpoint's ws://%s/ws", r["value"], page.Client)
	}
	if r := drv.read(t, "#url-note"); !strings.Contains(fmt.Sprint(r["text"]), "/v1/endpoint") {
		t.Errorf("URL note: %v", r["text"])
	}
	if r := drv.read(t, "#user-row"); r["visible"] != false {
		t.Errorf("the user input is shown on a node without dev tokens")
	}
	// Pushing is off: the page says why and what to run instead.
	if r := drv.read(t, "#push-form"); r["visible"] != false {
		t.Errorf("push form shown without --demo-push")
	}
	if r := drv.read(t, "#push-off"); r["visible"] != true || !strings.Contains(fmt.Sprint(r["text"]), "--demo-push") {
		t.Errorf("push-off note: %v", r)
	}

	drv.do(t, map[string]any{"cmd": "fill", "token": "x.%%%.y"})
	if r := drv.read(t, "#token-user"); !strings.Contains(fmt.Sprint(r["text"]), "token: its payload is not base64url JSON") {
		t.Errorf("a malformed token shows %v", r["text"])
	}
	tok := testutil.Token(t, tokenSecret, "7")
	drv.do(t, map[string]any{"cmd": "fill", "token": tok, "url": "ws://" + other.Client + "/ws"})
	if r := drv.read(t, "#token-user"); r["text"] != "user 7 (from the token)" {
		t.Errorf("token user shows %v", r["text"])
	}
	if r := drv.read(t, "#push-curl"); !strings.Contains(fmt.Sprint(r["text"]), `{"to":{"users":["7"]},"data":"hello"}`) ||
		!strings.Contains(fmt.Sprint(r["text"]), "http://"+page.API+"/v1/push") {
		t.Errorf("push-off curl line: %v", r["text"])
	}
	drv.do(t, map[string]any{"cmd": "connect"})
	drv.do(t, map[string]any{"cmd": "status", "is": "open", "timeoutMs": 20000})
	// The connection is where the box said, not where the endpoint pointed.
	waitMetric(t, other, "longlink_connections", 1)
	waitMetric(t, page, "longlink_connections", 0)
	drv.do(t, map[string]any{"cmd": "expectLog", "text": "open ws://" + other.Client + "/ws"})
	if r := drv.read(t, "#where"); r["text"] != "user 7 at ws://"+other.Client+"/ws" {
		t.Errorf("where: %v", r["text"])
	}
	msg := fmt.Sprintf("to-user-7-%d", time.Now().UnixNano())
	push(t, other, `{"to":{"users":["7"]},"data":"`+msg+`"}`)
	drv.do(t, map[string]any{"cmd": "expect", "text": msg})
	if p := os.Getenv("LONGLINK_DEMO_SCREENSHOT"); p != "" {
		drv.do(t, map[string]any{"cmd": "screenshot", "path": p})
	}
}

// requireTools returns the Chromium path, or skips (fails under LONGLINK_E2E=1) with
// the install command when the browser, node or playwright-core is missing.
func requireTools(t *testing.T) string {
	t.Helper()
	chromium := os.Getenv("LONGLINK_CHROMIUM")
	if chromium == "" {
		chromium = defaultBrowser
	}
	var missing []string
	if _, err := os.Stat(chromium); err != nil {
		missing = append(missing, fmt.Sprintf("%s (apt-get install -y chromium)", chromium))
	}
	if _, err := exec.LookPath("node"); err != nil {
		missing = append(missing, "node (apt-get install -y nodejs npm)")
	}
	if _, err := os.Stat(filepath.Join("node_modules", "playwright-core", "package.json")); err != nil {
		missing = append(missing, "e2e/node_modules/playwright-core (cd e2e && npm ci)")
	}
	if len(missing) > 0 {
		msg := "browser e2e test needs: " + strings.Join(missing, ", ")
		if os.Getenv("LONGLINK_E2E") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg + "; set LONGLINK_E2E=1 to make this a failure")
	}
	return chromium
}

// TestMain removes the binary the tests built; LONGLINK_E2E_BINARY names a prebuilt
// one to run instead.
func TestMain(m *testing.M) {
	if bin := os.Getenv("LONGLINK_E2E_BINARY"); bin != "" {
		testutil.UseBinary(bin)
	}
	os.Exit(testutil.Run(m))
}

// startServer starts `longlink serve` on loopback port-0 addresses.
func startServer(t *testing.T, flags ...string) *testutil.Node {
	t.Helper()
	args := []string{"--client-addr", "127.0.0.1:0", "--api-addr", "127.0.0.1:0", "--gossip-addr", "127.0.0.1:0"}
	return testutil.StartNode(t, nil, append(args, flags...)...)
}

// restartServer starts a node again on old's ports; a just-closed port can take a
// moment to free up.
func restartServer(t *testing.T, old *testutil.Node, flags ...string) *testutil.Node {
	t.Helper()
	args := []string{"--client-addr", old.Client, "--api-addr", old.API, "--gossip-addr", "127.0.0.1:0"}
	var lastErr error
	for range 3 {
		n, err := testutil.TryStartNode(t, nil, append(args, flags...)...)
		if err == nil {
			return n
		}
		lastErr = err
	}
	t.Fatalf("server did not restart on %s/%s: %v", old.Client, old.API, lastErr)
	return nil
}

func push(t *testing.T, n *testutil.Node, body string) {
	t.Helper()
	r := testutil.Do(t, http.MethodPost, "http://"+n.API+"/v1/push", body, testutil.Bearer(apiKey)...)
	if r.Status != http.StatusAccepted {
		t.Fatalf("POST /v1/push %s: status %d, body %s", body, r.Status, r.Raw)
	}
}

// waitMetric polls /metrics until the series name equals want.
func waitMetric(t *testing.T, n *testutil.Node, name string, want float64) {
	t.Helper()
	last := "nothing"
	defer func() {
		if t.Failed() {
			t.Logf("metric %s: want %v, last saw %s", name, want, last)
		}
	}()
	testutil.WaitFor(t, 10*time.Second, fmt.Sprintf("%s = %v", name, want), func() bool {
		select {
		case <-n.Done:
			t.Fatalf("server exited (%v) while waiting for %s = %v", n.Err, name, want)
		default:
		}
		code, body := testutil.Get("http://" + n.API + "/metrics")
		m, _ := testutil.ParseMetrics(body)
		v, ok := m[name]
		switch {
		case code != 200:
			last = body
		case !ok:
			last = "series missing"
		default:
			last = fmt.Sprint(v)
		}
		return code == 200 && ok && v == want
	})
}

// driver is the node process running browser.mjs (a jsDriver, pusher_node_test.go).
type driver struct{ *jsDriver }

func startDriver(t *testing.T, chromium, demoURL string) *driver {
	t.Helper()
	return &driver{startJSDriver(t, "browser.mjs", "LONGLINK_DEMO_URL="+demoURL, "LONGLINK_CHROMIUM="+chromium)}
}

// read returns an element's text, value and visibility (browser.mjs "read").
func (d *driver) read(t *testing.T, sel string) map[string]any {
	t.Helper()
	return d.jsDriver.do(t, "read", "sel", sel)
}

// do sends one command and fails the test unless the browser reports success.
func (d *driver) do(t *testing.T, cmd map[string]any) {
	t.Helper()
	name, _ := cmd["cmd"].(string)
	kv := make([]any, 0, 2*len(cmd))
	for k, v := range cmd {
		if k != "cmd" {
			kv = append(kv, k, v)
		}
	}
	start := time.Now()
	d.jsDriver.do(t, name, kv...)
	t.Logf("browser: %s ok in %v", name, time.Since(start).Round(time.Millisecond))
}
