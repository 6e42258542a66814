package hub

// TEMPORARY: the API of the Pusher channel state being built on branch pres,
// so node compiles meanwhile; replaced by that branch at its merge.

import (
	"time"

	"longlink/pusher"
)

type PusherHooks struct {
	Member  func(app, channel string, m pusher.Member, added bool)
	Webhook func(app, name, channel, userID string)
	Grace   time.Duration
}

func (h *Hub) PusherJoin(app, channel, socketID string, m *pusher.Member)   {}
func (h *Hub) PusherLeave(app, channel, socketID, userID string)           {}
func (h *Hub) PusherMembers(app, channel string) []pusher.Member           { return nil }
func (h *Hub) PusherMemberCount(app, channel string) int                   { return 0 }
func (h *Hub) PusherOccupied(app, prefix string) []string                  { return nil }
func (h *Hub) PusherSubscriptionCounts(app, prefix string, exact bool) (map[string]int, error) {
	return nil, nil
}
