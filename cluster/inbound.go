package cluster

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime/debug"
	"slices"
	"sync/atomic"
	"time"
)

const (
	refusedLogEvery = 10 * time.Second
	// A dropped table of reclaimMinRoutes entries is at least ~10 MiB.
	reclaimMinRoutes = 100_000
	reclaimEvery     = 10 * time.Second
	// maxUnauthedPerIP bounds the handshakes one remote address may have
	// under way (a node dials each peer once; reconnects are sequential).
	maxUnauthedPerIP = 16
)

func remoteIP(conn net.Conn) string {
	if a, ok := conn.RemoteAddr().(*net.TCPAddr); ok {
		return a.IP.String()
	}
	return conn.RemoteAddr().String()
}

// acceptLoop serves the forwarding listener until it is closed.
func (c *Cluster) acceptLoop() {
	defer c.wg.Done()
	for {
		conn, err := c.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Temporary accept errors (EMFILE): log and keep serving; the
			// listener is only closed by shutdown.
			c.log.Warn("cluster: forward accept failed", "err", err)
			select {
			case <-c.stop:
				return
			case <-c.sleep(acceptBackoff):
			}
			continue
		}
		c.inMu.Lock()
		if c.inClosed {
			c.inMu.Unlock()
			_ = conn.Close()
			continue
		}
		ip := remoteIP(conn)
		if c.unauthed >= c.cfg.MaxInbound || c.unauthedByIP[ip] >= maxUnauthedPerIP {
			// A flood of connections that never prove the key must not
			// hold descriptors and goroutines: over the bound, close at
			// once. Real members retry with backoff; the per-address bound
			// keeps one stranger from taking every slot.
			c.inMu.Unlock()
			_ = conn.Close()
			c.m.inboundRejected.Inc()
			continue
		}
		c.unauthed++
		c.unauthedByIP[ip]++
		id := atomic.AddUint64(&c.nextConnID, 1)
		c.inbound[id] = inboundConn{conn: conn}
		c.wg.Add(1)
		c.inMu.Unlock()
		go c.serveInbound(id, conn)
	}
}

type inboundConn struct {
	conn net.Conn
	name string // set after the handshake
}

// serveInbound authenticates one link and reads its frames until EOF.
func (c *Cluster) serveInbound(id uint64, conn net.Conn) {
	defer c.wg.Done()
	defer func() {
		_ = conn.Close()
		c.inMu.Lock()
		delete(c.inbound, id)
		c.inMu.Unlock()
	}()
	// Small until the key is proved: a stranger's connection costs little.
	br := bufio.NewReaderSize(conn, 512)
	name, err := serverHandshake(conn, br, c.fwdKey)
	ip := remoteIP(conn)
	c.inMu.Lock()
	c.unauthed--
	if c.unauthedByIP[ip]--; c.unauthedByIP[ip] <= 0 {
		delete(c.unauthedByIP, ip)
	}
	c.inMu.Unlock()
	if err != nil {
		c.m.handshakeFailures.Inc()
		// Counted always, logged at most every refusedLogEvery so a port
		// scan or a misconfigured peer cannot flood the log.
		now := time.Now().UnixNano()
		last := c.lastRefusedLog.Load()
		if now-last > int64(refusedLogEvery) && c.lastRefusedLog.CompareAndSwap(last, now) {
			c.log.Warn("cluster: refused forwarding link (wrong cluster key or name?)",
				"remote", conn.RemoteAddr().String(), "err", err)
		}
		return
	}
	c.inMu.Lock()
	c.inbound[id] = inboundConn{conn: conn, name: name}
	c.inMu.Unlock()
	staged := 0
	defer func() { c.releaseRoutes(staged + c.remote.linkClosed(name, id)) }()

	if br.Buffered() > 0 {
		err = fmt.Errorf("%w: frames sent before the handshake finished", errHandshake)
	} else {
		err = c.readFrames(id, name, bufio.NewReaderSize(conn, 64<<10), &staged)
	}
	if errors.Is(err, errRouteLimit) || errors.Is(err, errFrameTooLarge) {
		c.m.linkLimitCloses.Inc()
	}
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		// Protocol errors are worth a line; resets are ordinary and counted
		// by the sender.
		var ne net.Error
		if !errors.As(err, &ne) {
			c.log.Warn("cluster: closing forwarding link", "from", name, "err", err)
		}
	}
}

var errFrameTooLarge = errors.New("cluster: frame over MaxFrame")

// readBody reads size bytes into buf's backing array, growing it by what
// arrives (at most doubling) rather than by what a header announces, so a
// peer that announces a huge frame and stalls holds little memory.
func readBody(r io.Reader, buf []byte, size int) ([]byte, error) {
	buf = buf[:0]
	for len(buf) < size {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, min(max(cap(buf), 4<<10), size-len(buf)))
		}
		n, err := io.ReadFull(r, buf[len(buf):min(cap(buf), size)])
		buf = buf[:len(buf)+n]
		if err != nil {
			return buf, err
		}
	}
	return buf, nil
}

// readFrames is the receive loop of one link. The frame buffer is reused:
// OnMessage's payload is valid only during the call. On return *staged is the size
// of a snapshot that was being received and is dropped.
func (c *Cluster) readFrames(id uint64, name string, br *bufio.Reader, staged *int) error {
	var hdr [frameHeader]byte
	buf := make([]byte, 0, 4<<10)
	var staging *remoteNode // snapshot being received
	defer func() {
		if staging != nil {
			*staged = len(staging.users) + len(staging.rooms)
		}
	}()
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return err
		}
		n := binary.BigEndian.Uint32(hdr[:4])
		if n == 0 {
			return fmt.Errorf("%w: empty frame", errRouteFrame)
		}
		if int64(n) > int64(c.cfg.MaxFrame) {
			return fmt.Errorf("%w: %d bytes, limit %d", errFrameTooLarge, n, c.cfg.MaxFrame)
		}
		body, err := readBody(br, buf, int(n)-1)
		buf = body
		if err != nil {
			return err
		}
		switch hdr[4] {
		case kindData:
			c.m.received.Inc()
			if c.cfg.OnMessage != nil {
				c.cfg.OnMessage(name, body)
			}
		case kindRouteDelta:
			applied, err := c.remote.applyDelta(name, id, body)
			c.m.routeUpdates.Add(applied)
			if err != nil {
				return err
			}
		case kindSnapBegin:
			if len(body) < 8 {
				return errRouteFrame
			}
			seq, k := binary.Uvarint(body[8:])
			if k <= 0 {
				return errRouteFrame
			}
			staging = newRemoteNode(binary.BigEndian.Uint64(body), seq, c.cfg.MaxPeerRoutes)
		case kindSnapChunk:
			if staging == nil {
				return errRouteFrame
			}
			applied, err := staging.applyOps(body, 0)
			c.m.routeUpdates.Add(applied)
			if err != nil {
				return err
			}
		case kindSnapEnd:
			if staging == nil {
				return errRouteFrame
			}
			c.remote.install(name, id, staging)
			staging = nil
		case kindLeaving:
			c.markLeaving(name)
		case kindRequest, kindResponse:
			id, k := binary.Uvarint(body)
			if k <= 0 {
				return errRequestFrame
			}
			c.m.received.Inc()
			if hdr[4] == kindRequest {
				c.startAnswer(name, id, body[k:])
			} else {
				c.deliverAnswer(name, id, body[k:])
			}
		default:
			return fmt.Errorf("unknown frame kind %d", hdr[4])
		}
		if cap(buf) > 1<<20 && len(body) < 4<<10 {
			buf = make([]byte, 0, 4<<10) // do not pin a burst's buffer
		}
	}
}

// closeInboundFrom closes every link from node (it died or left); if it is
// in fact alive it reconnects and resends a snapshot.
func (c *Cluster) closeInboundFrom(node string) {
	c.inMu.Lock()
	for _, ic := range c.inbound {
		if ic.name == node {
			_ = ic.conn.Close()
		}
	}
	c.inMu.Unlock()
}

// closeAllInbound stops accepting and closes every inbound link.
func (c *Cluster) closeAllInbound() {
	c.inMu.Lock()
	c.inClosed = true
	for _, ic := range c.inbound {
		_ = ic.conn.Close()
	}
	c.inMu.Unlock()
}

// releaseRoutes gives memory back to the OS after a large route table was dropped
// (a link closed, perhaps for going over MaxPeerRoutes). The table becomes garbage,
// but an idle node collects only every two minutes and then returns pages slowly:
// measured with a member's snapshot of 8M fake users, RSS stayed at +94 MB a minute
// after the link was closed at the limit. At most once per reclaimEvery; it runs on
// the closing link's goroutine, never on a loop.
func (c *Cluster) releaseRoutes(entries int) {
	if entries < reclaimMinRoutes {
		return
	}
	now := time.Now().UnixNano()
	last := c.lastReclaim.Load()
	if now-last < int64(reclaimEvery) || !c.lastReclaim.CompareAndSwap(last, now) {
		return
	}
	debug.FreeOSMemory()
}
