package loop

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/gobwas/ws"

	"longlink/auth"
	"longlink/internal/testutil"
)

const testSecret = "loop-test-secret-0123456789"

func TestMain(m *testing.M) { os.Exit(testutil.Main(m, 10)) }

// startServer starts a real loop.Server on a loopback port with token auth.
func startServer(t testing.TB, mod func(*Config)) *Server {
	t.Helper()
	return start(t, newTestServer(t, mod))
}

// start starts s (from newTestServer, perhaps adjusted) and stops it when the test ends.
func start(t testing.TB, s *Server) *Server {
	t.Helper()
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	testutil.CleanupWithin(t, 5*time.Second, func(ctx context.Context) { s.Stop(ctx) })
	return s
}

// newTestServer is startServer without the Start, for tests that set unexported
// fields first.
func newTestServer(t testing.TB, mod func(*Config)) *Server {
	t.Helper()
	v, err := auth.NewVerifier([]byte(testSecret))
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		Addrs:  []string{"127.0.0.1:0"},
		Loops:  2,
		NodeID: "t1",
		Authenticate: func(token string) (Identity, *AuthError) {
			c, err := v.Verify(token)
			if err != nil {
				return Identity{}, &AuthError{Status: 401, Reason: strings.TrimPrefix(err.Error(), "auth: ")}
			}
			return Identity{User: c.User, Rooms: c.Rooms, Expires: c.Expires}, nil
		},
		Metrics: metrics.NewSet(),
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// rawClient speaks WebSocket by hand so tests can send what real clients never would.
type rawClient struct {
	net.Conn
	br *bufio.Reader
}

func upgradeRequest(host, target string, extra ...string) string {
	key := make([]byte, 16)
	rand.Read(key)
	return "GET " + target + " HTTP/1.1\r\nHost: " + host + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + base64.StdEncoding.EncodeToString(key) + "\r\n" +
		strings.Join(extra, "") + "\r\n"
}

func rawConnect(t testing.TB, s *Server) *rawClient {
	t.Helper()
	nc, err := net.DialTimeout("tcp", s.Addrs()[0], 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &rawClient{Conn: nc, br: bufio.NewReader(nc)}
}

// request writes req (in one piece) and reads the HTTP response head.
func (c *rawClient) request(t testing.TB, req string) *http.Response {
	t.Helper()
	if _, err := c.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	return c.response(t)
}

func (c *rawClient) response(t testing.TB) *http.Response {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatalf("reading response: %v", err)
	}
	return resp
}

// rawDial connects and upgrades as user.
func rawDial(t testing.TB, s *Server, user string) *rawClient {
	t.Helper()
	c := rawConnect(t, s)
	resp := c.request(t, upgradeRequest(s.Addrs()[0], "/ws?token="+testutil.Token(t, testSecret, user)))
	if resp.StatusCode != 101 {
		t.Fatalf("upgrade: %s", resp.Status)
	}
	return c
}

// frame builds one client frame. mask=false sends it unmasked (illegal).
func frame(fin bool, rsv byte, op ws.OpCode, payload []byte, mask bool) []byte {
	b0 := byte(op) | rsv<<4
	if fin {
		b0 |= 0x80
	}
	out := []byte{b0}
	mbit := byte(0)
	if mask {
		mbit = 0x80
	}
	switch n := len(payload); {
	case n < 126:
		out = append(out, mbit|byte(n))
	case n < 65536:
		out = append(out, mbit|126, byte(n>>8), byte(n))
	default:
		out = append(out, mbit|127)
		out = binary.BigEndian.AppendUint64(out, uint64(n))
	}
	p := append([]byte(nil), payload...)
	if mask {
		key := [4]byte{0x12, 0x34, 0x56, 0x78}
		out = append(out, key[:]...)
		ws.Cipher(p, key, 0)
	}
	return append(out, p...)
}

func (c *rawClient) send(t testing.TB, frames ...[]byte) {
	t.Helper()
	for _, f := range frames {
		if _, err := c.Write(f); err != nil {
			t.Fatalf("write: %v", err)
		}
	}
}

// next reads one server frame, failing on timeout.
func (c *rawClient) next(t testing.TB) ws.Frame {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	f, err := ws.ReadFrame(c.br)
	if err != nil {
		t.Fatalf("reading frame: %v", err)
	}
	if f.Header.Masked {
		t.Fatal("server frame is masked")
	}
	return f
}

// expectClose reads frames until a close frame, asserts its code, then asserts the
// server closes the TCP connection.
func (c *rawClient) expectClose(t testing.TB, code uint16) string {
	t.Helper()
	for {
		f := c.next(t)
		if f.Header.OpCode != ws.OpClose {
			continue
		}
		got := uint16(0)
		reason := ""
		if len(f.Payload) >= 2 {
			got = binary.BigEndian.Uint16(f.Payload)
			reason = string(f.Payload[2:])
		}
		if got != code {
			t.Fatalf("close code = %d (%q), want %d", got, reason, code)
		}
		// Answer like a well-behaved client; the server may already have closed.
		c.Write(frame(true, 0, ws.OpClose, f.Payload[:min(2, len(f.Payload))], true))
		c.expectEOF(t)
		return reason
	}
}

func (c *rawClient) expectEOF(t testing.TB) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	// A reset also means the server closed: it happens when the client wrote its close
	// reply after the server had already closed.
	if n, err := io.Copy(io.Discard, c.br); err != nil && !strings.Contains(err.Error(), "connection reset") {
		t.Fatalf("want the server to close the connection, got %v after %d bytes", err, n)
	}
}

func closePayload(code uint16, reason string) []byte {
	return append(binary.BigEndian.AppendUint16(nil, code), reason...)
}
