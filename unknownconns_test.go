package main

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"longlink/internal/testutil"
)

// connIDs returns the ids of user's connections, from GET /v1/users/{id}.
func connIDs(t *testing.T, n *testNode, user string) []string {
	t.Helper()
	status, body := n.get(t, "/v1/users/"+user)
	if status != 200 {
		t.Fatalf("GET /v1/users/%s: %d %s", user, status, body)
	}
	var ans struct {
		Connections []struct {
			ID string `json:"id"`
		} `json:"connections"`
	}
	if err := json.Unmarshal([]byte(body), &ans); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, c := range ans.Connections {
		ids = append(ids, c.ID)
	}
	return ids
}

// connPushAnswer is the part of a push answer these tests read.
type connPushAnswer struct {
	Delivered          int      `json:"delivered"`
	Forwarded          int      `json:"forwarded"`
	OfflineUsers       []string `json:"offline_users"`
	UnknownConnections []string `json:"unknown_connections"`
}

func pushAnswered(t *testing.T, n *testNode, body string) connPushAnswer {
	t.Helper()
	r := n.push(t, body)
	var a connPushAnswer
	if err := json.Unmarshal([]byte(r.Raw), &a); err != nil {
		t.Fatalf("push answer %s: %v", r.Raw, err)
	}
	return a
}

func readText(t *testing.T, ws *websocket.Conn) string {
	t.Helper()
	ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, b, err := ws.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestPushUnknownConnections: a push to connection ids says which of them are open
// nowhere (unknown_connections), as offline_users does for users, and lists none
// when every id is open; single node (a closed id, an earlier run's, another node's
// that is not a member, a malformed one).
func TestPushUnknownConnections(t *testing.T) {
	n := startNode(t, "unknown-conns-secret-0123456789", "--node-name", "solo")
	ws := n.dial(t, "42")
	ids := connIDs(t, n, "42")
	if len(ids) != 1 {
		t.Fatalf("user 42 connections: %v", ids)
	}
	live := ids[0]
	a := pushAnswered(t, n, `{"to":{"connections":["`+live+`"]},"data":"x"}`)
	if a.Delivered != 1 || a.UnknownConnections != nil || !strings.Contains(readText(t, ws), "x") {
		t.Fatalf("push to a live id: %+v", a)
	}
	inc, _, _ := strings.Cut(strings.TrimPrefix(live, "solo."), "-")
	closed := "solo." + inc + "-zz" // this run's, never open
	earlier := "solo.1-1"           // an earlier run's incarnation
	ghost := "ghost." + inc + "-1"  // a node that is not a member
	bad := "no-dot-in-it"           // no node at all
	a = pushAnswered(t, n, `{"to":{"connections":["`+live+`","`+closed+`","`+earlier+`","`+ghost+`","`+bad+`"],"users":["43"]},"data":"y"}`)
	want := []string{closed, earlier, ghost, bad}
	if a.Delivered != 1 || !slices.Equal(a.UnknownConnections, want) || !slices.Equal(a.OfflineUsers, []string{"43"}) {
		t.Errorf("push to a live id and four unknown ones: %+v; want delivered 1, unknown %v, offline [43]", a, want)
	}
	// The batch answer carries it per message too.
	r := testutil.Do(t, "POST", "http://"+n.API+"/v1/push/batch", `{"messages":[{"to":{"connections":["`+ghost+`"]},"data":"z"}]}`, testutil.Bearer(n.apiKey)...)
	if !strings.Contains(r.Raw, `"unknown_connections":["`+ghost+`"]`) {
		t.Errorf("batch answer: %s", r.Raw)
	}
}

// TestPushUnknownConnectionsCluster: an id of a connection on another node is not
// unknown to the node that takes the push (it is that peer's to deliver), while an
// id naming a node that is not a member is.
func TestPushUnknownConnectionsCluster(t *testing.T) {
	nodes := startCluster(t, 2)
	ws := nodes[1].dial(t, "42")
	// Asked on n1, once n2's routes say it holds user 42: the answer comes from n2.
	var ids []string
	testutil.WaitFor(t, 10*time.Second, "n1 to see user 42 on n2", func() bool {
		status, _ := nodes[0].get(t, "/v1/users/42")
		return status == 200
	})
	ids = connIDs(t, nodes[0], "42")
	if len(ids) != 1 || !strings.HasPrefix(ids[0], "n2.") {
		t.Fatalf("user 42 connections: %v", ids)
	}
	a := pushAnswered(t, nodes[0], `{"to":{"connections":["`+ids[0]+`","n3.x-1"]},"data":"across"}`)
	if !slices.Equal(a.UnknownConnections, []string{"n3.x-1"}) || a.Forwarded != 1 {
		t.Errorf("push on n1 to n2's connection and to a non-member's: %+v", a)
	}
	if got := readText(t, ws); !strings.Contains(got, "across") {
		t.Errorf("n2's client got %q", got)
	}
}
