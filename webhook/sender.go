package webhook

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"longlink/internal/hmacsig"
)

// Sender posts events to the configured URLs: it implements Sink.
//
// Who owns what: Emit runs on any goroutine (event loops included) and only
// formats the event's id and offers it to each URL's channel without waiting. Each
// URL has one goroutine (receiver.run, dispatch.go) that owns its batch and sends
// batches one at a time, so a URL sees events in the order they were emitted; a
// batch that fails is retried until it is delivered or its window ends before the
// next one goes. Metrics are created in New.
type Sender struct {
	pool[Event]
	wants [len5]bool

	idPrefix string // node name and a random part: ids are unique across restarts
	seq      atomic.Uint64

	events [len5][NumOutcomes]*metrics.Counter
}

const len5 = 5 // len(Types)

// New validates cfg and starts one goroutine per URL. With no URLs it returns a
// nil *Sender, whose Emit does nothing: callers need no check.
func New(cfg Config) (*Sender, error) {
	cfg, err := cfg.withDefaults(true)
	if err != nil {
		return nil, err
	}
	if len(cfg.URLs) == 0 {
		return nil, nil
	}
	var rnd [4]byte
	rand.Read(rnd[:])
	s := &Sender{idPrefix: cfg.NodeName + "-" + hex.EncodeToString(rnd[:]) + "-"}
	if cfg.NodeName == "" {
		s.idPrefix = hex.EncodeToString(rnd[:]) + "-"
	}
	for i, t := range Types {
		for _, e := range cfg.Events {
			if e == t {
				s.wants[i] = true
			}
		}
		for o := range NumOutcomes {
			s.events[i][o] = cfg.Metrics.NewCounter(fmt.Sprintf(`longlink_webhook_events_total{event=%q,outcome=%q}`, t, outcomeNames[o]))
		}
	}
	s.init(cfg, nativeFormat{s}, "", "")
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
	s.offer(e)
}

// NewID returns a new event id: unique across the cluster and the node's restarts.
func (s *Sender) NewID() string {
	return s.idPrefix + strconv.FormatUint(s.seq.Add(1), 36)
}

// Close stops taking events and sends what is queued for up to FlushTimeout; what
// is left then is dropped and counted (dropped_shutdown).
func (s *Sender) Close() {
	if s != nil {
		s.shutdown(s.cfg.FlushTimeout)
	}
}

// Shutdown is Close with its own bound; 0 drops everything queued at once (a node
// that is killed).
func (s *Sender) Shutdown(flush time.Duration) {
	if s != nil {
		s.shutdown(flush)
	}
}

// batchBody is the JSON of one POST.
type batchBody struct {
	Delivery string  `json:"delivery"`
	Node     string  `json:"node,omitempty"`
	Events   []Event `json:"events"`
}

// nativeFormat is longlink's own body and headers (docs/api.md, "Webhooks").
type nativeFormat struct{ s *Sender }

// Encode gives each batch a delivery id, the same on every retry of it.
func (f nativeFormat) Encode(batch []Event) ([]byte, string) {
	id := f.s.NewID()
	body, err := json.Marshal(batchBody{Delivery: id, Node: f.s.cfg.NodeName, Events: batch})
	if err != nil {
		panic("BUG: webhook: cannot encode a batch: " + err.Error())
	}
	return body, id
}

func (f nativeFormat) Header(h http.Header, body []byte, id string, attempt int) {
	h.Set(HeaderSignature, Sign(f.s.cfg.Secret, body))
	h.Set(HeaderDelivery, id)
	h.Set(HeaderTimestamp, strconv.FormatInt(time.Now().Unix(), 10))
	h.Set(HeaderAttempt, strconv.Itoa(attempt))
}

func (f nativeFormat) Count(e Event, o Outcome, n int) {
	if t := typeIndex(e.Type); t >= 0 {
		f.s.events[t][o].Add(n)
	}
}

// Size is 0: longlink's events are small and bounded by count (QueueSize).
func (nativeFormat) Size(Event) int { return 0 }

// Sign returns the HeaderSignature value of body under secret: what a receiver
// computes to check a POST.
func Sign(secret, body []byte) string { return hmacsig.Sign(secret, body) }
