package pusher

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"longlink/webhook"
)

// hookPost is one POST a hookSink received, as it came.
type hookPost struct {
	Method string
	Header http.Header
	Body   []byte
}

// hookBody is the JSON of a Pusher webhook, decoded the plain way.
type hookBody struct {
	TimeMS *int64           `json:"time_ms"`
	Events []map[string]any `json:"events"`
}

// hookSink is a webhook receiver: it keeps every POST and answers fail (an HTTP
// status) while it is non-zero, then 200. stall, when set, holds every request
// until closed.
type hookSink struct {
	mu      sync.Mutex
	posts   []hookPost
	fail    atomic.Int32
	stall   chan struct{}
	arrived atomic.Int32 // requests received, stalled ones included
}

func (h *hookSink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	h.arrived.Add(1)
	if h.stall != nil {
		<-h.stall
	}
	h.mu.Lock()
	h.posts = append(h.posts, hookPost{r.Method, r.Header.Clone(), body})
	h.mu.Unlock()
	if code := h.fail.Load(); code != 0 {
		w.WriteHeader(int(code))
		return
	}
	w.WriteHeader(200)
}

func (h *hookSink) snapshot() []hookPost {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]hookPost(nil), h.posts...)
}

// events returns the events of posts, in order, failing on a POST that is not a
// well-formed Pusher webhook of app (checkHookPost).
func (h *hookSink) events(t *testing.T, app *App, posts []hookPost) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, p := range posts {
		checkHookPost(t, app, p)
		var b hookBody
		json.Unmarshal(p.Body, &b)
		out = append(out, b.Events...)
	}
	return out
}

// checkHookPost checks one POST is a Pusher webhook of app: method, headers,
// signature, body shape.
func checkHookPost(t *testing.T, app *App, p hookPost) {
	t.Helper()
	if p.Method != http.MethodPost {
		t.Fatalf("method %s", p.Method)
	}
	if ct := p.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q", ct)
	}
	if k := p.Header.Get("X-Pusher-Key"); k != app.Key {
		t.Fatalf("X-Pusher-Key %q, want %q (app %s)", k, app.Key, app.ID)
	}
	if sig := p.Header.Get("X-Pusher-Signature"); sig != SignWebhook(app.Secret, p.Body) {
		t.Fatalf("X-Pusher-Signature %q does not sign the body under app %s's secret", sig, app.ID)
	}
	var b hookBody
	if err := json.Unmarshal(p.Body, &b); err != nil || b.TimeMS == nil || len(b.Events) == 0 {
		t.Fatalf("body %s: %v", p.Body, err)
	}
	if d := time.Since(time.UnixMilli(*b.TimeMS)); d < 0 || d > time.Minute {
		t.Fatalf("time_ms %d is %v from now", *b.TimeMS, d)
	}
}

func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// series reads one series from set (0 when absent).
func series(set *metrics.Set, name string) float64 {
	var sb strings.Builder
	set.WritePrometheus(&sb)
	for _, line := range strings.Split(sb.String(), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			var f float64
			json.Unmarshal([]byte(v), &f)
			return f
		}
	}
	return 0
}

func hookApp(t *testing.T, spec string) App {
	t.Helper()
	a, err := ParseApp(spec)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// newHookSender builds a sender with short delays for apps.
func newHookSender(t *testing.T, mod func(*webhook.Config), apps ...App) (*WebhookSender, *metrics.Set) {
	t.Helper()
	set := metrics.NewSet()
	d := webhook.Config{Metrics: set, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), BatchDelay: 5 * time.Millisecond, MinBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond}
	if mod != nil {
		mod(&d)
	}
	s, err := NewWebhookSender(WebhookConfig{Apps: apps, Delivery: d})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(0) })
	return s, set
}

var sampleHookEvents = []WebhookEvent{
	{Name: WebhookChannelOccupied, Channel: "news"},
	{Name: WebhookMemberAdded, Channel: "presence-room", UserID: "u1"},
	{Name: WebhookClientEvent, Channel: "presence-room", Event: "client-typing", Data: `{"who":"u1","t":"a\"b\\c"}`, SocketID: "123.456", UserID: "u1"},
	{Name: WebhookClientEvent, Channel: "private-x", Event: "client-x", Data: "plain ü \x01", SocketID: "1.2"},
	{Name: WebhookMemberRemoved, Channel: "presence-room", UserID: "u1"},
	{Name: WebhookChannelVacated, Channel: "news"},
	{Name: WebhookSubscriptionCount, Channel: "news", SubscriptionCount: 7},
}

// sampleHookJSON is sampleHookEvents as Pusher documents each event's fields.
var sampleHookJSON = []map[string]any{
	{"name": "channel_occupied", "channel": "news"},
	{"name": "member_added", "channel": "presence-room", "user_id": "u1"},
	{"name": "client_event", "channel": "presence-room", "event": "client-typing", "data": `{"who":"u1","t":"a\"b\\c"}`, "socket_id": "123.456", "user_id": "u1"},
	{"name": "client_event", "channel": "private-x", "event": "client-x", "data": "plain ü \x01", "socket_id": "1.2"},
	{"name": "member_removed", "channel": "presence-room", "user_id": "u1"},
	{"name": "channel_vacated", "channel": "news"},
	{"name": "subscription_count", "channel": "news", "subscription_count": float64(7)},
}

func TestAppendWebhookBody(t *testing.T) {
	body := AppendWebhookBody(nil, 1327078148132, sampleHookEvents)
	var b hookBody
	if err := json.Unmarshal(body, &b); err != nil {
		t.Fatalf("%s: %v", body, err)
	}
	if *b.TimeMS != 1327078148132 || !reflect.DeepEqual(b.Events, sampleHookJSON) {
		t.Fatalf("decoded %d %v\nwant %v", *b.TimeMS, b.Events, sampleHookJSON)
	}
	// Invalid UTF-8 in data is replaced, so the body stays JSON.
	body = AppendWebhookBody(nil, 1, []WebhookEvent{{Name: WebhookClientEvent, Data: "\xff"}})
	if !json.Valid(body) || !strings.Contains(string(body), `"data":"\ufffd"`) {
		t.Fatalf("invalid UTF-8: %s", body)
	}
	buf := make([]byte, 0, 4096)
	if n := testing.AllocsPerRun(100, func() { buf = AppendWebhookBody(buf[:0], 1, sampleHookEvents) }); n != 0 {
		t.Errorf("AppendWebhookBody: %v allocs", n)
	}
}

func TestWebhookEventSet(t *testing.T) {
	var zero WebhookEventSet
	if zero.Has(WebhookSubscriptionCount) || !zero.Has(WebhookClientEvent) || zero.Has("bogus") {
		t.Errorf("zero set: %s", zero)
	}
	if got := DefaultWebhookEvents.String(); got != "channel_occupied|channel_vacated|member_added|member_removed|client_event" {
		t.Errorf("default %s", got)
	}
}

func TestParseAppWebhooks(t *testing.T) {
	a := hookApp(t, "1:k:s,webhook=https://hooks.example/p?a=b&c=%2C,client-events,webhook=http://127.0.0.1:9/x")
	if got := a.WebhookURLs(); !reflect.DeepEqual(got, []string{"https://hooks.example/p?a=b&c=%2C", "http://127.0.0.1:9/x"}) {
		t.Fatalf("URLs %q", got)
	}
	if a.WebhookEvents != 0 || !a.ClientEvents {
		t.Fatalf("%+v", a)
	}
	a = hookApp(t, "1:k:s,webhook=http://h/,webhook-events=member_added|member_removed|client_event")
	if a.WebhookEvents.String() != "member_added|member_removed|client_event" {
		t.Fatalf("events %s", a.WebhookEvents)
	}
	if b := hookApp(t, "1:k:s"); len(b.WebhookURLs()) != 0 || b != defaultAppWith("1", "k", "s") {
		t.Fatalf("no webhooks: %+v", b)
	}

	bad := func(spec, part string) {
		t.Helper()
		_, err := ParseApp(spec)
		if !errors.Is(err, ErrAppSpec) || !strings.Contains(err.Error(), part) {
			t.Errorf("ParseApp(%q) = %v, want an error naming %q", spec, err, part)
		}
	}
	bad("1:k:s,webhook=ftp://h/", "absolute http")
	bad("1:k:s,webhook=/relative", "absolute http")
	bad("1:k:s,webhook", "absolute http")
	bad("1:k:s,webhook=http://h/?a=1,b=2", "cannot hold ','")
	bad("1:k:s,webhook=http://h/,webhook=http://h/", "twice")
	bad("1:k:s,webhook=http://a/,webhook=http://b/,webhook=http://c/,webhook=http://d/,webhook=http://e/", "more than 4")
	bad("1:k:s,webhook=http://h/"+strings.Repeat("p", 2048), "at most 2048")
	bad("1:k:s,webhook=http://h/,webhook-events=member_added|channel_ocupied", `"channel_ocupied"`)
	bad("1:k:s,webhook=http://h/,webhook-events=", `unknown webhook event ""`)
	bad("1:k:s,webhook=http://h/,webhook-events=client_event,webhook-events=client_event", "twice")
	bad("1:k:s,webhook-events=client_event", "without a webhook=URL")
	// No node emits it (it needs the cluster-wide count of every change): selecting
	// it would be accepted and silently never sent.
	bad("1:k:s,webhook=http://h/,webhook-events=channel_occupied|subscription_count", "subscription_count webhooks are not sent")
}

// defaultAppWith is DefaultApp with credentials, for comparisons.
func defaultAppWith(id, key, secret string) App {
	a := DefaultApp()
	a.ID, a.Key, a.Secret = id, key, secret
	return a
}

// TestWebhookSenderDelivers: every event reaches the app's URL as a Pusher
// webhook (POST, headers, signature, time_ms, Pusher's event shapes), in order,
// batched up to BatchSize, and is counted as delivered.
func TestWebhookSenderDelivers(t *testing.T) {
	sink := &hookSink{}
	srv := httptest.NewServer(sink)
	defer srv.Close()
	app := hookApp(t, "7:key7:secret7,webhook="+srv.URL+"/hook,webhook-events=channel_occupied|channel_vacated|member_added|member_removed|client_event")
	app.WebhookEvents |= 1 << webhookEventIndex(WebhookSubscriptionCount) // the format, which no spec selects
	s, set := newHookSender(t, func(c *webhook.Config) { c.BatchSize = 3; c.BatchDelay = 50 * time.Millisecond }, app)
	for _, ev := range sampleHookEvents {
		s.Emit("7", ev)
	}
	waitUntil(t, 5*time.Second, "7 events", func() bool { return len(sink.events(t, &app, sink.snapshot())) == 7 })
	posts := sink.snapshot()
	if got := sink.events(t, &app, posts); !reflect.DeepEqual(got, sampleHookJSON) {
		t.Fatalf("got %v\nwant %v", got, sampleHookJSON)
	}
	if len(posts) != 3 {
		t.Errorf("%d POSTs for 7 events in batches of 3", len(posts))
	}
	want := map[string]float64{
		`longlink_pusher_webhook_events_total{app="7",event="client_event",outcome="delivered"}`:     2,
		`longlink_pusher_webhook_events_total{app="7",event="channel_occupied",outcome="delivered"}`: 1,
		`longlink_pusher_webhook_requests_total{app="7",receiver="0",class="2xx"}`:                   3,
		`longlink_pusher_webhook_queue_capacity{app="7"}`:                                            10000,
		`longlink_pusher_webhook_request_duration_seconds_count{app="7",receiver="0"}`:               3,
		`longlink_pusher_webhook_queue_length{app="7",receiver="0"}`:                                 0,
	}
	// The receiver has the last batch before the sender has read its answer and
	// counted it: wait for the counts (bounded), then report what differs.
	matches := func() bool {
		for name, w := range want {
			if series(set, name) != w {
				return false
			}
		}
		return true
	}
	for deadline := time.Now().Add(5 * time.Second); !matches() && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	for name, w := range want {
		if got := series(set, name); got != w {
			t.Errorf("%s = %v, want %v", name, got, w)
		}
	}
}

// TestWebhookSenderRetries: a receiver answering 500 gets the same batch again,
// with backoff, until it answers 2xx; every event arrives once, in order.
func TestWebhookSenderRetries(t *testing.T) {
	sink := &hookSink{}
	sink.fail.Store(500)
	srv := httptest.NewServer(sink)
	defer srv.Close()
	app := hookApp(t, "1:k1:s1,webhook="+srv.URL)
	s, set := newHookSender(t, func(c *webhook.Config) { c.BatchSize = 2 }, app)
	for i := range 6 {
		s.Emit("1", WebhookEvent{Name: WebhookMemberAdded, Channel: "presence-a", UserID: string(rune('a' + i))})
	}
	waitUntil(t, 5*time.Second, "5 failed attempts", func() bool { return len(sink.snapshot()) >= 5 })
	sink.fail.Store(0)
	waitUntil(t, 5*time.Second, "all delivered", func() bool {
		return series(set, `longlink_pusher_webhook_events_total{app="1",event="member_added",outcome="delivered"}`) == 6
	})
	// Each retry is the same batch: the same body, the same signature.
	posts := sink.snapshot()
	if !reflect.DeepEqual(posts[0].Body, posts[1].Body) || posts[0].Header.Get("X-Pusher-Signature") != posts[1].Header.Get("X-Pusher-Signature") {
		t.Errorf("a retry changed the batch: %s / %s", posts[0].Body, posts[1].Body)
	}
	// What was answered 200: the last attempt of each batch, in order.
	var users []string
	seen := map[string]bool{}
	for _, p := range posts {
		checkHookPost(t, &app, p)
		if seen[string(p.Body)] {
			continue
		}
		seen[string(p.Body)] = true
		var b hookBody
		json.Unmarshal(p.Body, &b)
		for _, e := range b.Events {
			users = append(users, e["user_id"].(string))
		}
	}
	if strings.Join(users, "") != "abcdef" {
		t.Fatalf("users in order of batches %q, want abcdef", users)
	}
	if series(set, `longlink_pusher_webhook_retries_total{app="1",receiver="0"}`) < 4 ||
		series(set, `longlink_pusher_webhook_requests_total{app="1",receiver="0",class="5xx"}`) < 5 {
		t.Error("retries or 5xx answers not counted")
	}
}

// TestWebhookSenderExpires: a batch not delivered within the retry window is
// dropped and counted; the next one goes.
func TestWebhookSenderExpires(t *testing.T) {
	sink := &hookSink{}
	sink.fail.Store(503)
	srv := httptest.NewServer(sink)
	defer srv.Close()
	app := hookApp(t, "1:k1:s1,webhook="+srv.URL)
	s, set := newHookSender(t, func(c *webhook.Config) { c.RetryWindow = 100 * time.Millisecond }, app)
	s.Emit("1", WebhookEvent{Name: WebhookChannelVacated, Channel: "gone"})
	waitUntil(t, 5*time.Second, "dropped_expired", func() bool {
		return series(set, `longlink_pusher_webhook_events_total{app="1",event="channel_vacated",outcome="dropped_expired"}`) == 1
	})
	sink.fail.Store(0)
	s.Emit("1", WebhookEvent{Name: WebhookChannelOccupied, Channel: "back"})
	waitUntil(t, 5*time.Second, "delivered", func() bool {
		return series(set, `longlink_pusher_webhook_events_total{app="1",event="channel_occupied",outcome="delivered"}`) == 1
	})
}

// TestWebhookSenderAppIsolation: two apps, each with its URL: an app's events go
// only to its own URL, signed with its own key and secret, and one app's stalled
// receiver does not delay the other's.
func TestWebhookSenderAppIsolation(t *testing.T) {
	sa, sb := &hookSink{stall: make(chan struct{})}, &hookSink{}
	srvA, srvB := httptest.NewServer(sa), httptest.NewServer(sb)
	defer srvA.Close()
	defer srvB.Close()
	appA := hookApp(t, "A:keyA:secretA,webhook="+srvA.URL)
	appB := hookApp(t, "B:keyB:secretB,webhook="+srvB.URL)
	quiet := hookApp(t, "C:keyC:secretC") // no webhooks
	s, set := newHookSender(t, nil, appA, appB, quiet)
	for i := range 5 {
		s.Emit("A", WebhookEvent{Name: WebhookChannelOccupied, Channel: "a-" + string(rune('0'+i))})
		s.Emit("B", WebhookEvent{Name: WebhookChannelOccupied, Channel: "b-" + string(rune('0'+i))})
		s.Emit("C", WebhookEvent{Name: WebhookChannelOccupied, Channel: "c"})
		s.Emit("nope", WebhookEvent{Name: WebhookChannelOccupied, Channel: "n"})
	}
	// B's receiver gets its five while A's is stalled.
	waitUntil(t, 5*time.Second, "B's events", func() bool { return len(sb.events(t, &appB, sb.snapshot())) == 5 })
	close(sa.stall)
	waitUntil(t, 5*time.Second, "A's events", func() bool { return len(sa.events(t, &appA, sa.snapshot())) == 5 })
	for _, tc := range []struct {
		sink   *hookSink
		app    *App
		prefix string
	}{{sa, &appA, "a-"}, {sb, &appB, "b-"}} {
		for _, e := range tc.sink.events(t, tc.app, tc.sink.snapshot()) {
			if !strings.HasPrefix(e["channel"].(string), tc.prefix) {
				t.Fatalf("app %s's URL got %v", tc.app.ID, e)
			}
		}
	}
	if s.Wants("C", WebhookChannelOccupied) || !s.Wants("A", WebhookChannelOccupied) || s.Wants("A", WebhookSubscriptionCount) {
		t.Error("Wants")
	}
	if strings.Contains(seriesText(set), `app="C"`) {
		t.Error("an app without webhooks has metrics")
	}
}

func seriesText(set *metrics.Set) string {
	var sb strings.Builder
	set.WritePrometheus(&sb)
	return sb.String()
}

// TestWebhookSenderFilter: webhook-events selects what is sent.
func TestWebhookSenderFilter(t *testing.T) {
	sink := &hookSink{}
	srv := httptest.NewServer(sink)
	defer srv.Close()
	app := hookApp(t, "1:k1:s1,webhook="+srv.URL+",webhook-events=member_removed")
	s, _ := newHookSender(t, nil, app)
	for _, ev := range sampleHookEvents {
		s.Emit("1", ev)
	}
	s.Emit("1", WebhookEvent{Name: "bogus", Channel: "x"})
	s.Close() // flushes
	got := sink.events(t, &app, sink.snapshot())
	if len(got) != 1 || got[0]["name"] != "member_removed" {
		t.Fatalf("got %v", got)
	}
}

// TestWebhookSenderOverflow: a URL's queue is bounded in events and in bytes; the
// excess is dropped and counted per app, and the other app is unaffected.
func TestWebhookSenderOverflow(t *testing.T) {
	stalled := &hookSink{stall: make(chan struct{})}
	other := &hookSink{}
	s1, s2 := httptest.NewServer(stalled), httptest.NewServer(other)
	defer s1.Close()
	defer s2.Close()
	defer close(stalled.stall)
	app1 := hookApp(t, "1:k1:s1,webhook="+s1.URL)
	app2 := hookApp(t, "2:k2:s2,webhook="+s2.URL)
	s, set := newHookSender(t, func(c *webhook.Config) { c.QueueSize = 4; c.BatchSize = 1; c.QueueBytes = 4 << 10 }, app1, app2)
	ev := WebhookEvent{Name: WebhookClientEvent, Channel: "private-a", Event: "client-a", Data: "x", SocketID: "1.1"}
	s.Emit("1", ev)
	waitUntil(t, 5*time.Second, "the first in flight", func() bool { return stalled.arrived.Load() == 1 })
	// One in flight; four fit; five more do not.
	for range 9 {
		s.Emit("1", ev)
	}
	if got := series(set, `longlink_pusher_webhook_events_total{app="1",event="client_event",outcome="dropped_overflow"}`); got != 5 {
		t.Fatalf("dropped_overflow %v, want 5", got)
	}
	if got := series(set, `longlink_pusher_webhook_queue_length{app="1",receiver="0"}`); got != 5 {
		t.Fatalf("queue length %v, want 5 (four queued, one in flight)", got)
	}
	// App 2 is unaffected; app 1's queue stays full by count whatever the size.
	big := ev
	big.Data = strings.Repeat("d", 3000)
	s.Emit("2", big)
	waitUntil(t, 5*time.Second, "app 2 unaffected", func() bool { return len(other.snapshot()) == 1 })
	s.Emit("1", big)
	if got := series(set, `longlink_pusher_webhook_events_total{app="1",event="client_event",outcome="dropped_overflow"}`); got != 6 {
		t.Fatalf("dropped_overflow %v after one more, want 6", got)
	}
	if got := series(set, `longlink_pusher_webhook_events_total{app="2",event="client_event",outcome="dropped_overflow"}`); got != 0 {
		t.Fatalf("app 2 dropped %v", got)
	}
}

// TestWebhookSenderQueueBytes: the byte bound alone drops what would pass it.
func TestWebhookSenderQueueBytes(t *testing.T) {
	stalled := &hookSink{stall: make(chan struct{})}
	srv := httptest.NewServer(stalled)
	defer srv.Close()
	defer close(stalled.stall)
	app := hookApp(t, "1:k1:s1,webhook="+srv.URL)
	s, set := newHookSender(t, func(c *webhook.Config) { c.BatchSize = 1; c.QueueBytes = 10 << 10 }, app)
	big := WebhookEvent{Name: WebhookClientEvent, Channel: "private-a", Event: "client-a", Data: strings.Repeat("d", 3000), SocketID: "1.1"}
	for range 4 {
		s.Emit("1", big) // ~3.1 KB each: three fit in 10 KiB
	}
	if got := series(set, `longlink_pusher_webhook_events_total{app="1",event="client_event",outcome="dropped_overflow"}`); got != 1 {
		t.Fatalf("dropped_overflow %v, want 1", got)
	}
	s.Emit("1", WebhookEvent{Name: WebhookChannelOccupied, Channel: "small"}) // still fits
	if got := series(set, `longlink_pusher_webhook_events_total{app="1",event="channel_occupied",outcome="dropped_overflow"}`); got != 0 {
		t.Fatalf("a small event was dropped")
	}
}

// TestWebhookSenderClose: Close flushes what is queued without waiting for the
// batch delay, counts what is emitted after it, and ends every goroutine.
func TestWebhookSenderClose(t *testing.T) {
	sink := &hookSink{}
	srv := httptest.NewServer(sink)
	defer srv.Close()
	app1 := hookApp(t, "1:k1:s1,webhook="+srv.URL+"/1")
	app2 := hookApp(t, "2:k2:s2,webhook="+srv.URL+"/2,webhook="+srv.URL+"/2b")
	s, set := newHookSender(t, func(c *webhook.Config) { c.BatchDelay = time.Hour; c.BatchSize = 1000 }, app1, app2)
	for range 50 {
		s.Emit("1", WebhookEvent{Name: WebhookChannelOccupied, Channel: "c"})
		s.Emit("2", WebhookEvent{Name: WebhookChannelOccupied, Channel: "c"})
	}
	start := time.Now()
	s.Close()
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Close took %v with a batch delay of an hour", d)
	}
	for name, want := range map[string]float64{
		`longlink_pusher_webhook_events_total{app="1",event="channel_occupied",outcome="delivered"}`: 50,
		`longlink_pusher_webhook_events_total{app="2",event="channel_occupied",outcome="delivered"}`: 100, // two URLs
	} {
		if got := series(set, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	s.Emit("2", WebhookEvent{Name: WebhookChannelOccupied, Channel: "late"})
	if got := series(set, `longlink_pusher_webhook_events_total{app="2",event="channel_occupied",outcome="dropped_shutdown"}`); got != 2 {
		t.Errorf("emit after close: dropped_shutdown %v, want 2 (one per URL)", got)
	}
	buf := make([]byte, 1<<20)
	waitUntil(t, 5*time.Second, "no webhook goroutines", func() bool {
		return !strings.Contains(string(buf[:runtime.Stack(buf, true)]), "webhook.(*receiver")
	})
}

// TestWebhookSenderShutdownBounded: a receiver that keeps failing does not hold
// Shutdown past its bound; what it held is dropped_shutdown.
func TestWebhookSenderShutdownBounded(t *testing.T) {
	sink := &hookSink{}
	sink.fail.Store(500)
	srv := httptest.NewServer(sink)
	defer srv.Close()
	app := hookApp(t, "1:k1:s1,webhook="+srv.URL)
	s, set := newHookSender(t, nil, app)
	for range 3 {
		s.Emit("1", WebhookEvent{Name: WebhookMemberAdded, Channel: "presence-a", UserID: "u"})
	}
	waitUntil(t, 5*time.Second, "an attempt", func() bool { return len(sink.snapshot()) >= 1 })
	start := time.Now()
	s.Shutdown(200 * time.Millisecond)
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("Shutdown took %v with a bound of 200ms", d)
	}
	if got := series(set, `longlink_pusher_webhook_events_total{app="1",event="member_added",outcome="dropped_shutdown"}`); got != 3 {
		t.Fatalf("dropped_shutdown %v, want 3", got)
	}
}

func TestNewWebhookSenderErrors(t *testing.T) {
	s, err := NewWebhookSender(WebhookConfig{Apps: []App{hookApp(t, "1:k:s")}})
	if s != nil || err != nil {
		t.Fatalf("no webhooks: %v %v", s, err)
	}
	s.Emit("1", WebhookEvent{Name: WebhookChannelOccupied}) // nil: nothing, no panic
	s.Close()
	if s.Wants("1", WebhookChannelOccupied) {
		t.Fatal("nil sender wants")
	}
	a := hookApp(t, "1:k:s,webhook=http://127.0.0.1:9/")
	if _, err := NewWebhookSender(WebhookConfig{Apps: []App{a, a}}); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Fatalf("same app twice: %v", err)
	}
	if _, err := NewWebhookSender(WebhookConfig{Apps: []App{a}, Delivery: webhook.Config{BatchSize: -1}}); err == nil || !strings.Contains(err.Error(), "BatchSize") {
		t.Fatalf("bad delivery: %v", err)
	}
	// The node's native webhook settings may be passed as they are.
	s, err = NewWebhookSender(WebhookConfig{Apps: []App{a}, Delivery: webhook.Config{URLs: []string{"http://elsewhere/"}, Secret: []byte("x"), Events: []string{"user.online"}, NodeName: "n"}})
	if err != nil {
		t.Fatal(err)
	}
	s.Shutdown(0)
}

// TestWebhookSenderEmitAllocs: Emit, called from event loops, allocates nothing,
// whether the event is queued or dropped.
func TestWebhookSenderEmitAllocs(t *testing.T) {
	stalled := &hookSink{stall: make(chan struct{})}
	srv := httptest.NewServer(stalled)
	defer srv.Close()
	defer close(stalled.stall)
	app := hookApp(t, "1:k1:s1,webhook="+srv.URL)
	s, set := newHookSender(t, func(c *webhook.Config) { c.QueueSize = 150; c.BatchSize = 1 }, app)
	ev := WebhookEvent{Name: WebhookClientEvent, Channel: "private-a", Event: "client-a", Data: "some data", SocketID: "1.1"}
	if n := testing.AllocsPerRun(300, func() { s.Emit("1", ev) }); n != 0 {
		t.Errorf("Emit: %v allocs", n)
	}
	if series(set, `longlink_pusher_webhook_events_total{app="1",event="client_event",outcome="dropped_overflow"}`) == 0 {
		t.Error("the overflow path was not measured")
	}
}
