package push

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/VictoriaMetrics/metrics"

	"longlink/internal/testutil"
)

func TestMetrics(t *testing.T) {
	e := newEnv(t, nil)
	e.expect(e.do("POST", "/v1/push", `{"to":{"users":["42"],"rooms":["r"]},"data":"hello"}`), 202)
	e.expect(e.do("POST", "/v1/push", `{"to":{"all":true,"connections":["c"]},"data_base64":"AAE="}`), 202)
	e.expect(e.do("POST", "/v1/push", `{"to":{}}`), 400)
	e.expect(e.do("POST", "/v1/push", `{}`, "Authorization", ""), 401)
	e.expect(e.do("GET", "/v1/users/42", ""), 200)
	e.expect(e.do("GET", "/v1/users/404", ""), 404)
	e.expect(e.do("GET", "/v1/nowhere", ""), 404)
	e.expect(e.do("POST", "/v1/push/batch", `{"messages":[{"to":{"all":true},"data":"abc"},{"data":"x"}]}`), 200)

	got := testutil.Scrape(t, e.set)
	want := map[string]float64{
		`longlink_pushes_total{target="user"}`:                                     1,
		`longlink_pushes_total{target="room"}`:                                     1,
		`longlink_pushes_total{target="connection"}`:                               1,
		`longlink_pushes_total{target="all"}`:                                      2,
		`longlink_push_recipients_total`:                                           9, // fake hub delivers to 3 each
		`longlink_push_bytes_total`:                                                5 + 2 + 3,
		`longlink_push_errors_total{reason="bad_request"}`:                         2, // bad push + bad batch element
		`longlink_push_errors_total{reason="unauthorized"}`:                        1,
		`longlink_push_errors_total{reason="not_found"}`:                           2,
		`longlink_push_errors_total{reason="too_large"}`:                           0,
		`longlink_push_errors_total{reason="hub"}`:                                 0,
		`longlink_api_requests_total{route="/v1/push",code="202"}`:                 2,
		`longlink_api_requests_total{route="/v1/push",code="400"}`:                 1,
		`longlink_api_requests_total{route="/v1/push",code="401"}`:                 1,
		`longlink_api_requests_total{route="/v1/users/{id}",code="200"}`:           1,
		`longlink_api_requests_total{route="/v1/users/{id}",code="404"}`:           1,
		`longlink_api_requests_total{route="unmatched",code="404"}`:                1,
		`longlink_api_requests_total{route="/v1/push/batch",code="200"}`:           1,
		`longlink_api_request_duration_seconds_count{route="/v1/push"}`:            4,
		`longlink_api_request_duration_seconds_bucket{route="/v1/push",le="+Inf"}`: 4,
		`longlink_api_request_duration_seconds_count{route="/v1/stats"}`:           0,
	}
	for k, w := range want {
		g, ok := got[k]
		if !ok {
			t.Errorf("missing series %s", k)
		} else if g != w {
			t.Errorf("%s = %v, want %v", k, g, w)
		}
	}
}

func TestNewValidates(t *testing.T) {
	hub := newFakeHub()
	f := func(cfg Config, want string) {
		t.Helper()
		cfg.Metrics = metrics.NewSet()
		_, err := New(cfg)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("New(%+v) error %v, want it to contain %q", cfg, err, want)
		}
	}
	f(Config{APIKeys: []string{"k"}}, "Config.Hub is required")
	f(Config{Hub: hub}, "Config.APIKeys must hold at least one key")
	f(Config{Hub: hub, APIKeys: []string{"k", ""}}, "Config.APIKeys[1] is empty")
	f(Config{Hub: hub, APIKeys: []string{"k "}}, "Config.APIKeys[0] has leading or trailing whitespace")
	f(Config{Hub: hub, APIKeys: []string{"k"}, MaxBodyBytes: -1}, "Config.MaxBodyBytes is -1")
	f(Config{Hub: hub, APIKeys: []string{"k"}, MaxBatch: -1}, "Config.MaxBatch is -1")
	f(Config{Hub: hub, APIKeys: []string{"k"}, MaxTargets: -1}, "Config.MaxTargets is -1")

	a, err := New(Config{Hub: hub, APIKeys: []string{"k"}, Metrics: metrics.NewSet(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if a.maxBody != 1<<20 || a.maxBatch != 1000 || a.maxTargets != 10000 {
		t.Fatalf("defaults: body %d batch %d targets %d", a.maxBody, a.maxBatch, a.maxTargets)
	}
	if id := a.nextID(); len(id) != 6+1+16 {
		t.Fatalf("id with default NodeID %q, want 6 hex digits, '-', 16 hex digits", id)
	}
}
