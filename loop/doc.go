// Package loop owns the client side of the gateway: the gnet engine and its event
// loops, every client connection from its first byte to its close, the sessions table
// (user -> connections), room membership, per-loop timers and the slow-consumer policy.
//
// # Who owns what
//
//   - A connection's protocol state (parser, timestamps, delivery sequence) belongs to
//     the event loop that accepted it. It is touched only in gnet callbacks
//     (OnOpen, OnTraffic, OnClose) or in tasks that run on that loop.
//   - Other goroutines (the HTTP API, the cluster receiver) reach connections only
//     through Server methods (Deliver, Kick*, JoinRoom, LeaveRoom). They resolve
//     targets in the registry and append one job per loop to that loop's bounded inbox;
//     the loop runs the job. Jobs are queued to every loop under one mutex, so every
//     connection sees messages in the order Deliver accepted them.
//   - The registry (sessions, connection ids, room counts) is shared and guarded by
//     sharded mutexes. It changes on connect, disconnect and room changes, never per
//     message.
//
// # Upgrades that wait, and the v2 protocol
//
// With Config.OnUpgrade set (the node always sets it), an upgrade is registered first
// and finished by the hub: Conn.w holds it between the two. While it waits, frames
// for it are held (bounded), nothing it sends is read, and the sweep closes it at the
// handshake deadline; Upgrade.Done writes the 101, the hub's frames (welcome, replay)
// and what was held. Stamped deliveries (streams.go) carry a message's stream
// positions: plain connections get the pushed bytes, v2 connections a JSON envelope
// per stream, encoded once per stream and shared; a connection takes a message from
// one copy only (primary).
//
// # Pusher connections
//
// With Config.PusherApp set, /app/{key}?protocol=7 upgrades a KindPusher connection
// (pusher.go): no token and no connect hook, registered by number only (no user, no
// session, no user stream), told its socket id ("<node>.<n>") right after its 101.
// It takes messages only through the rooms of its app's channels ("pusher/<app>/<c>",
// the only rooms JoinConn lets it join) when they carry Stamped.Event, as a Pusher
// event encoded once per (message, room) like the v2 envelopes; Stamped.ExcludeSocket
// skips one socket. Its keepalive is pusher:ping/pusher:pong in text frames, swept
// like WebSocket pings; its other messages go to Config.OnPusherMessage on its loop.
//
// With Config.Admit set (the node's connect hook), an authenticated upgrade first
// waits unregistered for Admit's decision (admit.go, stateAdmitting): the decision
// may refuse it or add rooms and metadata (Conn.Meta), and comes back to the loop as
// a task; the handshake deadline, the early-data bound and closes apply meanwhile.
//
// # Room membership: decided in one place, held in four
//
// Who is in a room is decided in one place, under one lock: the registry shard of
// the user (JoinRoom, LeaveRoom, a connection's own JoinConn and LeaveConn, connect
// and close all change it there). Four
// structures hold the result, each for a reader the others cannot serve without a
// lock or a scan on its path; each is updated under that decision's lock, or in an
// ordered job it queued:
//
//   - session.rooms (registry): rooms joined through the API for a user, so a
//     connection that user opens later inherits them.
//   - Conn.rooms (guarded by the user's registry shard): the connection's rooms,
//     so its close unindexes exactly those, and connection listings show them.
//   - roomCount (registry room shard): connections and distinct members per room
//     on this node, for GET /v1/rooms answers and the cluster's first/last-member
//     presence events, which need a node-wide count under a lock.
//   - shard.rooms (owned by the loop): room -> the loop's members, walked without
//     any lock when a push to a room is written. Changes reach it as jobs in the
//     same ordered inbox as deliveries, so a push accepted after a join reaches
//     the new member and one accepted after a leave does not; a connection's own
//     JoinConn and LeaveConn (ext.go) change it at once, on its loop. A room job
//     sets the index to what the registry says rather than applying its own
//     change, so the index ends as the registry whichever order they ran in.
//
// Folding them into one would put a mutex on every room delivery (the loop's
// index) or a scan of every session on every close (Conn.rooms).
//
// # What it does not do
//
// It does not parse HTTP bodies, speak to peers or know about API keys: node wires
// push and cluster to it through plain functions in Config.
//
// # Costs
//
// An idle connection holds no read or write buffer (gnet's buffers are released when
// empty, the parser borrows chunks only while a message is unfinished) and no timer:
// each loop sweeps a slice of its connections on every tick to send pings and enforce
// the handshake and idle timeouts. Unfinished messages are charged to one node-wide
// wsproto.Budget (Config.MaxPendingBytes); a client that would exceed it is closed with
// 1013, and once a lot of it is given back OnTick returns the memory to the OS
// (reclaim.go).
package loop
