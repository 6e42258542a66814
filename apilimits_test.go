package main

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"longlink/internal/testutil"
)

// openFDs counts the descriptors process pid holds.
func openFDs(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	if err != nil {
		t.Skipf("cannot count descriptors: %v", err)
	}
	return len(ents)
}

// Security review, issue 10: idle API connections used to cost the binary a
// descriptor each without bound. With --api-max-conns the excess is answered 503 at
// once and closed, so the process holds no more than the cap however many arrive.
func TestAPIConnectionCapBinary(t *testing.T) {
	const limit, extra = 20, 200
	n := startBinary(t, "--api-max-conns", strconv.Itoa(limit))
	api, pid := n.API, n.Cmd.Process.Pid
	base := openFDs(t, pid)

	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	for i := 0; i < limit; i++ {
		c, err := net.DialTimeout("tcp", api, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	refused := 0
	for i := 0; i < extra; i++ {
		c, err := net.DialTimeout("tcp", api, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err == nil && resp.StatusCode == 503 && resp.Header.Get("Content-Type") == "application/json" {
			refused++
		}
		c.Close()
	}
	if refused != extra {
		t.Fatalf("%d of %d connections over the cap were answered 503", refused, extra)
	}
	// Every held connection is one descriptor; the refused ones are gone.
	if got := openFDs(t, pid); got > base+limit+2 {
		t.Fatalf("the binary holds %d descriptors, %d before %d+%d connections, want at most %d", got, base, limit, extra, base+limit+2)
	}
	// The held connections are served, and the refusals are on /metrics.
	c := held[0]
	c.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(c, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	m, _ := testutil.ParseMetrics(string(body))
	if want := `longlink_api_rejected_total{reason="max_conns"}`; m[want] != extra {
		t.Fatalf("/metrics lacks %s %d", want, extra)
	}
	// Closing the held connections frees the descriptors again.
	for _, c := range held {
		c.Close()
	}
	held = nil
	testutil.WaitFor(t, 10*time.Second, "held API connections to close", func() bool {
		return openFDs(t, pid) <= base
	})
}

// The API flags are settable like every other and show in --print-config.
func TestAPIFlagsPrinted(t *testing.T) {
	var out bytes.Buffer
	if code := run([]string{"serve", "--print-config", "--api-max-conns", "77", "--api-idle-timeout", "5s", "--api-read-timeout", "7s"}, &out, io.Discard); code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"api-max-conns = 77\n", "api-idle-timeout = 5s\n", "api-read-timeout = 7s\n"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("--print-config lacks %q:\n%s", want, out.String())
		}
	}
}
