package pusher

import (
	"strconv"
	"testing"
)

func BenchmarkAppendWebhookBody(b *testing.B) {
	for _, n := range []int{1, 100} {
		events := make([]WebhookEvent, n)
		for i := range events {
			events[i] = sampleHookEvents[i%len(sampleHookEvents)]
		}
		b.Run("events="+strconv.Itoa(n), func(b *testing.B) {
			buf := AppendWebhookBody(nil, 1, events)
			b.SetBytes(int64(len(buf)))
			b.ReportAllocs()
			for b.Loop() {
				buf = AppendWebhookBody(buf[:0], 1327078148132, events)
			}
		})
	}
}
