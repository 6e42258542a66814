package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"longlink/internal/testutil"
	"longlink/stream"
	"longlink/webhook"
)

const webhookSecret = "webhook-test-secret-0123456789"

// hookReceiver is a webhook back-end: it checks every POST's signature, records
// the events in arrival order and counts an id seen twice. It can fail (503) or
// stall on demand.
type hookReceiver struct {
	srv *httptest.Server

	mu      sync.Mutex
	events  []webhook.Event
	ids     map[string]int
	posts   int // accepted POSTs
	badSig  int
	failing bool
	failed  int
	stall   chan struct{} // non-nil: requests wait for it to close
}

func newHookReceiver(t *testing.T) *hookReceiver {
	r := &hookReceiver{ids: map[string]int{}}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(func() {
		r.mu.Lock()
		if r.stall != nil {
			close(r.stall)
			r.stall = nil
		}
		r.mu.Unlock()
		r.srv.Close()
	})
	return r
}

func (r *hookReceiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	stall := r.stall
	r.mu.Unlock()
	if stall != nil {
		<-stall
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if req.Method != "POST" || req.Header.Get("Content-Type") != "application/json" ||
		req.Header.Get(webhook.HeaderSignature) != webhook.Sign([]byte(webhookSecret), body) ||
		req.Header.Get(webhook.HeaderDelivery) == "" || req.Header.Get(webhook.HeaderTimestamp) == "" {
		r.badSig++
		http.Error(w, "bad signature", 401)
		return
	}
	if r.failing {
		r.failed++
		http.Error(w, "down", 503)
		return
	}
	var b struct {
		Delivery string          `json:"delivery"`
		Events   []webhook.Event `json:"events"`
	}
	if err := json.Unmarshal(body, &b); err != nil || len(b.Events) == 0 {
		r.badSig++
		http.Error(w, "bad body", 400)
		return
	}
	r.posts++
	for _, e := range b.Events {
		r.ids[e.ID]++
		r.events = append(r.events, e)
	}
	w.WriteHeader(204)
}

func (r *hookReceiver) snapshot() []webhook.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]webhook.Event(nil), r.events...)
}

// find returns the events matching typ and, when given, user or connection.
func (r *hookReceiver) find(typ, user, conn string) []webhook.Event {
	var out []webhook.Event
	for _, e := range r.snapshot() {
		if e.Type == typ && (user == "" || e.User == user) && (conn == "" || e.Connection == conn) {
			out = append(out, e)
		}
	}
	return out
}

func (r *hookReceiver) waitFor(t *testing.T, n int, typ, user, conn string) []webhook.Event {
	t.Helper()
	testutil.WaitFor(t, 20*time.Second, fmt.Sprintf("%d %s events (user %q, connection %q)", n, typ, user, conn), func() bool {
		return len(r.find(typ, user, conn)) >= n
	})
	return r.find(typ, user, conn)
}

// checkClean fails t if a POST had a bad signature or an event arrived twice.
func (r *hookReceiver) checkClean(t *testing.T) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.badSig > 0 {
		t.Errorf("%d POSTs failed the signature or format check", r.badSig)
	}
	for id, n := range r.ids {
		if n > 1 {
			t.Errorf("event %s arrived %d times", id, n)
		}
	}
}

func hookFlags(r *hookReceiver, extra ...string) []string {
	return append([]string{"--webhook-url", r.srv.URL + "/hooks?tenant=1", "--webhook-secret", webhookSecret,
		"--webhook-batch-delay", "100ms"}, extra...)
}

// connID reads the connection id from the v1 welcome... v1 clients get none, so it
// is taken from the event instead; dialHook returns the client and its opened event.
func dialHook(t *testing.T, n *testNode, r *hookReceiver, user string) (*websocket.Conn, webhook.Event) {
	t.Helper()
	before := len(r.find(webhook.ConnectionOpened, user, ""))
	ws := n.dial(t, user)
	evs := r.waitFor(t, before+1, webhook.ConnectionOpened, user, "")
	return ws, evs[len(evs)-1]
}

func TestWebhookConnectionEvents(t *testing.T) {
	r := newHookReceiver(t)
	n := startBinary(t, hookFlags(r, "--node-name", "h1", "--log-level", "warn")...)

	ws, op := dialHook(t, n, r, "alice")
	if op.Node != "h1" || !strings.HasPrefix(op.Connection, "h1.") || !strings.HasPrefix(op.Remote, "127.0.0.1:") ||
		op.ID == "" || op.Time.IsZero() || time.Since(op.Time) > time.Minute {
		t.Errorf("connection.opened: %+v", op)
	}
	// The client closes with its own code and reason.
	ws.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(4100, "bye now"))
	cl := r.waitFor(t, 1, webhook.ConnectionClosed, "alice", op.Connection)[0]
	if cl.Code != 4100 || cl.Reason != "bye now" || cl.Node != "h1" || cl.Reporter != "" {
		t.Errorf("client close: %+v", cl)
	}

	// The server closes (a kick): its code and reason.
	_, op2 := dialHook(t, n, r, "bob")
	if st, body := n.del(t, "/v1/connections/"+op2.Connection+"?reason=enough"); st != 200 {
		t.Fatalf("kick: %d %s", st, body)
	}
	cl = r.waitFor(t, 1, webhook.ConnectionClosed, "bob", op2.Connection)[0]
	if cl.Code != 4001 || cl.Reason == "" {
		t.Errorf("kicked: %+v", cl)
	}

	// TCP ends without a close frame: 1006.
	ws3, op3 := dialHook(t, n, r, "carol")
	ws3.NetConn().Close()
	cl = r.waitFor(t, 1, webhook.ConnectionClosed, "carol", op3.Connection)[0]
	if cl.Code != 1006 {
		t.Errorf("dropped TCP: %+v", cl)
	}

	// Batching: ten connections opened together arrive in fewer POSTs.
	r.mu.Lock()
	postsBefore := r.posts
	r.mu.Unlock()
	for i := range 10 {
		n.dial(t, fmt.Sprintf("batch%d", i))
	}
	testutil.WaitFor(t, 10*time.Second, "ten opened", func() bool {
		k := 0
		for _, e := range r.find(webhook.ConnectionOpened, "", "") {
			if strings.HasPrefix(e.User, "batch") {
				k++
			}
		}
		return k == 10
	})
	r.mu.Lock()
	posts := r.posts - postsBefore
	r.mu.Unlock()
	if posts >= 10 {
		t.Errorf("10 connection.opened came in %d POSTs: not batched", posts)
	}
	r.checkClean(t)
	// The receiver holds a batch before the sender has read its 200 and counted it:
	// wait for the counters too.
	var m map[string]float64
	ok := false
	testutil.WaitFor(t, 10*time.Second, "the deliveries counted", func() bool {
		m = testutil.Metrics(t, n.API)
		ok = m[`longlink_webhook_events_total{event="connection.opened",outcome="delivered"}`] >= 13 &&
			m[`longlink_webhook_requests_total{receiver="0",class="2xx"}`] >= 1 &&
			m[`longlink_webhook_request_duration_seconds_count{receiver="0"}`] >= 1
		return ok
	})
	if !ok {
		t.Errorf("webhook metrics: %v", pick(m, "longlink_webhook_"))
	}
}

func pick(m map[string]float64, prefix string) map[string]float64 {
	out := map[string]float64{}
	for k, v := range m {
		if strings.HasPrefix(k, prefix) {
			out[k] = v
		}
	}
	return out
}

// del sends an authenticated DELETE to the API.
func (n *testNode) del(t *testing.T, path string) (int, string) {
	t.Helper()
	resp := testutil.Do(t, "DELETE", "http://"+n.API+path, "", testutil.Bearer(n.apiKey)...)
	return resp.Status, resp.Raw
}

func TestWebhookRetriedAfterOutage(t *testing.T) {
	r := newHookReceiver(t)
	r.failing = true
	n := startBinary(t, hookFlags(r, "--log-level", "error", "--webhook-batch", "3", "--webhook-max-backoff", "1s")...)
	var conns []*websocket.Conn
	for i := range 12 {
		conns = append(conns, n.dial(t, fmt.Sprintf("o%d", i)))
	}
	testutil.WaitFor(t, 20*time.Second, "the receiver refused a few attempts", func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return r.failed >= 4
	})
	for _, c := range conns[:6] {
		c.Close()
	}
	r.mu.Lock()
	r.failing = false
	r.mu.Unlock()
	testutil.WaitFor(t, 30*time.Second, "every event after the outage", func() bool {
		return len(r.find(webhook.ConnectionOpened, "", "")) == 12 && len(r.find(webhook.ConnectionClosed, "", "")) == 6 &&
			len(r.find(webhook.UserOnline, "", "")) == 12
	})
	r.checkClean(t)
	// Per receiver, order is kept: each connection's opened comes before its closed.
	seen := map[string]bool{}
	for _, e := range r.snapshot() {
		switch e.Type {
		case webhook.ConnectionOpened:
			seen[e.Connection] = true
		case webhook.ConnectionClosed:
			if !seen[e.Connection] {
				t.Errorf("closed before opened: %+v", e)
			}
		}
	}
	if m := testutil.Metrics(t, n.API); m[`longlink_webhook_retries_total{receiver="0"}`] < 3 ||
		m[`longlink_webhook_requests_total{receiver="0",class="5xx"}`] < 4 {
		t.Errorf("retry metrics: %v", pick(m, "longlink_webhook_"))
	}
}

func TestWebhookOverflowCounted(t *testing.T) {
	r := newHookReceiver(t)
	r.stall = make(chan struct{})
	n := startBinary(t, hookFlags(r, "--log-level", "error", "--webhook-queue", "2", "--webhook-batch", "1",
		"--webhook-events", "connection.opened")...)
	for i := range 10 {
		n.dial(t, fmt.Sprintf("q%d", i))
	}
	var m map[string]float64
	testutil.WaitFor(t, 10*time.Second, "overflow counted", func() bool {
		m = testutil.Metrics(t, n.API)
		return m[`longlink_webhook_events_total{event="connection.opened",outcome="dropped_overflow"}`] >= 7
	})
	if q := m[`longlink_webhook_queue_length{receiver="0"}`]; q != 3 {
		t.Errorf("queue length %v, want 3 (2 queued, 1 in flight)", q)
	}
	if c := m["longlink_webhook_queue_capacity"]; c != 2 {
		t.Errorf("longlink_webhook_queue_capacity %v, want 2", c)
	}
	if m[`longlink_webhook_events_total{event="user.online",outcome="dropped_overflow"}`] != 0 {
		t.Error("an event not selected by --webhook-events was queued")
	}
}

func TestWebhookPresenceGrace(t *testing.T) {
	r := newHookReceiver(t)
	n := startBinary(t, hookFlags(r, "--log-level", "warn", "--presence-grace", "1s")...)
	ws, _ := dialHook(t, n, r, "dora")
	r.waitFor(t, 1, webhook.UserOnline, "dora", "")
	if o := testutil.Metrics(t, n.API)["longlink_presence_owned_users"]; o != 1 {
		t.Errorf("longlink_presence_owned_users %v with one user online", o)
	}
	// A reconnect within the grace: no offline, no second online.
	ws.Close()
	r.waitFor(t, 1, webhook.ConnectionClosed, "dora", "")
	ws2, _ := dialHook(t, n, r, "dora")
	time.Sleep(2 * time.Second) // past the grace: nothing may have been sent
	if on, off := r.find(webhook.UserOnline, "dora", ""), r.find(webhook.UserOffline, "dora", ""); len(on) != 1 || len(off) != 0 {
		t.Fatalf("reconnect within the grace: %d online, %d offline, want 1 and 0", len(on), len(off))
	}
	closed := time.Now()
	ws2.Close()
	off := r.waitFor(t, 1, webhook.UserOffline, "dora", "")
	if got := time.Since(closed); got < time.Second {
		t.Errorf("user.offline after %v, before the grace of 1s", got)
	}
	if off[0].Reporter == "" {
		t.Errorf("user.offline without a reporter: %+v", off[0])
	}
	r.checkClean(t)
}

// TestWebhookKilledNode: users whose only connection is on n3, one whose stream
// user:<id> n3 owns and one owned by a survivor. n3 is killed with SIGKILL: each
// connection gets exactly one connection.closed (1006) and each user exactly one
// user.offline, from the survivors. Before that, a reconnect to another node within
// the grace is neither an offline nor a second online.
func TestWebhookKilledNode(t *testing.T) {
	r := newHookReceiver(t)
	nodes := startCluster(t, 3, hookFlags(r, "--presence-grace", "1500ms")...)
	ring := stream.NewRing([]string{"n1", "n2", "n3"})
	var ownedByVictim, ownedBySurvivor string
	for i := 0; ownedByVictim == "" || ownedBySurvivor == ""; i++ {
		u := fmt.Sprintf("k%d", i)
		if ring.Owner("user:"+u) == "n3" {
			if ownedByVictim == "" {
				ownedByVictim = u
			}
		} else if ownedBySurvivor == "" {
			ownedBySurvivor = u
		}
	}

	// Reconnect to another node within the grace.
	ws, _ := dialHook(t, nodes[0], r, "roamer")
	r.waitFor(t, 1, webhook.UserOnline, "roamer", "")
	ws.Close()
	dialHook(t, nodes[1], r, "roamer")
	time.Sleep(2500 * time.Millisecond)
	if on, off := r.find(webhook.UserOnline, "roamer", ""), r.find(webhook.UserOffline, "roamer", ""); len(on) != 1 || len(off) != 0 {
		t.Fatalf("reconnect to another node within the grace: %d online, %d offline, want 1 and 0", len(on), len(off))
	}

	victim := nodes[2]
	var opened []webhook.Event
	for _, u := range []string{ownedByVictim, ownedBySurvivor} {
		_, op := dialHook(t, victim, r, u)
		opened = append(opened, op)
		r.waitFor(t, 1, webhook.UserOnline, u, "")
	}
	testutil.WaitFor(t, 10*time.Second, "the survivors watch n3's connections", func() bool {
		sum := 0.0
		for _, n := range nodes[:2] {
			sum += testutil.Metrics(t, n.API)["longlink_presence_watched_connections"]
		}
		return sum == 2
	})
	victim.Cmd.Process.Signal(syscall.SIGKILL)
	for i, u := range []string{ownedByVictim, ownedBySurvivor} {
		cl := r.waitFor(t, 1, webhook.ConnectionClosed, u, opened[i].Connection)[0]
		if cl.Code != 1006 || cl.Node != "n3" || (cl.Reporter != "n1" && cl.Reporter != "n2") || !strings.Contains(cl.Reason, "n3") {
			t.Errorf("connection.closed of a killed node's connection: %+v", cl)
		}
		off := r.waitFor(t, 1, webhook.UserOffline, u, "")[0]
		if off.Reporter != "n1" && off.Reporter != "n2" {
			t.Errorf("user.offline of %s from %q", u, off.Reporter)
		}
	}
	time.Sleep(3 * time.Second) // time for a duplicate to show up
	for i, u := range []string{ownedByVictim, ownedBySurvivor} {
		if cl, off := r.find(webhook.ConnectionClosed, u, opened[i].Connection), r.find(webhook.UserOffline, u, ""); len(cl) != 1 || len(off) != 1 {
			t.Errorf("user %s: %d connection.closed and %d user.offline, want one each", u, len(cl), len(off))
		}
	}
	dead := 0.0
	for _, n := range nodes[:2] {
		dead += testutil.Metrics(t, n.API)["longlink_presence_dead_node_connections_total"]
	}
	if dead != 2 {
		t.Errorf("longlink_presence_dead_node_connections_total on the survivors: %v, want 2", dead)
	}
	if on := r.find(webhook.UserOnline, "roamer", ""); len(on) != 1 || len(r.find(webhook.UserOffline, "roamer", "")) != 0 {
		t.Errorf("roamer, connected to a survivor, changed state when n3 died: %d online", len(on))
	}
	r.checkClean(t)
}

// TestWebhookFrozenNode: n3 is stopped (SIGSTOP) until the others declare it dead,
// then continued. Its plain (v1) client stays open: it is reported closed (1006) by
// a survivor, then opened again ("resumed") when n3 is back, and its user is offline
// and then online again — the receiver's view ends consistent with the truth.
func TestWebhookFrozenNode(t *testing.T) {
	r := newHookReceiver(t)
	nodes := startCluster(t, 3, hookFlags(r, "--presence-grace", "1s")...)
	frozen := nodes[2]
	_, op := dialHook(t, frozen, r, "ice")
	r.waitFor(t, 1, webhook.UserOnline, "ice", "")
	testutil.WaitFor(t, 10*time.Second, "the survivors watch n3's connection", func() bool {
		sum := 0.0
		for _, n := range nodes[:2] {
			sum += testutil.Metrics(t, n.API)["longlink_presence_watched_connections"]
		}
		return sum == 1
	})
	frozen.Cmd.Process.Signal(syscall.SIGSTOP)
	r.waitFor(t, 1, webhook.ConnectionClosed, "ice", op.Connection)
	r.waitFor(t, 1, webhook.UserOffline, "ice", "")
	frozen.Cmd.Process.Signal(syscall.SIGCONT)
	evs := r.waitFor(t, 2, webhook.ConnectionOpened, "ice", op.Connection)
	if !strings.Contains(evs[1].Reason, "resumed") || evs[1].Reporter == "" {
		t.Errorf("connection.opened after the freeze: %+v", evs[1])
	}
	r.waitFor(t, 2, webhook.UserOnline, "ice", "")
	r.checkClean(t)
}
