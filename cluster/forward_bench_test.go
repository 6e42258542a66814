package cluster

import (
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"longlink/internal/testutil"
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
			testutil.WaitFor(b, 30*time.Second, "all received", func() bool { return got.Load() >= int64(b.N) })
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
				testutil.WaitFor(b, 60*time.Second, "snapshot installed", func() bool {
					return slices.Contains(j.AliveNodes(), "seed") && !slices.Contains(j.NodesForUsers([]string{"nobody"}), "seed")
				})
				b.ReportMetric(float64(time.Since(start).Milliseconds()), "ms/sync")
				_ = j.Leave(time.Second)
			}
		})
	}
}

// BenchmarkLocalSnapshotLock measures how long a snapshot holds the local
// table lock (SetLocalUser waits that long while a peer connects).
func BenchmarkLocalSnapshotLock(b *testing.B) {
	l := newLocalRoutes()
	for i := range 1_000_000 {
		l.set(false, "user-"+strconv.Itoa(i), true)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		l.snapshot()
	}
}

// BenchmarkSetLocalUser is the per-connect cost paid on an event loop.
func BenchmarkSetLocalUser(b *testing.B) {
	l := newLocalRoutes()
	names := make([]string, 1<<16)
	for i := range names {
		names[i] = "user-" + strconv.Itoa(i)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		l.set(false, names[i&(len(names)-1)], i&(len(names)) == 0)
		if i%1024 == 0 {
			l.takeDelta(nil, 1)
		}
	}
}
