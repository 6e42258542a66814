package loop

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"

	"longlink/wsproto"
)

// Server is the client-facing side of one node.
type Server struct {
	cfg   Config
	reg   *registry
	clock *clock
	m     *serverMetrics
	// pending is charged by every connection's parser for its unfinished message.
	pending *wsproto.Budget
	reclaim reclaimer // owned by OnTick

	// Tick counts derived from cfg once.
	handshakeTicks, pingTicks, idleTicks, closeTicks uint32
	// Pusher connections: silent this long, they get pusher:ping; this plus the pong
	// timeout, they are closed with 4201.
	pusherActivityTicks, pusherDeadTicks uint32

	shardsMu sync.Mutex
	shards   atomic.Pointer[[]*shard] // copy-on-write; appended when a loop is first seen

	deliverMu sync.Mutex // orders jobs identically on every loop
	seq       uint64     // guarded by deliverMu

	// Connection ids are idPrefix ("<NodeID>.<incarnation>-") and connSeq in base 36.
	// connSeq restarts at 1 with every process, so the incarnation is what keeps a
	// restarted node from reusing an old client's id.
	idPrefix string
	nodeNum  uint32 // the first part of Pusher socket ids: a hash of idPrefix (pusher.go)
	connSeq  atomic.Uint64
	draining atomic.Bool
	stopped  atomic.Bool // set by Stop under deliverMu: nothing is queued after it
	pump     chan *shard // drains that ran out of budget, to re-schedule off-loop

	eng      gnet.Engine
	addrs    []string
	booted   chan error
	bootedOK chan struct{} // closed by OnBoot once the real addresses are known
	runDone  chan struct{}
	stopOnce sync.Once
	doneOnce sync.Once
	done     chan struct{} // closed by Stop (or a failed Start): ends the pump
}

// ErrOverloaded is returned by Deliver and the room and kick calls when a loop's inbox
// is full; nothing was queued anywhere.
var ErrOverloaded = errors.New("loop: delivery queue full")

// ErrStopped is returned by Deliver, Submit, Enqueue and the room and kick calls once
// Stop has begun.
var ErrStopped = errors.New("loop: server stopped")

// New validates cfg and prepares a server; Start binds it.
func New(cfg Config) (*Server, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:      c,
		reg:      newRegistry(c.OnPresence),
		clock:    newClock(),
		pending:  wsproto.NewBudget(c.MaxPendingBytes),
		pump:     make(chan *shard, 1024),
		booted:   make(chan error, 1),
		bootedOK: make(chan struct{}),
		runDone:  make(chan struct{}),
		done:     make(chan struct{}),
	}
	s.idPrefix = c.NodeID + "." + strconv.FormatUint(nextIncarnation(), 36) + "-"
	s.nodeNum = nodeNumber(s.idPrefix)
	s.reclaim = newReclaimer(c.MaxPendingBytes)
	s.handshakeTicks = ticksOf(c.HandshakeTimeout)
	s.pingTicks = ticksOf(c.PingInterval)
	s.idleTicks = ticksOf(c.IdleTimeout)
	s.closeTicks = ticksOf(c.CloseTimeout)
	s.pusherActivityTicks = ticksOf(c.PusherActivityTimeout)
	s.pusherDeadTicks = ticksOf(c.PusherActivityTimeout + c.PusherPongTimeout)
	empty := []*shard{}
	s.shards.Store(&empty)
	s.clock.advance()
	s.m = newServerMetrics(s)
	return s, nil
}

// Start binds the client addresses and starts the event loops. It returns once they
// accept connections, or with the bind error.
func (s *Server) Start() error {
	addrs := make([]string, len(s.cfg.Addrs))
	for i, a := range s.cfg.Addrs {
		addrs[i] = "tcp://" + a
	}
	h := &handler{s: s}
	go func() {
		defer close(s.runDone)
		err := gnet.Rotate(h, addrs,
			gnet.WithNumEventLoop(s.cfg.Loops),
			gnet.WithLoadBalancing(gnet.LeastConnections),
			gnet.WithTicker(true),
			// A restarted node must bind its port while the old sockets sit in TIME-WAIT.
			gnet.WithReuseAddr(true),
			gnet.WithTCPNoDelay(gnet.TCPNoDelay),
			gnet.WithReadBufferCap(64<<10),
			gnet.WithWriteBufferCap(64<<10),
			gnet.WithLogger(gnetLogger{s.cfg.Logger}),
		)
		select {
		case s.booted <- err:
		default:
		}
	}()
	go s.runPump()
	select {
	case err := <-s.booted:
		if err == nil {
			err = errors.New("loop: engine stopped during start")
		}
		s.closeDone()
		return fmt.Errorf("cannot listen on %s: %w", strings.Join(s.cfg.Addrs, ","), err)
	case <-time.After(10 * time.Second):
		s.closeDone()
		return errors.New("loop: engine did not boot within 10s")
	case <-s.bootedOK:
		return nil
	}
}

// onBoot records the engine and resolves port-0 addresses to the real ports.
func (s *Server) onBoot(eng gnet.Engine) {
	s.eng = eng
	s.addrs = make([]string, len(s.cfg.Addrs))
	for i, a := range s.cfg.Addrs {
		s.addrs[i] = a
		fd, err := eng.DupListener("tcp", a)
		if err != nil {
			continue
		}
		if sa, err := unix.Getsockname(fd); err == nil {
			host, _, _ := net.SplitHostPort(a)
			switch v := sa.(type) {
			case *unix.SockaddrInet4:
				s.addrs[i] = net.JoinHostPort(host, fmt.Sprint(v.Port))
			case *unix.SockaddrInet6:
				s.addrs[i] = net.JoinHostPort(host, fmt.Sprint(v.Port))
			}
		}
		unix.Close(fd)
	}
	close(s.bootedOK)
}

// Addrs returns the client addresses being listened on, with real ports.
func (s *Server) Addrs() []string { return s.addrs }

func (s *Server) runPump() {
	for {
		select {
		case sh := <-s.pump:
			sh.schedule()
		case <-s.done:
			return
		}
	}
}

func (s *Server) shardList() []*shard { return *s.shards.Load() }

// shardOf returns the state of el, creating it the first time el is seen. Called on
// el itself (OnOpen); the list is copy-on-write so Deliver reads it without a lock.
func (s *Server) shardOf(el gnet.EventLoop) *shard {
	for _, sh := range s.shardList() {
		if sh.el == el {
			return sh
		}
	}
	s.shardsMu.Lock()
	defer s.shardsMu.Unlock()
	old := s.shardList()
	for _, sh := range old {
		if sh.el == el {
			return sh
		}
	}
	sh := newShard(s, len(old), el)
	list := append(append([]*shard(nil), old...), sh)
	s.shards.Store(&list)
	return sh
}

// Connections is the exact number of connections open on this node, handshaking ones
// excluded.
func (s *Server) Connections() int { return int(s.m.open.Load()) }

// MaxConns is the connection cap in force (0: none), after defaults.
func (s *Server) MaxConns() int { return s.cfg.MaxConns }

// Users is the exact number of users with at least one connection here.
func (s *Server) Users() int { return int(s.reg.nUsers.Load()) }

// Rooms is the number of rooms with at least one connection here.
func (s *Server) Rooms() int { return int(s.reg.nRooms.Load()) }

// Draining reports whether Drain has begun.
func (s *Server) Draining() bool { return s.draining.Load() }

// Drain refuses new handshakes (503), sends close 1001 to every client and waits until
// they are gone or ctx ends. It returns the number of connections still open.
func (s *Server) Drain(ctx context.Context) int {
	s.draining.Store(true)
	s.deliverMu.Lock()
	for _, sh := range s.shardList() {
		sh.enqueue(&job{kind: jobDrain, code: 1001, reason: "server shutting down"})
	}
	s.deliverMu.Unlock()
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		if n := s.m.handshaking.Load() + s.m.open.Load(); n == 0 {
			return 0
		}
		select {
		case <-ctx.Done():
			return int(s.m.handshaking.Load() + s.m.open.Load())
		case <-t.C:
		}
	}
}

// Stop closes every connection at once and stops the event loops. Call Drain first for
// a graceful shutdown.
func (s *Server) Stop(ctx context.Context) error {
	var err error
	s.stopOnce.Do(func() {
		s.draining.Store(true)
		s.deliverMu.Lock()
		s.stopped.Store(true) // no job is queued after this
		s.deliverMu.Unlock()
		if s.eng.Validate() == nil {
			err = s.eng.Stop(ctx)
		}
		loopsDone := false
		select {
		case <-s.runDone:
			loopsDone = true
		case <-ctx.Done():
			if err == nil {
				err = ctx.Err()
			}
		}
		s.closeDone()
		for _, sh := range s.shardList() {
			sh.abandonQueued()
			if loopsDone {
				// The loops have exited, so their state is ours now.
				sh.abandonRun()
			}
		}
	})
	return err
}

// lastIncarnation is the incarnation given to the latest Server of this process.
var lastIncarnation atomic.Uint64

// nextIncarnation numbers a Server by its start time in milliseconds, bumped past the
// previous Server of this process when two start in the same millisecond (tests, or
// a node restarted in-process). Start times make incarnations grow across restarts,
// so ids of one node never repeat as long as its clock does not step back past an
// earlier start; they also sort by start, which tells an operator which run of the
// node an id came from.
func nextIncarnation() uint64 {
	now := uint64(time.Now().UnixMilli())
	for {
		last := lastIncarnation.Load()
		inc := max(now, last+1)
		if lastIncarnation.CompareAndSwap(last, inc) {
			return inc
		}
	}
}

// Incarnation is the part of connection ids that names this run of the node: the
// text between "<NodeID>." and "-<n>".
func (s *Server) Incarnation() string {
	return s.idPrefix[len(s.cfg.NodeID)+1 : len(s.idPrefix)-1]
}

func (s *Server) closeDone() { s.doneOnce.Do(func() { close(s.done) }) }
