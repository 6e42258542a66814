package push

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/VictoriaMetrics/metrics"
)

// nopHub accepts every message and keeps nothing, so the benchmark measures
// the API alone.
type nopHub struct{ fakeHub }

func (*nopHub) Deliver(m *Message) (Result, error) { return Result{Delivered: 1}, nil }

func BenchmarkPushHandler(b *testing.B) {
	api, err := New(Config{NodeID: "bench", APIKeys: []string{"k"}, Hub: &nopHub{}, Metrics: metrics.NewSet(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	h := api.Handler()
	for _, c := range []struct {
		name string
		to   string
		data string
	}{
		{"users=1/size=16B", `{"users":["42"]}`, `"` + strings.Repeat("x", 16) + `"`},
		{"users=1/size=1KiB", `{"users":["42"]}`, `"` + strings.Repeat("x", 1024) + `"`},
		{"users=1/json=256B", `{"users":["42"]}`, `{"k":"` + strings.Repeat("y", 248) + `"}`},
		{"users=100/size=256B", `{"users":[` + ids(100) + `]}`, `"` + strings.Repeat("x", 256) + `"`},
		{"all/size=256B", `{"all":true}`, `"` + strings.Repeat("x", 256) + `"`},
	} {
		body := []byte(`{"to":` + c.to + `,"data":` + c.data + `}`)
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			rd := bytes.NewReader(body)
			req := httptest.NewRequest(http.MethodPost, "/v1/push", rd)
			req.Header.Set("Authorization", "Bearer k")
			req.Header.Set("Content-Type", "application/json")
			for b.Loop() {
				rd.Reset(body)
				r := req.Clone(req.Context()) // ServeMux sets path values on the request
				r.Body = readCloser{rd}
				w := httptest.NewRecorder()
				h.ServeHTTP(w, r)
				if w.Code != http.StatusAccepted {
					b.Fatalf("status %d: %s", w.Code, w.Body)
				}
			}
		})
	}
}

// BenchmarkServePush is the path the node's API server takes for POST /v1/push:
// the whole request already read, no net/http.
func BenchmarkServePush(b *testing.B) {
	api, err := New(Config{NodeID: "bench", APIKeys: []string{"k"}, Hub: &nopHub{}, Metrics: metrics.NewSet(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	body := []byte(`{"to":{"users":["42"]},"data":"` + strings.Repeat("x", 16) + `"}`)
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if status, _, answer := api.ServePush("Bearer k", "application/json", body, buf[:0]); status != http.StatusAccepted {
			b.Fatalf("status %d: %s", status, answer)
		}
	}
}

// BenchmarkPushHarness measures what BenchmarkPushHandler spends outside
// the API (request clone, recorder), to subtract from its figures.
func BenchmarkPushHarness(b *testing.B) {
	body := []byte(`{"to":{"users":["42"]},"data":"xxxxxxxxxxxxxxxx"}`)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusAccepted) })
	b.ReportAllocs()
	rd := bytes.NewReader(body)
	req := httptest.NewRequest(http.MethodPost, "/v1/push", rd)
	req.Header.Set("Authorization", "Bearer k")
	for b.Loop() {
		rd.Reset(body)
		r := req.Clone(req.Context())
		r.Body = readCloser{rd}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
	}
}

type readCloser struct{ *bytes.Reader }

func (readCloser) Close() error { return nil }

func ids(n int) string {
	var sb strings.Builder
	for i := 0; i < n; i++ {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(`"user-` + strconv.Itoa(i) + `"`)
	}
	return sb.String()
}
