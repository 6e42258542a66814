package hub

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"longlink/internal/testutil"
	"longlink/loop"
	"longlink/push"
)

// A subscribe that syncs a new stream with a holder that does not answer (frozen,
// not yet declared dead) holds no lock over the round trip: this node's appends to
// other streams go on meanwhile, and an append to the stream being synced waits
// for the sync (the origin retries) instead of being stamped under its feet. Held
// across the round trip, the commit lock stalled every connect and push of a node
// behind one frozen peer.
func TestSyncHoldsNoLockOverTheNetwork(t *testing.T) {
	net := newFakeNet()
	one := func(c *Config) { c.Replicas = 1 } // appends replicate nowhere; syncs still ask b
	a, la := net.add(t, "a", one)
	net.add(t, "b", one)
	owned := func(prefix string) string {
		for i := 0; ; i++ {
			if u := fmt.Sprintf("%s%d", prefix, i); a.st.ringNow().ring.Owner("user:"+u) == "a" {
				return u
			}
		}
	}
	synced, other := owned("s"), owned("p")
	la.addConn(other, "a.1-1", 1)
	la.addConn(synced, "a.1-2", 1)

	freeze := make(chan struct{})
	var thaw sync.Once
	t.Cleanup(func() { thaw.Do(func() { close(freeze) }) }) // before the hubs close
	net.mu.Lock()
	net.hold["b"] = freeze
	net.mu.Unlock()
	subscribed := make(chan error, 1)
	go func() {
		_, err := a.st.subscribe([]skey{{loop.KeyUser, synced}}, nil, true)
		subscribed <- err
	}()
	testutil.WaitFor(t, 10*time.Second, "the subscribe asking b", func() bool { return net.held.Load() > 0 })

	pushed := make(chan error, 2)
	go func() {
		_, err := a.Deliver(&push.Message{ID: "a-1", Data: []byte("x"), To: push.Target{Users: []string{other}}})
		pushed <- err
	}()
	select {
	case err := <-pushed:
		if err != nil {
			t.Fatalf("push to %s during the sync: %v", other, err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("a push to another stream waited for the sync's round trip")
	}

	waits := a.m.settleWaits.Get()
	go func() {
		_, err := a.Deliver(&push.Message{ID: "a-2", Data: []byte("y"), To: push.Target{Users: []string{synced}}})
		pushed <- err
	}()
	testutil.WaitFor(t, 10*time.Second, "the push to the syncing stream retried", func() bool { return a.m.settleWaits.Get() > waits })
	if _, ok := a.st.store.Head("user:" + synced); ok {
		t.Fatal("the syncing stream was stamped before its sync finished")
	}
	thaw.Do(func() { close(freeze) })
	if err := <-subscribed; err != nil {
		t.Fatalf("subscribe: %v", err)
	}
	if err := <-pushed; err != nil {
		t.Fatalf("push to %s after the sync: %v", synced, err)
	}
	if head, ok := a.st.store.Head("user:" + synced); !ok || head.Offset != 1 {
		t.Fatalf("user:%s head %+v %v after the push, want offset 1", synced, head, ok)
	}
}
