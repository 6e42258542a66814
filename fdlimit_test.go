package main

import (
	"strconv"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"golang.org/x/sys/unix"

	"longlink/internal/testutil"
)

// TestAcceptSurvivesFDExhaustion runs the real binary with a small open-files limit and
// opens more connections than it can hold. The excess must be turned away while the
// connections already open keep working, and once descriptors are free again the node
// must accept as before: running out of descriptors is a busy moment, not an outage.
func TestAcceptSurvivesFDExhaustion(t *testing.T) {
	n := startBinary(t)
	const limit = 200
	if err := unix.Prlimit(n.Cmd.Process.Pid, unix.RLIMIT_NOFILE, &unix.Rlimit{Cur: limit, Max: limit}, nil); err != nil {
		t.Skipf("cannot lower the server's open-files limit: %v", err)
	}
	dial := func(user string) (*websocket.Conn, error) {
		d := websocket.Dialer{HandshakeTimeout: 2 * time.Second}
		c, _, err := d.Dial("ws://"+n.Client+"/ws?token="+testutil.Token(t, n.secret, user), nil)
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
	var m map[string]float64
	testutil.WaitFor(t, 10*time.Second, "metrics after the storm to show the one connection left", func() bool {
		code, body := testutil.Get("http://" + n.API + "/metrics")
		m, _ = testutil.ParseMetrics(body)
		return code == 200 && m["longlink_connections"] == 1
	})
	if v, ok := m[`longlink_accept_rejected_total{reason="no_descriptors"}`]; !ok || v == 0 {
		t.Errorf("no connection counted as rejected for lack of descriptors")
	}
	late, err := dial("late")
	if err != nil {
		t.Fatalf("new client after the storm: %v", err)
	}
	defer late.Close()
	testutil.Do(t, "POST", "http://"+n.API+"/v1/push", `{"to":{"users":["first","late"]},"data":"still here"}`, testutil.Bearer(n.apiKey)...)
	for _, c := range []*websocket.Conn{first, late} {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, m, err := c.ReadMessage(); err != nil || string(m) != "still here" {
			t.Fatalf("read %q %v", m, err)
		}
	}
}
