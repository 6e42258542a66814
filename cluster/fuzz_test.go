package cluster

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// fuzzCluster is a Cluster with just what the receive path uses: no memberlist,
// no listener.
func fuzzCluster() *Cluster {
	c := &Cluster{
		cfg:     Config{MaxFrame: 64 << 10, MaxPeerRoutes: 500, Logger: quietLogger, OnMessage: func(string, []byte) {}},
		log:     quietLogger,
		remote:  newRemoteRoutes(),
		members: map[string]*memberInfo{"peer": {name: "peer", state: stateAlive}},
		req:     newRequests(4),
	}
	c.cfg.OnRequest = func(_ string, body []byte) []byte { return body }
	c.m = newClusterMetrics(metrics.NewSet(), c)
	return c
}

// linkSeeds are well-formed link streams: a snapshot, deltas, data, requests and
// responses, leaving.
func linkSeeds() [][]byte {
	var begin [8 + binary.MaxVarintLen64]byte
	binary.BigEndian.PutUint64(begin[:8], 7)
	k := binary.PutUvarint(begin[8:], 2)
	snap := appendFrame(nil, kindSnapBegin, begin[:8+k])
	snap = appendFrame(snap, kindSnapChunk, appendOp(appendOp(nil, false, true, "u1"), true, true, "r1"))
	snap = appendFrame(snap, kindSnapEnd, nil)
	l := newLocalRoutes()
	l.set(false, "u1", true)
	l.set(true, "r1", true)
	l.set(false, "u2", true)
	l.set(false, "u1", false)
	delta, _, _ := l.takeDelta(nil, 7)
	withDelta := append(append([]byte(nil), snap...), delta...)
	return [][]byte{
		snap,
		withDelta,
		appendFrame(nil, kindData, []byte("payload")),
		append(appendFrame(withDelta, kindData, []byte("x")), appendFrame(nil, kindLeaving, nil)...),
		delta, // a delta without a snapshot
		appendFrame(appendFrame(nil, kindRequest, []byte{1, 'q'}), kindResponse, []byte{0x81, 0x01, 'a'}),
		append(appendFrame(withDelta, kindRequest, []byte{2}), appendFrame(nil, kindData, []byte("after"))...),
	}
}

// FuzzLinkFrames feeds arbitrary bytes to an authenticated link's receive loop, as
// a hostile or broken member would send them. It must never panic, never keep more
// routes than MaxPeerRoutes, and never hold a frame buffer past MaxFrame.
func FuzzLinkFrames(f *testing.F) {
	for _, s := range linkSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		c := fuzzCluster()
		var got int
		c.cfg.OnMessage = func(from string, p []byte) {
			if from != "peer" || len(p) > c.cfg.MaxFrame {
				t.Fatalf("OnMessage(%q, %d bytes)", from, len(p))
			}
			got++
		}
		err := c.readFrames(1, "peer", bufio.NewReader(bytes.NewReader(in)), new(int))
		c.wg.Wait() // answers to requests run on their own goroutines
		if err == nil {
			t.Fatal("readFrames returned nil at the end of its input")
		}
		c.remote.mu.RLock()
		defer c.remote.mu.RUnlock()
		if rn := c.remote.nodes["peer"]; rn != nil && len(rn.users)+len(rn.rooms) > c.cfg.MaxPeerRoutes {
			t.Fatalf("%d routes kept, limit %d", len(rn.users)+len(rn.rooms), c.cfg.MaxPeerRoutes)
		}
	})
}

// pipeConn is a net.Conn whose reads come from a byte slice and whose writes are
// discarded: the server side of a handshake against arbitrary client bytes.
type pipeConn struct {
	io.Reader
	net.Conn // nil: unused methods panic
}

func (p pipeConn) Write(b []byte) (int, error)        { return len(b), nil }
func (p pipeConn) SetDeadline(time.Time) error        { return nil }
func (p pipeConn) RemoteAddr() net.Addr               { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }
func (p pipeConn) Read(b []byte) (int, error)         { return p.Reader.Read(b) }
func (p pipeConn) SetReadDeadline(time.Time) error    { return nil }
func (p pipeConn) SetWriteDeadline(t time.Time) error { return nil }

// FuzzServerHandshake: no byte string passes the server's handshake without the
// key (the nonce is fresh, so no recorded or guessed proof can match), and none
// makes it panic or read more than the hello and a proof.
func FuzzServerHandshake(f *testing.F) {
	key := forwardKey("c", []byte("k"))
	hello := append(append([]byte("LLF1"), make([]byte, nonceLen)...), 4, 'n', 'o', 'd', 'e')
	f.Add(append(hello, make([]byte, 32)...))
	f.Add([]byte("LLF1"))
	f.Add(append(append([]byte("LLF1"), make([]byte, nonceLen)...), 0))
	f.Fuzz(func(t *testing.T, in []byte) {
		r := bytes.NewReader(in)
		conn := pipeConn{Reader: r}
		name, err := serverHandshake(conn, bufio.NewReaderSize(conn, 512), key)
		if err == nil {
			t.Fatalf("handshake accepted %q from %x", name, in)
		}
	})
}

// FuzzDecodeMeta: node meta comes from any member through gossip.
func FuzzDecodeMeta(f *testing.F) {
	f.Add(appendMeta(nil, nodeMeta{NodeMeta: NodeMeta{ClientAddr: "1.2.3.4:80", APIAddr: "x", Connections: 5, Draining: true}, ForwardAddr: "1.2.3.4:7947"}, 512))
	f.Add([]byte{1, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		m, err := decodeMeta(in)
		if err != nil {
			return
		}
		// What decodes re-encodes to something that decodes the same.
		again, err := decodeMeta(appendMeta(nil, m, 1<<20))
		if err != nil || again != m {
			t.Fatalf("meta %+v re-decoded as %+v, %v", m, again, err)
		}
	})
}

// TestLinkSeedsApply: the seeds are meaningful (a regression for the fuzz harness).
func TestLinkSeedsApply(t *testing.T) {
	c := fuzzCluster()
	c.readFrames(1, "peer", bufio.NewReader(bytes.NewReader(linkSeeds()[1])), new(int))
	if got := c.remote.nodesFor(false, []string{"u2"}, []string{"peer"}); len(got) != 1 {
		t.Fatalf("u2 not routed to peer after snapshot+delta: %v", got)
	}
	if got := c.remote.nodesFor(false, []string{"u1"}, []string{"peer"}); len(got) != 0 {
		t.Fatalf("u1 still routed after its removal: %v", got)
	}
}
