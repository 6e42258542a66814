package upstream

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"longlink/internal/hmacsig"
	"longlink/internal/jsonstr"
)

// Upstream is the node's businesses.
type Upstream struct {
	cfg    Config
	byName map[string]*Biz // read-only after New
	list   []*Biz          // in Config order; Biz.Index is the position
	rooms  slots           // subscribes waiting for their room stream's owner (GoRoom)
	Client *ClientMetrics

	ctx    context.Context // cancelled by Close: what is in flight ends
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Biz is one business at run time.
type Biz struct {
	// Business is its configuration, defaults filled in. Read-only.
	Business
	// Index is its position among the node's businesses (0..n-1), for per-business
	// state kept elsewhere (rate buckets on the connection).
	Index int

	up     *Upstream
	client *http.Client
	slots  slots
	run    runner
	m      bizMetrics
}

// runner runs a business's requests on goroutines it keeps for the next one: a
// request's goroutine grows its stack through net/http's client (copied from its
// small initial stack, twice the size each time), and a new goroutine per request
// paid that and its creation every time (docs/performance.md, "Upstream
// messages"). At most max
// goroutines are kept; an idle one waits idleWorker for the next request, then
// exits, and Close ends them at once.
type runner struct {
	jobs    chan func() // unbuffered: a send succeeds only when a kept goroutine waits
	workers atomic.Int64
	waiting atomic.Int64 // kept goroutines waiting for a job (tests wait on it)
	max     int64
}

// idleWorker is how long a kept request goroutine waits for the next request.
const idleWorker = 5 * time.Second

// start runs job on a kept goroutine that is waiting, else on a new one (kept
// while fewer than max are). It never blocks. Close waits for every goroutine.
func (b *Biz) start(job func()) {
	select {
	case b.run.jobs <- job:
		return
	default:
	}
	b.up.wg.Add(1)
	if b.run.workers.Add(1) <= b.run.max {
		go b.worker(job)
		return
	}
	// Every kept goroutine is busy or between requests: this one is not kept.
	b.run.workers.Add(-1)
	go func() {
		defer b.up.wg.Done()
		job()
	}()
}

func (b *Biz) worker(job func()) {
	defer b.up.wg.Done()
	defer b.run.workers.Add(-1)
	idle := time.NewTimer(idleWorker)
	defer idle.Stop()
	for {
		job()
		job = nil // the finished request's closure is garbage while this waits
		idle.Reset(idleWorker)
		b.run.waiting.Add(1)
		select {
		case job = <-b.run.jobs:
		case <-idle.C:
		case <-b.up.ctx.Done():
		}
		b.run.waiting.Add(-1)
		if job == nil {
			return
		}
	}
}

// slots is a bound on work in flight, taken without waiting.
type slots struct {
	n   atomic.Int64
	max int64
}

func (s *slots) take() bool {
	if s.n.Add(1) > s.max {
		s.n.Add(-1)
		return false
	}
	return true
}

func (s *slots) give() { s.n.Add(-1) }

// New validates cfg and builds every business's client and metrics.
func New(cfg Config) (*Upstream, error) {
	d := Defaults()
	if cfg.NodeName == "" {
		return nil, errors.New("upstream: Config.NodeName is required")
	}
	if cfg.ClientRate == 0 {
		cfg.ClientRate = d.ClientRate
	}
	if cfg.ClientBurst < 0 {
		return nil, fmt.Errorf("upstream: Config.ClientBurst %d must not be negative", cfg.ClientBurst)
	}
	if cfg.ClientBurst == 0 {
		cfg.ClientBurst = d.ClientBurst
	}
	if cfg.SubscribeInFlight < 0 {
		return nil, fmt.Errorf("upstream: Config.SubscribeInFlight %d must not be negative", cfg.SubscribeInFlight)
	}
	if cfg.SubscribeInFlight == 0 {
		cfg.SubscribeInFlight = d.SubscribeInFlight
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.NewSet()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	u := &Upstream{cfg: cfg, byName: make(map[string]*Biz, len(cfg.Businesses))}
	u.rooms.max = int64(cfg.SubscribeInFlight)
	u.ctx, u.cancel = context.WithCancel(context.Background())
	u.Client = newClientMetrics(cfg.Metrics, u)
	for i, b := range cfg.Businesses {
		if err := b.check(); err != nil {
			return nil, fmt.Errorf("upstream: %w", err)
		}
		if _, dup := u.byName[b.Name]; dup {
			return nil, fmt.Errorf("upstream: business %q is configured twice", b.Name)
		}
		b = b.withDefaults()
		z := &Biz{Business: b, Index: i, up: u}
		z.slots.max = int64(b.InFlight)
		z.run = runner{jobs: make(chan func()), max: int64(b.InFlight)}
		z.client = &http.Client{
			Transport: &http.Transport{
				// The back-ends are the operator's own services: no proxy from the
				// environment, no compression (answers are small and the CPU is the
				// gateway's), and HTTP/1.1 so Pool is the connection count.
				Proxy:                  nil,
				DialContext:            (&net.Dialer{Timeout: min(b.Timeout, 5*time.Second), KeepAlive: 30 * time.Second}).DialContext,
				MaxIdleConns:           b.Pool,
				MaxIdleConnsPerHost:    b.Pool,
				MaxConnsPerHost:        b.Pool,
				IdleConnTimeout:        90 * time.Second,
				TLSHandshakeTimeout:    min(b.Timeout, 5*time.Second),
				DisableCompression:     true,
				MaxResponseHeaderBytes: 64 << 10,
			},
			// A redirect is an answer like any other non-2xx: 502. Following it would
			// send the signed request somewhere the operator did not configure.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
		z.m = newBizMetrics(cfg.Metrics, z)
		u.byName[b.Name] = z
		u.list = append(u.list, z)
	}
	return u, nil
}

// Business returns the business called name, or nil.
func (u *Upstream) Business(name string) *Biz { return u.byName[name] }

// Len is the number of businesses.
func (u *Upstream) Len() int { return len(u.list) }

// ClientRate and ClientBurst are the per-connection limit of client requests
// (rate <= 0: none).
func (u *Upstream) ClientRate() (rate, burst float64) {
	return u.cfg.ClientRate, float64(u.cfg.ClientBurst)
}

// ForRoom returns the business a room is namespaced by: the part before its first
// '/'. namespaced is false for a room without one; b is nil when that business is
// not configured.
func (u *Upstream) ForRoom(room string) (b *Biz, namespaced bool) {
	i := strings.IndexByte(room, '/')
	if i < 0 {
		return nil, false
	}
	return u.byName[room[:i]], true
}

// GoRoom runs fn in a goroutine if one of the SubscribeInFlight slots is free (a
// subscribe waiting for its room stream's owner) and reports whether it did. Close
// waits for it.
func (u *Upstream) GoRoom(fn func()) bool {
	if !u.rooms.take() {
		return false
	}
	u.wg.Add(1)
	go func() {
		defer u.wg.Done()
		defer u.rooms.give()
		fn()
	}()
	return true
}

// Close cancels every request in flight (their callbacks run with 503) and waits
// for their goroutines.
func (u *Upstream) Close() {
	u.cancel()
	u.wg.Wait()
	for _, b := range u.list {
		b.client.CloseIdleConnections()
	}
}

// Caller is who a request is made for.
type Caller struct {
	User, Conn string
	// Meta is the connection's metadata, a JSON object's text; "" when none.
	Meta string
}

// Reply is a back-end's answer, or the failure in its place.
type Reply struct {
	// Status is the back-end's 2xx status, or the failure's: 502 (back-end error
	// status, unreachable, answer not JSON or too large), 503 (no slot, shutting
	// down), 504 (timeout).
	Status int
	// Data is the answer's body, a JSON value's text; nil when it was empty. With a
	// back-end error status it is that answer's body when it was JSON.
	Data []byte
	// Reason says why, for a failure.
	Reason string
}

// Send POSTs a client's request (data: a JSON value's text, or nil) to b's back-end
// and calls done with the answer, on the request's goroutine. When b has no free
// slot it calls nothing and returns false: the caller answers 503 itself (Busy). It
// never blocks. id is the client's request id (a JSON number or string).
func (b *Biz) Send(who Caller, id, data []byte, done func(Reply)) bool {
	if !b.slots.take() {
		b.m.rejected(rejInflight)
		b.m.reply(503)
		return false
	}
	b.m.requests.Inc()
	b.start(func() {
		r := b.send(who, id, data)
		// The slot goes back before the answer: a client that sends again the moment
		// it reads it finds the slot free.
		b.slots.give()
		b.m.reply(r.Status)
		done(r)
	})
	return true
}

// Busy is the reply a caller sends when Send or Subscribe returned false.
func (b *Biz) Busy() Reply {
	return Reply{Status: 503, Reason: "business " + b.Name + " has " + strconv.Itoa(b.InFlight) + " requests in flight on this node; retry later"}
}

// Rejected counts a request of b refused before it was sent, by the caller's own
// rule: the business's rate (429) or rooms limit.
func (b *Biz) Rejected(reason string, status int) {
	b.m.rejected(reason)
	if status != 0 {
		b.m.reply(status)
	}
}

// Reasons for Biz.Rejected and the rejected counter (docs/metrics.md).
const (
	RejectRate  = "rate"
	RejectRooms = "rooms"
	rejInflight = "inflight"
)

func (b *Biz) send(who Caller, id, data []byte) Reply {
	body := make([]byte, 0, 160+len(who.Meta)+len(data))
	body = append(body, `{"business":`...)
	body = jsonstr.Append(body, b.Name)
	body = append(body, `,"id":`...)
	body = appendRaw(body, id)
	body = appendCaller(body, who, b.up.cfg.NodeName)
	body = append(body, `,"data":`...)
	body = appendRaw(body, data)
	body = append(body, '}')
	start := time.Now()
	st, answer, err := b.post(b.URL, body)
	b.m.duration.Observe(time.Since(start).Seconds())
	if err != nil {
		return b.failure(err)
	}
	if st >= 200 && st < 300 {
		return Reply{Status: st, Data: answer}
	}
	b.m.rejected("status")
	r := Reply{Status: 502, Reason: "back-end of " + b.Name + " answered " + statusText(st)}
	if json.Valid(answer) {
		r.Data = answer // a refusal's text stays out: the reply must be JSON
	}
	return r
}

// Subscribe asks b's subscribe hook whether who may subscribe to room, and calls
// done on the request's goroutine with the hook's status (2xx: allowed) or the
// failure's (502, 503, 504) and a reason. b must have a SubscribeURL. It returns
// false, calling nothing, when b has no free slot.
func (b *Biz) Subscribe(who Caller, room string, done func(Reply)) bool {
	if !b.slots.take() {
		b.m.rejected(rejInflight)
		return false
	}
	b.start(func() {
		r := b.subscribe(who, room)
		b.slots.give()
		done(r)
	})
	return true
}

func (b *Biz) subscribe(who Caller, room string) Reply {
	body := make([]byte, 0, 160+len(who.Meta)+len(room))
	body = append(body, `{"business":`...)
	body = jsonstr.Append(body, b.Name)
	body = append(body, `,"room":`...)
	body = jsonstr.Append(body, room)
	body = appendCaller(body, who, b.up.cfg.NodeName)
	body = append(body, '}')
	st, answer, err := b.post(b.SubscribeURL, body)
	if err != nil {
		b.m.hookFailed.Inc()
		return b.failure(err)
	}
	if st >= 200 && st < 300 {
		b.m.hookAllowed.Inc()
		return Reply{Status: st}
	}
	b.m.hookRefused.Inc()
	if st < 400 || st > 599 {
		// Not a refusal a client can act on: the hook is broken.
		return Reply{Status: 502, Reason: "subscribe hook of " + b.Name + " answered " + statusText(st)}
	}
	return Reply{Status: st, Reason: refusalReason(st, answer)}
}

// refusalReason is the hook's {"reason":"..."}, else its body if it is short text,
// else the status's text.
func refusalReason(st int, body []byte) string {
	var r struct {
		Reason string `json:"reason"`
	}
	if json.Unmarshal(body, &r) == nil && r.Reason != "" {
		return truncate(r.Reason, 256)
	}
	if s := strings.TrimSpace(string(body)); s != "" && len(s) <= 256 && !strings.ContainsAny(s, "{[<") {
		return strings.ToValidUTF8(s, "")
	}
	return "refused: " + statusText(st)
}

func truncate(s string, n int) string {
	if len(s) > n {
		s = s[:n]
	}
	return strings.ToValidUTF8(s, "")
}

func statusText(st int) string {
	if t := http.StatusText(st); t != "" {
		return strconv.Itoa(st) + " " + t
	}
	return strconv.Itoa(st)
}

// errAnswer is an answer that cannot be passed on.
type errAnswer struct {
	reason string // rejected counter label
	msg    string
}

func (e *errAnswer) Error() string { return e.msg }

// post sends body to target and reads the answer, within b's timeout. The answer is
// nil when empty; otherwise it is checked to be JSON and at most MaxReply bytes.
func (b *Biz) post(target string, body []byte) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(b.up.ctx, b.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	h := req.Header
	h["Content-Type"] = []string{"application/json"}
	h["User-Agent"] = []string{"longlink-upstream"}
	h["X-Longlink-Business"] = []string{b.Name}
	h["X-Longlink-Node"] = []string{b.up.cfg.NodeName}
	if b.Secret != "" {
		ts := strconv.FormatInt(time.Now().Unix(), 10)
		h["X-Longlink-Timestamp"] = []string{ts}
		h["X-Longlink-Signature"] = []string{Sign(b.Secret, ts, body)}
	}
	resp, err := b.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, int64(b.MaxReply)+1))
	if err != nil {
		return 0, nil, err
	}
	if len(answer) > b.MaxReply {
		return 0, nil, &errAnswer{"too_large", fmt.Sprintf("the answer of %s's back-end is larger than %d bytes", b.Name, b.MaxReply)}
	}
	if answer = bytes.TrimSpace(answer); len(answer) == 0 {
		return resp.StatusCode, nil, nil
	}
	if !json.Valid(answer) {
		if resp.StatusCode >= 200 && resp.StatusCode < 300 {
			return 0, nil, &errAnswer{"not_json", "the answer of " + b.Name + "'s back-end is not JSON"}
		}
		return resp.StatusCode, answer, nil // a refusal's text: the caller words it
	}
	return resp.StatusCode, answer, nil
}

// failure turns a transport error into a reply and counts it.
func (b *Biz) failure(err error) Reply {
	var ea *errAnswer
	switch {
	case errors.As(err, &ea):
		b.m.rejected(ea.reason)
		return Reply{Status: 502, Reason: ea.msg}
	case b.up.ctx.Err() != nil:
		b.m.rejected("shutdown")
		return Reply{Status: 503, Reason: "node is shutting down; retry"}
	case errors.Is(err, context.DeadlineExceeded):
		b.m.rejected("timeout")
		return Reply{Status: 504, Reason: "back-end of " + b.Name + " did not answer within " + b.Timeout.String()}
	}
	b.m.rejected("unreachable")
	return Reply{Status: 502, Reason: "back-end of " + b.Name + " unreachable: " + shortErr(err)}
}

// shortErr drops the request line net/http puts in front ("Post \"http://…\": ").
func shortErr(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, "\": "); i >= 0 {
		s = s[i+3:]
	}
	return truncate(s, 200)
}

// Sign is the X-Longlink-Signature of body sent at timestamp ts (unix seconds, as
// in X-Longlink-Timestamp) under secret: "sha256=" and hex(HMAC-SHA256(secret,
// ts + "." + body)).
func Sign(secret, ts string, body []byte) string {
	return hmacsig.Sign([]byte(secret), []byte(ts), []byte{'.'}, body)
}

func appendCaller(b []byte, who Caller, node string) []byte {
	b = append(b, `,"user":`...)
	b = jsonstr.Append(b, who.User)
	b = append(b, `,"connection":`...)
	b = jsonstr.Append(b, who.Conn)
	b = append(b, `,"node":`...)
	b = jsonstr.Append(b, node)
	b = append(b, `,"meta":`...)
	return appendRaw(b, []byte(who.Meta))
}

// appendRaw appends a JSON value's text, or null for none.
func appendRaw(b, v []byte) []byte {
	if len(v) == 0 {
		return append(b, "null"...)
	}
	return append(b, v...)
}
