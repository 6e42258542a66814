package pusher

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
)

// Pusher-format webhooks (docs/pusher.md, "Webhooks"): the event names, the body
// and the signature. The sender that queues, batches and retries them per app and
// URL is webhook_sender.go.

// Webhook event names: the "name" of each event of a body.
const (
	WebhookChannelOccupied   = "channel_occupied"   // {"channel"}
	WebhookChannelVacated    = "channel_vacated"    // {"channel"}
	WebhookMemberAdded       = "member_added"       // {"channel","user_id"}: presence channels
	WebhookMemberRemoved     = "member_removed"     // {"channel","user_id"}: presence channels
	WebhookClientEvent       = "client_event"       // {"channel","event","data","socket_id","user_id"?}
	WebhookSubscriptionCount = "subscription_count" // {"channel","subscription_count"}: opt-in
)

// WebhookEventNames lists every webhook event, in the order of WebhookEventSet's bits.
var WebhookEventNames = [...]string{
	WebhookChannelOccupied, WebhookChannelVacated, WebhookMemberAdded, WebhookMemberRemoved,
	WebhookClientEvent, WebhookSubscriptionCount,
}

const numWebhookEvents = len(WebhookEventNames)

// Headers of every Pusher webhook POST, as Pusher sends them.
const (
	// HeaderPusherKey is the app's key: which app (and secret) the POST is from.
	HeaderPusherKey = "X-Pusher-Key"
	// HeaderPusherSignature is the hex HMAC-SHA256 of the exact body under the
	// app's secret (no "sha256=" prefix, unlike longlink's own webhooks).
	HeaderPusherSignature = "X-Pusher-Signature"
)

// WebhookEventSet is a set of webhook events, one bit per WebhookEventNames
// entry. The zero value is DefaultWebhookEvents, so an App built without
// webhook-events gets the default.
type WebhookEventSet uint8

// DefaultWebhookEvents is every event but subscription_count, which no node sends
// (webhook-events refuses it: the cluster state does not follow each change of a
// channel's count); its encoding is kept for a sender that is given one.
const DefaultWebhookEvents WebhookEventSet = 1<<5 - 1

// webhookEventIndex is the bit of name, or -1.
func webhookEventIndex(name string) int {
	switch name {
	case WebhookChannelOccupied:
		return 0
	case WebhookChannelVacated:
		return 1
	case WebhookMemberAdded:
		return 2
	case WebhookMemberRemoved:
		return 3
	case WebhookClientEvent:
		return 4
	case WebhookSubscriptionCount:
		return 5
	}
	return -1
}

// Has reports whether the set holds the event name (false for an unknown name).
func (s WebhookEventSet) Has(name string) bool {
	i := webhookEventIndex(name)
	if s == 0 {
		s = DefaultWebhookEvents
	}
	return i >= 0 && s&(1<<i) != 0
}

// String is the set as webhook-events takes it: names joined with '|'.
func (s WebhookEventSet) String() string {
	var names []string
	for _, n := range WebhookEventNames {
		if s.Has(n) {
			names = append(names, n)
		}
	}
	return strings.Join(names, "|")
}

// WebhookEvent is one event of a Pusher webhook. Name says which fields apply
// (see the Webhook* constants); the others are ignored. The strings are kept
// until the event is delivered: they must not be views of a frame's bytes.
type WebhookEvent struct {
	Name    string
	Channel string
	// UserID: the member of member_added and member_removed; on client_event the
	// sender's user on a presence channel ("" elsewhere: left out).
	UserID string
	// Event, Data and SocketID of client_event: the client-* event's name, its data
	// as the string Pusher sends (the text of the data the client sent), and the
	// sender's socket id.
	Event    string
	Data     string
	SocketID string
	// SubscriptionCount of subscription_count: the channel's connections.
	SubscriptionCount int
}

// AppendWebhookBody appends the body of a webhook POST to dst:
//
//	{"time_ms":<timeMS>,"events":[{"name":...,"channel":...,...},...]}
//
// time_ms is when the webhook was made (Unix milliseconds): Pusher's field for
// receivers to spot delayed webhooks. An event with an unknown name is written
// with its name and channel only. It allocates only to grow dst.
func AppendWebhookBody(dst []byte, timeMS int64, events []WebhookEvent) []byte {
	dst = append(dst, `{"time_ms":`...)
	dst = strconv.AppendInt(dst, timeMS, 10)
	dst = append(dst, `,"events":[`...)
	for i := range events {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendWebhookEvent(dst, &events[i])
	}
	return append(dst, "]}"...)
}

func appendWebhookEvent(dst []byte, e *WebhookEvent) []byte {
	dst = append(dst, `{"name":`...)
	dst = appendString(dst, e.Name)
	dst = append(dst, `,"channel":`...)
	dst = appendString(dst, e.Channel)
	switch e.Name {
	case WebhookMemberAdded, WebhookMemberRemoved:
		dst = append(dst, `,"user_id":`...)
		dst = appendString(dst, e.UserID)
	case WebhookClientEvent:
		dst = append(dst, `,"event":`...)
		dst = appendString(dst, e.Event)
		dst = append(dst, `,"data":`...)
		dst = appendString(dst, e.Data)
		dst = append(dst, `,"socket_id":`...)
		dst = appendString(dst, e.SocketID)
		if e.UserID != "" {
			dst = append(dst, `,"user_id":`...)
			dst = appendString(dst, e.UserID)
		}
	case WebhookSubscriptionCount:
		dst = append(dst, `,"subscription_count":`...)
		dst = strconv.AppendInt(dst, int64(e.SubscriptionCount), 10)
	}
	return append(dst, '}')
}

// SignWebhook returns the HeaderPusherSignature of body under secret: what a
// receiver (the Pusher SDKs' webhook validation) computes to check a POST.
func SignWebhook(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}
