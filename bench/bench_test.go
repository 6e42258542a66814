package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"longlink/internal/testutil"
)

// TestMain doubles as the worker entry point: the coordinator re-executes
// os.Executable(), which under `go test` is this test binary.
func TestMain(m *testing.M) {
	if os.Getenv(WorkerEnv) == "1" {
		if err := RunWorker(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "worker:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	base := runtime.NumGoroutine()
	code := testutil.Run(m) // and the real binary, if a test built it, is removed
	if code == 0 {
		metricsClient.CloseIdleConnections()
		if !poll(5*time.Second, 20*time.Millisecond, func() bool { return runtime.NumGoroutine() <= base+2 }) {
			buf := make([]byte, 1<<20)
			fmt.Fprintf(os.Stderr, "goroutine leak: %d running, %d at start\n%s", runtime.NumGoroutine(), base,
				buf[:runtime.Stack(buf, true)])
			code = 1
		}
	}
	os.Exit(code)
}

// runBench runs Main with args and returns stdout, failing on a non-zero exit.
func runBench(t testing.TB, args ...string) string {
	t.Helper()
	var out, errb bytes.Buffer
	if code := Main(args, &out, &errb); code != 0 {
		t.Fatalf("bench %v exited %d\nstdout:\n%s\nstderr:\n%s", args, code, out.String(), errb.String())
	}
	return out.String()
}

func readReport(t testing.TB, path string) *Report {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var rep Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatalf("JSON report does not parse: %v", err)
	}
	return &rep
}

func checkHTML(t *testing.T, path string, wantCharts int) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	if n := strings.Count(s, "<svg class=\"chart\""); n < wantCharts {
		t.Errorf("HTML has %d svg charts, want at least %d", n, wantCharts)
	}
	for _, bad := range []string{"<script", "http://cdn", "https://"} {
		if strings.Contains(s, bad) {
			t.Errorf("HTML report is not self-contained: contains %q", bad)
		}
	}
	if !strings.Contains(s, "<polyline") {
		t.Error("HTML report has no line chart data")
	}
}

// checkConnect asserts the connection figures are complete and consistent.
func checkConnect(t *testing.T, rep *Report, conns int) {
	t.Helper()
	c := rep.Connect
	if c.Requested != int64(conns) || c.Attempted != int64(conns) || c.Opened != int64(conns) || c.Failed != 0 {
		t.Fatalf("connect: requested %d attempted %d opened %d failed %d (%v), want all %d opened",
			c.Requested, c.Attempted, c.Opened, c.Failed, c.Failures, conns)
	}
	if c.Handshake.Count != uint64(conns) || c.Handshake.P50Ms <= 0 || c.Handshake.P99Ms < c.Handshake.P50Ms || c.Handshake.MaxMs < c.Handshake.P99Ms {
		t.Errorf("handshake summary not sane: %+v", c.Handshake)
	}
	if c.RatePerS <= 0 || c.DurationS <= 0 {
		t.Errorf("connect rate %v over %vs", c.RatePerS, c.DurationS)
	}
	if rep.Env.Cores <= 0 || rep.Env.Kernel == "" || rep.Env.NoFileHard == 0 || rep.Workers < 1 {
		t.Errorf("environment incomplete: %+v workers %d", rep.Env, rep.Workers)
	}
	if rep.Client.CPUS <= 0 {
		t.Errorf("bench CPU not measured: %+v", rep.Client)
	}
	if len(rep.Timeline) == 0 {
		t.Error("no timeline samples")
	}
}

func TestConnectFake(t *testing.T) {
	n := startFakeNode(t, "sec", "key")
	dir := t.TempDir()
	jp, hp := filepath.Join(dir, "r.json"), filepath.Join(dir, "r.html")
	out := runBench(t, "connect", "--target", n.wsAddr, "--api", n.apiAddr, "--token-secret", "sec",
		"--conns", "300", "--rate", "3000", "--duration", "1500ms", "--workers", "2", "--source-ips", "127.0.0.2-127.0.0.4",
		"--ping-interval", "300ms", "--json", jp, "--html", hp)
	rep := readReport(t, jp)
	checkConnect(t, rep, 300)
	// Every client answered the server's ping, and kept itself alive with
	// its own pings during the 1.5 s hold (one per 300 ms, swept each second).
	if got := n.pongs.Load(); got != 300 {
		t.Errorf("server got %d pongs to its pings, want 300", got)
	}
	if got := n.pings.Load(); got < 300 {
		t.Errorf("server got %d client pings during the hold, want at least 300", got)
	}
	if rep.Connect.OpenAtEnd != 300 || rep.Connect.Dropped != 0 {
		t.Errorf("after hold: open %d dropped %d (%v)", rep.Connect.OpenAtEnd, rep.Connect.Dropped, rep.Connect.Drops)
	}
	if rep.Workers != 2 || len(rep.Options.SourceIPs) != 3 {
		t.Errorf("workers %d source IPs %v", rep.Workers, rep.Options.SourceIPs)
	}
	// The fake node reports 10,000 B RSS and 4,000 B heap per connection.
	if s := rep.Server; !s.Available || s.RSSPerConnBytes < 9000 || s.RSSPerConnBytes > 11000 || s.HeapPerConnBytes < 3500 || s.HeapPerConnBytes > 4500 {
		t.Errorf("server memory per connection: %+v", s)
	}
	if rep.Client.WorkersCPUS <= 0 {
		t.Errorf("workers' CPU not reported: %+v", rep.Client)
	}
	checkHTML(t, hp, 3)
	for _, want := range []string{"connections", "handshake", "server memory", "bench overhead"} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
}

func TestConnectFailuresByReason(t *testing.T) {
	n := startFakeNode(t, "right", "key")
	dir := t.TempDir()
	jp := filepath.Join(dir, "r.json")
	runBench(t, "connect", "--target", n.wsAddr, "--token-secret", "wrong", "--conns", "50", "--duration", "0s",
		"--in-process", "--json", jp)
	rep := readReport(t, jp)
	if rep.Connect.Opened != 0 || rep.Connect.Failed != 50 || rep.Connect.Failures["http_401"] != 50 {
		t.Fatalf("want 50 failures http_401, got opened %d failed %d %v", rep.Connect.Opened, rep.Connect.Failed, rep.Connect.Failures)
	}
	if !strings.Contains(strings.Join(rep.Notes, " "), "no --api") {
		t.Errorf("missing note about unmeasured server memory: %v", rep.Notes)
	}
}

func TestConnectRefusedNamesLimit(t *testing.T) {
	// A port nobody listens on: every connect is refused and the report
	// names the likely cause instead of failing obscurely.
	addr := testutil.FreeAddr(t, "tcp")
	dir := t.TempDir()
	jp := filepath.Join(dir, "r.json")
	var out, errb bytes.Buffer
	if code := Main([]string{"connect", "--target", addr, "--token-secret", "s", "--conns", "20", "--duration", "0s", "--in-process", "--json", jp}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	rep := readReport(t, jp)
	if rep.Connect.Failures["ECONNREFUSED"] != 20 || len(rep.Limits) == 0 || rep.Advice == "" {
		t.Fatalf("failures %v limits %v", rep.Connect.Failures, rep.Limits)
	}
	if !strings.Contains(out.String(), "fs.nr_open") || !strings.Contains(out.String(), "ulimit -n 1100000") {
		t.Errorf("limit advice not printed:\n%s", out.String())
	}
}

func TestBroadcastFake(t *testing.T) {
	n := startFakeNode(t, "sec", "key")
	dir := t.TempDir()
	jp, hp := filepath.Join(dir, "b.json"), filepath.Join(dir, "b.html")
	runBench(t, "broadcast", "--target", n.wsAddr, "--api", n.apiAddr, "--token-secret", "sec", "--api-key", "key",
		"--conns", "200", "--rounds", "3", "--json", jp, "--html", hp)
	rep := readReport(t, jp)
	checkConnect(t, rep, 200)
	b := rep.Broadcast
	if b == nil || len(b.Rounds) != 3 {
		t.Fatalf("broadcast rounds: %+v", b)
	}
	for _, r := range b.Rounds {
		if r.Error != "" || r.TimedOut || r.Expected != 200 || r.Received != 200 || r.Delivered != 200 {
			t.Errorf("round %d incomplete: %+v", r.Round, r)
		}
		if r.FirstMs < 0 || r.P50Ms < r.FirstMs || r.P99Ms < r.P50Ms || r.LastMs < r.P99Ms || r.LastMs <= 0 || r.RecipientsPerS <= 0 {
			t.Errorf("round %d figures not sane: %+v", r.Round, r)
		}
	}
	if b.Latency.Count != 600 {
		t.Errorf("latency histogram counted %d messages, want 600", b.Latency.Count)
	}
	checkHTML(t, hp, 4)
}

func TestPushClosedLoopFake(t *testing.T) {
	n := startFakeNode(t, "sec", "key")
	dir := t.TempDir()
	jp := filepath.Join(dir, "p.json")
	runBench(t, "push", "--target", n.wsAddr, "--api", n.apiAddr, "--token-secret", "sec", "--api-key", "key",
		"--users", "50", "--conns-per-user", "4", "--callers", "8", "--duration", "1s", "--size", "64", "--json", jp)
	rep := readReport(t, jp)
	checkConnect(t, rep, 200)
	checkPush(t, rep, "closed")
}

func TestPushOpenLoopFake(t *testing.T) {
	n := startFakeNode(t, "sec", "key")
	dir := t.TempDir()
	jp, hp := filepath.Join(dir, "p.json"), filepath.Join(dir, "p.html")
	runBench(t, "push", "--target", n.wsAddr, "--api", n.apiAddr, "--token-secret", "sec", "--api-key", "key",
		"--users", "40", "--conns-per-user", "2", "--callers", "8", "--duration", "1s", "--push-rate", "300", "--json", jp, "--html", hp)
	rep := readReport(t, jp)
	checkPush(t, rep, "open")
	if p := rep.Push; p.Pushes+p.BacklogSkipped < 200 || p.Pushes > 330 {
		t.Errorf("open loop at 300/s for 1s sent %d (skipped %d)", p.Pushes, p.BacklogSkipped)
	}
	checkHTML(t, hp, 5)
}

func checkPush(t *testing.T, rep *Report, mode string) {
	t.Helper()
	p := rep.Push
	if p == nil || p.Mode != mode {
		t.Fatalf("push result: %+v", p)
	}
	if p.Pushes <= 0 || len(p.Errors) != 0 {
		t.Fatalf("pushes %d errors %v", p.Pushes, p.Errors)
	}
	// Every push reaches all conns of its user: every delivery is counted.
	if p.ExpectedDeliveries != p.Pushes*int64(p.ConnsPerUser) || p.Received != p.ExpectedDeliveries || p.Missing != 0 {
		t.Errorf("pushes %d expected %d received %d missing %d", p.Pushes, p.ExpectedDeliveries, p.Received, p.Missing)
	}
	if p.Latency.Count != uint64(p.Received) || p.Latency.P50Ms <= 0 || p.Latency.P99Ms < p.Latency.P50Ms || p.Latency.MaxMs < p.Latency.P99Ms {
		t.Errorf("latency: %+v", p.Latency)
	}
	if p.APILatency.Count != uint64(p.Pushes) || p.PushesPerS <= 0 || p.DeliveriesPerS <= 0 || p.ClientCPUPerMsgUs <= 0 {
		t.Errorf("push figures: %+v", p)
	}
}

func TestUsageErrors(t *testing.T) {
	f := func(want string, args ...string) {
		t.Helper()
		var out, errb bytes.Buffer
		if code := Main(args, &out, &errb); code != 2 {
			t.Errorf("%v: exit %d, want 2", args, code)
		}
		if !strings.Contains(errb.String(), want) {
			t.Errorf("%v: stderr lacks %q:\n%s", args, want, errb.String())
		}
	}
	f("missing scenario")
	f("unknown scenario", "flood")
	f("--target", "connect", "--token-secret", "s")
	f("--token-secret", "connect", "--target", "127.0.0.1:1")
	f("--api", "push", "--target", "127.0.0.1:1", "--token-secret", "s")
	f("--api-key", "broadcast", "--target", "127.0.0.1:1", "--api", "127.0.0.1:2", "--token-secret", "s")
	f("source-ips", "connect", "--target", "127.0.0.1:1", "--token-secret", "s", "--source-ips", "127.0.0.9-127.0.0.2")

	var out, errb bytes.Buffer
	if code := Main([]string{"--help"}, &out, &errb); code != 0 || !strings.Contains(errb.String(), "Examples:") ||
		!strings.Contains(errb.String(), "--push-rate") {
		t.Errorf("--help: exit %d\n%s", code, errb.String())
	}
}

func TestWorkerProtocolErrors(t *testing.T) {
	in := strings.NewReader("{bad json\n{\"op\":\"nope\"}\n{\"op\":\"open\"}\n{\"op\":\"close\"}\n")
	var out bytes.Buffer
	if err := RunWorker(in, &out); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 4 {
		t.Fatalf("want 4 answers, got %d:\n%s", len(lines), out.String())
	}
	for i, want := range []string{"bad request", "unknown op", "open without spec", ""} {
		var st WorkerStats
		if err := json.Unmarshal([]byte(lines[i]), &st); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(st.Err, want) || (want == "" && st.Err != "") {
			t.Errorf("answer %d: err %q, want %q", i, st.Err, want)
		}
	}
}

func TestRunCancelled(t *testing.T) {
	n := startFakeNode(t, "sec", "key")
	o, err := parseOptions([]string{"connect", "--target", n.wsAddr, "--token-secret", "sec", "--conns", "20", "--duration", "1h", "--in-process"}, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var out bytes.Buffer
	done := make(chan error, 1)
	go func() { done <- Run(ctx, o, &out, &out) }()
	time.AfterFunc(1500*time.Millisecond, cancel)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if !strings.Contains(out.String(), "interrupted during hold") {
		t.Errorf("no interruption note:\n%s", out.String())
	}
}
