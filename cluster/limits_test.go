package cluster

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"longlink/internal/testutil"
)

// rawLink dials a's forwarding port and passes the handshake as name, as a
// member holding the key would: the tests below play a hostile member.
func rawLink(t *testing.T, a *Cluster, name string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", a.ForwardAddr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if err := clientHandshake(conn, a.fwdKey, name); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	return conn
}

// waitClosed reads until the peer closes conn (the node hung up on us).
func waitClosed(t *testing.T, conn net.Conn, d time.Duration) {
	t.Helper()
	conn.SetReadDeadline(time.Now().Add(d))
	_, err := io.Copy(io.Discard, conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("link still open after %s", d)
	}
}

// Finding 2: a snapshot of millions of fake users ballooned a node's memory.
// Past MaxPeerRoutes the link is closed and the staged table dropped.
func TestSnapshotOverRouteLimitClosesLink(t *testing.T) {
	const limit = 1000
	nodes := startCluster(t, 2, func(i int, cfg *Config) { cfg.MaxPeerRoutes = limit })
	a := nodes[0]
	conn := rawLink(t, a, "node1") // impersonates a member, with the key
	var begin [8 + binary.MaxVarintLen64]byte
	binary.BigEndian.PutUint64(begin[:8], 42)
	k := binary.PutUvarint(begin[8:], 1)
	frames := appendFrame(nil, kindSnapBegin, begin[:8+k])
	var chunk []byte
	for i := range 3 * limit {
		chunk = appendOp(chunk, false, true, "fake-"+strconv.Itoa(i))
		if len(chunk) > 8<<10 {
			frames = appendFrame(frames, kindSnapChunk, chunk)
			chunk = chunk[:0]
		}
	}
	frames = appendFrame(frames, kindSnapChunk, chunk)
	frames = appendFrame(frames, kindSnapEnd, nil)
	conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	conn.Write(frames) // may fail half way: the node hangs up at the limit
	waitClosed(t, conn, 5*time.Second)
	testutil.WaitFor(t, 5*time.Second, "limit close counted", func() bool { return a.m.linkLimitCloses.Get() == 1 })
	a.remote.mu.RLock()
	rn := a.remote.nodes["node1"]
	a.remote.mu.RUnlock()
	if rn != nil && rn.epoch == 42 {
		t.Fatalf("over-limit snapshot installed with %d users", len(rn.users))
	}
}

// A delta may not grow a table past the limit either.
func TestDeltaOverRouteLimitClosesLink(t *testing.T) {
	const limit = 50
	nodes := startCluster(t, 2, func(i int, cfg *Config) { cfg.MaxPeerRoutes = limit })
	a, b := nodes[0], nodes[1]
	waitSynced(t, nodes)
	for i := range limit {
		b.SetLocalUser("u"+strconv.Itoa(i), true)
	}
	testutil.WaitFor(t, 5*time.Second, "table at the limit", func() bool {
		a.remote.mu.RLock()
		defer a.remote.mu.RUnlock()
		rn := a.remote.nodes["node1"]
		return rn != nil && len(rn.users) == limit
	})
	b.SetLocalUser("one-too-many", true)
	testutil.WaitFor(t, 5*time.Second, "limit close counted", func() bool { return a.m.linkLimitCloses.Get() >= 1 })
	// The peer is unsure from then on: sent to rather than dropped.
	if got := a.NodesForUsers([]string{"one-too-many"}); len(got) != 1 {
		t.Fatalf("NodesForUsers after the limit = %v, want node1", got)
	}
}

func TestFrameOverMaxFrameClosesLink(t *testing.T) {
	nodes := startCluster(t, 1, func(i int, cfg *Config) { cfg.MaxFrame = 1 << 20 })
	a := nodes[0]
	conn := rawLink(t, a, "x")
	var hdr [frameHeader]byte
	binary.BigEndian.PutUint32(hdr[:4], 1<<20+1)
	hdr[4] = kindData
	conn.Write(hdr[:])
	waitClosed(t, conn, 5*time.Second)
	testutil.WaitFor(t, 5*time.Second, "limit close counted", func() bool { return a.m.linkLimitCloses.Get() == 1 })
}

// readBody grows with what arrives, not with what the header announces.
func TestReadBodyGrowsWithData(t *testing.T) {
	data := bytes.Repeat([]byte{'x'}, 10000)
	got, err := readBody(bytes.NewReader(data), nil, 8<<20)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("short body: err %v", err)
	}
	if len(got) != len(data) || cap(got) > 4*len(data) {
		t.Fatalf("read %d bytes into cap %d for a frame announcing 8 MiB", len(got), cap(got))
	}
	got, err = readBody(bytes.NewReader(data), got, len(data))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("whole body: %d bytes, %v", len(got), err)
	}
}

// Strangers that never finish the handshake are bounded in number (and each
// in time by handshakeTimeout); a real member still links afterwards.
func TestUnauthenticatedLinksBounded(t *testing.T) {
	rec := newRecorder()
	nodes := startCluster(t, 2, func(i int, cfg *Config) {
		cfg.MaxInbound = 4
		cfg.OnMessage = rec.onMessage
	})
	a, b := nodes[0], nodes[1]
	var idle []net.Conn
	defer func() {
		for _, c := range idle {
			c.Close()
		}
	}()
	for range 10 {
		c, err := net.Dial("tcp", a.ForwardAddr())
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, c)
	}
	testutil.WaitFor(t, 5*time.Second, "excess connections refused", func() bool { return a.m.inboundRejected.Get() >= 6 })
	for _, c := range idle {
		c.Close()
	}
	testutil.WaitFor(t, 5*time.Second, "slots freed", func() bool {
		a.inMu.Lock()
		defer a.inMu.Unlock()
		return a.unauthed == 0
	})
	if err := b.Send("node0", seqPayload(1, 8)); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 10*time.Second, "member's message after the flood", func() bool { return rec.count("node1") == 1 })
}
