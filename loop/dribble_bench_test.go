package loop

import (
	"strconv"
	"syscall"
	"testing"
	"time"

	"longlink/internal/testutil"
)

// BenchmarkDribble measures what one small TCP segment costs when it carries the next
// byte of a large frame whose earlier bytes (prefix) have already arrived: the
// pattern of a client that announces a 1 MiB frame and dribbles it (issue 10, finding
// 3). Each op writes one byte and waits until the server has read it. ns/op is wall
// time (client write, wake-up, server read); cpu-ns/op is the whole process's CPU,
// server and client together; B/op and allocs/op are the server's, the client side
// allocating nothing. Before the fix the server copied the whole partial frame on
// every segment, so all of them grew with prefix.
func BenchmarkDribble(b *testing.B) {
	for _, prefix := range []int{64 << 10, 512 << 10, 960 << 10} {
		b.Run("prefix="+strconv.Itoa(prefix>>10)+"KiB", func(b *testing.B) {
			s := startServer(b, nil)
			c := rawDial(b, s, "dribbler")
			c.send(b, []byte{0x82, 0xFF, 0, 0, 0, 0, 0, 0x0F, 0xFF, 0xFF, 1, 2, 3, 4})
			piece := make([]byte, 64<<10)
			for off := 0; off < prefix; off += len(piece) {
				c.send(b, piece[:min(len(piece), prefix-off)])
			}
			testutil.WaitFor(b, 10*time.Second, "prefix read", func() bool { return bytesIn(s) >= uint64(14+prefix) })
			one := []byte{0}
			var ru0, ru1 syscall.Rusage
			syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				before := bytesIn(s)
				c.send(b, one)
				for bytesIn(s) == before {
					time.Sleep(20 * time.Microsecond) // sleep, not spin: keep cpu-ns/op honest
				}
				if i == 1<<20-3-prefix { // one payload byte left: end the frame, start a new one
					b.StopTimer()
					c.send(b, one, []byte{0x82, 0xFF, 0, 0, 0, 0, 0, 0x0F, 0xFF, 0xFF, 1, 2, 3, 4})
					b.StartTimer()
				}
			}
			b.StopTimer()
			syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
			cpu := time.Duration(syscall.TimevalToNsec(ru1.Utime) + syscall.TimevalToNsec(ru1.Stime) -
				syscall.TimevalToNsec(ru0.Utime) - syscall.TimevalToNsec(ru0.Stime))
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
		})
	}
}
