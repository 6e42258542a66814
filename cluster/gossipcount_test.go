package cluster

import (
	"io"
	"log"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/hashicorp/memberlist"

	"longlink/internal/testutil"
)

// TestGossipCounted: memberlist's packets and push-pull streams go through the
// counting transport, both ways, and show in the node's metrics set; the node's
// gossip address (a dynamic port) is the one the transport bound.
func TestGossipCounted(t *testing.T) {
	sets := make([]*metrics.Set, 2)
	nodes := startCluster(t, 2, func(i int, cfg *Config) { sets[i] = cfg.Metrics })
	a, b := nodes[0], nodes[1]
	if strings.HasSuffix(a.GossipAddr(), ":0") || a.GossipAddr() == "" {
		t.Fatalf("gossip address %q: the dynamic port was not taken from the transport", a.GossipAddr())
	}
	// Probes every 200 ms and a push-pull every second (testConfig).
	testutil.WaitFor(t, 10*time.Second, "gossip counted both ways on both nodes", func() bool {
		for _, c := range []*Cluster{a, b} {
			if c.m.gossipPacketsOut.Get() == 0 || c.m.gossipPacketsIn.Get() == 0 ||
				c.m.gossipPacketBytesOut.Get() == 0 || c.m.gossipPacketBytesIn.Get() == 0 ||
				c.m.gossipStreamBytesOut.Get() == 0 || c.m.gossipStreamBytesIn.Get() == 0 || c.m.gossipStreams.Get() == 0 {
				return false
			}
		}
		return true
	})
	// A packet sent is a packet received on loopback, give or take those in flight.
	if out, in := a.m.gossipPacketsOut.Get(), b.m.gossipPacketsIn.Get(); in > out+50 {
		t.Errorf("node1 received %d packets, node0 sent %d in all: counted twice?", in, out)
	}
	var sb strings.Builder
	sets[0].WritePrometheus(&sb)
	for _, name := range []string{`longlink_cluster_gossip_packets_total{dir="in"}`, `longlink_cluster_gossip_packets_total{dir="out"}`,
		`longlink_cluster_gossip_bytes_total{dir="in",kind="packet"}`, `longlink_cluster_gossip_bytes_total{dir="out",kind="stream"}`,
		"longlink_cluster_gossip_streams_total"} {
		if !strings.Contains(sb.String(), name+" ") {
			t.Errorf("%s not in the metrics set", name)
		}
	}
}

// TestGossipTransportShutdownWithPacketsUnread: packets that arrive while nobody
// reads (memberlist stopped, or never started) must not keep Shutdown waiting for
// NetTransport's listener, which hands them over on an unbuffered channel.
func TestGossipTransportShutdownWithPacketsUnread(t *testing.T) {
	mlc := memberlist.DefaultLANConfig()
	mlc.BindAddr, mlc.BindPort = "127.0.0.1", 0
	mlc.Logger = log.New(io.Discard, "", 0)
	m := newClusterMetrics(metrics.NewSet(), nil)
	defer m.close()
	tr, err := newCountingTransport(mlc, m)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(mlc.BindPort)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for i := 0; i < 5; i++ {
		if _, err := conn.Write([]byte("not read by anyone")); err != nil {
			t.Fatal(err)
		}
	}
	testutil.WaitFor(t, 5*time.Second, "the packets counted", func() bool { return m.gossipPacketsIn.Get() >= 1 })
	done := make(chan error, 1)
	go func() { done <- tr.Shutdown() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown did not return within 5 s with packets unread")
	}
}
