package loop

import (
	"sync/atomic"
	"time"
)

type jobKind uint8

const (
	jobDeliver jobKind = iota
	jobJoin            // conns join room
	jobLeave           // conns leave room
	jobClose           // close conns with code and reason
	jobDrain           // close every connection with 1001 (graceful shutdown)
)

// job is one unit of work for one loop. Delivery jobs of one Deliver call share the
// frame bytes and the delivery tracker.
type job struct {
	kind   jobKind
	seq    uint64
	frame  []byte
	all    bool
	rooms  []string
	conns  []*Conn // explicit recipients (users, connection ids) on this loop
	room   string  // jobJoin, jobLeave
	code   uint16  // jobClose, jobDrain
	reason string
	d      *delivery
	target *shard // the loop this job is for
	st     *Stamped
	keys   []int32 // with st: the key index of each of conns (-1: a connection id)
	skip   *Conn   // with st: the Pusher connection of st.ExcludeSocket, when it is on this node
}

// delivery tracks one Deliver call across loops.
type delivery struct {
	pending  atomic.Int32
	written  atomic.Int64
	accepted int64 // unix nanoseconds
	done     chan struct{}
	// z is the compressed variant of the jobs' frame (deflate.go), built once.
	z deflateCache
}

// finish ends j. It takes no lock: the inbox bounds are atomics (before, finish
// took the shard mutex the API goroutines enqueue under). The waiter is woken at
// once, not after the drain's flush: its frames are queued for the flush that ends
// this same task, and waking waiters one by one lets their answers go out on the
// other core while the loop writes; batching the wake-ups after the flush cost
// 10-18% of closed-loop pushes/s (issue 15, docs/performance.md).
func (j *job) finish(sh *shard, written int) {
	if d := j.release(sh, written); d != nil {
		close(d.done)
	}
}

// release gives back j's share of the inbox bounds and counts its writes. It
// returns j's delivery when j was its last job.
func (j *job) release(sh *shard, written int) *delivery {
	sh.njobs.Add(-1)
	if len(j.frame) > 0 {
		sh.bytes.Add(-int64(len(j.frame)))
	}
	d := j.d
	if d == nil {
		return nil
	}
	if written > 0 {
		d.written.Add(int64(written))
	}
	if d.pending.Add(-1) == 0 {
		return d
	}
	return nil
}

// start begins j on the loop. It returns true when j has recipients left to write,
// which step then writes in chunks.
func (sh *shard) start(j *job) bool {
	switch j.kind {
	case jobJoin, jobLeave:
		// Either way the index follows the registry (see syncRoom).
		for _, c := range j.conns {
			sh.syncRoom(j.room, c)
		}
		j.finish(sh, len(j.conns))
		return false
	case jobClose:
		n := 0
		for _, c := range j.conns {
			if c.state == stateOpen || c.state == stateHandshake {
				sh.startClose(c, j.code, j.reason)
				n++
			}
		}
		j.finish(sh, n)
		return false
	case jobDrain:
		for _, c := range append(sh.snap[:0], sh.conns...) {
			switch c.state {
			case stateHandshake, stateAdmitting:
				sh.srv.m.handshakeFailure("draining")
				sh.srv.closeNow(c)
			case stateOpen:
				if c.kind == KindPusher {
					// The Pusher protocol's own "reconnect now, elsewhere" (4200).
					sh.startClose(c, PusherCloseReconnect, j.reason)
				} else {
					sh.startClose(c, j.code, j.reason)
				}
			}
		}
		clear(sh.snap)
		j.finish(sh, 0)
		return false
	}
	if j.st != nil {
		return sh.startStamped(j)
	}
	// jobDeliver: collect recipients once; writes then dedupe by seq, so a connection
	// named by several targets gets the message once.
	snap := sh.snap[:0]
	if j.all {
		snap = append(snap, sh.conns...)
	} else {
		for _, room := range j.rooms {
			for c := range sh.rooms[room] {
				snap = append(snap, c)
			}
		}
		snap = append(snap, j.conns...)
	}
	sh.snap = snap
	sh.cursor = 0
	sh.cur = j
	if len(snap) == 0 {
		sh.cur = nil
		j.finish(sh, 0)
		return false
	}
	return true
}

// startStamped collects a stamped job's recipients with the key each matched, in the
// order primary relies on: users and connection ids (j.conns), rooms as listed, all.
func (sh *shard) startStamped(j *job) bool {
	snap, keys := sh.snap[:0], sh.snapKey[:0]
	snap = append(snap, j.conns...)
	keys = append(keys, j.keys...)
	for i := range j.st.Keys {
		k := &j.st.Keys[i]
		switch k.Kind {
		case KeyRoom:
			for c := range sh.rooms[k.Name] {
				snap = append(snap, c)
				keys = append(keys, int32(i))
			}
		case KeyAll:
			for _, c := range sh.conns {
				snap = append(snap, c)
				keys = append(keys, int32(i))
			}
		}
	}
	sh.snap, sh.snapKey = snap, keys
	sh.cursor = 0
	sh.cur = j
	if len(snap) == 0 {
		sh.cur = nil
		j.finish(sh, 0)
		return false
	}
	return true
}

// writeStamped queues stamped job j's frame for c, reached through key index k. It
// reports whether it was queued (and its bytes), and skipped when c is a Pusher
// connection the message is not an event of.
func (sh *shard) writeStamped(j *job, c *Conn, k int) (ok bool, nbytes int, skipped bool) {
	st := j.st
	if c.state != stateOpen || c == j.skip {
		return false, 0, false
	}
	// A Pusher connection takes an event once per channel it holds (Pusher sends each
	// channel its copy); everyone else once per message.
	perChannel := c.kind == KindPusher && k >= 0 && st.Keys[k].Kind == KeyRoom
	if !perChannel && (c.seq == j.seq || !sh.primary(c, st, k)) {
		// It takes the message through another stream; a v2 client's position in
		// this one still advances.
		if c.kind == KindV2 && k >= 0 && st.Keys[k].Epoch != "" {
			sh.queuePosition(c, st, k)
		}
		return false, 0, false
	}
	f := st.frameFor(c, k)
	if f == nil {
		return false, 0, true // a Pusher connection, and not a Pusher event of its channel
	}
	var key *Key
	if k >= 0 {
		key = &st.Keys[k]
	}
	if !sh.queueStamped(c, f, j.seq, key) {
		return false, 0, false
	}
	if st.Track != nil {
		st.Track.wrote(st, c, k)
	}
	return true, len(f), false
}

// step writes cur's frame to up to budget recipients and returns how many it tried.
func (sh *shard) step(budget int) int {
	j := sh.cur
	end := min(sh.cursor+budget, len(sh.snap))
	written := 0
	if j.st != nil {
		nbytes, skipped := 0, 0
		for i := sh.cursor; i < end; i++ {
			ok, n, skip := sh.writeStamped(j, sh.snap[i], int(sh.snapKey[i]))
			if ok {
				written++
				nbytes += n
			}
			if skip {
				skipped++
			}
		}
		sh.bytesOut.Add(uint64(nbytes))
		if skipped > 0 {
			sh.srv.m.pusherSkipped.Add(skipped)
		}
	} else {
		skipped, nbytes := 0, 0
		for _, c := range sh.snap[sh.cursor:end] {
			if c.kind == KindPusher {
				skipped++ // unstamped frames are plain bytes, never Pusher events
				continue
			}
			f := j.frameFor(c) // deliver.go
			if sh.queueFrame(c, f, j.seq) {
				written++
				nbytes += len(f)
			}
		}
		sh.bytesOut.Add(uint64(nbytes))
		if skipped > 0 {
			sh.srv.m.pusherSkipped.Add(skipped)
		}
	}
	tried := end - sh.cursor
	sh.cursor = end
	if written > 0 {
		sh.framesOut.Add(uint64(written))
		if j.d != nil {
			j.d.written.Add(int64(written))
		}
	}
	if sh.cursor == len(sh.snap) {
		clear(sh.snap)
		sh.snap = sh.snap[:0]
		sh.snapKey = sh.snapKey[:0]
		sh.cur = nil
		if j.d != nil && j.d.accepted > 0 {
			sh.srv.m.deliveryLatency.Observe(float64(time.Now().UnixNano()-j.d.accepted) / 1e9)
		}
		j.finish(sh, 0)
	}
	return max(tried, 1)
}
