// Package web serves the demo page and the JavaScript client that ships with longlink.
//
// It owns the embedded static files (web/static: the page, its script, and a copy of
// clients/js/longlink.js refreshed by `go generate ./web/`), a dev-only token endpoint and
// a same-origin push proxy, so the page can send pushes without ever seeing the API key.
//
// It deliberately does not speak WebSocket, verify tokens or know the push API's JSON:
// the page connects to the client port itself, and both the token minting and the push
// are callbacks in Config that the composition root (node) wires: PushTo posts to
// the node's public push API over HTTP.
//
// Concurrency: the http.Handler returned by Handler is safe for concurrent use. The
// Config callbacks are called concurrently from net/http goroutines and must be safe for
// that; they may block (the handler bounds request bodies, not callback time).
package web

//go:generate cp ../clients/js/longlink.js static/longlink.js
