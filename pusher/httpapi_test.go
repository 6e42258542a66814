package pusher

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeBackend records every call and answers from its fields.
type fakeBackend struct {
	mu    sync.Mutex
	calls []string // one line per call, in order

	channels map[string]ChannelInfo // by name: what Channel and Channels answer
	users    map[string][]string    // by presence channel
	err      error                  // returned by every call when set
}

func (f *fakeBackend) record(format string, args ...any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
	return f.err
}

func (f *fakeBackend) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func (f *fakeBackend) Trigger(app *App, channels []string, event, data, exclude string) error {
	return f.record("trigger app=%s channels=%s event=%s data=%s exclude=%s", app.ID, strings.Join(channels, ","), event, data, exclude)
}

func (f *fakeBackend) Channels(app *App, prefix string, info Info) (map[string]ChannelInfo, error) {
	err := f.record("channels app=%s prefix=%s info=%d", app.ID, prefix, info)
	out := map[string]ChannelInfo{}
	for name, ci := range f.channels {
		if strings.HasPrefix(name, prefix) && ci.Occupied {
			out[name] = ci
		}
	}
	return out, err
}

func (f *fakeBackend) Channel(app *App, name string, info Info) (ChannelInfo, error) {
	err := f.record("channel app=%s name=%s info=%d", app.ID, name, info)
	return f.channels[name], err
}

func (f *fakeBackend) Users(app *App, channel string) ([]string, error) {
	err := f.record("users app=%s channel=%s", app.ID, channel)
	return f.users[channel], err
}

func (f *fakeBackend) TerminateUser(app *App, user string) error {
	return f.record("terminate app=%s user=%s", app.ID, user)
}

func (f *fakeBackend) SendToUser(app *App, user, event, data string) error {
	return f.record("user app=%s user=%s event=%s data=%s", app.ID, user, event, data)
}

var testApps = map[string]*App{
	"1": {ID: "1", Key: "key1", Secret: "secret1"},
	"2": {ID: "2", Key: "key2", Secret: "secret2", MaxEventBytes: 100},
}

// newTestAPI starts the API on loopback with a fake Backend.
func newTestAPI(t *testing.T, cfg HTTPAPIConfig) (*httptest.Server, *fakeBackend, *HTTPAPI) {
	t.Helper()
	fb := &fakeBackend{
		channels: map[string]ChannelInfo{
			"presence-room": {Occupied: true, UserCount: 2, SubscriptionCount: 3},
			"presence-x":    {Occupied: true, UserCount: 1, SubscriptionCount: 1},
			"news":          {Occupied: true, SubscriptionCount: 5},
			"empty":         {},
		},
		users: map[string][]string{"presence-room": {"alice", "bob"}, "presence-x": {"u1"}},
	}
	cfg.Apps = func(id string) *App { return testApps[id] }
	cfg.Backend = fb
	h, err := NewHTTPAPI(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/apps/", h)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, fb, h
}

// call sends a request signed as the SDKs sign it (SignQuery) and returns the status
// and body.
func call(t *testing.T, srv *httptest.Server, app *App, method, path string, params map[string]string, body string) (int, string) {
	t.Helper()
	q := SignQuery(app, method, path, params, []byte(body), time.Now())
	return rawCall(t, srv, method, path+"?"+q, body)
}

func rawCall(t *testing.T, srv *httptest.Server, method, pathQuery, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+pathQuery, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func jsonEqual(t *testing.T, got, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal([]byte(got), &g); err != nil {
		t.Fatalf("answer %q is not JSON: %v", got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("answer %s, want %s", got, want)
	}
}

// The spec's worked example ("HTTP API reference", worked authentication example),
// signature and all.
func TestVerifyRequestWorkedExample(t *testing.T) {
	app := &App{ID: "3", Key: "278d425bdf160c739803", Secret: "7ad3773142a6692b25b8"}
	body := []byte(`{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}`)
	query := "auth_key=278d425bdf160c739803&auth_timestamp=1353088179&auth_version=1.0" +
		"&body_md5=ec365a775a4cd0599faeb73354201b6f" +
		"&auth_signature=da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"
	now := time.Unix(1353088179, 0)
	if err := VerifyRequest(app, "POST", "/apps/3/events", query, body, now, DefaultClockSkew); err != nil {
		t.Fatalf("worked example refused: %v", err)
	}
	// Same signature, keys in another order and in upper case: still valid.
	reordered := "AUTH_SIGNATURE=da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c" +
		"&body_md5=ec365a775a4cd0599faeb73354201b6f&Auth_Version=1.0&auth_timestamp=1353088179&auth_key=278d425bdf160c739803"
	if err := VerifyRequest(app, "POST", "/apps/3/events", reordered, body, now, DefaultClockSkew); err != nil {
		t.Fatalf("reordered query refused: %v", err)
	}

	cases := []struct {
		name   string
		method string
		path   string
		query  string
		body   []byte
		now    time.Time
		status int
	}{
		{"other method", "GET", "/apps/3/events", query, body, now, 401},
		{"other path", "POST", "/apps/4/events", query, body, now, 401},
		{"other body", "POST", "/apps/3/events", query, append([]byte(nil), body[:len(body)-1]...), now, 401},
		{"extra param", "POST", "/apps/3/events", query + "&x=1", body, now, 401},
		{"dup param", "POST", "/apps/3/events", query + "&auth_key=278d425bdf160c739803", body, now, 400},
		{"too early", "POST", "/apps/3/events", query, body, now.Add(-601 * time.Second), 401},
		{"too late", "POST", "/apps/3/events", query, body, now.Add(601 * time.Second), 401},
		{"edge of window", "POST", "/apps/3/events", query, body, now.Add(600 * time.Second), 0},
		{"wrong key", "POST", "/apps/3/events", strings.Replace(query, "auth_key=278d", "auth_key=378d", 1), body, now, 401},
		{"bad version", "POST", "/apps/3/events", strings.Replace(query, "auth_version=1.0", "auth_version=2.0", 1), body, now, 400},
		{"bad timestamp", "POST", "/apps/3/events", strings.Replace(query, "auth_timestamp=1353088179", "auth_timestamp=soon", 1), body, now, 400},
		{"no signature", "POST", "/apps/3/events", query[:strings.Index(query, "&auth_signature")], body, now, 401},
		{"no body_md5", "POST", "/apps/3/events", strings.Replace(query, "&body_md5=ec365a775a4cd0599faeb73354201b6f", "", 1), body, now, 401},
		{"bad query", "POST", "/apps/3/events", query + "&%zz=1", body, now, 400},
	}
	for _, c := range cases {
		err := VerifyRequest(app, c.method, c.path, c.query, c.body, c.now, DefaultClockSkew)
		var ae *APIError
		switch {
		case c.status == 0 && err != nil:
			t.Errorf("%s: refused: %v", c.name, err)
		case c.status != 0 && !errors.As(err, &ae):
			t.Errorf("%s: got %v, want a %d", c.name, err, c.status)
		case c.status != 0 && ae.Status != c.status:
			t.Errorf("%s: got %d %s, want %d", c.name, ae.Status, ae.Msg, c.status)
		}
	}
}

// SignQuery and VerifyRequest agree, values with characters that need escaping too.
func TestSignQueryRoundTrip(t *testing.T) {
	app := testApps["1"]
	now := time.Now()
	params := map[string]string{"info": "user_count,subscription_count", "Filter_By_Prefix": "presence-a b&c"}
	q := SignQuery(app, "GET", "/apps/1/channels", params, nil, now)
	if err := VerifyRequest(app, "GET", "/apps/1/channels", q, nil, now, DefaultClockSkew); err != nil {
		t.Fatal(err)
	}
	v, _ := url.ParseQuery(q)
	if v.Get("filter_by_prefix") != "presence-a b&c" || v.Get("body_md5") != "" {
		t.Fatalf("query %s", q)
	}
}

func TestTrigger(t *testing.T) {
	srv, fb, h := newTestAPI(t, HTTPAPIConfig{})
	app := testApps["1"]

	st, body := call(t, srv, app, "POST", "/apps/1/events", nil,
		`{"name":"ev","data":"{\"a\":1}","channels":["news","private-x","news"],"socket_id":"123.456"}`)
	if st != 200 {
		t.Fatalf("status %d %s", st, body)
	}
	jsonEqual(t, body, `{}`)

	st, body = call(t, srv, app, "POST", "/apps/1/events", nil,
		`{"name":"ev2","data":"d","channel":"presence-room","info":"user_count,subscription_count"}`)
	if st != 200 {
		t.Fatalf("status %d %s", st, body)
	}
	jsonEqual(t, body, `{"channels":{"presence-room":{"user_count":2,"subscription_count":3}}}`)

	// user_count is only for presence channels: left out of the others.
	st, body = call(t, srv, app, "POST", "/apps/1/events", nil,
		`{"name":"ev3","data":"d","channels":["news","presence-x"],"info":"user_count"}`)
	if st != 200 {
		t.Fatalf("status %d %s", st, body)
	}
	jsonEqual(t, body, `{"channels":{"news":{},"presence-x":{"user_count":1}}}`)

	// sendToUser of the SDKs: a #server-to-user- channel.
	st, body = call(t, srv, app, "POST", "/apps/1/events", nil, `{"name":"hi","data":"x","channels":["#server-to-user-u7"]}`)
	if st != 200 {
		t.Fatalf("status %d %s", st, body)
	}

	want := []string{
		"trigger app=1 channels=news,private-x event=ev data={\"a\":1} exclude=123.456",
		"trigger app=1 channels=presence-room event=ev2 data=d exclude=",
		"channel app=1 name=presence-room info=3",
		"trigger app=1 channels=news,presence-x event=ev3 data=d exclude=",
		"channel app=1 name=news info=0",
		"channel app=1 name=presence-x info=1",
		"user app=1 user=u7 event=hi data=x",
	}
	if got := fb.Calls(); !reflect.DeepEqual(got, want) {
		t.Fatalf("calls\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if n := h.events.Get(); n != 4 {
		t.Fatalf("events_total %d, want 4", n)
	}
}

func TestTriggerRefusals(t *testing.T) {
	srv, fb, h := newTestAPI(t, HTTPAPIConfig{MaxBodyBytes: 64 << 10})
	app1, app2 := testApps["1"], testApps["2"]
	many := make([]string, 101)
	for i := range many {
		many[i] = fmt.Sprintf("c%d", i)
	}
	manyJSON, _ := json.Marshal(many)
	long := strings.Repeat("a", 201)

	cases := []struct {
		name   string
		app    *App
		body   string
		status int
	}{
		{"no body", app1, ``, 400},
		{"not JSON", app1, `{"name":`, 400},
		{"no name", app1, `{"data":"x","channel":"a"}`, 400},
		{"long name", app1, `{"name":"` + long + `","data":"x","channel":"a"}`, 400},
		{"reserved name", app1, `{"name":"pusher:error","data":"x","channel":"a"}`, 400},
		{"no data", app1, `{"name":"e","channel":"a"}`, 400},
		{"object data", app1, `{"name":"e","data":{"a":1},"channel":"a"}`, 400},
		{"no channel", app1, `{"name":"e","data":"x"}`, 400},
		{"both channel and channels", app1, `{"name":"e","data":"x","channel":"a","channels":["b"]}`, 400},
		{"bad channel", app1, `{"name":"e","data":"x","channel":"a b"}`, 400},
		{"long channel", app1, `{"name":"e","data":"x","channel":"` + long + `"}`, 400},
		{"101 channels", app1, `{"name":"e","data":"x","channels":` + string(manyJSON) + `}`, 400},
		{"bad socket_id", app1, `{"name":"e","data":"x","channel":"a","socket_id":"12"}`, 400},
		{"bad info", app1, `{"name":"e","data":"x","channel":"a","info":"cache"}`, 400},
		{"empty user", app1, `{"name":"e","data":"x","channel":"#server-to-user-"}`, 400},
		{"data over 10 KB", app1, `{"name":"e","data":"` + strings.Repeat("x", 10<<10+1) + `","channel":"a"}`, 413},
		{"data over the app's 100 B", app2, `{"name":"e","data":"` + strings.Repeat("x", 101) + `","channel":"a"}`, 413},
		{"body over 64 KB", app1, `{"name":"e","data":"` + strings.Repeat("x", 64<<10) + `","channel":"a"}`, 413},
	}
	for _, c := range cases {
		st, body := call(t, srv, c.app, "POST", "/apps/"+c.app.ID+"/events", nil, c.body)
		if st != c.status {
			t.Errorf("%s: status %d (%s), want %d", c.name, st, strings.TrimSpace(body), c.status)
		}
	}
	// Exactly 10 KB and 100 channels pass.
	if st, body := call(t, srv, app1, "POST", "/apps/1/events", nil, `{"name":"e","data":"`+strings.Repeat("x", 10<<10)+`","channels":`+string(manyJSON[:strings.LastIndex(string(manyJSON), ",")])+`]}`); st != 200 {
		t.Fatalf("10 KB to 100 channels: %d %s", st, body)
	}
	if n := len(fb.Calls()); n != 1 {
		t.Fatalf("%d backend calls, want 1: %v", n, fb.Calls())
	}
	if h.errors[reasonInvalid].Get() == 0 || h.errors[reasonTooLarge].Get() != 3 {
		t.Fatalf("errors invalid=%d too_large=%d", h.errors[reasonInvalid].Get(), h.errors[reasonTooLarge].Get())
	}
}

func TestBatch(t *testing.T) {
	srv, fb, _ := newTestAPI(t, HTTPAPIConfig{})
	app := testApps["1"]
	st, body := call(t, srv, app, "POST", "/apps/1/batch_events", nil,
		`{"batch":[{"name":"a","channel":"news","data":"1"},{"name":"b","channel":"presence-room","data":"2","socket_id":"1.2","info":"user_count"}]}`)
	if st != 200 {
		t.Fatalf("status %d %s", st, body)
	}
	jsonEqual(t, body, `{"batch":[{},{"user_count":2}]}`)
	want := []string{
		"trigger app=1 channels=news event=a data=1 exclude=",
		"trigger app=1 channels=presence-room event=b data=2 exclude=1.2",
		"channel app=1 name=presence-room info=1",
	}
	if got := fb.Calls(); !reflect.DeepEqual(got, want) {
		t.Fatalf("calls %q", got)
	}

	// A bad event fails the whole batch with nothing published; so do 11 events.
	ev := `{"name":"a","channel":"news","data":"1"}`
	for name, b := range map[string]string{
		"bad second event":  `{"batch":[` + ev + `,{"name":"b","channel":"bad channel","data":"2"}]}`,
		"channels in batch": `{"batch":[{"name":"a","channels":["news"],"data":"1"}]}`,
		"empty":             `{"batch":[]}`,
		"11 events":         `{"batch":[` + strings.Repeat(ev+",", 10) + ev + `]}`,
	} {
		if st, body := call(t, srv, app, "POST", "/apps/1/batch_events", nil, b); st != 400 {
			t.Errorf("%s: status %d %s", name, st, body)
		}
	}
	if n := len(fb.Calls()); n != 3 {
		t.Fatalf("refused batches reached the backend: %q", fb.Calls()[3:])
	}
	if st, body := call(t, srv, app, "POST", "/apps/1/batch_events", nil, `{"batch":[`+strings.Repeat(ev+",", 9)+ev+`]}`); st != 200 {
		t.Fatalf("10 events: %d %s", st, body)
	}
	jsonEqualStatus(t, srv, app)
}

// jsonEqualStatus: a batch with no info asked answers {}.
func jsonEqualStatus(t *testing.T, srv *httptest.Server, app *App) {
	st, body := call(t, srv, app, "POST", "/apps/1/batch_events", nil, `{"batch":[{"name":"a","channel":"news","data":"1"}]}`)
	if st != 200 {
		t.Fatalf("status %d", st)
	}
	jsonEqual(t, body, `{}`)
}

func TestChannelQueries(t *testing.T) {
	srv, fb, _ := newTestAPI(t, HTTPAPIConfig{})
	app := testApps["1"]
	cases := []struct {
		path   string
		params map[string]string
		status int
		want   string
	}{
		{"/apps/1/channels", nil, 200, `{"channels":{"presence-room":{},"presence-x":{},"news":{}}}`},
		{"/apps/1/channels", map[string]string{"filter_by_prefix": "presence-", "info": "user_count"}, 200,
			`{"channels":{"presence-room":{"user_count":2},"presence-x":{"user_count":1}}}`},
		{"/apps/1/channels", map[string]string{"info": "subscription_count"}, 200,
			`{"channels":{"presence-room":{"subscription_count":3},"presence-x":{"subscription_count":1},"news":{"subscription_count":5}}}`},
		{"/apps/1/channels", map[string]string{"info": "user_count"}, 400, ""},
		{"/apps/1/channels", map[string]string{"filter_by_prefix": "private-", "info": "user_count"}, 400, ""},
		{"/apps/1/channels", map[string]string{"info": "members"}, 400, ""},
		{"/apps/1/channels/news", nil, 200, `{"occupied":true}`},
		{"/apps/1/channels/empty", map[string]string{"info": "subscription_count"}, 200, `{"occupied":false,"subscription_count":0}`},
		{"/apps/1/channels/presence-room", map[string]string{"info": "user_count,subscription_count"}, 200,
			`{"occupied":true,"user_count":2,"subscription_count":3}`},
		{"/apps/1/channels/news", map[string]string{"info": "user_count"}, 400, ""},
		{"/apps/1/channels/bad*name", nil, 400, ""},
		{"/apps/1/channels/presence-room/users", nil, 200, `{"users":[{"id":"alice"},{"id":"bob"}]}`},
		{"/apps/1/channels/presence-nobody/users", nil, 200, `{"users":[]}`},
		{"/apps/1/channels/news/users", nil, 400, ""},
		{"/apps/1/channels/private-a/users", nil, 400, ""},
	}
	for _, c := range cases {
		st, body := call(t, srv, app, "GET", c.path, c.params, "")
		if st != c.status {
			t.Errorf("GET %s %v: status %d %s, want %d", c.path, c.params, st, strings.TrimSpace(body), c.status)
			continue
		}
		if c.want != "" {
			jsonEqual(t, body, c.want)
		}
	}
	want := []string{
		"channels app=1 prefix= info=0",
		"channels app=1 prefix=presence- info=1",
		"channels app=1 prefix= info=2",
		"channel app=1 name=news info=0",
		"channel app=1 name=empty info=2",
		"channel app=1 name=presence-room info=3",
		"users app=1 channel=presence-room",
		"users app=1 channel=presence-nobody",
	}
	if got := fb.Calls(); !reflect.DeepEqual(got, want) {
		t.Fatalf("calls\n%s", strings.Join(got, "\n"))
	}
}

func TestUserRoutes(t *testing.T) {
	srv, fb, _ := newTestAPI(t, HTTPAPIConfig{})
	app := testApps["1"]
	if st, body := call(t, srv, app, "POST", "/apps/1/users/u1/terminate_connections", nil, `{}`); st != 200 || strings.TrimSpace(body) != "{}" {
		t.Fatalf("terminate: %d %s", st, body)
	}
	if st, body := call(t, srv, app, "POST", "/apps/1/users/u2/events", nil, `{"name":"n","data":"d"}`); st != 200 {
		t.Fatalf("user event: %d %s", st, body)
	}
	for _, b := range []string{`{"name":"n"}`, `{"name":"n","data":"d","channel":"x"}`, ``} {
		if st, _ := call(t, srv, app, "POST", "/apps/1/users/u2/events", nil, b); st != 400 {
			t.Errorf("user event %s: %d", b, st)
		}
	}
	if st, _ := call(t, srv, app, "POST", "/apps/1/users/"+strings.Repeat("u", 201)+"/terminate_connections", nil, `{}`); st != 400 {
		t.Errorf("long user id: %d", st)
	}
	want := []string{"terminate app=1 user=u1", "user app=1 user=u2 event=n data=d"}
	if got := fb.Calls(); !reflect.DeepEqual(got, want) {
		t.Fatalf("calls %q", got)
	}
}

func TestRoutingAndAuthStatuses(t *testing.T) {
	srv, fb, h := newTestAPI(t, HTTPAPIConfig{})
	app1 := testApps["1"]
	ev := `{"name":"e","data":"x","channel":"a"}`

	// Unknown app, unknown route, wrong method.
	if st, _ := call(t, srv, &App{ID: "9", Key: "k", Secret: "s"}, "POST", "/apps/9/events", nil, ev); st != 404 {
		t.Errorf("unknown app: %d", st)
	}
	if st, _ := call(t, srv, app1, "POST", "/apps/1/nothing", nil, ev); st != 404 {
		t.Errorf("unknown route: %d", st)
	}
	if st, _ := call(t, srv, app1, "GET", "/apps/1/events", nil, ""); st != 405 {
		t.Errorf("GET events: %d", st)
	}
	// App 2's credentials on app 1's path: the key is not app 1's.
	if st, body := call(t, srv, testApps["2"], "POST", "/apps/1/events", nil, ev); st != 401 || !strings.Contains(body, "auth_key") {
		t.Errorf("other app's key: %d %s", st, body)
	}
	// Right key, wrong secret.
	if st, body := call(t, srv, &App{ID: "1", Key: "key1", Secret: "nope"}, "POST", "/apps/1/events", nil, ev); st != 401 || !strings.Contains(body, "signature") {
		t.Errorf("wrong secret: %d %s", st, body)
	}
	// Unsigned.
	if st, _ := rawCall(t, srv, "POST", "/apps/1/events", ev); st != 401 {
		t.Errorf("unsigned: %d", st)
	}
	// Stale timestamp.
	q := SignQuery(app1, "POST", "/apps/1/events", nil, []byte(ev), time.Now().Add(-11*time.Minute))
	if st, body := rawCall(t, srv, "POST", "/apps/1/events?"+q, ev); st != 401 || !strings.Contains(body, "timestamp") {
		t.Errorf("stale: %d %s", st, body)
	}
	// Body changed after signing.
	q = SignQuery(app1, "POST", "/apps/1/events", nil, []byte(ev), time.Now())
	if st, body := rawCall(t, srv, "POST", "/apps/1/events?"+q, strings.Replace(ev, `"x"`, `"y"`, 1)); st != 401 || !strings.Contains(body, "body_md5") {
		t.Errorf("tampered body: %d %s", st, body)
	}
	// A parameter added after signing.
	if st, _ := rawCall(t, srv, "POST", "/apps/1/events?"+q+"&extra=1", ev); st != 401 {
		t.Errorf("added param: %d", st)
	}
	if len(fb.Calls()) != 0 {
		t.Fatalf("refused requests reached the backend: %q", fb.Calls())
	}
	if h.errors[reasonSignature].Get() != 3 || h.errors[reasonTimestamp].Get() != 1 || h.errors[reasonNotFound].Get() != 2 {
		t.Fatalf("errors signature=%d timestamp=%d not_found=%d", h.errors[reasonSignature].Get(), h.errors[reasonTimestamp].Get(), h.errors[reasonNotFound].Get())
	}
}

func TestBackendErrors(t *testing.T) {
	srv, fb, _ := newTestAPI(t, HTTPAPIConfig{})
	app := testApps["1"]
	ev := `{"name":"e","data":"x","channel":"a"}`
	for err, status := range map[error]int{
		fmt.Errorf("app 1: %w", ErrForbidden):    403,
		errors.New("hub stopped"):                500,
		&APIError{Status: 429, Msg: "slow down"}: 429,
	} {
		fb.mu.Lock()
		fb.err = err
		fb.mu.Unlock()
		if st, body := call(t, srv, app, "POST", "/apps/1/events", nil, ev); st != status {
			t.Errorf("%v: %d %s, want %d", err, st, body, status)
		}
	}
}

func TestHTTPChannelNames(t *testing.T) {
	for _, ok := range []string{"a", "private-x", "presence-A_b-c=d@e,f.g;h", strings.Repeat("z", 200)} {
		if !validChannelName(ok) {
			t.Errorf("%q refused", ok)
		}
	}
	for _, bad := range []string{"", "a b", "a/b", "#server-to-user-1", "é", "a*", strings.Repeat("z", 201)} {
		if validChannelName(bad) {
			t.Errorf("%q accepted", bad)
		}
	}
}
