package cluster

import (
	"bytes"
	"encoding/base64"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"longlink/internal/testutil"
)

func TestParseKey(t *testing.T) {
	ok := func(in string, want []byte) {
		t.Helper()
		got, err := ParseKey(in)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("ParseKey(%q) = %x, %v; want %x", in, got, err, want)
		}
	}
	bad := func(in string) {
		t.Helper()
		if got, err := ParseKey(in); !errors.Is(err, ErrBadKey) {
			t.Fatalf("ParseKey(%q) = %x, %v; want ErrBadKey", in, got, err)
		}
	}
	raw := bytes.Repeat([]byte{7}, 32)
	ok("", nil)
	for _, n := range []int{16, 24, 32} {
		ok(base64.StdEncoding.EncodeToString(raw[:n]), raw[:n])
	}
	bad("a")                                               // finding 6: one letter was accepted
	bad("0123456789abcdef")                                // 16 raw bytes: not base64 of a key
	bad("correct horse battery staple")                    // passphrases are refused
	bad(base64.StdEncoding.EncodeToString(raw[:15]))       // too short
	bad(base64.StdEncoding.EncodeToString(raw[:31]))       // not an AES length
	bad("REPLACE-ME-cluster-key-32-bytes-or-a-passphrase") // the shipped example value
	k, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	if b, err := ParseKey(k); err != nil || len(b) != 32 {
		t.Fatalf("NewKey %q does not parse: %v", k, err)
	}
	if k2, _ := NewKey(); k2 == k {
		t.Fatal("NewKey repeated a key")
	}
}

func TestKeyRequired(t *testing.T) {
	f := func(gossip, forward string, want bool) {
		t.Helper()
		if got := KeyRequired(gossip, forward); got != want {
			t.Fatalf("KeyRequired(%q, %q) = %v, want %v", gossip, forward, got, want)
		}
	}
	f("127.0.0.1:7946", "127.0.0.1:7947", false)
	f("127.0.0.5:0", "[::1]:0", false)
	f("localhost:7946", "localhost:7947", false)
	f(":7946", "127.0.0.1:7947", true)
	f("0.0.0.0:7946", "0.0.0.0:7947", true)
	f("[::]:7946", "[::1]:7947", true)
	f("127.0.0.1:7946", ":7947", true)
	f("10.0.0.1:7946", "10.0.0.1:7947", true)
	f("garbage", "127.0.0.1:1", true)

	// New refuses to listen beyond loopback without a key, naming the field.
	_, err := New(Config{GossipAddr: ":0", Logger: quietLogger})
	if !errors.Is(err, ErrKeyRequired) || !strings.Contains(err.Error(), "GossipAddr") {
		t.Fatalf("New without key on :0: %v", err)
	}
	_, err = New(Config{GossipAddr: "127.0.0.1:0", ForwardAddr: "0.0.0.0:0", Logger: quietLogger})
	if !errors.Is(err, ErrKeyRequired) {
		t.Fatalf("New without key, forwarding on 0.0.0.0: %v", err)
	}
	_, err = New(Config{GossipAddr: "127.0.0.1:0", ClusterKey: "a", Logger: quietLogger})
	if !errors.Is(err, ErrBadKey) || !strings.Contains(err.Error(), "ClusterKey") {
		t.Fatalf("New with key %q: %v", "a", err)
	}
}

func TestConfigValidation(t *testing.T) {
	for _, cfg := range []Config{
		{GossipAddr: "nope"},
		{GossipAddr: "127.0.0.1:99999"},
		{ForwardAddr: "x"},
		{QueueBytes: -1},
		{Probe: -1},
		{ClusterName: strings.Repeat("x", 201)},
	} {
		if _, err := New(cfg); err == nil {
			t.Fatalf("New(%+v) accepted an invalid config", cfg)
		}
	}
	cfg, err := Config{GossipAddr: "10.1.2.3:7000", ClusterKey: testKey}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ForwardAddr != "10.1.2.3:7001" || cfg.ClusterName != "longlink" || cfg.QueueBytes != 16<<20 || cfg.NodeName == "" ||
		cfg.MaxFrame != 8<<20 || cfg.MaxPeerRoutes != 1<<20 || cfg.MaxInbound != 64 {
		t.Fatalf("defaults: %+v", cfg)
	}
}

func TestMetaRoundTrip(t *testing.T) {
	in := nodeMeta{NodeMeta: NodeMeta{ClientAddr: "1.2.3.4:80", APIAddr: "1.2.3.4:8080", Connections: 123456, Draining: true}, ForwardAddr: "1.2.3.4:7947"}
	out, err := decodeMeta(appendMeta(nil, in, 512))
	if err != nil || out != in {
		t.Fatalf("round trip: %+v, %v", out, err)
	}
	// Over the limit the optional addresses are dropped, the forward one kept.
	big := in
	big.ClientAddr = strings.Repeat("c", 600)
	b := appendMeta(nil, big, 512)
	if len(b) > 512 {
		t.Fatalf("meta %d bytes over limit", len(b))
	}
	out, err = decodeMeta(b)
	if err != nil || out.ForwardAddr != in.ForwardAddr || out.ClientAddr != "" || out.Connections != in.Connections {
		t.Fatalf("trimmed meta: %+v, %v", out, err)
	}
	for _, bad := range [][]byte{{9}, {1}, {1, 0, 0x80}, {1, 0, 1, 5, 'a'}} {
		if _, err := decodeMeta(bad); err == nil {
			t.Fatalf("decodeMeta(%x) accepted garbage", bad)
		}
	}
}

// deltaBody strips the frame header from a takeDelta frame.
func takeDeltaBody(t *testing.T, l *localRoutes, epoch uint64) []byte {
	t.Helper()
	frame, ops, _ := l.takeDelta(nil, epoch)
	if ops == 0 {
		t.Fatal("no pending ops")
	}
	return frame[frameHeader:]
}

func TestRouteDeltas(t *testing.T) {
	l := newLocalRoutes()
	rr := newRemoteRoutes()
	const epoch, conn = 77, 5
	l.set(false, "a", true)
	l.set(false, "a", true) // idempotent: no new op
	l.set(true, "r", true)
	seq, users, rooms := l.snapshot()
	if seq != 2 || len(users) != 1 || len(rooms) != 1 {
		t.Fatalf("snapshot seq=%d users=%v rooms=%v", seq, users, rooms)
	}
	first := takeDeltaBody(t, l, epoch) // ops 1..2

	if _, err := rr.applyDelta("n", conn, first); !errors.Is(err, errRouteNoSnap) {
		t.Fatalf("delta before snapshot: %v", err)
	}
	rn := newRemoteNode(epoch, 1, 100) // snapshot covered op 1 only
	rn.users["a"] = struct{}{}
	rr.install("n", conn, rn)
	if n, err := rr.applyDelta("n", conn, first); err != nil || n != 1 {
		t.Fatalf("overlapping delta applied %d ops, err %v; want 1", n, err)
	}
	if n, err := rr.applyDelta("n", conn, first); err != nil || n != 0 {
		t.Fatalf("replayed delta applied %d ops, err %v", n, err)
	}
	if got := rr.nodesFor(true, []string{"r"}, []string{"n", "m"}); len(got) != 2 {
		t.Fatalf("nodesFor = %v, want n (holds r) and m (unsure)", got)
	}
	l.set(false, "a", false) // op 3: lost
	takeDeltaBody(t, l, epoch)
	l.set(false, "b", true) // op 4
	if _, err := rr.applyDelta("n", conn, takeDeltaBody(t, l, epoch)); !errors.Is(err, errRouteGap) {
		t.Fatalf("gap not detected: %v", err)
	}
	if _, err := rr.applyDelta("n", conn+1, first); !errors.Is(err, errRouteNoSnap) {
		t.Fatalf("delta from another link accepted: %v", err)
	}
	rr.linkClosed("n", conn)
	if got := rr.nodesFor(false, []string{"zzz"}, []string{"n"}); len(got) != 1 {
		t.Fatal("node with a closed link must be unsure")
	}
}

func TestHandshake(t *testing.T) {
	key := forwardKey("c", []byte("k"))
	f := func(clientKey []byte, wantOK bool) {
		t.Helper()
		a, b := net.Pipe()
		defer a.Close()
		defer b.Close()
		errc := make(chan error, 1)
		go func() {
			name, err := serverHandshake(b, bufioReader(b), key)
			if err == nil && name != "me" {
				err = errors.New("wrong name " + name)
			}
			errc <- err
		}()
		cerr := clientHandshake(a, clientKey, "me")
		if cerr != nil {
			a.Close() // a refused client hangs up
		}
		serr := <-errc
		if (cerr == nil) != wantOK || (serr == nil) != wantOK {
			t.Fatalf("client err %v, server err %v, want ok=%v", cerr, serr, wantOK)
		}
	}
	f(key, true)
	f(forwardKey("c", []byte("other")), false)
	f(forwardKey("d", []byte("k")), false)
}

// New builds without binding; routes recorded before Start reach peers after it;
// Kill and Leave before Start are harmless.
func TestNewBindsNothingUntilStart(t *testing.T) {
	addr := testutil.FreeAddr(t, "tcp")
	peer := startNode(t, testConfig("peer"))
	cfg := testConfig("late", peer.GossipAddr())
	cfg.ForwardAddr = addr
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Kill)
	if l, err := net.Listen("tcp", addr); err != nil {
		t.Fatalf("New bound the forwarding address: %v", err)
	} else {
		l.Close()
	}
	c.SetLocalUser("early", true)
	if err := c.Start(); err != nil {
		t.Skipf("port taken meanwhile: %v", err)
	}
	testutil.WaitFor(t, 10*time.Second, "route set before Start", func() bool {
		return slices.Equal(peer.NodesForUsers([]string{"early"}), []string{"late"}) && len(peer.NodesForUsers([]string{"x"})) == 0
	})
	for _, stop := range []func(){func() { mustNew(t).Kill() }, func() { mustNew(t).Leave(time.Second) }} {
		stop()
	}
}

func mustNew(t *testing.T) *Cluster {
	c, err := New(testConfig("unstarted"))
	if err != nil {
		t.Fatal(err)
	}
	return c
}
