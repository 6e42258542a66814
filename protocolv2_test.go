package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"longlink/internal/testutil"
)

// TestProtocolV2Messages: what a v2 client gets for each kind of push, next to what a
// plain client of the same user gets, through the real binary.
func TestProtocolV2Messages(t *testing.T) {
	n := startBinary(t)
	token := testutil.Token(t, n.secret, "42", "lobby")
	d := websocket.Dialer{Subprotocols: []string{"longlink.v2", "ignored-token-slot"}}
	v2, resp, err := d.Dial("ws://"+n.Client+"/ws?token="+token, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer v2.Close()
	if p := resp.Header.Get("Sec-WebSocket-Protocol"); p != "longlink.v2" {
		t.Fatalf("selected protocol %q", p)
	}
	// ?protocol=v2 works for libraries that cannot set subprotocols.
	q, _, err := websocket.DefaultDialer.Dial("ws://"+n.Client+"/ws?protocol=v2&token="+token, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	plain, _, err := websocket.DefaultDialer.Dial("ws://"+n.Client+"/ws?token="+token, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()

	read := func(ws *websocket.Conn) (int, map[string]any, string) {
		t.Helper()
		ws.SetReadDeadline(time.Now().Add(5 * time.Second))
		kind, b, err := ws.ReadMessage()
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		json.Unmarshal(b, &m)
		return kind, m, string(b)
	}
	for _, ws := range []*websocket.Conn{v2, q} {
		_, w, raw := read(ws)
		streams, _ := w["streams"].(map[string]any)
		if w["type"] != "welcome" || w["node"] == nil || w["connection"] == nil || len(streams) != 3 ||
			streams["user:42"] == nil || streams["room:lobby"] == nil || streams["all"] == nil {
			t.Fatalf("welcome %s: want type, connection, node and streams user:42, room:lobby, all", raw)
		}
	}
	// A JSON value, a string, binary, and one message reaching the connection through
	// its user and its room (received once).
	res := n.push(t, `{"to":{"users":["42"]},"data":{"a":[1,2]}}`)
	if res.Body["stored"] != float64(1) {
		t.Fatalf("standalone node: stored %v, want 1", res.Body["stored"])
	}
	n.push(t, `{"to":{"users":["42"]},"data":"hi \"there\""}`)
	n.push(t, `{"to":{"users":["42"]},"data_base64":"AAEC/w=="}`)
	n.push(t, `{"to":{"users":["42"],"rooms":["lobby"]},"data":"once"}`)
	n.push(t, `{"to":{"users":["42"]},"data":"live only","history":false}`)

	_, m, raw := read(v2)
	if m["type"] != "push" || m["stream"] != "user:42" || m["offset"] != float64(1) || m["epoch"] == "" || !strings.Contains(raw, `"data":{"a":[1,2]}`) {
		t.Fatalf("JSON push: %s", raw)
	}
	if _, m, raw = read(v2); m["data"] != `hi "there"` || m["offset"] != float64(2) {
		t.Fatalf("string push: %s", raw)
	}
	if _, m, raw = read(v2); m["data_base64"] != "AAEC/w==" || m["data"] != nil {
		t.Fatalf("binary push: %s", raw)
	}
	if _, m, raw = read(v2); m["data"] != "once" || m["stream"] != "user:42" {
		t.Fatalf("user+room push: %s", raw)
	}
	onceID := m["id"]
	// It came through the user's stream; its position in the room's moves too.
	if _, m, raw = read(v2); m["type"] != "position" || m["stream"] != "room:lobby" || m["id"] != onceID || m["offset"] != float64(1) {
		t.Fatalf("after the user+room push: %s, want its position in room:lobby", raw)
	}
	if _, m, raw = read(v2); m["data"] != "live only" || m["epoch"] != nil || m["offset"] != nil {
		t.Fatalf("history:false push: %s, want no epoch or offset", raw)
	}
	for _, want := range []string{`{"a":[1,2]}`, `hi "there"`, "\x00\x01\x02\xff", "once", "live only"} {
		if _, b, err := plain.ReadMessage(); err != nil || string(b) != want {
			t.Fatalf("plain client: %q, %v; want %q", b, err, want)
		}
	}
	// Nothing more: the user+room push came once.
	v2.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if _, b, err := v2.ReadMessage(); err == nil {
		t.Fatalf("extra message %s", b)
	}
	// A resume with a malformed since is not refused: it just resumes nothing.
	ws, _, err := d.Dial("ws://"+n.Client+"/ws?since=not-json&token="+token, nil)
	if err != nil {
		t.Fatalf("malformed since refused: %v", err)
	}
	ws.Close()
}
