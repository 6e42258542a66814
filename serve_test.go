package main

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"longlink/internal/testutil"
)

// TestServeBinary runs the real binary: start, health, a push reaching a client,
// readiness during the drain, close 1001 on SIGTERM, exit 0.
func TestServeBinary(t *testing.T) {
	n := startBinary(t)

	get := func(path string) (int, string) { return testutil.Get("http://" + n.API + path) }
	if code, body := get("/healthz"); code != 200 {
		t.Fatalf("healthz: %d %s", code, body)
	}
	if code, body := get("/readyz"); code != 200 {
		t.Fatalf("readyz: %d %s", code, body)
	}
	ws := n.dial(t, "42")
	if r := n.push(t, `{"to":{"users":["42"]},"data":"hello"}`); r.Status != 202 || r.Body["delivered"] != float64(1) {
		t.Fatalf("push: %d %v", r.Status, r.Body)
	}
	if _, m, err := ws.ReadMessage(); err != nil || string(m) != "hello" {
		t.Fatalf("read %q %v", m, err)
	}
	code, body := get("/metrics")
	m, _ := testutil.ParseMetrics(body)
	if _, rss := m["process_resident_memory_bytes"]; code != 200 || m["longlink_connections"] != 1 || !rss {
		t.Fatalf("metrics: %d", code)
	}

	// SIGTERM: the client gets 1001; it does not answer, so the drain runs to its
	// timeout, and meanwhile the node reports not ready.
	n.Cmd.Process.Signal(syscall.SIGTERM)
	_, _, err := ws.ReadMessage()
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
	n.WaitExit(t, 15*time.Second)
	if code, _ := get("/healthz"); code != 0 {
		t.Fatalf("healthz still answers after exit: %d", code)
	}
}
