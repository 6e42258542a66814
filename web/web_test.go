package web

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
)

// TestEmbeddedClientIsCurrent fails when static/longlink.js drifted from the client in
// clients/js: the demo must serve exactly the client users install.
func TestEmbeddedClientIsCurrent(t *testing.T) {
	src, err := os.ReadFile("../clients/js/longlink.js")
	if err != nil {
		t.Fatalf("cannot read the client source: %v", err)
	}
	embedded, err := staticFS.ReadFile("static/longlink.js")
	if err != nil {
		t.Fatalf("cannot read the embedded copy: %v", err)
	}
	if !bytes.Equal(src, embedded) {
		t.Fatal("web/static/longlink.js differs from clients/js/longlink.js; run `go generate ./web/` and rebuild")
	}
}

type recorder struct {
	mu     sync.Mutex
	bodies []string
}

func (r *recorder) push(body []byte) (int, []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.bodies = append(r.bodies, string(body))
	return http.StatusAccepted, []byte(`{"recipients":1}`)
}

func newServer(t *testing.T, cfg Config) *httptest.Server {
	t.Helper()
	h, err := NewHandler(cfg)
	if err != nil {
		t.Fatalf("NewHandler: %v", err)
	}
	mux := http.NewServeMux()
	mux.Handle(Prefix, h)
	mux.Handle(strings.TrimSuffix(Prefix, "/"), h)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

type response struct {
	status int
	header http.Header
	body   string
}

func do(t *testing.T, method, url string, body string, header map[string]string) response {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{res.StatusCode, res.Header, string(b)}
}

func TestStaticFiles(t *testing.T) {
	srv := newServer(t, Config{})
	f := func(path, wantType, wantBody string) {
		t.Helper()
		r := do(t, http.MethodGet, srv.URL+path, "", nil)
		if r.status != http.StatusOK {
			t.Fatalf("GET %s: status %d, body %s", path, r.status, r.body)
		}
		if got := r.header.Get("Content-Type"); got != wantType {
			t.Fatalf("GET %s: Content-Type %q, want %q", path, got, wantType)
		}
		if !strings.Contains(r.body, wantBody) {
			t.Fatalf("GET %s: body lacks %q", path, wantBody)
		}
		if r.header.Get("Content-Security-Policy") == "" || r.header.Get("ETag") == "" {
			t.Fatalf("GET %s: missing CSP or ETag: %v", path, r.header)
		}
		// The ETag lets a reload revalidate instead of downloading again.
		r2 := do(t, http.MethodGet, srv.URL+path, "", map[string]string{"If-None-Match": r.header.Get("ETag")})
		if r2.status != http.StatusNotModified {
			t.Fatalf("GET %s with If-None-Match: status %d, want 304", path, r2.status)
		}
	}
	f("/demo/", "text/html; charset=utf-8", `id="messages"`)
	f("/demo/app.js", "text/javascript; charset=utf-8", "import { LongLink } from './longlink.js'")
	f("/demo/longlink.js", "text/javascript; charset=utf-8", "export class LongLink")
	f("/demo/style.css", "text/css; charset=utf-8", "#status")

	for _, id := range []string{"status", "messages", "push-text", "push-send", "user"} {
		if r := do(t, http.MethodGet, srv.URL+"/demo/", "", nil); !strings.Contains(r.body, `id="`+id+`"`) {
			t.Errorf("page lacks element #%s the e2e test relies on", id)
		}
	}

	if r := do(t, http.MethodGet, srv.URL+"/demo", "", nil); r.status != http.StatusMovedPermanently || r.header.Get("Location") != "/demo/" {
		t.Fatalf("GET /demo: status %d Location %q, want 301 /demo/", r.status, r.header.Get("Location"))
	}
	if r := do(t, http.MethodGet, srv.URL+"/demo/nope.js", "", nil); r.status != http.StatusNotFound {
		t.Fatalf("GET /demo/nope.js: status %d, want 404", r.status)
	}
	if r := do(t, http.MethodPost, srv.URL+"/demo/", "", nil); r.status != http.StatusMethodNotAllowed || r.header.Get("Allow") != "GET, HEAD" {
		t.Fatalf("POST /demo/: status %d Allow %q, want 405 GET, HEAD", r.status, r.header.Get("Allow"))
	}
}

func TestPageConfig(t *testing.T) {
	f := func(cfg Config, want pageConfig) {
		t.Helper()
		srv := newServer(t, cfg)
		r := do(t, http.MethodGet, srv.URL+"/demo/config.json", "", nil)
		var got pageConfig
		if err := json.Unmarshal([]byte(r.body), &got); err != nil {
			t.Fatalf("config.json %q: %v", r.body, err)
		}
		if got != want {
			t.Fatalf("config.json = %+v, want %+v", got, want)
		}
	}
	f(Config{}, pageConfig{PushPath: "/demo/push"})
	f(Config{
		ClientURL:   "ws://127.0.0.1:8080/ws",
		EndpointURL: "http://127.0.0.1:8080/v1/endpoint",
		DevToken:    func(string) (string, error) { return "t", nil },
		Push:        func([]byte) (int, []byte) { return 202, nil },
		PushPath:    "/demo/send",
	}, pageConfig{
		ClientURL:   "ws://127.0.0.1:8080/ws",
		EndpointURL: "http://127.0.0.1:8080/v1/endpoint",
		DevToken:    true,
		Push:        true,
		PushPath:    "/demo/send",
	})
}

func TestInvalidConfig(t *testing.T) {
	f := func(cfg Config, wantField string) {
		t.Helper()
		_, err := NewHandler(cfg)
		if err == nil || !strings.Contains(err.Error(), wantField) {
			t.Fatalf("NewHandler(%+v) error %v, want one naming %s", cfg, err, wantField)
		}
	}
	f(Config{PushPath: "push"}, "PushPath")
	f(Config{MaxPushBody: -1}, "MaxPushBody")
	f(Config{ClientURL: "http://x/ws"}, "ClientURL")
	f(Config{ClientURL: "ws:///ws"}, "ClientURL")
	f(Config{EndpointURL: "ws://x/v1/endpoint"}, "EndpointURL")

	defer func() {
		if recover() == nil {
			t.Fatal("Handler did not panic on an invalid Config")
		}
	}()
	Handler(Config{PushPath: "x"})
}

func TestDevToken(t *testing.T) {
	var gotUser string
	srv := newServer(t, Config{DevToken: func(user string) (string, error) {
		gotUser = user
		if user == "fail" {
			return "", errors.New("secret missing")
		}
		return "jwt-for-" + user, nil
	}})
	r := do(t, http.MethodGet, srv.URL+"/demo/token?user=a%20b", "", nil)
	if r.status != http.StatusOK || gotUser != "a b" {
		t.Fatalf("status %d user %q body %s", r.status, gotUser, r.body)
	}
	var body map[string]string
	if err := json.Unmarshal([]byte(r.body), &body); err != nil || body["token"] != "jwt-for-a b" || body["user"] != "a b" {
		t.Fatalf("body %s (%v)", r.body, err)
	}
	if r.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("token response is cacheable: %v", r.header)
	}
	f := func(url string, method string, want int) {
		t.Helper()
		if r := do(t, method, srv.URL+url, "", nil); r.status != want {
			t.Fatalf("%s %s: status %d (%s), want %d", method, url, r.status, r.body, want)
		}
	}
	f("/demo/token", http.MethodGet, http.StatusBadRequest)
	f("/demo/token?user="+strings.Repeat("x", 129), http.MethodGet, http.StatusBadRequest)
	f("/demo/token?user="+strings.Repeat("x", 128), http.MethodGet, http.StatusOK)
	f("/demo/token?user=fail", http.MethodGet, http.StatusInternalServerError)
	f("/demo/token?user=1", http.MethodPost, http.StatusMethodNotAllowed)

	off := newServer(t, Config{})
	if r := do(t, http.MethodGet, off.URL+"/demo/token?user=1", "", nil); r.status != http.StatusNotFound {
		t.Fatalf("token with DevToken nil: status %d, want 404", r.status)
	}
}

func TestPushProxy(t *testing.T) {
	rec := &recorder{}
	srv := newServer(t, Config{Push: rec.push, MaxPushBody: 64})
	jsonCT := map[string]string{"Content-Type": "application/json"}
	body := `{"to":{"users":["42"]},"data":"hi"}`

	r := do(t, http.MethodPost, srv.URL+"/demo/push", body, jsonCT)
	if r.status != http.StatusAccepted || r.body != `{"recipients":1}` || r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("push: status %d body %q header %v", r.status, r.body, r.header)
	}
	sameOrigin := map[string]string{"Content-Type": "application/json; charset=utf-8", "Origin": srv.URL}
	if r := do(t, http.MethodPost, srv.URL+"/demo/push", body, sameOrigin); r.status != http.StatusAccepted {
		t.Fatalf("same-origin push: status %d %s", r.status, r.body)
	}

	f := func(method, reqBody string, header map[string]string, want int) {
		t.Helper()
		if r := do(t, method, srv.URL+"/demo/push", reqBody, header); r.status != want {
			t.Fatalf("%s push %q %v: status %d (%s), want %d", method, reqBody, header, r.status, r.body, want)
		}
	}
	f(http.MethodGet, "", nil, http.StatusMethodNotAllowed)
	f(http.MethodPost, body, map[string]string{"Content-Type": "text/plain"}, http.StatusUnsupportedMediaType)
	f(http.MethodPost, body, map[string]string{"Content-Type": "application/json", "Origin": "http://evil.example"}, http.StatusForbidden)
	f(http.MethodPost, strings.Repeat("x", 65), jsonCT, http.StatusRequestEntityTooLarge)
	f(http.MethodPost, strings.Repeat("x", 64), jsonCT, http.StatusAccepted)

	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.bodies) != 3 || rec.bodies[0] != body || rec.bodies[2] != strings.Repeat("x", 64) {
		t.Fatalf("forwarded bodies %q, want exactly the accepted requests' bodies", rec.bodies)
	}
}

func TestPushProxyDisabledAndBadStatus(t *testing.T) {
	jsonCT := map[string]string{"Content-Type": "application/json"}
	off := newServer(t, Config{})
	if r := do(t, http.MethodPost, off.URL+"/demo/push", "{}", jsonCT); r.status != http.StatusNotFound {
		t.Fatalf("push with Push nil: status %d, want 404", r.status)
	}
	bad := newServer(t, Config{Push: func([]byte) (int, []byte) { return 0, nil }})
	if r := do(t, http.MethodPost, bad.URL+"/demo/push", "{}", jsonCT); r.status != http.StatusBadGateway {
		t.Fatalf("push callback status 0: got %d, want 502", r.status)
	}
}
