package cluster

import (
	"github.com/VictoriaMetrics/metrics"
)

// clusterMetrics are created once in New; the hot paths only call Inc/Add.
type clusterMetrics struct {
	set        *metrics.Set
	registered bool // set was created here and registered globally
	names      []string

	forwardMessages   *metrics.Counter
	forwardBytes      *metrics.Counter
	forwardFailures   *metrics.Counter
	forwardRetries    *metrics.Counter
	received          *metrics.Counter
	routeUpdates      *metrics.Counter
	handshakeFailures *metrics.Counter
	inboundRejected   *metrics.Counter
	linkLimitCloses   *metrics.Counter
	queryDrops        *metrics.Counter

	// Gossip itself (countingTransport): memberlist's packets and stream bytes.
	gossipPacketsIn, gossipPacketsOut         *metrics.Counter
	gossipPacketBytesIn, gossipPacketBytesOut *metrics.Counter
	gossipStreamBytesIn, gossipStreamBytesOut *metrics.Counter
	gossipStreams                             *metrics.Counter
}

func newClusterMetrics(set *metrics.Set, c *Cluster) *clusterMetrics {
	m := &clusterMetrics{set: set}
	if set == nil {
		// A private set registered globally instead of the default set: it
		// appears in metrics.WritePrometheus just the same, and a second
		// Cluster in one process (tests, restarts) does not panic on
		// duplicate names.
		m.set = metrics.NewSet()
		metrics.RegisterSet(m.set)
		m.registered = true
	}
	s := m.set
	counter := func(name string) *metrics.Counter {
		m.names = append(m.names, name)
		return s.NewCounter(name)
	}
	for _, state := range []string{stateAlive, stateSuspect, stateDead, stateLeft} {
		name := `longlink_cluster_members{state="` + state + `"}`
		m.names = append(m.names, name)
		s.NewGauge(name, func() float64 {
			return float64(c.countMembers(state))
		})
	}
	m.forwardMessages = counter("longlink_cluster_forward_messages_total")
	m.forwardBytes = counter("longlink_cluster_forward_bytes_total")
	m.forwardFailures = counter("longlink_cluster_forward_failures_total")
	m.forwardRetries = counter("longlink_cluster_forward_retries_total")
	m.received = counter("longlink_cluster_received_messages_total")
	m.routeUpdates = counter("longlink_cluster_route_updates_total")
	m.handshakeFailures = counter("longlink_cluster_handshake_failures_total")
	m.inboundRejected = counter("longlink_cluster_inbound_rejected_total")
	m.linkLimitCloses = counter("longlink_cluster_link_limit_closes_total")
	m.queryDrops = counter("longlink_cluster_query_drops_total")
	m.gossipPacketsIn = counter(`longlink_cluster_gossip_packets_total{dir="in"}`)
	m.gossipPacketsOut = counter(`longlink_cluster_gossip_packets_total{dir="out"}`)
	m.gossipPacketBytesIn = counter(`longlink_cluster_gossip_bytes_total{dir="in",kind="packet"}`)
	m.gossipPacketBytesOut = counter(`longlink_cluster_gossip_bytes_total{dir="out",kind="packet"}`)
	m.gossipStreamBytesIn = counter(`longlink_cluster_gossip_bytes_total{dir="in",kind="stream"}`)
	m.gossipStreamBytesOut = counter(`longlink_cluster_gossip_bytes_total{dir="out",kind="stream"}`)
	m.gossipStreams = counter("longlink_cluster_gossip_streams_total")
	return m
}

func (m *clusterMetrics) close() {
	if m.registered {
		metrics.UnregisterSet(m.set, true)
		return
	}
	// A caller-provided set may outlive this Cluster (restart in one
	// process): free the names so a new Cluster can register them again.
	for _, name := range m.names {
		m.set.UnregisterMetric(name)
	}
}
