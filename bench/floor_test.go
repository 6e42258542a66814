package bench

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"longlink/internal/testutil"
)

func TestCPUPerPrecision(t *testing.T) {
	for _, c := range []struct {
		cpuS  float64
		n     int64
		nodes int
		want  string
	}{
		{0.63, 5000, 1, "126 ± 4 µs"},          // ±0.02 s over 5,000: the unit digit is the last one known
		{0.15, 19000, 1, "8 ± 1 µs"},           // a broadcast round: ±1 µs, so no decimal
		{0.01, 19000, 1, "under 1 µs"},         // a tick: too few items to say more
		{12.5, 3_000_000, 2, "4.17 ± 0.01 µs"}, // long runs earn their decimals (two at most)
		{0, 0, 1, "n/a (nothing counted)"},
	} {
		if got := cpuPer(c.cpuS, c.n, c.nodes); !strings.HasPrefix(got, c.want) {
			t.Errorf("cpuPer(%v, %d, %d) = %q, want %q...", c.cpuS, c.n, c.nodes, got, c.want)
		}
	}
	if got := perConn(-374); !strings.HasPrefix(got, "noise") {
		t.Errorf("perConn(-374) = %q, want noise", got)
	}
	if got := perConn(1234.4); got != "1234 B/conn" {
		t.Errorf("perConn(1234.4) = %q", got)
	}
}

func TestFloorOptions(t *testing.T) {
	base := []string{"--target", "127.0.0.1:1", "--api", "127.0.0.1:2", "--token-secret", "s", "--api-key", "k"}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"push", "--floor-target", "127.0.0.1:3"}, "go together"},
		{[]string{"reconnect", "--floor-target", "127.0.0.1:3", "--floor-api", "127.0.0.1:4"}, "not reconnect"},
		{[]string{"push", "--floor-target", "127.0.0.1:3", "--floor-api", "127.0.0.1:4", "--protocol", "v2"}, "plain protocol"},
		{[]string{"push", "--floor-target", "nope", "--floor-api", "127.0.0.1:4"}, "bad address"},
	} {
		_, err := parseOptions(append(c.args, base...), &strings.Builder{})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c.args, err, c.want)
		}
	}
}

// startFloorServer builds and starts the push floor (bench/floor -role push) on
// loopback ports.
func startFloorServer(t *testing.T) (client, api string) {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "floor")
	if out, err := exec.Command("go", "build", "-o", bin, "./floor").CombinedOutput(); err != nil {
		t.Skipf("cannot build the floor server: %v\n%s", err, out)
	}
	client, api = testutil.FreeAddr(t, "tcp"), testutil.FreeAddr(t, "tcp")
	cmd := exec.Command(bin, "-role", "push", "-client-addr", client, "-api-addr", api)
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, _ := bufio.NewReader(out).ReadString('\n')
	if !strings.HasPrefix(line, "push floor:") {
		t.Fatalf("floor server did not start: %q", line)
	}
	testutil.WaitFor(t, 10*time.Second, "the floor's API", func() bool { st, _ := testutil.Get("http://" + api + "/healthz"); return st == 200 })
	return client, api
}

// TestRealPushWithFloor runs push against the real binary and the floor server in one
// run: the report holds both, every delivery arrived in both, and the side-by-side
// block is printed.
func TestRealPushWithFloor(t *testing.T) {
	n := startRealNode(t, "")
	fc, fa := startFloorServer(t)
	jp, hp := filepath.Join(t.TempDir(), "f.json"), filepath.Join(t.TempDir(), "f.html")
	out := runBench(t, "push", "--target", n.Client, "--api", n.API, "--floor-target", fc, "--floor-api", fa,
		"--token-secret", itSecret, "--api-key", itKey, "--users", "40", "--conns-per-user", "5", "--callers", "8",
		"--push-rate", "300", "--duration", "1s", "--json", jp, "--html", hp)
	rep := readReport(t, jp)
	checkPush(t, rep, "open")
	if rep.Floor == nil || rep.Floor.Push == nil {
		t.Fatal("no floor in the report")
	}
	checkPush(t, rep.Floor, "open")
	if !strings.Contains(out, "== gateway vs floor") || !strings.Contains(out, "server CPU per push") {
		t.Errorf("no side-by-side block in:\n%s", out)
	}
	// The page's cards put each figure next to the floor's of the same run.
	page, err := os.ReadFile(hp)
	if err != nil {
		t.Fatal(err)
	}
	cards := cardsOf(t, string(page))
	wantIn(t, "pushes/s card", cardWith(t, cards, "pushes/s"), "open loop: ", "the schedule of 300/s",
		"floor "+rate(rep.Floor.Push.PushesPerS)+" · gateway ×", "(no target)")
	p99 := cardWith(t, cards, "push API call → client p99")
	wantIn(t, "p99 card", p99, "target ≤ 20 ms — not comparable: set for an open loop at 5,000 pushes/s, this run 300/s",
		fmt.Sprintf("floor %.1f ms · gateway ×", rep.Floor.Push.Latency.P99Ms), "(target ≤ ×2.00)")
	if !strings.Contains(p99, "— met") && !strings.Contains(p99, "— missed") {
		t.Errorf("the p99 against the floor is neither met nor missed: %s", p99)
	}
	wantIn(t, "CPU card", cardWith(t, cards, "server CPU per push"), "floor ")
	wantIn(t, "missing card", cardWith(t, cards, "missing deliveries"), "✓ every delivery arrived")
}

// TestRealPushRoom: push --room puts every connection in one room and pushes to it;
// every push reaches every connection.
func TestRealPushRoom(t *testing.T) {
	n := startRealNode(t, "")
	jp := filepath.Join(t.TempDir(), "r.json")
	runBench(t, "push", "--target", n.Client, "--api", n.API, "--token-secret", itSecret, "--api-key", itKey,
		"--users", "100", "--conns-per-user", "2", "--room", "busy", "--callers", "4", "--push-rate", "40", "--duration", "1s", "--json", jp)
	rep := readReport(t, jp)
	p := rep.Push
	if p == nil || p.Pushes == 0 || p.ExpectedDeliveries != p.Pushes*200 || p.Received != p.ExpectedDeliveries || p.Missing != 0 {
		t.Fatalf("room push: %+v", p)
	}
}
