package node

import (
	"encoding/base64"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"longlink/internal/testutil"
)

func TestPushToUser(t *testing.T) {
	n := startNode(t, nil)
	a1 := dial(t, n, "alice")
	a2 := dial(t, n, "alice")
	b := dial(t, n, "bob")
	testutil.WaitFor(t, 2*time.Second, "3 connections", func() bool { return n.Loop().Connections() == 3 })

	r := doPush(t, n, `{"to":{"users":["alice"]},"data":"hello"}`)
	if r.Status != 202 || r.Body["delivered"] != float64(2) || r.Body["id"] == "" {
		t.Fatalf("push = %d %s", r.Status, r.Raw)
	}
	for _, c := range []*websocket.Conn{a1, a2} {
		if typ, msg := read(t, c, 2*time.Second); typ != websocket.TextMessage || msg != "hello" {
			t.Fatalf("got %d %q", typ, msg)
		}
	}
	silent(t, b, 100*time.Millisecond)
}

func TestPushTargetKinds(t *testing.T) {
	n := startNode(t, nil)
	alice := dial(t, n, "alice", "lobby")
	bob := dial(t, n, "bob")
	carol := dial(t, n, "carol", "lobby", "vip")
	testutil.WaitFor(t, 2*time.Second, "3 connections", func() bool { return n.Loop().Connections() == 3 })
	bobID := n.Loop().UserConnections("bob")[0].ID
	all := map[string]*websocket.Conn{"alice": alice, "bob": bob, "carol": carol}

	expect := func(body string, delivered int, want ...string) {
		t.Helper()
		r := doPush(t, n, body)
		if r.Status != 202 || r.Body["delivered"] != float64(delivered) {
			t.Fatalf("%s: %d %s", body, r.Status, r.Raw)
		}
		for _, name := range want {
			if _, msg := read(t, all[name], 2*time.Second); !strings.Contains(body, msg) {
				t.Fatalf("%s got %q", name, msg)
			}
		}
		settled(t, n, alice, bob, carol)
	}
	expect(`{"to":{"rooms":["lobby"]},"data":"room-msg"}`, 2, "alice", "carol")
	expect(`{"to":{"connections":["`+bobID+`"]},"data":"conn-msg"}`, 1, "bob")
	expect(`{"to":{"all":true},"data":"everyone"}`, 3, "alice", "bob", "carol")
	// A connection named by several targets gets the message once.
	expect(`{"to":{"users":["carol"],"rooms":["lobby","vip"]},"data":"once"}`, 2, "alice", "carol")
	expect(`{"to":{"rooms":["nobody-here"]},"data":"void"}`, 0)

	// JSON values and binary data.
	doPush(t, n, `{"to":{"users":["bob"]},"data":{"a":[1,2]}}`)
	if typ, msg := read(t, bob, 2*time.Second); typ != websocket.TextMessage || msg != `{"a":[1,2]}` {
		t.Fatalf("json data: %d %q", typ, msg)
	}
	raw := []byte{0, 1, 2, 0xff}
	doPush(t, n, `{"to":{"users":["bob"]},"data_base64":"`+base64.StdEncoding.EncodeToString(raw)+`"}`)
	if typ, msg := read(t, bob, 2*time.Second); typ != websocket.BinaryMessage || msg != string(raw) {
		t.Fatalf("binary data: %d %q", typ, msg)
	}
	r := doPush(t, n, `{"to":{"users":["bob","ghost"]},"data":"x"}`)
	if fmt.Sprint(r.Body["offline_users"]) != "[ghost]" {
		t.Fatalf("offline_users: %s", r.Raw)
	}
}

func TestRoomsJoinLeaveAndPresence(t *testing.T) {
	n := startNode(t, nil)
	a1 := dial(t, n, "alice")
	a2 := dial(t, n, "alice")
	b := dial(t, n, "bob")
	testutil.WaitFor(t, 2*time.Second, "3 connections", func() bool { return n.Loop().Connections() == 3 })

	if r := call(t, n, "POST", "/v1/rooms/news/join", `{"users":["alice","ghost"]}`); r.Status != 404 || !strings.Contains(r.Raw, "ghost") {
		t.Fatalf("join with unknown user: %d %s", r.Status, r.Raw)
	}
	if r := call(t, n, "GET", "/v1/rooms/news", ""); r.Body["connections"] != float64(0) {
		t.Fatalf("a rejected join changed the room: %s", r.Raw)
	}
	if r := call(t, n, "POST", "/v1/rooms/news/join", `{"users":["alice"]}`); r.Status != 200 {
		t.Fatalf("join: %d %s", r.Status, r.Raw)
	}
	if r := call(t, n, "GET", "/v1/rooms/news", ""); r.Body["members"] != float64(1) || r.Body["connections"] != float64(2) {
		t.Fatalf("room: %s", r.Raw)
	}
	doPush(t, n, `{"to":{"rooms":["news"]},"data":"n1"}`)
	read(t, a1, 2*time.Second)
	read(t, a2, 2*time.Second)
	settled(t, n, a1, a2, b)

	// Membership follows the user's connections: a new tab joins the room too.
	a3 := dial(t, n, "alice")
	testutil.WaitFor(t, 2*time.Second, "4 connections", func() bool { return n.Loop().Connections() == 4 })
	doPush(t, n, `{"to":{"rooms":["news"]},"data":"n2"}`)
	if _, msg := read(t, a3, 2*time.Second); msg != "n2" {
		t.Fatalf("new tab got %q", msg)
	}
	read(t, a1, time.Second)
	read(t, a2, time.Second)

	r := call(t, n, "GET", "/v1/users/alice", "")
	conns, _ := r.Body["connections"].([]any)
	if r.Status != 200 || len(conns) != 3 {
		t.Fatalf("presence: %d %s", r.Status, r.Raw)
	}
	first := conns[0].(map[string]any)
	if first["node"] != n.Name() || first["remote"] == "" || first["since"] == "" || !strings.Contains(fmt.Sprint(first["rooms"]), "news") {
		t.Fatalf("connection info: %v", first)
	}
	if r := call(t, n, "GET", "/v1/users/ghost", ""); r.Status != 404 {
		t.Fatalf("unknown user: %d", r.Status)
	}

	if r := call(t, n, "POST", "/v1/rooms/news/leave", `{"users":["alice"]}`); r.Status != 200 {
		t.Fatalf("leave: %d %s", r.Status, r.Raw)
	}
	doPush(t, n, `{"to":{"rooms":["news"]},"data":"n3"}`)
	settled(t, n, a1, a2, a3, b)

	st := call(t, n, "GET", "/v1/stats", "")
	if st.Body["connections"] != float64(4) || st.Body["users"] != float64(2) {
		t.Fatalf("stats: %s", st.Raw)
	}
}

func TestKicks(t *testing.T) {
	n := startNode(t, nil)
	a1 := dial(t, n, "alice")
	a2 := dial(t, n, "alice")
	b := dial(t, n, "bob")
	testutil.WaitFor(t, 2*time.Second, "3 connections", func() bool { return n.Loop().Connections() == 3 })
	bid := n.Loop().UserConnections("bob")[0].ID

	if r := call(t, n, "DELETE", "/v1/connections/"+bid+"?reason=bye+bob", ""); r.Status != 200 || r.Body["closed"] != float64(1) {
		t.Fatalf("kick connection: %d %s", r.Status, r.Raw)
	}
	expectCloseCode(t, b, 4001, "bye bob")
	if r := call(t, n, "DELETE", "/v1/users/alice", ""); r.Status != 200 || r.Body["closed"] != float64(2) {
		t.Fatalf("kick user: %d %s", r.Status, r.Raw)
	}
	expectCloseCode(t, a1, 4001, "")
	expectCloseCode(t, a2, 4001, "")
	testutil.WaitFor(t, 6*time.Second, "0 connections", func() bool { return n.Loop().Connections() == 0 })
	if r := call(t, n, "DELETE", "/v1/users/alice", ""); r.Status != 404 {
		t.Fatalf("kick gone user: %d %s", r.Status, r.Raw)
	}
}

func expectCloseCode(t *testing.T, c *websocket.Conn, code int, reason string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	_, _, err := c.ReadMessage()
	ce, ok := err.(*websocket.CloseError)
	if !ok || ce.Code != code || (reason != "" && ce.Text != reason) {
		t.Fatalf("got %v, want close %d %q", err, code, reason)
	}
}

func TestBatchPush(t *testing.T) {
	n := startNode(t, nil)
	a := dial(t, n, "alice")
	b := dial(t, n, "bob")
	testutil.WaitFor(t, 2*time.Second, "2 connections", func() bool { return n.Loop().Connections() == 2 })
	r := call(t, n, "POST", "/v1/push/batch", `{"messages":[
		{"to":{"users":["alice"]},"data":"for alice"},
		{"to":{},"data":"nobody"},
		{"to":{"users":["bob"]},"data":"for bob"}]}`)
	if r.Status != 200 {
		t.Fatalf("batch: %d %s", r.Status, r.Raw)
	}
	res := r.Body["results"].([]any)
	if len(res) != 3 || res[0].(map[string]any)["delivered"] != float64(1) ||
		res[1].(map[string]any)["status"] != float64(400) || res[2].(map[string]any)["delivered"] != float64(1) {
		t.Fatalf("results: %s", r.Raw)
	}
	if _, m := read(t, a, time.Second); m != "for alice" {
		t.Fatal(m)
	}
	if _, m := read(t, b, time.Second); m != "for bob" {
		t.Fatal(m)
	}
}

// TestPerConnectionOrder: concurrent pushes from many callers reach every connection
// of a user in one order, the order the API accepted them.
func TestPerConnectionOrder(t *testing.T) {
	n := startNode(t, nil)
	var cs []*websocket.Conn
	for i := 0; i < 4; i++ {
		cs = append(cs, dial(t, n, "u"))
	}
	testutil.WaitFor(t, 2*time.Second, "4 connections", func() bool { return n.Loop().Connections() == 4 })
	const callers, each = 8, 50
	var wg sync.WaitGroup
	for c := 0; c < callers; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				if r := doPush(t, n, fmt.Sprintf(`{"to":{"users":["u"]},"data":"%d-%d"}`, c, i)); r.Status != 202 {
					t.Errorf("push: %d", r.Status)
				}
			}
		}(c)
	}
	wg.Wait()
	var first []string
	for k, c := range cs {
		var got []string
		for i := 0; i < callers*each; i++ {
			_, m := read(t, c, 2*time.Second)
			got = append(got, m)
		}
		if k == 0 {
			first = got
			continue
		}
		if strings.Join(got, ",") != strings.Join(first, ",") {
			t.Fatalf("connection %d saw another order", k)
		}
	}
	// Each caller's own pushes are in its order.
	last := map[string]int{}
	for _, m := range first {
		var c, i int
		fmt.Sscanf(m, "%d-%d", &c, &i)
		if prev, ok := last[fmt.Sprint(c)]; ok && i != prev+1 {
			t.Fatalf("caller %d: %d after %d", c, i, prev)
		}
		last[fmt.Sprint(c)] = i
	}
}

func TestAPIErrorsThroughNode(t *testing.T) {
	n := startNode(t, func(c *Config) { c.Push.MaxBodyBytes = 1024 })
	cases := []struct {
		body   string
		status int
		says   string
	}{
		{`{"to":{"users":["a"]},"data":"x"`, 400, "JSON"},
		{`{"to":{"users":["a"]},"data":"x","extra":1}`, 400, "extra"},
		{`{"to":{},"data":"x"}`, 400, "to"},
		{`{"to":{"users":["a"]}}`, 400, "data"},
		{`{"to":{"users":["a"]},"data_base64":"!!"}`, 400, "base64"},
		{`{"to":{"users":["a"]},"data":"` + strings.Repeat("x", 2000) + `"}`, 413, "1024"},
	}
	for _, tc := range cases {
		r := doPush(t, n, tc.body)
		if r.Status != tc.status || !strings.Contains(r.Body["error"].(string), tc.says) {
			t.Errorf("%.40s: %d %s", tc.body, r.Status, r.Raw)
		}
	}
	req := call(t, n, "GET", "/v1/cluster", "")
	if req.Status != 200 {
		t.Fatalf("cluster: %d %s", req.Status, req.Raw)
	}
}
