package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"longlink/internal/testutil"
)

// These tests drive the real longlink binary, built from this module.

const itSecret, itKey = "bench-integration-secret-0123456789", "bench-integration-key"

// startRealNode starts `longlink serve` on loopback port-0 addresses, joining join
// unless it is empty; it skips the test when the binary does not build.
// startRealPair starts two clustered nodes and waits until both see each other.
func startRealPair(t testing.TB) (a, b *testutil.Node) {
	t.Helper()
	a = startRealNode(t, "")
	b = startRealNode(t, a.Gossip)
	for _, n := range []*testutil.Node{a, b} {
		testutil.WaitFor(t, 10*time.Second, "the nodes to form a cluster of 2", func() bool {
			_, body := testutil.Get("http://" + n.API + "/metrics")
			m, _ := testutil.ParseMetrics(body)
			return m[`longlink_cluster_members{state="alive"}`] == 2
		})
	}
	return a, b
}

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
	page, err := os.ReadFile(hp)
	if err != nil {
		t.Fatal(err)
	}
	cards := cardsOf(t, string(page))
	wantIn(t, "opened card", cardWith(t, cards, "connections opened"), "✓ all 400 requested")
	wantIn(t, "rate card", cardWith(t, cards, "connect rate"), "– target ≥ 20,000/s", "not comparable: set for 19,000 connections, this run opened 400")
	rss := cardWith(t, cards, "server RSS per connection")
	wantIn(t, "RSS card", rss, perConn(s.RSSPerConnBytes), "target ≤ 1,536 B/conn")
	if s.RSSPerConnBytes < 0 && !strings.Contains(rss, "not comparable: the figure is noise") {
		t.Errorf("negative RSS not shown as noise: %s", rss)
	}
	wantIn(t, "CPU card", cardWith(t, cards, "server CPU per connection opened"), cpuPerUs(s.CPUPerConnUs, 400, 1)[:5])
	opts := string(page[strings.Index(string(page), "<h2>Options</h2>"):])
	wantIn(t, "options", opts, "<th>--conns</th><td>400</td>", "<th>--duration</th><td>1s</td>",
		"<th>--rate</th><td>4,000 connections/s</td>", "<th>--workers</th><td>2</td>")
	if strings.Contains(opts, "_ns") {
		t.Errorf("raw options in:\n%s", opts)
	}
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
	a, b := startRealPair(t)
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

// checkV2 asserts every v2 push arrived in sequence: no duplicate, no gap.
// withPos is whether pushes carry positions (history on).
func checkV2(t *testing.T, rep *Report, withPos bool, received int64) {
	t.Helper()
	v := rep.V2
	if rep.Options.Protocol != "v2" || v == nil {
		t.Fatalf("protocol %q, v2 checks %+v", rep.Options.Protocol, v)
	}
	if v.Duplicates != 0 || v.Gaps != 0 || v.EpochChanges != 0 || v.Other != 0 {
		t.Errorf("v2 sequence broken: %+v", *v)
	}
	if want := int64(0); !withPos {
		if v.NoPosition != received {
			t.Errorf("history off: %d pushes without position, want all %d", v.NoPosition, received)
		}
	} else if v.NoPosition != want {
		t.Errorf("history on: %d pushes without position", v.NoPosition)
	}
}

// TestRealV2 runs broadcast and push (open and closed loop, history on and
// off) over the v2 protocol against the real binary.
func TestRealV2(t *testing.T) {
	n := startRealNode(t, "")
	dir := t.TempDir()
	jp := filepath.Join(dir, "b.json")
	out := runBench(t, "broadcast", "--target", n.Client, "--api", n.API, "--token-secret", itSecret, "--api-key", itKey,
		"--conns", "200", "--rounds", "2", "--protocol", "v2", "--workers", "2", "--json", jp)
	if !strings.Contains(out, "protocol") || !strings.Contains(out, "v2 (Sec-WebSocket-Protocol: longlink.v2") {
		t.Errorf("summary does not name the protocol:\n%s", out)
	}
	rep := readReport(t, jp)
	checkConnect(t, rep, 200)
	for _, r := range rep.Broadcast.Rounds {
		if r.Error != "" || r.TimedOut || r.Received != 200 || r.Delivered != 200 || r.LastMs <= 0 {
			t.Errorf("round %+v", r)
		}
	}
	if rep.Broadcast.Latency.Count != 400 {
		t.Errorf("latency counted %d deliveries, want 400 (stamps read from the envelopes)", rep.Broadcast.Latency.Count)
	}
	checkV2(t, rep, true, 400)

	for _, c := range []struct {
		mode    string
		history bool
	}{{"closed", true}, {"open", false}} {
		jp := filepath.Join(dir, c.mode+".json")
		args := []string{"push", "--target", n.Client, "--api", n.API, "--token-secret", itSecret, "--api-key", itKey,
			"--users", "25", "--conns-per-user", "2", "--callers", "8", "--duration", "1s", "--protocol", "v2", "--json", jp}
		if c.mode == "open" {
			args = append(args, "--push-rate", "500")
		}
		if !c.history {
			args = append(args, "--history=false")
		}
		out := runBench(t, args...)
		rep := readReport(t, jp)
		checkConnect(t, rep, 50)
		checkPush(t, rep, c.mode)
		checkV2(t, rep, c.history, rep.Push.Received)
		if rep.Options.History != c.history || !strings.Contains(out, map[bool]string{true: "history on", false: "history off"}[c.history]) {
			t.Errorf("history %v not in the report:\n%s", c.history, out)
		}
	}
}

// TestRealReconnect drops 50 v2 clients at once (2 per user), pushes 10 to
// each user while they are away and checks that every client gets exactly
// those 10 after reconnecting with ?since=.
func TestRealReconnect(t *testing.T) {
	n := startRealNode(t, "")
	jp := filepath.Join(t.TempDir(), "r.json")
	out := runBench(t, "reconnect", "--target", n.Client, "--api", n.API, "--token-secret", itSecret, "--api-key", itKey,
		"--conns", "50", "--conns-per-user", "2", "--messages", "10", "--workers", "2", "--round-timeout", "15s", "--json", jp)
	rep := readReport(t, jp)
	checkConnect(t, rep, 50)
	x := rep.Reconnect
	if x == nil {
		t.Fatalf("no reconnect result:\n%s", out)
	}
	if x.Clients != 50 || x.Users != 25 || x.Killed != 50 || x.WarmupPushes != 25 || x.WarmupReceived != 50 {
		t.Errorf("before the reconnect: %+v", *x)
	}
	if x.Pushed != 250 || x.Stored != 250 || len(x.PushErrors) != 0 {
		t.Errorf("pushes while away: pushed %d stored %d errors %v", x.Pushed, x.Stored, x.PushErrors)
	}
	if x.Reconnected != 50 || x.Failed != 0 || x.NoWelcome != 0 || x.Recovered != 50 || x.NotRecoveredFlag != 0 ||
		x.Missing != 0 || x.Duplicates != 0 || x.Gaps != 0 || x.EpochChanges != 0 || x.TimedOut {
		t.Errorf("reconnect: %+v", *x)
	}
	if x.Recovery.Count != 50 || x.AllRecoveredS <= 0 || x.AllRecoveredS*1e3+0.01 < x.Recovery.P99Ms || x.Recovery.P50Ms <= 0 {
		t.Errorf("recovery times: %+v, all %.3fs", x.Recovery, x.AllRecoveredS)
	}
	// The node replayed 10 messages to each of the 50 connections and refused none.
	if x.ServerRecoveredMessages != 500 || x.ServerNotRecovered != 0 {
		t.Errorf("server counts: %v replayed, %v refused", x.ServerRecoveredMessages, x.ServerNotRecovered)
	}
	for _, want := range []string{"recovery time", "all recovered", "recovered:false 0; missing 0; duplicates 0"} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
}

// TestRealClusterReconnect runs the storm over two joined nodes: clients
// alternate between them, pushes go through both APIs, and each stream's
// owner (either node) must replay what its users missed.
func TestRealClusterReconnect(t *testing.T) {
	a, b := startRealPair(t)
	jp := filepath.Join(t.TempDir(), "rc.json")
	runBench(t, "reconnect", "--target", a.Client, "--target", b.Client, "--api", a.API, "--api", b.API,
		"--token-secret", itSecret, "--api-key", itKey, "--conns", "60", "--messages", "5", "--round-timeout", "15s", "--json", jp)
	x := readReport(t, jp).Reconnect
	if x == nil || x.Pushed != 300 || x.Recovered != 60 || x.Missing != 0 || x.Duplicates != 0 || x.NotRecoveredFlag != 0 || x.Failed != 0 {
		t.Fatalf("cluster reconnect: %+v", x)
	}
	if x.ServerRecoveredMessages != 300 {
		t.Errorf("nodes replayed %v messages, want 300", x.ServerRecoveredMessages)
	}
}

// TestRealReconnectAfterKill: the clients' node is killed (--kill-pid) right after
// they drop; the pushes while they are away wait for the failover, and every client
// comes back to the other node (--reconnect-target) and recovers them all.
func TestRealReconnectAfterKill(t *testing.T) {
	a, b := startRealPair(t)
	jp := filepath.Join(t.TempDir(), "rk.json")
	out := runBench(t, "reconnect", "--target", a.Client, "--api", b.API, "--reconnect-target", b.Client,
		"--kill-pid", fmt.Sprint(a.Cmd.Process.Pid), "--token-secret", itSecret, "--api-key", itKey,
		"--conns", "40", "--messages", "5", "--round-timeout", "20s", "--json", jp)
	x := readReport(t, jp).Reconnect
	if x == nil || x.Pushed != 200 || x.Stored < 200 || x.Recovered != 40 || x.Missing != 0 || x.Duplicates != 0 ||
		x.NotRecoveredFlag != 0 || x.Failed != 0 {
		t.Fatalf("reconnect after a kill: %+v\n%s", x, out)
	}
	select {
	case <-a.Done:
	case <-time.After(5 * time.Second):
		t.Fatal("--kill-pid did not kill the node")
	}
}

// TestRealPushAck pushes with "ack":true and "wait" through two joined nodes: the
// clients acknowledge, the streams' owners (either node) apply the acks, and the
// API answers each push 200 complete once its user acknowledged. With one caller
// and one connection per user one push is in flight at a time, so every delivery
// is acknowledged by an ack of its own, and each reaches its owner uncoalesced:
// acks sent, deliveries and the nodes' longlink_acks_total agree exactly.
func TestRealPushAck(t *testing.T) {
	a, b := startRealPair(t)
	dir := t.TempDir()
	args := []string{"push", "--target", a.Client, "--target", b.Client, "--api", a.API, "--api", b.API,
		"--token-secret", itSecret, "--api-key", itKey, "--protocol", "v2", "--ack", "--wait", "5s", "--duration", "1s"}

	jp, hp := filepath.Join(dir, "ack1.json"), filepath.Join(dir, "ack1.html")
	out := runBench(t, append(args, "--users", "40", "--conns-per-user", "1", "--callers", "1", "--json", jp, "--html", hp)...)
	rep := readReport(t, jp)
	checkConnect(t, rep, 40)
	checkPush(t, rep, "closed")
	p := rep.Push
	checkV2(t, rep, true, p.Received) // an error answering an ack would count as "other"
	if !p.Ack || p.WaitS != 5 || p.Pushes < 10 {
		t.Fatalf("push: %+v", *p)
	}
	if p.Complete != p.Pushes || p.Incomplete != 0 || p.WaitRoundTrip == nil || p.WaitRoundTrip.Count != uint64(p.Pushes) {
		t.Errorf("wait answers: %d pushes, %d complete, %d incomplete, round trip %+v", p.Pushes, p.Complete, p.Incomplete, p.WaitRoundTrip)
	}
	if p.AcksSent != p.Received || p.AckWriteFails != 0 || p.ServerAcks != float64(p.AcksSent) {
		t.Errorf("acks: %d sent, %d deliveries, %d failed, server %v", p.AcksSent, p.Received, p.AckWriteFails, p.ServerAcks)
	}
	w := p.WaitRoundTrip
	if w.P50Ms <= 0 || w.P99Ms < w.P50Ms || w.MaxMs < w.P99Ms || w.MaxMs > 5000 {
		t.Errorf("acked round trip: %+v", *w)
	}
	for _, want := range []string{"acked round trip", "complete (200), 0 incomplete (202)", "longlink_acks_total"} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
	checkHTML(t, hp, 6)

	// Two connections per user and concurrent callers: a user's connections
	// each acknowledge (the owner coalesces their acks), and one read holding
	// several pushes is acknowledged once.
	jp = filepath.Join(dir, "ack2.json")
	runBench(t, append(args, "--users", "20", "--conns-per-user", "2", "--callers", "4", "--json", jp)...)
	rep = readReport(t, jp)
	checkPush(t, rep, "closed")
	p = rep.Push
	checkV2(t, rep, true, p.Received)
	if p.Complete != p.Pushes || p.Incomplete != 0 {
		t.Errorf("wait answers: %d pushes, %d complete, %d incomplete", p.Pushes, p.Complete, p.Incomplete)
	}
	if p.AcksSent < p.Pushes || p.AcksSent > p.Received || p.ServerAcks < 1 || p.ServerAcks > float64(p.AcksSent) {
		t.Errorf("acks: %d sent, %d pushes, %d deliveries, server %v", p.AcksSent, p.Pushes, p.Received, p.ServerAcks)
	}
}
