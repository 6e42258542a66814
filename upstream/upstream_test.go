package upstream

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"longlink/internal/testutil"
)

func TestMain(m *testing.M) { os.Exit(testutil.Main(m, 10)) }

func TestParseBusiness(t *testing.T) {
	b, err := ParseBusiness("chat=http://127.0.0.1:9000/chat,timeout=2s,inflight=512,pool=64,secret=s3,subscribe=http://127.0.0.1:9000/sub,rate=20,burst=5,rooms=16,max-reply=1000")
	if err != nil {
		t.Fatal(err)
	}
	want := Business{Name: "chat", URL: "http://127.0.0.1:9000/chat", Timeout: 2 * time.Second, InFlight: 512, Pool: 64,
		Secret: "s3", SubscribeURL: "http://127.0.0.1:9000/sub", Rate: 20, Burst: 5, MaxRooms: 16, MaxReply: 1000}
	if b != want {
		t.Fatalf("got %+v\nwant %+v", b, want)
	}
	if s := b.String(); strings.Contains(s, "s3") || !strings.Contains(s, "secret=****") {
		t.Fatalf("String shows the secret: %s", s)
	}
	if again, err := ParseBusiness(strings.Replace(b.String(), "****", "s3", 1)); err != nil || again != b {
		t.Fatalf("String does not read back: %+v, %v", again, err)
	}
	d, err := ParseBusiness("game=https://game.internal/api")
	if err != nil || d.withDefaults().Timeout != BusinessDefaults().Timeout || d.withDefaults().Burst != 1 {
		t.Fatalf("defaults: %+v, %v", d.withDefaults(), err)
	}
	bad := map[string]string{
		"":                                     "want NAME=URL",
		"chat":                                 "want NAME=URL",
		"chat=":                                "URL is required",
		"c h=http://x/":                        "business name",
		"chat=ftp://x/":                        "http:// or https://",
		"chat=http:///path":                    "no host",
		"chat=http://x/,timeout=2x":            `timeout="2x"`,
		"chat=http://x/,timeout=-1s":           "must be positive",
		"chat=http://x/,inflight=0":            `inflight="0": must be positive`,
		"chat=http://x/,pool=many":             `pool="many": not a whole number`,
		"chat=http://x/,colour=red":            `unknown setting "colour"`,
		"chat=http://x/,timeout=1s,timeout=2s": "timeout given twice",
		"chat=http://x/,secret=":               "secret",
		"chat=http://x/,subscribe=nope":        `subscribe="nope"`,
		"chat=http://x/,rate=-3":               `rate="-3"`,
		"chat=http://x/,oops":                  `"oops" is not key=value`,
		"chat=http://x/,secret=hunter2,pool=0": `pool="0"`,
	}
	for spec, want := range bad {
		_, err := ParseBusiness(spec)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err = %v, want one saying %q", spec, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%q: the error shows the secret: %v", spec, err)
		}
	}
}

func TestNewRefusesDuplicates(t *testing.T) {
	b := Business{Name: "chat", URL: "http://127.0.0.1:1/"}
	if _, err := New(Config{NodeName: "n", Businesses: []Business{b, b}}); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Fatalf("err = %v", err)
	}
}

func newUp(t *testing.T, bs ...Business) (*Upstream, *metrics.Set) {
	t.Helper()
	set := metrics.NewSet()
	u, err := New(Config{NodeName: "n1", Businesses: bs, Metrics: set})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(u.Close)
	return u, set
}

// send runs one request and waits for its reply.
func send(t *testing.T, b *Biz, data string) Reply {
	t.Helper()
	ch := make(chan Reply, 1)
	var d []byte
	if data != "" {
		d = []byte(data)
	}
	if !b.Send(Caller{User: "42", Conn: "n1.a-1", Meta: `{"plan":"pro"}`}, []byte("7"), d, func(r Reply) { ch <- r }) {
		return b.Busy()
	}
	select {
	case r := <-ch:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("no reply within 10s")
	}
	return Reply{}
}

func TestSendContract(t *testing.T) {
	type seen struct {
		hdr  http.Header
		body map[string]any
		raw  []byte
	}
	got := make(chan seen, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		var m map[string]any
		json.Unmarshal(raw, &m)
		got <- seen{r.Header.Clone(), m, raw}
		switch m["data"].(map[string]any)["do"] {
		case "echo":
			w.WriteHeader(201)
			w.Write(raw)
		case "empty":
			w.WriteHeader(204)
		case "fail":
			w.WriteHeader(409)
			w.Write([]byte(`{"error":"taken"}`))
		case "text":
			w.Write([]byte("plain words"))
		case "big":
			w.Write([]byte(`"` + strings.Repeat("x", 2000) + `"`))
		}
	}))
	defer srv.Close()
	u, set := newUp(t, Business{Name: "chat", URL: srv.URL, Secret: "k3y", MaxReply: 1000})
	b := u.Business("chat")

	r := send(t, b, `{"do":"echo"}`)
	s := <-got
	if r.Status != 201 || string(r.Data) != string(s.raw) {
		t.Fatalf("echo: %+v", r)
	}
	wantBody := map[string]any{"business": "chat", "id": 7.0, "user": "42", "connection": "n1.a-1", "node": "n1",
		"meta": map[string]any{"plan": "pro"}, "data": map[string]any{"do": "echo"}}
	if b1, _ := json.Marshal(s.body); string(b1) != mustJSON(wantBody) {
		t.Fatalf("body %s, want %s", b1, mustJSON(wantBody))
	}
	ts := s.hdr.Get("X-Longlink-Timestamp")
	if s.hdr.Get("X-Longlink-Signature") != Sign("k3y", ts, s.raw) || ts == "" {
		t.Fatalf("signature %q over ts %q does not verify", s.hdr.Get("X-Longlink-Signature"), ts)
	}
	if s.hdr.Get("X-Longlink-Business") != "chat" || s.hdr.Get("X-Longlink-Node") != "n1" || s.hdr.Get("Content-Type") != "application/json" {
		t.Fatalf("headers %v", s.hdr)
	}

	f := func(data string, status int, reason string, wantData string) {
		t.Helper()
		r := send(t, b, data)
		<-got
		if r.Status != status || !strings.Contains(r.Reason, reason) || string(r.Data) != wantData {
			t.Fatalf("%s: %+v, want %d %q data %q", data, r, status, reason, wantData)
		}
	}
	f(`{"do":"empty"}`, 204, "", "")
	f(`{"do":"fail"}`, 502, "answered 409 Conflict", `{"error":"taken"}`)
	f(`{"do":"text"}`, 502, "not JSON", "")
	f(`{"do":"big"}`, 502, "larger than 1000 bytes", "")

	m := testutil.Scrape(t, set)
	for k, want := range map[string]float64{
		`longlink_upstream_requests_total{business="chat"}`:                    5,
		`longlink_upstream_replies_total{business="chat",status="201"}`:        1,
		`longlink_upstream_replies_total{business="chat",status="204"}`:        1,
		`longlink_upstream_replies_total{business="chat",status="502"}`:        3,
		`longlink_upstream_rejected_total{business="chat",reason="status"}`:    1,
		`longlink_upstream_rejected_total{business="chat",reason="not_json"}`:  1,
		`longlink_upstream_rejected_total{business="chat",reason="too_large"}`: 1,
		`longlink_upstream_duration_seconds_count{business="chat"}`:            5,
		`longlink_upstream_inflight{business="chat"}`:                          0,
	} {
		if m[k] != want {
			t.Errorf("%s = %v, want %v", k, m[k], want)
		}
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestSendFailures(t *testing.T) {
	release := make(chan struct{})
	stall := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer stall.Close()
	defer close(release)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + ln.Addr().String() + "/"
	ln.Close()
	u, set := newUp(t,
		Business{Name: "slow", URL: stall.URL, Timeout: 200 * time.Millisecond, InFlight: 1},
		Business{Name: "gone", URL: dead})
	if r := send(t, u.Business("slow"), `1`); r.Status != 504 || !strings.Contains(r.Reason, "within 200ms") {
		t.Fatalf("timeout: %+v", r)
	}
	if r := send(t, u.Business("gone"), ""); r.Status != 502 || !strings.Contains(r.Reason, "unreachable") {
		t.Fatalf("unreachable: %+v", r)
	}
	// One slot: a second request while the first stalls is refused at once.
	first := make(chan Reply, 1)
	if !u.Business("slow").Send(Caller{}, []byte("1"), nil, func(r Reply) { first <- r }) {
		t.Fatal("first request refused")
	}
	if u.Business("slow").Send(Caller{}, []byte("2"), nil, func(Reply) { t.Error("a refused request's callback ran") }) {
		t.Fatal("second request over inflight=1 was accepted")
	}
	if r := <-first; r.Status != 504 {
		t.Fatalf("first: %+v", r)
	}
	m := testutil.Scrape(t, set)
	if m[`longlink_upstream_rejected_total{business="slow",reason="inflight"}`] != 1 ||
		m[`longlink_upstream_rejected_total{business="slow",reason="timeout"}`] != 2 ||
		m[`longlink_upstream_rejected_total{business="gone",reason="unreachable"}`] != 1 {
		t.Fatalf("metrics: %v", m)
	}
}

// Close answers what is in flight with 503 at once rather than at its timeout.
func TestCloseCancels(t *testing.T) {
	// The handler reads the body first: only then does net/http watch the connection
	// and cancel r.Context() when the client goes; release ends it whatever happens,
	// so Close of the test server never waits for it.
	release := make(chan struct{})
	stall := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer stall.Close()
	defer close(release)
	u, err := New(Config{NodeName: "n1", Businesses: []Business{{Name: "slow", URL: stall.URL, Timeout: time.Minute}}})
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan Reply, 1)
	u.Business("slow").Send(Caller{}, []byte("1"), nil, func(r Reply) { ch <- r })
	testutil.WaitFor(t, 5*time.Second, "request in flight", func() bool { return u.Business("slow").slots.n.Load() == 1 })
	start := time.Now()
	u.Close()
	if r := <-ch; r.Status != 503 || time.Since(start) > 5*time.Second {
		t.Fatalf("after Close: %+v in %v", r, time.Since(start))
	}
}

func TestSubscribeHook(t *testing.T) {
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m struct{ Room, User string }
		json.NewDecoder(r.Body).Decode(&m)
		switch m.Room {
		case "chat/open":
			w.WriteHeader(200)
		case "chat/vip":
			w.WriteHeader(403)
			w.Write([]byte(`{"reason":"vip members only"}`))
		case "chat/text":
			w.WriteHeader(451)
			w.Write([]byte("not in your country"))
		default:
			w.WriteHeader(302)
		}
	}))
	defer hook.Close()
	u, _ := newUp(t, Business{Name: "chat", URL: hook.URL, SubscribeURL: hook.URL})
	ask := func(room string) Reply {
		ch := make(chan Reply, 1)
		if !u.Business("chat").Subscribe(Caller{User: "1"}, room, func(r Reply) { ch <- r }) {
			t.Fatal("no slot")
		}
		return <-ch
	}
	for room, want := range map[string]Reply{
		"chat/open":  {Status: 200},
		"chat/vip":   {Status: 403, Reason: "vip members only"},
		"chat/text":  {Status: 451, Reason: "not in your country"},
		"chat/other": {Status: 502, Reason: "subscribe hook of chat answered 302 Found"},
	} {
		if r := ask(room); r.Status != want.Status || r.Reason != want.Reason {
			t.Errorf("%s: %+v, want %+v", room, r, want)
		}
	}
	if b, ns := u.ForRoom("chat/x"); b == nil || !ns {
		t.Fatal("chat/x has business chat")
	}
	if b, ns := u.ForRoom("game/x"); b != nil || !ns {
		t.Fatal("game/x is namespaced by an unknown business")
	}
	if _, ns := u.ForRoom("lobby"); ns {
		t.Fatal("lobby has no business")
	}
}

// Requests run on kept goroutines: one after another they reuse one, at once they
// use one each up to InFlight, and Close ends them all (the package's TestMain
// checks that no goroutine is left).
func TestRequestGoroutinesKept(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/stall" {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
		w.Write([]byte(`{"ok":true}`))
	}))
	defer srv.Close()
	u, err := New(Config{NodeName: "n1", Businesses: []Business{
		{Name: "seq", URL: srv.URL + "/"}, {Name: "par", URL: srv.URL + "/stall", InFlight: 3}}})
	if err != nil {
		t.Fatal(err)
	}
	seq := u.Business("seq")
	for i := range 20 {
		if r := send(t, seq, `1`); r.Status != 200 {
			t.Fatalf("request %d: %+v", i, r)
		}
		// The callback runs before the goroutine waits for the next request: let it.
		testutil.WaitFor(t, 5*time.Second, "the kept goroutine to wait", func() bool { return seq.run.waiting.Load() == 1 && seq.run.workers.Load() == 1 })
	}
	par := u.Business("par")
	replies := make(chan Reply, 4)
	for i := range 3 {
		if !par.Send(Caller{}, []byte(strconv.Itoa(i)), nil, func(r Reply) { replies <- r }) {
			t.Fatalf("request %d of 3 refused", i)
		}
	}
	if par.Send(Caller{}, []byte("4"), nil, func(r Reply) { replies <- r }) {
		t.Fatal("a fourth request over inflight=3 was accepted")
	}
	testutil.WaitFor(t, 5*time.Second, "three requests in flight", func() bool { return par.slots.n.Load() == 3 })
	if n := par.run.workers.Load(); n != 3 {
		t.Fatalf("%d goroutines for 3 requests at once, want 3", n)
	}
	close(release)
	for range 3 {
		if r := <-replies; r.Status != 200 {
			t.Fatalf("stalled request: %+v", r)
		}
	}
	u.Close()
	if a, b := seq.run.workers.Load(), par.run.workers.Load(); a != 0 || b != 0 {
		t.Fatalf("after Close %d and %d request goroutines are left", a, b)
	}
}
