package node

import (
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"longlink/internal/testutil"
)

// BenchmarkPushPath is one push of the iQIYI mix through a real node, everything but
// the HTTP server: the API's parse and answer, the hub's history (stamp, commit, fan
// out) and the loops' writes to a user's 10 real sockets on both loops, answered once
// they are written (as POST /v1/push is). The body is the bench's (data a string). Readers drain the sockets meanwhile.
func BenchmarkPushPath(b *testing.B) {
	for _, c := range []struct {
		name string
		tail string
	}{
		{"history", ``},
		{"no-history", `,"history":false`},
	} {
		b.Run(c.name, func(b *testing.B) {
			n := startNode(b, nil)
			const conns = 10
			done := make(chan struct{})
			defer close(done)
			for range conns {
				ws := dial(b, n, "u1")
				// Drain the socket's bytes unparsed: the readers must not allocate,
				// or their garbage is counted as the push path's.
				go func(c net.Conn) {
					buf := make([]byte, 64<<10)
					for {
						if _, err := c.Read(buf); err != nil {
							return
						}
					}
				}(ws.UnderlyingConn())
			}
			testutil.WaitFor(b, 5*time.Second, "10 connections open", func() bool { return len(n.loop.UserConnections("u1")) == conns })
			buf := make([]byte, 0, 512)
			body := make([]byte, 0, 128)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				body = append(strconv.AppendInt(append(body[:0], `{"to":{"users":["u1"]},"data":"`...), int64(i), 10), ` 1764590000000000000"`+c.tail+`}`...)
				status, _, answer := n.api.ServePush("Bearer "+testKey, "application/json", body, buf[:0])
				if status != http.StatusAccepted {
					b.Fatalf("status %d: %s", status, answer)
				}
			}
		})
	}
}
