package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"
)

// apiConn is one API caller's keep-alive HTTP/1.1 connection. net/http's
// client costs ~80 µs of CPU per push here (two goroutines and channel
// hand-offs per request); on a 2-core box shared with the gateway that CPU
// is taken from the system under test, so callers speak the one request
// they need directly. Not safe for concurrent use: one per caller.
type apiConn struct {
	addr string
	key  string
	conn net.Conn
	br   *bufio.Reader
	req  []byte
	body []byte // response body, reused
	// armed is the deadline set on conn (unix ns); 0 when none is set.
	armed int64
	// lastErr is the last transport error, for the report's notes.
	lastErr error
}

func newAPIConn(addr, key string) *apiConn { return &apiConn{addr: addr, key: key} }

func (a *apiConn) close() {
	if a.conn != nil {
		a.conn.Close()
		a.conn = nil
	}
}

// push POSTs body to /v1/push and returns the "delivered" count, or a
// failure reason ("transport", "http_<code>", "bad_answer", "cancelled").
// A request that fails on a reused connection before any answer is retried
// once on a fresh connection (the server may have closed an idle one).
func (a *apiConn) push(ctx context.Context, body []byte) (int64, string) {
	d, _, reason := a.pushWait(ctx, body)
	return d, reason
}

var completeTrue = []byte(`"complete":true`)

// pushWait is push, also saying whether the answer was complete: status 200
// with "complete":true, which a push with "wait" gets once every target is
// final (202 with "complete":false when the wait ended first).
func (a *apiConn) pushWait(ctx context.Context, body []byte) (delivered int64, complete bool, reason string) {
	status, resp, reason := a.post(ctx, "/v1/push", body)
	if reason != "" {
		return 0, false, reason
	}
	if status != 202 && status != 200 {
		return 0, false, "http_" + strconv.Itoa(status)
	}
	d, ok := jsonInt(resp, `"delivered":`)
	if !ok {
		return 0, false, "bad_answer"
	}
	return d, status == 200 && bytes.Contains(resp, completeTrue), ""
}

// post POSTs body to path and returns the status and the answer's body,
// which is valid until the next call; reason is "transport" or "cancelled"
// when no answer came. Retried once like push.
func (a *apiConn) post(ctx context.Context, path string, body []byte) (int, []byte, string) {
	for attempt := 0; attempt < 2; attempt++ {
		reused := a.conn != nil
		status, resp, err := a.roundTrip(ctx, path, body)
		if err == nil {
			return status, resp, ""
		}
		a.close()
		a.lastErr = err
		if ctx.Err() != nil {
			return 0, nil, "cancelled"
		}
		if !reused {
			return 0, nil, "transport"
		}
	}
	return 0, nil, "transport"
}

func (a *apiConn) roundTrip(ctx context.Context, path string, body []byte) (int, []byte, error) {
	if a.conn == nil {
		d := net.Dialer{Timeout: 5 * time.Second}
		c, err := d.DialContext(ctx, "tcp", a.addr)
		if err != nil {
			return 0, nil, err
		}
		a.conn, a.br, a.armed = c, bufio.NewReaderSize(c, 4096), 0
	}
	a.arm(ctx, time.Now())
	r := append(a.req[:0], "POST "...)
	r = append(r, path...)
	r = append(r, " HTTP/1.1\r\nHost: "...)
	r = append(r, a.addr...)
	r = append(r, "\r\nAuthorization: Bearer "...)
	r = append(r, a.key...)
	r = append(r, "\r\nContent-Type: application/json\r\nContent-Length: "...)
	r = strconv.AppendInt(r, int64(len(body)), 10)
	r = append(r, "\r\n\r\n"...)
	r = append(r, body...)
	a.req = r
	if _, err := a.conn.Write(r); err != nil {
		return 0, nil, err
	}
	status, respBody, closeAfter, err := readResponse(a.br, a.body[:0])
	if err != nil {
		return 0, nil, err
	}
	if cap(respBody) <= 1<<20 {
		a.body = respBody // keep the buffer unless an odd answer made it large
	}
	if closeAfter {
		a.close()
	}
	return status, respBody, nil
}

// callTimeout bounds one request; a call may get up to callTimeout and at
// least callTimeout-rearmSlack before its connection's deadline passes.
const (
	callTimeout = 30 * time.Second
	rearmSlack  = 10 * time.Second
)

// arm makes sure the connection's deadline bounds the coming call: at most
// callTimeout from now, no later than ctx's deadline, and at least
// callTimeout-rearmSlack away (or ctx's deadline). SetDeadline is runtime
// timer work (a lock and a heap update) that callers paid on every push;
// re-arming only when the deadline comes within the slack sets it about
// once per rearmSlack per connection instead.
func (a *apiConn) arm(ctx context.Context, now time.Time) {
	want := now.Add(callTimeout).UnixNano()
	if dl, ok := ctx.Deadline(); ok && dl.UnixNano() < want {
		want = dl.UnixNano()
	}
	if a.armed != 0 && a.armed <= want && (a.armed == want || a.armed-now.UnixNano() >= int64(callTimeout-rearmSlack)) {
		return
	}
	_ = a.conn.SetDeadline(time.Unix(0, want))
	a.armed = want
}

var errBadResponse = errors.New("malformed HTTP response")

// readResponse reads one HTTP/1.1 response with Content-Length or chunked
// body (bounded to 1 MiB). The body is appended to buf, which callers reuse
// so that a push allocates nothing for its answer.
func readResponse(br *bufio.Reader, buf []byte) (status int, body []byte, closeAfter bool, err error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return 0, nil, false, err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return 0, nil, false, errBadResponse
	}
	status, err = strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, nil, false, errBadResponse
	}
	length, chunked := -1, false
	for i := 0; ; i++ {
		if i > 100 {
			return 0, nil, false, errBadResponse
		}
		h, err := br.ReadSlice('\n')
		if err != nil {
			return 0, nil, false, err
		}
		h = bytes.TrimRight(h, "\r\n")
		if len(h) == 0 {
			break
		}
		k, v, ok := bytes.Cut(h, []byte(":"))
		if !ok {
			continue
		}
		v = bytes.TrimSpace(v)
		switch {
		case bytes.EqualFold(k, []byte("Content-Length")):
			if length, err = strconv.Atoi(string(v)); err != nil || length < 0 || length > 1<<20 {
				return 0, nil, false, errBadResponse
			}
		case bytes.EqualFold(k, []byte("Transfer-Encoding")):
			chunked = bytes.EqualFold(v, []byte("chunked"))
		case bytes.EqualFold(k, []byte("Connection")):
			closeAfter = bytes.EqualFold(v, []byte("close"))
		}
	}
	body = buf[:0]
	switch {
	case chunked:
		for n := 0; n < 1000; n++ {
			sz, err := br.ReadSlice('\n')
			if err != nil {
				return 0, nil, false, err
			}
			size, err := strconv.ParseInt(string(bytes.TrimSpace(bytes.SplitN(sz, []byte(";"), 2)[0])), 16, 32)
			if err != nil || size < 0 || int(size)+len(body) > 1<<20 {
				return 0, nil, false, errBadResponse
			}
			chunk := make([]byte, size+2) // data + CRLF
			if _, err := io.ReadFull(br, chunk); err != nil {
				return 0, nil, false, err
			}
			if size == 0 {
				return status, body, closeAfter, nil
			}
			body = append(body, chunk[:size]...)
		}
		return 0, nil, false, errBadResponse
	case length >= 0:
		body = append(body, make([]byte, length)...) // no allocation when buf has room
		if _, err := io.ReadFull(br, body); err != nil {
			return 0, nil, false, err
		}
		return status, body, closeAfter, nil
	}
	return 0, nil, false, fmt.Errorf("%w: no Content-Length", errBadResponse)
}

// jsonInt finds key (e.g. `"delivered":`) in a flat JSON object and parses
// the integer after it.
func jsonInt(b []byte, key string) (int64, bool) {
	i := bytes.Index(b, []byte(key))
	if i < 0 {
		return 0, false
	}
	b = bytes.TrimLeft(b[i+len(key):], " ")
	var n int64
	j := 0
	for ; j < len(b) && b[j] >= '0' && b[j] <= '9'; j++ {
		n = n*10 + int64(b[j]-'0')
	}
	return n, j > 0
}
