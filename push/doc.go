// Package push is the HTTP API that business services call on the gateway's
// internal API port to deliver messages to WebSocket clients, manage room
// membership, query presence and kick connections (docs/api.md).
//
// It owns: API-key authentication, request validation with JSON errors that
// name the offending field, message ids, the Message type and its binary
// encoding for cluster forwarding, and the API metrics.
//
// It deliberately does not deliver anything itself and never imports loop,
// cluster or node: every delivery and query goes through the Hub interface in
// Config, which the node implements. It does not serve /metrics or the health
// checks either; Handler covers /v1/ only and the node mounts it.
//
// Nothing is half-done: a request is validated completely before the Hub is
// called, and room joins check that every user is online before changing
// anything.
//
// Concurrency: an API is immutable after New apart from atomic counters;
// Handler serves any number of requests at once, and calls the Hub
// concurrently from handler goroutines. A Message passed to Hub.Deliver
// belongs to the hub from then on; the API does not touch it again.
package push
