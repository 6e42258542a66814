//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd

// longlink patch, see PATCHES.md: keep accepting through descriptor exhaustion.

package gnet

import (
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/panjf2000/gnet/v2/pkg/logging"
	"github.com/panjf2000/gnet/v2/pkg/socket"
)

// spare is a descriptor held in reserve so that, when the process runs out, a pending
// connection can still be accepted and closed at once: the client learns now that
// this node cannot take it (and reconnects elsewhere) instead of waiting in a full
// accept queue while the listener stays readable and the acceptor spins.
var spare = struct {
	sync.Mutex
	fd      int
	lastLog time.Time
}{fd: openSpare()}

var rejectedNoFD atomic.Uint64

// RejectedNoFD counts connections accepted and closed at once because the process had
// no descriptor for them.
func RejectedNoFD() uint64 { return rejectedNoFD.Load() }

func openSpare() int {
	fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1
	}
	return fd
}

// rejectPending turns the spare descriptor into one accepted connection, closes it and
// takes the spare back. It returns true when it rejected one, so the caller may go on
// draining the queue; false when the queue is empty or nothing could be done (after a
// short pause, so a listener that stays readable does not spin the acceptor).
func rejectPending(lnfd int, cause error, log logging.Logger) bool {
	spare.Lock()
	defer spare.Unlock()
	if now := time.Now(); now.Sub(spare.lastLog) >= time.Second {
		spare.lastLog = now
		log.Warnf("accept: %v: closing pending connections until descriptors are free (%d closed so far)",
			cause, rejectedNoFD.Load())
	}
	if spare.fd < 0 {
		if spare.fd = openSpare(); spare.fd < 0 {
			time.Sleep(time.Millisecond)
			return false
		}
	}
	_ = unix.Close(spare.fd)
	// socket.Accept, not unix.Accept4: darwin has no accept4.
	nfd, _, err := socket.Accept(lnfd)
	if err == nil {
		_ = unix.Close(nfd)
		rejectedNoFD.Add(1)
	}
	spare.fd = openSpare()
	switch err {
	case nil:
		return true
	case unix.EAGAIN:
		return false
	}
	time.Sleep(time.Millisecond)
	return false
}
