package cluster

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net"
	"strings"
	"testing"
)

func TestGossipKey(t *testing.T) {
	f := func(in string, want []byte) {
		t.Helper()
		if got := GossipKey(in); !bytes.Equal(got, want) {
			t.Fatalf("GossipKey(%q) = %x, want %x", in, got, want)
		}
	}
	raw32 := bytes.Repeat([]byte{7}, 32)
	f("", nil)
	f(base64.StdEncoding.EncodeToString(raw32), raw32)
	f(base64.StdEncoding.EncodeToString(raw32[:16]), raw32[:16])
	f("0123456789abcdef", []byte("0123456789abcdef")) // raw 16 bytes (not base64 of 16/24/32)
	sum := sha256.Sum256([]byte("correct horse"))
	f("correct horse", sum[:])
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
	cfg, err := Config{GossipAddr: "10.1.2.3:7000"}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ForwardAddr != "10.1.2.3:7001" || cfg.ClusterName != "longlink" || cfg.QueueBytes != 16<<20 || cfg.NodeName == "" {
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
	rn := newRemoteNode(epoch, 1) // snapshot covered op 1 only
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
	key := forwardKey("c", GossipKey("k"))
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
	f(forwardKey("c", GossipKey("other")), false)
	f(forwardKey("d", GossipKey("k")), false)
}
