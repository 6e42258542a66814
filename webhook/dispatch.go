package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"longlink/promhist"
)

// The delivery loop, shared by every body format: one bounded queue and one
// goroutine per URL, batching, retries with jittered backoff within a window, a
// bounded flush on shutdown. Sender (longlink's own events) and Dispatcher (any
// other format, e.g. Pusher's, pusher/webhook_sender.go) are both a pool of
// receivers; what differs is a Format.

// Outcome is what became of one copy of an event (one per URL): the outcome label
// of the events counters.
type Outcome int

// Outcomes, in the order of their labels.
const (
	Delivered       Outcome = iota // the receiver answered 2xx
	DroppedOverflow                // its URL's queue was full (events or bytes)
	DroppedExpired                 // not delivered within RetryWindow
	DroppedShutdown                // still queued when the flush on shutdown ended, or offered after it
	NumOutcomes
)

var outcomeNames = [NumOutcomes]string{"delivered", "dropped_overflow", "dropped_expired", "dropped_shutdown"}

// String is the outcome's metric label.
func (o Outcome) String() string {
	if o < 0 || o >= NumOutcomes {
		return "unknown"
	}
	return outcomeNames[o]
}

// Format is how a Dispatcher puts batches of T on the wire and counts what became
// of them.
type Format[T any] interface {
	// Encode returns the body of one POST carrying batch (at least one event) and a
	// tag handed to Header with every attempt of it: a delivery id, a signature,
	// whatever is computed once per batch. Every attempt sends the same body. It
	// runs on the URL's goroutine; batch is reused once the batch is done, so the
	// body must not alias it.
	Encode(batch []T) (body []byte, tag string)
	// Header sets the headers of one attempt (attempt counts from 1). Content-Type
	// application/json and User-Agent longlink-webhook are set before it.
	Header(h http.Header, body []byte, tag string, attempt int)
	// Count records that n copies of v had outcome o. It is called from the
	// offering goroutine (overflow, shutdown) and the URLs' goroutines at once:
	// it must be safe for concurrent use and must not block.
	Count(v T, o Outcome, n int)
	// Size is what v weighs against Config.QueueBytes; return 0 to bound events
	// by count only.
	Size(v T) int
}

// DispatcherConfig configures a Dispatcher: the delivery settings of Config and
// the format.
type DispatcherConfig[T any] struct {
	// Config gives the URLs and the queue, batching, retry and shutdown bounds,
	// the Client, Metrics and Logger, with the same defaults as for a Sender.
	// Events, Secret and NodeName belong to Sender's own format and must be empty.
	Config
	// Format encodes, signs and counts. Required.
	Format Format[T]
	// MetricPrefix names the per-URL metrics: <prefix>_requests_total{class},
	// _retries_total, _request_duration_seconds and _queue_length, each with a
	// receiver label (the URL's position in URLs), and <prefix>_queue_capacity.
	// Empty: "longlink_webhook", Sender's names (two of them cannot share a Set).
	MetricPrefix string
	// MetricLabels go first in each of those metrics' labels, e.g. `app="1"`, so
	// that several Dispatchers can share a Set. They must be valid Prometheus
	// label pairs.
	MetricLabels string
}

// Dispatcher posts batches of T to every URL of its Config, as Sender does with
// its own events: the same queues, batching, retries, metrics and shutdown, in
// the body and headers its Format makes. A nil *Dispatcher does nothing.
type Dispatcher[T any] struct {
	pool[T]
}

// NewDispatcher validates cfg and starts one goroutine per URL. With no URLs it
// returns a nil *Dispatcher, whose methods do nothing.
func NewDispatcher[T any](cfg DispatcherConfig[T]) (*Dispatcher[T], error) {
	if cfg.Format == nil {
		return nil, errors.New("webhook: DispatcherConfig.Format is required")
	}
	if len(cfg.Events) > 0 || len(cfg.Secret) > 0 || cfg.NodeName != "" {
		return nil, errors.New("webhook: Events, Secret and NodeName are the native format's: a Dispatcher's Format signs and selects")
	}
	c, err := cfg.Config.withDefaults(false)
	if err != nil {
		return nil, err
	}
	if len(c.URLs) == 0 {
		return nil, nil
	}
	d := &Dispatcher[T]{}
	d.init(c, cfg.Format, cfg.MetricPrefix, cfg.MetricLabels)
	return d, nil
}

// Offer queues v for every URL. It never blocks: a URL whose queue is full (in
// events or in bytes) drops its copy, and after Close every copy is dropped; each
// loss goes to Format.Count. Any goroutine may call it.
func (d *Dispatcher[T]) Offer(v T) {
	if d != nil {
		d.offer(v)
	}
}

// Close stops taking events and sends what is queued for up to FlushTimeout; what
// is left then is dropped and counted (DroppedShutdown).
func (d *Dispatcher[T]) Close() {
	if d != nil {
		d.shutdown(d.cfg.FlushTimeout)
	}
}

// Shutdown is Close with its own bound; 0 drops everything queued at once.
func (d *Dispatcher[T]) Shutdown(flush time.Duration) {
	if d != nil {
		d.shutdown(flush)
	}
}

// pool is the receivers of one Sender or Dispatcher and their common lifetime.
// Its fields are set by init and read-only after, but for the atomics and what
// each receiver's goroutine owns.
type pool[T any] struct {
	cfg  Config
	f    Format[T]
	recv []*receiver[T]

	closed    atomic.Bool
	stop      chan struct{}   // closed by shutdown: flush what is queued, then exit
	hard      context.Context // cancelled when the flush time is up
	cancel    context.CancelFunc
	closeOnce sync.Once
	wg        sync.WaitGroup
}

// receiver is one URL's queue and sender goroutine.
type receiver[T any] struct {
	p        *pool[T]
	url      string
	host     string // for logs: never the URL's path or query, which may hold a token
	q        chan T
	qbytes   atomic.Int64 // Format.Size of what is queued or in flight (QueueBytes)
	inflight atomic.Int64 // events of the batch being sent
	failing  bool         // owned by run: the last attempt failed (logged once)

	requests [5]*metrics.Counter // by classNames
	retries  *metrics.Counter
	latency  *promhist.Histogram
}

// Status classes of a POST, the class label of <prefix>_requests_total.
var classNames = []string{"2xx", "3xx", "4xx", "5xx", "error"}

// init creates the metrics and starts the goroutines; cfg has its defaults.
func (p *pool[T]) init(cfg Config, f Format[T], prefix, labels string) {
	if prefix == "" {
		prefix = "longlink_webhook"
	}
	if labels != "" {
		labels += ","
	}
	p.cfg, p.f, p.stop = cfg, f, make(chan struct{})
	p.hard, p.cancel = context.WithCancel(context.Background())
	for i, u := range cfg.URLs {
		pu, _ := url.Parse(u) // checked by withDefaults
		r := &receiver[T]{p: p, url: u, host: pu.Host, q: make(chan T, cfg.QueueSize)}
		lbl := fmt.Sprintf(`%sreceiver="%d"`, labels, i)
		for c, name := range classNames {
			r.requests[c] = cfg.Metrics.NewCounter(fmt.Sprintf(`%s_requests_total{%s,class=%q}`, prefix, lbl, name))
		}
		r.retries = cfg.Metrics.NewCounter(prefix + `_retries_total{` + lbl + `}`)
		r.latency = promhist.New(cfg.Metrics, prefix+"_request_duration_seconds", lbl, nil)
		cfg.Metrics.NewGauge(prefix+`_queue_length{`+lbl+`}`, func() float64 {
			return float64(len(r.q)) + float64(r.inflight.Load())
		})
		p.recv = append(p.recv, r)
	}
	capName := prefix + "_queue_capacity"
	if labels != "" {
		capName += "{" + labels[:len(labels)-1] + "}"
	}
	cfg.Metrics.NewGauge(capName, func() float64 { return float64(cfg.QueueSize) })
	p.wg.Add(len(p.recv))
	for _, r := range p.recv {
		go r.run()
	}
}

func (p *pool[T]) offer(v T) {
	if p.closed.Load() {
		p.f.Count(v, DroppedShutdown, len(p.recv))
		return
	}
	var size int64
	if p.cfg.QueueBytes > 0 {
		size = int64(p.f.Size(v))
	}
	for _, r := range p.recv {
		if size > 0 && r.qbytes.Add(size) > int64(p.cfg.QueueBytes) {
			r.qbytes.Add(-size)
			p.f.Count(v, DroppedOverflow, 1)
			continue
		}
		select {
		case r.q <- v:
		default:
			r.qbytes.Add(-size)
			p.f.Count(v, DroppedOverflow, 1)
		}
	}
}

func (p *pool[T]) shutdown(flush time.Duration) {
	p.closeOnce.Do(func() {
		p.closed.Store(true)
		close(p.stop)
		t := time.AfterFunc(flush, p.cancel)
		if flush <= 0 {
			p.cancel()
		}
		p.wg.Wait()
		t.Stop()
		p.cancel()
		// An offer that passed its closed check just before it was set may have
		// queued an event after its receiver exited: count it, not lose it.
		for _, r := range p.recv {
			r.dropQueued()
		}
	})
}

func (r *receiver[T]) stopped() bool {
	select {
	case <-r.p.stop:
		return true
	default:
		return false
	}
}

func (r *receiver[T]) run() {
	defer r.p.wg.Done()
	cfg := &r.p.cfg
	batch := make([]T, 0, cfg.BatchSize)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		batch = batch[:0]
		select {
		case e := <-r.q:
			batch = append(batch, e)
		case <-r.p.stop:
			select {
			case e := <-r.q:
				batch = append(batch, e)
			default:
				return // flushed
			}
		}
		if r.p.hard.Err() != nil {
			r.drop(batch, DroppedShutdown)
			r.dropQueued()
			return
		}
		// Gather more for up to BatchDelay (none when stopping: send at once).
		timer.Reset(cfg.BatchDelay)
	gather:
		for len(batch) < cfg.BatchSize {
			if r.stopped() {
				select {
				case e := <-r.q:
					batch = append(batch, e)
					continue
				default:
					break gather
				}
			}
			select {
			case e := <-r.q:
				batch = append(batch, e)
			case <-timer.C:
				break gather
			case <-r.p.stop:
			}
		}
		timer.Stop()
		r.inflight.Store(int64(len(batch)))
		r.send(batch)
		r.inflight.Store(0)
		clear(batch) // let the events' strings go
	}
}

// drop counts each event of batch with outcome o (Delivered included) and gives
// back its bytes.
func (r *receiver[T]) drop(batch []T, o Outcome) {
	var size int64
	for i := range batch {
		r.p.f.Count(batch[i], o, 1)
		if r.p.cfg.QueueBytes > 0 {
			size += int64(r.p.f.Size(batch[i]))
		}
	}
	r.qbytes.Add(-size)
}

func (r *receiver[T]) dropQueued() {
	for {
		select {
		case e := <-r.q:
			r.drop([]T{e}, DroppedShutdown)
		default:
			return
		}
	}
}

// send posts one batch until it is delivered, its retry window ends, or the flush
// time of a shutdown is up.
func (r *receiver[T]) send(batch []T) {
	p := r.p
	cfg := &p.cfg
	body, tag := p.f.Encode(batch)
	start := time.Now()
	for attempt := 1; ; attempt++ {
		if r.post(body, tag, attempt) {
			r.drop(batch, Delivered)
			if r.failing {
				r.failing = false
				cfg.Logger.Info("webhook receiver recovered", "host", r.host, "attempts", attempt)
			}
			return
		}
		if !r.failing {
			r.failing = true
			cfg.Logger.Warn("webhook receiver failing; retrying with backoff", "host", r.host, "window", cfg.RetryWindow)
		}
		wait := Backoff(cfg.MinBackoff, cfg.MaxBackoff, attempt)
		if time.Since(start)+wait > cfg.RetryWindow {
			r.drop(batch, DroppedExpired)
			return
		}
		r.retries.Inc()
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-p.hard.Done():
			t.Stop()
			r.drop(batch, DroppedShutdown)
			return
		}
	}
}

// Backoff is the wait before attempt+1: min doubled attempt-1 times, capped at max,
// then drawn uniformly from its upper half.
func Backoff(minB, maxB time.Duration, attempt int) time.Duration {
	d := minB
	for i := 1; i < attempt && d < maxB; i++ {
		d *= 2
	}
	d = min(d, maxB)
	half := d / 2
	if half <= 0 {
		return d
	}
	return half + time.Duration(mrand.Int64N(int64(half)+1))
}

// post makes one attempt and reports whether the receiver answered 2xx.
func (r *receiver[T]) post(body []byte, tag string, attempt int) bool {
	cfg := &r.p.cfg
	ctx, cancel := context.WithTimeout(r.p.hard, cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.url, bytes.NewReader(body))
	if err != nil {
		r.requests[4].Inc()
		return false
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "longlink-webhook")
	r.p.f.Header(req.Header, body, tag, attempt)
	start := time.Now()
	resp, err := cfg.Client.Do(req)
	if err != nil {
		r.latency.UpdateDuration(start)
		r.requests[4].Inc()
		return false
	}
	// Read a little of the answer so the connection can be reused; never all of it.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	r.latency.UpdateDuration(start)
	class := resp.StatusCode/100 - 2
	if class < 0 || class > 3 {
		class = 4
	}
	r.requests[class].Inc()
	return class == 0
}
