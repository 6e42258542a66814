package push

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/VictoriaMetrics/metrics"
)

// fuzzHub keeps only the messages of the request being fuzzed, so a long run does
// not grow, and fails on two magic targets so hub errors are reachable.
type fuzzHub struct {
	fakeHub
	mu        sync.Mutex
	delivered []*Message
}

func (h *fuzzHub) Deliver(m *Message) (Result, error) {
	for _, r := range m.To.Rooms {
		if r == "boom" {
			return Result{}, statusError{http.StatusServiceUnavailable}
		}
	}
	for _, u := range m.To.Users {
		if u == "boom" {
			return Result{}, errBoom
		}
	}
	kept := *m // m.Data may alias the request body
	kept.Data = bytes.Clone(m.Data)
	h.mu.Lock()
	h.delivered = append(h.delivered, &kept)
	h.mu.Unlock()
	return Result{Delivered: 1}, nil
}

func (h *fuzzHub) take() []*Message {
	h.mu.Lock()
	defer h.mu.Unlock()
	d := h.delivered
	h.delivered = nil
	return d
}

// Small limits so the fuzzer reaches every one of them.
const (
	fuzzMaxBody    = 4 << 10
	fuzzMaxBatch   = 4
	fuzzMaxTargets = 8
)

// fuzzAPI is one API per fuzzing process: building one (and its metrics) per input
// would cost more than the request.
var fuzzAPI = sync.OnceValues(func() (*API, *fuzzHub) {
	hub := &fuzzHub{}
	a, err := New(Config{NodeID: "fz", APIKeys: []string{"k"}, Hub: hub, MaxBodyBytes: fuzzMaxBody,
		MaxBatch: fuzzMaxBatch, MaxTargets: fuzzMaxTargets, Metrics: metrics.NewSet(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		panic(err)
	}
	return a, hub
})

// checkErrorAnswer fails t unless answer is exactly the API's error shape for status.
func checkErrorAnswer(t *testing.T, what string, status int, answer []byte) {
	t.Helper()
	var e map[string]any
	if err := json.Unmarshal(answer, &e); err != nil {
		t.Fatalf("%s: %d answer is not JSON (%v): %q", what, status, err, answer)
	}
	msg, _ := e["error"].(string)
	if len(e) != 2 || msg == "" || e["status"] != float64(status) {
		t.Fatalf("%s: %d answer is not {\"error\":...,\"status\":%d}: %q", what, status, status, answer)
	}
}

// checkDelivered fails t unless m is the message encoding/json reads from req.
func checkDelivered(t *testing.T, what string, m *Message, req pushRequest) {
	t.Helper()
	if !reflect.DeepEqual(m.To, req.To) {
		t.Fatalf("%s: hub got targets %#v, encoding/json reads %#v", what, m.To, req.To)
	}
	var want []byte
	binary := false
	switch data, b64 := present(req.Data), present(req.DataBase64); {
	case data != nil && data[0] == '"':
		var s string
		if err := json.Unmarshal(data, &s); err != nil {
			t.Fatalf("%s: data %q: %v", what, data, err)
		}
		want = []byte(s)
	case data != nil:
		want = data
	case b64 != nil:
		var s string
		if err := json.Unmarshal(b64, &s); err != nil {
			t.Fatalf("%s: data_base64 %q: %v", what, b64, err)
		}
		var err error
		if want, err = base64.StdEncoding.DecodeString(s); err != nil {
			if want, err = base64.RawStdEncoding.DecodeString(s); err != nil {
				t.Fatalf("%s: accepted data_base64 %q that is not base64: %v", what, s, err)
			}
		}
		binary = true
	default:
		t.Fatalf("%s: accepted a push without data", what)
	}
	if !bytes.Equal(m.Data, want) || m.Binary != binary {
		t.Fatalf("%s: hub got data %q (binary %v), encoding/json reads %q (binary %v)", what, m.Data, m.Binary, want, binary)
	}
}

// serveRoute runs one request through Handler, the net/http route.
func serveRoute(a *API, path, contentType string, body []byte) (int, []byte) {
	r := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
	r.Header.Set("Authorization", "Bearer k")
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	w := httptest.NewRecorder()
	a.Handler().ServeHTTP(w, r)
	return w.Code, w.Body.Bytes()
}

var fuzzContentTypes = []string{"", "application/json", "application/json; charset=utf-8",
	"application/x-www-form-urlencoded", "text/plain", "APPLICATION/JSON ;", ";"}

// FuzzServePush drives the whole push path, ServePush as the node's API server
// calls it, from an arbitrary body and Content-Type. It must never panic; every
// error answer is the JSON error shape; a 202 is given only for a body encoding/json
// accepts, and the hub receives what encoding/json reads from it; the net/http route
// answers the same.
func FuzzServePush(f *testing.F) {
	for i, s := range append(append([]string{}, fastAccepted...), fastRejected...) {
		f.Add([]byte(s), fuzzContentTypes[i%len(fuzzContentTypes)])
	}
	f.Add([]byte(`{"to":{"rooms":["boom"]},"data":"x"}`), "")
	f.Add([]byte(`{"to":{"users":["boom"]},"data":"x"}`), "")
	f.Add([]byte(`{"to":{"users":["a","b","c","d","e","f","g","h","i"]},"data":"x"}`), "")
	f.Add([]byte(`{"to":{"all":true},"data_base64":"eA"}`), "application/json")
	f.Add([]byte(`{"to":{"all":true},"data_base64":"e A"}`), "application/json")
	f.Add([]byte(`{"to":{"all":true},"data":"`+strings.Repeat("x", fuzzMaxBody)+`"}`), "")
	f.Fuzz(func(t *testing.T, body []byte, contentType string) {
		a, hub := fuzzAPI()
		orig := bytes.Clone(body)
		status, www, answer := a.ServePush("Bearer k", contentType, body, nil)
		if !bytes.Equal(body, orig) {
			t.Fatalf("ServePush modified the body")
		}
		delivered := hub.take()
		what := "ServePush " + strconv.Quote(contentType) + " " + strconv.Quote(string(orig))
		if www != "" {
			t.Fatalf("%s: WWW-Authenticate %q with a valid key", what, www)
		}
		if status/100 != 2 {
			checkErrorAnswer(t, what, status, answer)
			if len(delivered) != 0 {
				t.Fatalf("%s: %d answer, yet the hub got %d messages", what, status, len(delivered))
			}
		} else {
			req, ok := decodePushJSON(orig)
			if status != http.StatusAccepted || !ok {
				t.Fatalf("%s: %d %q for a body encoding/json rejects (%v)", what, status, answer, !ok)
			}
			var res struct {
				ID        *string `json:"id"`
				Delivered *int    `json:"delivered"`
			}
			if json.Unmarshal(answer, &res) != nil || res.ID == nil || res.Delivered == nil || len(delivered) != 1 {
				t.Fatalf("%s: 202 answer %q, %d messages delivered", what, answer, len(delivered))
			}
			checkDelivered(t, what, delivered[0], req)
		}

		// The net/http route must answer alike (hub errors name the message id,
		// which differs).
		rstatus, ranswer := serveRoute(a, "/v1/push", contentType, orig)
		hub.take()
		if rstatus != status || (status/100 == 4 && !bytes.Equal(ranswer, answer)) {
			t.Fatalf("%s: ServePush answered %d %q, the route %d %q", what, status, answer, rstatus, ranswer)
		}
	})
}

// FuzzServeBatch drives POST /v1/push/batch from an arbitrary body and Content-Type.
// It must never panic; an error answer is the JSON error shape; a 200 is given only
// for a body encoding/json reads as a batch, with one result per message in order,
// each a delivery (of a message encoding/json accepts, delivered as it reads it) or
// that message's own JSON error.
func FuzzServeBatch(f *testing.F) {
	one := `{"to":{"all":true},"data":"x"}`
	for _, s := range []string{
		`{"messages":[` + one + `]}`,
		`{"messages":[` + one + `,{"to":{},"data":"bad"},{"to":{"rooms":["lobby"]},"data_base64":"dHdv"}]}`,
		`{"messages":[{"to":{"users":["42"]},"data":"x","extra":1},{"to":{"users":[""]},"data":"x"}]}`,
		`{"messages":[{"to":{"rooms":["boom"]},"data":"x"},{"to":{"users":["boom"]},"data":{"n":3}}]}`,
		`{"messages":[` + one + `,` + one + `,` + one + `,` + one + `,` + one + `]}`,
		`{"messages":[]}`, `{}`, `{"messages":{}}`, `{"messages":[1,"x",null,[]]}`,
		`{"messages":[` + one + `,{"to":}]}`, `{"messages":[]} {}`, ``, `null`,
	} {
		for _, ct := range fuzzContentTypes[:2] {
			f.Add([]byte(s), ct)
		}
	}
	f.Add([]byte(`{"messages":[`+one+`]}`), "text/plain")
	f.Fuzz(func(t *testing.T, body []byte, contentType string) {
		a, hub := fuzzAPI()
		status, answer := serveRoute(a, "/v1/push/batch", contentType, body)
		delivered := hub.take()
		what := "batch " + strconv.Quote(contentType) + " " + strconv.Quote(string(body))
		if status != http.StatusOK {
			checkErrorAnswer(t, what, status, answer)
			if len(delivered) != 0 {
				t.Fatalf("%s: %d answer, yet the hub got %d messages", what, status, len(delivered))
			}
			return
		}
		var req batchRequest
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			t.Fatalf("%s: 200 for a body encoding/json rejects: %v", what, err)
		}
		if _, err := dec.Token(); err != io.EOF {
			t.Fatalf("%s: 200 for a body with data after the JSON value", what)
		}
		var res struct {
			Results []map[string]any `json:"results"`
		}
		if err := json.Unmarshal(answer, &res); err != nil || len(res.Results) != len(req.Messages) ||
			len(req.Messages) == 0 || len(req.Messages) > fuzzMaxBatch {
			t.Fatalf("%s: 200 answer %q for %d messages (%v)", what, answer, len(req.Messages), err)
		}
		for i, r := range res.Results {
			if id, ok := r["id"].(string); ok && id != "" {
				pr, ok := decodePushJSON(req.Messages[i])
				if !ok || r["error"] != nil || len(delivered) == 0 {
					t.Fatalf("%s: message %d delivered (%v), encoding/json accepts it: %v", what, i, r, ok)
				}
				checkDelivered(t, what+" message "+strconv.Itoa(i), delivered[0], pr)
				delivered = delivered[1:]
				continue
			}
			msg, _ := r["error"].(string)
			code, _ := r["status"].(float64)
			if len(r) != 2 || !strings.HasPrefix(msg, "messages["+strconv.Itoa(i)+"]: ") || code < 400 || code > 599 {
				t.Fatalf("%s: result %d is neither a delivery nor an error: %v", what, i, r)
			}
		}
		if len(delivered) != 0 {
			t.Fatalf("%s: the hub got %d messages no result reports", what, len(delivered))
		}
	})
}
