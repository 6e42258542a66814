// Package connhook calls the connect hook: an HTTP endpoint of the application that
// decides, before a WebSocket connection is accepted, whether it may connect, and
// which rooms and metadata it gets (docs/api.md, "Connect hook").
//
// It owns the HTTP client of the hook, the request body and its HMAC-SHA256
// signature, the reading and validation of the answer, the bound on calls in flight,
// the fail policy (what a hook that does not answer properly means), and the hook's
// metrics. It does not know about connections or event loops: node gives it the
// request's facts and applies its Decision (through loop.Admission).
//
// # Concurrency and lifetime
//
// A Hook is safe for concurrent use. Check returns at once: each call runs in a
// goroutine of its own, at most Config.MaxInFlight at a time (beyond that the fail
// policy answers at once, without a goroutine), and lasts at most Config.Timeout, or
// less when its context is canceled (the client went away). done is called exactly
// once, from that goroutine, or from Check itself when over the bound.
package connhook
