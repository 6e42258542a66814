// Package stream owns the history of the streams on this node (user:<id>,
// room:<name>, all) and the ring that says which nodes hold a stream.
//
// A Store keeps, per stream, an epoch (which history it is) and its last messages
// at contiguous offsets from 1. The owner of a stream stamps a message (Stamp: the
// next offset, not yet visible), commits it once its replicas took it (Commit) or
// rolls it back when one refused (Rollback, which marks the stream stale); a
// replica stores the owner's copy at the owner's position (Apply) and refuses when
// what it holds conflicts (a history at least as long of another epoch, another
// message at that offset). Holders sync with Export and Adopt. Readers ask for
// what follows a position (Read) and are told whether it could be recovered. The
// bounds are Config.Size messages per stream, a TTL per message (Entry.Expire,
// dropped by Sweep) and Config.MaxBytes for every stream together, over which the
// oldest committed messages of any stream go first.
//
// A Ring maps a stream to its holders over the alive members (consistent hashing):
// the first is the owner, the next ones hold copies. It is immutable; a
// membership change builds a new one.
//
// # What it does not do
//
// No I/O and no goroutines: it does not speak to peers, keep time (Config.Now is
// read when asked; the hub calls Sweep on its tick) or decide when to sync. The
// hub (hub/streams.go, hub/subscribe.go) does that and calls in.
//
// # Locking
//
// One mutex guards a Store: every method takes it once and calls nothing outside
// the package while holding it (Sweep and Names walk every stream under it). A push
// touches it once per stream, never per recipient. A Ring needs no lock.
package stream
