package loop

// Regression tests for the security review (issue 10): each failed before its fix.

import (
	"bytes"
	"encoding/binary"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"longlink/internal/testutil"
	"longlink/wsproto"
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
	testutil.WaitFor(t, 2*time.Second, "clients", func() bool { return s.Connections() == n })
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
	m := testutil.Scrape(t, s.cfg.Metrics)
	for series := range m {
		if strings.Contains(series, `code="31`) {
			t.Fatalf("unlisted close codes created their own series: %v", m)
		}
	}
	if m[`longlink_closes_total{code="other"}`] != 16 {
		t.Fatalf("unlisted close codes not counted under code=\"other\": %v", m)
	}
}

// attack opens n clients that each send the header of a 1 MiB-1 binary frame and then
// sent bytes of its payload in 64,000-byte pieces, never finishing it.
func attack(t *testing.T, s *Server, n, sent int) []*rawClient {
	t.Helper()
	hdr := []byte{0x82, 0xFF, 0, 0, 0, 0, 0, 0x0F, 0xFF, 0xFF, 1, 2, 3, 4} // 64-bit length 2^20-1, mask key
	piece := make([]byte, 64000)
	cs := make([]*rawClient, n)
	for i := range cs {
		cs[i] = rawDial(t, s, "attacker")
	}
	for _, c := range cs {
		c.send(t, hdr)
	}
	for off := 0; off < sent; off += len(piece) {
		for _, c := range cs {
			c.send(t, piece[:min(len(piece), sent-off)])
		}
	}
	return cs
}

func bytesIn(s *Server) (n uint64) {
	for _, sh := range s.shardList() {
		n += sh.bytesIn.Load()
	}
	return n
}

func heapInuse() (inuse, total uint64) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse, ms.TotalAlloc
}

// Finding 3: a partial frame stayed in gnet's inbound buffer and was copied whole on
// every read, so each client that dribbled part of a large frame cost several times
// what it sent, and every 1-byte segment copied the whole partial frame again.
func TestPartialFrameMemoryIsWhatWasSent(t *testing.T) {
	const n, sent = 50, 600_000
	s := startServer(t, func(c *Config) { c.MaxConnsPerUser = 1000 })
	base, _ := heapInuse()
	in0 := bytesIn(s)
	cs := attack(t, s, n, sent)
	// Poll rather than wait once: the server may still be reading when bytes_in first
	// reaches the total.
	const slack = 32 << 10 // per attacker: the last reassembly chunk and bookkeeping
	var perConn float64
	ok := false
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if bytesIn(s)-in0 < uint64(n*(sent+14)) {
			continue
		}
		inuse, _ := heapInuse()
		perConn = (float64(inuse) - float64(base)) / n
		if perConn <= sent+slack {
			ok = true
			break
		}
	}
	if !ok {
		t.Fatalf("heap per attacker = %.0f bytes after it sent %d (want <= sent + %d)", perConn, sent, slack)
	}
	t.Logf("heap per attacker: %.0f bytes for %d sent", perConn, sent)
	if h := s.pending.Held(); h < n*sent || h > n*(sent+wsproto.ChunkSize) {
		t.Fatalf("longlink_pending_bytes = %d, want %d sent + at most a chunk each", h, n*sent)
	}

	// Dribbling 1 byte at a time must not copy the partial frame again.
	_, total0 := heapInuse()
	in1 := bytesIn(s)
	const dribbles = 5
	for range dribbles {
		for _, c := range cs {
			c.send(t, []byte{0})
		}
	}
	testutil.WaitFor(t, 5*time.Second, "dribbles read", func() bool { return bytesIn(s)-in1 >= n*dribbles })
	_, total1 := heapInuse()
	if per := float64(total1-total0) / (n * dribbles); per > 8<<10 {
		t.Fatalf("each 1-byte segment allocated %.0f bytes on the server (the partial frame copied again)", per)
	}
	if got := bytesIn(s) - in0; got != n*(14+sent+dribbles) {
		t.Fatalf("bytes_in counted %d, the attackers sent %d", got, n*(14+sent+dribbles))
	}

	// Closed attackers give everything back.
	for _, c := range cs {
		c.Close()
	}
	testutil.WaitFor(t, 5*time.Second, "attackers gone", func() bool { return s.Connections() == 0 })
	if h := s.pending.Held(); h != 0 {
		t.Fatalf("longlink_pending_bytes = %d after every attacker left", h)
	}
}

// Finding 3: with no node-wide limit, enough clients with unfinished messages could
// take all memory. Over MaxPendingBytes a client is closed with 1013 and counted,
// and an honest client on the same node is not affected.
func TestPendingBudgetCloses1013(t *testing.T) {
	const budget = 256 << 10
	s := startServer(t, func(c *Config) {
		c.MaxPendingBytes = budget
		c.MaxConnsPerUser = 1000
		c.Echo = true
	})
	honest := rawDial(t, s, "honest")
	first := attack(t, s, 1, 200_000)[0]
	testutil.WaitFor(t, 5*time.Second, "first attacker's bytes held", func() bool { return s.pending.Held() >= 200_000 })
	// The second needs 8 more chunks where 7 are left. It sends everything in one
	// write, so the server has usually read it all when it refuses it, and the close
	// frame is not overtaken by a reset (closing a socket with unread bytes sends RST).
	second := rawDial(t, s, "attacker")
	second.Write(append([]byte{0x82, 0xFF, 0, 0, 0, 0, 0, 0x0F, 0xFF, 0xFF, 1, 2, 3, 4}, make([]byte, 64000)...))
	second.SetReadDeadline(time.Now().Add(5 * time.Second))
	if f, err := ws.ReadFrame(second.br); err == nil {
		if f.Header.OpCode != ws.OpClose || len(f.Payload) < 2 || binary.BigEndian.Uint16(f.Payload) != wsproto.CloseTryAgainLater {
			t.Fatalf("over budget: got %v %q, want close 1013", f.Header.OpCode, f.Payload)
		}
	} else if !strings.Contains(err.Error(), "reset") {
		t.Fatalf("over budget: %v, want close 1013", err)
	}
	testutil.WaitFor(t, 5*time.Second, "the second attacker closed", func() bool { return s.Connections() == 2 })
	if got := s.m.pendingBudgetCloses.Get(); got != 1 {
		t.Fatalf("longlink_pending_budget_closes_total = %d, want 1", got)
	}
	if h := s.pending.Held(); h < 200_000 || h > budget {
		t.Fatalf("longlink_pending_bytes = %d after the refusal, want the first attacker's only", h)
	}
	// The honest client still gets through: a small message, and one fragmented
	// message that fits in what is left of the budget.
	honest.send(t, frame(true, 0, ws.OpText, []byte("hello"), true))
	if f := honest.next(t); string(f.Payload) != "hello" {
		t.Fatalf("echo: %q", f.Payload)
	}
	part := bytes.Repeat([]byte("ab"), 10_000)
	honest.send(t, frame(false, 0, ws.OpBinary, part, true), frame(true, 0, ws.OpContinuation, part, true))
	if f := honest.next(t); len(f.Payload) != 2*len(part) {
		t.Fatalf("fragmented echo: %d bytes", len(f.Payload))
	}
	m := testutil.Scrape(t, s.cfg.Metrics)
	if _, ok := m["longlink_pending_bytes"]; !ok || m["longlink_pending_budget_closes_total"] != 1 || m[`longlink_closes_total{code="1013"}`] != 1 {
		t.Fatalf("metrics lack longlink_pending_bytes, longlink_pending_budget_closes_total 1 or longlink_closes_total{code=\"1013\"} 1: %v", m)
	}
	first.Close()
	testutil.WaitFor(t, 5*time.Second, "budget given back", func() bool { return s.pending.Held() == 0 })
}

// Finding 3: memory held for clients that left stayed with the process. Once the
// pending bytes fall far from their peak, the ticker returns memory to the OS, once.
func TestReclaimAfterPendingDrop(t *testing.T) {
	s := newTestServer(t, func(c *Config) { c.MaxConnsPerUser = 1000 })
	var freed atomic.Int32
	s.reclaim.min = 1 << 20
	s.reclaim.free = func() { freed.Add(1) }
	start(t, s)
	cs := attack(t, s, 4, 600_000)
	testutil.WaitFor(t, 5*time.Second, "attack held", func() bool { return s.pending.Held() >= 4*600_000 })
	// Two clock advances later, a whole OnTick (which samples the peak) ran after the
	// bytes were held.
	t0 := s.clock.ticks()
	testutil.WaitFor(t, 5*time.Second, "a tick", func() bool { return s.clock.ticks() > t0 })
	t1 := s.clock.ticks()
	testutil.WaitFor(t, 5*time.Second, "another tick", func() bool { return s.clock.ticks() > t1 })
	if freed.Load() != 0 {
		t.Fatal("reclaimed while the bytes were still held")
	}
	for _, c := range cs {
		c.Close()
	}
	testutil.WaitFor(t, 5*time.Second, "reclaim after the attackers left", func() bool { return freed.Load() == 1 })
}
