package main

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"longlink/connhook"
	"longlink/internal/testutil"
)

const hookSecret = "connect-hook-test-secret"

// hookCall is one request the test hook received.
type hookCall struct {
	Type, Time, Node, Connection, User, Protocol, Remote string
	Claims                                               map[string]any
	Headers                                              map[string][]string
	signed                                               bool
}

// testHook is a connect hook whose answer depends on the user id: allow (rooms and
// metadata), refuse (403), slow (never answers: the node's timeout ends it), hold
// (waits for the node to give up, reporting the call), five (500), bad (not JSON).
type testHook struct {
	*httptest.Server
	mu       sync.Mutex
	calls    []hookCall
	held     chan struct{} // a hold call arrived
	released chan struct{} // the node canceled a hold call
}

func newTestHook(t *testing.T) *testHook {
	h := &testHook{held: make(chan struct{}, 4), released: make(chan struct{}, 4)}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var c hookCall
		if err := json.Unmarshal(body, &c); err != nil {
			t.Errorf("hook body %s: %v", body, err)
		}
		c.signed = r.Header.Get(connhook.SignatureHeader) == connhook.Sign([]byte(hookSecret), body)
		h.mu.Lock()
		h.calls = append(h.calls, c)
		h.mu.Unlock()
		switch c.User {
		case "allow":
			io.WriteString(w, `{"rooms":["vip"],"meta":{"plan":"gold","tier":2}}`)
		case "refuse":
			w.WriteHeader(403)
			io.WriteString(w, `{"reason":"banned for spam"}`)
		case "slow":
			<-r.Context().Done()
		case "hold":
			h.held <- struct{}{}
			<-r.Context().Done()
			h.released <- struct{}{}
		case "five":
			w.WriteHeader(500)
		case "bad":
			io.WriteString(w, `rooms=vip`)
		default:
			w.WriteHeader(204)
		}
	}))
	t.Cleanup(h.Close)
	return h
}

func (h *testHook) last(user string) hookCall {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i := len(h.calls) - 1; i >= 0; i-- {
		if h.calls[i].User == user {
			return h.calls[i]
		}
	}
	return hookCall{}
}

// hookNode starts a standalone node whose connect hook is url.
func hookNode(t *testing.T, url, fail string) *testNode {
	return startNode(t, "connect-hook-test-token-secret", "--connect-hook-url", url, "--connect-hook-fail", fail,
		"--connect-hook-timeout", "500ms", "--handshake-timeout", "3s", "--connect-hook-secret", hookSecret)
}

// hookDial connects user (token rooms: lobby) with protocol v2 and an extra header.
// It returns the connection (nil when refused) and the handshake answer.
func hookDial(t *testing.T, n *testNode, user string) (*websocket.Conn, *http.Response, string) {
	t.Helper()
	d := websocket.Dialer{Subprotocols: []string{"longlink.v2"}, HandshakeTimeout: 10 * time.Second}
	hdr := http.Header{"X-Trace": {"abc"}}
	ws, resp, err := d.Dial("ws://"+n.Client+"/ws?token="+testutil.Token(t, n.secret, user, "lobby"), hdr)
	if resp == nil {
		t.Fatalf("dial %s: %v", user, err)
	}
	body := ""
	if resp.Body != nil {
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
	}
	if ws != nil {
		t.Cleanup(func() { ws.Close() })
	}
	return ws, resp, body
}

func readJSON(t *testing.T, ws *websocket.Conn) map[string]any {
	t.Helper()
	ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, b, err := ws.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	return m
}

func hookOutcomes(t *testing.T, n *testNode) map[string]float64 {
	out := map[string]float64{}
	for k, v := range testutil.Metrics(t, n.API) {
		if o, ok := strings.CutPrefix(k, `longlink_connect_hook_calls_total{outcome="`); ok && v > 0 {
			out[strings.TrimSuffix(o, `"}`)] = v
		}
	}
	return out
}

// TestConnectHookAllows: the hook gets the claims, address and headers, signed; its
// rooms are joined (a push to one arrives) and its metadata is the connection's.
func TestConnectHookAllows(t *testing.T) {
	hook := newTestHook(t)
	n := hookNode(t, hook.URL, "closed")
	ws, resp, body := hookDial(t, n, "allow")
	if ws == nil {
		t.Fatalf("refused: %d %s", resp.StatusCode, body)
	}
	w := readJSON(t, ws)
	streams, _ := w["streams"].(map[string]any)
	if w["type"] != "welcome" || streams["room:vip"] == nil || streams["room:lobby"] == nil {
		t.Fatalf("welcome %v: want the hook's room vip beside the token's lobby", w)
	}
	n.push(t, `{"to":{"rooms":["vip"]},"data":"for vips"}`)
	if m := readJSON(t, ws); m["type"] != "push" || m["stream"] != "room:vip" || m["data"] != "for vips" {
		t.Fatalf("push %v", m)
	}
	st, raw := n.get(t, "/v1/users/allow")
	var u struct {
		Connections []struct {
			ID    string
			Rooms []string
			Meta  map[string]any
		}
	}
	if err := json.Unmarshal([]byte(raw), &u); st != 200 || err != nil || len(u.Connections) != 1 {
		t.Fatalf("GET /v1/users/allow: %d %s", st, raw)
	}
	if c := u.Connections[0]; c.Meta["plan"] != "gold" || c.Meta["tier"] != float64(2) || strings.Join(c.Rooms, ",") != "lobby,vip" {
		t.Fatalf("connection %+v: want meta {plan: gold, tier: 2} and rooms lobby,vip", c)
	}

	call := hook.last("allow")
	if !call.signed || call.Type != "connect" || call.Protocol != "v2" || call.Connection != u.Connections[0].ID || call.Node == "" {
		t.Fatalf("hook call %+v", call)
	}
	if call.Remote != ws.UnderlyingConn().LocalAddr().String() {
		t.Fatalf("remote %q, want the client's address %s", call.Remote, ws.UnderlyingConn().LocalAddr())
	}
	if call.Claims["sub"] != "allow" || call.Claims["exp"] == nil || call.Claims["rooms"].([]any)[0] != "lobby" {
		t.Fatalf("claims %v", call.Claims)
	}
	if call.Headers["X-Trace"][0] != "abc" || call.Headers["Sec-Websocket-Protocol"][0] != "longlink.v2" || len(call.Headers["Host"]) != 1 {
		t.Fatalf("headers %v", call.Headers)
	}
	m := testutil.Metrics(t, n.API)
	if m[`longlink_connect_hook_calls_total{outcome="allowed"}`] != 1 || m["longlink_connect_hook_duration_seconds_count"] != 1 {
		t.Fatalf("metrics: allowed %v, latency count %v", m[`longlink_connect_hook_calls_total{outcome="allowed"}`], m["longlink_connect_hook_duration_seconds_count"])
	}
}

// TestConnectHookRefuses: the hook's status and reason are the client's answer.
func TestConnectHookRefuses(t *testing.T) {
	hook := newTestHook(t)
	n := hookNode(t, hook.URL, "open")
	ws, resp, body := hookDial(t, n, "refuse")
	if ws != nil || resp.StatusCode != 403 || body != "banned for spam\n" {
		t.Fatalf("got %d %q, want 403 banned for spam", resp.StatusCode, body)
	}
	m := testutil.Metrics(t, n.API)
	if m[`longlink_connect_hook_calls_total{outcome="refused"}`] != 1 || m[`longlink_handshake_failures_total{reason="hook_refused"}`] != 1 {
		t.Fatalf("metrics %v", hookOutcomes(t, n))
	}
}

// TestConnectHookFailures: a hook that times out, answers 5xx or garbage, or cannot
// be reached: 503 with Retry-After under fail=closed, a connection without the
// hook's rooms under fail=open.
func TestConnectHookFailures(t *testing.T) {
	hook := newTestHook(t)
	dead := "http://" + testutil.FreeAddr(t, "tcp") + "/hook"
	closed := hookNode(t, hook.URL, "closed")
	open := hookNode(t, hook.URL, "open")
	deadClosed := hookNode(t, dead, "closed")
	deadOpen := hookNode(t, dead, "open")
	for _, tc := range []struct {
		user, outcome string
		closed, open  *testNode
	}{
		{"slow", "timeout", closed, open},
		{"five", "server_error", closed, open},
		{"bad", "malformed", closed, open},
		{"anyone", "unreachable", deadClosed, deadOpen},
	} {
		start := time.Now()
		ws, resp, body := hookDial(t, tc.closed, tc.user)
		if ws != nil || resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "1" || body != "connect hook unavailable\n" {
			t.Fatalf("%s, fail=closed: got %d %q (Retry-After %q), want 503", tc.outcome, resp.StatusCode, body, resp.Header.Get("Retry-After"))
		}
		if tc.outcome == "timeout" && time.Since(start) < 500*time.Millisecond {
			t.Fatalf("timeout answered after %v, before --connect-hook-timeout", time.Since(start))
		}
		ws, resp, body = hookDial(t, tc.open, tc.user)
		if ws == nil {
			t.Fatalf("%s, fail=open: refused %d %q", tc.outcome, resp.StatusCode, body)
		}
		w := readJSON(t, ws)
		streams, _ := w["streams"].(map[string]any)
		if streams["room:lobby"] == nil || streams["room:vip"] != nil {
			t.Fatalf("%s, fail=open: welcome %v: want the token's rooms only", tc.outcome, w)
		}
		ws.Close()
		for _, n := range []*testNode{tc.closed, tc.open} {
			if o := hookOutcomes(t, n); o[tc.outcome] < 1 {
				t.Fatalf("%s: outcomes %v", tc.outcome, o)
			}
		}
	}
	if v := testutil.Metrics(t, closed.API)[`longlink_handshake_failures_total{reason="hook_failed"}`]; v != 3 {
		t.Fatalf("hook_failed = %v, want 3", v)
	}
}

// TestConnectHookClientLeaves: a client that goes away while its hook call is
// pending ends the call; nothing is left (connections, handshakes, calls in flight).
func TestConnectHookClientLeaves(t *testing.T) {
	hook := newTestHook(t)
	n := startNode(t, "connect-hook-test-token-secret", "--connect-hook-url", hook.URL, "--connect-hook-timeout", "5s",
		"--handshake-timeout", "8s")
	nc, err := net.Dial("tcp", n.Client)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	req := "GET /ws?token=" + testutil.Token(t, n.secret, "hold") + " HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n" +
		"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
	if _, err := nc.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-hook.held:
	case <-time.After(10 * time.Second):
		t.Fatal("the hook was not called")
	}
	m := testutil.Metrics(t, n.API)
	if m["longlink_connect_hook_inflight"] != 1 || m["longlink_handshaking_connections"] != 1 || m["longlink_connections"] != 0 {
		t.Fatalf("while waiting: inflight %v handshaking %v connections %v", m["longlink_connect_hook_inflight"], m["longlink_handshaking_connections"], m["longlink_connections"])
	}
	start := time.Now()
	nc.Close()
	select {
	case <-hook.released:
	case <-time.After(10 * time.Second):
		t.Fatal("the node did not abandon the hook call when its client left")
	}
	if el := time.Since(start); el > 4*time.Second {
		t.Fatalf("abandoned after %v: by the hook timeout, not the close", el)
	}
	testutil.WaitFor(t, 10*time.Second, "nothing left", func() bool {
		m := testutil.Metrics(t, n.API)
		return m["longlink_connect_hook_inflight"] == 0 && m["longlink_handshaking_connections"] == 0 &&
			m["longlink_connections"] == 0 && m["longlink_users"] == 0 && m[`longlink_connect_hook_calls_total{outcome="canceled"}`] == 1
	})
}

// TestConnectHookFlags: a hook timeout that is not shorter than the handshake
// timeout, or a bad policy, is refused at start.
func TestConnectHookFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--connect-hook-url", "http://127.0.0.1:1/", "--connect-hook-timeout", "10s"}, "must be shorter than --handshake-timeout"},
		{[]string{"--connect-hook-url", "http://127.0.0.1:1/", "--connect-hook-fail", "maybe"}, "--connect-hook-fail"},
		{[]string{"--connect-hook-url", "127.0.0.1:1"}, "--connect-hook-url"},
	} {
		_, err := testutil.TryStartNode(t, nil, append([]string{"--client-addr", "127.0.0.1:0", "--api-addr", "127.0.0.1:0"}, tc.args...)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("%v: %v, want an error naming %q", tc.args, err, tc.want)
		}
	}
}
