package node

import (
	"context"
	"testing"
	"time"

	"longlink/internal/testutil"
)

// Issue 10, finding 4: a node restarted under the same name numbered connections from
// 1 again, so a new user got an old user's id and pushes and kicks aimed at the old
// id reached the new user.
func TestConnectionIDsNotReusedAcrossRestarts(t *testing.T) {
	first := startNode(t, func(c *Config) { c.NodeName = "same" })
	dial(t, first, "old")
	testutil.WaitFor(t, 2*time.Second, "old connected", func() bool { return first.Loop().Connections() == 1 })
	oldID := first.Loop().UserConnections("old")[0].ID
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	first.Shutdown(ctx)

	second := startNode(t, func(c *Config) { c.NodeName = "same" })
	c := dial(t, second, "new")
	testutil.WaitFor(t, 2*time.Second, "new connected", func() bool { return second.Loop().Connections() == 1 })
	newID := second.Loop().UserConnections("new")[0].ID
	if newID == oldID {
		t.Fatalf("the restarted node gave its first connection the old id %q", oldID)
	}
	if r := doPush(t, second, `{"to":{"connections":["`+oldID+`"]},"data":"for-old"}`); r.Body["delivered"] != float64(0) {
		t.Fatalf("push to the old id %s: %d %s", oldID, r.Status, r.Raw)
	}
	if r := call(t, second, "DELETE", "/v1/connections/"+oldID, ""); r.Status != 404 {
		t.Fatalf("kick of the old id %s: %d %s", oldID, r.Status, r.Raw)
	}
	settled(t, second, c) // c received neither the push nor a close
	if r := doPush(t, second, `{"to":{"connections":["`+newID+`"]},"data":"for-new"}`); r.Body["delivered"] != float64(1) {
		t.Fatalf("push to the new id %s: %d %s", newID, r.Status, r.Raw)
	}
	if _, m := read(t, c, 2*time.Second); m != "for-new" {
		t.Fatalf("new client got %q", m)
	}
}
