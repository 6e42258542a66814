package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"longlink/internal/testutil"
)

// The Pusher Channels protocol (docs/pusher.md) through libraries nobody here wrote:
// pusher-js (its Node build) as the client, the official `pusher` server SDK as the
// app's back-end (channel and user auth) and as the publisher on the HTTP API, both
// driven by pusher_node.mjs against real nodes.

// Two apps: the main one allows client events, the other does not.
const (
	pAppID, pKey, pSecret = "e2e-app", "e2e-key", "e2e-pusher-secret-0123456789"
	qAppID, qKey, qSecret = "e2e-quiet", "e2e-quiet-key", "e2e-quiet-secret-0123456789"
	// pMasterKey is the back-end's encryption master key (32 bytes, base64): only
	// the SDKs have it, the node relays ciphertext.
	pMasterKey = "ZTJlLW1hc3Rlci1rZXktMzItYnl0ZXMtbG9uZy0hISE="
)

var pusherFlags = []string{
	"--pusher-app", pAppID + ":" + pKey + ":" + pSecret + ",client-events",
	"--pusher-app", qAppID + ":" + qKey + ":" + qSecret,
}

// TestPusherJSStandalone is an app's whole life on one node with the real
// libraries: public, private, encrypted and presence channels, client events,
// user sign-in and the server's user calls, channel info, and a node killed and
// restarted on the same ports, after which pusher-js reconnects and resubscribes.
func TestPusherJSStandalone(t *testing.T) {
	requireNodeModules(t, "pusher-js", "pusher")
	testutil.Binary(t)
	srv := startServer(t, append(prodFlags, pusherFlags...)...)
	d := startPusherDriver(t)
	api := func(op string, args ...any) map[string]any { return d.api(t, pAppID, srv.API, op, args...) }

	alice := d.connect(t, "alice", pAppID, srv.Client, "alice")
	bob := d.connect(t, "bob", pAppID, srv.Client, "bob")
	waitMetric(t, srv, `longlink_pusher_connections{app="`+pAppID+`"}`, 2)

	t.Run("public channel: trigger, triggerBatch, socket_id", func(t *testing.T) {
		for _, c := range []string{"alice", "bob"} {
			d.do(t, "subscribe", "client", c, "channel", "orders")
			d.do(t, "subscribe", "client", c, "channel", "news")
		}
		api("trigger", "orders", "shipped", map[string]any{"id": 1})
		d.expect(t, "alice", "orders", "shipped", map[string]any{"id": 1})
		d.expect(t, "bob", "orders", "shipped", map[string]any{"id": 1})

		// A batch of two events on two channels.
		api("triggerBatch", []map[string]any{
			{"channel": "orders", "name": "batched", "data": map[string]any{"id": 3}},
			{"channel": "news", "name": "batched", "data": map[string]any{"id": 4}},
		})
		for _, c := range []string{"alice", "bob"} {
			d.expect(t, c, "orders", "batched", map[string]any{"id": 3})
			d.expect(t, c, "news", "batched", map[string]any{"id": 4})
		}

		// socket_id excludes the publisher's own connection; the next event, which
		// alice does get, proves the excluded one is not merely late.
		api("trigger", "orders", "shipped", map[string]any{"id": 5}, map[string]any{"socket_id": alice})
		api("triggerBatch", []map[string]any{{"channel": "orders", "name": "shipped", "data": map[string]any{"id": 6}, "socket_id": bob}})
		api("trigger", "orders", "shipped", map[string]any{"id": 7})
		d.expect(t, "bob", "orders", "shipped", map[string]any{"id": 5})
		d.expect(t, "alice", "orders", "shipped", map[string]any{"id": 6})
		d.expect(t, "alice", "orders", "shipped", map[string]any{"id": 7})
		d.expect(t, "bob", "orders", "shipped", map[string]any{"id": 7})
		d.absent(t, "alice", "orders", "shipped", map[string]any{"id": 5})
		d.absent(t, "bob", "orders", "shipped", map[string]any{"id": 6})

		// Unsubscribed: news is quiet for bob, orders still flows. A node handles a
		// connection's messages in order, so once a later subscribe is answered the
		// unsubscribe is done.
		d.do(t, "unsubscribe", "client", "bob", "channel", "news")
		d.do(t, "subscribe", "client", "bob", "channel", "sync-1")
		api("trigger", "news", "late", map[string]any{"id": 8})
		api("trigger", "orders", "late", map[string]any{"id": 9})
		d.expect(t, "alice", "news", "late", map[string]any{"id": 8})
		d.expect(t, "bob", "orders", "late", map[string]any{"id": 9})
		d.absent(t, "bob", "news", "late", nil)
	})

	t.Run("one trigger to two channels reaches a subscriber of both on each", func(t *testing.T) {
		// Pusher delivers an event once per channel: pusher-js emits it on each
		// channel object, and an app bound to both expects both.
		for _, c := range []string{"alice", "bob"} {
			d.do(t, "subscribe", "client", c, "channel", "multi-a")
			d.do(t, "subscribe", "client", c, "channel", "multi-b")
		}
		api("trigger", []string{"multi-a", "multi-b"}, "both", map[string]any{"id": 2})
		for _, c := range []string{"alice", "bob"} {
			d.expect(t, c, "multi-a", "both", map[string]any{"id": 2})
			d.expect(t, c, "multi-b", "both", map[string]any{"id": 2})
		}
	})

	t.Run("private channel: the back-end authorizes", func(t *testing.T) {
		d.do(t, "subscribe", "client", "alice", "channel", "private-acct")
		d.do(t, "subscribe", "client", "bob", "channel", "private-acct")
		api("trigger", "private-acct", "balance", map[string]any{"eur": 10})
		d.expect(t, "alice", "private-acct", "balance", map[string]any{"eur": 10})
		d.expect(t, "bob", "private-acct", "balance", map[string]any{"eur": 10})

		// A back-end signing with the wrong secret: the node refuses, and pusher-js
		// reports it as the channel's subscription_error with the node's status.
		d.connect(t, "mallory", pAppID, srv.Client, "mallory", "bad", true)
		r := d.do(t, "subscribe", "client", "mallory", "channel", "private-acct", "expectError", true)
		if e, _ := r["data"].(map[string]any); e["status"] != float64(401) || e["type"] != "AuthError" {
			t.Fatalf("subscription_error for a bad signature: %v", r["data"])
		}
		d.do(t, "disconnect", "client", "mallory")
	})

	t.Run("private-encrypted channel: relayed as-is, decrypted by pusher-js", func(t *testing.T) {
		d.do(t, "subscribe", "client", "alice", "channel", "private-encrypted-vault")
		api("trigger", "private-encrypted-vault", "secret", map[string]any{"pin": "1234"})
		d.expect(t, "alice", "private-encrypted-vault", "secret", map[string]any{"pin": "1234"})
	})

	t.Run("client events", func(t *testing.T) {
		if r := d.do(t, "clientTrigger", "client", "alice", "channel", "private-acct", "event", "client-typing", "data", map[string]any{"who": "alice"}); r["sent"] != true {
			t.Fatalf("pusher-js did not send the client event: %v", r)
		}
		d.expect(t, "bob", "private-acct", "client-typing", map[string]any{"who": "alice"})
		// Never back to the sender: an event after it reaches alice, the client
		// event does not.
		api("trigger", "private-acct", "barrier", map[string]any{"n": 1})
		d.expect(t, "alice", "private-acct", "barrier", map[string]any{"n": 1})
		d.expect(t, "bob", "private-acct", "barrier", map[string]any{"n": 1})
		d.absent(t, "alice", "private-acct", "client-typing", nil)

		// An app without client-events: the node answers pusher:error, which
		// pusher-js emits, and relays nothing.
		d.connect(t, "q1", qAppID, srv.Client, "q1")
		d.connect(t, "q2", qAppID, srv.Client, "q2")
		d.do(t, "subscribe", "client", "q1", "channel", "private-room")
		d.do(t, "subscribe", "client", "q2", "channel", "private-room")
		d.do(t, "clientTrigger", "client", "q1", "channel", "private-room", "event", "client-typing", "data", map[string]any{"who": "q1"})
		e := d.expect(t, "q1", "", "pusher:error", nil)
		t.Logf("refused client event: %v", e["data"])
		d.api(t, qAppID, srv.API, "trigger", "private-room", "barrier", map[string]any{"n": 1})
		d.expect(t, "q2", "private-room", "barrier", map[string]any{"n": 1})
		d.absent(t, "q2", "private-room", "client-typing", nil)
		if m := testutil.Metrics(t, srv.API); m[`longlink_pusher_client_events_total{app="`+qAppID+`",outcome="refused"}`] != 1 {
			t.Errorf("refused client events of %s: %v, want 1", qAppID, m[`longlink_pusher_client_events_total{app="`+qAppID+`",outcome="refused"}`])
		}
		d.do(t, "disconnect", "client", "q1")
		d.do(t, "disconnect", "client", "q2")
	})

	t.Run("presence: members, member_added, member_removed", func(t *testing.T) {
		d.do(t, "subscribe", "client", "alice", "channel", "presence-room")
		d.do(t, "subscribe", "client", "bob", "channel", "presence-room")
		d.members(t, "alice", "presence-room", "alice", "bob")
		d.members(t, "bob", "presence-room", "alice", "bob")
		d.connect(t, "carol", pAppID, srv.Client, "carol")
		d.do(t, "subscribe", "client", "carol", "channel", "presence-room")
		d.members(t, "carol", "presence-room", "alice", "bob", "carol")
		d.expect(t, "alice", "presence-room", "pusher:member_added", map[string]any{"id": "carol", "info": map[string]any{"name": "carol"}})
		d.members(t, "bob", "presence-room", "alice", "bob", "carol")
		// A client event on a presence channel says who sent it.
		d.do(t, "clientTrigger", "client", "carol", "channel", "presence-room", "event", "client-hi", "data", map[string]any{"n": 1})
		d.expect(t, "alice", "presence-room", "client-hi", map[string]any{"n": 1})
		if e := d.expect(t, "alice", "raw:presence-room", "client-hi", map[string]any{"n": 1}); e["userId"] != "carol" {
			t.Errorf("client event on a presence channel: user_id %v, want carol", e["userId"])
		}
		d.do(t, "disconnect", "client", "carol")
		d.expect(t, "alice", "presence-room", "pusher:member_removed", map[string]any{"id": "carol", "info": map[string]any{"name": "carol"}})
		d.members(t, "bob", "presence-room", "alice", "bob")
	})

	t.Run("signin, sendToUser, terminateUserConnections", func(t *testing.T) {
		d.connect(t, "dave", pAppID, srv.Client, "dave")
		r := d.do(t, "signin", "client", "dave")
		if u, _ := r["user"].(map[string]any); u["id"] != "dave" {
			t.Fatalf("signed in as %v", r["user"])
		}
		api("sendToUser", "dave", "notice", map[string]any{"n": 1})
		d.expect(t, "dave", "#user", "notice", map[string]any{"n": 1})
		// Another connection's sign-in is not dave's: it does not get dave's events.
		d.do(t, "signin", "client", "bob")
		api("sendToUser", "dave", "notice", map[string]any{"n": 2})
		api("sendToUser", "bob", "notice", map[string]any{"n": 3})
		d.expect(t, "dave", "#user", "notice", map[string]any{"n": 2})
		d.expect(t, "bob", "#user", "notice", map[string]any{"n": 3})
		d.absent(t, "bob", "#user", "notice", map[string]any{"n": 2})

		api("terminateUserConnections", "dave")
		// 4009: pusher-js does not reconnect, it ends disconnected.
		if e := d.expect(t, "dave", "", "pusher:error", nil); e["data"].(map[string]any)["code"] != float64(4009) {
			t.Errorf("terminated with %v, want code 4009", e["data"])
		}
		d.do(t, "state", "client", "dave", "is", "disconnected")
		d.do(t, "disconnect", "client", "dave")
	})

	t.Run("channel info through the server SDK's get", func(t *testing.T) {
		r := api("get", map[string]any{"path": "/channels", "params": map[string]any{"info": "subscription_count"}})
		chans, _ := r["body"].(map[string]any)["channels"].(map[string]any)
		if c, _ := chans["orders"].(map[string]any); c["subscription_count"] != float64(2) {
			t.Errorf("GET /channels: orders %v, want subscription_count 2 (%v)", chans["orders"], r["body"])
		}
		r = api("get", map[string]any{"path": "/channels/news", "params": map[string]any{"info": "subscription_count"}})
		if b := r["body"].(map[string]any); b["occupied"] != true || b["subscription_count"] != float64(1) {
			t.Errorf("GET /channels/news: %v", b)
		}
		r = api("get", map[string]any{"path": "/channels/presence-room", "params": map[string]any{"info": "user_count"}})
		if b := r["body"].(map[string]any); b["occupied"] != true || b["user_count"] != float64(2) {
			t.Errorf("GET /channels/presence-room: %v", b)
		}
		r = api("get", map[string]any{"path": "/channels/presence-room/users"})
		if got := userIDs(r["body"]); !reflect.DeepEqual(got, []string{"alice", "bob"}) {
			t.Errorf("GET /channels/presence-room/users: %v", r["body"])
		}
		r = api("get", map[string]any{"path": "/channels/empty"})
		if b := r["body"].(map[string]any); b["occupied"] != false {
			t.Errorf("GET /channels/empty: %v", b)
		}
	})

	t.Run("reconnect after the node is killed", func(t *testing.T) {
		marks := map[string]float64{}
		for _, c := range []string{"alice", "bob"} {
			marks[c] = d.mark(t, c)
		}
		srv.Kill() // SIGKILL: no goodbye, the sockets just end
		for _, c := range []string{"alice", "bob"} {
			d.do(t, "expect", "client", c, "channel", "", "event", "state:connecting", "since", marks[c], "timeoutMs", 20000)
		}
		srv = restartServer(t, srv, append(prodFlags, pusherFlags...)...)
		// pusher-js retries once a second, then backs off to 15 s and more while
		// the node is away: give it time.
		newAlice := d.do(t, "state", "client", "alice", "is", "connected", "timeoutMs", 60000)["socketId"]
		d.do(t, "state", "client", "bob", "is", "connected", "timeoutMs", 60000)
		if newAlice == alice {
			t.Errorf("socket id %v survived a restart", newAlice)
		}
		// Resubscribed (private ones authorized again for the new socket id).
		for _, c := range []string{"alice", "bob"} {
			for _, ch := range []string{"orders", "private-acct"} {
				d.do(t, "expect", "client", c, "channel", ch, "event", "pusher:subscription_succeeded", "since", marks[c], "timeoutMs", 20000)
			}
		}
		api := func(op string, args ...any) map[string]any { return d.api(t, pAppID, srv.API, op, args...) }
		api("trigger", "orders", "shipped", map[string]any{"id": 100})
		api("trigger", "private-acct", "balance", map[string]any{"eur": 100})
		d.expect(t, "alice", "orders", "shipped", map[string]any{"id": 100})
		d.expect(t, "bob", "orders", "shipped", map[string]any{"id": 100})
		d.expect(t, "alice", "private-acct", "balance", map[string]any{"eur": 100})
		d.expect(t, "bob", "private-acct", "balance", map[string]any{"eur": 100})
		api("trigger", "orders", "shipped", map[string]any{"id": 101}, map[string]any{"socket_id": newAlice})
		api("trigger", "orders", "shipped", map[string]any{"id": 102})
		d.expect(t, "alice", "orders", "shipped", map[string]any{"id": 102})
		d.expect(t, "bob", "orders", "shipped", map[string]any{"id": 101})
		d.absent(t, "alice", "orders", "shipped", map[string]any{"id": 101})
	})
}

// TestPusherJSCluster is the same libraries against three clustered nodes, one
// client on each: a channel spans the nodes, a trigger to any node reaches every
// subscriber, socket_id excludes a client on another node than the one triggered,
// client events cross nodes, and presence and channel info are cluster-wide.
func TestPusherJSCluster(t *testing.T) {
	requireNodeModules(t, "pusher-js", "pusher")
	testutil.Binary(t)
	hooks := newWebhookReceiver(t)
	nodes := startPusherCluster(t, 3, "--pusher-app", pAppID+":"+pKey+":"+pSecret+",client-events,webhook="+hooks.srv.URL,
		"--pusher-app", qAppID+":"+qKey+":"+qSecret)
	d := startPusherDriver(t)
	names := []string{"c1", "c2", "c3"}
	sockets := map[string]any{}
	for i, c := range names {
		sockets[c] = d.connect(t, c, pAppID, nodes[i].Client, c)
		d.do(t, "subscribe", "client", c, "channel", "orders")
		d.do(t, "subscribe", "client", c, "channel", "private-team")
	}

	t.Run("a trigger to any node reaches every node's clients", func(t *testing.T) {
		for i, n := range nodes {
			d.api(t, pAppID, n.API, "trigger", "orders", "shipped", map[string]any{"via": i})
			d.api(t, pAppID, n.API, "triggerBatch", []map[string]any{{"channel": "private-team", "name": "batched", "data": map[string]any{"via": i}}})
		}
		for _, c := range names {
			for i := range nodes {
				d.expect(t, c, "orders", "shipped", map[string]any{"via": i})
				d.expect(t, c, "private-team", "batched", map[string]any{"via": i})
			}
		}
	})

	t.Run("one trigger to two channels reaches each node's clients on each", func(t *testing.T) {
		for _, c := range names {
			d.do(t, "subscribe", "client", c, "channel", "multi-a")
			d.do(t, "subscribe", "client", c, "channel", "multi-b")
		}
		d.api(t, pAppID, nodes[1].API, "trigger", []string{"multi-a", "multi-b"}, "both", map[string]any{"n": 1})
		for _, c := range names {
			d.expect(t, c, "multi-a", "both", map[string]any{"n": 1})
			d.expect(t, c, "multi-b", "both", map[string]any{"n": 1})
		}
	})

	t.Run("socket_id excludes a client on another node", func(t *testing.T) {
		// Posted to node 1, excluding c2 (on node 2), then c3 (node 3).
		d.api(t, pAppID, nodes[0].API, "trigger", "orders", "excl", map[string]any{"n": 1}, map[string]any{"socket_id": sockets["c2"]})
		d.api(t, pAppID, nodes[0].API, "trigger", "orders", "excl", map[string]any{"n": 2}, map[string]any{"socket_id": sockets["c3"]})
		d.api(t, pAppID, nodes[0].API, "trigger", "orders", "excl", map[string]any{"n": 3})
		for _, c := range names {
			d.expect(t, c, "orders", "excl", map[string]any{"n": 3})
		}
		d.expect(t, "c1", "orders", "excl", map[string]any{"n": 1})
		d.expect(t, "c1", "orders", "excl", map[string]any{"n": 2})
		d.expect(t, "c3", "orders", "excl", map[string]any{"n": 1})
		d.expect(t, "c2", "orders", "excl", map[string]any{"n": 2})
		d.absent(t, "c2", "orders", "excl", map[string]any{"n": 1})
		d.absent(t, "c3", "orders", "excl", map[string]any{"n": 2})
	})

	t.Run("client events cross nodes", func(t *testing.T) {
		d.do(t, "clientTrigger", "client", "c1", "channel", "private-team", "event", "client-typing", "data", map[string]any{"who": "c1"})
		d.expect(t, "c2", "private-team", "client-typing", map[string]any{"who": "c1"})
		d.expect(t, "c3", "private-team", "client-typing", map[string]any{"who": "c1"})
		d.api(t, pAppID, nodes[2].API, "trigger", "private-team", "barrier", map[string]any{"n": 1})
		d.expect(t, "c1", "private-team", "barrier", map[string]any{"n": 1})
		d.absent(t, "c1", "private-team", "client-typing", nil)
	})

	t.Run("sendToUser reaches a user signed in on another node", func(t *testing.T) {
		d.do(t, "signin", "client", "c3")
		d.api(t, pAppID, nodes[0].API, "sendToUser", "c3", "notice", map[string]any{"n": 1})
		d.expect(t, "c3", "#user", "notice", map[string]any{"n": 1})
		d.connect(t, "c3b", pAppID, nodes[1].Client, "c3")
		d.do(t, "signin", "client", "c3b")
		// One call to node 1 closes the user's connections on nodes 2 and 3.
		d.api(t, pAppID, nodes[0].API, "terminateUserConnections", "c3")
		for _, c := range []string{"c3", "c3b"} {
			if e := d.expect(t, c, "", "pusher:error", nil); e["data"].(map[string]any)["code"] != float64(4009) {
				t.Errorf("%s terminated with %v, want code 4009", c, e["data"])
			}
			d.do(t, "state", "client", c, "is", "disconnected")
		}
		d.do(t, "disconnect", "client", "c3b")
		// c3 comes back (a new socket) for the tests below.
		d.do(t, "disconnect", "client", "c3")
		sockets["c3"] = d.connect(t, "c3", pAppID, nodes[2].Client, "c3")
		d.do(t, "subscribe", "client", "c3", "channel", "orders")
	})

	t.Run("presence across nodes", func(t *testing.T) {
		d.do(t, "subscribe", "client", "c1", "channel", "presence-hall")
		d.do(t, "subscribe", "client", "c2", "channel", "presence-hall")
		d.members(t, "c1", "presence-hall", "c1", "c2")
		d.members(t, "c2", "presence-hall", "c1", "c2")
		d.do(t, "subscribe", "client", "c3", "channel", "presence-hall")
		d.members(t, "c3", "presence-hall", "c1", "c2", "c3")
		for _, c := range []string{"c1", "c2"} {
			d.expect(t, c, "presence-hall", "pusher:member_added", map[string]any{"id": "c3", "info": map[string]any{"name": "c3"}})
		}
		d.do(t, "unsubscribe", "client", "c3", "channel", "presence-hall")
		for _, c := range []string{"c1", "c2"} {
			d.expect(t, c, "presence-hall", "pusher:member_removed", map[string]any{"id": "c3", "info": map[string]any{"name": "c3"}})
			d.members(t, c, "presence-hall", "c1", "c2")
		}
	})

	t.Run("webhooks: sent once cluster-wide, valid for the server SDK", func(t *testing.T) {
		// By now: orders and private-team occupied (once, though on three nodes),
		// client events sent, c3 added to and removed from presence-hall (after
		// Pusher's 3 s), whichever nodes decided them.
		want := []string{"channel_occupied orders", "channel_occupied private-team", "client_event private-team",
			"member_added presence-hall c3", "member_removed presence-hall c3"}
		var got map[string]int
		testutil.WaitFor(t, 30*time.Second, "the webhooks "+strings.Join(want, ", "), func() bool {
			got = map[string]int{}
			for _, post := range hooks.take() {
				r := d.do(t, "validateWebhook", "app", pAppID, "headers", post.headers, "body", post.body)
				if r["valid"] != true {
					t.Fatalf("the server SDK finds a node's webhook invalid: %v %s", post.headers, post.body)
				}
				for _, e := range r["events"].([]any) {
					ev := e.(map[string]any)
					k := fmt.Sprint(ev["name"], " ", ev["channel"])
					if u, ok := ev["user_id"].(string); ok && ev["name"] != "client_event" {
						k += " " + u
					}
					got[k]++
				}
			}
			hooks.count(got)
			for _, w := range want {
				if hooks.seen[w] == 0 {
					return false
				}
			}
			return true
		})
		for _, w := range []string{"channel_occupied orders", "channel_occupied private-team", "member_added presence-hall c3", "member_removed presence-hall c3"} {
			if hooks.seen[w] != 1 {
				t.Errorf("%s: %d webhooks, want 1 (seen: %v)", w, hooks.seen[w], hooks.seen)
			}
		}
		// A post signed for another app is refused by the SDK.
		r := d.do(t, "validateWebhook", "app", qAppID, "headers", hooks.last.headers, "body", hooks.last.body)
		if r["valid"] == true {
			t.Error("the server SDK accepts app 1's webhook as app 2's")
		}
	})

	t.Run("channel info is cluster-wide", func(t *testing.T) {
		for _, n := range nodes {
			r := d.api(t, pAppID, n.API, "get", map[string]any{"path": "/channels/orders", "params": map[string]any{"info": "subscription_count"}})
			if b := r["body"].(map[string]any); b["occupied"] != true || b["subscription_count"] != float64(3) {
				t.Errorf("node %s: GET /channels/orders: %v", n.API, b)
			}
			r = d.api(t, pAppID, n.API, "get", map[string]any{"path": "/channels/presence-hall/users"})
			if got := userIDs(r["body"]); !reflect.DeepEqual(got, []string{"c1", "c2"}) {
				t.Errorf("node %s: GET /channels/presence-hall/users: %v", n.API, r["body"])
			}
			r = d.api(t, pAppID, n.API, "get", map[string]any{"path": "/channels", "params": map[string]any{"filter_by_prefix": "presence-", "info": "user_count"}})
			chans, _ := r["body"].(map[string]any)["channels"].(map[string]any)
			if c, _ := chans["presence-hall"].(map[string]any); c["user_count"] != float64(2) {
				t.Errorf("node %s: GET /channels?filter_by_prefix=presence-: %v", n.API, r["body"])
			}
		}
	})
}

// userIDs reads the ids of a GET .../users answer, in order.
func userIDs(body any) []string {
	b, _ := body.(map[string]any)
	users, _ := b["users"].([]any)
	ids := []string{}
	for _, u := range users {
		m, _ := u.(map[string]any)
		id, _ := m["id"].(string)
		ids = append(ids, id)
	}
	return ids
}

// startPusherCluster starts n clustered nodes with the Pusher apps, n2.. joining
// n1, and waits until each sees all the others.
func startPusherCluster(t *testing.T, n int, apps ...string) []*testutil.Node {
	t.Helper()
	if len(apps) == 0 {
		apps = pusherFlags
	}
	base := append(append([]string{}, prodFlags...), apps...)
	base = append(base, "--forward-addr", "127.0.0.1:0", "--log-level", "warn")
	nodes := []*testutil.Node{startServer(t, append(base, "--node-name", "n1")...)}
	for i := 2; i <= n; i++ {
		nodes = append(nodes, startServer(t, append(base, "--node-name", fmt.Sprint("n", i), "--join", nodes[0].Gossip)...))
	}
	testutil.WaitFor(t, 30*time.Second, fmt.Sprintf("%d nodes see each other", n), func() bool {
		for _, node := range nodes {
			r := testutil.Do(t, http.MethodGet, "http://"+node.API+"/v1/cluster", "", testutil.Bearer(apiKey)...)
			var out struct {
				Members []struct{ Name, State string }
			}
			json.Unmarshal([]byte(r.Raw), &out)
			alive := 0
			for _, m := range out.Members {
				if m.State == "alive" {
					alive++
				}
			}
			if alive != n {
				return false
			}
		}
		return true
	})
	return nodes
}

// requireNodeModules skips (fails under LONGLINK_E2E=1) when node or one of the
// e2e/node_modules packages is missing, with the install command.
func requireNodeModules(t *testing.T, modules ...string) {
	t.Helper()
	var missing []string
	if _, err := exec.LookPath("node"); err != nil {
		missing = append(missing, "node (apt-get install -y nodejs npm)")
	}
	for _, m := range modules {
		if _, err := os.Stat(filepath.Join("node_modules", m, "package.json")); err != nil {
			missing = append(missing, "e2e/node_modules/"+m+" (cd e2e && npm ci)")
		}
	}
	if len(missing) > 0 {
		msg := "e2e test needs: " + strings.Join(missing, ", ")
		if os.Getenv("LONGLINK_E2E") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg + "; set LONGLINK_E2E=1 to make this a failure")
	}
}

// jsDriver is a node process running a JSON-lines driver script (pusher_node.mjs,
// echo.mjs): one command per line on its stdin, one reply per line on its stdout.
type jsDriver struct {
	name    string
	stdin   io.WriteCloser
	replies chan string
	stderr  *testutil.SyncBuffer
}

func startPusherDriver(t *testing.T) *jsDriver {
	t.Helper()
	apps, _ := json.Marshal([]map[string]string{
		{"id": pAppID, "key": pKey, "secret": pSecret},
		{"id": qAppID, "key": qKey, "secret": qSecret},
	})
	return startJSDriver(t, "pusher_node.mjs", "LONGLINK_PUSHER_APPS="+string(apps), "LONGLINK_PUSHER_MASTER_KEY="+pMasterKey)
}

func startJSDriver(t *testing.T, script string, env ...string) *jsDriver {
	t.Helper()
	return startJSDriverIn(t, "", []string{script}, env...)
}

// startJSDriverIn runs node with args (flags, then the script) in dir ("": e2e/).
func startJSDriverIn(t *testing.T, dir string, args []string, env ...string) *jsDriver {
	t.Helper()
	script := strings.Join(args, " ")
	d := &jsDriver{name: script, replies: make(chan string, 16), stderr: &testutil.SyncBuffer{}}
	cmd := exec.Command("node", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = d.stderr
	var err error
	if d.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("cannot start node %s: %v", script, err)
	}
	exited := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		for sc.Scan() {
			d.replies <- sc.Text()
		}
		close(d.replies)
	}()
	go func() {
		cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		io.WriteString(d.stdin, `{"cmd":"quit"}`+"\n")
		d.stdin.Close()
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("%s stderr:\n%s", script, d.stderr.String())
		}
	})
	return d
}

// do sends cmd with its arguments as name, value pairs and returns the reply,
// failing the test unless the driver reports success.
func (d *jsDriver) do(t *testing.T, cmd string, kv ...any) map[string]any {
	t.Helper()
	m := map[string]any{"cmd": cmd}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1]
	}
	line, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.stdin.Write(append(line, '\n')); err != nil {
		t.Fatalf("%s: cannot send %s: %v\n%s", d.name, line, err, d.stderr.String())
	}
	// The script bounds each command itself (60 s at most); this catches a hung one.
	select {
	case reply, ok := <-d.replies:
		if !ok {
			t.Fatalf("%s exited during %s", d.name, line)
		}
		var r map[string]any
		if err := json.Unmarshal([]byte(reply), &r); err != nil {
			t.Fatalf("%s: bad reply %q: %v", d.name, reply, err)
		}
		if r["ok"] != true {
			t.Fatalf("%s: %s failed: %v\nlast seen: %s", d.name, line, r["error"], compact(r["log"], r["page"]))
		}
		return r
	case <-time.After(90 * time.Second):
		t.Fatalf("%s: no reply to %s within 90s", d.name, line)
	}
	return nil
}

func compact(v ...any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// connect makes a pusher-js client named name of app on the client address ws,
// as user, and returns its socket id.
func (d *jsDriver) connect(t *testing.T, name, app, ws, user string, kv ...any) any {
	t.Helper()
	return d.do(t, "connect", append([]any{"client", name, "app", app, "ws", ws, "userId", user, "timeoutMs", 20000}, kv...)...)["socketId"]
}

// expect waits until client has received event on channel with data (nil: any)
// and returns the log entry.
func (d *jsDriver) expect(t *testing.T, client, channel, event string, data any) map[string]any {
	t.Helper()
	kv := []any{"client", client, "channel", channel, "event", event}
	if data != nil {
		kv = append(kv, "data", data)
	}
	e, _ := d.do(t, "expect", kv...)["entry"].(map[string]any)
	return e
}

// absent fails unless client never received event on channel with data (nil: any).
func (d *jsDriver) absent(t *testing.T, client, channel, event string, data any) {
	t.Helper()
	kv := []any{"client", client, "channel", channel, "event", event}
	if data != nil {
		kv = append(kv, "data", data)
	}
	d.do(t, "absent", kv...)
}

func (d *jsDriver) mark(t *testing.T, client string) float64 {
	t.Helper()
	seq, _ := d.do(t, "mark", "client", client)["seq"].(float64)
	return seq
}

// members waits until client's member list of a presence channel is ids.
func (d *jsDriver) members(t *testing.T, client, channel string, ids ...string) {
	t.Helper()
	d.do(t, "members", "client", client, "channel", channel, "ids", ids)
}

// api calls the server SDK method op on the node at addr and fails unless it
// answers 200.
func (d *jsDriver) api(t *testing.T, app, addr, op string, args ...any) map[string]any {
	t.Helper()
	if args == nil {
		args = []any{}
	}
	r := d.do(t, "api", "app", app, "api", addr, "op", op, "args", args)
	if r["status"] != float64(200) {
		t.Fatalf("server SDK %s%v on %s: %v %v", op, args, addr, r["status"], r["body"])
	}
	return r
}

// webhookReceiver is an app's webhook endpoint: it keeps each POST (headers with
// lowercased names, as Node's http gives them to the SDK, and the raw body).
type webhookReceiver struct {
	srv  *httptest.Server
	mu   sync.Mutex
	got  []webhookPost
	seen map[string]int // events counted so far, by "name channel [user]"
	last webhookPost
}

type webhookPost struct {
	headers map[string]string
	body    string
}

func newWebhookReceiver(t *testing.T) *webhookReceiver {
	w := &webhookReceiver{seen: map[string]int{}}
	w.srv = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		h := map[string]string{}
		for k := range r.Header {
			h[strings.ToLower(k)] = r.Header.Get(k)
		}
		w.mu.Lock()
		w.got = append(w.got, webhookPost{h, string(b)})
		w.mu.Unlock()
	}))
	t.Cleanup(w.srv.Close)
	return w
}

// take returns the posts received since the last take.
func (w *webhookReceiver) take() []webhookPost {
	w.mu.Lock()
	defer w.mu.Unlock()
	got := w.got
	w.got = nil
	if len(got) > 0 {
		w.last = got[len(got)-1]
	}
	return got
}

func (w *webhookReceiver) count(events map[string]int) {
	for k, n := range events {
		w.seen[k] += n
	}
}
