package hub

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"longlink/push"
)

// TestReceiptBound: receipts beyond MaxReceipts go oldest first, counted; a swept
// one is forgotten after its linger.
func TestReceiptBound(t *testing.T) {
	h, _ := newFakeNet().add(t, "a", func(c *Config) { c.MaxReceipts = 3 })
	now := time.Now().UnixNano()
	for i := 0; i < 5; i++ {
		m := &push.Message{ID: fmt.Sprint("m", i), Ack: true, Receipt: true, Accepted: now}
		h.rc.open(m, now+int64(time.Minute), "a", []string{"user:u"})
	}
	if n := h.rc.len(); n != 3 {
		t.Fatalf("%d receipt targets kept, want 3", n)
	}
	if _, got := h.rc.query("m0"); got != nil {
		t.Fatalf("the oldest receipt survived the bound: %v", got)
	}
	if _, got := h.rc.query("m4"); got["user:u"].Status != push.StatusPending {
		t.Fatalf("newest receipt: %v", got)
	}
	// The bound counts targets: one receipt of 3 targets pushes out the others.
	m := &push.Message{ID: "wide", Ack: true, Receipt: true, Accepted: now}
	h.rc.open(m, now+int64(time.Minute), "a", []string{"user:x", "user:y", "user:z"})
	if _, got := h.rc.query("m4"); got != nil || h.rc.len() != 3 {
		t.Fatalf("after a 3-target receipt: m4 %v, %d targets held", got, h.rc.len())
	}
	h.rc.sweep(now + int64(time.Minute+receiptLinger))
	if n := h.rc.len(); n != 0 {
		t.Fatalf("%d receipts left after their linger", n)
	}
}

// BenchmarkReceiptMemory reports what one receipt with one target delivered by one
// node costs (the --max-receipts documentation).
func BenchmarkReceiptMemory(b *testing.B) {
	h, _ := newFakeNet().add(b, "a", func(c *Config) { c.MaxReceipts = 1 << 30 })
	const n = 100000
	now := time.Now().UnixNano()
	msgs := make([]*push.Message, n)
	for i := range msgs {
		msgs[i] = &push.Message{ID: fmt.Sprintf("node-1-%016x", i), Ack: true, Receipt: true, Accepted: now}
	}
	b.ReportAllocs()
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for i, m := range msgs {
			h.rc.open(m, now+int64(time.Minute), "a", []string{"user:u" + fmt.Sprint(i%1000)})
			h.rc.delivered(m.ID, "user:u"+fmt.Sprint(i%1000), "node-1", 1)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "B/receipt")
		h.rc.sweep(now + int64(2*time.Hour))
	}
}
