package hub

import (
	"fmt"
	"slices"
	"testing"

	"longlink/push"
	"longlink/stream"
)

// A job that must retry (a replica refused one of its streams) gives back what it
// stamped in its other streams, and a later job of the same batch in one of those
// streams retries too: otherwise the later one would be fanned out first and the
// retried one dropped everywhere as already seen.
func TestRetryTakesTheBatchAlongInEveryStream(t *testing.T) {
	n := newFakeNet()
	a, la := n.add(t, "a", nil)
	b, _ := n.add(t, "b", nil)
	var owned []string
	for i := 0; len(owned) < 2; i++ {
		if u := fmt.Sprint("u", i); a.st.ringNow().ring.Owner("user:"+u) == "a" {
			owned = append(owned, u)
		}
	}
	X, Y := owned[0], owned[1]
	// b holds a longer history of Y: it refuses a's first stamp of Y.
	for o := uint64(1); o <= 5; o++ {
		b.st.store.Apply("user:"+Y, stream.Position{Epoch: "0-zzz", Offset: o}, stream.Entry{ID: fmt.Sprint("old", o), Expire: 1 << 62})
	}
	la.addConn(X, "a.1-1", 1)
	job := func(id string, users ...string) *appendJob {
		var keys []skey
		for _, u := range users {
			keys = append(keys, skey{0, u})
		}
		return &appendJob{m: &push.Message{ID: id, Data: []byte(id), To: push.Target{Users: users}}, keys: keys, ttl: 1 << 62, done: make(chan struct{})}
	}
	run := func(jobs ...*appendJob) {
		a.st.seqMu.Lock()
		a.st.process(jobs)
		a.st.seqMu.Unlock()
	}
	jA, jB := job("A", X, Y), job("B", X)
	run(jA, jB)
	if jA.status != statusRetry || jB.status != statusRetry {
		t.Fatalf("first batch: A status %d, B status %d; want both to retry", jA.status, jB.status)
	}
	if len(la.submitted) != 0 {
		t.Fatalf("%d copies fanned out from a batch that must retry", len(la.submitted))
	}
	// The origins retry, in their order: both go through, A before B in X, and Y
	// continues b's longer history.
	jA, jB = job("A", X, Y), job("B", X)
	run(jA, jB)
	if jA.status != statusOK || jB.status != statusOK {
		t.Fatalf("retried batch: A status %d, B status %d", jA.status, jB.status)
	}
	if jA.pos[0].Offset != 1 || jB.pos[0].Offset != 2 || jA.pos[1].Offset != 6 {
		t.Fatalf("positions: A %v, B %v; want A at X@1 and Y@6, B at X@2", jA.pos, jB.pos)
	}
	var got []string
	for i, tg := range la.targets {
		if slices.Contains(tg.Users, X) {
			got = append(got, string(la.submitted[i][2:]))
		}
	}
	if !slices.Equal(got, []string{"A", "B"}) {
		t.Fatalf("X's subscriber got %q, want A then B", got)
	}
}
