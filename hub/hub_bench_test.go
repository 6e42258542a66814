package hub

import (
	"bytes"
	"fmt"
	"testing"

	"longlink/push"
)

// BenchmarkOnMessage is the receiving side of a forwarded push, up to the loops'
// inbox (a fake that keeps nothing): decode, frame, enqueue.
func BenchmarkOnMessage(b *testing.B) {
	for _, size := range []int{64, 4 << 10, 64 << 10} {
		b.Run(fmt.Sprintf("size=%dB", size), func(b *testing.B) {
			h, l := newFakeNet().add(b, "b", nil)
			m := push.Message{ID: "a-1", Data: bytes.Repeat([]byte{'x'}, size), To: push.Target{Rooms: []string{"r1"}}}
			b.SetBytes(int64(size))
			b.ReportAllocs()
			for i := range b.N {
				b.StopTimer()
				payload := stampedPayload(&m, uint64(i+1))
				b.StartTimer()
				h.OnMessage("a", payload)
				l.enqueued, l.targets = l.enqueued[:0], l.targets[:0]
			}
		})
	}
}
