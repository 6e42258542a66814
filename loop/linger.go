package loop

import (
	"context"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// Room linger (Config.RoomLinger, --room-linger): a busy room's messages are gathered
// on each loop for up to the linger, then written to each member as one write holding
// all of them, instead of one write per message per member. The cost of a write
// (write(2), about 5-7 µs on this host whatever its size) is then shared by the
// messages gathered, at the price of up to the linger in latency.
//
// What lingers: a stamped delivery whose only key is one room (a push to one room).
// Everything else runs as before, and keeps each stream's order: a job that touches a
// room with messages held (another delivery naming it, a join or leave of it) first
// releases that room's batch; a close, a drain or a delivery to everyone releases all.
// A released batch is written member by member, every message of the batch to each
// member before the next member, so a member's frames leave in one write (queueFrame
// gathers them until the drain's flush).
//
// Who owns what: the batches live in the shard and are touched only on its loop; the
// timer that ends a linger only schedules a task on the loop. Held jobs stay counted
// in the inbox bounds (MaxQueue, MaxQueueBytes) until written, so lingering cannot
// grow memory past what the inbox already allows.

// lingerBatch is one room's held deliveries on one loop.
type lingerBatch struct {
	room  string
	jobs  []*job
	snap  []*Conn // members when the batch is released
	at    int     // cursor into snap
	wrote []int   // per job
}

// lingerRoom reports whether j may linger, and in which room.
func (sh *shard) lingerRoom(j *job) (string, bool) {
	st := j.st
	if sh.srv.cfg.RoomLinger <= 0 || j.kind != jobDeliver || st == nil || len(st.Keys) != 1 ||
		st.Keys[0].Kind != KeyRoom || len(j.conns) > 0 || st.Track != nil {
		return "", false
	}
	return st.Keys[0].Name, true
}

// hold adds j to its room's batch, arming the linger timer for a new batch.
func (sh *shard) holdLinger(room string, j *job) {
	if b := sh.lingering[room]; b != nil {
		b.jobs = append(b.jobs, j)
		return
	}
	if sh.lingering == nil {
		sh.lingering = map[string]*lingerBatch{}
	}
	b := &lingerBatch{room: room, jobs: []*job{j}}
	sh.lingering[room] = b
	time.AfterFunc(sh.srv.cfg.RoomLinger, func() {
		_ = sh.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
			if sh.lingering[room] == b {
				sh.releaseLinger(room)
				sh.drain()
			}
			return nil
		}))
	})
}

// releaseLinger moves room's batch to the ready list (written before the next job).
func (sh *shard) releaseLinger(room string) {
	b := sh.lingering[room]
	if b == nil {
		return
	}
	delete(sh.lingering, room)
	sh.srv.m.lingerBatches.Inc()
	sh.srv.m.lingerMessages.Add(len(b.jobs))
	sh.ready = append(sh.ready, b)
}

// releaseFor releases the batches j must follow; it reports whether any was.
func (sh *shard) releaseFor(j *job) bool {
	if len(sh.lingering) == 0 {
		return false
	}
	n := len(sh.ready)
	all := j.kind == jobClose || j.kind == jobDrain || j.all
	if j.st != nil {
		for i := range j.st.Keys {
			if j.st.Keys[i].Kind == KeyAll {
				all = true
			}
		}
	}
	if all {
		for room := range sh.lingering {
			sh.releaseLinger(room)
		}
		return len(sh.ready) > n
	}
	if j.kind == jobJoin || j.kind == jobLeave {
		sh.releaseLinger(j.room)
	}
	for _, room := range j.rooms {
		sh.releaseLinger(room)
	}
	if j.st != nil {
		for i := range j.st.Keys {
			if j.st.Keys[i].Kind == KeyRoom {
				sh.releaseLinger(j.st.Keys[i].Name)
			}
		}
	}
	return len(sh.ready) > n
}

// startBatch takes the room's members for the next ready batch.
func (sh *shard) startBatch() {
	b := sh.ready[0]
	sh.ready[0] = nil
	sh.ready = sh.ready[1:]
	for c := range sh.rooms[b.room] {
		b.snap = append(b.snap, c)
	}
	b.wrote = make([]int, len(b.jobs))
	sh.batch = b
}

// stepBatch writes the batch's messages to up to budget of its members (each member
// all of them) and returns the writes it tried; at the end it finishes the jobs.
func (sh *shard) stepBatch(budget int) int {
	b := sh.batch
	per := max(1, budget/max(1, len(b.jobs)))
	end := min(b.at+per, len(b.snap))
	nbytes, skipped := 0, 0
	for _, c := range b.snap[b.at:end] {
		for i, j := range b.jobs {
			ok, n, skip := sh.writeStamped(j, c, 0)
			if ok {
				b.wrote[i]++
				nbytes += n
			}
			if skip {
				skipped++
			}
		}
	}
	sh.bytesOut.Add(uint64(nbytes))
	if skipped > 0 {
		sh.srv.m.pusherSkipped.Add(skipped)
	}
	tried := (end - b.at) * len(b.jobs)
	b.at = end
	if b.at == len(b.snap) {
		now := time.Now().UnixNano()
		for i, j := range b.jobs {
			if b.wrote[i] > 0 {
				sh.framesOut.Add(uint64(b.wrote[i]))
				if j.d != nil {
					j.d.written.Add(int64(b.wrote[i]))
				}
			}
			if j.d != nil && j.d.accepted > 0 {
				sh.srv.m.deliveryLatency.Observe(float64(now-j.d.accepted) / 1e9)
			}
			j.finish(sh, 0)
		}
		sh.batch = nil
	}
	return max(tried, 1)
}

// abandonLinger finishes held and ready batches as undelivered (Stop).
func (sh *shard) abandonLinger() {
	for _, b := range sh.lingering {
		for _, j := range b.jobs {
			j.finish(sh, 0)
		}
	}
	sh.lingering = nil
	for _, b := range sh.ready {
		for _, j := range b.jobs {
			j.finish(sh, 0)
		}
	}
	sh.ready = nil
	if b := sh.batch; b != nil {
		for _, j := range b.jobs {
			j.finish(sh, 0)
		}
		sh.batch = nil
	}
}
