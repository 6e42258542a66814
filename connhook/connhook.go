package connhook

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/VictoriaMetrics/metrics"

	"longlink/internal/hmacsig"
)

// SignatureHeader carries "sha256=" and the hex HMAC-SHA256 of the request body under
// Config.Secret (the same scheme as webhooks).
const SignatureHeader = "X-Longlink-Signature"

// Bounds on what an answer may add to a connection; each open connection holds it.
const (
	// MaxRooms is how many rooms one answer may add (as many as a token may list).
	MaxRooms = 64
	// MaxRoomName is the longest room name, in bytes (as in tokens).
	MaxRoomName = 128
	// MaxReason is the longest refusal reason passed on to the client, in bytes.
	MaxReason = 256
	// maxAnswer bounds the answer body read beyond MaxMeta (rooms, reason, spacing).
	maxAnswer = 16 << 10
)

// Fail policies: what a hook that times out, cannot be reached, answers 5xx or
// something malformed, or is over MaxInFlight means.
const (
	FailOpen   = "open"   // connect without the hook's rooms and metadata
	FailClosed = "closed" // refuse with 503 and Retry-After
)

// Config configures a Hook.
type Config struct {
	// URL is the hook's http:// or https:// URL. Required.
	URL string
	// Timeout bounds one call, answer included. Zero means 2s. The node refuses one
	// that is not shorter than the handshake timeout.
	Timeout time.Duration
	// Fail is FailOpen or FailClosed. Empty means FailClosed: a hook that can refuse
	// connections is a policy, and failing open would skip it unnoticed.
	Fail string
	// Secret signs every request body (SignatureHeader). Empty: requests are not
	// signed.
	Secret []byte
	// MaxInFlight bounds the calls waiting for the hook; over it, the fail policy
	// answers at once. Zero means 1024.
	MaxInFlight int
	// MaxMeta is the largest metadata object an answer may give, in bytes of
	// compact JSON; a larger one is a malformed answer. Zero means 4096.
	MaxMeta int
	// NodeName is sent in every request ("node").
	NodeName string
	// Metrics is where the hook's metrics go. Nil: the default set.
	Metrics *metrics.Set
	// Logger receives a warning when the hook fails (at most one per second).
	Logger *slog.Logger
}

// Defaults returns the values zero fields stand for.
func Defaults() Config {
	return Config{Timeout: 2 * time.Second, Fail: FailClosed, MaxInFlight: 1024, MaxMeta: 4096}
}

// Request is what the hook is told about one connection.
type Request struct {
	Connection string
	User       string
	// Token is the client's verified token; its payload is sent as "claims" (the
	// token itself, signature and all, is not).
	Token  string
	V2     bool
	Remote netip.AddrPort
	// Header is the request's header lines as received.
	Header []byte
}

// Decision is the hook's answer, or the fail policy's.
type Decision struct {
	// Status, when non-zero, refuses the connection with this HTTP status and
	// Reason (and "Retry-After: RetryAfter" seconds when RetryAfter > 0).
	Status     int
	Reason     string
	RetryAfter int
	// Rooms and Meta (a JSON object's compact text, "" for none) are for an allowed
	// connection.
	Rooms []string
	Meta  string
}

// Hook calls one connect hook.
type Hook struct {
	cfg      Config
	url      string
	client   *http.Client
	inflight atomic.Int64
	m        *hookMetrics
	lastWarn atomic.Int64 // unix nanoseconds of the last warning logged
}

// New validates cfg and builds the hook's client.
func New(cfg Config) (*Hook, error) {
	d := Defaults()
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("connhook: URL %q: want an http:// or https:// URL", cfg.URL)
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("connhook: Timeout %v: must be positive", cfg.Timeout)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = d.Timeout
	}
	switch cfg.Fail {
	case "":
		cfg.Fail = d.Fail
	case FailOpen, FailClosed:
	default:
		return nil, fmt.Errorf("connhook: Fail %q: want %q or %q", cfg.Fail, FailOpen, FailClosed)
	}
	if cfg.MaxInFlight < 0 || cfg.MaxMeta < 0 {
		return nil, errors.New("connhook: MaxInFlight and MaxMeta must not be negative")
	}
	if cfg.MaxInFlight == 0 {
		cfg.MaxInFlight = d.MaxInFlight
	}
	if cfg.MaxMeta == 0 {
		cfg.MaxMeta = d.MaxMeta
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.GetDefaultSet()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	tr := &http.Transport{
		Proxy:               nil, // the hook is the operator's own service: no proxy from the environment
		DialContext:         (&net.Dialer{Timeout: cfg.Timeout, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        min(cfg.MaxInFlight, 256),
		MaxIdleConnsPerHost: min(cfg.MaxInFlight, 256),
		MaxConnsPerHost:     cfg.MaxInFlight,
		IdleConnTimeout:     90 * time.Second,
		ForceAttemptHTTP2:   true,
	}
	h := &Hook{
		cfg: cfg,
		url: u.String(),
		client: &http.Client{
			Transport: tr,
			// A redirect is not an answer: it counts as malformed, and the signed
			// body is never re-sent somewhere else.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
	h.m = newHookMetrics(cfg.Metrics, h)
	return h, nil
}

// Close drops the hook's idle connections (calls still waiting end by their
// timeout). A nil Hook's Close does nothing.
func (h *Hook) Close() {
	if h != nil {
		h.client.CloseIdleConnections()
	}
}

// Config is the configuration in force, defaults filled in.
func (h *Hook) Config() Config { return h.cfg }

// Check asks the hook about r and calls done with the decision: from a goroutine of
// its own, or at once when MaxInFlight calls are already waiting. ctx canceled
// before the answer (the client left) ends the call; done still runs.
func (h *Hook) Check(ctx context.Context, r Request, done func(Decision)) {
	if h.inflight.Add(1) > int64(h.cfg.MaxInFlight) {
		h.inflight.Add(-1)
		h.m.outcome(outcomeOverloaded)
		h.warn("connect hook: too many calls in flight", "max", h.cfg.MaxInFlight)
		done(h.failed())
		return
	}
	go func() {
		defer h.inflight.Add(-1)
		done(h.call(ctx, r))
	}()
}

// failed is the fail policy's decision.
func (h *Hook) failed() Decision {
	if h.cfg.Fail == FailOpen {
		return Decision{}
	}
	return Decision{Status: 503, Reason: "connect hook unavailable", RetryAfter: 1}
}

// call makes one request and turns its answer into a decision.
func (h *Hook) call(ctx context.Context, r Request) Decision {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, h.cfg.Timeout)
	defer cancel()
	d, outcome, err := h.do(ctx, r)
	h.m.latency.UpdateDuration(start)
	h.m.outcome(outcome)
	switch outcome {
	case outcomeAllowed, outcomeRefused:
		return d
	case outcomeCanceled:
		return h.failed() // nobody is waiting for it
	}
	h.warn("connect hook failed; applying --connect-hook-fail "+h.cfg.Fail, "outcome", outcome.String(), "err", err)
	return h.failed()
}

func (h *Hook) do(ctx context.Context, r Request) (Decision, outcome, error) {
	body, err := h.body(r)
	if err != nil {
		return Decision{}, outcomeMalformed, err // claims that are not JSON: not the hook's fault, but no answer either
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.url, bytes.NewReader(body))
	if err != nil {
		return Decision{}, outcomeUnreachable, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "longlink-connect-hook")
	if len(h.cfg.Secret) > 0 {
		req.Header.Set(SignatureHeader, Sign(h.cfg.Secret, body))
	}
	resp, err := h.client.Do(req)
	if err != nil {
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			return Decision{}, outcomeTimeout, err
		case errors.Is(err, context.Canceled):
			return Decision{}, outcomeCanceled, err
		}
		return Decision{}, outcomeUnreachable, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, int64(h.cfg.MaxMeta+maxAnswer)+1))
	if err != nil {
		if ctx.Err() != nil {
			if errors.Is(ctx.Err(), context.Canceled) {
				return Decision{}, outcomeCanceled, err
			}
			return Decision{}, outcomeTimeout, err
		}
		return Decision{}, outcomeUnreachable, fmt.Errorf("reading the answer: %w", err)
	}
	if len(raw) > h.cfg.MaxMeta+maxAnswer {
		return Decision{}, outcomeMalformed, fmt.Errorf("answer larger than %d bytes", h.cfg.MaxMeta+maxAnswer)
	}
	switch st := resp.StatusCode; {
	case st == 200 || st == 204:
		d, err := h.allowed(raw)
		if err != nil {
			return Decision{}, outcomeMalformed, err
		}
		return d, outcomeAllowed, nil
	case st >= 400 && st < 500:
		return refusal(st, raw, resp.Header.Get("Retry-After")), outcomeRefused, nil
	case st >= 500:
		return Decision{}, outcomeServerError, fmt.Errorf("hook answered %d", st)
	default:
		return Decision{}, outcomeMalformed, fmt.Errorf("hook answered %d: want 200, 204 or 4xx", st)
	}
}

// requestBody is the JSON the hook receives (docs/api.md, "Connect hook").
type requestBody struct {
	Type       string              `json:"type"`
	Time       string              `json:"time"`
	Node       string              `json:"node"`
	Connection string              `json:"connection"`
	User       string              `json:"user"`
	Protocol   string              `json:"protocol"`
	Remote     string              `json:"remote"`
	Claims     json.RawMessage     `json:"claims"`
	Headers    map[string][]string `json:"headers"`
}

func (h *Hook) body(r Request) ([]byte, error) {
	claims, err := Claims(r.Token)
	if err != nil {
		return nil, err
	}
	proto := "plain"
	if r.V2 {
		proto = "v2"
	}
	return json.Marshal(requestBody{
		Type: "connect", Time: time.Now().UTC().Format(time.RFC3339Nano), Node: h.cfg.NodeName,
		Connection: r.Connection, User: r.User, Protocol: proto, Remote: r.Remote.String(),
		Claims: claims, Headers: Headers(r.Header),
	})
}

// Claims returns the payload of a JWT as sent: its JSON text, decoded from the
// token's second part. The token has been verified; what is checked here is only
// that the part is base64url of a JSON object.
func Claims(token string) (json.RawMessage, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, errors.New("connhook: token is not a JWT")
	}
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return nil, fmt.Errorf("connhook: token payload: %w", err)
	}
	b = bytes.TrimSpace(b)
	if len(b) == 0 || b[0] != '{' || !json.Valid(b) {
		return nil, errors.New("connhook: token payload is not a JSON object")
	}
	return b, nil
}

// Headers parses header lines as received into canonical names and their values in
// order (one entry per line).
func Headers(lines []byte) map[string][]string {
	out := map[string][]string{}
	for len(lines) > 0 {
		var line []byte
		if i := bytes.IndexByte(lines, '\n'); i >= 0 {
			line, lines = lines[:i], lines[i+1:]
		} else {
			line, lines = lines, nil
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok || len(name) == 0 {
			continue // the loop's parser refused such lines already
		}
		k := textproto.CanonicalMIMEHeaderKey(string(name))
		out[k] = append(out[k], string(bytes.Trim(value, " \t")))
	}
	return out
}

// answer is a 200's body.
type answer struct {
	Rooms []string        `json:"rooms"`
	Meta  json.RawMessage `json:"meta"`
}

// allowed validates an allowing answer (empty: nothing added).
func (h *Hook) allowed(raw []byte) (Decision, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return Decision{}, nil
	}
	var a answer
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&a); err != nil {
		return Decision{}, fmt.Errorf("answer is not {\"rooms\":[...],\"meta\":{...}}: %w", err)
	}
	if dec.More() {
		return Decision{}, errors.New("answer has data after its JSON object")
	}
	if len(a.Rooms) > MaxRooms {
		return Decision{}, fmt.Errorf("answer lists %d rooms, more than %d", len(a.Rooms), MaxRooms)
	}
	for _, room := range a.Rooms {
		if room == "" || len(room) > MaxRoomName || !utf8.ValidString(room) {
			return Decision{}, fmt.Errorf("answer room %q: names are 1 to %d bytes of UTF-8", room, MaxRoomName)
		}
	}
	d := Decision{Rooms: a.Rooms}
	if m := bytes.TrimSpace(a.Meta); len(m) > 0 && !bytes.Equal(m, []byte("null")) {
		if m[0] != '{' {
			return Decision{}, errors.New("answer meta is not a JSON object")
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, m); err != nil {
			return Decision{}, fmt.Errorf("answer meta: %w", err)
		}
		if buf.Len() > h.cfg.MaxMeta {
			return Decision{}, fmt.Errorf("answer meta is %d bytes, more than %d", buf.Len(), h.cfg.MaxMeta)
		}
		d.Meta = buf.String()
	}
	return d, nil
}

// refusal turns a 4xx into a decision: the status as is, the body's "reason" (or a
// default) made safe to show, a Retry-After of whole seconds passed on.
func refusal(status int, raw []byte, retryAfter string) Decision {
	var r struct {
		Reason string `json:"reason"`
	}
	_ = json.Unmarshal(raw, &r) // a body that is not JSON gives the default reason
	reason := strings.Map(func(c rune) rune {
		if c < ' ' || c == 0x7f {
			return ' '
		}
		return c
	}, strings.ToValidUTF8(r.Reason, ""))
	if len(reason) > MaxReason {
		reason = strings.ToValidUTF8(reason[:MaxReason], "")
	}
	if strings.TrimSpace(reason) == "" {
		reason = "refused by the connect hook"
	}
	d := Decision{Status: status, Reason: reason}
	if n, err := strconv.Atoi(retryAfter); err == nil && n > 0 {
		d.RetryAfter = min(n, 3600)
	}
	return d
}

// Sign is the value of SignatureHeader for body: "sha256=" and the hex HMAC-SHA256.
func Sign(secret, body []byte) string { return hmacsig.Sign(secret, body) }

// warn logs at most once a second: a hook that is down fails every connect.
func (h *Hook) warn(msg string, args ...any) {
	now := time.Now().UnixNano()
	last := h.lastWarn.Load()
	if now-last < int64(time.Second) || !h.lastWarn.CompareAndSwap(last, now) {
		return
	}
	h.cfg.Logger.Warn(msg, args...)
}
