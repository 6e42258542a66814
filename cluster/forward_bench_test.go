package cluster

import (
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkForward measures Send -> batched loopback link -> OnMessage on a
// real two-node cluster, waiting until every message was received.
func BenchmarkForward(b *testing.B) {
	for _, size := range []int{64, 1024} {
		b.Run(fmt.Sprintf("size=%dB", size), func(b *testing.B) {
			var got atomic.Int64
			nodes := startCluster(b, 2, func(i int, cfg *Config) {
				if i == 1 {
					cfg.OnMessage = func(string, []byte) { got.Add(1) }
				}
			})
			a := nodes[0]
			payload := make([]byte, size)
			b.SetBytes(int64(size))
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				for {
					err := a.Send("node1", payload)
					if err == nil {
						break
					}
					if !errors.Is(err, ErrQueueFull) {
						b.Fatal(err)
					}
					runtime.Gosched() // the writer drains; a full queue is back-pressure here
				}
			}
			waitFor(b, 30*time.Second, "all received", func() bool { return got.Load() >= int64(b.N) })
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
		})
	}
}

// BenchmarkRouteSnapshot measures how long a joining node takes to receive
// the route table of a node holding many users (one op = one join + sync).
func BenchmarkRouteSnapshot(b *testing.B) {
	for _, users := range []int{100_000, 1_000_000} {
		b.Run(fmt.Sprintf("users=%d", users), func(b *testing.B) {
			seed := startNode(b, testConfig("seed"))
			for i := range users {
				seed.SetLocalUser("user-"+strconv.Itoa(i), true)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				start := time.Now()
				j := startNode(b, testConfig(fmt.Sprintf("joiner-%d", i), seed.GossipAddr()))
				waitFor(b, 60*time.Second, "snapshot installed", func() bool {
					return len(j.AliveNodes()) == 1 && len(j.NodesForUsers([]string{"nobody"})) == 0
				})
				b.ReportMetric(float64(time.Since(start).Milliseconds()), "ms/sync")
				j.Kill()
			}
		})
	}
}
