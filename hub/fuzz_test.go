package hub

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"longlink/internal/testutil"
	"longlink/loop"
	"longlink/push"
)

// FuzzPeerMessage feeds arbitrary cluster payloads (forwarded pushes) and request
// bodies (queries) to a hub on real event loops, as a broken or hostile member would
// send them. Nothing may panic; malformed input is dropped. Moved from node.
func FuzzPeerMessage(f *testing.F) {
	m := push.Message{ID: "m1", To: push.Target{Users: []string{"u1"}}, Data: []byte(`{"a":1}`)}
	f.Add(stampedPayload(&m, 1))
	f.Add(query(opUser, []byte("u1")))
	f.Add(query(opRoom, []byte("lobby")))
	f.Add(query(opStats, nil))
	kick, _ := json.Marshal(kickBody{ID: "n-1", Reason: "x"})
	f.Add(query(opKickConn, kick))
	f.Add(query(opKickUser, kick))
	f.Add(query(opOnline, []byte(`["u1","u2"]`)))
	room, _ := json.Marshal(roomBody{Room: "r", Users: []string{"u1"}})
	f.Add(query(opJoin, room))
	f.Add(query(opLeave, room))
	srv, err := loop.New(loop.Config{
		Addrs:  []string{"127.0.0.1:0"},
		Loops:  1,
		NodeID: "n",
		Authenticate: func(string) (loop.Identity, *loop.AuthError) {
			return loop.Identity{}, &loop.AuthError{Status: 401, Reason: "no"}
		},
		Metrics: metrics.NewSet(),
		Logger:  quiet,
	})
	if err != nil {
		f.Fatal(err)
	}
	if err := srv.Start(); err != nil {
		f.Fatal(err)
	}
	testutil.CleanupWithin(f, 5*time.Second, func(ctx context.Context) { srv.Stop(ctx) })
	h, err := New(Config{NodeName: "n", Local: LoopLocal(srv), Logger: quiet})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(h.Close)
	f.Fuzz(func(t *testing.T, in []byte) {
		h.OnMessage("peer", in)
		h.OnRequest("peer", in)
	})
}
