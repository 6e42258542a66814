package loop

// Regression tests for the security review (issue 10): each failed before its fix.

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// Finding 5: closeCode read its map without the lock while another loop added an
// unlisted code to it, so clients closing with codes 3000-4999 raced (go test -race),
// and every distinct code became a new metric series.
func TestCloseCodesConcurrentUnlisted(t *testing.T) {
	s := startServer(t, nil)
	const n = 16
	clients := make([]*rawClient, n)
	for i := range clients {
		clients[i] = rawDial(t, s, "u"+string(rune('a'+i)))
	}
	waitFor(t, 2*time.Second, "clients", func() bool { return s.Connections() == n })
	if len(s.shardList()) < 2 {
		t.Fatalf("want clients on both loops, have %d loops in use", len(s.shardList()))
	}
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			c.Write(frame(true, 0, ws.OpClose, closePayload(uint16(3100+i), ""), true))
		}()
	}
	close(start)
	wg.Wait()
	for i, c := range clients {
		c.expectClose(t, uint16(3100+i)) // the echo still carries the client's code
	}
	var out bytes.Buffer
	s.cfg.Metrics.WritePrometheus(&out)
	if strings.Contains(out.String(), `code="31`) {
		t.Fatalf("unlisted close codes created their own series:\n%s", out.String())
	}
	if !strings.Contains(out.String(), `longlink_closes_total{code="other"} 16`) {
		t.Fatalf("unlisted close codes not counted under code=\"other\":\n%s", out.String())
	}
}
