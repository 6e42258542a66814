// Package pusher speaks the Pusher Channels protocol (version 7) and its HTTP API, so
// pusher-js, Laravel Echo and the Pusher server SDKs work against longlink unchanged
// (docs/pusher.md; issue 14). Channels map onto longlink's rooms and users onto its
// users, per app.
//
// Work in progress (issue 14 is open): see docs/pusher.md for what exists.
package pusher
