package loop

import (
	"context"
	"encoding/json"
	"errors"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"longlink/internal/testutil"
)

// Pusher connections as pusher-js makes them: /app/{key}?protocol=7, no token, no
// subprotocol; raw WebSocket clients so every byte the loop sends is checked.

var testPusherApps = map[string]string{"key1": "app1", "key2": "app2"}

func startPusherServer(t testing.TB, mod func(*Config)) *Server {
	t.Helper()
	return startServer(t, func(c *Config) {
		c.PusherApp = func(key string) (string, bool) {
			id, ok := testPusherApps[key]
			return id, ok
		}
		if mod != nil {
			mod(c)
		}
	})
}

// pusherEvent is a server event as the protocol sends it.
type pusherEvent struct {
	Event   string          `json:"event"`
	Channel string          `json:"channel"`
	Data    json.RawMessage `json:"data"`
}

// nextEvent reads one text frame and decodes it as a Pusher event.
func (c *rawClient) nextEvent(t testing.TB) pusherEvent {
	t.Helper()
	f := c.next(t)
	if f.Header.OpCode != ws.OpText {
		t.Fatalf("frame opcode %v, want a text frame (payload %q)", f.Header.OpCode, f.Payload)
	}
	var ev pusherEvent
	if err := json.Unmarshal(f.Payload, &ev); err != nil {
		t.Fatalf("event %q: %v", f.Payload, err)
	}
	return ev
}

// pusherDial connects to /app/key with query and returns the client once it has its
// 101 (the status is checked by the caller through resp).
func pusherDial(t testing.TB, s *Server, target string) *rawClient {
	t.Helper()
	c := rawConnect(t, s)
	resp := c.request(t, upgradeRequest(s.Addrs()[0], target))
	if resp.StatusCode != 101 {
		t.Fatalf("upgrade of %s: %s", target, resp.Status)
	}
	if p := resp.Header.Get("Sec-WebSocket-Protocol"); p != "" {
		t.Fatalf("a Pusher upgrade selected subprotocol %q", p)
	}
	return c
}

var socketIDRe = regexp.MustCompile(`^\d+\.\d+$`)

// established reads pusher:connection_established and returns the socket id.
func (c *rawClient) established(t testing.TB, wantTimeout int) string {
	t.Helper()
	ev := c.nextEvent(t)
	if ev.Event != "pusher:connection_established" {
		t.Fatalf("first event %q, want pusher:connection_established", ev.Event)
	}
	var text string
	if err := json.Unmarshal(ev.Data, &text); err != nil {
		t.Fatalf("connection_established data %s is not a JSON string: %v", ev.Data, err)
	}
	var d struct {
		SocketID        string `json:"socket_id"`
		ActivityTimeout int    `json:"activity_timeout"`
	}
	if err := json.Unmarshal([]byte(text), &d); err != nil {
		t.Fatalf("connection_established data %q: %v", text, err)
	}
	if !socketIDRe.MatchString(d.SocketID) {
		t.Fatalf("socket_id %q does not match %s", d.SocketID, socketIDRe)
	}
	if d.ActivityTimeout != wantTimeout {
		t.Fatalf("activity_timeout %d, want %d", d.ActivityTimeout, wantTimeout)
	}
	return d.SocketID
}

const pusherQuery = "?protocol=7&client=js&version=8.4.0&flash=false"

func TestPusherHandshakeRefusals(t *testing.T) {
	s := startPusherServer(t, nil)
	for _, tc := range []struct {
		target string
		code   uint16
	}{
		{"/app/nokey" + pusherQuery, PusherCloseAppNotFound},
		{"/app/key1?client=js&version=8.4.0", PusherCloseNoProtocol},
		{"/app/key1?protocol=6&client=js", PusherCloseUnsupportedProtocol},
		{"/app/key1?protocol=8", PusherCloseUnsupportedProtocol},
	} {
		c := pusherDial(t, s, tc.target)
		ev := c.nextEvent(t)
		var d struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		}
		if ev.Event != "pusher:error" || json.Unmarshal(ev.Data, &d) != nil || d.Code != int(tc.code) || d.Message == "" {
			t.Fatalf("%s: got event %q data %s, want pusher:error with code %d", tc.target, ev.Event, ev.Data, tc.code)
		}
		c.expectClose(t, tc.code)
	}
	// Not a Pusher path: the plain 404.
	c := rawConnect(t, s)
	if resp := c.request(t, upgradeRequest(s.Addrs()[0], "/app/key1/extra"+pusherQuery)); resp.StatusCode != 404 {
		t.Fatalf("/app/key1/extra: %s, want 404", resp.Status)
	}
	if s.Connections() != 0 {
		t.Fatalf("refused Pusher clients left %d connections", s.Connections())
	}

	// A node without Pusher apps does not know /app/.
	plain := startServer(t, nil)
	c = rawConnect(t, plain)
	if resp := c.request(t, upgradeRequest(plain.Addrs()[0], "/app/key1"+pusherQuery)); resp.StatusCode != 404 {
		t.Fatalf("/app/ without PusherApp: %s, want 404", resp.Status)
	}
}

func TestPusherConnectionEstablished(t *testing.T) {
	var mu sync.Mutex
	var ups []*Upgrade
	var presence []string
	s := startPusherServer(t, func(c *Config) {
		c.MaxConnsPerUser = 2
		c.OnUpgrade = func(u *Upgrade) {
			mu.Lock()
			ups = append(ups, u)
			mu.Unlock()
			go u.Done(UpgradeResult{}) // finished off the loop, as the hub does in a cluster
		}
		c.OnPresence = func(k PresenceKind, name string, present bool) {
			if k == PresenceUser {
				mu.Lock()
				presence = append(presence, name)
				mu.Unlock()
			}
		}
	})
	var ids []string
	for range 4 { // more than MaxConnsPerUser: Pusher connections have no user to evict from
		c := pusherDial(t, s, "/app/key1"+pusherQuery)
		ids = append(ids, c.established(t, 120))
	}
	testutil.WaitFor(t, 5*time.Second, "4 connections", func() bool { return s.Connections() == 4 })
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id] {
			t.Fatalf("socket id %s given twice", id)
		}
		seen[id] = true
		node, _, ok := ParseSocketID(id)
		if !ok || node != s.NodeNumber() {
			t.Fatalf("socket id %s: node %d ok %v, want node %d", id, node, ok, s.NodeNumber())
		}
		c := s.ConnBySocketID(id)
		if c == nil || c.SocketID() != id || c.Kind() != KindPusher || c.User() != "" || c.V2() {
			t.Fatalf("ConnBySocketID(%s) = %+v", id, c)
		}
		app := make(chan string, 1)
		s.Do(c, func(bool) { app <- c.PusherApp() })
		if got := <-app; got != "app1" {
			t.Fatalf("PusherApp %q, want app1", got)
		}
	}
	if s.ConnBySocketID("1.2.3") != nil || s.ConnBySocketID(ids[0]+"0") != nil {
		t.Fatal("ConnBySocketID found a connection for a bad or unknown id")
	}
	mu.Lock()
	defer mu.Unlock()
	if s.Users() != 0 || len(presence) != 0 {
		t.Fatalf("Pusher connections made users: Users()=%d presence %q", s.Users(), presence)
	}
	if len(ups) != 4 {
		t.Fatalf("OnUpgrade called %d times, want 4", len(ups))
	}
	for _, u := range ups {
		if u.Kind != KindPusher || u.PusherApp != "app1" || u.User != "" || u.V2 {
			t.Fatalf("Upgrade %+v, want Kind pusher, app1, no user", u)
		}
	}
}

func TestPusherPingPong(t *testing.T) {
	got := make(chan string, 4)
	s := startPusherServer(t, func(c *Config) {
		c.OnPusherMessage = func(c *Conn, payload []byte) { got <- string(payload) }
	})
	c := pusherDial(t, s, "/app/key2"+pusherQuery)
	c.established(t, 120)
	c.send(t, frame(true, 0, ws.OpText, []byte(`{"event":"pusher:ping","data":{}}`), true))
	if ev := c.nextEvent(t); ev.Event != "pusher:pong" {
		t.Fatalf("answer to pusher:ping: %q", ev.Event)
	}
	sub := `{"event":"pusher:subscribe","data":{"channel":"pusher:ping"}}` // names it, is not it
	c.send(t, frame(true, 0, ws.OpText, []byte(sub), true))
	select {
	case p := <-got:
		if p != sub {
			t.Fatalf("OnPusherMessage got %q, want %q", p, sub)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("OnPusherMessage not called")
	}
	if len(got) != 0 {
		t.Fatal("pusher:ping reached OnPusherMessage")
	}
	// Binary is not part of the protocol.
	c.send(t, frame(true, 0, ws.OpBinary, []byte("x"), true))
	c.expectClose(t, 1003)
}

func TestPusherServerPing(t *testing.T) {
	s := startPusherServer(t, func(c *Config) {
		c.PusherActivityTimeout = time.Second
		c.PusherPongTimeout = time.Second
	})
	c := pusherDial(t, s, "/app/key1"+pusherQuery)
	c.established(t, 1)
	// Silent: the server pings in the protocol (a text event, no WebSocket ping).
	if ev := c.nextEvent(t); ev.Event != "pusher:ping" {
		t.Fatalf("keepalive %q, want pusher:ping", ev.Event)
	}
	// An answer keeps the connection: the next silence gets another ping.
	c.send(t, frame(true, 0, ws.OpText, []byte(`{"event":"pusher:pong","data":{}}`), true))
	if ev := c.nextEvent(t); ev.Event != "pusher:ping" {
		t.Fatalf("second keepalive %q, want pusher:ping", ev.Event)
	}
	// No answer: 4201.
	c.expectClose(t, PusherClosePongTimeout)
}

func TestPusherDelivery(t *testing.T) {
	s := startPusherServer(t, nil)
	const room = "pusher/app1/my-channel"
	if app, ch, ok := PusherChannel(room); !ok || app != "app1" || ch != "my-channel" || PusherRoom(app, ch) != room {
		t.Fatalf("PusherChannel(%q) = %q %q %v", room, app, ch, ok)
	}
	a := pusherDial(t, s, "/app/key1"+pusherQuery)
	b := pusherDial(t, s, "/app/key1"+pusherQuery)
	other := pusherDial(t, s, "/app/key2"+pusherQuery) // another app
	idA, idB, idO := a.established(t, 120), b.established(t, 120), other.established(t, 120)
	plain := rawDial(t, s, "alice")
	v2 := rawConnect(t, s)
	if resp := v2.request(t, upgradeRequest(s.Addrs()[0], "/ws?protocol=v2&token="+testutil.Token(t, testSecret, "bob"))); resp.StatusCode != 101 {
		t.Fatalf("v2 upgrade: %s", resp.Status)
	}
	join := func(id, r string) error {
		c := s.ConnBySocketID(id)
		errc := make(chan error, 1)
		s.Do(c, func(bool) { _, err := s.JoinConn(c, r); errc <- err })
		return <-errc
	}
	for _, id := range []string{idA, idB} {
		if err := join(id, room); err != nil {
			t.Fatal(err)
		}
	}
	if err := join(idO, room); !errors.Is(err, ErrForeignRoom) {
		t.Fatalf("app2's connection joining app1's channel: %v, want ErrForeignRoom", err)
	}
	if _, _, err := s.JoinRoom(context.Background(), room, []string{"alice", "bob"}); err != nil {
		t.Fatal(err)
	}
	if ri := s.Room(room); ri.Connections != 4 {
		t.Fatalf("room has %d connections, want 4", ri.Connections)
	}

	push := func(data, exclude string, keys ...Key) int {
		t.Helper()
		st := &Stamped{ID: "m-" + data, JSON: true, Data: []byte(data), Plain: PrepareFrame(false, []byte(data)),
			Keys: keys, Event: "my-event", ExcludeSocket: exclude}
		p, err := s.SubmitStamped(st, 0)
		if err != nil {
			t.Fatal(err)
		}
		n, err := p.Wait(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	roomKey := func() Key { return Key{Kind: KeyRoom, Name: room, Stream: "room:" + room} }
	wantEvent := func(c *rawClient, data string) {
		t.Helper()
		ev := c.nextEvent(t)
		var text string
		if ev.Event != "my-event" || ev.Channel != "my-channel" || json.Unmarshal(ev.Data, &text) != nil || text != data {
			t.Fatalf("got %+v (data %s), want my-event on my-channel with data string %q", ev, ev.Data, data)
		}
	}

	if n := push(`{"n":1}`, ""); n != 0 {
		t.Fatalf("a message with no key reached %d", n)
	}
	if n := push(`{"n":1}`, "", roomKey()); n != 4 {
		t.Fatalf("room push written to %d connections, want 4", n)
	}
	wantEvent(a, `{"n":1}`)
	wantEvent(b, `{"n":1}`)
	if f := plain.next(t); string(f.Payload) != `{"n":1}` {
		t.Fatalf("plain client got %q", f.Payload)
	}
	var env struct{ Type, Stream string }
	if f := v2.next(t); json.Unmarshal(f.Payload, &env) != nil || env.Type != "push" || env.Stream != "room:"+room {
		t.Fatalf("v2 client got %q", f.Payload)
	}

	// The trigger's socket_id: a skips it, everyone else has it.
	if n := push(`{"n":2}`, idA, roomKey()); n != 3 {
		t.Fatalf("push excluding %s written to %d, want 3", idA, n)
	}
	wantEvent(b, `{"n":2}`)
	plain.next(t)
	v2.next(t)
	// Only a Pusher connection is excluded: a native one takes its message.
	num, _ := s.connNum(s.UserConnections("alice")[0].ID)
	if n := push(`{"n":"2b"}`, s.reg.conn(num).SocketID(), roomKey()); n != 4 {
		t.Fatalf("push excluding a plain connection's socket id written to %d, want 4", n)
	}
	wantEvent(a, `{"n":"2b"}`)
	wantEvent(b, `{"n":"2b"}`)
	plain.next(t)
	v2.next(t)
	// A broadcast to all is not a Pusher event: plain and v2 get it, Pusher ones not.
	skipped := s.m.pusherSkipped.Get()
	if n := push(`{"n":3}`, "", Key{Kind: KeyAll, Stream: "all"}); n != 2 {
		t.Fatalf("broadcast written to %d, want 2 (plain and v2)", n)
	}
	if got := s.m.pusherSkipped.Get() - skipped; got != 3 {
		t.Fatalf("skipped %d Pusher connections, want 3", got)
	}
	plain.next(t)
	v2.next(t)
	// An unstamped Deliver to the room, likewise.
	if n, err := s.Deliver(context.Background(), PrepareFrame(false, []byte("raw")), Targets{Rooms: []string{room}}, 0); err != nil || n != 2 {
		t.Fatalf("raw room delivery: %d %v, want 2", n, err)
	}
	plain.next(t)
	v2.next(t)
	// a's next frame is the fourth message: it got neither the broadcast nor the raw
	// frame (nor, above, the message that excluded it).
	push(`{"n":4}`, "", roomKey())
	wantEvent(a, `{"n":4}`)
	wantEvent(b, `{"n":4}`)
	other.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if f, err := ws.ReadFrame(other.br); err == nil {
		t.Fatalf("app2's connection got %q", f.Payload)
	}
}

// The envelope is built once per (message, room) and shared.
func TestPusherFrameShared(t *testing.T) {
	st := &Stamped{Data: []byte("hi \"you\""), Event: "e", Keys: []Key{
		{Kind: KeyRoom, Name: "pusher/1/c"}, {Kind: KeyRoom, Name: "plain"}, {Kind: KeyAll}}}
	f1, f2 := st.pusherFrame(0), st.pusherFrame(0)
	if f1 == nil || &f1[0] != &f2[0] {
		t.Fatal("the Pusher frame of one room was built twice")
	}
	if want := `{"event":"e","channel":"c","data":"hi \"you\""}`; string(f1[2:]) != want {
		t.Fatalf("frame payload %q, want %q", f1[2:], want)
	}
	if st.pusherFrame(1) != nil || st.pusherFrame(2) != nil || st.pusherFrame(-1) != nil {
		t.Fatal("a Pusher frame for a key that is not a Pusher channel's room")
	}
	st.Event = ""
	st.Keys[0] = Key{Kind: KeyRoom, Name: "pusher/1/c"}
	if st.pusherFrame(0) != nil {
		t.Fatal("a Pusher frame for a message without an event")
	}
	bin := AppendPusherEvent(nil, "e", "c", true, []byte{0xff, 0})
	if string(bin) != `{"event":"e","channel":"c","data":"/wA="}` {
		t.Fatalf("binary event %s", bin)
	}
}

func TestParseSocketID(t *testing.T) {
	f := func(id string, node uint32, num uint64, ok bool) {
		t.Helper()
		n, m, k := ParseSocketID(id)
		if n != node || m != num || k != ok {
			t.Fatalf("ParseSocketID(%q) = %d %d %v, want %d %d %v", id, n, m, k, node, num, ok)
		}
	}
	f("123.456", 123, 456, true)
	f("4294967295.18446744073709551615", 4294967295, 18446744073709551615, true)
	f("4294967296.1", 0, 0, false)
	f("1.", 0, 0, false)
	f(".1", 0, 0, false)
	f("+1.2", 0, 0, false)
	f("1.-2", 0, 0, false)
	f("1.2.3", 0, 0, false)
	f("a.b", 0, 0, false)
	f("", 0, 0, false)
	if nodeNumber("n1.abc-") == nodeNumber("n1.abd-") {
		t.Fatal("two incarnations share a node number")
	}
}

func TestPusherErrorEncoding(t *testing.T) {
	b := AppendPusherError(nil, 4001, `no "app"`)
	var ev struct {
		Event string
		Data  struct {
			Code    int
			Message string
		}
	}
	if err := json.Unmarshal(b, &ev); err != nil || ev.Event != "pusher:error" || ev.Data.Code != 4001 || ev.Data.Message != `no "app"` {
		t.Fatalf("%s: %+v %v", b, ev, err)
	}
}

// At capacity or draining, a Pusher client is told so in its protocol: 4100 (back
// off, then reconnect) and 4200 (reconnect at once, to another node).
func TestPusherRefusedAtCapacityAndDraining(t *testing.T) {
	s := startPusherServer(t, func(c *Config) { c.MaxConns = 1 })
	first := pusherDial(t, s, "/app/key1"+pusherQuery)
	first.established(t, 120)
	c := pusherDial(t, s, "/app/key1"+pusherQuery)
	if ev := c.nextEvent(t); ev.Event != "pusher:error" || !json.Valid(ev.Data) {
		t.Fatalf("at capacity: %+v", ev)
	}
	c.expectClose(t, PusherCloseOverCapacity)

	s.draining.Store(true) // what Drain sets first; Drain itself would close first too
	c = pusherDial(t, s, "/app/key1"+pusherQuery)
	if ev := c.nextEvent(t); ev.Event != "pusher:error" {
		t.Fatalf("draining: %+v", ev)
	}
	c.expectClose(t, PusherCloseReconnect)
}
