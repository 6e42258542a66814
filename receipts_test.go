package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"longlink/internal/testutil"
)

// Receipts and acknowledgements (docs/api.md), on real binaries: acks and
// redelivery across reconnects (to another node too), GET /v1/messages/{id} through
// every state, and "wait".

// ackConn is a raw v2 connection that acknowledges only when told to.
type ackConn struct {
	t       *testing.T
	ws      *websocket.Conn
	welcome v2msg
}

func dialAck(t *testing.T, addr, secret, user string) *ackConn {
	t.Helper()
	d := websocket.Dialer{Subprotocols: []string{"longlink.v2"}, HandshakeTimeout: 10 * time.Second}
	ws, _, err := d.Dial("ws://"+addr+"/ws?token="+testutil.Token(t, secret, user), nil)
	if err != nil {
		t.Fatalf("dial %s as %s: %v", addr, user, err)
	}
	c := &ackConn{t: t, ws: ws}
	if err := ws.ReadJSON(&c.welcome); err != nil || c.welcome.Type != "welcome" {
		t.Fatalf("welcome: %+v %v", c.welcome, err)
	}
	t.Cleanup(func() { ws.Close() })
	return c
}

// ackPush is a v2 push as the tests read it.
type ackPush struct {
	Type   string          `json:"type"`
	ID     string          `json:"id"`
	Stream string          `json:"stream"`
	Epoch  string          `json:"epoch"`
	Offset uint64          `json:"offset"`
	Ack    bool            `json:"ack"`
	Data   json.RawMessage `json:"data"`
	Status int             `json:"status"`
	Reason string          `json:"reason"`
}

// next returns the next message of type typ within wait (ok false: none came).
func (c *ackConn) next(typ string, wait time.Duration) (ackPush, bool) {
	deadline := time.Now().Add(wait)
	for {
		c.ws.SetReadDeadline(deadline)
		var m ackPush
		if err := c.ws.ReadJSON(&m); err != nil {
			return ackPush{}, false
		}
		if m.Type == typ {
			return m, true
		}
	}
}

func (c *ackConn) mustPush(what string) ackPush {
	c.t.Helper()
	m, ok := c.next("push", 5*time.Second)
	if !ok {
		c.t.Fatalf("%s: no push arrived", what)
	}
	return m
}

func (c *ackConn) send(v any) {
	c.t.Helper()
	if err := c.ws.WriteJSON(v); err != nil {
		c.t.Fatal(err)
	}
}

func (c *ackConn) ack(m ackPush) {
	c.t.Helper()
	if m.Stream != "" {
		c.send(map[string]any{"type": "ack", "stream": m.Stream, "epoch": m.Epoch, "offset": m.Offset})
	} else {
		c.send(map[string]any{"type": "ack", "message": m.ID})
	}
}

// pushAnswer is POST /v1/push's answer with receipts.
type pushAnswer struct {
	ID        string `json:"id"`
	Delivered int    `json:"delivered"`
	Complete  *bool  `json:"complete"`
	Targets   map[string]struct {
		Status    string         `json:"status"`
		Ack       bool           `json:"ack"`
		Delivered map[string]int `json:"delivered"`
		AckedBy   string         `json:"acked_by"`
		AckedAt   *time.Time     `json:"acked_at"`
		Reason    string         `json:"reason"`
	} `json:"targets"`
	Error string `json:"error"`
}

func postPush(t *testing.T, n *testNode, body string) (int, pushAnswer) {
	t.Helper()
	r := testutil.Do(t, "POST", "http://"+n.API+"/v1/push", body, testutil.Bearer(n.apiKey)...)
	var a pushAnswer
	if err := json.Unmarshal([]byte(r.Raw), &a); err != nil {
		t.Fatalf("push answer %d %q: %v", r.Status, r.Raw, err)
	}
	return r.Status, a
}

func receipt(t *testing.T, n *testNode, id string) (int, pushAnswer) {
	t.Helper()
	st, raw := n.get(t, "/v1/messages/"+id)
	var a pushAnswer
	if err := json.Unmarshal([]byte(raw), &a); err != nil {
		t.Fatalf("receipt %d %q: %v", st, raw, err)
	}
	return st, a
}

func TestAckWaitAndReceipt(t *testing.T) {
	n := startBinary(t, "--node-name", "solo")
	c := dialAck(t, n.Client, n.secret, "qr")
	var connID string
	_, users := n.get(t, "/v1/users/qr")
	var info struct{ Connections []struct{ ID string } }
	json.Unmarshal([]byte(users), &info)
	if len(info.Connections) != 1 {
		t.Fatalf("user qr: %s", users)
	}
	connID = info.Connections[0].ID

	// wait + ack: the answer comes once the client acknowledged.
	done := make(chan pushAnswer, 1)
	go func() {
		st, a := postPush(t, n, `{"to":{"users":["qr"]},"data":"scanned","ack":true,"wait":"10s"}`)
		if st != 200 {
			t.Errorf("wait answered %d %+v, want 200 once acked", st, a)
		}
		done <- a
	}()
	m := c.mustPush("ack push")
	if !m.Ack || m.Stream != "user:qr" || m.Offset == 0 {
		t.Fatalf("push %+v: want ack:true in stream user:qr", m)
	}
	select {
	case a := <-done:
		t.Fatalf("the push answered before the ack: %+v", a)
	case <-time.After(200 * time.Millisecond): // it must still be waiting; a longer wait only slows the test
	}
	c.ack(m)
	a := <-done
	tg := a.Targets["user:qr"]
	if a.Complete == nil || !*a.Complete || tg.Status != "acked" || tg.AckedBy != connID || tg.AckedAt == nil || !tg.Ack {
		t.Fatalf("answer %+v, want user:qr acked by %s", a, connID)
	}
	if st, r := receipt(t, n, a.ID); st != 200 || r.Targets["user:qr"].Status != "acked" || r.Targets["user:qr"].Delivered["solo"] != 1 {
		t.Fatalf("receipt %d %+v, want acked, delivered to 1 connection on solo", st, r)
	}

	// wait without ack: complete once written.
	st, a := postPush(t, n, `{"to":{"users":["qr"]},"data":"x","wait":"5s"}`)
	if st != 200 || a.Targets["user:qr"].Status != "delivered" || a.Targets["user:qr"].Delivered["solo"] != 1 {
		t.Fatalf("wait without ack: %d %+v", st, a)
	}
	c.mustPush("plain push")

	// wait for a user who is not connected: 202 at the deadline, pending.
	start := time.Now()
	st, a = postPush(t, n, `{"to":{"users":["qr","nobody"]},"data":"y","ack":true,"wait":"600ms"}`)
	if st != 202 || *a.Complete || a.Targets["user:nobody"].Status != "pending" || a.Targets["user:qr"].Status != "delivered" {
		t.Fatalf("wait for an offline user: %d %+v", st, a)
	}
	if el := time.Since(start); el < 600*time.Millisecond {
		t.Fatalf("answered after %v, before the 600ms wait", el)
	}
	pending := a.ID
	if st, r := receipt(t, n, pending); st != 200 || r.Targets["user:nobody"].Status != "pending" {
		t.Fatalf("receipt of the pending push: %d %+v", st, r)
	}
	// The offline user connects: the unacknowledged message is delivered, then acked.
	c2 := dialAck(t, n.Client, n.secret, "nobody")
	m2 := c2.mustPush("redelivery on connect")
	if m2.ID != pending || !m2.Ack {
		t.Fatalf("on connect got %+v, want the pending %s with ack", m2, pending)
	}
	testutil.WaitFor(t, 5*time.Second, "receipt says delivered", func() bool {
		_, r := receipt(t, n, pending)
		return r.Targets["user:nobody"].Status == "delivered"
	})
	c2.ack(m2)
	testutil.WaitFor(t, 5*time.Second, "receipt says acked", func() bool {
		_, r := receipt(t, n, pending)
		return r.Targets["user:nobody"].Status == "acked"
	})

	// Expired: a message with ack and a short ttl for an offline user.
	_, a = postPush(t, n, `{"to":{"users":["gone"]},"data":"z","ack":true,"ttl":"1s"}`)
	testutil.WaitFor(t, 10*time.Second, "receipt says expired", func() bool {
		_, r := receipt(t, n, a.ID)
		return r.Targets["user:gone"].Status == "expired" && r.Targets["user:gone"].Reason == "ttl"
	})
	if m := testutil.Metrics(t, n.API); m[`longlink_messages_expired_total{reason="ttl"}`] < 1 {
		t.Errorf("longlink_messages_expired_total{reason=\"ttl\"} = %v", m[`longlink_messages_expired_total{reason="ttl"}`])
	}
	// A message without a receipt, and an id never used: 404 with a reason.
	_, a = postPush(t, n, `{"to":{"users":["qr"]},"data":"plain"}`)
	for _, id := range []string{a.ID, "never-used"} {
		if st, raw := n.get(t, "/v1/messages/"+id); st != 404 || !strings.Contains(raw, "receipts are kept") {
			t.Errorf("receipt of %s: %d %s", id, st, raw)
		}
	}

	// Connection targets: acked by message id.
	go func() {
		st, a := postPush(t, n, `{"to":{"connections":["`+connID+`"]},"data":"c","ack":true,"wait":"10s"}`)
		if st != 200 || a.Targets["connection:"+connID].Status != "acked" {
			t.Errorf("wait for a connection target: %d %+v", st, a)
		}
		done <- a
	}()
	var mc ackPush
	for {
		mc = c.mustPush("connection push")
		if string(mc.Data) == `"c"` {
			break
		}
	}
	if mc.Stream != "" || !mc.Ack {
		t.Fatalf("connection push %+v: want ack:true without a stream", mc)
	}
	c.ack(mc)
	<-done
}

func TestAckValidation(t *testing.T) {
	n := startBinary(t)
	for body, want := range map[string]string{
		`{"to":{"rooms":["r"]},"data":"x","ack":true}`:                 "rooms and all",
		`{"to":{"all":true},"data":"x","wait":"1s"}`:                   "rooms and all",
		`{"to":{"users":["u"]},"data":"x","ack":true,"history":false}`: "history",
		`{"to":{"users":["u"]},"data":"x","wait":"31s"}`:               "at most 30s",
		`{"to":{"users":["u"]},"data":"x","wait":"soon"}`:              "not a duration",
		`{"to":{"users":["u"]},"data":"x","ack":"yes"}`:                "ack",
	} {
		r := testutil.Do(t, "POST", "http://"+n.API+"/v1/push", body, testutil.Bearer(n.apiKey)...)
		if r.Status != 400 || !strings.Contains(r.Raw, want) {
			t.Errorf("%s: %d %s, want 400 naming %q", body, r.Status, r.Raw, want)
		}
	}
	c := dialAck(t, n.Client, n.secret, "v")
	for msg, want := range map[string]string{
		`{"type":"ack","stream":"user:other","offset":3}`: "its own user stream",
		`{"type":"ack","stream":"user:v"}`:                "offset",
		`{"type":"ack"}`:                                  "needs",
		`{"type":"bogus"}`:                                "unknown message type",
		`not json`:                                        "not a JSON object",
	} {
		c.ws.WriteMessage(websocket.TextMessage, []byte(msg))
		e, ok := c.next("error", 5*time.Second)
		if !ok || e.Status != 400 || !strings.Contains(e.Reason, want) {
			t.Errorf("%s: %+v, want an error naming %q", msg, e, want)
		}
	}
	// A flood of acks is refused past the connection's ack rate (1000/s, burst
	// 2000): 5000 sent at once, faster than 3 s on any box.
	for i := 0; i < 5000; i++ {
		c.ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"ack","stream":"user:v","offset":1}`))
	}
	if e, ok := c.next("error", 5*time.Second); !ok || e.Status != 429 {
		t.Errorf("after 5000 acks at once: %+v, want a 429 error", e)
	}
	if m := testutil.Metrics(t, n.API); m[`longlink_client_rate_limited_total{type="ack"}`] < 1 {
		t.Errorf(`longlink_client_rate_limited_total{type="ack"} = %v`, m[`longlink_client_rate_limited_total{type="ack"}`])
	}
}

// TestAckRedeliveryOnAnotherNode: an acknowledged message is not delivered again, an
// unacknowledged one is, when the user comes back on another node; the ack made on
// one node counts on every node.
func TestAckRedeliveryOnAnotherNode(t *testing.T) {
	nodes := startCluster(t, 3)
	for i := 0; i < 6; i++ {
		user := fmt.Sprintf("rd%d", i)
		on, via, back := nodes[i%3], nodes[(i+1)%3], nodes[(i+2)%3]
		c := dialAck(t, on.Client, on.secret, user)
		_, a1 := postPush(t, via, `{"to":{"users":["`+user+`"]},"data":"one","ack":true,"ttl":"1m"}`)
		m1 := c.mustPush("first")
		c.ack(m1)
		testutil.WaitFor(t, 5*time.Second, "first acked", func() bool {
			_, r := receipt(t, back, a1.ID)
			return r.Targets["user:"+user].Status == "acked"
		})
		_, a2 := postPush(t, via, `{"to":{"users":["`+user+`"]},"data":"two","ack":true}`)
		m2 := c.mustPush("second")
		if m2.ID != a2.ID {
			t.Fatalf("second push %+v, want %s", m2, a2.ID)
		}
		c.ws.Close() // without acking it
		c2 := dialAck(t, back.Client, back.secret, user)
		got := c2.mustPush("redelivery")
		if got.ID != a2.ID || !got.Ack || got.Offset != m2.Offset {
			t.Fatalf("%s on another node got %+v, want the unacked %s at offset %d", user, got, a2.ID, m2.Offset)
		}
		if extra, ok := c2.next("push", 300*time.Millisecond); ok {
			t.Fatalf("%s got %+v after the redelivery: the acked message came again?", user, extra)
		}
		c2.ack(got)
		testutil.WaitFor(t, 5*time.Second, "second acked", func() bool {
			_, r := receipt(t, on, a2.ID)
			return r.Targets["user:"+user].Status == "acked"
		})
		c3 := dialAck(t, on.Client, on.secret, user)
		if extra, ok := c3.next("push", 300*time.Millisecond); ok {
			t.Fatalf("%s got %+v after acking everything", user, extra)
		}
	}
}

// TestMessageExpiredWebhook: a message with ack that nobody acknowledges within its
// ttl sends one message.expired, from the owner of the user's stream (a replica holds
// it too and stays silent), for a user target and for a connection target.
func TestMessageExpiredWebhook(t *testing.T) {
	rcv := newHookReceiver(t)
	nodes := startCluster(t, 3, "--webhook-url", rcv.srv.URL, "--webhook-secret", webhookSecret,
		"--webhook-events", "message.expired", "--webhook-batch-delay", "10ms")
	const users = 6
	ids := map[string]string{} // message id -> target
	for i := 0; i < users; i++ {
		user := fmt.Sprintf("exp%d", i)
		_, a := postPush(t, nodes[i%3], `{"to":{"users":["`+user+`"]},"data":"x","ack":true,"ttl":"1s"}`)
		ids[a.ID] = "user:" + user
	}
	// One that is acknowledged in time sends nothing.
	c := dialAck(t, nodes[1].Client, nodes[1].secret, "acks-in-time")
	_, kept := postPush(t, nodes[0], `{"to":{"users":["acks-in-time"]},"data":"y","ack":true,"ttl":"1s"}`)
	c.ack(c.mustPush("in time"))
	// A connection target that does not acknowledge.
	cc := dialAck(t, nodes[2].Client, nodes[2].secret, "conn-target")
	_, info := nodes[2].get(t, "/v1/users/conn-target")
	var ui struct{ Connections []struct{ ID string } }
	json.Unmarshal([]byte(info), &ui)
	_, ca := postPush(t, nodes[0], `{"to":{"connections":["`+ui.Connections[0].ID+`"]},"data":"z","ack":true,"ttl":"1s"}`)
	cc.mustPush("connection target")
	ids[ca.ID] = "connection:" + ui.Connections[0].ID

	evs := rcv.waitFor(t, len(ids), "message.expired", "", "")
	// Duplicates would come within a sweep or two: wait for a few more.
	time.Sleep(1500 * time.Millisecond)
	evs = rcv.find("message.expired", "", "")
	got := map[string]int{}
	for _, e := range evs {
		got[e.Message]++
		if want, ok := ids[e.Message]; !ok || e.Target != want || e.Reason != "ttl" {
			t.Errorf("event %+v: want target %q, reason ttl", e, want)
		}
	}
	for id, target := range ids {
		if got[id] != 1 {
			t.Errorf("%s (%s): %d message.expired events, want exactly 1", id, target, got[id])
		}
	}
	if got[kept.ID] != 0 {
		t.Errorf("the acknowledged message %s expired", kept.ID)
	}
	rcv.checkClean(t)
}

// TestWaitAcrossNodes: the origin of a push with wait is told of each target's state
// by the nodes that hold it: written on another node (without ack), then acknowledged
// there (with ack).
func TestWaitAcrossNodes(t *testing.T) {
	nodes := startCluster(t, 3)
	for i := 0; i < 6; i++ {
		user := fmt.Sprintf("w%d", i)
		on, via := nodes[i%3], nodes[(i+1)%3]
		onName := fmt.Sprintf("n%d", i%3+1)
		c := dialAck(t, on.Client, on.secret, user)
		st, a := postPush(t, via, `{"to":{"users":["`+user+`"]},"data":"plain","wait":"10s"}`)
		if tg := a.Targets["user:"+user]; st != 200 || tg.Status != "delivered" || tg.Delivered[onName] != 1 {
			t.Fatalf("%s: wait without ack via another node: %d %+v, want delivered by %s", user, st, a, onName)
		}
		c.mustPush("plain")
		done := make(chan struct{})
		go func() {
			defer close(done)
			st, a := postPush(t, via, `{"to":{"users":["`+user+`"]},"data":"acked","ack":true,"wait":"10s"}`)
			if tg := a.Targets["user:"+user]; st != 200 || tg.Status != "acked" || tg.AckedBy == "" || tg.Delivered[onName] != 1 {
				t.Errorf("%s: wait with ack via another node: %d %+v", user, st, a)
			}
		}()
		c.ack(c.mustPush("acked"))
		<-done
		// The user and its own connection both named: the connection takes the
		// message once, through the user's stream, and its stream ack acknowledges
		// both targets.
		_, info := on.get(t, "/v1/users/"+user)
		var ui struct{ Connections []struct{ ID string } }
		json.Unmarshal([]byte(info), &ui)
		conn := ui.Connections[0].ID
		done = make(chan struct{})
		go func() {
			defer close(done)
			st, a := postPush(t, via, `{"to":{"users":["`+user+`"],"connections":["`+conn+`"]},"data":"both","ack":true,"wait":"10s"}`)
			u, cn := a.Targets["user:"+user], a.Targets["connection:"+conn]
			if st != 200 || u.Status != "acked" || cn.Status != "acked" || cn.AckedBy != conn || cn.Delivered[onName] != 1 {
				t.Errorf("%s: user and its connection with ack: %d %+v", user, st, a)
			}
		}()
		m := c.mustPush("both")
		if m.Stream != "user:"+user {
			t.Errorf("%s: the push came through %q, want its user stream", user, m.Stream)
		}
		c.ack(m)
		<-done
		if extra, ok := c.next("push", 200*time.Millisecond); ok {
			t.Errorf("%s: a second copy %+v", user, extra)
		}
	}
}
