package push

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/VictoriaMetrics/metrics"

	"longlink/internal/testutil"
)

type env struct {
	t   *testing.T
	srv *httptest.Server
	hub *fakeHub
	set *metrics.Set
	api *API
}

func newEnv(t *testing.T, mod func(*Config)) *env {
	t.Helper()
	e := &env{t: t, hub: newFakeHub(), set: metrics.NewSet()}
	cfg := Config{NodeID: "n1", APIKeys: []string{"key-one", "key-two"}, Hub: e.hub, Metrics: e.set, Logger: slog.New(slog.DiscardHandler)}
	if mod != nil {
		mod(&cfg)
	}
	api, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	e.api = api
	e.srv = httptest.NewServer(api.Handler())
	t.Cleanup(e.srv.Close)
	return e
}

type response struct {
	status int
	header http.Header
	body   []byte
	json   map[string]any
}

// do sends a request with the first API key unless headers say otherwise.
// headers are name, value pairs; a value of "" removes the header.
func (e *env) do(method, path, body string, headers ...string) response {
	e.t.Helper()
	res := testutil.Do(e.t, method, e.srv.URL+path, body, append(testutil.Bearer("key-one"), headers...)...)
	r := response{status: res.Status, header: res.Header, body: []byte(res.Raw), json: res.Body}
	if method != http.MethodHead {
		if ct := r.header.Get("Content-Type"); ct != "application/json" {
			e.t.Fatalf("%s %s: Content-Type %q, want application/json; body %s", method, path, ct, r.body)
		}
		if res.JSONErr != nil {
			e.t.Fatalf("%s %s: response is not a JSON object: %v: %s", method, path, res.JSONErr, r.body)
		}
	}
	return r
}

func (e *env) expect(r response, status int) {
	e.t.Helper()
	if r.status != status {
		e.t.Fatalf("status %d, want %d; body %s", r.status, status, r.body)
	}
}

// expectError checks status and the exact error text and the status field.
func (e *env) expectError(r response, status int, msg string) {
	e.t.Helper()
	e.expect(r, status)
	if got := r.json["error"]; got != msg {
		e.t.Fatalf("error %q, want %q", got, msg)
	}
	if got := r.json["status"]; got != float64(status) {
		e.t.Fatalf("status field %v, want %d", got, status)
	}
}

func TestPushTargetsReachHubAsPosted(t *testing.T) {
	e := newEnv(t, nil)
	cases := []struct {
		to   string
		want Target
	}{
		{`{"users":["42"]}`, Target{Users: []string{"42"}}},
		{`{"connections":["c1","c2"]}`, Target{Connections: []string{"c1", "c2"}}},
		{`{"rooms":["lobby"]}`, Target{Rooms: []string{"lobby"}}},
		{`{"all":true}`, Target{All: true}},
		{`{"users":["42","7"],"connections":["c9"],"rooms":["r1","r2"],"all":false,"users":["42","7"]}`,
			Target{Users: []string{"42", "7"}, Connections: []string{"c9"}, Rooms: []string{"r1", "r2"}}},
		{`{"users":["a"],"all":true}`, Target{Users: []string{"a"}, All: true}},
	}
	for i, c := range cases {
		r := e.do("POST", "/v1/push", `{"to":`+c.to+`,"data":"hi"}`)
		e.expect(r, http.StatusAccepted)
		got := e.hub.Delivered()
		if len(got) != i+1 {
			t.Fatalf("case %d: hub got %d messages, want %d", i, len(got), i+1)
		}
		m := got[i]
		if !reflect.DeepEqual(m.To, c.want) {
			t.Errorf("case %d: hub got targets %+v, want %+v", i, m.To, c.want)
		}
		if m.ID == "" || r.json["id"] != m.ID || !strings.HasPrefix(m.ID, "n1-") {
			t.Errorf("case %d: response id %v, hub id %q", i, r.json["id"], m.ID)
		}
		if m.Accepted == 0 {
			t.Errorf("case %d: Accepted not set", i)
		}
		if r.json["delivered"] != float64(3) || r.json["forwarded"] != float64(1) {
			t.Errorf("case %d: response %s", i, r.body)
		}
	}
	// Offline users are reported; connected ones are not.
	r := e.do("POST", "/v1/push", `{"to":{"users":["42","nobody"]},"data":"x"}`)
	e.expect(r, http.StatusAccepted)
	if off, _ := r.json["offline_users"].([]any); len(off) != 1 || off[0] != "nobody" {
		t.Fatalf("offline_users = %v; body %s", r.json["offline_users"], r.body)
	}
	if _, ok := (e.do("POST", "/v1/push", `{"to":{"users":["42"]},"data":"x"}`)).json["offline_users"]; ok {
		t.Fatal("offline_users present although every user is online")
	}
}

func TestPushDataBytesExact(t *testing.T) {
	e := newEnv(t, nil)
	cases := []struct {
		field, value string
		want         string
		binary       bool
	}{
		{"data", `"hello"`, "hello", false},
		{"data", `""`, "", false},
		{"data", `"a\"b\n\u00e9\/"`, "a\"b\né/", false},
		{"data", `"héllo 🌍"`, "héllo 🌍", false},
		{"data", `{"a": 1, "b":[1, 2]}`, `{"a": 1, "b":[1, 2]}`, false},
		{"data", `12.50`, `12.50`, false},
		{"data", `[true,null]`, `[true,null]`, false},
		{"data", `false`, `false`, false},
		{"data", "  {\"x\":\"y\"}\n ", `{"x":"y"}`, false},
		{"data_base64", `"AAEC/w=="`, "\x00\x01\x02\xff", true},
		{"data_base64", `"AAEC/w"`, "\x00\x01\x02\xff", true},
		{"data_base64", `"AAEC\/w=="`, "\x00\x01\x02\xff", true},
		{"data_base64", `""`, "", true},
	}
	for i, c := range cases {
		r := e.do("POST", "/v1/push", `{"to":{"all":true},"`+c.field+`":`+c.value+`}`)
		e.expect(r, http.StatusAccepted)
		msgs := e.hub.Delivered()
		m := msgs[len(msgs)-1]
		if string(m.Data) != c.want || m.Binary != c.binary {
			t.Errorf("case %d %s=%s: hub got %q binary=%v, want %q binary=%v", i, c.field, c.value, m.Data, m.Binary, c.want, c.binary)
		}
	}
	// data: null counts as absent, so data_base64 alone decides.
	e.expect(e.do("POST", "/v1/push", `{"to":{"all":true},"data":null,"data_base64":"aGk="}`), http.StatusAccepted)
	if m := e.hub.Delivered()[len(cases)]; string(m.Data) != "hi" || !m.Binary {
		t.Fatalf("data:null + data_base64: got %q binary=%v", m.Data, m.Binary)
	}
}

func TestPushIDsIncrease(t *testing.T) {
	e := newEnv(t, nil)
	prev := ""
	for i := 0; i < 20; i++ {
		id := e.api.nextID()
		if len(id) != len("n1-")+16 || id <= prev {
			t.Fatalf("id %q after %q: want fixed width and increasing", id, prev)
		}
		prev = id
	}
}

func TestBatch(t *testing.T) {
	e := newEnv(t, nil)
	body := `{"messages":[
		{"to":{"users":["42"]},"data":"one"},
		{"to":{},"data":"bad"},
		{"to":{"rooms":["lobby"]},"data_base64":"dHdv"},
		{"to":{"users":["42"]},"data":"x","extra":1},
		{"to":{"users":[""]},"data":"x"},
		{"to":{"all":true},"data":{"n":3}}
	]}`
	r := e.do("POST", "/v1/push/batch", body)
	e.expect(r, http.StatusOK)
	results, _ := r.json["results"].([]any)
	if len(results) != 6 {
		t.Fatalf("results: %s", r.body)
	}
	wantErr := map[int]string{
		1: "messages[1]: to must name at least one of users, connections, rooms, all",
		3: `messages[3]: unknown field "extra"; the fields are to (users, connections, rooms, all), data, data_base64, ttl, history, id, ack, receipt, wait`,
		4: "messages[4]: to.users[0] is empty",
	}
	var ids []string
	for i, res := range results {
		m := res.(map[string]any)
		if want, bad := wantErr[i]; bad {
			if m["error"] != want || m["status"] != float64(400) || m["id"] != nil {
				t.Errorf("result %d = %v, want error %q", i, m, want)
			}
			continue
		}
		if m["error"] != nil || m["delivered"] != float64(3) {
			t.Errorf("result %d = %v, want success", i, m)
		}
		ids = append(ids, m["id"].(string))
	}
	got := e.hub.Delivered()
	if len(got) != 3 || string(got[0].Data) != "one" || string(got[1].Data) != "two" || !got[1].Binary || string(got[2].Data) != `{"n":3}` {
		t.Fatalf("hub got %d messages: %+v", len(got), got)
	}
	for i, m := range got {
		if m.ID != ids[i] || (i > 0 && ids[i] <= ids[i-1]) {
			t.Errorf("message %d id %q, results ids %v", i, m.ID, ids)
		}
	}
}

func TestBatchRejectedWhole(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxBatch = 2 })
	one := `{"to":{"all":true},"data":"x"}`
	e.expectError(e.do("POST", "/v1/push/batch", `{"messages":[`+one+`,`+one+`,`+one+`]}`), 400, "messages holds 3 messages, the limit is 2")
	e.expectError(e.do("POST", "/v1/push/batch", `{"messages":[]}`), 400, "messages must hold at least one message")
	e.expectError(e.do("POST", "/v1/push/batch", `{}`), 400, "messages must hold at least one message")
	e.expectError(e.do("POST", "/v1/push/batch", `{"messages":[`+one+`,{"to":}]}`), 400, "invalid JSON at byte offset 51: invalid character '}' looking for beginning of value")
	e.expectError(e.do("POST", "/v1/push/batch", `{"messages":{}}`), 400, "messages: expected an array, got a JSON object at byte offset 13")
	if n := len(e.hub.Calls()); n != 0 {
		t.Fatalf("hub called %d times for rejected batches", n)
	}
}

func TestRoomJoinLeave(t *testing.T) {
	e := newEnv(t, nil)
	r := e.do("POST", "/v1/rooms/chess/join", `{"users":["42","43","42"]}`)
	e.expect(r, http.StatusOK)
	if r.json["room"] != "chess" || r.json["users"] != float64(2) || r.json["connections"] != float64(2) {
		t.Fatalf("join response %s", r.body)
	}
	r = e.do("POST", "/v1/rooms/chess/leave", `{"users":["43"]}`)
	e.expect(r, http.StatusOK)
	if r.json["users"] != float64(1) || r.json["connections"] != float64(1) {
		t.Fatalf("leave response %s", r.body)
	}
	want := []string{"online", "join chess 42 43", "online", "leave chess 43"}
	if got := e.hub.Calls(); !reflect.DeepEqual(got, want) {
		t.Fatalf("hub calls %q, want %q", got, want)
	}

	// Unknown users: 404 naming them, and the hub is never asked to apply.
	for _, op := range []string{"join", "leave"} {
		r = e.do("POST", "/v1/rooms/chess/"+op, `{"users":["42","ghost","spook"]}`)
		e.expectError(r, http.StatusNotFound, `cannot `+op+` room "chess": 2 users are not connected: "ghost", "spook"; nothing was changed`)
		if u, _ := r.json["users"].([]any); len(u) != 2 || u[0] != "ghost" || u[1] != "spook" {
			t.Fatalf("users field %v", r.json["users"])
		}
	}
	want = append(want, "online", "online")
	if got := e.hub.Calls(); !reflect.DeepEqual(got, want) {
		t.Fatalf("hub calls %q, want %q", got, want)
	}

	e.expectError(e.do("POST", "/v1/rooms/chess/join", `{"users":[]}`), 400, "users must name at least one user")
	e.expectError(e.do("POST", "/v1/rooms/chess/join", `{"users":["42",""]}`), 400, "users[1] is empty")
	e.expectError(e.do("POST", "/v1/rooms/"+strings.Repeat("r", 257)+"/join", `{"users":["42"]}`), 400, "room is 257 bytes long, the limit is 256")
	if got := e.hub.Calls(); len(got) != len(want) {
		t.Fatalf("hub called for invalid requests: %q", got[len(want):])
	}
}

func TestPresence(t *testing.T) {
	e := newEnv(t, nil)
	r := e.do("GET", "/v1/users/42", "")
	e.expect(r, http.StatusOK)
	want := `{"user":"42","connections":[{"id":"c1","user":"42","node":"n1","remote":"10.0.0.1:5000","device":"ios","since":"2026-11-23T03:00:00.123456789Z","rooms":["lobby"]}]}`
	if string(r.body) != want {
		t.Fatalf("GET user:\n got %s\nwant %s", r.body, want)
	}
	r = e.do("GET", "/v1/users/43", "")
	if !bytes.Contains(r.body, []byte(`"rooms":[]`)) {
		t.Fatalf("rooms should be [] not null: %s", r.body)
	}
	e.expectError(e.do("GET", "/v1/users/99", ""), 404, `user "99" is not connected`)

	r = e.do("GET", "/v1/rooms/lobby", "")
	e.expect(r, 200)
	if string(r.body) != `{"room":"lobby","members":1,"connections":1,"nodes":{"n1":1}}` {
		t.Fatalf("GET room: %s", r.body)
	}
	r = e.do("GET", "/v1/rooms/empty", "")
	e.expect(r, 200)
	if string(r.body) != `{"room":"empty","members":0,"connections":0,"nodes":{}}` {
		t.Fatalf("GET empty room: %s", r.body)
	}
	r = e.do("GET", "/v1/stats", "")
	e.expect(r, 200)
	if string(r.body) != `{"connections":2,"users":2}` {
		t.Fatalf("GET stats: %s", r.body)
	}
	// HEAD is served by the GET handler (status only).
	if r := e.do("HEAD", "/v1/stats", ""); r.status != 200 {
		t.Fatalf("HEAD stats: %d", r.status)
	}
}

func TestKicks(t *testing.T) {
	e := newEnv(t, nil)
	r := e.do("DELETE", "/v1/connections/c1?reason=bye", "")
	e.expect(r, 200)
	if string(r.body) != `{"closed":1}` {
		t.Fatalf("kick connection: %s", r.body)
	}
	e.expect(e.do("DELETE", "/v1/users/43", `{"reason":"banned"}`), 200)
	e.expect(e.do("DELETE", "/v1/users/42", ""), 200)
	e.hub.mu.Lock()
	kicked := append([]string(nil), e.hub.kicked...)
	e.hub.mu.Unlock()
	if want := []string{"c1:bye", "c2:banned", "c1:kicked"}; !reflect.DeepEqual(kicked, want) {
		t.Fatalf("kicked %q, want %q", kicked, want)
	}
	e.expectError(e.do("DELETE", "/v1/connections/zz", ""), 404, `connection "zz" not found`)
	e.expectError(e.do("DELETE", "/v1/users/zz", ""), 404, `user "zz" is not connected`)
	e.expectError(e.do("DELETE", "/v1/users/42", `{"reason":"`+strings.Repeat("x", 124)+`"}`), 400, "reason is 124 bytes long, a close frame holds at most 123")
	e.expectError(e.do("DELETE", "/v1/users/42", `{"why":"x"}`), 400, `unknown field "why"; the fields are reason`)
}

func TestErrors(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxTargets = 3 })
	cases := []struct {
		method, path, body string
		headers            []string
		status             int
		msg                string
	}{
		{"POST", "/v1/push", "", nil, 400, "request body is empty; expected a JSON object"},
		{"POST", "/v1/push", `{"to":{"all":true},"data":"x"`, nil, 400, "invalid JSON: the body ends at byte offset 29 in the middle of a value"},
		{"POST", "/v1/push", `{"to":{"all":true},,"data":"x"}`, nil, 400, "invalid JSON at byte offset 20: invalid character ',' looking for beginning of object key string"},
		{"POST", "/v1/push", `[1]`, nil, 400, "expected a JSON object, got a JSON array at byte offset 1"},
		{"POST", "/v1/push", `{"to":{"all":true},"data":"x"} {}`, nil, 400, "unexpected data after the JSON object, which ends at byte offset 30"},
		{"POST", "/v1/push", `{"to":{"user":["42"]},"data":"x"}`, nil, 400, `unknown field "user"; the fields are to (users, connections, rooms, all), data, data_base64, ttl, history, id, ack, receipt, wait`},
		{"POST", "/v1/push", `{"to":{"users":[42]},"data":"x"}`, nil, 400, "to.users: expected a string, got a JSON number at byte offset 18"},
		{"POST", "/v1/push", `{"to":"42","data":"x"}`, nil, 400, "to: expected an object, got a JSON string at byte offset 10"},
		{"POST", "/v1/push", `{"to":{"all":"yes"},"data":"x"}`, nil, 400, "to.all: expected true or false, got a JSON string at byte offset 18"},
		{"POST", "/v1/push", `{"data":"x"}`, nil, 400, "to must name at least one of users, connections, rooms, all"},
		{"POST", "/v1/push", `{"to":{"all":false,"users":[]},"data":"x"}`, nil, 400, "to must name at least one of users, connections, rooms, all"},
		{"POST", "/v1/push", `{"to":{"all":true}}`, nil, 400, "one of data (text message) or data_base64 (binary message) is required"},
		{"POST", "/v1/push", `{"to":{"all":true},"data":null}`, nil, 400, "one of data (text message) or data_base64 (binary message) is required"},
		{"POST", "/v1/push", `{"to":{"all":true},"data":"x","data_base64":"eA=="}`, nil, 400, "give exactly one of data and data_base64, not both"},
		{"POST", "/v1/push", `{"to":{"all":true},"data_base64":"eA=!"}`, nil, 400, "data_base64 is not valid standard base64 (RFC 4648) at character 2"},
		{"POST", "/v1/push", `{"to":{"all":true},"data_base64":12}`, nil, 400, "data_base64 must be a JSON string holding base64"},
		{"POST", "/v1/push", "{\"to\":{\"all\":true},\"data\":\"\xff\"}", nil, 400, "data is not valid UTF-8; send binary payloads as data_base64"},
		{"POST", "/v1/push", `{"to":{"users":["a",""]},"data":"x"}`, nil, 400, "to.users[1] is empty"},
		{"POST", "/v1/push", `{"to":{"connections":[""]},"data":"x"}`, nil, 400, "to.connections[0] is empty"},
		{"POST", "/v1/push", `{"to":{"rooms":["` + strings.Repeat("r", 300) + `"]},"data":"x"}`, nil, 400, "to.rooms[0] is 300 bytes long, the limit is 256"},
		{"POST", "/v1/push", `{"to":{"users":["a","b"],"rooms":["c","d"]},"data":"x"}`, nil, 400, "to names 4 users, connections and rooms, the limit is 3"},
		{"POST", "/v1/rooms/r/join", `{"users":["a","b","c","d"]}`, nil, 400, "users names 4 users, the limit is 3"},
		{"POST", "/v1/push", `{"to":{"all":true},"data":"x"}`, []string{"Content-Type", "text/plain"}, 415, `Content-Type "text/plain" is not supported; send application/json`},
		{"GET", "/v1/push", "", nil, 405, "method GET is not allowed on /v1/push; allowed: POST"},
		{"PUT", "/v1/users/42", "", nil, 405, "method PUT is not allowed on /v1/users/{id}; allowed: GET, DELETE, HEAD"},
		{"GET", "/v1/nope", "", nil, 404, "no route for GET /v1/nope"},
		{"GET", "/v1/users/42/x", "", nil, 404, "no route for GET /v1/users/42/x"},
	}
	for i, c := range cases {
		r := e.do(c.method, c.path, c.body, c.headers...)
		if r.status != c.status || r.json["error"] != c.msg || r.json["status"] != float64(c.status) {
			t.Errorf("case %d %s %s %s:\n got %d %s\nwant %d %q", i, c.method, c.path, c.body, r.status, r.body, c.status, c.msg)
		}
		if c.status == 405 && r.header.Get("Allow") == "" {
			t.Errorf("case %d: 405 without Allow header", i)
		}
	}
	if calls := e.hub.Calls(); len(calls) != 0 {
		t.Fatalf("hub called for invalid requests: %q", calls)
	}
	// application/json with parameters and an absent Content-Type are fine.
	e.expect(e.do("POST", "/v1/push", `{"to":{"all":true},"data":"x"}`, "Content-Type", "application/json; charset=utf-8"), 202)
	e.expect(e.do("POST", "/v1/push", `{"to":{"all":true},"data":"x"}`, "Content-Type", ""), 202)
}

func TestAuth(t *testing.T) {
	e := newEnv(t, nil)
	body := `{"to":{"all":true},"data":"x"}`
	r := e.do("POST", "/v1/push", body, "Authorization", "")
	e.expectError(r, 401, `missing Authorization header; send "Authorization: Bearer <api key>"`)
	if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
		t.Fatalf("WWW-Authenticate = %q", r.header.Get("WWW-Authenticate"))
	}
	e.expectError(e.do("POST", "/v1/push", body, "Authorization", "Bearer key-on"), 401, "invalid API key")
	e.expectError(e.do("POST", "/v1/push", body, "Authorization", "Bearer key-one-and-more"), 401, "invalid API key")
	e.expectError(e.do("POST", "/v1/push", body, "Authorization", "Basic a2V5LW9uZQ=="), 401, `Authorization header must use the Bearer scheme: "Authorization: Bearer <api key>"`)
	// Unknown routes and wrong methods also need a key: 401, not 404/405.
	e.expect(e.do("GET", "/v1/nope", "", "Authorization", ""), 401)
	e.expect(e.do("GET", "/v1/push", "", "Authorization", "Bearer wrong"), 401)
	if n := len(e.hub.Calls()); n != 0 {
		t.Fatalf("hub called %d times without a valid key", n)
	}
	e.expect(e.do("POST", "/v1/push", body, "Authorization", "Bearer key-two"), 202)
	e.expect(e.do("POST", "/v1/push", body, "Authorization", "bearer key-one"), 202)
}

func TestBodyTooLarge(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxBodyBytes = 100 })
	big := `{"to":{"all":true},"data":"` + strings.Repeat("x", 200) + `"}`
	e.expectError(e.do("POST", "/v1/push", big), 413, "request body is larger than 100 bytes")

	// Without Content-Length (chunked) the limit hits while decoding.
	req, _ := http.NewRequest("POST", e.srv.URL+"/v1/push", io.MultiReader(strings.NewReader(big)))
	req.Header.Set("Authorization", "Bearer key-one")
	req.ContentLength = -1
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 413 || !bytes.Contains(b, []byte("larger than 100 bytes")) {
		t.Fatalf("chunked: %d %s", resp.StatusCode, b)
	}
	e.expectError(e.do("POST", "/v1/push/batch", `{"messages":[`+big+`]}`), 413, "request body is larger than 100 bytes")
	if n := len(e.hub.Calls()); n != 0 {
		t.Fatalf("hub called %d times for oversized bodies", n)
	}
	e.expect(e.do("POST", "/v1/push", `{"to":{"all":true},"data":"small"}`), 202)
}

func TestHubErrors(t *testing.T) {
	e := newEnv(t, nil)
	e.hub.err = statusError{http.StatusServiceUnavailable}
	r := e.do("POST", "/v1/push", `{"to":{"all":true},"data":"x"}`)
	e.expect(r, 503)
	if msg, _ := r.json["error"].(string); !strings.HasPrefix(msg, "deliver n1-") || !strings.HasSuffix(msg, ": Service Unavailable from hub") {
		t.Fatalf("deliver error %q", msg)
	}
	e.expectError(e.do("GET", "/v1/stats", ""), 503, "stats: Service Unavailable from hub")
	e.hub.err = errBoom
	e.expectError(e.do("GET", "/v1/users/42", ""), 500, `user "42": boom`)
	e.expectError(e.do("POST", "/v1/rooms/x/join", `{"users":["42"]}`), 500, "online check: boom")
	e.expectError(e.do("DELETE", "/v1/users/42", ""), 500, `kick user "42": boom`)
	r = e.do("POST", "/v1/push/batch", `{"messages":[{"to":{"all":true},"data":"x"}]}`)
	e.expect(r, 200)
	res := r.json["results"].([]any)[0].(map[string]any)
	if res["status"] != float64(500) || !strings.HasSuffix(res["error"].(string), ": boom") || !strings.HasPrefix(res["error"].(string), "messages[0]: deliver n1-") {
		t.Fatalf("batch hub error result %v", res)
	}
}

func TestConcurrentPushes(t *testing.T) {
	e := newEnv(t, nil)
	const workers, each = 8, 25
	var wg sync.WaitGroup
	errs := make(chan string, workers*each)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				resp, err := http.DefaultClient.Do(mustRequest(e.srv.URL, `{"to":{"users":["42"]},"data":"c"}`))
				if err != nil {
					errs <- err.Error()
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusAccepted {
					errs <- resp.Status
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for msg := range errs {
		t.Error(msg)
	}
	seen := map[string]bool{}
	for _, m := range e.hub.Delivered() {
		if seen[m.ID] {
			t.Fatalf("duplicate id %q", m.ID)
		}
		seen[m.ID] = true
	}
	if len(seen) != workers*each {
		t.Fatalf("hub got %d distinct messages, want %d", len(seen), workers*each)
	}
}

func mustRequest(base, body string) *http.Request {
	req, err := http.NewRequest("POST", base+"/v1/push", strings.NewReader(body))
	if err != nil {
		panic(err)
	}
	req.Header.Set("Authorization", "Bearer key-two")
	return req
}

// TestCurlDefaultContentType: `curl -d` sends application/x-www-form-urlencoded; the
// body is parsed as JSON all the same, and a real form body is a JSON error.
func TestCurlDefaultContentType(t *testing.T) {
	e := newEnv(t, nil)
	form := "application/x-www-form-urlencoded"
	if r := e.do("POST", "/v1/push", `{"to":{"users":["42"]},"data":"hello"}`, "Content-Type", form); r.status != 202 {
		t.Fatalf("JSON sent as curl's default type: %d", r.status)
	}
	if r := e.do("POST", "/v1/push", `to=42&data=hello`, "Content-Type", form); r.status != 400 {
		t.Fatalf("a real form body: %d", r.status)
	}
}

// TestBatchRefusesWait: the messages of a batch are delivered in turn, so a wait in
// each would hold the request for the sum of them.
func TestBatchRefusesWait(t *testing.T) {
	e := newEnv(t, nil)
	r := e.do("POST", "/v1/push/batch", `{"messages":[{"to":{"users":["u"]},"data":"x","wait":"5s"},{"to":{"users":["u"]},"data":"y"}]}`)
	e.expect(r, http.StatusOK)
	if !strings.Contains(string(r.body), "wait is for POST /v1/push, not a batch") || !strings.Contains(string(r.body), `"id"`) {
		t.Fatalf("batch with wait: %s", r.body)
	}
}
