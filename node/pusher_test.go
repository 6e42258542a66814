package node

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"longlink/internal/testutil"
	"longlink/pusher"
)

// Pusher traffic for the metrics test: one of each thing a Pusher app's clients and
// publishers do on node n (the protocol itself is tested through the binary in the
// root package's pusher_test.go and with the real libraries in e2e/).

var (
	metricsApp = pusher.App{ID: "mapp", Key: "mkey", Secret: "metrics-app-secret", ClientEvents: true,
		MaxClientEventsPerSecond: 1, MaxChannels: 100, MaxPresenceMembers: 100}
	cappedApp = pusher.App{ID: "capped", Key: "ckey", Secret: "capped-app-secret", MaxConnections: 1}
)

// withPusherApps gives c the test's apps, metricsApp's webhooks going to hook.
func withPusherApps(c *Config, hook string) {
	app := metricsApp
	app.Webhooks[0] = hook
	c.Pusher.Apps = []pusher.App{app, cappedApp}
}

type pusherWS struct {
	*websocket.Conn
	socket string
}

func dialPusherApp(t *testing.T, n *Node, key string) *pusherWS {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+n.ClientAddrs()[0]+"/app/"+key+"?protocol=7", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	var est struct{ Data string }
	if err := ws.ReadJSON(&est); err != nil {
		t.Fatal(err)
	}
	var d struct {
		SocketID string `json:"socket_id"`
	}
	json.Unmarshal([]byte(est.Data), &d)
	return &pusherWS{ws, d.SocketID}
}

// expect reads until a message naming event arrives.
func (c *pusherWS) expect(t *testing.T, event string) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		_, b, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("waiting for %s: %v", event, err)
		}
		if strings.Contains(string(b), `"event":"`+event+`"`) {
			return string(b)
		}
	}
}

func (c *pusherWS) send(t *testing.T, msg string) {
	t.Helper()
	if err := c.WriteMessage(websocket.TextMessage, []byte(msg)); err != nil {
		t.Fatal(err)
	}
}

// pusherAPI calls n's Pusher HTTP API as app, signed.
func pusherAPI(t *testing.T, n *Node, app *pusher.App, method, path, body string) int {
	t.Helper()
	var b []byte
	if body != "" {
		b = []byte(body)
	}
	q := pusher.SignQuery(app, method, path, nil, b, time.Now())
	req, _ := http.NewRequest(method, "http://"+n.APIAddr()+path+"?"+q, strings.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func pusherTraffic(t *testing.T, n *Node) {
	a, b := dialPusherApp(t, n, metricsApp.Key), dialPusherApp(t, n, metricsApp.Key)
	for _, c := range []*pusherWS{a, b} {
		c.send(t, `{"event":"pusher:subscribe","data":{"channel":"private-m","auth":"`+metricsApp.ChannelAuth(c.socket, "private-m", "")+`"}}`)
		c.expect(t, "pusher_internal:subscription_succeeded")
	}
	a.send(t, `{"event":"pusher:subscribe","data":{"channel":"private-bad","auth":"mkey:00"}}`)
	a.expect(t, "pusher:subscription_error")
	cd := `{"user_id":"pm","user_info":{}}`
	a.send(t, `{"event":"pusher:subscribe","data":{"channel":"presence-m","auth":"`+metricsApp.ChannelAuth(a.socket, "presence-m", cd)+`","channel_data":`+jsonString(cd)+`}}`)
	a.expect(t, "pusher_internal:subscription_succeeded")
	a.send(t, `{"event":"client-x","channel":"private-m","data":{}}`)
	b.expect(t, "client-x")
	a.send(t, `{"event":"client-x","channel":"private-m","data":{}}`) // over 1 a second
	a.expect(t, "pusher:error")
	a.send(t, `not json`)
	a.expect(t, "pusher:error")
	ud := `{"id":"mu"}`
	b.send(t, `{"event":"pusher:signin","data":{"auth":"`+metricsApp.UserAuth(b.socket, ud)+`","user_data":`+jsonString(ud)+`}}`)
	b.expect(t, "pusher:signin_success")
	if st := pusherAPI(t, n, &metricsApp, "POST", "/apps/mapp/events", `{"name":"e","channel":"private-m","data":"d"}`); st != 200 {
		t.Fatalf("trigger: %d", st)
	}
	a.expect(t, `e`)
	if st := pusherAPI(t, n, &metricsApp, "POST", "/apps/mapp/users/mu/terminate_connections", `{}`); st != 200 {
		t.Fatalf("terminate: %d", st)
	}
	b.expect(t, "pusher:error")
	if st := pusherAPI(t, n, &cappedApp, "GET", "/apps/mapp/channels", ""); st != 401 {
		t.Fatalf("a request signed by another app: %d", st)
	}
	dialPusherApp(t, n, cappedApp.Key)
	dialPusherApp(t, n, cappedApp.Key).expect(t, "pusher:error") // over max-connections=1
	// A second member joins the presence channel: a is told (member_added).
	cd2 := `{"user_id":"pm2"}`
	c := dialPusherApp(t, n, metricsApp.Key)
	c.send(t, `{"event":"pusher:subscribe","data":{"channel":"presence-m","auth":"`+metricsApp.ChannelAuth(c.socket, "presence-m", cd2)+`","channel_data":`+jsonString(cd2)+`}}`)
	c.expect(t, "pusher_internal:subscription_succeeded")
	a.expect(t, "pusher_internal:member_added")
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// TestPusherOverCapacityRefusalReleasesCount: a connection refused over the app's
// max-connections (pusher:error, close 4100) is counted in the app's connections
// only until it is closed, so a later client gets in.
func TestPusherOverCapacityRefusalReleasesCount(t *testing.T) {
	app := pusher.App{ID: "cap2", Key: "cap2key", Secret: "cap2-secret", MaxConnections: 2}
	n := startNode(t, func(c *Config) { c.Pusher.Apps = []pusher.App{app} })
	gauge := `longlink_pusher_connections{app="cap2"}`
	a := dialPusherApp(t, n, app.Key)
	dialPusherApp(t, n, app.Key)
	refused := dialPusherApp(t, n, app.Key)
	refused.expect(t, "pusher:error")
	refused.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := refused.ReadMessage(); err == nil || !strings.Contains(err.Error(), "4100") {
		t.Fatalf("want close 4100, got %v", err)
	}
	testutil.WaitFor(t, 5*time.Second, "the refused one uncounted", func() bool { return scrape(t, n, gauge) == 2 })
	a.Close()
	testutil.WaitFor(t, 5*time.Second, "a closed uncounted", func() bool { return scrape(t, n, gauge) == 1 })
	d := dialPusherApp(t, n, app.Key)
	d.send(t, `{"event":"pusher:subscribe","data":{"channel":"pub"}}`)
	d.expect(t, "pusher_internal:subscription_succeeded")
}
