package testutil

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var build struct {
	once      sync.Once
	dir, path string
	err       error
}

// BuildBinary builds the longlink binary (the module's main package) once per test
// process and returns its path; Run removes it when the tests are done.
// LONGLINK_TEST_BINARY names a prebuilt one instead (say, built with -race, to run
// the tests that start real nodes against it).
func BuildBinary() (string, error) {
	if p := os.Getenv("LONGLINK_TEST_BINARY"); p != "" {
		UseBinary(p)
	}
	build.once.Do(func() {
		if build.dir, build.err = os.MkdirTemp("", "longlink-test-bin-"); build.err != nil {
			return
		}
		build.path = filepath.Join(build.dir, "longlink")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		// By import path, so that it builds from any package's directory.
		if out, err := exec.CommandContext(ctx, "go", "build", "-o", build.path, "longlink").CombinedOutput(); err != nil {
			build.err = fmt.Errorf("go build longlink: %v\n%s", err, out)
		}
	})
	return build.path, build.err
}

// UseBinary makes BuildBinary return path, a prebuilt binary, instead of building
// one. Call it from TestMain, before the tests run.
func UseBinary(path string) { build.once.Do(func() { build.path = path }) }

// Binary is BuildBinary, failing t if the build fails.
func Binary(t testing.TB) string {
	t.Helper()
	path, err := BuildBinary()
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// Run runs the tests and then removes the binary BuildBinary built, if any. Call it
// from TestMain, os.Exit(testutil.Run(m)), where Main is not called.
func Run(m *testing.M) int {
	code := m.Run()
	if build.dir != "" {
		os.RemoveAll(build.dir)
	}
	return code
}

// Node is a `longlink serve` process running in the background, with the addresses
// its banner printed (host:port; Gossip and Forward are empty on a standalone node).
type Node struct {
	Cmd                          *exec.Cmd
	Client, API, Gossip, Forward string
	Out                          *SyncBuffer   // stderr, and stdout after the banner
	Done                         chan struct{} // closed once the process has exited
	Err                          error         // its exit status, once Done is closed
}

// StartNode runs `longlink serve args...` with env added to the environment and
// waits for its banner. The process is killed when the test ends, and its output
// logged if the test failed.
func StartNode(t testing.TB, env []string, args ...string) *Node {
	t.Helper()
	n, err := TryStartNode(t, env, args...)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TryStartNode is StartNode returning the error, for callers that retry (a port
// just closed by a stopped node can take a moment to free up).
func TryStartNode(t testing.TB, env []string, args ...string) (*Node, error) {
	t.Helper()
	cmd := exec.Command(Binary(t), append([]string{"serve"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	n := &Node{Cmd: cmd, Out: &SyncBuffer{}, Done: make(chan struct{})}
	cmd.Stderr = n.Out
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("cannot start longlink: %w", err)
	}
	t.Cleanup(func() {
		n.Kill()
		if t.Failed() {
			t.Logf("longlink serve %v output:\n%s", args, n.Out.String())
		}
	})
	banner := make(chan struct{})
	go func() {
		n.readBanner(bufio.NewScanner(stdout))
		close(banner)
		io.Copy(n.Out, stdout)
		n.Err = cmd.Wait() // after the last read from the pipe, as os/exec requires
		close(n.Done)
	}()
	select {
	case <-banner:
	case <-time.After(time.Minute):
		n.Kill() // and so the banner reader is done
	}
	if n.API == "" {
		n.Kill()
		return nil, fmt.Errorf("longlink serve %v did not start (%v):\n%s", args, n.Err, n.Out.String())
	}
	return n, nil
}

// readBanner reads the banner's address lines, up to the cluster line, its last.
func (n *Node) readBanner(sc *bufio.Scanner) {
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		f := strings.Fields(line)
		switch {
		case strings.HasPrefix(line, "clients:") && len(f) >= 2:
			n.Client = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSuffix(f[1], ","), "ws://"), "/ws")
		case strings.HasPrefix(line, "api:") && len(f) >= 2:
			n.API = strings.TrimPrefix(f[1], "http://")
		case strings.HasPrefix(line, "cluster:"):
			if len(f) >= 4 && f[2] == "forwarding" {
				n.Gossip, n.Forward = strings.TrimSuffix(f[1], ","), f[3]
			}
			return
		}
	}
}

// Kill kills the process, if it is still running, and waits for it to exit.
func (n *Node) Kill() {
	select {
	case <-n.Done:
		return
	default:
	}
	n.Cmd.Process.Kill()
	<-n.Done
}

// Stop sends SIGTERM, the production shutdown path, and fails t unless the process
// exits cleanly within d.
func (n *Node) Stop(t testing.TB, d time.Duration) {
	t.Helper()
	if err := n.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	n.WaitExit(t, d)
}

// WaitExit fails t unless the process exits cleanly within d; past d it is killed.
func (n *Node) WaitExit(t testing.TB, d time.Duration) {
	t.Helper()
	select {
	case <-n.Done:
		if n.Err != nil {
			t.Fatalf("longlink exited with %v\n%s", n.Err, n.Out.String())
		}
	case <-time.After(d):
		n.Kill()
		t.Fatalf("longlink did not exit within %v\n%s", d, n.Out.String())
	}
}
