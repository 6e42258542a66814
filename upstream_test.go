package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"longlink/auth"
	"longlink/internal/testutil"
	"longlink/stream"
	"longlink/upstream"
)

// Upstream messages and self-subscribed rooms (docs/protocol.md, "Client
// messages"), through the real binary with real HTTP back-ends on loopback.

// upClient is a v2 client that sends requests and collects everything it receives.
type upClient struct {
	t       *testing.T
	ws      *websocket.Conn
	welcome map[string]any
	wmu     sync.Mutex // gorilla allows one writer at a time

	mu   sync.Mutex
	msgs []upMsg
	err  error
}

type upMsg struct {
	m   map[string]any
	raw string
	at  time.Time
}

// dialUp connects a v2 client with token to addr and reads its welcome.
func dialUp(t *testing.T, addr, token string) *upClient {
	t.Helper()
	d := websocket.Dialer{Subprotocols: []string{"longlink.v2"}, HandshakeTimeout: 10 * time.Second}
	ws, _, err := d.Dial("ws://"+addr+"/ws?token="+token, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	c := &upClient{t: t, ws: ws}
	ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, b, err := ws.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	ws.SetReadDeadline(time.Time{})
	json.Unmarshal(b, &c.welcome)
	if c.welcome["type"] != "welcome" {
		t.Fatalf("first message %s, want a welcome", b)
	}
	go func() {
		for {
			_, b, err := ws.ReadMessage()
			c.mu.Lock()
			if err != nil {
				c.err = err
				c.mu.Unlock()
				return
			}
			var m map[string]any
			json.Unmarshal(b, &m)
			c.msgs = append(c.msgs, upMsg{m, string(b), time.Now()})
			c.mu.Unlock()
		}
	}()
	return c
}

func (c *upClient) connID() string { return c.welcome["connection"].(string) }

func (c *upClient) send(msg string) {
	c.t.Helper()
	c.wmu.Lock()
	err := c.ws.WriteMessage(websocket.TextMessage, []byte(msg))
	c.wmu.Unlock()
	if err != nil {
		c.t.Fatal(err)
	}
}

// await returns the first message received that match accepts, waiting up to d.
func (c *upClient) await(d time.Duration, what string, match func(m map[string]any) bool) upMsg {
	c.t.Helper()
	var got upMsg
	testutil.WaitFor(c.t, d, what, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, m := range c.msgs {
			if match(m.m) {
				got = m
				return true
			}
		}
		return false
	})
	return got
}

// reply waits for the reply to request id (a number).
func (c *upClient) reply(id int) upMsg {
	c.t.Helper()
	return c.await(10*time.Second, fmt.Sprintf("reply %d", id), func(m map[string]any) bool {
		return m["type"] == "reply" && m["id"] == float64(id)
	})
}

// ask sends msg and waits for the reply to its id.
func (c *upClient) ask(id int, msg string) upMsg {
	c.t.Helper()
	c.send(msg)
	return c.reply(id)
}

func (c *upClient) count(match func(m map[string]any) bool) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, m := range c.msgs {
		if match(m.m) {
			n++
		}
	}
	return n
}

func status(m upMsg) int {
	f, _ := m.m["status"].(float64)
	return int(f)
}

func expectReply(t *testing.T, m upMsg, st int, reason string) {
	t.Helper()
	if status(m) != st || !strings.Contains(fmt.Sprint(m.m["reason"]), reason) {
		t.Fatalf("reply %s: want status %d with a reason saying %q", m.raw, st, reason)
	}
}

// backendRequest is what a test back-end received.
type backendRequest struct {
	Header http.Header
	Raw    []byte
	Body   struct {
		Business, User, Connection, Node, Room string
		ID                                     json.RawMessage
		Meta                                   json.RawMessage
		Data                                   json.RawMessage
	}
}

// echoBackend answers each request by its data's "do": echo (200 with the whole
// request body), status (that status, with a JSON body), notjson, big.
func echoBackend(t *testing.T, seen chan<- backendRequest) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var br backendRequest
		br.Header = r.Header.Clone()
		br.Raw, _ = io.ReadAll(r.Body)
		json.Unmarshal(br.Raw, &br.Body)
		if seen != nil {
			select {
			case seen <- br:
			default:
			}
		}
		var d struct {
			Do     string
			Status int
		}
		json.Unmarshal(br.Body.Data, &d)
		switch d.Do {
		case "status":
			w.WriteHeader(d.Status)
			w.Write([]byte(`{"why":"the back-end says no"}`))
		case "statustext":
			w.WriteHeader(d.Status)
			w.Write([]byte("Internal Server Error"))
		case "notjson":
			w.Write([]byte("<html>oops</html>"))
		case "big":
			w.Write([]byte(`"` + strings.Repeat("x", 5000) + `"`))
		default:
			w.Header().Set("Content-Type", "application/json")
			w.Write(br.Raw)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

func deadURL(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := "http://" + ln.Addr().String() + "/nobody"
	ln.Close()
	return u
}

func TestUpstreamRoundTrips(t *testing.T) {
	seen := make(chan backendRequest, 16)
	chat := echoBackend(t, seen)
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(slow.Close)
	t.Cleanup(func() { close(release) })
	n := startBinary(t, "--node-name", "n1",
		"--business", "chat="+chat.URL+"/chat,secret=chat-secret,max-reply=4096",
		"--business", "slow="+slow.URL+",timeout=300ms",
		"--business", "gone="+deadURL(t))
	c := dialUp(t, n.Client, testutil.Token(t, n.secret, "42"))

	// A round trip: the back-end gets who and what, signed; the client gets its data.
	r := c.ask(1, `{"type":"send","id":1,"business":"chat","data":{"do":"echo","n":[1,2]}}`)
	if status(r) != 200 {
		t.Fatalf("round trip: %s", r.raw)
	}
	br := <-seen
	if br.Body.Business != "chat" || br.Body.User != "42" || br.Body.Connection != c.connID() || br.Body.Node != "n1" ||
		string(br.Body.ID) != "1" || string(br.Body.Data) != `{"do":"echo","n":[1,2]}` || string(br.Body.Meta) != "null" {
		t.Fatalf("back-end got %s", br.Raw)
	}
	if got := br.Header.Get("X-Longlink-Signature"); got != upstream.Sign("chat-secret", br.Header.Get("X-Longlink-Timestamp"), br.Raw) {
		t.Fatalf("signature %q does not verify", got)
	}
	if data, _ := json.Marshal(r.m["data"]); !strings.Contains(string(data), `"data":{"do":"echo","n":[1,2]}`) {
		t.Fatalf("reply data %s is not the back-end's answer", data)
	}
	// A string id is echoed as sent.
	c.send(`{"type":"send","id":"req-a","business":"chat","data":{"do":"echo"}}`)
	c.await(5*time.Second, "reply req-a", func(m map[string]any) bool {
		return m["type"] == "reply" && m["id"] == "req-a" && m["status"] == float64(200)
	})
	<-seen

	expectReply(t, c.ask(2, `{"type":"send","id":2,"business":"chat","data":{"do":"status","status":409}}`), 502, "answered 409")
	expectReply(t, c.ask(3, `{"type":"send","id":3,"business":"chat","data":{"do":"status","status":500}}`), 502, "answered 500")
	// A refusal whose body is not JSON: the reply is still JSON, without data.
	if r := c.ask(10, `{"type":"send","id":10,"business":"chat","data":{"do":"statustext","status":500}}`); status(r) != 502 || r.m["data"] != nil {
		t.Fatalf("a non-JSON refusal: %s", r.raw)
	}
	expectReply(t, c.ask(4, `{"type":"send","id":4,"business":"chat","data":{"do":"notjson"}}`), 502, "not JSON")
	expectReply(t, c.ask(5, `{"type":"send","id":5,"business":"chat","data":{"do":"big"}}`), 502, "larger than 4096")
	expectReply(t, c.ask(6, `{"type":"send","id":6,"business":"slow","data":1}`), 504, "within 300ms")
	expectReply(t, c.ask(7, `{"type":"send","id":7,"business":"gone","data":1}`), 502, "unreachable")
	expectReply(t, c.ask(8, `{"type":"send","id":8,"business":"nope","data":1}`), 404, `unknown business "nope"`)
	expectReply(t, c.ask(9, `{"type":"send","id":9,"data":1}`), 400, "business")
	// No id: nothing to match a reply to, so an error.
	c.send(`{"type":"send","business":"chat","data":1}`)
	e := c.await(5*time.Second, "error for a send without id", func(m map[string]any) bool { return m["type"] == "error" })
	expectReply(t, e, 400, "needs an id")
	if data, _ := json.Marshal(c.reply(2).m["data"]); string(data) != `{"why":"the back-end says no"}` {
		t.Fatalf("an error status's JSON body is the reply's data: %s", data)
	}

	m := testutil.Metrics(t, n.API)
	for k, want := range map[string]float64{
		`longlink_upstream_requests_total{business="chat"}`:                      7,
		`longlink_upstream_replies_total{business="chat",status="200"}`:          2,
		`longlink_upstream_replies_total{business="chat",status="502"}`:          5,
		`longlink_upstream_replies_total{business="slow",status="504"}`:          1,
		`longlink_upstream_rejected_total{business="gone",reason="unreachable"}`: 1,
		`longlink_upstream_rejected_total{business="slow",reason="timeout"}`:     1,
		`longlink_upstream_unknown_business_total`:                               1,
		`longlink_upstream_duration_seconds_count{business="chat"}`:              7,
		`longlink_upstream_inflight{business="slow"}`:                            0,
	} {
		if m[k] != want {
			t.Errorf("%s = %v, want %v", k, m[k], want)
		}
	}
}

// A business's full in-flight bound answers 503 at once; the client's rate limit
// and a business's own answer 429. Every request gets its answer.
func TestUpstreamLimits(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	free := func() { once.Do(func() { close(release) }) }
	block := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
			w.Write([]byte(`"done"`))
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(block.Close)
	t.Cleanup(free)
	chat := echoBackend(t, nil)
	n := startBinary(t, "--client-rate", "5", "--client-burst", "5",
		"--business", "block="+block.URL+",inflight=2,timeout=20s",
		"--business", "chat="+chat.URL+",rate=1,burst=2")
	tok := testutil.Token(t, n.secret, "7")

	a := dialUp(t, n.Client, tok)
	a.send(`{"type":"send","id":1,"business":"block","data":1}`)
	a.send(`{"type":"send","id":2,"business":"block","data":2}`)
	testutil.WaitFor(t, 5*time.Second, "two requests in flight", func() bool {
		return testutil.Metrics(t, n.API)[`longlink_upstream_inflight{business="block"}`] == 2
	})
	start := time.Now()
	expectReply(t, a.ask(3, `{"type":"send","id":3,"business":"block","data":3}`), 503, "in flight")
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("the 503 took %v: a full bound must answer at once", d)
	}
	free()
	for id := 1; id <= 2; id++ {
		if r := a.reply(id); status(r) != 200 || r.m["data"] != "done" {
			t.Fatalf("request %d after release: %s", id, r.raw)
		}
	}

	// The business's own rate (1/s, burst 2) on a fresh connection.
	b := dialUp(t, n.Client, tok)
	for id := 1; id <= 2; id++ {
		if r := b.ask(id, fmt.Sprintf(`{"type":"send","id":%d,"business":"chat","data":{}}`, id)); status(r) != 200 {
			t.Fatalf("within the business's burst: %s", r.raw)
		}
	}
	expectReply(t, b.ask(3, `{"type":"send","id":3,"business":"chat","data":{}}`), 429, "business chat")

	// The client's rate (5/s, burst 5) on another: 12 at once, the same for
	// subscribes and sends, each answered, the excess with 429.
	c := dialUp(t, n.Client, tok)
	for id := 1; id <= 12; id++ {
		if id%2 == 0 {
			c.send(fmt.Sprintf(`{"type":"subscribe","id":%d,"room":"lobby-%d"}`, id, id))
		} else {
			c.send(fmt.Sprintf(`{"type":"send","id":%d,"business":"nope","data":1}`, id))
		}
	}
	limited := 0
	for id := 1; id <= 12; id++ {
		r := c.reply(id)
		if status(r) == 429 {
			limited++
			expectReply(t, r, 429, "this connection's limit of 5 requests a second")
		}
	}
	if limited < 5 {
		t.Fatalf("%d of 12 requests at once were over a burst of 5, want at least 5", limited)
	}
	m := testutil.Metrics(t, n.API)
	if m[`longlink_upstream_rejected_total{business="block",reason="inflight"}`] != 1 ||
		m[`longlink_upstream_rejected_total{business="chat",reason="rate"}`] != 1 ||
		m[`longlink_client_rate_limited_total{type="send"}`]+m[`longlink_client_rate_limited_total{type="subscribe"}`] != float64(limited) {
		t.Fatalf("metrics: inflight %v, rate %v, client %v+%v", m[`longlink_upstream_rejected_total{business="block",reason="inflight"}`],
			m[`longlink_upstream_rejected_total{business="chat",reason="rate"}`],
			m[`longlink_client_rate_limited_total{type="send"}`], m[`longlink_client_rate_limited_total{type="subscribe"}`])
	}
}

// One business's back-end stalls until the test ends: its slots and pool fill, and
// requests to another business, from the same connections, keep answering promptly.
// Both back-ends are one server (paths /slow and /fast), so a pool shared per host
// would show.
func TestUpstreamStalledBusinessDoesNotDelayAnother(t *testing.T) {
	stop := make(chan struct{})
	echo := echoBackend(t, nil)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/fast" {
			echo.Config.Handler.ServeHTTP(w, r)
			return
		}
		select {
		case <-stop:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(stop) })
	const slowInflight, timeout = 32, 8 * time.Second
	n := startBinary(t, "--client-rate", "-1",
		"--business", fmt.Sprintf("slow=%s/slow,inflight=%d,pool=8,timeout=%s", srv.URL, slowInflight, timeout),
		"--business", "fast="+srv.URL+"/fast,inflight=64,pool=8")
	const conns, perConn = 4, 50
	clients := make([]*upClient, conns)
	for i := range clients {
		clients[i] = dialUp(t, n.Client, testutil.Token(t, n.secret, fmt.Sprintf("u%d", i)))
	}
	// Fill the slow business: more than its slots, from every connection.
	for i, c := range clients {
		for j := range slowInflight/conns + 4 {
			c.send(fmt.Sprintf(`{"type":"send","id":%d,"business":"slow","data":%d}`, 10000+j, i))
		}
	}
	testutil.WaitFor(t, 5*time.Second, "the slow business full", func() bool {
		return testutil.Metrics(t, n.API)[`longlink_upstream_inflight{business="slow"}`] == slowInflight
	})
	start := time.Now()
	var worst time.Duration
	for j := range perConn {
		for _, c := range clients {
			sent := time.Now()
			r := c.ask(j, fmt.Sprintf(`{"type":"send","id":%d,"business":"fast","data":{"do":"echo"}}`, j))
			if status(r) != 200 {
				t.Fatalf("fast request %d: %s", j, r.raw)
			}
			worst = max(worst, r.at.Sub(sent))
		}
	}
	elapsed := time.Since(start)
	t.Logf("%d fast requests answered in %v (slowest %v) while slow held %d", conns*perConn, elapsed, worst, slowInflight)
	if elapsed >= timeout {
		t.Fatalf("the fast requests took %v, past the slow business's timeout: they waited for it", elapsed)
	}
	if worst > 2*time.Second {
		t.Fatalf("a fast request took %v while the slow business stalled", worst)
	}
	// The slow business's overflow was refused at once; the rest time out, all answered.
	for _, c := range clients {
		for j := range slowInflight/conns + 4 {
			r := c.await(timeout+10*time.Second, "slow reply", func(m map[string]any) bool {
				return m["type"] == "reply" && m["id"] == float64(10000+j)
			})
			if st := status(r); st != 503 && st != 504 {
				t.Fatalf("slow request: %s", r.raw)
			}
		}
	}
	m := testutil.Metrics(t, n.API)
	if m[`longlink_upstream_rejected_total{business="slow",reason="inflight"}`] != 16 || m[`longlink_upstream_rejected_total{business="slow",reason="timeout"}`] != slowInflight {
		t.Fatalf("slow: %v refused, %v timed out; want 16 and %d", m[`longlink_upstream_rejected_total{business="slow",reason="inflight"}`],
			m[`longlink_upstream_rejected_total{business="slow",reason="timeout"}`], slowInflight)
	}
}

// subscribeToken mints a v2 token with rooms and subscribe claims.
func subscribeToken(t *testing.T, secret, user string, rooms, subscribe []string) string {
	tok, err := auth.MintClaims([]byte(secret), auth.Claims{User: user, Rooms: rooms, Subscribe: subscribe}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// hookBackend allows chat/open* and refuses the rest with 403 and a reason.
func hookBackend(t *testing.T, seen chan<- backendRequest) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var br backendRequest
		br.Header = r.Header.Clone()
		br.Raw, _ = io.ReadAll(r.Body)
		json.Unmarshal(br.Raw, &br.Body)
		select {
		case seen <- br:
		default:
		}
		if strings.HasPrefix(br.Body.Room, "chat/open") {
			w.WriteHeader(204)
			return
		}
		w.WriteHeader(403)
		w.Write([]byte(`{"reason":"members only"}`))
	}))
	t.Cleanup(srv.Close)
	return srv
}

func pushData(m map[string]any) string { s, _ := m["data"].(string); return s }

func TestSubscribe(t *testing.T) {
	seen := make(chan backendRequest, 16)
	hook := hookBackend(t, seen)
	n := startBinary(t, "--business", "chat="+hook.URL+"/send,subscribe="+hook.URL+"/subscribe,rooms=3")
	tok := subscribeToken(t, n.secret, "42", []string{"chat/tok"}, []string{"chat/lobby", "news", "chat/team-*"})
	c := dialUp(t, n.Client, tok)
	other := dialUp(t, n.Client, tok) // the same user: its rooms are its own

	// Allowed by the token's subscribe claim: the head, then pushes after it.
	r := c.ask(1, `{"type":"subscribe","id":1,"room":"chat/lobby"}`)
	d, _ := r.m["data"].(map[string]any)
	if status(r) != 200 || d["stream"] != "room:chat/lobby" || d["epoch"] == "" || d["offset"] != float64(0) {
		t.Fatalf("subscribe by token: %s", r.raw)
	}
	res := n.push(t, `{"to":{"rooms":["chat/lobby"]},"data":"first"}`)
	if res.Body["delivered"] != float64(1) {
		t.Fatalf("a push to the room reached %v connections, want only the subscriber", res.Body["delivered"])
	}
	p := c.await(5*time.Second, "push to chat/lobby", func(m map[string]any) bool { return m["type"] == "push" && pushData(m) == "first" })
	if p.m["stream"] != "room:chat/lobby" || p.m["offset"] != float64(1) || p.m["epoch"] != d["epoch"] {
		t.Fatalf("push %s after subscribe reply %s", p.raw, r.raw)
	}
	if st := status(c.ask(2, `{"type":"subscribe","id":2,"room":"news"}`)); st != 200 {
		t.Fatalf("unnamespaced room in the claim: %d", st)
	}
	if st := status(c.ask(3, `{"type":"subscribe","id":3,"room":"chat/team-red"}`)); st != 200 {
		t.Fatalf("a room matching the claim's chat/team-*: %d", st)
	}
	expectReply(t, c.ask(4, `{"type":"subscribe","id":4,"room":"gossip"}`), 403, "does not list")
	expectReply(t, c.ask(5, `{"type":"subscribe","id":5,"room":"game/x"}`), 404, `unknown business "game"`)
	expectReply(t, c.ask(6, `{"type":"subscribe","id":6}`), 400, "room")
	// chat/tok (token rooms), chat/lobby and chat/team-red: the business's limit of 3.
	expectReply(t, c.ask(7, `{"type":"subscribe","id":7,"room":"chat/open-1"}`), 403, "3 rooms of business chat")

	// Unsubscribe, and again; nothing reaches it any more.
	if r := c.ask(8, `{"type":"unsubscribe","id":8,"room":"chat/team-red"}`); status(r) != 200 || !strings.Contains(r.raw, `"stream":"room:chat/team-red"`) {
		t.Fatalf("unsubscribe: %s", r.raw)
	}
	expectReply(t, c.ask(9, `{"type":"unsubscribe","id":9,"room":"chat/team-red"}`), 404, "not subscribed")
	if res := n.push(t, `{"to":{"rooms":["chat/team-red"]},"data":"gone"}`); res.Body["delivered"] != float64(0) {
		t.Fatalf("a push after unsubscribe reached %v", res.Body["delivered"])
	}

	// Allowed by the hook, which learns who asks; refused by it with its reason.
	r = c.ask(10, `{"type":"subscribe","id":10,"room":"chat/open-1"}`)
	if status(r) != 200 || !strings.Contains(r.raw, `"stream":"room:chat/open-1"`) {
		t.Fatalf("subscribe allowed by the hook: %s", r.raw)
	}
	br := <-seen
	if br.Body.Room != "chat/open-1" || br.Body.User != "42" || br.Body.Connection != c.connID() || br.Body.Business != "chat" {
		t.Fatalf("hook got %s", br.Raw)
	}
	n.push(t, `{"to":{"rooms":["chat/open-1"]},"data":"hooked"}`)
	c.await(5*time.Second, "push to a room the hook allowed", func(m map[string]any) bool { return pushData(m) == "hooked" })
	expectReply(t, other.ask(1, `{"type":"subscribe","id":1,"room":"chat/vip"}`), 403, "members only")
	<-seen
	// Subscribing twice is answered with the head again, and counts once.
	if st := status(c.ask(11, `{"type":"subscribe","id":11,"room":"chat/open-1"}`)); st != 200 {
		t.Fatalf("subscribe again: %d", st)
	}
	// The token's own room can be left and joined again.
	if st := status(c.ask(12, `{"type":"unsubscribe","id":12,"room":"chat/tok"}`)); st != 200 {
		t.Fatalf("leave a token room: %d", st)
	}
	if st := status(c.ask(13, `{"type":"subscribe","id":13,"room":"chat/tok"}`)); st != 200 {
		t.Fatalf("rejoin a token room: %d", st)
	}
	if other.count(func(m map[string]any) bool { return m["type"] == "push" }) != 0 {
		t.Fatal("the user's other connection got a push to rooms only the first subscribed to")
	}
	m := testutil.Metrics(t, n.API)
	for k, want := range map[string]float64{
		`longlink_client_subscribes_total{result="token"}`:                         4,
		`longlink_client_subscribes_total{result="hook"}`:                          1,
		`longlink_client_subscribes_total{result="refused"}`:                       2,
		`longlink_client_subscribes_total{result="limit"}`:                         1,
		`longlink_client_subscribes_total{result="already"}`:                       1,
		`longlink_client_unsubscribes_total{result="left"}`:                        2,
		`longlink_upstream_subscribe_hook_total{business="chat",result="allowed"}`: 1,
		`longlink_upstream_subscribe_hook_total{business="chat",result="refused"}`: 1,
	} {
		if m[k] != want {
			t.Errorf("%s = %v, want %v", k, m[k], want)
		}
	}
}

// In a cluster the room stream's owner may be the other node: the reply comes only
// once that owner routes the room's pushes here, so a push right after it arrives,
// whichever node's API accepts it.
func TestSubscribeClusterOwnerElsewhere(t *testing.T) {
	seen := make(chan backendRequest, 64)
	hook := hookBackend(t, seen)
	nodes := startCluster(t, 2, "--business", "chat="+hook.URL+",subscribe="+hook.URL+",rooms=64")
	ring := stream.NewRing([]string{"n1", "n2"})
	var rooms []string
	for i := 0; len(rooms) < 6; i++ {
		// Half by the token, half by the hook; all owned by n1.
		room := fmt.Sprintf("chat/team-%d", i)
		if len(rooms)%2 == 1 {
			room = fmt.Sprintf("chat/open-%d", i)
		}
		if ring.Owner("room:"+room) == "n1" {
			rooms = append(rooms, room)
		}
	}
	tok := subscribeToken(t, nodes[1].secret, "9", nil, []string{"chat/team-*"})
	c := dialUp(t, nodes[1].Client, tok)
	for i, room := range rooms {
		r := c.ask(i+1, fmt.Sprintf(`{"type":"subscribe","id":%d,"room":%q}`, i+1, room))
		d, _ := r.m["data"].(map[string]any)
		if status(r) != 200 || d["stream"] != "room:"+room || d["epoch"] == "" {
			t.Fatalf("subscribe to %s (owner n1) on n2: %s", room, r.raw)
		}
		// At once, through the owner's API and through this node's.
		for j, via := range nodes {
			data := fmt.Sprintf("%s via n%d", room, j+1)
			via.push(t, fmt.Sprintf(`{"to":{"rooms":[%q]},"data":%q}`, room, data))
			p := c.await(5*time.Second, data, func(m map[string]any) bool { return pushData(m) == data })
			if p.m["stream"] != "room:"+room || p.m["offset"] != d["offset"].(float64)+float64(j+1) {
				t.Fatalf("push %s after the reply %s", p.raw, r.raw)
			}
		}
	}
	// Unsubscribed on n2, a push through n1 no longer reaches it.
	if st := status(c.ask(100, fmt.Sprintf(`{"type":"unsubscribe","id":100,"room":%q}`, rooms[0]))); st != 200 {
		t.Fatalf("unsubscribe: %d", st)
	}
	nodes[0].push(t, fmt.Sprintf(`{"to":{"rooms":[%q]},"data":"after leaving"}`, rooms[0]))
	nodes[0].push(t, fmt.Sprintf(`{"to":{"rooms":[%q]},"data":"marker"}`, rooms[1]))
	c.await(5*time.Second, "marker", func(m map[string]any) bool { return pushData(m) == "marker" })
	if c.count(func(m map[string]any) bool { return pushData(m) == "after leaving" }) != 0 {
		t.Fatal("a push to a room the connection left reached it")
	}
}
