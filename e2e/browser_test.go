package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"longlink/auth"
	"longlink/internal/testutil"
)

// prodFlags configure a node as in production: fixed secrets, so no dev tokens.
// --demo-push enables the page's push form, off by default once an API key is set.
var prodFlags = []string{"--token-secret", tokenSecret, "--api-key", apiKey, "--demo-push"}

const (
	tokenSecret    = "e2e-token-secret-0123456789abcdef"
	apiKey         = "e2e-api-key"
	defaultBrowser = "/usr/bin/chromium"
)

// TestBrowserPushAndReconnect is the whole user story in a real browser: the demo
// page connects, receives a push sent to the API, survives a server restart (1001,
// then refused connections, then the node is back on the same ports) and receives
// pushes again, including one sent from the page's own form.
func TestBrowserPushAndReconnect(t *testing.T) {
	chromium := requireTools(t)
	bin := buildBinary(t)

	srv := startServerOnFreePorts(t, bin, prodFlags...)
	drv := startDriver(t, chromium, "http://"+srv.apiAddr+"/demo/?minBackoffMs=100&maxBackoffMs=1000")

	// The node runs with --token-secret, so it mints no dev tokens: paste one, as a
	// production user would.
	tok, err := auth.Mint([]byte(tokenSecret), "42", nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	drv.do(t, map[string]any{"cmd": "open", "user": "42", "token": tok, "timeoutMs": 20000})
	// The node agrees: one connection, one user (docs/metrics.md).
	srv.waitMetric(t, "longlink_connections", 1)
	srv.waitMetric(t, "longlink_users", 1)

	nonce := time.Now().UnixNano()
	first := fmt.Sprintf("hello-e2e-1-%d", nonce)
	srv.push(t, `{"to":{"users":["42"]},"data":"`+first+`"}`)
	drv.do(t, map[string]any{"cmd": "expect", "text": first})

	srv.stop(t)
	drv.do(t, map[string]any{"cmd": "status", "not": "open"})
	// A draining node says "going away", which the client answers by reconnecting.
	drv.do(t, map[string]any{"cmd": "expectLog", "text": "close code=1001"})
	srv = startServer(t, bin, srv.clientAddr, srv.apiAddr, prodFlags...)
	drv.do(t, map[string]any{"cmd": "status", "is": "open", "timeoutMs": 20000})
	srv.waitMetric(t, "longlink_connections", 1)

	second := fmt.Sprintf("hello-e2e-2-%d", nonce)
	srv.push(t, `{"to":{"all":true},"data":"`+second+`"}`)
	drv.do(t, map[string]any{"cmd": "expect", "text": second})

	third := fmt.Sprintf("hello-e2e-3-%d", nonce)
	drv.do(t, map[string]any{"cmd": "push", "text": third, "target": "user"})
	drv.do(t, map[string]any{"cmd": "expect", "text": third})
}

// TestBrowserDevMode runs a node the way a newcomer does, with no secrets: the page
// fetches dev tokens from /demo/token, finds the node through GET /v1/endpoint
// (cross-origin, so CORS must allow it) and pushes through the same-origin proxy.
func TestBrowserDevMode(t *testing.T) {
	chromium := requireTools(t)
	bin := buildBinary(t)

	srv := startServerOnFreePorts(t, bin)
	drv := startDriver(t, chromium, "http://"+srv.apiAddr+"/demo/?user=7")
	drv.do(t, map[string]any{"cmd": "open", "user": "7", "timeoutMs": 20000})
	srv.waitMetric(t, "longlink_connections", 1)

	nonce := time.Now().UnixNano()
	toUser := fmt.Sprintf("dev-user-%d", nonce)
	drv.do(t, map[string]any{"cmd": "push", "text": toUser, "target": "user"})
	drv.do(t, map[string]any{"cmd": "expect", "text": toUser})
	toAll := fmt.Sprintf("dev-all-%d", nonce)
	drv.do(t, map[string]any{"cmd": "push", "text": toAll, "target": "all"})
	drv.do(t, map[string]any{"cmd": "expect", "text": toAll})
	drv.do(t, map[string]any{"cmd": "expectLog", "text": "open ws://" + srv.clientAddr + "/ws"})
}

// requireTools returns the Chromium path, or skips (fails under LONGLINK_E2E=1) with
// the install command when the browser, node or playwright-core is missing.
func requireTools(t *testing.T) string {
	t.Helper()
	chromium := os.Getenv("LONGLINK_CHROMIUM")
	if chromium == "" {
		chromium = defaultBrowser
	}
	var missing []string
	if _, err := os.Stat(chromium); err != nil {
		missing = append(missing, fmt.Sprintf("%s (apt-get install -y chromium)", chromium))
	}
	if _, err := exec.LookPath("node"); err != nil {
		missing = append(missing, "node (apt-get install -y nodejs npm)")
	}
	if _, err := os.Stat(filepath.Join("node_modules", "playwright-core", "package.json")); err != nil {
		missing = append(missing, "e2e/node_modules/playwright-core (cd e2e && npm ci)")
	}
	if len(missing) > 0 {
		msg := "browser e2e test needs: " + strings.Join(missing, ", ")
		if os.Getenv("LONGLINK_E2E") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg + "; set LONGLINK_E2E=1 to make this a failure")
	}
	return chromium
}

// The binary is built once per test run and removed by TestMain.
var (
	buildOnce sync.Once
	buildDir  string
	builtBin  string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

func buildBinary(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("LONGLINK_E2E_BINARY"); bin != "" {
		return bin
	}
	buildOnce.Do(func() {
		if buildDir, buildErr = os.MkdirTemp("", "longlink-e2e-"); buildErr != nil {
			return
		}
		builtBin = filepath.Join(buildDir, "longlink")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "build", "-o", builtBin, ".")
		cmd.Dir = ".." // the module root, where main.go lives
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return builtBin
}

// server is one running `longlink serve` process.
type server struct {
	clientAddr, apiAddr string
	cmd                 *exec.Cmd
	out                 *testutil.SyncBuffer
	exited              chan struct{} // closed when Wait returned
	waitErr             error
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("cannot find a free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startServerOnFreePorts retries with new ports: a port found free can be taken by
// another process before the server binds it.
func startServerOnFreePorts(t *testing.T, bin string, flags ...string) *server {
	t.Helper()
	var lastErr error
	for range 3 {
		s, err := tryStartServer(t, bin, freeAddr(t), freeAddr(t), flags)
		if err == nil {
			return s
		}
		lastErr = err
	}
	t.Fatalf("server did not start: %v", lastErr)
	return nil
}

// startServer restarts on fixed ports; a just-closed port can take a moment to free up.
func startServer(t *testing.T, bin, clientAddr, apiAddr string, flags ...string) *server {
	t.Helper()
	var lastErr error
	for range 3 {
		s, err := tryStartServer(t, bin, clientAddr, apiAddr, flags)
		if err == nil {
			return s
		}
		lastErr = err
	}
	t.Fatalf("server did not restart on %s/%s: %v", clientAddr, apiAddr, lastErr)
	return nil
}

func tryStartServer(t *testing.T, bin, clientAddr, apiAddr string, flags []string) (*server, error) {
	t.Helper()
	s := &server{clientAddr: clientAddr, apiAddr: apiAddr, out: &testutil.SyncBuffer{}, exited: make(chan struct{})}
	args := []string{"serve", "--client-addr", clientAddr, "--api-addr", apiAddr, "--gossip-addr", "127.0.0.1:0"}
	s.cmd = exec.Command(bin, append(args, flags...)...)
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("cannot start %s: %w", bin, err)
	}
	go func() {
		s.waitErr = s.cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(func() {
		s.kill()
		if t.Failed() {
			t.Logf("server %s output:\n%s", apiAddr, s.out.String())
		}
	})
	err := poll(15*time.Second, s.exited, func() bool {
		res, err := http.Get("http://" + apiAddr + "/healthz")
		if err != nil {
			return false
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			return false
		}
		c, err := net.DialTimeout("tcp", clientAddr, time.Second)
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
	if err != nil {
		s.kill()
		return nil, fmt.Errorf("%w (exit: %v)\n%s", err, s.waitErr, s.out.String())
	}
	return s, nil
}

// stop sends SIGTERM, the production shutdown path, and waits for a clean exit.
func (s *server) stop(t *testing.T) {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	select {
	case <-s.exited:
		if s.waitErr != nil {
			t.Fatalf("server exited with %v after SIGTERM\n%s", s.waitErr, s.out.String())
		}
	case <-time.After(30 * time.Second):
		s.kill()
		t.Fatalf("server did not exit within 30s of SIGTERM\n%s", s.out.String())
	}
}

func (s *server) kill() {
	select {
	case <-s.exited:
		return
	default:
	}
	s.cmd.Process.Kill()
	<-s.exited
}

func (s *server) push(t *testing.T, body string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+s.apiAddr+"/v1/push", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+apiKey)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST /v1/push: %v", err)
	}
	defer res.Body.Close()
	resp, _ := io.ReadAll(res.Body)
	if res.StatusCode != http.StatusAccepted {
		t.Fatalf("POST /v1/push %s: status %d, body %s", body, res.StatusCode, resp)
	}
}

// waitMetric polls /metrics until the unlabelled series name equals want.
func (s *server) waitMetric(t *testing.T, name string, want float64) {
	t.Helper()
	var last string
	err := poll(10*time.Second, s.exited, func() bool {
		res, err := http.Get("http://" + s.apiAddr + "/metrics")
		if err != nil {
			last = err.Error()
			return false
		}
		defer res.Body.Close()
		sc := bufio.NewScanner(res.Body)
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) == 2 && f[0] == name {
				last = f[1]
				v, err := strconv.ParseFloat(f[1], 64)
				return err == nil && v == want
			}
		}
		last = "series missing"
		return false
	})
	if err != nil {
		t.Fatalf("metric %s: want %v, last saw %s: %v", name, want, last, err)
	}
}

// driver is the node process running browser.mjs.
type driver struct {
	stdin   io.WriteCloser
	replies chan string
	stderr  *testutil.SyncBuffer
}

func startDriver(t *testing.T, chromium, demoURL string) *driver {
	t.Helper()
	d := &driver{replies: make(chan string, 16), stderr: &testutil.SyncBuffer{}}
	cmd := exec.Command("node", "browser.mjs")
	cmd.Env = append(os.Environ(), "LONGLINK_DEMO_URL="+demoURL, "LONGLINK_CHROMIUM="+chromium)
	cmd.Stderr = d.stderr
	var err error
	if d.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("cannot start node: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			d.replies <- sc.Text()
		}
		close(d.replies)
	}()
	go func() {
		cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		// quit lets the script close Chromium; kill is the backstop.
		io.WriteString(d.stdin, `{"cmd":"quit"}`+"\n")
		d.stdin.Close()
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("browser driver stderr:\n%s", d.stderr.String())
		}
	})
	return d
}

// do sends one command and fails the test unless the browser reports success.
func (d *driver) do(t *testing.T, cmd map[string]any) {
	t.Helper()
	line, err := json.Marshal(cmd)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.stdin.Write(append(line, '\n')); err != nil {
		t.Fatalf("browser driver: cannot send %s: %v\n%s", line, err, d.stderr.String())
	}
	start := time.Now()
	timeout := 60 * time.Second // the script bounds each command itself; this catches a hung script
	select {
	case reply, ok := <-d.replies:
		if !ok {
			t.Fatalf("browser driver exited during %s", line)
		}
		var r struct {
			OK    bool            `json:"ok"`
			Error string          `json:"error"`
			Page  json.RawMessage `json:"page"`
		}
		if err := json.Unmarshal([]byte(reply), &r); err != nil {
			t.Fatalf("browser driver: bad reply %q: %v", reply, err)
		}
		if !r.OK {
			t.Fatalf("browser: %s failed: %s\npage: %s", line, r.Error, r.Page)
		}
		t.Logf("browser: %s ok in %v", cmd["cmd"], time.Since(start).Round(time.Millisecond))
	case <-time.After(timeout):
		t.Fatalf("browser driver: no reply to %s within %v", line, timeout)
	}
}

var errExited = errors.New("server exited")

// poll calls cond every 50 ms until it is true, the process exits, or timeout passes.
func poll(timeout time.Duration, exited <-chan struct{}, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return nil
		}
		select {
		case <-exited:
			return errExited
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("not ready within %v", timeout)
}
