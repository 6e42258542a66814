package node

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"longlink/internal/testutil"
)

// Cluster keys for tests (base64 of 32 bytes).
const (
	testClusterKey  = "dGVzdC1rZXktdGVzdC1rZXktdGVzdC1rZXktdGVzdCE="
	otherClusterKey = "b3RoZXIta2V5LW90aGVyLWtleS1vdGhlci1rZXktb3Q="
)

// startCluster starts k nodes on loopback that join the first one.
func startCluster(t *testing.T, k int, mod func(i int, c *Config)) []*Node {
	t.Helper()
	var nodes []*Node
	for i := 0; i < k; i++ {
		n := startNode(t, func(c *Config) {
			c.NodeName = fmt.Sprintf("n%d", i+1)
			c.Cluster.ClusterKey = testClusterKey
			c.Cluster.SyncInterval = time.Second
			if i > 0 {
				c.Cluster.Join = []string{nodes[0].GossipAddr()}
			}
			if mod != nil {
				mod(i, c)
			}
		})
		nodes = append(nodes, n)
	}
	for _, n := range nodes {
		testutil.WaitFor(t, 10*time.Second, "cluster formed", func() bool { return len(n.Cluster().AliveNodes()) == k-1 })
	}
	return nodes
}

// waitRoutes waits until every node's routing table shows user on holder.
func waitRoutes(t *testing.T, nodes []*Node, user string, holder *Node) {
	t.Helper()
	for _, n := range nodes {
		if n == holder {
			continue
		}
		testutil.WaitFor(t, 5*time.Second, "route for "+user, func() bool {
			for _, p := range n.Cluster().NodesForUsers([]string{user}) {
				if p == holder.Name() {
					return true
				}
			}
			return false
		})
	}
}

func TestClusterPushReachesEveryNode(t *testing.T) {
	ns := startCluster(t, 3, nil)
	a := dial(t, ns[0], "alice", "lobby")
	b := dial(t, ns[1], "bob", "lobby")
	c := dial(t, ns[2], "carol")
	c2 := dial(t, ns[2], "alice") // alice has a second device on node 3
	waitRoutes(t, ns, "bob", ns[1])
	waitRoutes(t, ns, "alice", ns[2])
	waitRoutes(t, ns, "carol", ns[2])
	all := []*websocket.Conn{a, b, c, c2}

	// To a user on another node, posted to node 1.
	r := doPush(t, ns[0], `{"to":{"users":["bob"]},"data":"to-bob"}`)
	if r.Status != 202 || r.Body["delivered"] != float64(0) {
		t.Fatalf("push: %d %s", r.Status, r.Raw)
	}
	if _, m := read(t, b, 2*time.Second); m != "to-bob" {
		t.Fatal(m)
	}
	settled(t, ns[0], all...) // nobody else got it (the marker crosses nodes too)
	// A user on two nodes.
	doPush(t, ns[1], `{"to":{"users":["alice"]},"data":"to-alice"}`)
	for _, cc := range []*websocket.Conn{a, c2} {
		if _, m := read(t, cc, 2*time.Second); m != "to-alice" {
			t.Fatal(m)
		}
	}
	settled(t, ns[1], all...)
	// A room spread over nodes 1 and 2.
	doPush(t, ns[2], `{"to":{"rooms":["lobby"]},"data":"to-lobby"}`)
	for _, cc := range []*websocket.Conn{a, b} {
		if _, m := read(t, cc, 2*time.Second); m != "to-lobby" {
			t.Fatal(m)
		}
	}
	settled(t, ns[2], all...)
	// A connection id of node 3, posted to node 2.
	cid := ns[2].Loop().UserConnections("carol")[0].ID
	doPush(t, ns[1], `{"to":{"connections":["`+cid+`"]},"data":"to-conn"}`)
	if _, m := read(t, c, 2*time.Second); m != "to-conn" {
		t.Fatal(m)
	}
	settled(t, ns[1], all...)

	// Presence and stats are cluster-wide.
	p := call(t, ns[0], "GET", "/v1/users/alice", "")
	if conns, _ := p.Body["connections"].([]any); len(conns) != 2 || !strings.Contains(p.Raw, `"node":"n3"`) {
		t.Fatalf("presence: %s", p.Raw)
	}
	room := call(t, ns[2], "GET", "/v1/rooms/lobby", "")
	if room.Body["members"] != float64(2) || room.Body["connections"] != float64(2) {
		t.Fatalf("room: %s", room.Raw)
	}
	st := call(t, ns[1], "GET", "/v1/stats", "")
	if st.Body["connections"] != float64(4) {
		t.Fatalf("stats: %s", st.Raw)
	}
	cl := call(t, ns[0], "GET", "/v1/cluster", "")
	if ms, _ := cl.Body["members"].([]any); len(ms) != 3 {
		t.Fatalf("cluster: %s", cl.Raw)
	}
	// Kick across nodes.
	if k := call(t, ns[0], "DELETE", "/v1/users/carol", ""); k.Status != 200 || k.Body["closed"] != float64(1) {
		t.Fatalf("kick: %d %s", k.Status, k.Raw)
	}
	expectCloseCode(t, c, 4001, "")
	// Room join across nodes.
	if j := call(t, ns[0], "POST", "/v1/rooms/vip/join", `{"users":["bob"]}`); j.Status != 200 {
		t.Fatalf("join: %d %s", j.Status, j.Raw)
	}
	testutil.WaitFor(t, 5*time.Second, "vip route", func() bool { return len(ns[0].Cluster().NodesForRooms([]string{"vip"})) > 0 })
	doPush(t, ns[0], `{"to":{"rooms":["vip"]},"data":"to-vip"}`)
	if _, m := read(t, b, 2*time.Second); m != "to-vip" {
		t.Fatal(m)
	}
}

func TestClusterLateJoinLeaveAndKill(t *testing.T) {
	ns := startCluster(t, 2, nil)
	// A late joiner.
	late := startNode(t, func(c *Config) {
		c.NodeName = "late"
		c.Cluster.ClusterKey = testClusterKey
		c.Cluster.Join = []string{ns[1].GossipAddr()}
	})
	testutil.WaitFor(t, 10*time.Second, "late joined", func() bool { return len(ns[0].Cluster().AliveNodes()) == 2 })
	z := dial(t, late, "zed")
	waitRoutes(t, ns, "zed", late)
	doPush(t, ns[0], `{"to":{"users":["zed"]},"data":"hi-late"}`)
	if _, m := read(t, z, 2*time.Second); m != "hi-late" {
		t.Fatal(m)
	}

	// A graceful leave: clients get 1001, peers drop the node at once.
	y := dial(t, ns[1], "yan")
	waitRoutes(t, []*Node{ns[0]}, "yan", ns[1])
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		ns[1].Shutdown(ctx)
	}()
	expectCloseCode(t, y, 1001, "")
	testutil.WaitFor(t, 5*time.Second, "left node removed", func() bool { return len(ns[0].Cluster().AliveNodes()) == 1 })

	// A killed node is detected and routed around.
	late.Kill()
	start := time.Now()
	testutil.WaitFor(t, 15*time.Second, "killed node detected", func() bool { return len(ns[0].Cluster().AliveNodes()) == 0 })
	t.Logf("killed node detected after %v", time.Since(start))
	r := doPush(t, ns[0], `{"to":{"users":["zed"]},"data":"x"}`)
	if r.Status != 202 || r.Body["forwarded"] != float64(0) {
		t.Fatalf("push after kill: %d %s", r.Status, r.Raw)
	}
}

func TestClusterWrongKeyRefused(t *testing.T) {
	ns := startCluster(t, 1, nil)
	bad := startNode(t, func(c *Config) {
		c.NodeName = "intruder"
		c.Cluster.ClusterKey = otherClusterKey
		c.Cluster.Join = []string{ns[0].GossipAddr()}
	})
	time.Sleep(2 * time.Second) // give it time to (fail to) join
	if len(ns[0].Cluster().AliveNodes()) != 0 || len(bad.Cluster().AliveNodes()) != 0 {
		t.Fatalf("nodes with different keys merged: %v / %v", ns[0].Cluster().AliveNodes(), bad.Cluster().AliveNodes())
	}
}

func TestReadyzWaitsForJoin(t *testing.T) {
	// A peer address nobody listens on: the node runs, but is not ready.
	dead := testutil.FreeAddr(t, "tcp")
	lonely := startNode(t, func(c *Config) { c.NodeName = "lonely"; c.Cluster.Join = []string{dead} })
	if r := call(t, lonely, "GET", "/readyz", ""); r.Status != 503 || r.Body["status"] != "joining" {
		t.Fatalf("readyz before join: %d %s", r.Status, r.Raw)
	}
	// Once a peer joins it, it is part of a cluster and ready.
	startNode(t, func(c *Config) { c.NodeName = "friend"; c.Cluster.Join = []string{lonely.GossipAddr()} })
	testutil.WaitFor(t, 10*time.Second, "ready after a peer joined", func() bool {
		return call(t, lonely, "GET", "/readyz", "").Status == 200
	})
	alone := startNode(t, func(c *Config) { c.NodeName = "alone" })
	if r := call(t, alone, "GET", "/readyz", ""); r.Status != 200 {
		t.Fatalf("a node without --join: %d %s", r.Status, r.Raw)
	}
}

// TestEndpointAndCapacity: GET /v1/endpoint on the client port names the least
// loaded live node, and a node at its --max-conns refuses with 503 naming it.
func TestEndpointAndCapacity(t *testing.T) {
	ns := startCluster(t, 2, func(i int, c *Config) {
		if i == 0 {
			c.Loop.MaxConns = 1
		}
	})
	a, b := ns[0], ns[1]
	dial(t, a, "first")
	endpoint := func() string {
		resp, err := http.Get("http://" + a.ClientAddrs()[0] + "/v1/endpoint")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var e map[string]string
		json.NewDecoder(resp.Body).Decode(&e)
		if resp.Header.Get("Access-Control-Allow-Origin") != "*" {
			t.Errorf("no CORS header on /v1/endpoint")
		}
		return e["endpoint"]
	}
	want := "ws://" + b.ClientAddrs()[0] + "/ws"
	testutil.WaitFor(t, 10*time.Second, "endpoint to name the idle node", func() bool { return endpoint() == want })

	_, resp, err := websocket.DefaultDialer.Dial(wsURL(a)+"?token="+testutil.Token(t, testSecret, "second"), nil)
	if err == nil || resp == nil || resp.StatusCode != 503 {
		t.Fatalf("over capacity: %v %v", err, resp)
	}
	body, _ := io.ReadAll(resp.Body)
	if !strings.Contains(string(body), b.ClientAddrs()[0]) {
		t.Fatalf("503 body %q does not name the other node", body)
	}
	if got := scrape(t, a, `longlink_handshake_failures_total{reason="over_capacity"}`); got != 1 {
		t.Fatalf("over_capacity failures = %v", got)
	}
}
