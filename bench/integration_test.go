package bench

import (
	"path/filepath"
	"testing"
	"time"

	"longlink/internal/testutil"
)

// These tests drive the real longlink binary, built from this module.

const itSecret, itKey = "bench-integration-secret-0123456789", "bench-integration-key"

// startRealNode starts `longlink serve` on loopback port-0 addresses, joining join
// unless it is empty; it skips the test when the binary does not build.
func startRealNode(t testing.TB, join string) *testutil.Node {
	t.Helper()
	if _, err := testutil.BuildBinary(); err != nil {
		t.Skipf("cannot build the real server, skipping integration test: %v", err)
	}
	args := []string{"--client-addr", "127.0.0.1:0", "--api-addr", "127.0.0.1:0", "--token-secret", itSecret,
		"--api-key", itKey, "--gossip-addr", "127.0.0.1:0", "--forward-addr", "127.0.0.1:0", "--demo=false"}
	if join != "" {
		args = append(args, "--join", join)
	}
	return testutil.StartNode(t, nil, args...)
}

func TestRealConnect(t *testing.T) {
	n := startRealNode(t, "")
	dir := t.TempDir()
	jp, hp := filepath.Join(dir, "c.json"), filepath.Join(dir, "c.html")
	runBench(t, "connect", "--target", n.Client, "--api", n.API, "--token-secret", itSecret,
		"--conns", "400", "--rate", "4000", "--duration", "1s", "--workers", "2", "--json", jp, "--html", hp)
	rep := readReport(t, jp)
	checkConnect(t, rep, 400)
	if rep.Connect.OpenAtEnd != 400 {
		t.Errorf("open at end %d, drops %v", rep.Connect.OpenAtEnd, rep.Connect.Drops)
	}
	s := rep.Server
	if !s.Available || s.AfterOpen.Connections != 400 || s.HeapPerConnBytes <= 0 || s.HeapPerConnBytes > 1<<20 {
		t.Errorf("server figures: %+v", s)
	}
	checkHTML(t, hp, 3)
}

func TestRealBroadcast(t *testing.T) {
	n := startRealNode(t, "")
	dir := t.TempDir()
	jp := filepath.Join(dir, "b.json")
	runBench(t, "broadcast", "--target", n.Client, "--api", n.API, "--token-secret", itSecret, "--api-key", itKey,
		"--conns", "300", "--rounds", "3", "--json", jp)
	rep := readReport(t, jp)
	checkConnect(t, rep, 300)
	for _, r := range rep.Broadcast.Rounds {
		if r.Error != "" || r.TimedOut || r.Received != 300 || r.Delivered != 300 || r.LastMs < r.FirstMs || r.LastMs <= 0 {
			t.Errorf("round %+v", r)
		}
	}
	if rep.Broadcast.Latency.Count != 900 {
		t.Errorf("counted %d deliveries, want 900", rep.Broadcast.Latency.Count)
	}
}

func TestRealPush(t *testing.T) {
	n := startRealNode(t, "")
	dir := t.TempDir()
	for _, mode := range []string{"closed", "open"} {
		jp := filepath.Join(dir, mode+".json")
		args := []string{"push", "--target", n.Client, "--api", n.API, "--token-secret", itSecret, "--api-key", itKey,
			"--users", "60", "--conns-per-user", "5", "--callers", "16", "--duration", "1s", "--json", jp}
		if mode == "open" {
			args = append(args, "--push-rate", "500")
		}
		runBench(t, args...)
		checkPush(t, readReport(t, jp), mode)
	}
}

// TestRealCluster spreads clients over two joined nodes and pushes through
// both API addresses: every delivery must arrive wherever the user is.
func TestRealCluster(t *testing.T) {
	a := startRealNode(t, "")
	b := startRealNode(t, a.Gossip)
	testutil.WaitFor(t, 10*time.Second, "the nodes to form a cluster of 2", func() bool {
		_, body := testutil.Get("http://" + a.API + "/metrics")
		m, _ := testutil.ParseMetrics(body)
		return m[`longlink_cluster_members{state="alive"}`] == 2
	})
	dir := t.TempDir()
	jp := filepath.Join(dir, "cluster.json")
	runBench(t, "push", "--target", a.Client, "--target", b.Client, "--api", a.API, "--api", b.API,
		"--token-secret", itSecret, "--api-key", itKey, "--users", "50", "--conns-per-user", "2",
		"--callers", "8", "--duration", "1s", "--json", jp)
	rep := readReport(t, jp)
	checkConnect(t, rep, 100)
	checkPush(t, rep, "closed")
	if rep.Server.AfterOpen.Nodes != 2 || rep.Server.AfterOpen.Connections != 100 {
		t.Errorf("server sample over the cluster: %+v", rep.Server.AfterOpen)
	}
}
