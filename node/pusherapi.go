package node

import (
	"time"

	"longlink/loop"
	"longlink/push"
	"longlink/pusher"
)

// The Pusher HTTP API's Backend (pusher.Backend; docs/pusher.md, "HTTP API"): every
// call arrives verified and validated from an API-port goroutine, and is carried out
// through the hub, cluster-wide.

// pusherBackend implements pusher.Backend.
type pusherBackend struct{ p *pusherNode }

// Trigger stores one event on each channel's room stream (one push: the streams'
// owners order it with the channels' other events) and returns once every stream
// has it, as a push's 2xx does. Pusher has no replay: the event is kept only for
// push.PusherEventTTL, so that it has a position in each stream and a node that
// missed it notices (push.NewPusherMessage).
func (b pusherBackend) Trigger(app *pusher.App, channels []string, event, data, excludeSocketID string) error {
	rooms := make([]string, len(channels))
	for i, ch := range channels {
		rooms[i] = loop.PusherRoom(app.ID, ch)
	}
	m := push.NewPusherMessage(b.p.n.api.NewID(), rooms, []byte(data), push.PusherEvent{Event: event, ExcludeSocket: excludeSocketID})
	m.Accepted = time.Now().UnixNano()
	_, err := b.p.n.hub.Deliver(m)
	return err
}

func (b pusherBackend) info(app *pusher.App, names []string, info pusher.Info, counts map[string]int) map[string]pusher.ChannelInfo {
	out := make(map[string]pusher.ChannelInfo, len(names))
	for _, ch := range names {
		ci := pusher.ChannelInfo{Occupied: true}
		if info&pusher.InfoUserCount != 0 && pusher.KindOf(ch) == pusher.KindPresence {
			ci.UserCount = b.p.n.hub.PusherMemberCount(app.ID, ch)
		}
		if info&pusher.InfoSubscriptionCount != 0 {
			ci.SubscriptionCount = counts[ch]
		}
		out[ch] = ci
	}
	return out
}

// Channels lists the app's occupied channels cluster-wide; subscription counts are
// asked of every node.
func (b pusherBackend) Channels(app *pusher.App, prefix string, info pusher.Info) (map[string]pusher.ChannelInfo, error) {
	names := b.p.n.hub.PusherOccupied(app.ID, prefix)
	var counts map[string]int
	if info&pusher.InfoSubscriptionCount != 0 {
		var err error
		if counts, err = b.p.n.hub.PusherSubscriptionCounts(app.ID, prefix, false); err != nil {
			return nil, err
		}
	}
	return b.info(app, names, info, counts), nil
}

func (b pusherBackend) Channel(app *pusher.App, name string, info pusher.Info) (pusher.ChannelInfo, error) {
	occupied := b.p.n.hub.PusherChannelOccupied(app.ID, name)
	var counts map[string]int
	if info&pusher.InfoSubscriptionCount != 0 {
		var err error
		if counts, err = b.p.n.hub.PusherSubscriptionCounts(app.ID, name, true); err != nil {
			return pusher.ChannelInfo{}, err
		}
		if counts[name] > 0 {
			occupied = true
		}
	}
	if !occupied {
		return pusher.ChannelInfo{}, nil
	}
	return b.info(app, []string{name}, info, counts)[name], nil
}

func (b pusherBackend) Users(app *pusher.App, channel string) ([]string, error) {
	members := b.p.n.hub.PusherMembers(app.ID, channel)
	ids := make([]string, len(members))
	for i, m := range members {
		ids[i] = m.ID
	}
	return ids, nil
}

func (b pusherBackend) TerminateUser(app *pusher.App, userID string) error {
	_, err := b.p.n.hub.PusherTerminate(app.ID, userID)
	return err
}

// SendToUser publishes on the user's #server-to-user- channel, which pusher-js
// subscribes to once signed in (only the signed-in user may: pusher.CheckSubscribe).
func (b pusherBackend) SendToUser(app *pusher.App, userID, event, data string) error {
	return b.Trigger(app, []string{pusher.ServerToUserPrefix + userID}, event, data, "")
}

// appByID is HTTPAPIConfig.Apps.
func (p *pusherNode) appByID(id string) *pusher.App {
	if a := p.byID[id]; a != nil {
		return &a.App
	}
	return nil
}
