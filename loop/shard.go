package loop

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/panjf2000/gnet/v2"
)

// shard is the state of one event loop. The inbox is shared (guarded by mu); the rest
// is owned by the loop and touched only in callbacks or tasks running on it.
type shard struct {
	idx int
	el  gnet.EventLoop
	srv *Server

	mu        sync.Mutex
	queue     []*job // FIFO inbox; the loop takes it whole (pop)
	scheduled bool   // a drain task is queued or running, or the pump holds one
	// The inbox bounds, kept without the mutex so finishing a job on the loop takes
	// no lock: jobs and frame bytes queued or running (in the inbox, in run, or cur).
	njobs atomic.Int32
	bytes atomic.Int64

	// owned by the loop
	run    []*job                        // the inbox as last taken, run[runPos:] still to start
	runPos int                           //
	conns  []*Conn                       // every connection, handshaking ones too
	rooms  map[string]map[*Conn]struct{} // room -> members on this loop (doc.go: room membership)
	cur    *job                          // job being delivered in chunks
	next   *job                          // popped, waiting for released linger batches
	// Room linger (linger.go): held batches by room, released ones in order, and the
	// one being written.
	lingering map[string]*lingerBatch
	ready     []*lingerBatch
	batch     *lingerBatch
	snap      []*Conn // recipients of cur, taken when it starts
	snapKey   []int32 // with a stamped cur: the key each of snap matched
	cursor    int
	sweepPos  int
	scratch   []byte         // frames built on the loop (pong, echo, close)
	pending   []pendingWrite // frames queued in this drain call, one entry per connection
	npending  int
	drainFn   gnet.Runnable
	sweepFn   gnet.Runnable
	// admitting holds the decisions connections in stateAdmitting wait for (admit.go):
	// kept here, not in Conn, so connections that never wait pay nothing for it.
	admitting map[*Conn]*Admission
	// closeReasons holds, with Config.OnClose set, the reason of each announced
	// connection that has a close code (Conn.closeCode) until its OnClose: one entry
	// per closing connection, not a string in every Conn.
	closeReasons map[*Conn]string

	// read by scrapes
	nConns    atomic.Int64 // every connection, handshaking ones too
	nOpen     atomic.Int64 // upgraded connections (longlink_loop_connections)
	framesIn  atomic.Uint64
	framesOut atomic.Uint64
	bytesIn   atomic.Uint64
	bytesOut  atomic.Uint64
	// frames sent compressed, and the bytes that saved (deflate.go)
	deflateFrames, deflateSaved atomic.Uint64
	_                           [64]byte // keep the next shard's counters off this cache line
}

func newShard(s *Server, idx int, el gnet.EventLoop) *shard {
	sh := &shard{idx: idx, el: el, srv: s, rooms: make(map[string]map[*Conn]struct{}), admitting: make(map[*Conn]*Admission), closeReasons: map[*Conn]string{}}
	sh.drainFn = gnet.RunnableFunc(func(context.Context) error { sh.drain(); return nil })
	sh.sweepFn = gnet.RunnableFunc(func(context.Context) error { sh.sweep(); return nil })
	return sh
}

// addConn and removeConn keep conns dense so sweeps and broadcasts walk a slice.
func (sh *shard) addConn(c *Conn) {
	c.idx = int32(len(sh.conns))
	sh.conns = append(sh.conns, c)
	sh.nConns.Add(1)
}

func (sh *shard) removeConn(c *Conn) {
	i := int(c.idx)
	if i < 0 || i >= len(sh.conns) || sh.conns[i] != c {
		panic("BUG: loop: connection not at its index")
	}
	last := len(sh.conns) - 1
	sh.conns[i] = sh.conns[last]
	sh.conns[i].idx = int32(i)
	sh.conns[last] = nil
	sh.conns = sh.conns[:last]
	c.idx = -1
	sh.nConns.Add(-1)
	if cap(sh.conns) > 1024 && len(sh.conns) < cap(sh.conns)/4 {
		sh.conns = append([]*Conn(nil), sh.conns...)
	}
}

func (sh *shard) joinRoom(room string, c *Conn) {
	m := sh.rooms[room]
	if m == nil {
		m = make(map[*Conn]struct{})
		sh.rooms[room] = m
	}
	m[c] = struct{}{}
}

func (sh *shard) leaveRoom(room string, c *Conn) {
	if m := sh.rooms[room]; m != nil {
		delete(m, c)
		if len(m) == 0 {
			delete(sh.rooms, room)
		}
	}
}

// enqueue appends jobs to the inbox and makes sure a drain task will run. The caller
// holds srv.deliverMu and has checked space with hasSpace.
func (sh *shard) enqueue(j *job) {
	sh.njobs.Add(1)
	sh.bytes.Add(int64(len(j.frame)))
	sh.mu.Lock()
	sh.queue = append(sh.queue, j)
	start := !sh.scheduled
	sh.scheduled = true
	sh.mu.Unlock()
	if start {
		sh.schedule()
	}
}

// hasSpace reports whether one more job carrying a frame of n bytes fits the inbox.
// Only enqueueAll, under srv.deliverMu, adds bounded jobs, so the check and the add
// cannot race with another add; the loop only ever lowers the counts meanwhile.
func (sh *shard) hasSpace(n int) bool {
	return int(sh.njobs.Load())+1 <= sh.srv.cfg.MaxQueue && sh.bytes.Load()+int64(n) <= sh.srv.cfg.MaxQueueBytes
}

func (sh *shard) schedule() {
	if err := sh.el.Execute(context.Background(), sh.drainFn); err != nil {
		// The engine is shutting down: nothing will run on this loop again. Finish the
		// queued jobs as undelivered so no caller waits forever. (The job the loop may
		// be in the middle of is the loop's; Stop finishes it once the loops exit.)
		sh.abandonQueued()
	}
}

// pop returns the next job, on the loop. It takes the mutex once per inbox-full, not
// once per job: the whole inbox is swapped into run, so API goroutines enqueueing
// meanwhile meet the lock free. With nothing left it clears scheduled, under the
// same lock enqueue checks it with, so a job enqueued after that starts a drain.
func (sh *shard) pop() *job {
	if sh.runPos < len(sh.run) {
		j := sh.run[sh.runPos]
		sh.run[sh.runPos] = nil
		sh.runPos++
		return j
	}
	sh.mu.Lock()
	if len(sh.queue) == 0 {
		sh.scheduled = false
		sh.mu.Unlock()
		sh.run, sh.runPos = sh.run[:0], 0
		return nil
	}
	sh.run, sh.queue = sh.queue, sh.run[:0]
	sh.mu.Unlock()
	j := sh.run[0]
	sh.run[0] = nil
	sh.runPos = 1
	return j
}

// abandonQueued finishes every job in the inbox as undelivered. It touches only the
// inbox, so any goroutine may call it.
func (sh *shard) abandonQueued() {
	sh.mu.Lock()
	q := sh.queue
	sh.queue = nil
	sh.mu.Unlock()
	for _, j := range q {
		j.finish(sh, 0)
	}
}

// abandonRun finishes what the loop had taken from the inbox and not run, and the
// job it was in the middle of. Only once the loops have exited (Stop).
func (sh *shard) abandonRun() {
	for _, j := range sh.run[sh.runPos:] {
		j.finish(sh, 0)
	}
	sh.run, sh.runPos = nil, 0
	if sh.cur != nil {
		sh.cur.finish(sh, 0)
		sh.cur = nil
	}
	if sh.next != nil {
		sh.next.finish(sh, 0)
		sh.next = nil
	}
	sh.abandonLinger()
}

// chunkWrites bounds how many recipients one drain task writes to before the loop
// gets back to its sockets: ~1024 writes is ~2 ms here, so a 100,000-recipient
// broadcast interleaves with other traffic instead of holding the loop for 200 ms.
const chunkWrites = 1024

// drain runs queued jobs in order on the loop, at most chunkWrites writes per call.
// Frames for one connection within a call leave in one write (see queueFrame).
func (sh *shard) drain() {
	budget := chunkWrites
	for budget > 0 {
		switch {
		case sh.batch != nil:
			budget -= sh.stepBatch(budget)
			continue
		case sh.cur != nil:
			budget -= sh.step(budget)
			continue
		case len(sh.ready) > 0:
			sh.startBatch() // linger.go: released room batches go before the next job
			continue
		}
		j := sh.next
		sh.next = nil
		if j == nil {
			j = sh.pop()
		}
		if j == nil {
			sh.flush()
			return
		}
		if room, ok := sh.lingerRoom(j); ok {
			sh.holdLinger(room, j)
			continue
		}
		if sh.releaseFor(j) {
			sh.next = j // after the batches it must follow
			continue
		}
		if j.kind != jobDeliver {
			sh.flush() // messages accepted before a close or room change go first
		}
		if !sh.start(j) {
			continue // finished at once (room ops, kicks, empty deliveries)
		}
		budget -= sh.step(budget)
	}
	sh.flush()
	// Out of budget with work left: let the loop serve its sockets first. Executing
	// from the loop itself would run the task again before polling, so the pump
	// goroutine schedules it.
	sh.srv.pump <- sh
}

// queueStamped is queueFrame for a stamped message: a waiting connection holds it.
func (sh *shard) queueStamped(c *Conn, frame []byte, seq uint64, k *Key) bool {
	if c.w != nil {
		c.seq = seq
		return sh.hold(c, frame, k)
	}
	if c.replayed != nil && k != nil && k.Epoch != "" {
		for i := range c.replayed {
			hd := &c.replayed[i]
			if hd.stream != k.Stream || hd.Epoch != k.Epoch {
				continue
			}
			if k.Offset <= hd.Offset {
				c.seq = seq
				return false
			}
			c.replayed = append(c.replayed[:i], c.replayed[i+1:]...)
			if len(c.replayed) == 0 {
				c.replayed = nil
			}
			break
		}
	}
	return sh.queueFrame(c, frame, seq)
}

// pendingWrite gathers the frames one connection gets in one drain call.
type pendingWrite struct {
	c      *Conn
	frames [][]byte
	bytes  int
}

// queueFrame adds a shared, pre-encoded frame to c's pending writes, once per job
// (seq), or for a Pusher connection once per channel (step). It enforces
// MaxOutbound counting what gnet already holds for c.
func (sh *shard) queueFrame(c *Conn, frame []byte, seq uint64) bool {
	if c.state != stateOpen || c.seq == seq && c.kind != KindPusher {
		return false
	}
	c.seq = seq
	if c.w != nil {
		return sh.hold(c, frame, nil)
	}
	return sh.appendPending(c, frame)
}

// queuePosition queues the v2 position message of st in its stream k for c, which
// takes st through another stream (see streams.go).
func (sh *shard) queuePosition(c *Conn, st *Stamped, k int) {
	key := &st.Keys[k]
	f := st.positionFrame(key)
	if c.w != nil {
		sh.hold(c, f, key)
		return
	}
	if c.replayed != nil {
		for i := range c.replayed {
			if hd := &c.replayed[i]; hd.stream == key.Stream && hd.Epoch == key.Epoch && key.Offset <= hd.Offset {
				return
			}
		}
	}
	if sh.appendPending(c, f) {
		sh.framesOut.Add(1)
		sh.bytesOut.Add(uint64(len(f)))
	}
}

// appendPending adds frame to c's pending writes, enforcing MaxOutbound.
func (sh *shard) appendPending(c *Conn, frame []byte) bool {
	if c.pend == 0 {
		if sh.npending == len(sh.pending) {
			sh.pending = append(sh.pending, pendingWrite{})
		}
		p := &sh.pending[sh.npending]
		p.c, p.frames, p.bytes = c, p.frames[:0], 0
		sh.npending++
		c.pend = int32(sh.npending)
	}
	p := &sh.pending[c.pend-1]
	if overBound(c.gc.OutboundBuffered()+p.bytes, len(frame), sh.srv.cfg.MaxOutbound) {
		sh.srv.slowConsumer(c) // flush skips it: its state is closed
		return false
	}
	p.frames = append(p.frames, frame)
	p.bytes += len(frame)
	return true
}

// flush writes every pending frame: one write(2) for a single frame, one writev(2)
// for several. gnet sends straight to the socket when nothing is queued for it, so
// the shared frame bytes are not copied; only what the kernel refuses is copied into
// the connection's outbound buffer, which MaxOutbound bounds.
func (sh *shard) flush() {
	for i := 0; i < sh.npending; i++ {
		p := &sh.pending[i]
		c := p.c
		c.pend = 0
		if c.state == stateOpen {
			if len(p.frames) == 1 {
				c.gc.Write(p.frames[0])
			} else {
				c.gc.Writev(p.frames)
			}
		}
		clear(p.frames) // drop references to frames so they can be collected
		p.c = nil
	}
	sh.npending = 0
}
