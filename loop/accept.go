package loop

import (
	"context"
	"errors"
	"net"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The client listeners belong to longlink, not to gnet. gnet's acceptor treats every
// accept error but EAGAIN, EINTR, ECONNRESET and ECONNABORTED as fatal and shuts the
// engine down, closing every client, when the process runs out of descriptors (gnet
// issue #367). Here one goroutine per listener accepts with the standard library and
// hands each connection to the event loops (gnet.Client.Enroll, upstream API); when
// accept fails for lack of descriptors or kernel memory it turns pending connections
// away with a spare descriptor and keeps running.

// maxEnrolling bounds connections accepted but not yet on a loop. Each holds two
// descriptors until gnet has dup'ed it (Enroll dups the socket and closes the
// original), so this is also how far past the budget transient descriptors may go.
// When it is reached the accept goroutine waits and new connections wait in the
// kernel's accept queue.
const maxEnrolling = 256

// listenConfig: SO_REUSEADDR is the standard library's default for listeners on Unix,
// so a restarted node binds while old sockets sit in TIME-WAIT, and accepted
// connections get TCP_NODELAY by default. KeepAlive -1 turns off the TCP keep-alive
// the standard library would set on every accepted connection (four setsockopt calls
// each): clients are pinged by the loops, as when gnet accepted them.
var listenConfig = net.ListenConfig{KeepAlive: -1}

// listen binds every client address.
func (s *Server) listen() error {
	for _, a := range s.cfg.Addrs {
		ln, err := listenConfig.Listen(context.Background(), "tcp", a)
		if err != nil {
			s.closeListeners()
			return err
		}
		tl := ln.(*net.TCPListener)
		rc, err := tl.SyscallConn()
		if err != nil {
			ln.Close()
			s.closeListeners()
			return err
		}
		s.lns = append(s.lns, tl)
		s.lnRaw = append(s.lnRaw, rc)
		host, _, _ := net.SplitHostPort(a)
		_, port, _ := net.SplitHostPort(ln.Addr().String())
		s.addrs = append(s.addrs, net.JoinHostPort(host, port))
	}
	return nil
}

func (s *Server) closeListeners() {
	for _, ln := range s.lns {
		ln.Close()
	}
}

// acceptLoop runs until its listener is closed (Stop).
func (s *Server) acceptLoop(ln *net.TCPListener, rc syscall.RawConn) {
	defer s.accepting.Done()
	var delay time.Duration
	for {
		c, err := ln.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if outOfDescriptors(err) && s.spare.rejectPending(rc, err, s) {
				delay = 0
				continue
			}
			// Nothing could be turned away (no spare either) or another error:
			// back off so a listener that stays readable does not spin.
			delay = min(max(2*delay, time.Millisecond), 100*time.Millisecond)
			s.spare.warn(s, err)
			time.Sleep(delay)
			continue
		}
		delay = 0
		s.enrollSem <- struct{}{}
		s.enrolling.Add(1)
		go s.enroll(c)
	}
}

// enroll puts c on the least loaded loop; OnOpen runs there before it returns.
// Enroll closes c on every path: the loop works on a dup of its descriptor.
func (s *Server) enroll(c *net.TCPConn) {
	defer func() {
		<-s.enrollSem
		s.enrolling.Done()
	}()
	if _, err := s.cli.Enroll(c); err != nil {
		if outOfDescriptors(err) {
			// The dup failed: the client was accepted and is closed at once.
			s.m.rejectedNoFD.Inc()
			s.spare.warn(s, err)
			return
		}
		s.cfg.Logger.Warn("loop: cannot hand a connection to the event loops", "err", err)
	}
}

func outOfDescriptors(err error) bool {
	for _, e := range []error{unix.EMFILE, unix.ENFILE, unix.ENOBUFS, unix.ENOMEM} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// spareFD is a descriptor held in reserve so that, when the process runs out, a
// pending connection can still be accepted and closed at once: the client learns now
// that this node cannot take it (and reconnects elsewhere) instead of waiting in a
// full accept queue.
type spareFD struct {
	mu      sync.Mutex
	fd      int // -1 when it could not be reopened
	lastLog time.Time
}

func openSpare() int {
	fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1
	}
	return fd
}

// rejectPending accepts and closes pending connections on rc's listener with the
// spare descriptor until the queue is empty. It returns false when it could not
// reject even one (no spare, or accept failed again), so the caller backs off.
func (sp *spareFD) rejectPending(rc syscall.RawConn, cause error, s *Server) bool {
	sp.mu.Lock()
	defer sp.mu.Unlock()
	sp.warnLocked(s, cause)
	n := 0
	for {
		if sp.fd < 0 {
			if sp.fd = openSpare(); sp.fd < 0 {
				return n > 0
			}
		}
		unix.Close(sp.fd)
		var nfd int
		var err error
		if cerr := rc.Control(func(fd uintptr) {
			nfd, _, err = unix.Accept4(int(fd), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		}); cerr != nil {
			err = cerr
		}
		if err == nil {
			unix.Close(nfd)
			s.m.rejectedNoFD.Inc()
			n++
		}
		sp.fd = openSpare()
		switch {
		case err == nil, errors.Is(err, unix.ECONNABORTED), errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EAGAIN):
			return true // queue empty: accept blocks again until a client arrives
		default:
			return n > 0
		}
	}
}

func (sp *spareFD) warn(s *Server, cause error) {
	sp.mu.Lock()
	sp.warnLocked(s, cause)
	sp.mu.Unlock()
}

// warnLocked logs at most once a second.
func (sp *spareFD) warnLocked(s *Server, cause error) {
	if now := time.Now(); now.Sub(sp.lastLog) >= time.Second {
		sp.lastLog = now
		s.cfg.Logger.Warn("loop: cannot accept client connections; closing pending ones while descriptors are short",
			"err", cause, "rejected_so_far", s.m.rejectedNoFD.Get())
	}
}

func (sp *spareFD) close() {
	sp.mu.Lock()
	if sp.fd >= 0 {
		unix.Close(sp.fd)
		sp.fd = -1
	}
	sp.mu.Unlock()
}
