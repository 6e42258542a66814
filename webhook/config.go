package webhook

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// Event types (docs/api.md, "Webhooks").
const (
	ConnectionOpened = "connection.opened"
	ConnectionClosed = "connection.closed"
	UserOnline       = "user.online"
	UserOffline      = "user.offline"
	MessageExpired   = "message.expired"
)

// Types lists every event type, in the order docs/api.md describes them.
var Types = []string{ConnectionOpened, ConnectionClosed, UserOnline, UserOffline, MessageExpired}

// Headers of every POST.
const (
	// HeaderSignature is "sha256=" and the hex HMAC-SHA256 of the exact body under
	// Config.Secret.
	HeaderSignature = "X-Longlink-Signature"
	// HeaderDelivery is the batch's id, the same on every retry of that batch.
	HeaderDelivery = "X-Longlink-Delivery"
	// HeaderTimestamp is when this attempt was sent, Unix seconds.
	HeaderTimestamp = "X-Longlink-Timestamp"
	// HeaderAttempt counts the attempts of this batch, from 1.
	HeaderAttempt = "X-Longlink-Attempt"
)

// Config configures a Sender. Zero values take the defaults Defaults shows; that
// function is the one place they are written.
type Config struct {
	// URLs receive every selected event, each its own copy from its own queue, so a
	// failing receiver never delays another. Empty: no webhooks (New returns nil).
	URLs []string
	// Events selects the event types sent (Types). Empty: all of them. An unknown
	// name is an error.
	Events []string
	// Secret signs every body (HeaderSignature). Required when URLs is set.
	Secret []byte
	// NodeName goes into every batch ("node") and into delivery ids.
	NodeName string

	// QueueSize bounds the events waiting for one URL (the batch being sent
	// included); an event that finds its URL's queue full is dropped and counted
	// (outcome dropped_overflow). Zero means 10000.
	QueueSize int
	// QueueBytes bounds, in the Format's sizes, what waits for one URL (the batch
	// being sent included); an event that would pass it is dropped like one that
	// finds the queue full. Zero means no bound but QueueSize. Sender's own events
	// are small and weigh nothing: only a Dispatcher whose Format sizes its events
	// (e.g. Pusher client events, with client data in them) uses it.
	QueueBytes int
	// BatchSize is the most events one POST carries. Zero means 100.
	BatchSize int
	// BatchDelay is how long a batch waits for more events after its first before it
	// is sent (it goes at once when it reaches BatchSize). Zero means 100ms.
	BatchDelay time.Duration
	// Timeout bounds one POST, connect to the end of the answer's headers. Zero
	// means 5s.
	Timeout time.Duration
	// RetryWindow is how long a batch is retried after its first attempt; past it
	// the batch is dropped and counted (dropped_expired). Zero means 10m; less than
	// 5m is refused by the flags (the issue asks for at least five minutes), not
	// here, so tests may use short windows.
	RetryWindow time.Duration
	// MinBackoff and MaxBackoff bound the wait between attempts: it doubles from
	// MinBackoff up to MaxBackoff, and each wait is drawn from its upper half
	// (jitter), so receivers coming back from an outage are not hit in step. Zero
	// means 500ms and 30s.
	MinBackoff time.Duration
	MaxBackoff time.Duration
	// FlushTimeout bounds Close: how long it keeps sending what is queued (without
	// new retries past it). Zero means 5s.
	FlushTimeout time.Duration

	// Client sends the POSTs. Nil: a client of its own (no redirects followed: a
	// 3xx is a failure and is retried).
	Client *http.Client
	// Metrics receives the sender's metrics. Nil: a new private set.
	Metrics *metrics.Set
	// Logger receives a warning when a receiver starts failing and when it recovers.
	// Nil: slog.Default().
	Logger *slog.Logger
}

// Defaults returns the values zero fields of a Config stand for.
func Defaults() Config {
	return Config{
		QueueSize:    10000,
		BatchSize:    100,
		BatchDelay:   100 * time.Millisecond,
		Timeout:      5 * time.Second,
		RetryWindow:  10 * time.Minute,
		MinBackoff:   500 * time.Millisecond,
		MaxBackoff:   30 * time.Second,
		FlushTimeout: 5 * time.Second,
	}
}

// MinRetryWindow is the shortest retry window the flags accept.
const MinRetryWindow = 5 * time.Minute

// ParseEvents parses a comma-separated list of event types, refusing an unknown
// one by name. "" and "all" mean every type.
func ParseEvents(s string) ([]string, error) {
	var out []string
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		switch {
		case p == "":
		case p == "all":
			return slices.Clone(Types), nil
		case !slices.Contains(Types, p):
			return nil, fmt.Errorf("unknown webhook event %q (known: %s)", p, strings.Join(Types, ", "))
		case !slices.Contains(out, p):
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		return slices.Clone(Types), nil
	}
	return out, nil
}

// withDefaults validates cfg and fills its zero fields. native checks what only
// Sender's own format uses (Events, Secret).
func (cfg Config) withDefaults(native bool) (Config, error) {
	d := Defaults()
	var errs []error
	for _, u := range cfg.URLs {
		pu, err := url.Parse(u)
		if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
			errs = append(errs, fmt.Errorf("webhook: URL %q: want an absolute http:// or https:// URL", u))
		}
	}
	for _, e := range cfg.Events {
		if native && !slices.Contains(Types, e) {
			errs = append(errs, fmt.Errorf("webhook: unknown event %q in Events (known: %s)", e, strings.Join(Types, ", ")))
		}
	}
	if native && len(cfg.URLs) > 0 && len(cfg.Secret) == 0 {
		errs = append(errs, errors.New("webhook: Secret is required when URLs are set: receivers check the signature"))
	}
	neg := func(name string, v int64) {
		if v < 0 {
			errs = append(errs, fmt.Errorf("webhook: %s %d must not be negative", name, v))
		}
	}
	neg("QueueSize", int64(cfg.QueueSize))
	neg("BatchSize", int64(cfg.BatchSize))
	neg("QueueBytes", int64(cfg.QueueBytes))
	for name, v := range map[string]time.Duration{"BatchDelay": cfg.BatchDelay, "Timeout": cfg.Timeout, "RetryWindow": cfg.RetryWindow,
		"MinBackoff": cfg.MinBackoff, "MaxBackoff": cfg.MaxBackoff, "FlushTimeout": cfg.FlushTimeout} {
		if v < 0 {
			errs = append(errs, fmt.Errorf("webhook: %s %v must not be negative", name, v))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return cfg, err
	}
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	defD := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	def(&cfg.QueueSize, d.QueueSize)
	def(&cfg.BatchSize, d.BatchSize)
	defD(&cfg.BatchDelay, d.BatchDelay)
	defD(&cfg.Timeout, d.Timeout)
	defD(&cfg.RetryWindow, d.RetryWindow)
	defD(&cfg.MinBackoff, d.MinBackoff)
	defD(&cfg.MaxBackoff, d.MaxBackoff)
	defD(&cfg.FlushTimeout, d.FlushTimeout)
	if cfg.MaxBackoff < cfg.MinBackoff {
		return cfg, fmt.Errorf("webhook: MaxBackoff %v is below MinBackoff %v", cfg.MaxBackoff, cfg.MinBackoff)
	}
	if native && len(cfg.Events) == 0 {
		cfg.Events = slices.Clone(Types)
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
			Transport: &http.Transport{
				Proxy:                 http.ProxyFromEnvironment,
				MaxIdleConnsPerHost:   4,
				IdleConnTimeout:       90 * time.Second,
				ResponseHeaderTimeout: cfg.Timeout,
				TLSHandshakeTimeout:   cfg.Timeout,
			},
		}
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.NewSet()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return cfg, nil
}
