package node

import (
	"testing"
	"time"
)

// A query whose Send already failed can never be answered, yet ask waits the whole
// QueryTimeout for it.
func TestAskDoesNotWaitForUnsentQueries(t *testing.T) {
	n := startNode(t, func(c *Config) { c.QueryTimeout = time.Second })
	start := time.Now()
	_, missing := n.hub.ask([]string{"no-such-peer"}, opStats, nil)
	if d := time.Since(start); d > 200*time.Millisecond {
		t.Fatalf("ask took %v for a peer it never reached (missing=%v)", d, missing)
	}
}
