// Package hub is the delivery logic of one node: it implements push.Hub by
// combining this node's event loops with the cluster. A push is appended to its
// streams on their owners, which store it, replicate it and fan it out to the nodes
// that hold a recipient (streams.go); a connection is made known to its streams'
// owners before its 101 and replayed what it missed (subscribe.go). Presence, room
// and kick calls run here and, as cluster requests, on the peers.
//
// It is written against two small interfaces so it can be tested with fakes:
// Local (what it needs of *loop.Server; LoopLocal adapts one) and Remote (what it
// needs of *cluster.Cluster, which satisfies it, a nil *Cluster included). It does
// not know the node that composes it: node builds it with a Config and wires its
// callbacks. It does not own the wire format of pushes (push.Message) nor the
// request protocol between nodes (cluster.Request/Ask); it owns the query ops and
// their JSON bodies (query.go).
//
// Who calls what, on which goroutine:
//
//   - push.Hub methods (Deliver, User, Room, Stats, Kick*, Online, JoinRoom,
//     LeaveRoom) run on API handler goroutines, concurrently. Deliver waits for
//     the local writes (up to 10s); the queries wait for peers up to
//     QueryTimeout.
//   - OnMessage is the cluster's OnMessage: it runs on the link reader of one
//     peer, so a peer's pushes are queued in order; its payload is valid only
//     during the call. It never waits: a loop inbox that is full drops the push
//     at once and counts it (longlink_push_errors_total{reason="forward_overloaded"}).
//   - OnRequest is the cluster's OnRequest: it runs on one of the cluster's
//     bounded answering goroutines and may wait for the loops up to QueryTimeout.
//   - OnPresence is loop's OnPresence: it runs on an event loop under the
//     registry lock that decided the change and only records it in the cluster's
//     routing table (non-blocking).
//   - OnUpgrade is loop's OnUpgrade: it runs on an event loop and answers there
//     when the node is alone, else from a goroutine of its own that asks the owners.
//   - SubscribeRoom (connrooms.go) is a client's own subscribe: the node calls it
//     from a bounded goroutine of its own and it may wait for the room stream's
//     owner up to StoreTimeout; RoomHeadLocal is the loop's way on a node alone.
//   - Ack and AckMessage are a v2 client's acks, on its loop: they only queue, for
//     the ack goroutine that coalesces them and sends each owner its batch
//     (acks.go). Receipt (GET /v1/messages/{id}, receiptquery.go) asks every peer, bounded by
//     QueryTimeout. Delivery reports and wait notes travel as one-way data.
//   - OnMembers is the cluster's membership callback (one cluster goroutine).
//   - OnConnOpen and OnConnClose are loop's OnOpen and OnClose (on the loop), and
//     OnNodeLeft the cluster's (its own goroutine): they emit connection events and
//     queue what the presence goroutine tells owners and watchers (presence.go),
//     never waiting.
//   - The hub's fields are set in New and never change (the node builds the
//     cluster first, without binding it). Its mutable state is the streams'
//     (streams.go says which lock guards what: the committer's batch under seqMu,
//     the ring under ringMu, positions seen under seenMu, the store its own) and
//     the receipts' (under receipts.mu; waiters under receipts.wmu).
//     Metrics are created in New.
package hub
