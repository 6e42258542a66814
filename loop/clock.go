package loop

import (
	"math"
	"sync/atomic"
	"time"
)

// clock is a coarse clock in ticks of clockTick since the server started. Connection
// timestamps are stored as uint32 ticks (4 bytes instead of a 24-byte time.Time) and
// the loops read the clock with one atomic load instead of calling time.Now per frame.
type clock struct {
	start time.Time
	now   atomic.Uint32
}

// clockTick is the clock's resolution. Timeouts are enforced within one sweep period
// (sweepPeriod) anyway, so finer ticks would buy nothing.
const clockTick = 100 * time.Millisecond

func newClock() *clock {
	return &clock{start: time.Now()}
}

func (c *clock) advance() uint32 {
	t := uint32(time.Since(c.start)/clockTick) + 1
	c.now.Store(t)
	return t
}

func (c *clock) ticks() uint32 { return c.now.Load() }

func ticksOf(d time.Duration) uint32 {
	t := d / clockTick
	if t < 1 {
		t = 1
	}
	return uint32(t)
}

// tickAt converts a wall-clock time into clock ticks (0 if it is in the past or zero).
func (c *clock) tickAt(t time.Time) uint32 {
	if t.IsZero() {
		return 0
	}
	d := t.Sub(c.start)
	if d <= 0 {
		return 1
	}
	if d/clockTick >= math.MaxUint32-1 {
		return 0 // beyond what 32-bit ticks hold (13 years): treat as never
	}
	return uint32(d/clockTick) + 1
}
