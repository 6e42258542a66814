package webhook

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"longlink/internal/hmacsig"
	"longlink/promhist"
)

// Outcomes of an event copy (one per URL), the outcome label of
// longlink_webhook_events_total.
const (
	outDelivered = iota
	outOverflow
	outExpired
	outShutdown
	nOutcomes
)

var outcomeNames = [nOutcomes]string{"delivered", "dropped_overflow", "dropped_expired", "dropped_shutdown"}

// Status classes of a POST, the class label of longlink_webhook_requests_total.
var classNames = []string{"2xx", "3xx", "4xx", "5xx", "error"}

// Sender posts events to the configured URLs: it implements Sink.
//
// Who owns what: Emit runs on any goroutine (event loops included) and only
// formats the event's id and offers it to each URL's channel without waiting. Each
// URL has one goroutine (receiver.run) that owns its batch and sends batches one
// at a time, so a URL sees events in the order they were emitted; a batch that
// fails is retried until it is delivered or its window ends before the next one
// goes. Metrics are created in New.
type Sender struct {
	cfg   Config
	wants [len5]bool
	recv  []*receiver

	idPrefix string // node name and a random part: ids are unique across restarts
	seq      atomic.Uint64

	closed    atomic.Bool
	stop      chan struct{}   // closed by Shutdown: flush what is queued, then exit
	hard      context.Context // cancelled when the flush time is up
	cancel    context.CancelFunc
	closeOnce sync.Once
	wg        sync.WaitGroup

	events [len5][nOutcomes]*metrics.Counter
}

const len5 = 5 // len(Types)

// receiver is one URL's queue and sender goroutine.
type receiver struct {
	s        *Sender
	url      string
	host     string // for logs: never the URL's path or query, which may hold a token
	q        chan Event
	inflight atomic.Int64 // events of the batch being sent
	failing  bool         // owned by run: the last attempt failed (logged once)

	requests [5]*metrics.Counter // by classNames
	retries  *metrics.Counter
	latency  *promhist.Histogram
}

// New validates cfg and starts one goroutine per URL. With no URLs it returns a
// nil *Sender, whose Emit does nothing: callers need no check.
func New(cfg Config) (*Sender, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if len(cfg.URLs) == 0 {
		return nil, nil
	}
	var rnd [4]byte
	rand.Read(rnd[:])
	s := &Sender{cfg: cfg, stop: make(chan struct{}), idPrefix: cfg.NodeName + "-" + hex.EncodeToString(rnd[:]) + "-"}
	if cfg.NodeName == "" {
		s.idPrefix = hex.EncodeToString(rnd[:]) + "-"
	}
	s.hard, s.cancel = context.WithCancel(context.Background())
	for i, t := range Types {
		for _, e := range cfg.Events {
			if e == t {
				s.wants[i] = true
			}
		}
		for o := range nOutcomes {
			s.events[i][o] = cfg.Metrics.NewCounter(fmt.Sprintf(`longlink_webhook_events_total{event=%q,outcome=%q}`, t, outcomeNames[o]))
		}
	}
	for i, u := range cfg.URLs {
		pu, _ := url.Parse(u) // checked by withDefaults
		r := &receiver{s: s, url: u, host: pu.Host, q: make(chan Event, cfg.QueueSize)}
		lbl := fmt.Sprintf(`receiver="%d"`, i)
		for c, name := range classNames {
			r.requests[c] = cfg.Metrics.NewCounter(fmt.Sprintf(`longlink_webhook_requests_total{%s,class=%q}`, lbl, name))
		}
		r.retries = cfg.Metrics.NewCounter(`longlink_webhook_retries_total{` + lbl + `}`)
		r.latency = promhist.New(cfg.Metrics, "longlink_webhook_request_duration_seconds", lbl, nil)
		cfg.Metrics.NewGauge(`longlink_webhook_queue_length{`+lbl+`}`, func() float64 {
			return float64(len(r.q)) + float64(r.inflight.Load())
		})
		s.recv = append(s.recv, r)
	}
	cfg.Metrics.NewGauge(`longlink_webhook_queue_capacity`, func() float64 { return float64(cfg.QueueSize) })
	s.wg.Add(len(s.recv))
	for _, r := range s.recv {
		go r.run()
	}
	return s, nil
}

func typeIndex(t string) int {
	switch t {
	case ConnectionOpened:
		return 0
	case ConnectionClosed:
		return 1
	case UserOnline:
		return 2
	case UserOffline:
		return 3
	case MessageExpired:
		return 4
	}
	return -1
}

// Wants reports whether events of type t are sent (Config.Events). A nil Sender
// wants none: the hub then does no presence work at all.
func (s *Sender) Wants(t string) bool {
	if s == nil {
		return false
	}
	i := typeIndex(t)
	return i >= 0 && s.wants[i]
}

// Emit queues e for every URL. It never blocks: a URL whose queue is full drops
// its copy and counts it (dropped_overflow). It fills e.ID and e.Time when empty.
// An event of a type not selected, or an unknown type, is ignored.
func (s *Sender) Emit(e Event) {
	if s == nil {
		return
	}
	i := typeIndex(e.Type)
	if i < 0 || !s.wants[i] {
		return
	}
	if e.ID == "" {
		e.ID = s.NewID()
	}
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	if s.closed.Load() {
		s.events[i][outShutdown].Add(len(s.recv))
		return
	}
	for _, r := range s.recv {
		select {
		case r.q <- e:
		default:
			s.events[i][outOverflow].Inc()
		}
	}
}

// NewID returns a new event id: unique across the cluster and the node's restarts.
func (s *Sender) NewID() string {
	return s.idPrefix + strconv.FormatUint(s.seq.Add(1), 36)
}

// Close stops taking events and sends what is queued for up to FlushTimeout; what
// is left then is dropped and counted (dropped_shutdown).
func (s *Sender) Close() { s.Shutdown(s.cfgFlush()) }

func (s *Sender) cfgFlush() time.Duration {
	if s == nil {
		return 0
	}
	return s.cfg.FlushTimeout
}

// Shutdown is Close with its own bound; 0 drops everything queued at once (a node
// that is killed).
func (s *Sender) Shutdown(flush time.Duration) {
	if s == nil {
		return
	}
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		close(s.stop)
		t := time.AfterFunc(flush, s.cancel)
		if flush <= 0 {
			s.cancel()
		}
		s.wg.Wait()
		t.Stop()
		s.cancel()
	})
}

// batchBody is the JSON of one POST.
type batchBody struct {
	Delivery string  `json:"delivery"`
	Node     string  `json:"node,omitempty"`
	Events   []Event `json:"events"`
}

func (r *receiver) stopped() bool {
	select {
	case <-r.s.stop:
		return true
	default:
		return false
	}
}

func (r *receiver) run() {
	defer r.s.wg.Done()
	cfg := &r.s.cfg
	batch := make([]Event, 0, cfg.BatchSize)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		batch = batch[:0]
		select {
		case e := <-r.q:
			batch = append(batch, e)
		case <-r.s.stop:
			select {
			case e := <-r.q:
				batch = append(batch, e)
			default:
				return // flushed
			}
		}
		if r.s.hard.Err() != nil {
			r.drop(batch, outShutdown)
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
			case <-r.s.stop:
			}
		}
		timer.Stop()
		r.inflight.Store(int64(len(batch)))
		r.send(batch)
		r.inflight.Store(0)
		clear(batch) // let the events' strings go
	}
}

func (r *receiver) drop(batch []Event, outcome int) {
	for i := range batch {
		if t := typeIndex(batch[i].Type); t >= 0 {
			r.s.events[t][outcome].Inc()
		}
	}
}

func (r *receiver) dropQueued() {
	for {
		select {
		case e := <-r.q:
			r.drop([]Event{e}, outShutdown)
		default:
			return
		}
	}
}

// send posts one batch until it is delivered, its retry window ends, or the flush
// time of a shutdown is up.
func (r *receiver) send(batch []Event) {
	s := r.s
	cfg := &s.cfg
	id := s.NewID()
	body, err := json.Marshal(batchBody{Delivery: id, Node: cfg.NodeName, Events: batch})
	if err != nil {
		panic("BUG: webhook: cannot encode a batch: " + err.Error())
	}
	sig := Sign(cfg.Secret, body)
	start := time.Now()
	for attempt := 1; ; attempt++ {
		if r.post(body, sig, id, attempt) {
			r.drop(batch, outDelivered) // counted as delivered
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
			r.drop(batch, outExpired)
			return
		}
		r.retries.Inc()
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-s.hard.Done():
			t.Stop()
			r.drop(batch, outShutdown)
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
func (r *receiver) post(body []byte, sig, id string, attempt int) bool {
	cfg := &r.s.cfg
	ctx, cancel := context.WithTimeout(r.s.hard, cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.url, bytes.NewReader(body))
	if err != nil {
		r.requests[4].Inc()
		return false
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "longlink-webhook")
	req.Header.Set(HeaderSignature, sig)
	req.Header.Set(HeaderDelivery, id)
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(time.Now().Unix(), 10))
	req.Header.Set(HeaderAttempt, strconv.Itoa(attempt))
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

// Sign returns the HeaderSignature value of body under secret: what a receiver
// computes to check a POST.
func Sign(secret, body []byte) string { return hmacsig.Sign(secret, body) }
