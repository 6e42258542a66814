package loop

import (
	"context"
	"sync"
	"time"

	"longlink/wsproto"
)

// Targets names the recipients of one message on this node. A connection matched by
// several targets receives the message once.
type Targets struct {
	All         bool
	Users       []string
	Connections []string // connection ids; ids of other nodes are ignored
	Rooms       []string
}

// PrepareFrame encodes payload once as a server frame; Deliver writes these same bytes
// to every recipient.
func PrepareFrame(binary bool, payload []byte) []byte {
	kind := wsproto.KindText
	if binary {
		kind = wsproto.KindBinary
	}
	return wsproto.AppendFrame(make([]byte, 0, wsproto.HeaderSize(len(payload))+len(payload)), kind, payload)
}

// frameFor is what c gets of an unstamped delivery job: its frame, or the frame's
// compressed variant, shared by every loop of the delivery (deflate.go).
func (j *job) frameFor(c *Conn) []byte {
	if c.parser.Deflate == 0 || j.d == nil {
		return j.frame
	}
	return c.sh.deflated(c, j.frame, &j.d.z)
}

// Deliver writes frame (from PrepareFrame) to every connection on this node that t
// names, and returns how many connections it was written to once every loop has
// processed it, or ctx ended. accepted is when the API accepted the message (unix
// nanoseconds), for the delivery-latency histogram; 0 skips it.
//
// frame must not be modified afterwards. Messages are written to each connection in
// the order Deliver was called.
func (s *Server) Deliver(ctx context.Context, frame []byte, t Targets, accepted int64) (int, error) {
	p, err := s.Submit(frame, t, accepted)
	if err != nil {
		return 0, err
	}
	return p.Wait(ctx)
}

// Pending is a delivery queued by Submit.
type Pending struct {
	s       *Server
	d       *delivery // nil: nothing to deliver here
	offline []string
	missing []string // SubmitStamped: the connection ids not open here
	own     delivery // d, when SubmitStamped queued it
}

// Offline returns the targeted users that had no connection on this node when the
// delivery was queued.
func (p *Pending) Offline() []string { return p.offline }

// Missing returns the targeted connection ids (Stamped.Conns) that were not open on
// this node when SubmitStamped queued the delivery: ids of other nodes, of an earlier
// run of this one, or of connections that closed. Submit leaves it empty.
func (p *Pending) Missing() []string { return p.missing }

// Submit queues a delivery like Deliver but returns at once; Wait gives the count.
// It fails (ErrOverloaded, ErrStopped) before anything is queued, so a caller can
// queue locally first and forward to peers only once that succeeded.
func (s *Server) Submit(frame []byte, t Targets, accepted int64) (*Pending, error) {
	d := &delivery{accepted: accepted, done: make(chan struct{})}
	queued, offline, err := s.enqueueDelivery(frame, t, d)
	if err != nil {
		return nil, err
	}
	if !queued {
		d = nil
	}
	return &Pending{s: s, d: d, offline: offline}, nil
}

// Wait returns how many connections the delivery was written to, once every loop
// has processed it or ctx ends.
func (p *Pending) Wait(ctx context.Context) (int, error) {
	if p.d == nil {
		return 0, nil
	}
	return p.s.wait(ctx, p.d)
}

// Enqueue is Deliver without waiting: the message is queued on every loop, in order,
// and written as the loops get to it. Forwarded cluster messages use it so one peer's
// stream is not held up by local writes.
func (s *Server) Enqueue(frame []byte, t Targets, accepted int64) error {
	d := &delivery{accepted: accepted, done: make(chan struct{})}
	_, _, err := s.enqueueDelivery(frame, t, d)
	return err
}

// SubmitStamped is Submit for a message stamped with its stream positions (see
// streams.go). st must not be modified afterwards.
func (s *Server) SubmitStamped(st *Stamped, accepted int64) (*Pending, error) {
	// The delivery lives in its Pending: one allocation for both.
	p := &Pending{s: s}
	p.own = delivery{accepted: accepted, done: make(chan struct{})}
	queued, offline, err := s.enqueueStamped(st, &p.own, &p.missing)
	if err != nil {
		return nil, err
	}
	if queued {
		p.d = &p.own
	}
	p.offline = offline
	return p, nil
}

// EnqueueStamped is Enqueue for a stamped message.
func (s *Server) EnqueueStamped(st *Stamped, accepted int64) error {
	d := &delivery{accepted: accepted, done: make(chan struct{})}
	_, _, err := s.enqueueStamped(st, d, nil)
	return err
}

// missing, when not nil, gets the ids among st.Conns with no open connection here.
func (s *Server) enqueueStamped(st *Stamped, d *delivery, missing *[]string) (queued bool, offline []string, err error) {
	shards := s.shardList()
	if len(shards) == 0 {
		for i := range st.Keys {
			if st.Keys[i].Kind == KeyUser {
				offline = append(offline, st.Keys[i].Name)
			}
		}
		if missing != nil {
			*missing = append(*missing, st.Conns...)
		}
		return false, offline, nil
	}
	// Recipients are gathered once, counted per loop, then laid out loop by loop in
	// one array of connections and one of keys, each loop's job taking its window:
	// a fixed number of allocations per push, however many connections a user has
	// (appending per loop grew two slices per loop several times a push).
	skip := s.excluded(st.ExcludeSocket)
	var conns []*Conn
	var keys []int32
	wide := false // rooms or all: every loop may have recipients
	for i := range st.Keys {
		k := &st.Keys[i]
		if k.Kind != KeyUser {
			wide = true
			continue
		}
		n := len(conns)
		if conns = s.reg.userConns(conns, k.Name); len(conns) == n {
			offline = append(offline, k.Name)
		}
		for range len(conns) - n {
			keys = append(keys, int32(i))
		}
	}
	for _, id := range st.Conns {
		if num, ok := s.connNum(id); ok {
			if c := s.reg.conn(num); c != nil {
				conns, keys = append(conns, c), append(keys, -1)
				continue
			}
		}
		if missing != nil {
			*missing = append(*missing, id)
		}
	}
	var count [8]int32 // per loop; more loops than this spill to the heap
	per := count[:0]
	if len(shards) <= len(count) {
		per = count[:len(shards)]
	} else {
		per = make([]int32, len(shards))
	}
	nsh := 0
	for _, c := range conns {
		if c.sh.idx < len(per) {
			if per[c.sh.idx] == 0 {
				nsh++
			}
			per[c.sh.idx]++
		}
	}
	if !wide && nsh == 0 {
		return false, offline, nil
	}
	var byConn []*Conn
	var byKey []int32
	if len(conns) > 0 {
		byConn, byKey = make([]*Conn, len(conns)), make([]int32, len(conns))
	}
	// per[i] becomes loop i's window start; fill advances it to the window's end.
	start := int32(0)
	for i, n := range per {
		per[i] = start
		start += n
	}
	var endArr [8]int32
	ends := endArr[:0]
	if len(per) <= len(endArr) {
		ends = endArr[:len(per)]
	} else {
		ends = make([]int32, len(per))
	}
	copy(ends, per)
	for j, c := range conns {
		if i := c.sh.idx; i < len(ends) {
			byConn[ends[i]], byKey[ends[i]] = c, keys[j]
			ends[i]++
		}
	}
	all := make([]job, len(shards))
	jobs := make([]*job, 0, len(shards))
	for i, sh := range shards {
		lo, hi := per[i], ends[i]
		if hi == lo && (!wide || sh.nOpen.Load() == 0) {
			continue
		}
		j := &all[i]
		*j = job{kind: jobDeliver, frame: st.Plain, st: st, d: d, target: sh, skip: skip}
		if hi > lo {
			j.conns, j.keys = byConn[lo:hi:hi], byKey[lo:hi:hi]
		}
		jobs = append(jobs, j)
	}
	if len(jobs) == 0 {
		return false, offline, nil
	}
	if err := s.enqueueAll(jobs, false); err != nil {
		return false, nil, err
	}
	return true, offline, nil
}

// enqueueDelivery queues one job per loop with recipients. It also returns the users
// among t.Users with no connection here, found while resolving them.
func (s *Server) enqueueDelivery(frame []byte, t Targets, d *delivery) (queued bool, offline []string, err error) {
	shards := s.shardList()
	if len(shards) == 0 {
		return false, t.Users, nil
	}
	perShard := make([][]*Conn, len(shards))
	if !t.All {
		var conns []*Conn
		for _, u := range t.Users {
			n := len(conns)
			if conns = s.reg.userConns(conns, u); len(conns) == n {
				offline = append(offline, u)
			}
		}
		for _, id := range t.Connections {
			if num, ok := s.connNum(id); ok {
				if c := s.reg.conn(num); c != nil {
					conns = append(conns, c)
				}
			}
		}
		for _, c := range conns {
			if c.sh.idx < len(perShard) {
				perShard[c.sh.idx] = append(perShard[c.sh.idx], c)
			}
		}
	}
	var jobs []*job
	for i, sh := range shards {
		// A loop with no upgraded connection has no room members either.
		if !t.All && len(perShard[i]) == 0 && (len(t.Rooms) == 0 || sh.nOpen.Load() == 0) {
			continue
		}
		jobs = append(jobs, &job{kind: jobDeliver, frame: frame, all: t.All, rooms: t.Rooms, conns: perShard[i], d: d, target: sh})
	}
	if len(jobs) == 0 {
		return false, offline, nil
	}
	if err := s.enqueueAll(jobs, false); err != nil {
		return false, nil, err
	}
	return true, offline, nil
}

// enqueueAll queues one job per shard atomically: either every job is queued, in the
// same position relative to other Deliver calls on every loop, or none is. With
// force, the inbox bounds are not checked: room and close jobs are bounded by the
// connections they name and must not be lost once the registry has changed.
func (s *Server) enqueueAll(jobs []*job, force bool) error {
	s.deliverMu.Lock()
	defer s.deliverMu.Unlock()
	if s.stopped.Load() {
		return ErrStopped
	}
	if !force {
		for _, j := range jobs {
			if !j.target.hasSpace(len(j.frame)) {
				s.m.overloaded.Inc()
				return ErrOverloaded
			}
		}
	}
	s.seq++
	for _, j := range jobs {
		j.seq = s.seq
		if j.d != nil {
			j.d.pending.Add(1)
		}
	}
	for _, j := range jobs {
		j.target.enqueue(j)
	}
	return nil
}

// WaitFor is Wait with a timeout instead of a context: the per-push path, which would
// otherwise build a context, a timer and a channel for every message; its timer is
// pooled. It returns context.DeadlineExceeded when the timeout passes first.
func (p *Pending) WaitFor(timeout time.Duration) (int, error) {
	if p.d == nil {
		return 0, nil
	}
	select { // written already: the common case on a quiet loop, no timer at all
	case <-p.d.done:
		return int(p.d.written.Load()), nil
	default:
	}
	t, _ := waitTimers.Get().(*time.Timer)
	if t == nil {
		t = time.NewTimer(timeout)
	} else {
		t.Reset(timeout)
	}
	defer func() {
		t.Stop() // since Go 1.23 a stopped timer's channel holds no stale value
		waitTimers.Put(t)
	}()
	select {
	case <-p.d.done:
		return int(p.d.written.Load()), nil
	case <-t.C:
		return int(p.d.written.Load()), context.DeadlineExceeded
	}
}

var waitTimers sync.Pool

func (s *Server) wait(ctx context.Context, d *delivery) (int, error) {
	select {
	case <-d.done:
		return int(d.written.Load()), nil
	case <-ctx.Done():
		return int(d.written.Load()), ctx.Err()
	}
}

// KickConnection closes the connection with id (if it is on this node) with close code
// CloseKicked and reason. It returns how many it closed (0 or 1).
func (s *Server) KickConnection(ctx context.Context, id, reason string) (int, error) {
	num, ok := s.connNum(id)
	if !ok {
		return 0, nil
	}
	c := s.reg.conn(num)
	if c == nil {
		return 0, nil
	}
	return s.closeConns(ctx, []*Conn{c}, reason)
}

// KickUser closes every connection of user on this node.
func (s *Server) KickUser(ctx context.Context, user, reason string) (int, error) {
	return s.closeConns(ctx, s.reg.userConns(nil, user), reason)
}

func (s *Server) closeConns(ctx context.Context, conns []*Conn, reason string) (int, error) {
	if len(conns) == 0 {
		return 0, nil
	}
	if reason == "" {
		reason = "kicked"
	}
	d := &delivery{done: make(chan struct{})}
	if err := s.enqueueAll(s.jobsByShard(conns, func(cs []*Conn) *job {
		return &job{kind: jobClose, conns: cs, code: CloseKicked, reason: reason, d: d}
	}), true); err != nil {
		return 0, err
	}
	return s.wait(ctx, d)
}

func (s *Server) jobsByShard(conns []*Conn, mk func([]*Conn) *job) []*job {
	by := map[*shard][]*Conn{}
	var order []*shard
	for _, c := range conns {
		if _, ok := by[c.sh]; !ok {
			order = append(order, c.sh)
		}
		by[c.sh] = append(by[c.sh], c)
	}
	jobs := make([]*job, 0, len(order))
	for _, sh := range order {
		j := mk(by[sh])
		j.target = sh
		jobs = append(jobs, j)
	}
	return jobs
}

// JoinRoom puts users' connections on this node into room; later connections of those
// users join it too. It returns how many connections joined and the users that have no
// connection here (nothing is changed for them).
func (s *Server) JoinRoom(ctx context.Context, room string, users []string) (int, []string, error) {
	joined, missing := s.reg.join(room, users)
	return s.roomJobs(ctx, jobJoin, room, joined, missing)
}

// LeaveRoom takes users' connections on this node out of room.
func (s *Server) LeaveRoom(ctx context.Context, room string, users []string) (int, []string, error) {
	left, missing := s.reg.leave(room, users)
	return s.roomJobs(ctx, jobLeave, room, left, missing)
}

func (s *Server) roomJobs(ctx context.Context, kind jobKind, room string, conns []*Conn, missing []string) (int, []string, error) {
	if len(conns) == 0 {
		return 0, missing, nil
	}
	d := &delivery{done: make(chan struct{})}
	// Room index changes go through the inbox so a push accepted after JoinRoom returns
	// is ordered after the join on every loop. The registry has already changed, so the
	// jobs are queued whatever the inbox holds (they are bounded by the connections);
	// if ctx ends first the change still completes on the loops.
	jobs := s.jobsByShard(conns, func(cs []*Conn) *job { return &job{kind: kind, room: room, conns: cs, d: d} })
	if err := s.enqueueAll(jobs, true); err != nil {
		return 0, missing, err
	}
	n, err := s.wait(ctx, d)
	return n, missing, err
}

// UserConnections describes user's connections on this node (nil: none).
func (s *Server) UserConnections(user string) []ConnInfo { return s.reg.userInfo(user) }

// Room counts room's members and connections on this node.
func (s *Server) Room(room string) RoomInfo { return s.reg.roomInfo(room, false) }

// RoomMembers is Room with the member user ids listed.
func (s *Server) RoomMembers(room string) RoomInfo { return s.reg.roomInfo(room, true) }

// Offline returns the users among users with no connection on this node.
func (s *Server) Offline(users []string) []string { return s.reg.offline(users) }

// LocalUsers and LocalRooms list what this node holds (cluster full-state sync).
func (s *Server) LocalUsers() []string { return s.reg.snapshotUsers(nil) }
func (s *Server) LocalRooms() []string { return s.reg.snapshotRooms(nil) }
