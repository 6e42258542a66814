package hub

import (
	"errors"

	"longlink/loop"
)

// Rooms a connection subscribes itself to (node/subscribe.go). The loop has put the
// connection in the room (registry, presence, room index) before these run; what is
// left is what a room joined through the API also needs (barrier in subscribe.go):
// the stream's owner must know this node holds a subscriber before the client is
// told it is in, so every push accepted after the answer reaches it, on any node. A
// v2 client also learns the stream's head, its position from then on.

// RoomStream is the name of room's stream: "room:" + room.
func RoomStream(room string) string { return skey{loop.KeyRoom, room}.stream() }

// SubscribeRoom returns the head of room's stream once its owner knows this node
// holds a subscriber of it: the routing delta is flushed and the owner asked on the
// same ordered link, retried at the next owner until StoreTimeout, as an upgrade's
// streams are. It blocks (up to StoreTimeout): never call it on a loop in a cluster;
// RoomHeadLocal is the loop's way.
func (h *Hub) SubscribeRoom(room string) (loop.Head, error) {
	if h.draining() {
		return loop.Head{}, errDraining
	}
	k := skey{loop.KeyRoom, room}
	got, err := h.st.subscribe([]skey{k}, nil, true)
	if err != nil {
		h.m.subscribeFailures.Inc()
		return loop.Head{}, err
	}
	sr, ok := got[k.stream()]
	if !ok {
		return loop.Head{}, errors.New("hub: the owner of " + k.stream() + " did not answer for it")
	}
	return loop.Head{Epoch: sr.head.Epoch, Offset: sr.head.Offset}, nil
}

// RoomHeadLocal is SubscribeRoom for a node alone, which owns every stream and
// answers from its own store without waiting for anyone: a loop may call it. ok is
// false in a cluster (use SubscribeRoom off the loop).
func (h *Hub) RoomHeadLocal(room string) (head loop.Head, ok bool) {
	if len(h.st.ringNow().ring.Members()) != 1 || h.draining() {
		return loop.Head{}, false
	}
	k := skey{loop.KeyRoom, room}
	sr := h.st.readLocal([]skey{k}, nil)[k.stream()]
	return loop.Head{Epoch: sr.head.Epoch, Offset: sr.head.Offset}, true
}
