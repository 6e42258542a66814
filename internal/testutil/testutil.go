package testutil

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"
)

// Main runs the tests and then fails the run if more than slack goroutines are left
// than were running before, after giving stopped servers up to ten seconds to
// finish. Call it from TestMain: os.Exit(testutil.Main(m, 10)).
func Main(m *testing.M, slack int) int {
	before := runtime.NumGoroutine()
	code := Run(m)
	if code != 0 {
		return code
	}
	if f := flag.Lookup("test.fuzz"); f != nil && f.Value.String() != "" {
		return code // the fuzzing engine leaves its own goroutines running
	}
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before+slack && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before+slack {
		buf := make([]byte, 1<<20)
		fmt.Fprintf(os.Stderr, "goroutine leak: %d before, %d after\n%s\n", before, n, buf[:runtime.Stack(buf, true)])
		return 1
	}
	return 0
}

// WaitFor polls cond every few milliseconds until it holds, failing the test after d.
func WaitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// CleanupWithin registers stop to run when the test ends, with a context that
// expires after d (a server's graceful stop).
func CleanupWithin(t testing.TB, d time.Duration, stop func(context.Context)) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		stop(ctx)
	})
}

// SyncBuffer collects a subprocess's output, written from exec's copying goroutines
// while the test reads it.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
