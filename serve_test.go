package main

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"longlink/auth"
)

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startBinary builds and starts the real binary on free loopback ports, with extra
// flags, and returns its client and API addresses once it has printed its banner.
func startBinary(t *testing.T, secret, key string, extra ...string) (client, api string, cmd *exec.Cmd) {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "longlink")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for attempt := 0; attempt < 5; attempt++ { // a free port can be taken before we bind it
		client, api = freePort(t), freePort(t)
		cmd = exec.Command(bin, "serve", "--client-addr", client, "--api-addr", api, "--gossip-addr", "127.0.0.1:0",
			"--forward-addr", "127.0.0.1:0", "--drain-timeout", "2s", "--api-key", key)
		cmd.Args = append(cmd.Args, extra...)
		cmd.Env = append(os.Environ(), "LONGLINK_TOKEN_SECRET="+secret)
		stdout, _ := cmd.StdoutPipe()
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(stdout)
		if sc.Scan() && strings.HasPrefix(sc.Text(), "longlink node") {
			go io.Copy(io.Discard, stdout)
			return client, api, cmd
		}
		cmd.Wait()
	}
	t.Fatal("server did not start")
	return
}

// TestServeBinary runs the real binary: start, health, a push reaching a client,
// readiness during the drain, close 1001 on SIGTERM, exit 0.
func TestServeBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	const secret, key = "serve-test-secret-0123456789", "serve-test-key"
	client, api, cmd := startBinary(t, secret, key)
	defer cmd.Process.Kill()

	get := func(path string) (int, string) { return httpGet(api, path) }
	if code, body := get("/healthz"); code != 200 {
		t.Fatalf("healthz: %d %s", code, body)
	}
	if code, body := get("/readyz"); code != 200 {
		t.Fatalf("readyz: %d %s", code, body)
	}
	tok, _ := auth.Mint([]byte(secret), "42", nil, time.Hour)
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+client+"/ws?token="+tok, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	req, _ := http.NewRequest("POST", "http://"+api+"/v1/push", strings.NewReader(`{"to":{"users":["42"]},"data":"hello"}`))
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var pr map[string]any
	json.NewDecoder(resp.Body).Decode(&pr)
	resp.Body.Close()
	if resp.StatusCode != 202 || pr["delivered"] != float64(1) {
		t.Fatalf("push: %d %v", resp.StatusCode, pr)
	}
	if _, m, err := ws.ReadMessage(); err != nil || string(m) != "hello" {
		t.Fatalf("read %q %v", m, err)
	}
	if code, body := get("/metrics"); code != 200 || !strings.Contains(body, "longlink_connections 1") || !strings.Contains(body, "process_resident_memory_bytes") {
		t.Fatalf("metrics: %d", code)
	}

	// SIGTERM: the client gets 1001; it does not answer, so the drain runs to its
	// timeout, and meanwhile the node reports not ready.
	cmd.Process.Signal(syscall.SIGTERM)
	_, _, err = ws.ReadMessage()
	if ce, ok := err.(*websocket.CloseError); !ok || ce.Code != 1001 {
		t.Fatalf("got %v, want close 1001", err)
	}
	sawDraining := false
	for i := 0; i < 100 && !sawDraining; i++ {
		code, body := get("/readyz")
		sawDraining = code == 503 && strings.Contains(body, "draining")
		time.Sleep(10 * time.Millisecond)
	}
	if !sawDraining {
		t.Error("readyz never reported draining")
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("server did not exit after SIGTERM")
	}
	if code, _ := get("/healthz"); code != 0 {
		t.Fatalf("healthz still answers after exit: %d", code)
	}
}
