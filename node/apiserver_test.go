package node

import (
	"bufio"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// rawRequest sends one raw HTTP/1.1 request on a fresh connection and returns the
// response (body read).
func rawRequest(t *testing.T, n *Node, req string) (*http.Response, string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", n.APIAddr(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading the answer to %.40q: %v", req, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

// jsonError checks that body is the API's JSON error shape with status.
func jsonError(t *testing.T, resp *http.Response, body string, status int, says string) {
	t.Helper()
	var e struct {
		Error  string `json:"error"`
		Status int    `json:"status"`
	}
	if resp.StatusCode != status || json.Unmarshal([]byte(body), &e) != nil || e.Status != status ||
		!strings.Contains(e.Error, says) || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("want %d JSON error saying %q, got %d %s %q", status, says, resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
}

// The push fast path answers exactly like the mux route: auth errors with
// WWW-Authenticate, pushes counted in the route's metrics.
func TestAPIServerPushPath(t *testing.T) {
	n := startNode(t, nil)
	c := dial(t, n, "u1")
	settled(t, n, c)

	resp, body := rawRequest(t, n, "POST /v1/push HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
	jsonError(t, resp, body, 401, "missing Authorization")
	if !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
		t.Fatalf("WWW-Authenticate = %q", resp.Header.Get("WWW-Authenticate"))
	}
	resp, body = rawRequest(t, n, "POST /v1/push HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer nope\r\nContent-Length: 2\r\n\r\n{}")
	jsonError(t, resp, body, 401, "invalid API key")
	resp, body = rawRequest(t, n, "POST /v1/push HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+testKey+
		"\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\n{}")
	jsonError(t, resp, body, 415, "text/plain")

	const counter = `longlink_api_requests_total{route="/v1/push",code="202"}`
	before := scrape(t, n, counter)
	msg := `{"to":{"users":["u1"]},"data":"fast"}`
	resp, body = rawRequest(t, n, "POST /v1/push HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+testKey+
		"\r\nContent-Length: "+strconv.Itoa(len(msg))+"\r\n\r\n"+msg)
	if resp.StatusCode != 202 || !strings.Contains(body, `"delivered":1`) || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("push: %d %q", resp.StatusCode, body)
	}
	if _, got := read(t, c, 2*time.Second); got != "fast" {
		t.Fatalf("client got %q", got)
	}
	if after := scrape(t, n, counter); after != before+1 {
		t.Fatalf("%s went from %v to %v", counter, before, after)
	}
}

// Requests fasthttp refuses before any handler still get JSON errors.
func TestAPIServerTransportErrors(t *testing.T) {
	n := startNode(t, func(c *Config) { c.Push.MaxBodyBytes = 1024 })
	big := strings.Repeat("x", 2000)
	resp, body := rawRequest(t, n, "POST /v1/push HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+testKey+
		"\r\nContent-Length: 2000\r\n\r\n"+big)
	jsonError(t, resp, body, 413, "larger than 1024 bytes")
	resp, body = rawRequest(t, n, "POST /v1/push HTTP/1.1\r\nHost: x\r\nX-Big: "+strings.Repeat("h", apiReadBuffer)+"\r\n\r\n")
	jsonError(t, resp, body, 431, "headers are larger")
	resp, body = rawRequest(t, n, "POST /v1/push HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n")
	jsonError(t, resp, body, 400, "malformed HTTP request")
}

// Strings a handler keeps from a request (here a room name from the path) must not
// alias the server's reused buffers: later requests on the same connection would
// rewrite them.
func TestAPIServerRequestsDoNotShareMemory(t *testing.T) {
	n := startNode(t, nil)
	c := dial(t, n, "u1")
	settled(t, n, c)
	cl := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}} // one keep-alive connection
	do := func(method, path, body string) int {
		req, _ := http.NewRequest(method, "http://"+n.APIAddr()+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+testKey)
		resp, err := cl.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if s := do("POST", "/v1/rooms/alpha/join", `{"users":["u1"]}`); s != 200 {
		t.Fatalf("join: %d", s)
	}
	// Same length, different bytes, on the same connection.
	if s := do("GET", "/v1/rooms/omega", ""); s != 200 {
		t.Fatalf("room: %d", s)
	}
	r := call(t, n, "GET", "/v1/rooms/alpha", "")
	if r.Status != 200 || r.Body["connections"] != float64(1) {
		t.Fatalf("room alpha after another request: %d %s", r.Status, r.Raw)
	}
	if s := do("POST", "/v1/push", `{"to":{"rooms":["alpha"]},"data":"to alpha"}`); s != 202 {
		t.Fatalf("push: %d", s)
	}
	if _, got := read(t, c, 2*time.Second); got != "to alpha" {
		t.Fatalf("client got %q", got)
	}
}

// flakyListener fails its first accepts with errs, then accepts from the real listener.
type flakyListener struct {
	net.Listener
	errs []error
}

func (f *flakyListener) Accept() (net.Conn, error) {
	if len(f.errs) > 0 {
		err := f.errs[0]
		f.errs = f.errs[1:]
		return nil, err
	}
	return f.Listener.Accept()
}

// Running out of file descriptors must not stop the API port for good: the node
// recovers as soon as descriptors are free again.
func TestRetryListenerSurvivesEMFILE(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	emfile := &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
	aborted := &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.ECONNABORTED)}
	rl := retryListener{Listener: &flakyListener{Listener: ln, errs: []error{emfile, emfile, aborted}}, log: slog.New(slog.DiscardHandler)}
	go func() {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err == nil {
			defer c.Close()
			time.Sleep(time.Second)
		}
	}()
	c, err := rl.Accept()
	if err != nil {
		t.Fatalf("Accept gave up: %v", err)
	}
	c.Close()
	ln.Close()
	if _, err := rl.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept on a closed listener: %v, want net.ErrClosed", err)
	}
}
