package hub

import (
	"github.com/VictoriaMetrics/metrics"

	"longlink/stream"
)

// hubMetrics counts what the streams do, and every way a message can still be lost
// or arrive late (docs/metrics.md, docs/delivery.md).
type hubMetrics struct {
	ringChanges       *metrics.Counter
	appendRetries     *metrics.Counter
	storeTimeouts     *metrics.Counter
	replicaFailures   *metrics.Counter
	replicaRefusals   *metrics.Counter
	syncFailures      *metrics.Counter
	historyAdopted    *metrics.Counter
	historyExpired    *metrics.Counter
	streamGaps        *metrics.Counter
	subscribeFailures *metrics.Counter
	recoveriesLost    *metrics.Counter
	recoveredMessages *metrics.Counter
	badSince          *metrics.Counter
	stalls            *metrics.Counter
	handoffStreams    *metrics.Counter
	handoffFailures   *metrics.Counter
	settleWaits       *metrics.Counter

	acks             *metrics.Counter
	acksDropped      *metrics.Counter
	ackCopiesLost    *metrics.Counter
	receiptsEvicted  *metrics.Counter
	receiptNotesLost *metrics.Counter
	reportsLost      *metrics.Counter
	expired          [2]*metrics.Counter // expTTL, expEvicted
	expiredLost      *metrics.Counter
	redelivered      *metrics.Counter
}

func newHubMetrics(set *metrics.Set) hubMetrics {
	return hubMetrics{
		ringChanges:       set.NewCounter(`longlink_stream_ring_changes_total`),
		appendRetries:     set.NewCounter(`longlink_stream_append_retries_total`),
		storeTimeouts:     set.NewCounter(`longlink_push_errors_total{reason="not_stored"}`),
		replicaFailures:   set.NewCounter(`longlink_stream_replica_failures_total`),
		replicaRefusals:   set.NewCounter(`longlink_stream_replica_refusals_total`),
		syncFailures:      set.NewCounter(`longlink_stream_sync_failures_total`),
		historyAdopted:    set.NewCounter(`longlink_stream_history_adopted_total`),
		historyExpired:    set.NewCounter(`longlink_stream_history_expired_total`),
		streamGaps:        set.NewCounter(`longlink_stream_gaps_total`),
		subscribeFailures: set.NewCounter(`longlink_stream_subscribe_failures_total`),
		recoveriesLost:    set.NewCounter(`longlink_stream_recoveries_total{result="not_recovered"}`),
		recoveredMessages: set.NewCounter(`longlink_stream_recovered_messages_total`),
		badSince:          set.NewCounter(`longlink_stream_recoveries_total{result="bad_since"}`),
		stalls:            set.NewCounter(`longlink_node_stalls_total`),
		handoffStreams:    set.NewCounter(`longlink_stream_handoff_streams_total`),
		handoffFailures:   set.NewCounter(`longlink_stream_handoff_failures_total`),
		settleWaits:       set.NewCounter(`longlink_stream_settle_waits_total`),

		acks:             set.NewCounter(`longlink_acks_total`),
		acksDropped:      set.NewCounter(`longlink_acks_dropped_total`),
		ackCopiesLost:    set.NewCounter(`longlink_ack_copies_lost_total`),
		receiptsEvicted:  set.NewCounter(`longlink_receipts_evicted_total`),
		receiptNotesLost: set.NewCounter(`longlink_receipt_notes_lost_total`),
		reportsLost:      set.NewCounter(`longlink_receipt_reports_lost_total`),
		expired: [2]*metrics.Counter{
			set.NewCounter(`longlink_messages_expired_total{reason="ttl"}`),
			set.NewCounter(`longlink_messages_expired_total{reason="evicted"}`),
		},
		expiredLost: set.NewCounter(`longlink_messages_expired_unreported_total`),
		redelivered: set.NewCounter(`longlink_messages_redelivered_total`),
	}
}

func (m *hubMetrics) register(set *metrics.Set, st *stream.Store, rc *receipts) {
	set.NewGauge(`longlink_receipts`, func() float64 { return float64(rc.len()) })
	set.NewGauge(`longlink_history_streams`, func() float64 { return float64(st.Stats().Streams) })
	set.NewGauge(`longlink_history_messages`, func() float64 { return float64(st.Stats().Entries) })
	set.NewGauge(`longlink_history_bytes`, func() float64 { return float64(st.Stats().Bytes) })
	set.NewGauge(`longlink_history_evicted_total`, func() float64 { return float64(st.Stats().Evicted) })
}
