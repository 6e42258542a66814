package main

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/sys/unix"

	"longlink/auth"
)

// TestAcceptSurvivesFDExhaustion runs the real binary with a small open-files limit and
// opens more connections than it can hold. The excess must be turned away while the
// connections already open keep working, and once descriptors are free again the node
// must accept as before: running out of descriptors is a busy moment, not an outage.
func TestAcceptSurvivesFDExhaustion(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	const secret, key = "fd-test-secret-0123456789", "fd-test-key"
	client, api, cmd := startBinary(t, secret, key)
	defer cmd.Process.Kill()
	const limit = 200
	if err := unix.Prlimit(cmd.Process.Pid, unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: limit, Max: limit}, nil); err != nil {
		t.Skipf("cannot lower the server's open-files limit: %v", err)
	}
	dial := func(user string) (*websocket.Conn, error) {
		tok, _ := auth.Mint([]byte(secret), user, nil, time.Hour)
		d := websocket.Dialer{HandshakeTimeout: 2 * time.Second}
		c, _, err := d.Dial("ws://"+client+"/ws?token="+tok, nil)
		return c, err
	}
	first, err := dial("first")
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	var open []*websocket.Conn
	failed := 0
	for i := 0; i < 2*limit; i++ {
		c, err := dial("u" + strconv.Itoa(i))
		if err != nil {
			failed++
			continue
		}
		open = append(open, c)
	}
	if failed == 0 || len(open) < limit/2 {
		t.Fatalf("opened %d and failed %d of %d past a %d-file limit", len(open), failed, 2*limit, limit)
	}
	for _, c := range open {
		c.Close()
	}

	// Once the excess has gone, the node takes new clients and the first one still
	// gets its messages.
	var code int
	var body string
	for i := 0; i < 100; i++ {
		code, body = httpGet(api, "/metrics")
		if code == 200 && strings.Contains(body, "longlink_connections 1\n") {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code != 200 || !strings.Contains(body, "longlink_connections 1\n") {
		t.Fatalf("metrics after the storm: %d, connections line missing or wrong", code)
	}
	if !strings.Contains(body, `longlink_accept_rejected_total{reason="no_descriptors"}`) ||
		strings.Contains(body, `longlink_accept_rejected_total{reason="no_descriptors"} 0`+"\n") {
		t.Errorf("no connection counted as rejected for lack of descriptors")
	}
	late, err := dial("late")
	if err != nil {
		t.Fatalf("new client after the storm: %v", err)
	}
	defer late.Close()
	req, _ := http.NewRequest("POST", "http://"+api+"/v1/push", strings.NewReader(`{"to":{"users":["first","late"]},"data":"still here"}`))
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for _, c := range []*websocket.Conn{first, late} {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, m, err := c.ReadMessage(); err != nil || string(m) != "still here" {
			t.Fatalf("read %q %v", m, err)
		}
	}
}

func httpGet(api, path string) (int, string) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + api + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
