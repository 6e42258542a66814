// Package upstream owns client requests to business back-ends: the businesses a node
// knows (name, back-end URL, timeout, requests in flight, connection pool, signing
// secret, subscribe hook, the per-connection limits of its traffic), one HTTP client
// and one in-flight bound per business, the HTTP contract with the back-ends
// (docs/api.md, "Upstream messages"), and the metrics of all of it.
//
// It does not parse client messages, hold connection state or write to clients:
// the node does (node/upstream.go, node/subscribe.go), on the connection's loop,
// and hands a request here with a callback for the answer.
//
// # Isolation
//
// Each business has its own http.Transport (its own connections, at most Pool per
// back-end host) and its own in-flight bound. A request first takes a slot of its
// business without waiting (none free: 503 at once), then runs on one of the
// business's request goroutines, bounded by the business's timeout. A business keeps
// at most InFlight of those goroutines for its next requests (runner: an idle one
// exits after 5 s, and at Close), so no goroutine is started per request once it is
// busy. A business whose back-end stalls fills its own slots, goroutines and pool
// and nothing else: another business's requests never wait for them.
//
// # Goroutines and lifetime
//
// New builds everything; Start's callers (Business.Send, Business.Subscribe) may be
// any goroutine, the loops included: they never block. The callback given to them
// runs on the request's goroutine, exactly once, whatever happens (answer, error
// status, timeout, shutdown). Close cancels what is in flight (their callbacks get
// 503) and waits for the goroutines, which the timeouts bound.
package upstream
