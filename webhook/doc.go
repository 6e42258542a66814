// Package webhook sends the gateway's events (docs/api.md, "Webhooks") to HTTP
// receivers: one bounded queue and one sending goroutine per URL, JSON batches
// signed with HMAC-SHA256, retried with capped, jittered exponential backoff for a
// window, every loss counted (longlink_webhook_events_total{outcome}).
//
// The same delivery loop carries other body formats: a Dispatcher takes a Format
// (how a batch is encoded, signed and counted) and is otherwise a Sender, with the
// same Config, bounds and per-URL metrics under its own prefix and labels
// (dispatch.go). The Pusher webhooks use one per app (pusher/webhook_sender.go).
//
// It does not decide events: the hub does (connection, presence and expiry events,
// hub/presence.go), and a node whose webhooks are off has a nil *Sender, whose
// methods do nothing.
//
// Concurrency and lifetime: Emit (Offer) may be called from any goroutine, event
// loops included, and never blocks. Each URL's goroutine owns its batch. Close (or
// Shutdown) stops taking events, sends what is queued within its bound and ends
// every goroutine the package started; an event emitted after it is counted as
// dropped_shutdown.
package webhook
