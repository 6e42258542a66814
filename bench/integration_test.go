package bench

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// These tests drive the real longlink binary, built from this module.

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
	buildDir  string
)

func longlinkBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "longlink-bench-it")
		if buildErr != nil {
			return
		}
		binPath = filepath.Join(buildDir, "longlink")
		cmd := exec.Command("go", "build", "-o", binPath, "longlink")
		cmd.Dir = ".."
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build longlink: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Skipf("cannot build the real server, skipping integration test: %v", buildErr)
	}
	return binPath
}

const itSecret, itKey = "bench-integration-secret-0123456789", "bench-integration-key"

type realNode struct {
	client, api, gossip string
	cmd                 *exec.Cmd
	log                 *bytes.Buffer
}

// startRealNode starts `longlink serve` on free loopback ports. Free ports
// are found by binding :0 and closing, which can race with other processes,
// so start-up is retried a few times.
func startRealNode(t testing.TB, join string) *realNode {
	t.Helper()
	bin := longlinkBinary(t)
	var lastLog string
	for attempt := 0; attempt < 5; attempt++ {
		n := &realNode{client: freeAddr(t), api: freeAddr(t), gossip: freeAddr(t), log: &bytes.Buffer{}}
		args := []string{"serve", "--client-addr", n.client, "--api-addr", n.api, "--token-secret", itSecret,
			"--api-key", itKey, "--gossip-addr", n.gossip, "--forward-addr", freeAddr(t), "--demo=false"}
		if join != "" {
			args = append(args, "--join", join)
		}
		n.cmd = exec.Command(bin, args...)
		n.cmd.Stdout, n.cmd.Stderr = n.log, n.log
		if err := n.cmd.Start(); err != nil {
			t.Fatalf("start longlink: %v", err)
		}
		exited := make(chan struct{})
		go func() { _ = n.cmd.Wait(); close(exited) }()
		ready := poll(10*time.Second, 50*time.Millisecond, func() bool {
			select {
			case <-exited:
				return true
			default:
			}
			resp, err := http.Get("http://" + n.api + "/metrics")
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		})
		select {
		case <-exited:
			lastLog = n.log.String()
			continue // probably a port race: try new ports
		default:
		}
		if !ready {
			_ = n.cmd.Process.Kill()
			<-exited
			t.Fatalf("longlink did not become ready in 10s:\n%s", n.log.String())
		}
		t.Cleanup(func() {
			_ = n.cmd.Process.Signal(os.Interrupt)
			select {
			case <-exited:
			case <-time.After(15 * time.Second):
				_ = n.cmd.Process.Kill()
				<-exited
			}
		})
		return n
	}
	t.Fatalf("longlink exited at start-up 5 times; last log:\n%s", lastLog)
	return nil
}

func TestRealConnect(t *testing.T) {
	n := startRealNode(t, "")
	dir := t.TempDir()
	jp, hp := filepath.Join(dir, "c.json"), filepath.Join(dir, "c.html")
	runBench(t, "connect", "--target", n.client, "--api", n.api, "--token-secret", itSecret,
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
	runBench(t, "broadcast", "--target", n.client, "--api", n.api, "--token-secret", itSecret, "--api-key", itKey,
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
		args := []string{"push", "--target", n.client, "--api", n.api, "--token-secret", itSecret, "--api-key", itKey,
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
	b := startRealNode(t, a.gossip)
	ok := poll(10*time.Second, 100*time.Millisecond, func() bool {
		resp, err := http.Get("http://" + a.api + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var buf bytes.Buffer
		_, _ = buf.ReadFrom(resp.Body)
		return strings.Contains(buf.String(), `longlink_cluster_members{state="alive"} 2`)
	})
	if !ok {
		t.Fatalf("nodes did not form a cluster of 2 within 10s\nnode a:\n%s\nnode b:\n%s", a.log, b.log)
	}
	dir := t.TempDir()
	jp := filepath.Join(dir, "cluster.json")
	runBench(t, "push", "--target", a.client, "--target", b.client, "--api", a.api, "--api", b.api,
		"--token-secret", itSecret, "--api-key", itKey, "--users", "50", "--conns-per-user", "2",
		"--callers", "8", "--duration", "1s", "--json", jp)
	rep := readReport(t, jp)
	checkConnect(t, rep, 100)
	checkPush(t, rep, "closed")
	if rep.Server.AfterOpen.Nodes != 2 || rep.Server.AfterOpen.Connections != 100 {
		t.Errorf("server sample over the cluster: %+v", rep.Server.AfterOpen)
	}
}
