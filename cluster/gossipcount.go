package cluster

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// countingTransport is memberlist's own NetTransport with every packet and every
// stream byte counted, so that the cost of gossip itself (probes, gossip, push-pull
// syncs) is a metric: longlink_cluster_gossip_packets_total{dir},
// longlink_cluster_gossip_bytes_total{dir,kind} and longlink_cluster_gossip_streams_total. The
// counts are of what memberlist hands the transport (after the label, encryption
// and compression), that is what goes on the wire less the UDP/TCP/IP headers.
//
// Goroutines: one forwards received packets and one accepted streams from the
// NetTransport to memberlist (each a channel hop, at gossip rates); both end at
// Shutdown. Counters are the only shared state.
//
// Shutdown order matters: NetTransport's listeners hand each packet and stream over
// an unbuffered channel and NetTransport.Shutdown waits for them, so the forwarders
// must keep draining until it returns. Shutdown therefore first closes closing (from
// then on the forwarders drop what arrives instead of waiting for memberlist, which
// may have stopped reading), then shuts the NetTransport down, then closes stop.
type countingTransport struct {
	nt                  *memberlist.NetTransport
	m                   *clusterMetrics
	packets             chan *memberlist.Packet
	streams             chan net.Conn
	closing, stop       chan struct{}
	closeOnce, stopOnce sync.Once
}

var _ memberlist.NodeAwareTransport = (*countingTransport)(nil)

// newCountingTransport binds memberlist's NetTransport as memberlist itself would
// (retrying a dynamic port, which it then writes back to mlc) and wraps it.
func newCountingTransport(mlc *memberlist.Config, m *clusterMetrics) (*countingTransport, error) {
	nc := &memberlist.NetTransportConfig{BindAddrs: []string{mlc.BindAddr}, BindPort: mlc.BindPort, Logger: mlc.Logger}
	tries := 1
	if mlc.BindPort == 0 {
		// Binding UDP and TCP to one dynamic port races other processes; memberlist
		// retries the same way.
		tries = 10
	}
	var nt *memberlist.NetTransport
	var err error
	for i := 0; i < tries; i++ {
		if nt, err = memberlist.NewNetTransport(nc); err == nil || !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("could not set up network transport: %w", err)
	}
	if mlc.BindPort == 0 {
		mlc.BindPort = nt.GetAutoBindPort()
		mlc.AdvertisePort = mlc.BindPort
	}
	t := &countingTransport{nt: nt, m: m, packets: make(chan *memberlist.Packet), streams: make(chan net.Conn),
		closing: make(chan struct{}), stop: make(chan struct{})}
	go t.forwardPackets()
	go t.forwardStreams()
	return t, nil
}

func (t *countingTransport) forwardPackets() {
	in := t.nt.PacketCh()
	for {
		select {
		case p := <-in:
			t.m.gossipPacketsIn.Inc()
			t.m.gossipPacketBytesIn.Add(len(p.Buf))
			select {
			case t.packets <- p:
			case <-t.closing: // shutting down: dropped
			}
		case <-t.stop:
			return
		}
	}
}

func (t *countingTransport) forwardStreams() {
	in := t.nt.StreamCh()
	for {
		select {
		case c := <-in:
			t.m.gossipStreams.Inc()
			select {
			case t.streams <- &countingConn{Conn: c, m: t.m}:
			case <-t.closing: // shutting down
				c.Close()
			}
		case <-t.stop:
			return
		}
	}
}

func (t *countingTransport) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	return t.nt.FinalAdvertiseAddr(ip, port)
}

func (t *countingTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	t.m.gossipPacketsOut.Inc()
	t.m.gossipPacketBytesOut.Add(len(b))
	return t.nt.WriteTo(b, addr)
}

func (t *countingTransport) WriteToAddress(b []byte, addr memberlist.Address) (time.Time, error) {
	t.m.gossipPacketsOut.Inc()
	t.m.gossipPacketBytesOut.Add(len(b))
	return t.nt.WriteToAddress(b, addr)
}

func (t *countingTransport) PacketCh() <-chan *memberlist.Packet { return t.packets }

func (t *countingTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	c, err := t.nt.DialTimeout(addr, timeout)
	if err != nil {
		return nil, err
	}
	t.m.gossipStreams.Inc()
	return &countingConn{Conn: c, m: t.m}, nil
}

func (t *countingTransport) DialAddressTimeout(addr memberlist.Address, timeout time.Duration) (net.Conn, error) {
	c, err := t.nt.DialAddressTimeout(addr, timeout)
	if err != nil {
		return nil, err
	}
	t.m.gossipStreams.Inc()
	return &countingConn{Conn: c, m: t.m}, nil
}

func (t *countingTransport) StreamCh() <-chan net.Conn { return t.streams }

func (t *countingTransport) Shutdown() error {
	t.closeOnce.Do(func() { close(t.closing) })
	err := t.nt.Shutdown()
	t.stopOnce.Do(func() { close(t.stop) })
	return err
}

// countingConn counts a gossip stream's bytes (push-pull syncs, joins, probes
// over TCP when UDP failed).
type countingConn struct {
	net.Conn
	m *clusterMetrics
}

func (c *countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.m.gossipStreamBytesIn.Add(n)
	return n, err
}

func (c *countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.m.gossipStreamBytesOut.Add(n)
	return n, err
}
