package connhook

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"longlink/internal/testutil"
)

func TestMain(m *testing.M) { os.Exit(testutil.Main(m, 10)) }

const secret = "connhook-test-secret-0123456789"

func newHook(t *testing.T, url string, mod func(*Config)) *Hook {
	t.Helper()
	cfg := Config{URL: url, Secret: []byte("hook-secret"), NodeName: "n1", Metrics: metrics.NewSet(),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Timeout: time.Second}
	if mod != nil {
		mod(&cfg)
	}
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.client.CloseIdleConnections)
	return h
}

// check runs Check and waits for its decision.
func check(t *testing.T, h *Hook, ctx context.Context, r Request) Decision {
	t.Helper()
	ch := make(chan Decision, 1)
	h.Check(ctx, r, func(d Decision) { ch <- d })
	select {
	case d := <-ch:
		return d
	case <-time.After(10 * time.Second):
		t.Fatal("no decision")
		return Decision{}
	}
}

func request(t *testing.T) Request {
	return Request{Connection: "n1.x-1", User: "42", Token: testutil.Token(t, secret, "42", "lobby"), V2: true,
		Remote: netip.MustParseAddrPort("127.0.0.1:5555"), Header: []byte("Host: gw\r\nX-App: 1\r\nx-app: 2\r\nCookie: a=b\r\n")}
}

func outcomes(t *testing.T, h *Hook) map[string]float64 {
	out := map[string]float64{}
	for k, v := range testutil.Scrape(t, h.cfg.Metrics) {
		if name, ok := strings.CutPrefix(k, `longlink_connect_hook_calls_total{outcome="`); ok && v > 0 {
			out[strings.TrimSuffix(name, `"}`)] = v
		}
	}
	return out
}

// TestCheckRequest: the hook gets the documented body, signed; an allowing answer
// gives rooms and compact metadata.
func TestCheckRequest(t *testing.T) {
	var got struct {
		body []byte
		hdr  http.Header
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got.body, _ = io.ReadAll(r.Body)
		got.hdr = r.Header
		io.WriteString(w, `{"rooms":["vip","chat/lobby"], "meta": {"plan" : "gold", "n": [1, 2]}, "other": 1}`)
	}))
	defer srv.Close()
	h := newHook(t, srv.URL, nil)
	r := request(t)
	d := check(t, h, context.Background(), r)
	if d.Status != 0 || strings.Join(d.Rooms, ",") != "vip,chat/lobby" || d.Meta != `{"plan":"gold","n":[1,2]}` {
		t.Fatalf("decision %+v", d)
	}
	if sig := got.hdr.Get(SignatureHeader); sig != Sign([]byte("hook-secret"), got.body) || !strings.HasPrefix(sig, "sha256=") {
		t.Fatalf("signature %q", sig)
	}
	if got.hdr.Get("Content-Type") != "application/json" {
		t.Fatalf("content type %q", got.hdr.Get("Content-Type"))
	}
	var b struct {
		Type, Time, Node, Connection, User, Protocol, Remote string
		Claims                                               map[string]any
		Headers                                              map[string][]string
	}
	if err := json.Unmarshal(got.body, &b); err != nil {
		t.Fatal(err)
	}
	if b.Type != "connect" || b.Node != "n1" || b.Connection != "n1.x-1" || b.User != "42" || b.Protocol != "v2" || b.Remote != "127.0.0.1:5555" {
		t.Fatalf("body %s", got.body)
	}
	if _, err := time.Parse(time.RFC3339Nano, b.Time); err != nil {
		t.Fatalf("time %q: %v", b.Time, err)
	}
	if b.Claims["sub"] != "42" || b.Claims["exp"] == nil || strings.Join(anyStrings(b.Claims["rooms"]), ",") != "lobby" {
		t.Fatalf("claims %v", b.Claims)
	}
	if strings.Join(b.Headers["X-App"], ",") != "1,2" || b.Headers["Host"][0] != "gw" || b.Headers["Cookie"][0] != "a=b" {
		t.Fatalf("headers %v", b.Headers)
	}
	if o := outcomes(t, h); o["allowed"] != 1 || len(o) != 1 {
		t.Fatalf("outcomes %v", o)
	}
}

func anyStrings(v any) []string {
	var out []string
	l, _ := v.([]any)
	for _, x := range l {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}

// TestCheckAnswers: every kind of answer, under both fail policies.
func TestCheckAnswers(t *testing.T) {
	var mu sync.Mutex
	var status int
	var body string
	var header map[string]string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		st, b, hd := status, body, header
		mu.Unlock()
		for k, v := range hd {
			w.Header().Set(k, v)
		}
		w.WriteHeader(st)
		io.WriteString(w, b)
	}))
	defer srv.Close()
	closed := Decision{Status: 503, Reason: "connect hook unavailable", RetryAfter: 1}
	for _, tc := range []struct {
		name    string
		status  int
		body    string
		header  map[string]string
		outcome string
		want    Decision // under fail=closed; a failure allows under fail=open
	}{
		{"empty 200", 200, "", nil, "allowed", Decision{}},
		{"204", 204, "", nil, "allowed", Decision{}},
		{"null meta", 200, `{"meta":null,"rooms":[]}`, nil, "allowed", Decision{Rooms: []string{}}},
		{"refused", 403, `{"reason":"banned\nuser"}`, map[string]string{"Retry-After": "30"}, "refused", Decision{Status: 403, Reason: "banned user", RetryAfter: 30}},
		{"refused, no JSON", 429, `slow down`, nil, "refused", Decision{Status: 429, Reason: "refused by the connect hook"}},
		{"refused, long reason", 401, `{"reason":"` + strings.Repeat("é", 200) + `"}`, nil, "refused", Decision{Status: 401, Reason: strings.Repeat("é", 128)}},
		{"5xx", 500, `{"rooms":["x"]}`, nil, "server_error", closed},
		{"not JSON", 200, `rooms: x`, nil, "malformed", closed},
		{"trailing data", 200, `{} {}`, nil, "malformed", closed},
		{"meta not an object", 200, `{"meta":[1]}`, nil, "malformed", closed},
		{"meta too large", 200, `{"meta":{"a":"` + strings.Repeat("x", 4100) + `"}}`, nil, "malformed", closed},
		{"answer too large", 200, `{"meta":{}}` + strings.Repeat(" ", 4096+16<<10), nil, "malformed", closed},
		{"too many rooms", 200, `{"rooms":[` + strings.TrimSuffix(strings.Repeat(`"r",`, 65), ",") + `]}`, nil, "malformed", closed},
		{"empty room", 200, `{"rooms":[""]}`, nil, "malformed", closed},
		{"room too long", 200, `{"rooms":["` + strings.Repeat("r", 129) + `"]}`, nil, "malformed", closed},
		{"rooms not strings", 200, `{"rooms":[1]}`, nil, "malformed", closed},
		{"redirect", 302, ``, map[string]string{"Location": "/elsewhere"}, "malformed", closed},
		{"201", 201, `{}`, nil, "malformed", closed},
	} {
		for _, fail := range []string{FailClosed, FailOpen} {
			t.Run(tc.name+"/fail="+fail, func(t *testing.T) {
				mu.Lock()
				status, body, header = tc.status, tc.body, tc.header
				mu.Unlock()
				h := newHook(t, srv.URL, func(c *Config) { c.Fail = fail })
				d := check(t, h, context.Background(), request(t))
				want := tc.want
				if fail == FailOpen && want.Status == 503 {
					want = Decision{}
				}
				if !same(d, want) {
					t.Fatalf("decision %+v, want %+v", d, want)
				}
				if o := outcomes(t, h); o[tc.outcome] != 1 || len(o) != 1 {
					t.Fatalf("outcomes %v, want %s", o, tc.outcome)
				}
			})
		}
	}
}

// TestCheckFailures: a hook that does not answer in time, cannot be reached, or is
// over its bound in flight; a caller that gives up.
func TestCheckFailures(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 16)
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	defer close(release)
	closed := Decision{Status: 503, Reason: "connect hook unavailable", RetryAfter: 1}

	t.Run("timeout", func(t *testing.T) {
		h := newHook(t, slow.URL, func(c *Config) { c.Timeout = 200 * time.Millisecond })
		start := time.Now()
		if d := check(t, h, context.Background(), request(t)); d.Status != closed.Status || d.RetryAfter != 1 {
			t.Fatalf("decision %+v", d)
		}
		if el := time.Since(start); el < 200*time.Millisecond || el > 5*time.Second {
			t.Fatalf("took %v", el)
		}
		if o := outcomes(t, h); o["timeout"] != 1 {
			t.Fatalf("outcomes %v", o)
		}
		if v := testutil.Scrape(t, h.cfg.Metrics)["longlink_connect_hook_duration_seconds_count"]; v != 1 {
			t.Fatalf("latency count %v", v)
		}
	})
	t.Run("timeout/fail=open", func(t *testing.T) {
		h := newHook(t, slow.URL, func(c *Config) { c.Timeout = 200 * time.Millisecond; c.Fail = FailOpen })
		if d := check(t, h, context.Background(), request(t)); d.Status != 0 || d.Rooms != nil || d.Meta != "" {
			t.Fatalf("decision %+v", d)
		}
	})
	t.Run("unreachable", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		h := newHook(t, "http://"+addr+"/hook", nil)
		if d := check(t, h, context.Background(), request(t)); !same(d, closed) {
			t.Fatalf("decision %+v", d)
		}
		if o := outcomes(t, h); o["unreachable"] != 1 {
			t.Fatalf("outcomes %v", o)
		}
	})
	t.Run("overloaded and canceled", func(t *testing.T) {
		h := newHook(t, slow.URL, func(c *Config) { c.MaxInFlight = 2; c.Timeout = 5 * time.Second })
		ctx, cancel := context.WithCancel(context.Background())
		ch := make(chan Decision, 2)
		for range 2 {
			h.Check(ctx, request(t), func(d Decision) { ch <- d })
			<-arrived
		}
		testutil.WaitFor(t, 5*time.Second, "2 in flight", func() bool {
			return testutil.Scrape(t, h.cfg.Metrics)["longlink_connect_hook_inflight"] == 2
		})
		if d := check(t, h, context.Background(), request(t)); !same(d, closed) {
			t.Fatalf("over the bound: %+v", d)
		}
		cancel()
		<-ch
		<-ch
		testutil.WaitFor(t, 5*time.Second, "0 in flight", func() bool {
			return testutil.Scrape(t, h.cfg.Metrics)["longlink_connect_hook_inflight"] == 0
		})
		if o := outcomes(t, h); o["overloaded"] != 1 || o["canceled"] != 2 {
			t.Fatalf("outcomes %v", o)
		}
	})
}

func same(a, b Decision) bool {
	return a.Status == b.Status && a.Reason == b.Reason && a.RetryAfter == b.RetryAfter &&
		strings.Join(a.Rooms, ",") == strings.Join(b.Rooms, ",") && a.Meta == b.Meta
}

func TestNewValidates(t *testing.T) {
	for _, cfg := range []Config{
		{URL: ""}, {URL: "ftp://x/"}, {URL: "http://"}, {URL: "http://x/", Fail: "maybe"},
		{URL: "http://x/", Timeout: -1}, {URL: "http://x/", MaxInFlight: -1},
	} {
		cfg.Metrics = metrics.NewSet()
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
	h, err := New(Config{URL: "https://hooks.example/connect", Metrics: metrics.NewSet()})
	if err != nil {
		t.Fatal(err)
	}
	if c := h.Config(); c.Timeout != 2*time.Second || c.Fail != FailClosed || c.MaxInFlight != 1024 || c.MaxMeta != 4096 {
		t.Fatalf("defaults %+v", c)
	}
}

func TestClaims(t *testing.T) {
	for _, bad := range []string{"", "a.b", "a.!!.c", "a." + "bnVsbA" + ".c"} { // bnVsbA: "null"
		if _, err := Claims(bad); err == nil {
			t.Errorf("Claims(%q) accepted", bad)
		}
	}
	c, err := Claims(testutil.Token(t, secret, "7"))
	if err != nil || !strings.Contains(string(c), `"sub":"7"`) {
		t.Fatalf("%s %v", c, err)
	}
}
