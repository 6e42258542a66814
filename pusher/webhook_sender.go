package pusher

import (
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"longlink/webhook"
)

// Defaults of the Pusher webhooks' delivery that differ from webhook.Defaults.
const (
	// DefaultWebhookRetryWindow is how long a batch is retried: Pusher's five
	// minutes.
	DefaultWebhookRetryWindow = 5 * time.Minute
	// DefaultWebhookQueueBytes bounds what waits for one app's URL, in bytes of
	// its events' strings (client events carry client data: the count bound alone
	// would let 10000 events of 10 KB wait per URL).
	DefaultWebhookQueueBytes = 16 << 20
)

// webhookEventOverhead is what an event weighs beyond its strings: its struct in
// the queue's buffer.
const webhookEventOverhead = 112

// WebhookConfig configures a WebhookSender.
type WebhookConfig struct {
	// Apps whose webhooks are sent: each app's Webhooks, WebhookEvents, Key and
	// Secret. Apps without webhooks cost nothing.
	Apps []App
	// Delivery holds the queue, batching, retry and shutdown bounds of each app's
	// URLs (each URL of each app has its own queue of QueueSize events and
	// QueueBytes bytes), the Client, Metrics and Logger. URLs, Events, Secret and
	// NodeName are ignored: they come from each App, so the node's --webhook-*
	// settings may be passed as they are. Zero fields take webhook.Defaults, but
	// RetryWindow (DefaultWebhookRetryWindow) and QueueBytes
	// (DefaultWebhookQueueBytes).
	Delivery webhook.Config
}

// WebhookSender sends the Pusher-format webhooks of every app (docs/pusher.md,
// "Webhooks"): for each app and each of its URLs, one webhook.Dispatcher queue,
// batching, signing with that app's secret and retrying; an app's events never go
// to another app's URLs.
//
// Who owns what: the app table is built by NewWebhookSender and read-only after,
// so Emit and Wants run on any goroutine (event loops included) without a lock,
// and never block. Each URL's goroutine (package webhook) owns its batch.
// Metrics are created by NewWebhookSender. A nil *WebhookSender (no app has
// webhooks) does nothing.
type WebhookSender struct {
	apps  map[string]*appWebhooks
	flush time.Duration // Close's bound
}

// appWebhooks is one app's dispatcher and counters; it is the dispatcher's
// webhook.Format. Read-only after construction but for the counters.
type appWebhooks struct {
	key    string
	secret string
	events WebhookEventSet
	d      *webhook.Dispatcher[WebhookEvent]
	counts [numWebhookEvents][webhook.NumOutcomes]*metrics.Counter
}

// NewWebhookSender validates cfg and starts one goroutine per app and URL. With
// no app having a webhook URL it returns a nil *WebhookSender.
func NewWebhookSender(cfg WebhookConfig) (*WebhookSender, error) {
	if err := CheckApps(cfg.Apps); err != nil {
		return nil, err
	}
	dc := cfg.Delivery
	dc.URLs, dc.Events, dc.Secret, dc.NodeName = nil, nil, nil, ""
	if dc.RetryWindow == 0 {
		dc.RetryWindow = DefaultWebhookRetryWindow
	}
	if dc.QueueBytes == 0 {
		dc.QueueBytes = DefaultWebhookQueueBytes
	}
	if dc.Metrics == nil {
		dc.Metrics = metrics.NewSet()
	}
	if dc.Logger == nil {
		dc.Logger = slog.Default()
	}
	s := &WebhookSender{apps: map[string]*appWebhooks{}, flush: dc.FlushTimeout}
	if s.flush == 0 {
		s.flush = webhook.Defaults().FlushTimeout
	}
	for i := range cfg.Apps {
		app := &cfg.Apps[i]
		urls := app.WebhookURLs()
		if len(urls) == 0 {
			continue
		}
		a := &appWebhooks{key: app.Key, secret: app.Secret, events: app.WebhookEvents}
		if a.events == 0 {
			a.events = DefaultWebhookEvents
		}
		label := "app=" + strconv.Quote(app.ID)
		for e, name := range WebhookEventNames {
			for o := range webhook.NumOutcomes {
				a.counts[e][o] = dc.Metrics.NewCounter(fmt.Sprintf(`longlink_pusher_webhook_events_total{%s,event=%q,outcome=%q}`, label, name, o.String()))
			}
		}
		c := dc
		c.URLs = urls
		c.Logger = dc.Logger.With("pusher_app", app.ID)
		d, err := webhook.NewDispatcher(webhook.DispatcherConfig[WebhookEvent]{
			Config: c, Format: a, MetricPrefix: "longlink_pusher_webhook", MetricLabels: label,
		})
		if err != nil {
			s.Shutdown(0)
			return nil, fmt.Errorf("pusher: app %s webhooks: %w", app.ID, err)
		}
		a.d = d
		s.apps[app.ID] = a
	}
	if len(s.apps) == 0 {
		return nil, nil
	}
	return s, nil
}

// Wants reports whether app appID sends webhook events named name: false for an
// app without webhooks, an unselected event or a nil sender. The node may skip
// the work of an event nobody wants.
func (s *WebhookSender) Wants(appID, name string) bool {
	if s == nil {
		return false
	}
	a := s.apps[appID]
	return a != nil && a.events.Has(name)
}

// Emit queues ev for every webhook URL of app appID. It never blocks: a URL whose
// queue is full (WebhookConfig.Delivery's QueueSize events or QueueBytes bytes)
// drops its copy, and after Close every copy is dropped, each counted in
// longlink_pusher_webhook_events_total. An event of an app without webhooks, not
// selected by the app's webhook-events, or with an unknown name is ignored. ev's
// strings are kept until delivered (WebhookEvent).
func (s *WebhookSender) Emit(appID string, ev WebhookEvent) {
	if s == nil {
		return
	}
	a := s.apps[appID]
	if a == nil || !a.events.Has(ev.Name) {
		return
	}
	a.d.Offer(ev)
}

// Close stops taking events and sends what is queued for up to the delivery's
// FlushTimeout, every app's URLs at once; what is left then is dropped and
// counted (dropped_shutdown).
func (s *WebhookSender) Close() {
	if s == nil {
		return
	}
	s.shutdown(s.flush)
}

// Shutdown is Close with its own bound; 0 drops everything queued at once.
func (s *WebhookSender) Shutdown(flush time.Duration) {
	if s != nil {
		s.shutdown(flush)
	}
}

func (s *WebhookSender) shutdown(flush time.Duration) {
	var wg sync.WaitGroup
	for _, a := range s.apps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.d.Shutdown(flush)
		}()
	}
	wg.Wait()
}

// Encode makes the body of one POST; its tag is the signature, the same on every
// attempt, as the body is.
func (a *appWebhooks) Encode(batch []WebhookEvent) ([]byte, string) {
	n := 32
	for i := range batch {
		n += 96 + a.Size(batch[i]) - webhookEventOverhead
	}
	body := AppendWebhookBody(make([]byte, 0, n), time.Now().UnixMilli(), batch)
	return body, SignWebhook(a.secret, body)
}

func (a *appWebhooks) Header(h http.Header, _ []byte, sig string, _ int) {
	h.Set(HeaderPusherKey, a.key)
	h.Set(HeaderPusherSignature, sig)
}

func (a *appWebhooks) Count(ev WebhookEvent, o webhook.Outcome, n int) {
	if i := webhookEventIndex(ev.Name); i >= 0 {
		a.counts[i][o].Add(n)
	}
}

func (a *appWebhooks) Size(ev WebhookEvent) int {
	return webhookEventOverhead + len(ev.Name) + len(ev.Channel) + len(ev.UserID) + len(ev.Event) + len(ev.Data) + len(ev.SocketID)
}
