package upstream

import (
	"strconv"

	"github.com/VictoriaMetrics/metrics"

	"longlink/promhist"
)

// bizMetrics are one business's series, created in New with the business's label
// (docs/metrics.md, "Upstream").
type bizMetrics struct {
	requests *metrics.Counter
	duration *promhist.Histogram
	replies  map[int]*metrics.Counter // by status; 2xx the back-ends may use and every failure status
	other2xx *metrics.Counter
	reject   map[string]*metrics.Counter

	hookAllowed, hookRefused, hookFailed *metrics.Counter
}

// replyStatuses are the statuses a reply of a business can have: the back-end's
// usual 2xx (others count as "2xx") and the failures.
var replyStatuses = []int{200, 201, 202, 204, 403, 429, 502, 503, 504}

// rejectReasons label longlink_upstream_rejected_total.
var rejectReasons = []string{rejInflight, RejectRate, RejectRooms, "timeout", "unreachable", "status", "not_json", "too_large", "shutdown"}

func newBizMetrics(set *metrics.Set, b *Biz) bizMetrics {
	l := `business="` + b.Name + `"`
	m := bizMetrics{
		requests:    set.NewCounter(`longlink_upstream_requests_total{` + l + `}`),
		duration:    promhist.New(set, "longlink_upstream_duration_seconds", l, promhist.DefaultBuckets),
		replies:     make(map[int]*metrics.Counter, len(replyStatuses)),
		other2xx:    set.NewCounter(`longlink_upstream_replies_total{` + l + `,status="2xx"}`),
		reject:      make(map[string]*metrics.Counter, len(rejectReasons)),
		hookAllowed: set.NewCounter(`longlink_upstream_subscribe_hook_total{` + l + `,result="allowed"}`),
		hookRefused: set.NewCounter(`longlink_upstream_subscribe_hook_total{` + l + `,result="refused"}`),
		hookFailed:  set.NewCounter(`longlink_upstream_subscribe_hook_total{` + l + `,result="failed"}`),
	}
	for _, st := range replyStatuses {
		m.replies[st] = set.NewCounter(`longlink_upstream_replies_total{` + l + `,status="` + strconv.Itoa(st) + `"}`)
	}
	for _, r := range rejectReasons {
		m.reject[r] = set.NewCounter(`longlink_upstream_rejected_total{` + l + `,reason="` + r + `"}`)
	}
	set.NewGauge(`longlink_upstream_inflight{`+l+`}`, func() float64 { return float64(b.slots.n.Load()) })
	return m
}

func (m *bizMetrics) reply(status int) {
	if c := m.replies[status]; c != nil {
		c.Inc()
	} else if status >= 200 && status < 300 {
		m.other2xx.Inc()
	}
}

func (m *bizMetrics) rejected(reason string) {
	if c := m.reject[reason]; c != nil {
		c.Inc()
	}
}

// ClientMetrics count client requests across businesses, for the node to update.
type ClientMetrics struct {
	// RateLimited counts requests answered 429 by the client's own limit, by type.
	RateLimitedSend, RateLimitedSubscribe, RateLimitedUnsubscribe *metrics.Counter
	// UnknownBusiness counts sends and subscribes naming a business not configured.
	UnknownBusiness *metrics.Counter
	// Subscribes by result; Unsubscribes by result.
	SubscribeToken, SubscribeHook, SubscribeAlready, SubscribeRefused, SubscribeLimit,
	SubscribeBad, SubscribeFailed, SubscribeBusy *metrics.Counter
	UnsubscribeLeft, UnsubscribeNotIn *metrics.Counter
}

func newClientMetrics(set *metrics.Set, u *Upstream) *ClientMetrics {
	sub := func(r string) *metrics.Counter {
		return set.NewCounter(`longlink_client_subscribes_total{result="` + r + `"}`)
	}
	set.NewGauge(`longlink_client_subscribes_inflight`, func() float64 { return float64(u.rooms.n.Load()) })
	return &ClientMetrics{
		RateLimitedSend:        set.NewCounter(`longlink_client_rate_limited_total{type="send"}`),
		RateLimitedSubscribe:   set.NewCounter(`longlink_client_rate_limited_total{type="subscribe"}`),
		RateLimitedUnsubscribe: set.NewCounter(`longlink_client_rate_limited_total{type="unsubscribe"}`),
		UnknownBusiness:        set.NewCounter(`longlink_upstream_unknown_business_total`),
		SubscribeToken:         sub("token"),
		SubscribeHook:          sub("hook"),
		SubscribeAlready:       sub("already"),
		SubscribeRefused:       sub("refused"),
		SubscribeLimit:         sub("limit"),
		SubscribeBad:           sub("bad_request"),
		SubscribeFailed:        sub("failed"),
		SubscribeBusy:          sub("busy"),
		UnsubscribeLeft:        set.NewCounter(`longlink_client_unsubscribes_total{result="left"}`),
		UnsubscribeNotIn:       set.NewCounter(`longlink_client_unsubscribes_total{result="not_subscribed"}`),
	}
}
