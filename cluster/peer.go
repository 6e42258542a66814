package cluster

import (
	"encoding/binary"
	"errors"
	"net"
	"sync"
	"time"
)

var errLinkClosed = errors.New("cluster: forwarding link closed by peer")

const (
	minBackoff = 50 * time.Millisecond
	maxBackoff = 5 * time.Second
	// retainBytes is the largest buffer a peer keeps while idle.
	retainBytes = 1 << 20
	// idleShrink is how long a writer must be idle before it frees them.
	idleShrink = time.Second
)

// peer is the outbound side of one forwarding link: a bounded queue of
// framed messages and the writer goroutine that drains it. Senders append
// under mu and never do I/O; the writer swaps the queue out and writes it in
// one call, so a burst of small messages becomes one syscall.
type peer struct {
	c    *Cluster
	name string
	wake chan struct{} // capacity 1: "there is something to look at"
	done chan struct{} // closed when the writer exits

	mu          sync.Mutex
	addr        string // forward address from the peer's meta
	pending     []byte // framed messages waiting, at most c.cfg.QueueBytes
	pendingMsgs int    // data messages in pending (route frames are not counted)
	spare       []byte // the writer's previous buffer, reused as the next pending
	needSnap    bool   // send a route snapshot before the next batch
	draining    bool   // Leave: write what is queued, then exit
	closed      bool   // removed: drop the queue and exit
	conn        net.Conn
}

func newPeer(c *Cluster, name, addr string) *peer {
	return &peer{c: c, name: name, addr: addr, wake: make(chan struct{}, 1), done: make(chan struct{})}
}

func (p *peer) signal() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// enqueueData frames payload into the queue. Dropped (and counted) when full.
func (p *peer) enqueueData(payload []byte) error { return p.enqueue(kindData, nil, payload) }

// enqueue frames prefix+payload as one frame of kind (data, request or response:
// every kind a caller sends and the counters count as a message).
func (p *peer) enqueue(kind byte, prefix, payload []byte) error {
	p.mu.Lock()
	if p.closed || p.draining {
		p.mu.Unlock()
		p.c.m.forwardFailures.Inc()
		return ErrUnknownNode
	}
	size := len(prefix) + len(payload)
	if len(p.pending)+frameHeader+size > p.c.cfg.QueueBytes {
		p.mu.Unlock()
		p.c.m.forwardFailures.Inc()
		return ErrQueueFull
	}
	p.pending = binary.BigEndian.AppendUint32(p.pending, uint32(1+size))
	p.pending = append(p.pending, kind)
	p.pending = append(p.pending, prefix...)
	p.pending = append(p.pending, payload...)
	p.pendingMsgs++
	p.mu.Unlock()
	p.signal()
	return nil
}

// enqueueFrame appends an already framed route frame. If it does not fit,
// the peer gets a full snapshot instead, which supersedes the lost delta.
func (p *peer) enqueueFrame(frame []byte) {
	p.mu.Lock()
	if p.closed || p.draining {
		p.mu.Unlock()
		return
	}
	if len(p.pending)+len(frame) > p.c.cfg.QueueBytes {
		p.needSnap = true
	} else {
		p.pending = append(p.pending, frame...)
	}
	p.mu.Unlock()
	p.signal()
}

func (p *peer) requestSnapshot() {
	p.mu.Lock()
	p.needSnap = true
	p.mu.Unlock()
	p.signal()
}

func (p *peer) setAddr(addr string) {
	p.mu.Lock()
	changed := p.addr != addr
	p.addr = addr
	conn := p.conn
	p.mu.Unlock()
	if changed && conn != nil {
		_ = conn.Close() // the writer reconnects to the new address
	}
}

// close drops the queue and stops the writer (peer dead, left, or shutdown).
func (p *peer) close() {
	p.mu.Lock()
	p.closed = true
	conn := p.conn
	p.mu.Unlock()
	if conn != nil {
		_ = conn.Close()
	}
	p.signal()
}

// drain makes the writer exit once the queue is written.
func (p *peer) drain() {
	p.mu.Lock()
	p.draining = true
	p.mu.Unlock()
	p.signal()
}

// dropQueue counts what is still queued as failed and frees it.
func (p *peer) dropQueue() {
	p.mu.Lock()
	n := p.pendingMsgs
	p.pending, p.spare, p.pendingMsgs = nil, nil, 0
	p.mu.Unlock()
	p.c.m.forwardFailures.Add(n)
}

// run is the writer goroutine: connect, write batches, reconnect with backoff
// while the peer is a member.
func (p *peer) run() {
	defer p.c.wg.Done()
	defer close(p.done)
	defer p.dropQueue()
	backoff := minBackoff
	for {
		p.mu.Lock()
		stop := p.closed || (p.draining && len(p.pending) == 0)
		addr := p.addr
		p.mu.Unlock()
		if stop {
			return
		}
		conn, err := p.c.dialPeer(addr)
		if err == nil {
			p.mu.Lock()
			if p.closed {
				p.mu.Unlock()
				_ = conn.Close()
				return
			}
			p.conn = conn
			p.needSnap = true // every link starts with the full route table
			p.mu.Unlock()
			backoff = minBackoff
			// The listener never sends after the handshake, so a read
			// returning means the link is gone (peer closed it, e.g. it
			// thought we were dead). Without this an idle writer would
			// not notice, and the peer would treat our table as unsure.
			broken := make(chan struct{})
			p.c.wg.Add(1)
			go func() {
				defer p.c.wg.Done()
				var b [1]byte
				_, _ = conn.Read(b[:])
				close(broken)
			}()
			err = p.writeLoop(conn, broken)
			_ = conn.Close()
			p.mu.Lock()
			p.conn = nil
			p.mu.Unlock()
			if err == nil {
				return
			}
		}
		p.c.m.forwardRetries.Inc()
		p.c.log.Debug("cluster: forwarding link down, retrying", "peer", p.name, "addr", addr, "in", backoff, "err", err)
		if !p.backoff(backoff) {
			return
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// backoff waits d; false means the peer was closed or the cluster stopped.
// Wake-ups consumed here are harmless: writeLoop re-checks the queue before
// it waits.
func (p *peer) backoff(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			return true
		case <-p.c.stop:
			return false
		case <-p.wake:
			p.mu.Lock()
			closed := p.closed
			p.mu.Unlock()
			if closed {
				return false
			}
		}
	}
}

// writeLoop writes batches until an error, close, or drained.
func (p *peer) writeLoop(conn net.Conn, broken <-chan struct{}) error {
	var snapBuf []byte
	idle := time.NewTimer(idleShrink)
	defer idle.Stop()
	for {
		p.mu.Lock()
		for !p.closed && !p.needSnap && len(p.pending) == 0 && !p.draining {
			p.mu.Unlock()
			idle.Reset(idleShrink)
			select {
			case <-p.wake:
			case <-broken:
				return errLinkClosed
			case <-idle.C:
				// Idle for a while: give back a burst's buffers. While
				// busy they are kept (each bounded by QueueBytes) so
				// batching does not reallocate.
				p.mu.Lock()
				if cap(p.spare) > retainBytes {
					p.spare = nil
				}
				if cap(p.pending) > retainBytes && len(p.pending) == 0 {
					p.pending = nil
				}
				p.mu.Unlock()
			}
			p.mu.Lock()
		}
		if p.closed || (p.draining && !p.needSnap && len(p.pending) == 0) {
			p.mu.Unlock()
			return nil
		}
		buf, msgs, snap := p.pending, p.pendingMsgs, p.needSnap
		p.pending, p.spare, p.pendingMsgs, p.needSnap = p.spare[:0], nil, 0, false
		p.mu.Unlock()

		// The snapshot is taken after the batch was swapped out, so its seq
		// covers every delta in buf; the receiver skips those as old.
		if snap {
			var err error
			if snapBuf, err = p.writeSnapshot(conn, snapBuf[:0]); err != nil {
				p.c.m.forwardFailures.Add(msgs)
				return err
			}
			if cap(snapBuf) > retainBytes {
				snapBuf = nil
			}
		}
		if len(buf) > 0 {
			if err := p.write(conn, buf); err != nil {
				// Part of the batch may have arrived; resending could
				// duplicate, so the batch counts as failed (at-most-once).
				p.c.m.forwardFailures.Add(msgs)
				return err
			}
			p.c.m.forwardMessages.Add(msgs)
		}
		p.mu.Lock()
		p.spare = buf[:0]
		p.mu.Unlock()
	}
}

func (p *peer) write(conn net.Conn, b []byte) error {
	if err := conn.SetWriteDeadline(time.Now().Add(writeTimeout)); err != nil {
		return err
	}
	n, err := conn.Write(b)
	p.c.m.forwardBytes.Add(n)
	return err
}

// writeSnapshot sends this node's whole route table in chunk frames.
func (p *peer) writeSnapshot(conn net.Conn, buf []byte) ([]byte, error) {
	seq, users, rooms := p.c.local.snapshot()
	var begin [8 + binary.MaxVarintLen64]byte
	binary.BigEndian.PutUint64(begin[:8], p.c.epoch)
	k := binary.PutUvarint(begin[8:], seq)
	buf = appendFrame(buf[:0], kindSnapBegin, begin[:8+k])
	flush := func(final bool) error {
		if !final && len(buf) < snapChunkBytes {
			return nil
		}
		err := p.write(conn, buf)
		buf = buf[:0]
		return err
	}
	for i, list := range [2][]string{users, rooms} {
		room := i == 1
		start := -1
		for _, name := range list {
			if start < 0 {
				start = len(buf)
				buf = append(buf, 0, 0, 0, 0, kindSnapChunk)
			}
			buf = appendOp(buf, room, true, name)
			if len(buf)-start >= snapChunkBytes {
				binary.BigEndian.PutUint32(buf[start:], uint32(len(buf)-start-4))
				start = -1
				if err := flush(false); err != nil {
					return buf, err
				}
			}
		}
		if start >= 0 {
			binary.BigEndian.PutUint32(buf[start:], uint32(len(buf)-start-4))
		}
	}
	buf = appendFrame(buf, kindSnapEnd, nil)
	return buf, flush(true)
}
