package connhook

import (
	"github.com/VictoriaMetrics/metrics"

	"longlink/promhist"
)

// outcome is how one call ended; each has its counter from the start.
type outcome uint8

const (
	outcomeAllowed     outcome = iota // 200/204 with a valid answer
	outcomeRefused                    // 4xx
	outcomeTimeout                    // no answer within Timeout
	outcomeUnreachable                // connection refused, DNS, reset, ...
	outcomeServerError                // 5xx
	outcomeMalformed                  // an answer that is not the contract's
	outcomeOverloaded                 // MaxInFlight calls were already waiting
	outcomeCanceled                   // the client went away first
	numOutcomes
)

var outcomeNames = [numOutcomes]string{"allowed", "refused", "timeout", "unreachable", "server_error", "malformed", "overloaded", "canceled"}

func (o outcome) String() string { return outcomeNames[o] }

type hookMetrics struct {
	calls   [numOutcomes]*metrics.Counter
	latency *promhist.Histogram
}

func newHookMetrics(set *metrics.Set, h *Hook) *hookMetrics {
	m := &hookMetrics{}
	for i, name := range outcomeNames {
		m.calls[i] = set.NewCounter(`longlink_connect_hook_calls_total{outcome="` + name + `"}`)
	}
	m.latency = promhist.New(set, "longlink_connect_hook_duration_seconds", "", promhist.DefaultBuckets)
	set.NewGauge("longlink_connect_hook_inflight", func() float64 { return float64(h.inflight.Load()) })
	return m
}

func (m *hookMetrics) outcome(o outcome) { m.calls[o].Inc() }
