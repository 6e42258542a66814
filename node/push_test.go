package node

import (
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

func TestPushToUser(t *testing.T) {
	n := startNode(t, nil)
	a1 := dial(t, n, "alice")
	a2 := dial(t, n, "alice")
	b := dial(t, n, "bob")
	waitFor(t, 2*time.Second, "3 connections", func() bool { return n.Loop().Connections() == 3 })

	r := doPush(t, n, `{"to":{"users":["alice"]},"data":"hello"}`)
	if r.Status != 202 || r.Body["delivered"] != float64(2) {
		t.Fatalf("push = %d %s", r.Status, r.Raw)
	}
	for _, c := range []*websocket.Conn{a1, a2} {
		if typ, msg := read(t, c, 2*time.Second); typ != websocket.TextMessage || msg != "hello" {
			t.Fatalf("got %d %q", typ, msg)
		}
	}
	silent(t, b, 100*time.Millisecond)
}
