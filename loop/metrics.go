package loop

import (
	"fmt"
	"github.com/panjf2000/gnet/v2"
	"strconv"
	"sync/atomic"

	"github.com/VictoriaMetrics/metrics"

	"longlink/promhist"
)

// serverMetrics holds the counters the loops update and registers gauges that read the
// loops' own counts at scrape time. All are created once, in New.
type serverMetrics struct {
	open        atomic.Int64 // upgraded connections, exact
	handshaking atomic.Int64

	handshakes    *metrics.Counter
	failures      map[string]*metrics.Counter
	evictions     *metrics.Counter
	slowConsumers *metrics.Counter
	// connections closed with 1013 because MaxPendingBytes was used up
	pendingBudgetCloses *metrics.Counter
	overloaded          *metrics.Counter
	// deliveries a Pusher connection did not take: not a Pusher event of one of its
	// channels (a broadcast to all, a push without an event); see pusher.go
	pusherSkipped   *metrics.Counter
	lingerBatches   *metrics.Counter // room batches released (linger.go)
	lingerMessages  *metrics.Counter // messages those batches held
	handshakeTime   *promhist.Histogram
	deliveryLatency *promhist.Histogram

	// closes holds a counter per code in knownCloseCodes. It is written only in
	// newServerMetrics and read-only afterwards, so loops read it without a lock.
	// Every other code a client may echo (3000-4999 are all valid) is counted under
	// closesOther: a series per code would let clients create metric series at will.
	closes      map[uint16]*metrics.Counter
	closesOther *metrics.Counter
	closesNone  *metrics.Counter

	// permessage-deflate: connections that negotiated it; compressed variants built
	// (one per message and frame kind, for all its recipients), and their bytes
	// before and after; frames compression did not make smaller (sent as they are)
	deflateConns, deflateMessages, deflateSkipped *metrics.Counter
	deflateIn, deflateOut                         *metrics.Counter
}

// handshakeReasons are the failure reasons counted; each counter exists from the start
// so dashboards see zeros rather than gaps.
var handshakeReasons = []string{"bad_request", "unauthorized", "forbidden", "timeout", "too_large", "over_capacity", "draining", "streams", "held_overflow", "early_data", "hook_refused", "hook_failed", "pusher_app", "pusher_protocol"}

// knownCloseCodes are the codes counted under their own label: those the server
// sends, and those well-behaved clients send (which it echoes). All are created at
// start; any other code counts as "other".
var knownCloseCodes = []uint16{1000, 1001, 1002, 1003, 1007, 1008, 1009, 1011, 1012, 1013, 1014, CloseReplaced, CloseKicked, CloseTokenExpired,
	PusherCloseUnsupportedProtocol, PusherCloseNoProtocol, PusherCloseOverCapacity, PusherCloseReconnect, PusherClosePongTimeout}

func newServerMetrics(s *Server) *serverMetrics {
	set := s.cfg.Metrics
	m := &serverMetrics{failures: map[string]*metrics.Counter{}, closes: map[uint16]*metrics.Counter{}}
	m.handshakes = set.NewCounter("longlink_handshakes_total")
	for _, r := range handshakeReasons {
		m.failures[r] = set.NewCounter(`longlink_handshake_failures_total{reason="` + r + `"}`)
	}
	m.evictions = set.NewCounter("longlink_evictions_total")
	m.slowConsumers = set.NewCounter("longlink_slow_consumer_closes_total")
	m.pendingBudgetCloses = set.NewCounter("longlink_pending_budget_closes_total")
	set.NewGauge("longlink_pending_bytes", func() float64 { return float64(s.pending.Held()) })
	m.overloaded = set.NewCounter(`longlink_push_errors_total{reason="overloaded"}`)
	m.pusherSkipped = set.NewCounter("longlink_pusher_skipped_total")
	m.lingerBatches = set.NewCounter("longlink_room_linger_batches_total")
	m.lingerMessages = set.NewCounter("longlink_room_linger_messages_total")
	m.handshakeTime = promhist.New(set, "longlink_handshake_duration_seconds", "", promhist.DefaultBuckets)
	m.deliveryLatency = promhist.New(set, "longlink_delivery_duration_seconds", "", promhist.DefaultBuckets)
	for _, code := range knownCloseCodes {
		m.closes[code] = set.NewCounter(`longlink_closes_total{code="` + strconv.Itoa(int(code)) + `"}`)
	}
	m.closesNone = set.NewCounter(`longlink_closes_total{code="none"}`)
	m.closesOther = set.NewCounter(`longlink_closes_total{code="other"}`)

	set.NewGauge("longlink_connections", func() float64 { return float64(m.open.Load()) })
	// Counted by the patched gnet acceptor (third_party/gnet/PATCHES.md) for the whole
	// process; exported as a counter (it only grows).
	set.NewGauge(`longlink_accept_rejected_total{reason="no_descriptors"}`, func() float64 { return float64(gnet.RejectedNoFD()) })
	set.NewGauge("longlink_handshaking_connections", func() float64 { return float64(m.handshaking.Load()) })
	set.NewGauge("longlink_users", func() float64 { return float64(s.reg.nUsers.Load()) })
	set.NewGauge("longlink_rooms", func() float64 { return float64(s.reg.nRooms.Load()) })
	for i := 0; i < s.cfg.Loops; i++ {
		i := i
		set.NewGauge(fmt.Sprintf(`longlink_loop_connections{loop="%d"}`, i), func() float64 {
			if l := s.shardList(); i < len(l) {
				return float64(l[i].nOpen.Load())
			}
			return 0
		})
	}
	sum := func(f func(*shard) uint64) func() float64 {
		return func() float64 {
			var t uint64
			for _, sh := range s.shardList() {
				t += f(sh)
			}
			return float64(t)
		}
	}
	// Counters the loops keep per shard (no shared cache line) are summed at scrape.
	set.NewGauge("longlink_frames_in_total", sum(func(sh *shard) uint64 { return sh.framesIn.Load() }))
	set.NewGauge("longlink_frames_out_total", sum(func(sh *shard) uint64 { return sh.framesOut.Load() }))
	set.NewGauge("longlink_bytes_in_total", sum(func(sh *shard) uint64 { return sh.bytesIn.Load() }))
	set.NewGauge("longlink_bytes_out_total", sum(func(sh *shard) uint64 { return sh.bytesOut.Load() }))
	// permessage-deflate (deflate.go)
	m.deflateConns = set.NewCounter("longlink_deflate_connections_total")
	m.deflateMessages = set.NewCounter("longlink_deflate_messages_total")
	m.deflateSkipped = set.NewCounter("longlink_deflate_incompressible_total")
	m.deflateIn = set.NewCounter("longlink_deflate_in_bytes_total")
	m.deflateOut = set.NewCounter("longlink_deflate_out_bytes_total")
	set.NewGauge("longlink_deflate_frames_total", sum(func(sh *shard) uint64 { return sh.deflateFrames.Load() }))
	set.NewGauge("longlink_deflate_saved_bytes_total", sum(func(sh *shard) uint64 { return sh.deflateSaved.Load() }))
	return m
}

func (m *serverMetrics) handshakeFailure(reason string) {
	c := m.failures[reason]
	if c == nil {
		panic("BUG: loop: unknown handshake failure reason " + reason)
	}
	c.Inc()
}

// closeCode counts a close the server initiated or echoed; 0 means the socket was
// dropped without a close frame. It is called from every loop and takes no lock.
func (m *serverMetrics) closeCode(code uint16) {
	if code == 0 {
		m.closesNone.Inc()
		return
	}
	if c := m.closes[code]; c != nil {
		c.Inc()
		return
	}
	m.closesOther.Inc()
}
