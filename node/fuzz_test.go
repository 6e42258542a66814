package node

import (
	"encoding/json"
	"testing"

	"longlink/push"
)

// FuzzPeerMessage feeds arbitrary cluster payloads (pushes, queries, answers) to a
// real node's receive path, as a broken or hostile member would send them. Nothing
// may panic; malformed input is dropped. A standalone node answers queries into the
// void (no cluster), which exercises every query decoder.
func FuzzPeerMessage(f *testing.F) {
	m := push.Message{ID: "m1", To: push.Target{Users: []string{"u1"}}, Data: []byte(`{"a":1}`)}
	f.Add(m.AppendBinary([]byte{wirePush}))
	f.Add(appendQuery(nil, 1, opUser, []byte("u1")))
	f.Add(appendQuery(nil, 2, opRoom, []byte("lobby")))
	f.Add(appendQuery(nil, 3, opStats, nil))
	kick, _ := json.Marshal(kickBody{ID: "n-1", Reason: "x"})
	f.Add(appendQuery(nil, 4, opKickConn, kick))
	f.Add(appendQuery(nil, 5, opKickUser, kick))
	f.Add(appendQuery(nil, 6, opOnline, []byte(`["u1","u2"]`)))
	room, _ := json.Marshal(roomBody{Room: "r", Users: []string{"u1"}})
	f.Add(appendQuery(nil, 7, opJoin, room))
	f.Add(appendQuery(nil, 8, opLeave, room))
	f.Add(appendResponse(nil, 9, []byte(`[]`)))
	n := startNode(f, func(c *Config) { c.GossipAddr, c.ForwardAddr = "", "" })
	f.Fuzz(func(t *testing.T, in []byte) {
		n.hub.onMessage("peer", in)
	})
}
