package loop

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// TestSweepSpreadsPings connects 1,000 silent clients at once to one loop, so they
// all fall due for a ping in the same sweep pass, and checks the pings leave at no
// more than pingShare times the even share per tick instead of all in that pass
// (issue 15: a reconnect storm's pings held the loop for milliseconds per tick).
func TestSweepSpreadsPings(t *testing.T) {
	const n = 1000
	s := startServer(t, func(c *Config) {
		c.Loops = 1
		c.PingInterval = 10 * time.Second // 100 ticks: the cap is 4*1000/100 = 40 a tick
		c.IdleTimeout = time.Minute
		c.MaxConns = n + 10
	})
	var mu sync.Mutex
	var at []time.Time
	var bad []string
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		c := rawDial(t, s, fmt.Sprintf("u%d", i))
		t.Cleanup(func() { c.Close() })
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.SetReadDeadline(time.Now().Add(40 * time.Second))
			f, err := ws.ReadFrame(c.br)
			if err != nil || f.Header.OpCode != ws.OpPing {
				mu.Lock()
				if len(bad) < 3 {
					bad = append(bad, fmt.Sprintf("err %v op %v", err, f.Header.OpCode))
				}
				mu.Unlock()
				return
			}
			mu.Lock()
			at = append(at, time.Now())
			mu.Unlock()
		}()
	}
	wg.Wait()
	if len(at) != n {
		t.Fatalf("%d of %d clients pinged; others: %q", len(at), n, bad)
	}
	slices.SortFunc(at, func(a, b time.Time) int { return a.Compare(b) })
	// Unspread, every ping leaves within one pass (1 s); spread, a second holds at
	// most 10 ticks of 40, plus one tick's worth for timer jitter.
	most := 0
	for i, j := 0, 0; i < len(at); i++ {
		for at[i].Sub(at[j]) > time.Second {
			j++
		}
		most = max(most, i-j+1)
	}
	if limit := 11 * max(minPingsPerTick, pingShare*n/100); most > limit {
		t.Fatalf("%d pings within one second, want at most %d (spread over %v)", most, limit, at[n-1].Sub(at[0]))
	}
	t.Logf("most pings in one second: %d; all %d within %v", most, n, at[n-1].Sub(at[0]))
}
