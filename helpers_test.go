package main

import (
	"os"
	"testing"

	"github.com/gorilla/websocket"

	"longlink/internal/testutil"
)

func TestMain(m *testing.M) { os.Exit(testutil.Run(m)) }

// testNode is a real binary running in the background, with the secrets it was given.
type testNode struct {
	*testutil.Node
	secret, apiKey string
}

// startBinary starts the binary on loopback port-0 addresses, clustering on
// loopback, with its token secret from the environment, plus extra flags. These
// tests are slow: it skips them under -short.
func startBinary(t *testing.T, extra ...string) *testNode {
	t.Helper()
	if testing.Short() {
		t.Skip("-short")
	}
	const secret, key = "binary-test-secret-0123456789", "binary-test-key"
	args := []string{"--client-addr", "127.0.0.1:0", "--api-addr", "127.0.0.1:0", "--gossip-addr", "127.0.0.1:0",
		"--forward-addr", "127.0.0.1:0", "--drain-timeout", "2s", "--api-key", key}
	n := testutil.StartNode(t, []string{"LONGLINK_TOKEN_SECRET=" + secret}, append(args, extra...)...)
	return &testNode{Node: n, secret: secret, apiKey: key}
}

// startNode starts the binary standalone on loopback port-0 addresses plus args.
func startNode(t *testing.T, secret string, args ...string) *testNode {
	t.Helper()
	const apiKey = "security-test-api-key"
	base := []string{"--client-addr", "127.0.0.1:0", "--api-addr", "127.0.0.1:0", "--api-key", apiKey,
		"--token-secret", secret, "--drain-timeout", "1s", "--log-level", "warn"}
	return &testNode{Node: testutil.StartNode(t, nil, append(base, args...)...), secret: secret, apiKey: apiKey}
}

// push posts body to /v1/push, failing unless the answer is a 2xx.
func (n *testNode) push(t *testing.T, body string) testutil.Response {
	t.Helper()
	r := testutil.Do(t, "POST", "http://"+n.API+"/v1/push", body, testutil.Bearer(n.apiKey)...)
	if r.Status/100 != 2 {
		t.Fatalf("push %s: %d %v", body, r.Status, r.Body)
	}
	return r
}

// get sends an authenticated GET to the API.
func (n *testNode) get(t *testing.T, path string) (int, string) {
	t.Helper()
	r := testutil.Do(t, "GET", "http://"+n.API+path, "", testutil.Bearer(n.apiKey)...)
	return r.Status, r.Raw
}

// dial connects a WebSocket client as user; it is closed when the test ends.
func (n *testNode) dial(t *testing.T, user string) *websocket.Conn {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial("ws://"+n.Client+"/ws?token="+testutil.Token(t, n.secret, user), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.Close() })
	return ws
}
