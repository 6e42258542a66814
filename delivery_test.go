package main

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"longlink/internal/testutil"
)

// The delivery guarantee (docs/delivery.md), tested on real binaries clustered on
// loopback: pushes right after a connect on another node, kill -9, SIGSTOP, rolling
// restarts, trimmed history and lost epochs.

// startCluster starts n clustered nodes named n1..nN (n2.. join n1) plus extra flags,
// and waits until every node sees all the others.
func startCluster(t *testing.T, n int, extra ...string) []*testNode {
	t.Helper()
	nodes := []*testNode{startBinary(t, append([]string{"--node-name", "n1", "--log-level", "warn"}, extra...)...)}
	for i := 2; i <= n; i++ {
		nodes = append(nodes, startBinary(t, append([]string{"--node-name", "n" + strconv.Itoa(i), "--log-level", "warn", "--join", nodes[0].Gossip}, extra...)...))
	}
	waitMembers(t, nodes, n)
	return nodes
}

// waitMembers waits until every node in nodes lists want alive members.
func waitMembers(t *testing.T, nodes []*testNode, want int) {
	t.Helper()
	testutil.WaitFor(t, 20*time.Second, fmt.Sprintf("%d nodes see %d alive members", len(nodes), want), func() bool {
		for _, n := range nodes {
			if len(n.members(t)) != want {
				return false
			}
		}
		return true
	})
}

// position is a v2 stream position.
type position struct {
	Epoch  string `json:"epoch"`
	Offset uint64 `json:"offset"`
}

// v2msg is any v2 server message.
type v2msg struct {
	Type      string                     `json:"type"`
	ID        string                     `json:"id"`
	Stream    string                     `json:"stream"`
	Epoch     string                     `json:"epoch"`
	Offset    uint64                     `json:"offset"`
	Data      json.RawMessage            `json:"data"`
	Node      string                     `json:"node"`
	Streams   map[string]json.RawMessage `json:"streams"`
	Recovered map[string]bool            `json:"-"`
}

// v2client is what the JavaScript client does, in Go: it tracks positions, resumes
// with them, and drops what it has already seen. It records every message it
// delivered to the "application", in order.
type v2client struct {
	t      *testing.T
	user   string
	secret string
	rooms  []string

	mu        sync.Mutex
	ws        *websocket.Conn
	pos       map[string]position
	seen      map[string]bool
	got       []string // data of delivered pushes, in order
	dups      int      // pushes dropped as already seen
	welcomes  []v2msg
	recovered map[string]bool // from the last welcome
}

func newV2(t *testing.T, secret, user string, rooms ...string) *v2client {
	return &v2client{t: t, user: user, secret: secret, rooms: rooms, pos: map[string]position{}, seen: map[string]bool{}}
}

// connect dials addr with the positions it holds and reads the welcome.
func (c *v2client) connect(addr string) error {
	q := url.Values{"token": {testutil.Token(c.t, c.secret, c.user, c.rooms...)}}
	c.mu.Lock()
	if len(c.pos) > 0 {
		b, _ := json.Marshal(c.pos)
		q.Set("since", string(b))
	}
	c.mu.Unlock()
	d := websocket.Dialer{Subprotocols: []string{"longlink.v2"}, HandshakeTimeout: 10 * time.Second}
	ws, resp, err := d.Dial("ws://"+addr+"/ws?"+q.Encode(), nil)
	if err != nil {
		if resp != nil {
			return fmt.Errorf("dial %s: %v (%d)", addr, err, resp.StatusCode)
		}
		return fmt.Errorf("dial %s: %v", addr, err)
	}
	if resp.Header.Get("Sec-WebSocket-Protocol") != "longlink.v2" {
		ws.Close()
		return fmt.Errorf("server selected %q, not longlink.v2", resp.Header.Get("Sec-WebSocket-Protocol"))
	}
	ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, b, err := ws.ReadMessage()
	if err != nil {
		ws.Close()
		return fmt.Errorf("reading the welcome: %v", err)
	}
	var w v2msg
	if err := json.Unmarshal(b, &w); err != nil || w.Type != "welcome" {
		ws.Close()
		return fmt.Errorf("first message %s is not a welcome (%v)", b, err)
	}
	c.mu.Lock()
	c.recovered = map[string]bool{}
	for name, raw := range w.Streams {
		var p struct {
			position
			Recovered *bool `json:"recovered"`
		}
		if err := json.Unmarshal(raw, &p); err != nil {
			c.mu.Unlock()
			return fmt.Errorf("welcome stream %s: %s: %v", name, raw, err)
		}
		if p.Recovered != nil {
			c.recovered[name] = *p.Recovered
		}
		old, had := c.pos[name]
		// A stream being resumed keeps the position actually reached (the replay
		// advances it); a new or lost one starts at the head.
		if !had || p.Recovered == nil || !*p.Recovered || old.Epoch != p.Epoch {
			c.pos[name] = p.position
		}
	}
	c.welcomes = append(c.welcomes, w)
	c.ws = ws
	c.mu.Unlock()
	return nil
}

// read delivers messages until the connection ends (returning its error).
func (c *v2client) read() error {
	for {
		c.ws.SetReadDeadline(time.Now().Add(time.Minute))
		_, b, err := c.ws.ReadMessage()
		if err != nil {
			return err
		}
		var m v2msg
		if err := json.Unmarshal(b, &m); err != nil {
			c.t.Errorf("user %s: message %s is not JSON: %v", c.user, b, err)
			continue
		}
		if m.Type != "push" {
			continue
		}
		c.mu.Lock()
		p, had := c.pos[m.Stream]
		switch {
		case c.seen[m.ID]:
			c.dups++
			c.t.Logf("user %s: duplicate id %s (%s@%d, position %v)", c.user, m.ID, m.Stream, m.Offset, p)
		case m.Epoch != "" && had && p.Epoch == m.Epoch && m.Offset <= p.Offset:
			c.dups++
			c.t.Logf("user %s: duplicate offset %s@%d (id %s, position %v)", c.user, m.Stream, m.Offset, m.ID, p)
		default:
			if m.Epoch != "" && had && p.Epoch == m.Epoch && m.Offset != p.Offset+1 {
				c.t.Errorf("user %s: stream %s jumped from %d to %d (message %s)", c.user, m.Stream, p.Offset, m.Offset, m.ID)
			}
			var s string
			if json.Unmarshal(m.Data, &s) != nil {
				s = string(m.Data)
			}
			c.got = append(c.got, s)
			c.seen[m.ID] = true
		}
		if m.Epoch != "" {
			c.pos[m.Stream] = position{m.Epoch, m.Offset}
		}
		c.mu.Unlock()
	}
}

func (c *v2client) messages() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.got...)
}

func (c *v2client) close() {
	c.mu.Lock()
	ws := c.ws
	c.mu.Unlock()
	if ws != nil {
		ws.Close()
	}
}

// TestPushRightAfterConnectOnAnotherNode is the seed's QR-code case: the browser
// connects to one node, the backend pushes at once to another. Nothing may be lost,
// for plain and v2 clients alike.
func TestPushRightAfterConnectOnAnotherNode(t *testing.T) {
	nodes := startCluster(t, 3)
	const tries = 200
	lost := 0
	for i := 0; i < tries; i++ {
		b, a := nodes[i%3], nodes[(i+1)%3]
		user := fmt.Sprintf("qr-%d", i)
		data := fmt.Sprintf("scan-%d", i)
		var ws *websocket.Conn
		var err error
		if i%2 == 0 {
			ws, _, err = websocket.DefaultDialer.Dial("ws://"+b.Client+"/ws?token="+testutil.Token(t, b.secret, user), nil)
		} else {
			d := websocket.Dialer{Subprotocols: []string{"longlink.v2"}}
			ws, _, err = d.Dial("ws://"+b.Client+"/ws?token="+testutil.Token(t, b.secret, user), nil)
		}
		if err != nil {
			t.Fatalf("try %d: %v", i, err)
		}
		// Posted the moment the 101 is in hand.
		a.push(t, `{"to":{"users":["`+user+`"]},"data":"`+data+`"}`)
		got := false
		ws.SetReadDeadline(time.Now().Add(3 * time.Second))
		for !got {
			_, m, err := ws.ReadMessage()
			if err != nil {
				break
			}
			got = string(m) == data || strings.Contains(string(m), `"data":"`+data+`"`)
		}
		ws.Close()
		if !got {
			lost++
			t.Errorf("try %d (%s on node %d, pushed to node %d): push lost", i, user, i%3+1, (i+1)%3+1)
			if lost >= 10 {
				t.Fatalf("%d of %d lost; stopping", lost, i+1)
			}
		}
	}
	t.Logf("%d of %d pushes posted to another node right after the 101 were lost", lost, tries)
}

// steadyPusher posts numbered pushes to users at a steady rate and records what each
// answer said.
type steadyPusher struct {
	t      *testing.T
	sent   int
	failed []string
}

func (p *steadyPusher) run(n *testNode, users []string, count int, every time.Duration, at func(i int)) {
	list, _ := json.Marshal(users)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for i := 0; i < count; i++ {
		if at != nil {
			at(i)
		}
		body := fmt.Sprintf(`{"to":{"users":%s},"data":"m%03d"}`, list, i)
		r := testutil.Do(p.t, "POST", "http://"+n.API+"/v1/push", body, testutil.Bearer(n.apiKey)...)
		if r.Status != 202 {
			p.failed = append(p.failed, fmt.Sprintf("m%03d: %d %s", i, r.Status, r.Raw))
		} else {
			p.sent++
		}
		<-tick.C
	}
}

func want(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("m%03d", i)
	}
	return out
}

// keepConnected runs c against the nodes addrs returns, reconnecting with its
// positions whenever the connection ends, until stop is closed.
func keepConnected(t *testing.T, c *v2client, addrs func(attempt int) string, stop <-chan struct{}, wg *sync.WaitGroup) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		for attempt := 0; ; attempt++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := c.connect(addrs(attempt)); err != nil {
				time.Sleep(50 * time.Millisecond)
				continue
			}
			done := make(chan struct{})
			go func() {
				select {
				case <-stop:
					c.close()
				case <-done:
				}
			}()
			c.read()
			close(done)
		}
	}()
}

// connectAll makes users v2 clients named prefix0, prefix1, ..., keeps each connected
// (keepConnected) to addr(i, attempt) until stop, and waits until all are connected.
func connectAll(t *testing.T, secret, prefix string, users int, addr func(i, attempt int) string, stop <-chan struct{}, wg *sync.WaitGroup) ([]*v2client, []string) {
	t.Helper()
	var clients []*v2client
	var names []string
	for i := 0; i < users; i++ {
		c := newV2(t, secret, fmt.Sprintf("%s%d", prefix, i))
		names = append(names, c.user)
		clients = append(clients, c)
		keepConnected(t, c, func(attempt int) string { return addr(i, attempt) }, stop, wg)
	}
	waitConnected(t, clients)
	return clients, names
}

func waitConnected(t *testing.T, clients []*v2client) {
	t.Helper()
	testutil.WaitFor(t, 10*time.Second, "clients connected", func() bool {
		for _, c := range clients {
			c.mu.Lock()
			ok := c.ws != nil
			c.mu.Unlock()
			if !ok {
				return false
			}
		}
		return true
	})
}

func checkAll(t *testing.T, clients []*v2client, n int) {
	t.Helper()
	w := want(n)
	reconnects, dups := 0, 0
	for _, c := range clients {
		c.mu.Lock()
		reconnects += len(c.welcomes) - 1
		dups += c.dups
		for _, wl := range c.welcomes[1:] {
			for name, raw := range wl.Streams {
				if strings.Contains(string(raw), `"recovered":false`) {
					t.Errorf("user %s: stream %s not recovered on a reconnect: %s", c.user, name, raw)
				}
			}
		}
		c.mu.Unlock()
	}
	t.Logf("%d clients: %d reconnects, %d duplicates dropped by the client", len(clients), reconnects, dups)
	if t.Failed() {
		for _, c := range clients {
			for _, wl := range c.welcomes {
				t.Logf("welcome of %s from %s: %s", c.user, wl.Node, wl.Streams["user:"+c.user])
			}
		}
	}
	if dups > 0 {
		t.Errorf("the server sent %d messages twice to one connection or across a resume", dups)
	}
	for _, c := range clients {
		got := c.messages()
		if strings.Join(got, ",") != strings.Join(w, ",") {
			t.Errorf("user %s got %d messages %v, want all %d exactly once in order", c.user, len(got), got, n)
		}
	}
}

// TestKillNodeClientsRecoverElsewhere: kill -9 of a node while pushes flow to its
// clients' users; each client reconnects to another node with its positions and gets
// every message exactly once, in order.
func TestKillNodeClientsRecoverElsewhere(t *testing.T) {
	nodes := startCluster(t, 3)
	victim, a := nodes[2], nodes[0]
	const users, count = 8, 200
	stop := make(chan struct{})
	var wg sync.WaitGroup
	clients, names := connectAll(t, victim.secret, "k", users, func(i, attempt int) string {
		if attempt == 0 {
			return victim.Client
		}
		return nodes[attempt%2].Client // n1 or n2: the survivors
	}, stop, &wg)
	p := &steadyPusher{t: t}
	p.run(a, names, count, 10*time.Millisecond, func(i int) {
		if i == 60 {
			victim.Cmd.Process.Signal(syscall.SIGKILL)
		}
	})
	if len(p.failed) > 0 {
		t.Errorf("%d pushes were not accepted: %v", len(p.failed), p.failed)
	}
	testutil.WaitFor(t, 20*time.Second, "every client has every message", func() bool {
		for _, c := range clients {
			if len(c.messages()) < p.sent {
				return false
			}
		}
		return true
	})
	close(stop)
	wg.Wait()
	checkAll(t, clients, count)
	for _, c := range clients {
		if len(c.welcomes) < 2 {
			t.Errorf("user %s never reconnected after its node was killed", c.user)
		}
	}
}

// TestFreezeNode: SIGSTOP of a node for 10 s. Pushes keep being accepted (streams it
// owned fail over), clients elsewhere get everything, and its own v2 clients, once it
// runs again, reconnect and recover what it missed.
func TestFreezeNode(t *testing.T) {
	// 10 s at 10 pushes/s: the history must hold 100 messages per stream.
	nodes := startCluster(t, 3, "--history-size", "256")
	frozen, a := nodes[2], nodes[0]
	const users, count = 6, 150
	stop := make(chan struct{})
	var wg sync.WaitGroup
	clients, names := connectAll(t, a.secret, "f", users, func(i, attempt int) string {
		return nodes[(i+attempt)%3].Client // first its home, then the others in turn
	}, stop, &wg)
	p := &steadyPusher{t: t}
	p.run(a, names, count, 100*time.Millisecond, func(i int) {
		switch i {
		case 20:
			frozen.Cmd.Process.Signal(syscall.SIGSTOP)
		case 120:
			frozen.Cmd.Process.Signal(syscall.SIGCONT)
		}
	})
	if len(p.failed) > 0 {
		t.Errorf("%d pushes were not accepted: %v", len(p.failed), p.failed)
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, c := range clients {
		for len(c.messages()) < p.sent && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
	}
	close(stop)
	wg.Wait()
	checkAll(t, clients, count)
	// The frozen node knew it had been stopped, and the clients it closed recovered.
	if m := testutil.Metrics(t, frozen.API); m["longlink_node_stalls_total"] < 1 {
		t.Errorf("longlink_node_stalls_total on the frozen node = %v, want >= 1", m["longlink_node_stalls_total"])
	}
	recovered := 0.0
	for _, n := range nodes {
		recovered += testutil.Metrics(t, n.API)["longlink_stream_recovered_messages_total"]
	}
	if recovered == 0 {
		t.Error("longlink_stream_recovered_messages_total did not move on any node")
	}
}

// resumeOnce connects c to addr with its positions, reads for a moment (until n new
// messages arrived or the wait ends) and disconnects.
func resumeOnce(t *testing.T, c *v2client, addr string, n int) {
	t.Helper()
	if err := c.connect(addr); err != nil {
		t.Fatal(err)
	}
	before := len(c.messages())
	done := make(chan struct{})
	go func() { c.read(); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	c.mu.Lock()
	lost := false
	for _, ok := range c.recovered {
		lost = lost || !ok
	}
	c.mu.Unlock()
	for !lost && len(c.messages()) < before+n && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	c.close()
	<-done
}

func pushTo(t *testing.T, n *testNode, user, data string, extra string) {
	t.Helper()
	n.push(t, `{"to":{"users":["`+user+`"]},"data":"`+data+`"`+extra+`}`)
}

// TestHistoryTrimmedAndExpired: a client that comes back after more messages than the
// history keeps, or after they expired, is told recovered:false; one within the
// window gets what it missed; "history":false messages are live only.
func TestHistoryTrimmedAndExpired(t *testing.T) {
	n := startBinary(t, "--history-size", "5")
	c := newV2(t, n.secret, "trim")
	resumeOnce(t, c, n.Client, 0)
	pushTo(t, n, "trim", "m000", "")
	pushTo(t, n, "trim", "m001", "")
	pushTo(t, n, "trim", "skipped", `,"history":false`)
	resumeOnce(t, c, n.Client, 2)
	if got := c.messages(); strings.Join(got, ",") != "m000,m001" || !c.recovered["user:trim"] {
		t.Fatalf("within the window: got %v, recovered %v; want m000,m001 recovered (and not the history:false push)", got, c.recovered)
	}
	for i := 2; i < 12; i++ {
		pushTo(t, n, "trim", fmt.Sprintf("m%03d", i), "")
	}
	resumeOnce(t, c, n.Client, 0)
	if c.recovered["user:trim"] {
		t.Fatalf("10 missed messages with a history of 5: recovered %v, want false", c.recovered)
	}
	if p := c.pos["user:trim"]; p.Offset != 12 {
		t.Fatalf("after recovered:false the position is the head: %v, want offset 12", p)
	}
	pushTo(t, n, "trim", "short", `,"ttl":"1s"`)
	time.Sleep(2500 * time.Millisecond) // the message's own TTL must pass: a fixed wait is the point
	resumeOnce(t, c, n.Client, 0)
	if c.recovered["user:trim"] {
		t.Fatalf("an expired message was missed: recovered %v, want false", c.recovered)
	}
	// Expired messages leave the store from the front of their stream.
	pushTo(t, n, "ttl-only", "gone", `,"ttl":"1s"`)
	testutil.WaitFor(t, 5*time.Second, "the expired message swept", func() bool {
		return testutil.Metrics(t, n.API)["longlink_stream_history_expired_total"] >= 1
	})
	if m := testutil.Metrics(t, n.API); m[`longlink_stream_recoveries_total{result="not_recovered"}`] < 2 {
		t.Errorf("not_recovered = %v after two failed recoveries", m[`longlink_stream_recoveries_total{result="not_recovered"}`])
	}
	if r := testutil.Do(t, "POST", "http://"+n.API+"/v1/push", `{"to":{"users":["x"]},"data":"x","ttl":"soon"}`, testutil.Bearer(n.apiKey)...); r.Status != 400 || !strings.Contains(r.Raw, "ttl") {
		t.Fatalf("bad ttl: %d %s", r.Status, r.Raw)
	}
}

// TestEpochChangesWhenAllHoldersDie: kill -9 two of three nodes. A stream both of
// whose holders died has lost its history: resuming it says recovered:false with a
// new epoch; a stream the survivor held recovers everything.
func TestEpochChangesWhenAllHoldersDie(t *testing.T) {
	nodes := startCluster(t, 3)
	survivor := nodes[0]
	const users = 30
	var clients []*v2client
	for i := 0; i < users; i++ {
		c := newV2(t, survivor.secret, fmt.Sprintf("e%d", i))
		resumeOnce(t, c, nodes[i%3].Client, 0)
		clients = append(clients, c)
	}
	for i := 0; i < 3; i++ {
		for _, c := range clients {
			pushTo(t, survivor, c.user, fmt.Sprintf("m%03d", i), "")
		}
	}
	nodes[1].Kill()
	nodes[2].Kill()
	waitMembers(t, nodes[:1], 1)
	lost, kept := 0, 0
	for _, c := range clients {
		old := c.pos["user:"+c.user]
		resumeOnce(t, c, survivor.Client, 3)
		got := c.messages()
		switch {
		case c.recovered["user:"+c.user]:
			kept++
			if strings.Join(got, ",") != "m000,m001,m002" {
				t.Errorf("user %s recovered but got %v", c.user, got)
			}
		default:
			lost++
			if c.pos["user:"+c.user].Epoch == old.Epoch {
				t.Errorf("user %s: history lost but the epoch stayed %s", c.user, old.Epoch)
			}
		}
	}
	t.Logf("%d streams kept their history on the survivor, %d lost it (new epoch)", kept, lost)
	if kept == 0 || lost == 0 {
		t.Fatalf("kept %d, lost %d: with 2 holders of 3 nodes both must happen for 30 streams", kept, lost)
	}
}

// TestOwnershipMovesOnJoinAndLeave: a node joins (it becomes the owner of some
// streams and takes their history over), then leaves with SIGTERM; clients resuming
// on any node get every message once, in order.
func TestOwnershipMovesOnJoinAndLeave(t *testing.T) {
	nodes := startCluster(t, 2)
	const users = 20
	var clients []*v2client
	for i := 0; i < users; i++ {
		c := newV2(t, nodes[0].secret, fmt.Sprintf("j%d", i))
		resumeOnce(t, c, nodes[i%2].Client, 0)
		clients = append(clients, c)
	}
	next := 0
	pushRound := func(via *testNode) {
		for _, c := range clients {
			pushTo(t, via, c.user, fmt.Sprintf("m%03d", next), "")
		}
		next++
	}
	pushRound(nodes[0])
	pushRound(nodes[1])
	joined := startBinary(t, "--node-name", "n3", "--log-level", "warn", "--join", nodes[0].Gossip)
	all := append(nodes[:2:2], joined)
	waitMembers(t, all, 3)
	pushRound(joined)
	pushRound(nodes[0])
	for _, c := range clients {
		resumeOnce(t, c, joined.Client, next-len(c.messages()))
	}
	joined.Stop(t, 15*time.Second)
	waitMembers(t, nodes, 2)
	pushRound(nodes[1])
	for i, c := range clients {
		resumeOnce(t, c, nodes[i%2].Client, next-len(c.messages()))
	}
	checkAll(t, clients, next)
}

// TestRollingRestart: every node is restarted in turn with SIGTERM while pushes flow;
// clients follow (1001, reconnect elsewhere with positions) and get every message
// exactly once, in order.
func TestRollingRestart(t *testing.T) {
	nodes := startCluster(t, 3)
	const users, count = 6, 120
	var mu sync.Mutex
	live := func(i int) *testNode {
		mu.Lock()
		defer mu.Unlock()
		return nodes[i%len(nodes)]
	}
	restarting := -1
	stop := make(chan struct{})
	var wg sync.WaitGroup
	clients, names := connectAll(t, nodes[0].secret, "r", users, func(i, attempt int) string {
		mu.Lock()
		defer mu.Unlock()
		j := (i + attempt) % len(nodes)
		if j == restarting {
			j = (j + 1) % len(nodes)
		}
		return nodes[j].Client
	}, stop, &wg)
	restartDone := make(chan struct{})
	p := &steadyPusher{t: t}
	go func() {
		defer close(restartDone)
		for k := 0; k < 3; k++ {
			time.Sleep(300 * time.Millisecond)
			mu.Lock()
			restarting = k
			old := nodes[k]
			peer := nodes[(k+1)%3]
			mu.Unlock()
			old.Stop(t, 15*time.Second)
			n := startBinary(t, "--node-name", "n"+strconv.Itoa(k+1), "--log-level", "warn", "--join", peer.Gossip)
			mu.Lock()
			nodes[k] = n
			restarting = -1
			mu.Unlock()
			waitMembers(t, []*testNode{n}, 3)
		}
	}()
	list, _ := json.Marshal(names)
	var answers []string
	defer func() {
		if t.Failed() {
			t.Logf("answers: %s", strings.Join(answers[:min(30, len(answers))], "\n"))
		}
	}()
	for i := 0; i < count; i++ {
		// The id makes a retry on another node idempotent: a node that was asked
		// while it shut down may have stored the message on some streams only.
		body := fmt.Sprintf(`{"to":{"users":%s},"data":"m%03d","id":"rolling-%03d"}`, list, i, i)
		var r testutil.Response
		for try := 0; try < 3; try++ {
			mu.Lock()
			n := nodes[(i+try)%3]
			skip := (i+try)%3 == restarting
			mu.Unlock()
			if skip {
				continue
			}
			r = testutil.Do(t, "POST", "http://"+n.API+"/v1/push", body, testutil.Bearer(n.apiKey)...)
			if r.Status == 202 {
				break
			}
			t.Logf("m%03d via node %d: %d %s (retrying on the next node)", i, (i+try)%3+1, r.Status, r.Raw)
		}
		if r.Status != 202 {
			p.failed = append(p.failed, fmt.Sprintf("m%03d: %d %s", i, r.Status, r.Raw))
		} else {
			p.sent++
			answers = append(answers, fmt.Sprintf("m%03d: %s", i, r.Raw))
		}
		time.Sleep(25 * time.Millisecond)
	}
	<-restartDone
	_ = live
	if len(p.failed) > 0 {
		t.Errorf("%d pushes were not accepted: %v", len(p.failed), p.failed)
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, c := range clients {
		for len(c.messages()) < count && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
	}
	close(stop)
	wg.Wait()
	checkAll(t, clients, count)
	handed, adopted := 0.0, 0.0
	for _, n := range nodes {
		m := testutil.Metrics(t, n.API)
		handed += m["longlink_stream_handoff_streams_total"]
		adopted += m["longlink_stream_history_adopted_total"]
	}
	if handed == 0 || adopted == 0 {
		t.Errorf("after three restarts: %v histories handed off, %v adopted; want both > 0", handed, adopted)
	}
}

// TestOnceAcrossStreams: a message for a user, a room it is in, everyone and its
// connection id reaches the connection once, though the streams' owners (and the
// origin, for the connection id) each send their own copy.
func TestOnceAcrossStreams(t *testing.T) {
	nodes := startCluster(t, 3)
	var conns []*websocket.Conn
	for i, proto := range []string{"", "longlink.v2"} {
		d := websocket.Dialer{}
		if proto != "" {
			d.Subprotocols = []string{proto}
		}
		ws, _, err := d.Dial("ws://"+nodes[i].Client+"/ws?token="+testutil.Token(t, nodes[0].secret, "once", "lobby", "hall"), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer ws.Close()
		conns = append(conns, ws)
	}
	// The v2 client's welcome.
	conns[1].SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := conns[1].ReadMessage(); err != nil {
		t.Fatal(err)
	}
	_, body := nodes[2].get(t, "/v1/users/once")
	var infos struct{ Connections []struct{ ID string } }
	json.Unmarshal([]byte(body), &infos)
	if len(infos.Connections) != 2 {
		t.Fatalf("user's connections: %s", body)
	}
	ids, _ := json.Marshal([]string{infos.Connections[0].ID, infos.Connections[1].ID})
	const n = 20
	for i := 0; i < n; i++ {
		nodes[2].push(t, fmt.Sprintf(`{"to":{"users":["once"],"rooms":["hall","lobby"],"all":true,"connections":%s},"data":"m%03d"}`, ids, i))
	}
	for c, ws := range conns {
		var got []string
		positions := map[string]int{} // stream -> position messages
		ids := map[string]bool{}
		var posIDs []string
		for {
			ws.SetReadDeadline(time.Now().Add(time.Second))
			_, b, err := ws.ReadMessage()
			if err != nil {
				break
			}
			var m v2msg
			switch {
			case c == 0:
				got = append(got, string(b))
			case json.Unmarshal(b, &m) == nil && m.Type == "push":
				var s string
				json.Unmarshal(m.Data, &s)
				got = append(got, s)
				ids[m.ID] = true
				if m.Stream != "user:once" {
					t.Errorf("v2 push through %s, want user:once (the first target it matches)", m.Stream)
				}
			case m.Type == "position":
				positions[m.Stream]++
				posIDs = append(posIDs, m.ID)
			default:
				t.Errorf("connection %d: unexpected %s", c, b)
			}
		}
		if len(got) != n {
			t.Errorf("connection %d got %d messages for %d pushes: %v", c, len(got), n, got)
		}
		if c == 1 {
			// Every other stream it matched moved too: its two rooms and everyone.
			for _, s := range []string{"room:hall", "room:lobby", "all"} {
				if positions[s] != n {
					t.Errorf("v2 connection: %d position messages for %s, want %d", positions[s], s, n)
				}
			}
			for _, id := range posIDs {
				if !ids[id] {
					t.Errorf("position message for %s, a message the connection never got", id)
				}
			}
		}
	}
}

// TestFlappingNode: one node is killed with SIGKILL and started again under the same
// name three times while pushes flow; clients on the stable nodes get every message
// once, in order, as ownership moves to and from it.
func TestFlappingNode(t *testing.T) {
	nodes := startCluster(t, 3)
	const users, count = 6, 120
	stop := make(chan struct{})
	var wg sync.WaitGroup
	clients, names := connectAll(t, nodes[0].secret, "fl", users, func(i, attempt int) string {
		return nodes[i%2].Client // n1 and n2: they stay up
	}, stop, &wg)
	var mu sync.Mutex
	flapper := nodes[2]
	flapDone := make(chan struct{})
	go func() {
		defer close(flapDone)
		for k := 0; k < 3; k++ {
			time.Sleep(700 * time.Millisecond)
			mu.Lock()
			old := flapper
			mu.Unlock()
			old.Kill()
			n := startBinary(t, "--node-name", "n3", "--log-level", "warn", "--join", nodes[0].Gossip)
			mu.Lock()
			flapper = n
			mu.Unlock()
		}
	}()
	list, _ := json.Marshal(names)
	failed := 0
	for i := 0; i < count; i++ {
		// Posted to the stable nodes, retried with the same id: a push whose owner
		// was just killed may be answered 503 once its store timeout passes.
		body := fmt.Sprintf(`{"to":{"users":%s},"data":"m%03d","id":"flap-%03d"}`, list, i, i)
		ok := false
		for try := 0; try < 3 && !ok; try++ {
			n := nodes[(i+try)%2]
			r := testutil.Do(t, "POST", "http://"+n.API+"/v1/push", body, testutil.Bearer(n.apiKey)...)
			ok = r.Status == 202
			if !ok {
				t.Logf("m%03d via n%d: %d %s", i, (i+try)%2+1, r.Status, r.Raw)
			}
		}
		if !ok {
			failed++
		}
		time.Sleep(30 * time.Millisecond)
	}
	<-flapDone
	if failed > 0 {
		t.Errorf("%d pushes were not accepted after 3 tries", failed)
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, c := range clients {
		for len(c.messages()) < count && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
	}
	close(stop)
	wg.Wait()
	checkAll(t, clients, count)
}
