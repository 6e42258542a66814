package loop

import (
	"math"
	"testing"

	"golang.org/x/sys/unix"
)

func TestFDBudget(t *testing.T) {
	for _, tc := range []struct {
		limit uint64
		want  int
	}{
		{20000, 19300},     // the development box: room for 600 API callers and more
		{1100000, 1099300}, // a 1M-connection host
		{1024, 960},        // a distribution default: the reserve is at least 64
		{4000, 3800},       // 5%
		{64, 1},
		{0, 1},
		{math.MaxUint64, math.MaxInt32}, // RLIM_INFINITY
	} {
		if got := FDBudget(tc.limit); got != tc.want {
			t.Errorf("FDBudget(%d) = %d, want %d", tc.limit, got, tc.want)
		}
	}
}

// With no MaxConns the node caps itself below its open-files limit, so a full node
// answers 503 with a hint instead of running out of descriptors; -1 lifts the cap.
func TestMaxConnsDefaultsToFDBudget(t *testing.T) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if got, want := startServer(t, nil).MaxConns(), FDBudget(lim.Cur); got != want {
		t.Errorf("default MaxConns = %d, want %d for a limit of %d", got, want, lim.Cur)
	}
	if got := startServer(t, func(c *Config) { c.MaxConns = -1 }).MaxConns(); got != 0 {
		t.Errorf("MaxConns -1 gave a cap of %d", got)
	}
	if got := startServer(t, func(c *Config) { c.MaxConns = 7 }).MaxConns(); got != 7 {
		t.Errorf("MaxConns 7 gave %d", got)
	}
}
