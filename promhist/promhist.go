package promhist

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// DefaultBuckets are upper bounds in seconds suited to request and delivery
// latencies from half a millisecond to ten seconds.
var DefaultBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// Histogram is a Prometheus classic histogram: cumulative counters per upper
// bound plus a sum and a count.
type Histogram struct {
	bounds  []float64          // sorted upper bounds, +Inf excluded
	buckets []*metrics.Counter // buckets[i] counts observations <= bounds[i]; last is +Inf
	sum     *metrics.FloatCounter
	count   *metrics.Counter
}

// New registers name_bucket{labels,le="..."} for every bound and +Inf,
// name_sum{labels} and name_count{labels} in set, and returns the histogram.
//
// labels is the inside of the braces without them, for example
// `route="/v1/push"`, or "" for none. buckets are upper bounds; nil means
// DefaultBuckets. New panics, like the metrics package, when the name or
// labels are invalid, the bounds are not finite and strictly increasing, or
// a series is already registered: all are programming errors at start-up.
func New(set *metrics.Set, name, labels string, buckets []float64) *Histogram {
	if set == nil {
		set = metrics.GetDefaultSet()
	}
	if buckets == nil {
		buckets = DefaultBuckets
	}
	for i, b := range buckets {
		if math.IsNaN(b) || math.IsInf(b, 0) {
			panic(fmt.Sprintf("BUG: promhist %s: bucket %d is %v; bounds must be finite (+Inf is added)", name, i, b))
		}
		if i > 0 && b <= buckets[i-1] {
			panic(fmt.Sprintf("BUG: promhist %s: buckets must be strictly increasing, got %v after %v", name, b, buckets[i-1]))
		}
	}
	sep := ""
	if labels != "" {
		sep = ","
	}
	h := &Histogram{
		bounds:  slices.Clone(buckets),
		buckets: make([]*metrics.Counter, 0, len(buckets)+1),
	}
	for _, b := range buckets {
		le := strconv.FormatFloat(b, 'g', -1, 64)
		h.buckets = append(h.buckets, set.NewCounter(name+"_bucket{"+labels+sep+`le="`+le+`"}`))
	}
	h.buckets = append(h.buckets, set.NewCounter(name+"_bucket{"+labels+sep+`le="+Inf"}`))
	suffix := ""
	if labels != "" {
		suffix = "{" + labels + "}"
	}
	h.sum = set.NewFloatCounter(name + "_sum" + suffix)
	h.count = set.NewCounter(name + "_count" + suffix)
	return h
}

// Observe records one value (seconds for durations). NaN is ignored because
// it would poison name_sum forever.
func (h *Histogram) Observe(v float64) {
	if math.IsNaN(v) {
		return
	}
	// Find the first bound >= v; every bucket from there on, +Inf included,
	// counts v. Linear search: there are ~15 bounds and small values, the
	// common case, stop early.
	i := 0
	for i < len(h.bounds) && v > h.bounds[i] {
		i++
	}
	for _, c := range h.buckets[i:] {
		c.Inc()
	}
	h.sum.Add(v)
	h.count.Inc()
}

// UpdateDuration observes the seconds elapsed since start.
func (h *Histogram) UpdateDuration(start time.Time) {
	h.Observe(time.Since(start).Seconds())
}
