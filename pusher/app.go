package pusher

import "time"

// App is one Pusher app (tenant): --pusher-app id:key:secret. Its channels, users,
// limits and webhooks are its own: a client of one app never reaches another's.
type App struct {
	// ID is the app_id of the HTTP API's paths (/apps/{id}/...).
	ID string
	// Key is the public key clients connect with (/app/{key}) and auth strings start
	// with ("key:signature").
	Key string
	// Secret signs channel auth, user signin and HTTP API requests (HMAC-SHA256).
	Secret string

	// ClientEvents lets subscribers of private and presence channels send
	// client-* events to the channel's other members.
	ClientEvents bool
	// MaxConnections caps the app's connections on a node (0: no cap beyond the
	// node's): over it a client is closed with 4100 (over capacity).
	MaxConnections int
	// MaxClientEventsPerSecond rate-limits client events per connection (Pusher: 10).
	MaxClientEventsPerSecond int
	// ActivityTimeout is what pusher:connection_established tells the client (s).
	ActivityTimeout time.Duration
	// Webhooks are the URLs that get the app's Pusher-format webhooks
	// (webhook=URL, repeatable; "" entries are unused). An array, not a slice, so
	// that an App stays comparable; WebhookURLs gives the ones set.
	Webhooks [MaxAppWebhooks]string
	// WebhookEvents selects the webhook events sent (webhook-events=a|b); zero is
	// DefaultWebhookEvents.
	WebhookEvents WebhookEventSet
	// MaxEventBytes caps the data of one event published through the HTTP API
	// (0: DefaultMaxEventBytes, Pusher's 10 KB); over it the request gets 413.
	MaxEventBytes int
	// MaxChannels caps the channels one connection is subscribed to; a subscribe
	// beyond it gets pusher:subscription_error (status 403).
	MaxChannels int
	// MaxPresenceMembers caps the members (distinct users) of one presence
	// channel, cluster-wide as the node knows it; a new member beyond it gets
	// pusher:subscription_error (status 403).
	MaxPresenceMembers int
}

// WebhookURLs returns the app's webhook URLs, in the order given.
func (a *App) WebhookURLs() []string {
	var out []string
	for _, u := range a.Webhooks {
		if u != "" {
			out = append(out, u)
		}
	}
	return out
}
