package bench

import (
	"encoding/json"
	"fmt"
	"math"
	"math/bits"
	"time"
)

// histBuckets covers 1 µs .. 2^40 µs with 16 linear sub-buckets per power of
// two, so any recorded value is reported within ~6% (HDR-style log-linear).
const histBuckets = 38 * 16

// Histogram is a mergeable latency histogram. Values are recorded in
// nanoseconds and bucketed at microsecond resolution. Record is
// allocation-free and costs a few nanoseconds; a Histogram is not safe for
// concurrent use (each event loop owns its own and snapshots are merged).
type Histogram struct {
	counts [histBuckets]uint64
	n      uint64
	sumNs  float64
	minNs  int64
	maxNs  int64
}

func bucketOf(us uint64) int {
	if us < 16 {
		return int(us)
	}
	shift := bits.Len64(us) - 5
	idx := (shift+1)*16 + int((us>>uint(shift))&15)
	if idx >= histBuckets {
		return histBuckets - 1
	}
	return idx
}

// bucketLowerUs is the smallest microsecond value that falls in bucket idx.
func bucketLowerUs(idx int) float64 {
	if idx < 16 {
		return float64(idx)
	}
	shift := idx/16 - 1
	return float64(uint64(16+idx%16) << uint(shift))
}

// bucketUpperUs is one past the largest microsecond value in bucket idx.
func bucketUpperUs(idx int) float64 {
	if idx < 16 {
		return float64(idx + 1)
	}
	shift := idx/16 - 1
	return float64(uint64(16+idx%16+1) << uint(shift))
}

// Record adds one observation. Negative values (clock steps) are clamped to 0.
func (h *Histogram) Record(ns int64) {
	if ns < 0 {
		ns = 0
	}
	h.counts[bucketOf(uint64(ns)/1000)]++
	if h.n == 0 || ns < h.minNs {
		h.minNs = ns
	}
	if ns > h.maxNs {
		h.maxNs = ns
	}
	h.n++
	h.sumNs += float64(ns)
}

// Count is the number of observations.
func (h *Histogram) Count() uint64 { return h.n }

// Min and Max are exact; zero when empty.
func (h *Histogram) Min() time.Duration { return time.Duration(h.minNs) }
func (h *Histogram) Max() time.Duration { return time.Duration(h.maxNs) }

// Mean is the exact arithmetic mean; zero when empty.
func (h *Histogram) Mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.sumNs / float64(h.n))
}

// Quantile returns the q-quantile (0..1), interpolated inside its bucket and
// clamped to the exact min and max. Zero when empty.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	if q <= 0 {
		return h.Min()
	}
	if q >= 1 {
		return h.Max()
	}
	rank := q * float64(h.n)
	var seen float64
	for i, c := range h.counts {
		if c == 0 {
			continue
		}
		if seen+float64(c) >= rank {
			lo, hi := bucketLowerUs(i), bucketUpperUs(i)
			frac := (rank - seen) / float64(c)
			ns := int64((lo + (hi-lo)*frac) * 1000)
			return time.Duration(min(max(ns, h.minNs), h.maxNs))
		}
		seen += float64(c)
	}
	return h.Max()
}

// Merge adds all observations of o into h.
func (h *Histogram) Merge(o *Histogram) {
	if o == nil || o.n == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.n == 0 || o.minNs < h.minNs {
		h.minNs = o.minNs
	}
	h.maxNs = max(h.maxNs, o.maxNs)
	h.n += o.n
	h.sumNs += o.sumNs
}

// Reset forgets every observation.
func (h *Histogram) Reset() { *h = Histogram{} }

// HistBin is one non-empty bucket: [LoUs, HiUs) microseconds holding Count.
type HistBin struct {
	LoUs  float64 `json:"lo_us"`
	HiUs  float64 `json:"hi_us"`
	Count uint64  `json:"count"`
}

// Bins lists the non-empty buckets in ascending order.
func (h *Histogram) Bins() []HistBin {
	var out []HistBin
	for i, c := range h.counts {
		if c > 0 {
			out = append(out, HistBin{bucketLowerUs(i), bucketUpperUs(i), c})
		}
	}
	return out
}

// histWire is the sparse form sent between worker and coordinator.
type histWire struct {
	Idx    []int    `json:"i"`
	Counts []uint64 `json:"c"`
	Sum    float64  `json:"s"`
	Min    int64    `json:"lo"`
	Max    int64    `json:"hi"`
}

// MarshalJSON encodes only non-empty buckets.
func (h *Histogram) MarshalJSON() ([]byte, error) {
	w := histWire{Sum: h.sumNs, Min: h.minNs, Max: h.maxNs, Idx: []int{}, Counts: []uint64{}}
	for i, c := range h.counts {
		if c > 0 {
			w.Idx = append(w.Idx, i)
			w.Counts = append(w.Counts, c)
		}
	}
	return json.Marshal(w)
}

// UnmarshalJSON decodes the sparse form written by MarshalJSON.
func (h *Histogram) UnmarshalJSON(b []byte) error {
	var w histWire
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	if len(w.Idx) != len(w.Counts) {
		return fmt.Errorf("histogram: %d indexes but %d counts", len(w.Idx), len(w.Counts))
	}
	h.Reset()
	for k, i := range w.Idx {
		if i < 0 || i >= histBuckets {
			return fmt.Errorf("histogram: bucket %d out of range", i)
		}
		h.counts[i] += w.Counts[k]
		h.n += w.Counts[k]
	}
	h.sumNs, h.minNs, h.maxNs = w.Sum, w.Min, w.Max
	return nil
}

// LatencySummary is the human/JSON view of a histogram, in milliseconds.
type LatencySummary struct {
	Count  uint64  `json:"count"`
	MinMs  float64 `json:"min_ms"`
	MeanMs float64 `json:"mean_ms"`
	P50Ms  float64 `json:"p50_ms"`
	P90Ms  float64 `json:"p90_ms"`
	P99Ms  float64 `json:"p99_ms"`
	P999Ms float64 `json:"p999_ms"`
	MaxMs  float64 `json:"max_ms"`
}

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e3) / 1e3 }

// Summary computes the usual percentiles.
func (h *Histogram) Summary() LatencySummary {
	return LatencySummary{
		Count: h.n, MinMs: ms(h.Min()), MeanMs: ms(h.Mean()),
		P50Ms: ms(h.Quantile(0.5)), P90Ms: ms(h.Quantile(0.9)), P99Ms: ms(h.Quantile(0.99)),
		P999Ms: ms(h.Quantile(0.999)), MaxMs: ms(h.Max()),
	}
}
