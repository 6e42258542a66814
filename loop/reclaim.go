package loop

import (
	"runtime/debug"
	"time"

	"longlink/wsproto"
)

// reclaimer gives memory back to the OS once clients holding large unfinished
// messages are gone. Their chunks become garbage when they close, but the Go runtime
// collects only when the heap grows again (or every two minutes) and then returns
// freed pages gradually, so after an attack an idle node kept its peak RSS for
// minutes. Measured with 200 clients each holding 1 MB (the real binary): RSS was
// still +198 MiB 60 s after they closed without this; with it, +10 MiB 2 s after
// (the free chunk list and runtime overhead).
//
// It runs in OnTick (gnet's ticker goroutine, never a loop) and only after the bytes
// held for unfinished messages fell by at least min from their peak, at most once
// per every, so ordinary traffic never triggers it. debug.FreeOSMemory forces a
// collection and returns all free pages; it blocks the ticker, not the loops, for
// the length of one GC.
type reclaimer struct {
	min   int64         // drop in pending bytes that makes it worth a forced GC
	every time.Duration // minimum interval between two reclaims
	free  func()        // debug.FreeOSMemory; tests count calls instead

	peak int64     // highest pending bytes seen since the last reclaim
	last time.Time // time of the last reclaim
}

func newReclaimer(maxPending int64) reclaimer {
	return reclaimer{min: max(64<<20, maxPending/4), every: 10 * time.Second, free: debug.FreeOSMemory}
}

// tick samples the pending bytes and reclaims when they fell far enough.
func (r *reclaimer) tick(b *wsproto.Budget, now time.Time) {
	held := b.Held()
	r.peak = max(r.peak, held)
	if r.peak-held < r.min || now.Sub(r.last) < r.every {
		return
	}
	r.peak, r.last = held, now
	r.free()
}
