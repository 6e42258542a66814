package bench

import (
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// BenchmarkFrames is the client's per-message user-space work: decode one
// server frame, parse the stamp, record the latency.
func BenchmarkFrames(b *testing.B) {
	for _, size := range []int{32, 256, 4096} {
		b.Run("size="+strconv.Itoa(size)+"B", func(b *testing.B) {
			payload := appendPayload(nil, time.Now().UnixNano(), 1)
			for len(payload) < size {
				payload = append(payload, 'x')
			}
			frame := []byte{0x81}
			if len(payload) < 126 {
				frame = append(frame, byte(len(payload)))
			} else {
				frame = append(frame, 126, byte(len(payload)>>8), byte(len(payload)))
			}
			frame = append(frame, payload...)
			l, err := newLoop()
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { unix.Close(l.epfd) })
			c := &conn{state: stOpen}
			now := time.Now().UnixNano()
			b.ReportAllocs()
			b.SetBytes(int64(len(frame)))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if used, reason := l.frames(c, frame, now); used != len(frame) || reason != "" {
					b.Fatalf("used %d reason %q", used, reason)
				}
			}
		})
	}
}

func BenchmarkHistogramRecord(b *testing.B) {
	var h Histogram
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		h.Record(int64(i&0xFFFFF) * 1000)
	}
}
