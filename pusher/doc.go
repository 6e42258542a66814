// Package pusher speaks the Pusher Channels protocol (version 7) and its HTTP API, so
// pusher-js, Laravel Echo and the Pusher server SDKs work against longlink unchanged
// (docs/pusher.md; issue 14). Channels map onto longlink's rooms and users onto its
// users, per app.
//
// The protocol layer (protocol.go, json.go, channels.go, auth.go, config.go) is pure:
// no goroutines, no state beyond what its caller holds, safe for concurrent use.
// Decoders return views of the frame they were given (valid as long as its bytes
// are: a loop must copy what it keeps past Discard), except Member, User and the
// unescaped strings, which own their bytes. Encoders append to the caller's buffer.
// An App is read-only once parsed.
//
// The HTTP API (httpapi.go, sign.go) serves requests on the API port's goroutines
// over the node's Backend. The webhook sender (webhook_sender.go) runs goroutines
// of its own, one per app URL, on package webhook's delivery loop.
package pusher
