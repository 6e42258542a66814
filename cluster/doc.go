// Package cluster owns cluster membership (hashicorp/memberlist), the routing
// table that says which node holds which users and rooms, and the forwarding of
// opaque messages between nodes over reused, batched, authenticated TCP links.
//
// It deliberately knows nothing about WebSockets, the loop package or the push
// message format: the node package hands it payload bytes and receives payload
// bytes through Config.OnMessage. It never imports other longlink packages.
//
// Concurrency and lifetime contract:
//
//   - Every exported method of *Cluster is safe for concurrent use.
//   - A nil *Cluster is a standalone node (no cluster was asked for): Joined
//     is true, the peer and member queries return nothing, SetLocal*,
//     UpdateMeta, Leave and Kill do nothing. Callers need no nil checks.
//   - SetLocalUser and SetLocalRoom are called from event loops at connect rate:
//     they take one short mutex and append to a pending delta; a flusher
//     goroutine ships the deltas every flushInterval. They never block on I/O.
//   - Send and Broadcast copy the payload into a bounded per-peer queue and
//     return at once; a slow or dead peer only fills its own queue.
//   - Config.OnMessage runs on the reader goroutine of one inbound peer
//     connection; the payload is valid only during the call. A callback that
//     blocks stalls that one peer's stream (TCP back-pressure) and nothing else.
//   - Config.OnNodeLeft runs on its own goroutine, once per leave/death event.
//   - Config.Meta is called by memberlist whenever it (re)builds this node's
//     alive message; it must be cheap and must not call back into Cluster.
//   - Leave and Kill end every goroutine the package started; after they return
//     no callback runs any more.
package cluster
