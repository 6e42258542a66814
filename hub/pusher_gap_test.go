package hub

import (
	"slices"
	"testing"
	"time"

	"longlink/loop"
	"longlink/push"
)

// TestPusherEventGapResumesChannel: a Pusher event whose copy to a node holding
// the channel's subscribers is lost (a full link queue) is noticed at the next
// event of that channel, and the node closes the channel's Pusher clients (4200,
// ResumeV2) so they resubscribe instead of silently missing it (docs/pusher.md,
// "Delivery"). That needs every Pusher event to carry its stream's position.
func TestPusherEventGapResumesChannel(t *testing.T) {
	net := newFakeNet()
	a, _ := net.add(t, "a", nil)
	b, lb := net.add(t, "b", nil)
	room := loop.PusherRoom("app", "news")
	owner, peer, lpeer := a, "b", lb
	if pusherOwner(a.st.ringNow(), "app", "news") == "b" {
		owner, peer = b, "a"
		lpeer = net.local["a"]
	}
	lpeer.mu.Lock()
	lpeer.rooms[room] = loop.RoomInfo{Connections: 1}
	lpeer.mu.Unlock()
	trigger := func(data string) {
		t.Helper()
		m := push.NewPusherMessage("id-"+data, []string{room}, []byte(data), push.PusherEvent{Event: "ev"})
		m.Accepted = time.Now().UnixNano()
		if _, err := owner.Deliver(m); err != nil {
			t.Fatal(err)
		}
	}
	trigger("1")
	net.mu.Lock()
	net.drop[peer] = 1
	net.mu.Unlock()
	trigger("2") // its copy to the peer is lost
	trigger("3")
	if !slices.Contains(lpeer.resumes(), resumeCall{loop.KeyRoom, room}) {
		t.Fatalf("the peer that lost an event of %s resumed %v: its Pusher clients would miss it silently", room, lpeer.resumes())
	}
}
