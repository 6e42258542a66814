package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"longlink/internal/testutil"
	"longlink/pusher"
)

// The Pusher Channels protocol through the real binary, with a hand-made client
// that speaks the wire format directly (so each refusal and each field can be
// checked); pusher_libs_test.go drives the real client and server libraries.

const (
	pAppID, pKey, pSecret = "app1", "key1", "secret1-0123456789"
	pApp                  = pAppID + ":" + pKey + ":" + pSecret + ",client-events"
)

var pusherTestApp = pusher.App{ID: pAppID, Key: pKey, Secret: pSecret}

// pclient is a Pusher protocol client over gorilla/websocket.
type pclient struct {
	t      *testing.T
	ws     *websocket.Conn
	socket string
	msgs   chan pmsg
}

// pmsg is any Pusher message as received (data kept raw: a string or an object).
type pmsg struct {
	Event   string          `json:"event"`
	Channel string          `json:"channel"`
	Data    json.RawMessage `json:"data"`
	UserID  string          `json:"user_id"`
	close   int             // set on the pseudo-message that reports the close code
}

// dataString decodes data that is a JSON string holding JSON into v.
func (m pmsg) dataString(t *testing.T, v any) {
	t.Helper()
	var s string
	if err := json.Unmarshal(m.Data, &s); err != nil {
		t.Fatalf("%s: data %s is not a string: %v", m.Event, m.Data, err)
	}
	if v != nil {
		if err := json.Unmarshal([]byte(s), v); err != nil {
			t.Fatalf("%s: data string %q is not JSON: %v", m.Event, s, err)
		}
	}
}

func dialPusher(t *testing.T, clientAddr, key string) *pclient {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+clientAddr+"/app/"+key+"?protocol=7&client=test&version=1", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	c := &pclient{t: t, ws: ws, msgs: make(chan pmsg, 256)}
	go func() {
		defer close(c.msgs)
		for {
			_, b, err := ws.ReadMessage()
			if err != nil {
				var ce *websocket.CloseError
				if ok := asClose(err, &ce); ok {
					c.msgs <- pmsg{Event: "(close)", close: ce.Code}
				}
				return
			}
			var m pmsg
			if err := json.Unmarshal(b, &m); err != nil {
				t.Errorf("server sent non-JSON %q", b)
				return
			}
			c.msgs <- m
		}
	}()
	m := c.next("pusher:connection_established")
	var est struct {
		SocketID        string `json:"socket_id"`
		ActivityTimeout int    `json:"activity_timeout"`
	}
	m.dataString(t, &est)
	if !pusher.ValidSocketID(est.SocketID) || est.ActivityTimeout != 120 {
		t.Fatalf("connection_established %s", m.Data)
	}
	c.socket = est.SocketID
	return c
}

func asClose(err error, ce **websocket.CloseError) bool {
	e, ok := err.(*websocket.CloseError)
	*ce = e
	return ok
}

// next returns the next message, which must be event (failing on anything else).
func (c *pclient) next(event string) pmsg {
	c.t.Helper()
	select {
	case m, ok := <-c.msgs:
		if !ok {
			c.t.Fatalf("connection ended waiting for %s", event)
		}
		if m.Event != event {
			c.t.Fatalf("got %s %s (close %d), want %s", m.Event, m.Data, m.close, event)
		}
		return m
	case <-time.After(10 * time.Second):
		c.t.Fatalf("no %s within 10s", event)
	}
	return pmsg{}
}

// none checks nothing arrives within d (used after a barrier message proves order).
func (c *pclient) quiet(d time.Duration) {
	c.t.Helper()
	select {
	case m := <-c.msgs:
		c.t.Fatalf("unexpected %s %s", m.Event, m.Data)
	case <-time.After(d):
	}
}

func (c *pclient) send(event, channel string, data any) {
	c.t.Helper()
	m := map[string]any{"event": event, "data": data}
	if channel != "" {
		m["channel"] = channel
	}
	if err := c.ws.WriteJSON(m); err != nil {
		c.t.Fatal(err)
	}
}

// subscribe subscribes with the auth a Pusher app's auth endpoint would give.
func (c *pclient) subscribe(channel string, channelData string) pmsg {
	c.t.Helper()
	d := map[string]any{"channel": channel}
	switch pusher.KindOf(channel) {
	case pusher.KindPrivate, pusher.KindPrivateEncrypted:
		d["auth"] = pusherTestApp.ChannelAuth(c.socket, channel, "")
	case pusher.KindPresence:
		d["auth"] = pusherTestApp.ChannelAuth(c.socket, channel, channelData)
		d["channel_data"] = channelData
	}
	c.send("pusher:subscribe", "", d)
	return c.next("pusher_internal:subscription_succeeded")
}

// papi calls the Pusher HTTP API of node at addr, signed as the SDKs sign.
func papi(t *testing.T, addr, method, path string, query map[string]string, body string) (int, string) {
	t.Helper()
	var b []byte
	if body != "" {
		b = []byte(body)
	}
	q := pusher.SignQuery(&pusherTestApp, method, path, query, b, time.Now())
	req, err := http.NewRequest(method, "http://"+addr+path+"?"+q, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(raw)
}

func trigger(t *testing.T, addr, channel, event, data, socketID string) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"name": event, "channel": channel, "data": data, "socket_id": socketID})
	if socketID == "" {
		body, _ = json.Marshal(map[string]any{"name": event, "channel": channel, "data": data})
	}
	if st, raw := papi(t, addr, "POST", "/apps/"+pAppID+"/events", nil, string(body)); st != 200 {
		t.Fatalf("trigger: %d %s", st, raw)
	}
}

func TestPusherProtocolThroughBinary(t *testing.T) {
	n := startBinary(t, "--pusher-app", pApp, "--pusher-app", "app2:key2:secret2-0123456789")

	t.Run("refusals", func(t *testing.T) {
		for _, c := range []struct {
			path string
			code int
		}{
			{"/app/nokey?protocol=7", pusher.CodeAppNotFound},
			{"/app/" + pKey + "?protocol=6", pusher.CodeUnsupportedProtocol},
			{"/app/" + pKey, pusher.CodeNoProtocolVersion},
		} {
			ws, _, err := websocket.DefaultDialer.Dial("ws://"+n.Client+c.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			var m pmsg
			if err := ws.ReadJSON(&m); err != nil || m.Event != "pusher:error" || !strings.Contains(string(m.Data), fmt.Sprint(c.code)) {
				t.Fatalf("%s: %v %+v", c.path, err, m)
			}
			_, _, err = ws.ReadMessage()
			if ce, ok := err.(*websocket.CloseError); !ok || ce.Code != c.code {
				t.Fatalf("%s: close %v, want %d", c.path, err, c.code)
			}
			ws.Close()
		}
	})

	a, b := dialPusher(t, n.Client, pKey), dialPusher(t, n.Client, pKey)
	other := dialPusher(t, n.Client, "key2")

	t.Run("public, exclusion, other app", func(t *testing.T) {
		a.subscribe("news", "")
		b.subscribe("news", "")
		other.subscribe("news", "")
		trigger(t, n.API, "news", "headline", `{"n":1}`, "")
		for _, c := range []*pclient{a, b} {
			m := c.next("headline")
			var v struct{ N int }
			m.dataString(t, &v)
			if m.Channel != "news" || v.N != 1 {
				t.Fatalf("%+v", m)
			}
		}
		trigger(t, n.API, "news", "headline", `{"n":2}`, a.socket)
		b.next("headline")
		trigger(t, n.API, "news", "headline", `{"n":3}`, "")
		m := a.next("headline") // a skipped n=2, so its next is n=3
		var v struct{ N int }
		m.dataString(t, &v)
		if v.N != 3 {
			t.Fatalf("a got n=%d after being excluded from 2", v.N)
		}
		b.next("headline")
		other.quiet(300 * time.Millisecond) // app2's "news" is another channel
		// One trigger to two channels a client holds: one event on each, as Pusher.
		a.subscribe("sport", "")
		body := `{"name":"both","channels":["news","sport"],"data":"x"}`
		if st, raw := papi(t, n.API, "POST", "/apps/"+pAppID+"/events", nil, body); st != 200 {
			t.Fatalf("%d %s", st, raw)
		}
		got := map[string]bool{a.next("both").Channel: true, a.next("both").Channel: true}
		if !got["news"] || !got["sport"] {
			t.Fatalf("a got the event on %v, want news and sport", got)
		}
		if m := b.next("both"); m.Channel != "news" {
			t.Fatalf("b got it on %s", m.Channel)
		}
	})

	t.Run("private auth", func(t *testing.T) {
		a.send("pusher:subscribe", "", map[string]any{"channel": "private-x", "auth": pKey + ":" + strings.Repeat("0", 64)})
		m := a.next("pusher:subscription_error")
		if !strings.Contains(string(m.Data), `"status":401`) {
			t.Fatalf("%s", m.Data)
		}
		a.subscribe("private-x", "")
		b.subscribe("private-x", "")
	})

	t.Run("client events", func(t *testing.T) {
		a.send("client-typing", "private-x", map[string]any{"who": "a"})
		m := b.next("client-typing")
		if string(m.Data) != `{"who":"a"}` || m.Channel != "private-x" {
			t.Fatalf("%+v %s", m, m.Data)
		}
		// Not back to the sender; on a public channel refused.
		a.send("client-typing", "news", map[string]any{})
		a.next("pusher:error")
		trigger(t, n.API, "private-x", "after", "x", "")
		a.next("after")
		b.next("after")
	})

	t.Run("client event rate", func(t *testing.T) {
		limited := false
		for i := 0; i < 30 && !limited; i++ {
			a.send("client-burst", "private-x", i)
		}
		// 10 a second with a burst of 10: some of 30 sent at once are refused.
		deadline := time.After(10 * time.Second)
		for !limited {
			select {
			case m := <-a.msgs:
				if m.Event == "pusher:error" && strings.Contains(string(m.Data), "4301") {
					limited = true
				}
			case <-deadline:
				t.Fatal("no 4301 for 30 client events at once")
			}
		}
	})

	t.Run("unsubscribe", func(t *testing.T) {
		b.send("pusher:unsubscribe", "", map[string]any{"channel": "news"})
		trigger(t, n.API, "news", "gone", "x", "")
		drain(t, a, "gone")
		// b gets nothing on news any more: an event on another channel it holds
		// arrives first.
		trigger(t, n.API, "private-x", "still", "x", "")
		for m := range b.msgs {
			if m.Event == "gone" {
				t.Fatal("b got an event of a channel it left")
			}
			if m.Event == "still" {
				break
			}
		}
	})

	t.Run("signin, server to user, terminate", func(t *testing.T) {
		ud := `{"id":"u1","user_info":{"name":"A"}}`
		a.send("pusher:signin", "", map[string]any{"auth": pusherTestApp.UserAuth(a.socket, ud), "user_data": ud})
		drain(t, a, "pusher:signin_success")
		a.subscribe("#server-to-user-u1", "")
		b.send("pusher:subscribe", "", map[string]any{"channel": "#server-to-user-u1"})
		drain(t, b, "pusher:subscription_error")
		if st, raw := papi(t, n.API, "POST", "/apps/"+pAppID+"/users/u1/events", nil, `{"name":"hello","data":"hi"}`); st != 200 {
			t.Fatalf("%d %s", st, raw)
		}
		a.next("hello")
		if st, raw := papi(t, n.API, "POST", "/apps/"+pAppID+"/users/u1/terminate_connections", nil, `{}`); st != 200 {
			t.Fatalf("%d %s", st, raw)
		}
		a.next("pusher:error")
		if m := a.next("(close)"); m.close != pusher.CodeUnauthorized {
			t.Fatalf("closed %d", m.close)
		}
	})

	t.Run("bad signin closes 4009", func(t *testing.T) {
		c := dialPusher(t, n.Client, pKey)
		c.send("pusher:signin", "", map[string]any{"auth": pKey + ":00", "user_data": `{"id":"x"}`})
		c.next("pusher:error")
		if m := c.next("(close)"); m.close != pusher.CodeUnauthorized {
			t.Fatalf("closed %d", m.close)
		}
	})

	t.Run("api answers", func(t *testing.T) {
		// b is the one left in private-x (a was terminated, b left news).
		st, raw := papi(t, n.API, "GET", "/apps/"+pAppID+"/channels/private-x", map[string]string{"info": "subscription_count"}, "")
		if st != 200 || raw != `{"occupied":true,"subscription_count":1}` {
			t.Fatalf("%d %s", st, raw)
		}
		testutil.WaitFor(t, 10*time.Second, "news vacated", func() bool {
			st, raw = papi(t, n.API, "GET", "/apps/"+pAppID+"/channels/news", nil, "")
			return st == 200 && raw == `{"occupied":false}`
		})
		st, raw = papi(t, n.API, "GET", "/apps/nope/channels", nil, "")
		if st != 404 {
			t.Fatalf("unknown app: %d %s", st, raw)
		}
	})
	m := testutil.Metrics(t, n.API)
	if m[`longlink_pusher_client_events_total{app="app1",outcome="relayed"}`] < 1 || m[`longlink_pusher_connections{app="app2"}`] != 1 {
		t.Errorf("metrics: relayed %v, app2 connections %v", m[`longlink_pusher_client_events_total{app="app1",outcome="relayed"}`], m[`longlink_pusher_connections{app="app2"}`])
	}
}

// drain skips messages until event (client events and errors from earlier steps may
// still be in flight) and returns it.
func drain(t *testing.T, c *pclient, event string) pmsg {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case m, ok := <-c.msgs:
			if !ok {
				t.Fatalf("connection ended waiting for %s", event)
			}
			if m.Event == event {
				return m
			}
		case <-deadline:
			t.Fatalf("no %s within 10s", event)
		}
	}
}

// TestPusherCluster: three real nodes; channels with subscribers on every node,
// triggers and client events posted to any node, socket_id exclusion of a client on
// another node, the d = 0 race (an event triggered on another node the moment a
// subscribe is answered), presence across nodes and through a SIGKILL, and
// terminate_connections on every node.
func TestPusherCluster(t *testing.T) {
	ns := startCluster(t, 3, "--pusher-app", pApp)
	a, b, c := dialPusher(t, ns[0].Client, pKey), dialPusher(t, ns[1].Client, pKey), dialPusher(t, ns[2].Client, pKey)
	for _, cl := range []*pclient{a, b, c} {
		cl.subscribe("news", "")
		cl.subscribe("private-room", "")
	}

	t.Run("trigger on any node reaches every node", func(t *testing.T) {
		for i, n := range ns {
			trigger(t, n.API, "news", "n", fmt.Sprint(i), "")
			for _, cl := range []*pclient{a, b, c} {
				if m := cl.next("n"); string(m.Data) != fmt.Sprintf("%q", fmt.Sprint(i)) {
					t.Fatalf("event %d: got %s", i, m.Data)
				}
			}
		}
	})

	t.Run("socket_id excludes a client on another node", func(t *testing.T) {
		trigger(t, ns[0].API, "news", "ex", "1", b.socket)
		trigger(t, ns[0].API, "news", "marker", "2", "")
		a.next("ex")
		c.next("ex")
		b.next("marker") // not ex first
		a.next("marker")
		c.next("marker")
	})

	t.Run("client events cross nodes, not back", func(t *testing.T) {
		a.send("client-hi", "private-room", map[string]int{"k": 1})
		b.next("client-hi")
		c.next("client-hi")
		trigger(t, ns[2].API, "private-room", "marker", "x", "")
		a.next("marker") // not client-hi
		b.next("marker")
		c.next("marker")
	})

	t.Run("d=0: trigger on another node the moment the subscribe is answered", func(t *testing.T) {
		for i := 0; i < 15; i++ {
			ch := fmt.Sprintf("race-%d", i)
			cl := dialPusher(t, ns[1].Client, pKey)
			cl.subscribe(ch, "")
			trigger(t, ns[(i%2)*2].API, ch, "first", "x", "")
			cl.next("first")
			cl.ws.Close()
		}
	})

	t.Run("terminate on every node", func(t *testing.T) {
		ud := `{"id":"tu"}`
		for _, cl := range []*pclient{b, c} {
			cl.send("pusher:signin", "", map[string]any{"auth": pusherTestApp.UserAuth(cl.socket, ud), "user_data": ud})
			drain(t, cl, "pusher:signin_success")
		}
		if st, raw := papi(t, ns[0].API, "POST", "/apps/"+pAppID+"/users/tu/terminate_connections", nil, `{}`); st != 200 {
			t.Fatalf("%d %s", st, raw)
		}
		for _, cl := range []*pclient{b, c} {
			if m := drain(t, cl, "(close)"); m.close != pusher.CodeUnauthorized {
				t.Fatalf("closed %d", m.close)
			}
		}
	})
}

// TestPusherPresenceCluster: member lists and member events across three nodes, and
// a member whose node is killed with SIGKILL is removed everywhere.
func TestPusherPresenceCluster(t *testing.T) {
	ns := startCluster(t, 3, "--pusher-app", pApp)
	a, b := dialPusher(t, ns[0].Client, pKey), dialPusher(t, ns[1].Client, pKey)
	a.subscribe("presence-lobby", `{"user_id":"ua","user_info":{"name":"A"}}`)
	m := b.subscribe("presence-lobby", `{"user_id":"ub"}`)
	var p struct {
		Presence struct {
			IDs   []string                   `json:"ids"`
			Hash  map[string]json.RawMessage `json:"hash"`
			Count int                        `json:"count"`
		} `json:"presence"`
	}
	// b's list holds a once a's join has reached b's node; it may be answered just
	// before: then member_added comes instead. Either way b ends up knowing a.
	m.dataString(t, &p)
	knowsA := func() bool {
		for _, id := range p.Presence.IDs {
			if id == "ua" {
				return true
			}
		}
		return false
	}
	if !knowsA() {
		var added struct {
			UserID string `json:"user_id"`
		}
		drain(t, b, "pusher_internal:member_added").dataString(t, &added)
		if added.UserID != "ua" {
			t.Fatalf("b was told of %q", added.UserID)
		}
	} else if string(p.Presence.Hash["ua"]) != `{"name":"A"}` || p.Presence.Count != 2 {
		t.Fatalf("b's list: %+v", p.Presence)
	}
	var added struct {
		UserID string `json:"user_id"`
	}
	drain(t, a, "pusher_internal:member_added").dataString(t, &added)
	if added.UserID != "ub" {
		t.Fatalf("a was told of %q", added.UserID)
	}
	// The users API on the third node lists both.
	testutil.WaitFor(t, 10*time.Second, "node 3 lists both members", func() bool {
		st, raw := papi(t, ns[2].API, "GET", "/apps/"+pAppID+"/channels/presence-lobby/users", nil, "")
		return st == 200 && strings.Contains(raw, `"ua"`) && strings.Contains(raw, `"ub"`)
	})
	// b's node dies: a is told ub left, once failure detection has seen it.
	ns[1].Kill()
	var removed struct {
		UserID string `json:"user_id"`
	}
	drain(t, a, "pusher_internal:member_removed").dataString(t, &removed)
	if removed.UserID != "ub" {
		t.Fatalf("a was told %q left", removed.UserID)
	}
}

// pusherHookSink is an app's webhook receiver: it checks each request's key and
// signature and keeps the events.
type pusherHookSink struct {
	t      *testing.T
	mu     sync.Mutex
	events []map[string]any
	srv    *httptest.Server
}

func newPusherHookSink(t *testing.T) *pusherHookSink {
	s := &pusherHookSink{t: t}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Header.Get("X-Pusher-Key") != pKey || r.Header.Get("X-Pusher-Signature") != pusher.SignWebhook(pSecret, body) {
			t.Errorf("webhook with key %q and a signature that does not verify", r.Header.Get("X-Pusher-Key"))
			w.WriteHeader(401)
			return
		}
		var b struct {
			TimeMS int64            `json:"time_ms"`
			Events []map[string]any `json:"events"`
		}
		if err := json.Unmarshal(body, &b); err != nil || b.TimeMS == 0 {
			t.Errorf("webhook body %s: %v", body, err)
		}
		s.mu.Lock()
		s.events = append(s.events, b.Events...)
		s.mu.Unlock()
	}))
	t.Cleanup(s.srv.Close)
	return s
}

// count is how many events named name for channel (and user, if not "") arrived.
func (s *pusherHookSink) count(name, channel, user string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, e := range s.events {
		if e["name"] == name && e["channel"] == channel && (user == "" || e["user_id"] == user) {
			n++
		}
	}
	return n
}

func (s *pusherHookSink) wait(name, channel, user string, want int) {
	s.t.Helper()
	testutil.WaitFor(s.t, 20*time.Second, fmt.Sprintf("%d %s %s %s", want, name, channel, user), func() bool { return s.count(name, channel, user) >= want })
}

// TestPusherWebhooks: Pusher-format webhooks through three real nodes: a channel is
// occupied once when its first subscriber anywhere joins and vacated once when its
// last one anywhere leaves (debounced), members are added and removed once
// cluster-wide, client events are reported by the sender's node, and every request
// is signed with the app's key and secret.
func TestPusherWebhooks(t *testing.T) {
	sink := newPusherHookSink(t)
	spec := pApp + ",webhook=" + sink.srv.URL
	ns := startCluster(t, 3, "--pusher-app", spec)
	a, b := dialPusher(t, ns[0].Client, pKey), dialPusher(t, ns[1].Client, pKey)
	a.subscribe("private-w", "")
	b.subscribe("private-w", "")
	sink.wait("channel_occupied", "private-w", "", 1)

	a.send("client-ping", "private-w", map[string]int{"n": 1})
	b.next("client-ping")
	sink.wait("client_event", "private-w", "", 1)

	a.subscribe("presence-w", `{"user_id":"wa"}`)
	b.subscribe("presence-w", `{"user_id":"wb"}`)
	sink.wait("member_added", "presence-w", "wa", 1)
	sink.wait("member_added", "presence-w", "wb", 1)

	// One subscriber of private-w leaves: still occupied. The other leaves: vacated
	// once, after the grace.
	a.send("pusher:unsubscribe", "", map[string]string{"channel": "private-w"})
	b.send("pusher:unsubscribe", "", map[string]string{"channel": "private-w"})
	sink.wait("channel_vacated", "private-w", "", 1)
	// wb's node dies: member_removed once, from whichever node decides.
	ns[1].Kill()
	sink.wait("member_removed", "presence-w", "wb", 1)
	// Nothing doubled (counted after the debounce could have emitted again).
	trigger(t, ns[0].API, "presence-w", "marker", "x", "")
	drain(t, a, "marker")
	for _, c := range []struct{ name, ch, user string }{
		{"channel_occupied", "private-w", ""}, {"channel_vacated", "private-w", ""},
		{"member_added", "presence-w", "wa"}, {"member_added", "presence-w", "wb"},
		{"member_removed", "presence-w", "wb"}, {"client_event", "private-w", ""},
	} {
		if n := sink.count(c.name, c.ch, c.user); n != 1 {
			t.Errorf("%s %s %s: %d webhooks, want 1", c.name, c.ch, c.user, n)
		}
	}
}

// TestPusherAppFlag: --pusher-app from the flag, the environment and the config
// file; --print-config masks the secrets; bad specs stop the start naming the part.
func TestPusherAppFlag(t *testing.T) {
	dir := t.TempDir()
	file := dir + "/longlink.conf"
	if err := os.WriteFile(file, []byte("pusher-app = f1:fk1:file-secret-1;f2:fk2:file-secret-2,client-events\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(testutil.Binary(t), "serve", "--config", file, "--print-config").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "pusher-app = f1:fk1:****;f2:fk2:****,client-events") || strings.Contains(string(out), "file-secret") {
		t.Fatalf("print-config: %v\n%s", err, out)
	}
	cmd := exec.Command(testutil.Binary(t), "serve", "--print-config")
	cmd.Env = append(os.Environ(), "LONGLINK_PUSHER_APP=e1:ek1:env-secret-1")
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "pusher-app = e1:ek1:****") {
		t.Fatalf("from the environment: %v\n%s", err, out)
	}
	for _, tc := range []struct{ spec, want string }{
		{"a:b", "colon-separated"},
		{"a:k:s1;b:k:s2", "key"},
		{"a:k:s,max-channels=0", "max-channels"},
		{"a:k:s,webhook=ftp://x", "webhook"},
		{"a:k:s,bogus", "unknown option"},
	} {
		_, err := testutil.TryStartNode(t, nil, "--client-addr", "127.0.0.1:0", "--api-addr", "127.0.0.1:0", "--pusher-app", tc.spec)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("--pusher-app %q: %v, want an error naming %q", tc.spec, err, tc.want)
		}
	}
	// Two apps with different activity timeouts cannot share a node's keepalive.
	_, err = testutil.TryStartNode(t, nil, "--client-addr", "127.0.0.1:0", "--api-addr", "127.0.0.1:0",
		"--pusher-app", "a:k1:s1,activity-timeout=60s", "--pusher-app", "b:k2:s2")
	if err == nil || !strings.Contains(err.Error(), "activity-timeout") {
		t.Errorf("two activity timeouts: %v", err)
	}
}
