package push

import (
	"fmt"
	"strconv"
	"sync/atomic"

	"github.com/VictoriaMetrics/metrics"

	"longlink/promhist"
)

// Reasons for longlink_push_errors_total.
const (
	reasonBadRequest = iota
	reasonUnauthorized
	reasonTooLarge
	reasonNotFound
	reasonHub
	numReasons
)

var reasonNames = [numReasons]string{"bad_request", "unauthorized", "too_large", "not_found", "hub"}

// apiMetrics holds every series the API updates, created once in New so the
// request path never formats a metric name.
type apiMetrics struct {
	pushesUser, pushesConn, pushesRoom, pushesAll *metrics.Counter
	recipients                                    *metrics.Counter
	bytes                                         *metrics.Counter
	errors                                        [numReasons]*metrics.Counter
}

func (m *apiMetrics) init(set *metrics.Set) {
	m.pushesUser = set.NewCounter(`longlink_pushes_total{target="user"}`)
	m.pushesConn = set.NewCounter(`longlink_pushes_total{target="connection"}`)
	m.pushesRoom = set.NewCounter(`longlink_pushes_total{target="room"}`)
	m.pushesAll = set.NewCounter(`longlink_pushes_total{target="all"}`)
	m.recipients = set.NewCounter(`longlink_push_recipients_total`)
	m.bytes = set.NewCounter(`longlink_push_bytes_total`)
	for i, name := range reasonNames {
		m.errors[i] = set.NewCounter(`longlink_push_errors_total{reason="` + name + `"}`)
	}
}

// countAccepted records one message handed to the hub.
func (m *apiMetrics) countAccepted(msg *Message) {
	if len(msg.To.Users) > 0 {
		m.pushesUser.Inc()
	}
	if len(msg.To.Connections) > 0 {
		m.pushesConn.Inc()
	}
	if len(msg.To.Rooms) > 0 {
		m.pushesRoom.Inc()
	}
	if msg.To.All {
		m.pushesAll.Inc()
	}
	m.bytes.Add(len(msg.Data))
}

// routeMetrics are the per-route series: request counts by status code and
// the duration histogram. One routeMetrics serves every method of a path
// template, since the route label is the template alone.
type routeMetrics struct {
	set   *metrics.Set
	label string // `route="/v1/users/{id}"`
	// codes caches the counter per status code. A fixed array of atomic
	// pointers instead of a sync.Map: a hit is one atomic load and no
	// allocation or hashing; a miss creates the series once.
	codes [600]atomic.Pointer[metrics.Counter]
	hist  *promhist.Histogram
}

func newRouteMetrics(set *metrics.Set, route string, precreate ...int) *routeMetrics {
	rm := &routeMetrics{set: set, label: `route=` + strconv.Quote(route)}
	rm.hist = promhist.New(set, "longlink_api_request_duration_seconds", rm.label, promhist.DefaultBuckets)
	for _, code := range precreate {
		rm.counter(code)
	}
	return rm
}

// counter returns the request counter for code, creating it on first use.
func (rm *routeMetrics) counter(code int) *metrics.Counter {
	if code < 100 || code >= len(rm.codes) {
		panic(fmt.Sprintf("BUG: HTTP status %d out of range", code))
	}
	if c := rm.codes[code].Load(); c != nil {
		return c
	}
	// GetOrCreateCounter makes concurrent first uses agree on one series.
	c := rm.set.GetOrCreateCounter(`longlink_api_requests_total{` + rm.label + `,code="` + strconv.Itoa(code) + `"}`)
	rm.codes[code].Store(c)
	return c
}
