// Package cluster owns cluster membership (hashicorp/memberlist), the routing
// table that says which node holds which users and rooms, and the forwarding of
// opaque messages between nodes over reused, batched, authenticated TCP links.
//
// It also carries requests between nodes: Request (one node) and Ask (fan-out)
// send a body and wait, bounded by RequestTimeout, for the answer that
// Config.OnRequest returns on the asked node. Ids, waiters, timeouts and the bound
// on concurrent answers live here, so every caller (presence queries today,
// stream and acknowledgement traffic later) gets the same limits.
//
// It deliberately knows nothing about WebSockets, the loop package or the push
// message format: the hub package hands it payload bytes and receives payload
// bytes through Config.OnMessage and Config.OnRequest. It never imports other
// longlink packages.
//
// Requests and answers are frame kinds of their own on the forwarding link
// (kindRequest, kindResponse: id uvarint, body), not prefixes of data payloads:
// data stays opaque (no payload byte is reserved), the reader can tell a request
// from a push without looking inside, and readFrames applies MaxFrame to them like
// every frame. Links are one-way, so an answer goes back on the answering node's
// own link to the asker. A node of an earlier version does not know these kinds
// and closes a link that carries one: in a cluster mixing versions, queries fail
// (the API answers 503 or partial results) until every node is upgraded.
//
// Concurrency and lifetime contract:
//
//   - Every exported method of *Cluster is safe for concurrent use.
//   - A nil *Cluster is a standalone node (no cluster was asked for): Joined
//     is true, the peer and member queries return nothing, Send and Request
//     fail with ErrUnknownNode, Ask reaches no one, SetLocal*, UpdateMeta,
//     Leave and Kill do nothing. Callers need no nil checks.
//   - SetLocalUser and SetLocalRoom are called from event loops at connect rate:
//     they take one short mutex and append to a pending delta; a flusher
//     goroutine ships the deltas every flushInterval. They never block on I/O.
//   - Send and Broadcast copy the payload into a bounded per-peer queue and
//     return at once; a slow or dead peer only fills its own queue.
//   - Config.OnMessage runs on the reader goroutine of one inbound peer
//     connection; the payload is valid only during the call. A callback that
//     blocks stalls that one peer's stream (TCP back-pressure) and nothing else.
//   - Config.OnRequest runs on one of at most MaxAnswering goroutines started
//     by the link readers (over the bound a request is dropped and counted in
//     longlink_cluster_query_drops_total); its body is its own copy. Request
//     and Ask block their caller until the answers, the context's end,
//     RequestTimeout or shutdown, whichever comes first; an answer for an id
//     nobody waits for any more, or from a node that was not asked, is dropped.
//     An answer is bounded like any frame: one over MaxFrame (or QueueBytes) is
//     not sent, counted as a forward failure, and its asker times out.
//   - Config.OnNodeLeft runs on its own goroutine, once per leave/death event.
//   - Config.Meta is called by memberlist whenever it (re)builds this node's
//     alive message; it must be cheap and must not call back into Cluster.
//   - Leave and Kill end every goroutine the package started (waiting for the
//     OnRequest calls under way) and wake every Request and Ask with ErrClosed
//     or its missing nodes; after they return no callback runs any more.
package cluster
