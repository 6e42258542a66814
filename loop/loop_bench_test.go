package loop

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"longlink/internal/testutil"
)

// benchClients opens n upgraded raw connections, each drained by a goroutine that
// counts the bytes it receives.
type benchClients struct {
	conns []net.Conn
	recv  atomic.Int64
	wg    sync.WaitGroup
}

func openBenchClients(b *testing.B, s *Server, n, users int) *benchClients {
	b.Helper()
	bc := &benchClients{}
	for i := 0; i < n; i++ {
		c := rawDial(b, s, fmt.Sprintf("u%d", i%users))
		bc.conns = append(bc.conns, c.Conn)
		bc.wg.Add(1)
		go func(c *rawClient) {
			defer bc.wg.Done()
			buf := make([]byte, 4096)
			c.SetReadDeadline(time.Time{})
			for {
				k, err := c.br.Read(buf)
				bc.recv.Add(int64(k))
				if err != nil {
					return
				}
			}
		}(c)
	}
	testutil.WaitFor(b, 10*time.Second, "connections", func() bool { return s.Connections() == n })
	return bc
}

func (bc *benchClients) close() {
	for _, c := range bc.conns {
		c.Close()
	}
	bc.wg.Wait()
}

// BenchmarkBroadcast measures one message to every connection, waiting until every
// client has received it. ns/recipient is wall time per recipient (server and clients
// share the two cores, so it overstates the server's cost).
func BenchmarkBroadcast(b *testing.B) {
	for _, n := range []int{1, 100, 5000} {
		for _, size := range []int{32, 256} {
			b.Run(fmt.Sprintf("recipients=%d/size=%dB", n, size), func(b *testing.B) {
				s := startServer(b, nil)
				bc := openBenchClients(b, s, n, n)
				defer bc.close()
				frame := PrepareFrame(false, make([]byte, size))
				b.ReportAllocs()
				b.SetBytes(int64(len(frame) * n))
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					want := bc.recv.Load() + int64(len(frame)*n)
					if got, err := s.Deliver(context.Background(), frame, Targets{All: true}, 0); err != nil || got != n {
						b.Fatalf("delivered %d (%v)", got, err)
					}
					for bc.recv.Load() < want {
						runtime.Gosched()
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/recipient")
			})
		}
	}
}

// BenchmarkUnicast measures a push to one user with 10 connections, as in the iQIYI
// scenario, until all 10 have it.
func BenchmarkUnicast(b *testing.B) {
	s := startServer(b, nil)
	const users = 100
	bc := openBenchClients(b, s, users*10, users)
	defer bc.close()
	frame := PrepareFrame(false, make([]byte, 64))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		want := bc.recv.Load() + int64(len(frame)*10)
		if got, err := s.Deliver(context.Background(), frame, Targets{Users: []string{fmt.Sprintf("u%d", i%users)}}, 0); err != nil || got != 10 {
			b.Fatalf("delivered %d (%v)", got, err)
		}
		for bc.recv.Load() < want {
			runtime.Gosched()
		}
	}
}

// BenchmarkWriteFrame is the per-recipient hot path: the shared frame queued for one
// connection and flushed with one write. It must not allocate.
func BenchmarkWriteFrame(b *testing.B) {
	s := startServer(b, nil)
	bc := openBenchClients(b, s, 1, 1)
	defer bc.close()
	sh := s.shardList()
	var c *Conn
	for _, x := range sh {
		if len(x.conns) > 0 {
			c = x.conns[0]
		}
	}
	frame := PrepareFrame(false, make([]byte, 64))
	done := make(chan struct{})
	var allocs uint64
	// Run on the connection's own loop, as the drain task does.
	c.sh.el.Execute(context.Background(), runnable(func() {
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			c.sh.queueFrame(c, frame, uint64(i+1))
			c.sh.flush()
		}
		b.StopTimer()
		runtime.ReadMemStats(&m1)
		allocs = m1.Mallocs - m0.Mallocs
		close(done)
	}))
	<-done
	b.ReportMetric(float64(allocs)/float64(b.N), "allocs/write")
}

type runnable func()

func (r runnable) Run(context.Context) error { r(); return nil }

// BenchmarkPrepareFrame: encode once per message.
func BenchmarkPrepareFrame(b *testing.B) {
	payload := make([]byte, 256)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		_ = PrepareFrame(false, payload)
	}
}

var _ = ws.OpText

// BenchmarkSubmitStampedParallel is the API's hot path under concurrency, as in the
// iQIYI scenario: many callers each push a stamped message to one user with 10
// connections (on both loops) and wait until the loops report it written. It
// measures what callers and loops pay to hand over jobs and completions (issue 15:
// the shard mutex taken per finished job, the waiter woken mid-chunk).
func BenchmarkSubmitStampedParallel(b *testing.B) {
	s := startServer(b, nil)
	const users = 100
	bc := openBenchClients(b, s, users*10, users)
	defer bc.close()
	plain := PrepareFrame(false, make([]byte, 64))
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.SetParallelism(8) // 16 callers on 2 cores, like the API's
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			u := next.Add(1) % users
			st := &Stamped{Plain: plain, Keys: []Key{{Kind: KeyUser, Name: fmt.Sprintf("u%d", u)}}}
			p, err := s.SubmitStamped(st, 0)
			if err != nil {
				b.Fatal(err)
			}
			if got, err := p.Wait(context.Background()); err != nil || got != 10 {
				b.Fatalf("delivered %d (%v)", got, err)
			}
		}
	})
}
