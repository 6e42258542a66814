package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"longlink/internal/testutil"
	"longlink/pusher"
)

// Laravel Echo in a real browser: what a Laravel front-end does against longlink
// with broadcaster 'pusher'. The Go test is the Laravel back-end: it serves the page
// (pusher-js and laravel-echo builds from e2e/node_modules), answers
// /broadcasting/auth (signed with pusher.App.ChannelAuth, which
// pusher/vectors_test.go holds to the official SDK's output) and broadcasts through
// the node's Pusher HTTP API, signed as the SDKs sign.

var echoApp = pusher.App{ID: pAppID, Key: pKey, Secret: pSecret}

// echoPage makes window.echo from the query (key, wsHost, wsPort, user) and logs
// what Echo's callbacks get in window.t.log; window.t's functions are what echo.mjs
// calls.
const echoPage = `<!doctype html>
<html><head><meta charset="utf-8"><title>longlink Echo e2e</title>
<script src="/js/pusher.js"></script>
<script src="/js/echo.js"></script>
</head><body>
<script>
const q = new URLSearchParams(location.search);
const log = [];
const rec = (channel, event, data) => log.push({ seq: log.length, channel, event, data: JSON.parse(JSON.stringify(data ?? null)) });
window.echo = new Echo.default({
  broadcaster: 'pusher', key: q.get('key'), cluster: 'x',
  wsHost: q.get('wsHost'), wsPort: Number(q.get('wsPort')), forceTLS: false, enabledTransports: ['ws'],
  disableStats: true,
  authEndpoint: '/broadcasting/auth', auth: { headers: { 'X-User': q.get('user') } },
});
echo.connector.pusher.connection.bind('state_change', (s) => rec('', 'state:' + s.current, null));
const chan = (kind, name) => kind === 'public' ? echo.channel(name) : kind === 'private' ? echo.private(name) : echo.join(name);
window.t = {
  log,
  // listen: Echo's listen (its namespace applies unless the name starts with a dot);
  // the log says the name as given.
  listen(kind, name, event) {
    const ch = chan(kind, name);
    ch.listen(event, (data) => rec(ch.name, event, data));
    ch.subscribed(() => rec(ch.name, 'subscribed', null));
    ch.error((err) => rec(ch.name, 'error', err));
  },
  join(name) {
    const ch = echo.join(name);
    ch.here((users) => rec(ch.name, 'here', users.map((u) => u.id).sort()))
      .joining((u) => rec(ch.name, 'joining', u))
      .leaving((u) => rec(ch.name, 'leaving', u))
      .error((err) => rec(ch.name, 'error', err));
  },
  whisper(kind, name, event, data) { chan(kind, name).whisper(event, data); },
  listenForWhisper(kind, name, event) {
    const ch = chan(kind, name);
    ch.listenForWhisper(event, (data) => rec(ch.name, 'whisper:' + event, data));
  },
  leave(name) { echo.leave(name); },
};
document.body.dataset.ready = '1';
</script>
</body></html>`

// TestEchoBrowser: public channels with Echo's event names (namespaced and with a
// leading dot), private channels through /broadcasting/auth, whispers, presence
// (here, joining, leaving) and a node restart, after which Echo's channels are
// subscribed again and their listeners fire.
func TestEchoBrowser(t *testing.T) {
	chromium := requireTools(t)
	requireNodeModules(t, "pusher-js", "laravel-echo")
	testutil.Binary(t)
	srv := startServer(t, append(prodFlags, pusherFlags...)...)
	app := startEchoBackend(t)
	d := startJSDriver(t, "echo.mjs", "LONGLINK_CHROMIUM="+chromium)

	open := func(name, user string) {
		t.Helper()
		host, port, _ := strings.Cut(srv.Client, ":")
		u := app.URL + "/?" + url.Values{"key": {pKey}, "wsHost": {host}, "wsPort": {port}, "user": {user}}.Encode()
		d.do(t, "open", "client", name, "url", u, "timeoutMs", 30000)
	}
	call := func(client, fn string, args ...any) {
		t.Helper()
		d.do(t, "call", "client", client, "fn", fn, "args", args)
	}
	open("ann", "ann")
	open("ben", "ben")
	waitMetric(t, srv, `longlink_pusher_connections{app="`+pAppID+`"}`, 2)

	t.Run("public channel: listen, with and without the namespace", func(t *testing.T) {
		for _, c := range []string{"ann", "ben"} {
			call(c, "listen", "public", "orders", ".OrderShipped")
			call(c, "listen", "public", "orders", "OrderShipped") // App\Events\OrderShipped
			d.expect(t, c, "orders", "subscribed", nil)
		}
		echoTrigger(t, srv.API, "orders", "OrderShipped", `{"id":1}`)
		echoTrigger(t, srv.API, "orders", `App\Events\OrderShipped`, `{"id":2}`)
		for _, c := range []string{"ann", "ben"} {
			d.expect(t, c, "orders", ".OrderShipped", map[string]any{"id": 1})
			d.expect(t, c, "orders", "OrderShipped", map[string]any{"id": 2})
			d.absent(t, c, "orders", ".OrderShipped", map[string]any{"id": 2})
			d.absent(t, c, "orders", "OrderShipped", map[string]any{"id": 1})
		}
	})

	t.Run("private channel through /broadcasting/auth, and whispers", func(t *testing.T) {
		for _, c := range []string{"ann", "ben"} {
			call(c, "listen", "private", "chat.1", ".Message")
			call(c, "listenForWhisper", "private", "chat.1", "typing")
			d.expect(t, c, "private-chat.1", "subscribed", nil)
		}
		echoTrigger(t, srv.API, "private-chat.1", "Message", `{"text":"hi"}`)
		d.expect(t, "ann", "private-chat.1", ".Message", map[string]any{"text": "hi"})
		d.expect(t, "ben", "private-chat.1", ".Message", map[string]any{"text": "hi"})

		call("ann", "whisper", "private", "chat.1", "typing", map[string]any{"who": "ann"})
		d.expect(t, "ben", "private-chat.1", "whisper:typing", map[string]any{"who": "ann"})
		// Not to the whisperer: a later broadcast reaches ann, the whisper did not.
		echoTrigger(t, srv.API, "private-chat.1", "Message", `{"text":"after"}`)
		d.expect(t, "ann", "private-chat.1", ".Message", map[string]any{"text": "after"})
		d.absent(t, "ann", "private-chat.1", "whisper:typing", nil)
	})

	t.Run("presence: here, joining, leaving", func(t *testing.T) {
		call("ann", "join", "room.1")
		d.expect(t, "ann", "presence-room.1", "here", []string{"ann"})
		call("ben", "join", "room.1")
		d.expect(t, "ben", "presence-room.1", "here", []string{"ann", "ben"})
		d.expect(t, "ann", "presence-room.1", "joining", map[string]any{"id": "ben", "name": "Ben"})
		call("ann", "listenForWhisper", "presence", "room.1", "wave")
		call("ben", "whisper", "presence", "room.1", "wave", map[string]any{"n": 1})
		d.expect(t, "ann", "presence-room.1", "whisper:wave", map[string]any{"n": 1})
		call("ben", "leave", "room.1")
		d.expect(t, "ann", "presence-room.1", "leaving", map[string]any{"id": "ben", "name": "Ben"})
	})

	t.Run("reconnect after a node restart", func(t *testing.T) {
		marks := map[string]float64{}
		for _, c := range []string{"ann", "ben"} {
			seq, _ := d.do(t, "mark", "client", c)["seq"].(float64)
			marks[c] = seq
		}
		srv.Stop(t, 30*time.Second)
		for _, c := range []string{"ann", "ben"} {
			d.do(t, "expect", "client", c, "channel", "", "event", "state:connecting", "since", marks[c], "timeoutMs", 20000)
		}
		srv = restartServer(t, srv, append(prodFlags, pusherFlags...)...)
		for _, c := range []string{"ann", "ben"} {
			// pusher-js backs off to 15 s and more while the node is away.
			d.do(t, "state", "client", c, "is", "connected", "timeoutMs", 60000)
			d.do(t, "expect", "client", c, "channel", "orders", "event", "subscribed", "since", marks[c], "timeoutMs", 20000)
			d.do(t, "expect", "client", c, "channel", "private-chat.1", "event", "subscribed", "since", marks[c], "timeoutMs", 20000)
		}
		echoTrigger(t, srv.API, "orders", "OrderShipped", `{"id":3}`)
		echoTrigger(t, srv.API, "private-chat.1", "Message", `{"text":"back"}`)
		for _, c := range []string{"ann", "ben"} {
			d.expect(t, c, "orders", ".OrderShipped", map[string]any{"id": 3})
			d.expect(t, c, "private-chat.1", ".Message", map[string]any{"text": "back"})
		}
		call("ben", "whisper", "private", "chat.1", "typing", map[string]any{"who": "ben"})
		d.expect(t, "ann", "private-chat.1", "whisper:typing", map[string]any{"who": "ben"})
	})
}

// startEchoBackend serves the test page, the library builds and Laravel's
// /broadcasting/auth on loopback. The user is the page's X-User header (a real app
// has its session); presence members are {id, name}.
func startEchoBackend(t *testing.T) *httptest.Server {
	t.Helper()
	files := map[string]string{
		"/js/pusher.js": filepath.Join("node_modules", "pusher-js", "dist", "web", "pusher.js"),
		"/js/echo.js":   filepath.Join("node_modules", "laravel-echo", "dist", "echo.iife.js"),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, echoPage)
	})
	for path, file := range files {
		mux.HandleFunc("GET "+path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/javascript")
			http.ServeFile(w, r, file)
		})
	}
	mux.HandleFunc("POST /broadcasting/auth", func(w http.ResponseWriter, r *http.Request) {
		socket, channel, user := r.PostFormValue("socket_id"), r.PostFormValue("channel_name"), r.Header.Get("X-User")
		if user == "" || !pusher.ValidSocketID(socket) {
			http.Error(w, "no user or socket", http.StatusForbidden)
			return
		}
		out := map[string]string{}
		if pusher.KindOf(channel) == pusher.KindPresence {
			cd, _ := json.Marshal(map[string]any{"user_id": user, "user_info": map[string]string{"id": user, "name": strings.ToUpper(user[:1]) + user[1:]}})
			out["channel_data"] = string(cd)
		}
		out["auth"] = echoApp.ChannelAuth(socket, channel, out["channel_data"])
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(out)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// echoTrigger broadcasts event on channel through the node's Pusher HTTP API, as
// Laravel's pusher driver does (data is the event's payload as JSON text).
func echoTrigger(t *testing.T, api, channel, event, data string) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"name": event, "channels": []string{channel}, "data": data})
	path := "/apps/" + pAppID + "/events"
	q := pusher.SignQuery(&echoApp, http.MethodPost, path, nil, body, time.Now())
	r := testutil.Do(t, http.MethodPost, "http://"+api+path+"?"+q, string(body), "Content-Type", "application/json")
	if r.Status != http.StatusOK {
		t.Fatalf("trigger %s on %s: %d %s", event, channel, r.Status, r.Raw)
	}
}
