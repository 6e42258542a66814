package promhist

import (
	"math"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"longlink/internal/testutil"
)

func TestObserveCumulative(t *testing.T) {
	set := metrics.NewSet()
	h := New(set, "req_seconds", `route="/v1/push"`, []float64{0.1, 1, 10})
	for _, v := range []float64{0.05, 0.1, 0.5, 1, 3, 20, math.NaN()} {
		h.Observe(v)
	}
	got := testutil.Scrape(t, set)
	want := map[string]float64{
		`req_seconds_bucket{route="/v1/push",le="0.1"}`:  2, // 0.05 and 0.1 (le is inclusive)
		`req_seconds_bucket{route="/v1/push",le="1"}`:    4,
		`req_seconds_bucket{route="/v1/push",le="10"}`:   5,
		`req_seconds_bucket{route="/v1/push",le="+Inf"}`: 6,
		`req_seconds_count{route="/v1/push"}`:            6,
		`req_seconds_sum{route="/v1/push"}`:              0.05 + 0.1 + 0.5 + 1 + 3 + 20,
	}
	if len(got) != len(want) {
		t.Fatalf("scraped %d series, want %d: %v", len(got), len(want), got)
	}
	for k, w := range want {
		g, ok := got[k]
		if !ok {
			t.Errorf("missing series %s in %v", k, got)
			continue
		}
		if math.Abs(g-w) > 1e-9 {
			t.Errorf("%s = %v, want %v", k, g, w)
		}
	}
}

func TestNoLabelsDefaultBuckets(t *testing.T) {
	set := metrics.NewSet()
	h := New(set, "lat_seconds", "", nil)
	h.UpdateDuration(time.Now().Add(-3 * time.Millisecond))
	got := testutil.Scrape(t, set)
	if len(got) != len(DefaultBuckets)+3 {
		t.Fatalf("scraped %d series, want %d: %v", len(got), len(DefaultBuckets)+3, got)
	}
	// 3ms+ lands above 0.0025 and at or below 0.005 unless the machine stalls
	// for seconds; the +Inf bucket must count it regardless.
	if got[`lat_seconds_bucket{le="0.0025"}`] != 0 {
		t.Errorf("le=0.0025 = %v, want 0", got[`lat_seconds_bucket{le="0.0025"}`])
	}
	if got[`lat_seconds_bucket{le="+Inf"}`] != 1 || got["lat_seconds_count"] != 1 {
		t.Errorf("+Inf/count = %v/%v, want 1/1", got[`lat_seconds_bucket{le="+Inf"}`], got["lat_seconds_count"])
	}
	if s := got["lat_seconds_sum"]; s < 0.003 {
		t.Errorf("sum = %v, want >= 0.003", s)
	}
}

func TestConcurrentObserve(t *testing.T) {
	set := metrics.NewSet()
	h := New(set, "c_seconds", "", []float64{1})
	const goroutines, each = 4, 1000
	var wg sync.WaitGroup
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				h.Observe(float64(i % 2 * 2)) // 0 or 2
			}
		}()
	}
	wg.Wait()
	got := testutil.Scrape(t, set)
	if got[`c_seconds_bucket{le="1"}`] != goroutines*each/2 || got[`c_seconds_bucket{le="+Inf"}`] != goroutines*each {
		t.Fatalf("buckets = %v", got)
	}
}

func TestNewRejectsBadBuckets(t *testing.T) {
	for _, b := range [][]float64{{1, 1}, {2, 1}, {math.Inf(1)}, {math.NaN()}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("New with buckets %v did not panic", b)
				}
			}()
			New(metrics.NewSet(), "bad", "", b)
		}()
	}
}

func TestObserveAllocs(t *testing.T) {
	h := New(metrics.NewSet(), "a_seconds", `x="y"`, nil)
	if n := testing.AllocsPerRun(1000, func() { h.Observe(0.03) }); n != 0 {
		t.Fatalf("Observe allocates %v times, want 0", n)
	}
}

func BenchmarkObserve(b *testing.B) {
	h := New(metrics.NewSet(), "b_seconds", "", nil)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		h.Observe(float64(i%1000) / 1000)
	}
}
