package cluster

import (
	"testing"
	"time"
)

// TestForwardsToKilledPeerAreCounted: every message sent to a peer that was killed
// is either received or counted as a forwarding failure; none vanishes silently.
func TestForwardsToKilledPeerAreCounted(t *testing.T) {
	nodes := startCluster(t, 2, nil)
	a, b := nodes[0], nodes[1]
	b.Kill()
	sent := 0
	deadline := time.Now().Add(10 * time.Second)
	for len(a.AliveNodes()) > 0 && time.Now().Before(deadline) {
		if a.Send(b.Name(), []byte("x")) == nil {
			sent++
		}
		time.Sleep(2 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	t.Logf("sent %d accepted; forwarded %d, failures %d, retries %d", sent,
		a.m.forwardMessages.Get(), a.m.forwardFailures.Get(), a.m.forwardRetries.Get())
	if sent > 0 && a.m.forwardFailures.Get() == 0 {
		t.Fatalf("%d messages accepted for a dead peer, none counted as failed", sent)
	}
}
