// Package node is the composition root of one gateway node: it builds the client
// event loops (loop), the delivery logic (hub), the push API (push), membership and
// forwarding (cluster), the API port's HTTP server and the demo page (web) from one
// Config composed of those packages' own configs, wires their callbacks to each
// other, and orders their start and stop. main.go fills the Config from flags;
// integration tests start Nodes directly.
//
// It owns no delivery logic of its own (that is hub's), no protocol (loop, push,
// cluster) and no policy beyond ordering and the API port's transport limits.
//
// # Lifetime
//
// New validates the Config and builds every part without binding anything. Start
// binds the client port (so presence can begin), starts the cluster (listen, join),
// then serves the API, and only then reports ready. Shutdown is the reverse with a
// drain: readiness goes false, the node leaves the cluster (peers stop routing to
// it), clients get close 1001 (up to DrainTimeout), the loops stop, and the API
// closes last so pushes accepted before the drain still finish. Kill stops without
// draining or leaving, as a crash would (cluster tests).
//
// # Who owns what
//
//   - The parts are immutable after New: their pointers are set once, before Start,
//     and read by any goroutine. A standalone node's cluster is a nil
//     *cluster.Cluster, whose methods answer as a cluster of one.
//   - ready and draining are atomics read by the API's handlers and the loops'
//     endpoint callback; only Start, Shutdown and Kill write them.
//   - The API server (apiserver.go) runs fasthttp's goroutines: POST /v1/push goes
//     straight to push.API.ServePush; every other route through the net/http mux
//     with the request copied (fasthttp reuses its buffers).
//   - metaLoop (one goroutine) re-gossips this node's connection count.
//   - Client messages (clientmsg.go) run on the connection's loop: upstream.go
//     (send) and subscribe.go check the limits there, in the connection's loop-owned
//     Ext (rate buckets), and hand what must wait (a back-end, a hook, a stream's
//     owner) to goroutines bounded by package upstream's slots, which answer with
//     loop.Server.Send.
package node
