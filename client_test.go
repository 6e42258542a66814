package main

import (
	"context"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"longlink/internal/testutil"
)

// runClient starts `longlink client` (the real binary) with args; its stdout and
// stderr are collected, and it is killed when the test ends.
func runClient(t *testing.T, args ...string) (cmd *exec.Cmd, stdout, stderr *testutil.SyncBuffer, done chan error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	cmd = exec.CommandContext(ctx, testutil.Binary(t), append([]string{"client"}, args...)...)
	stdout, stderr = &testutil.SyncBuffer{}, &testutil.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done = make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	return cmd, stdout, stderr, done
}

var connectedAs = regexp.MustCompile(`as connection (\S+) \(node (\S+), streams ([^)]*)\)`)

// TestClientCommandV2 connects `longlink client` (v2 by default): it names its
// connection id, prints a text push as text, a JSON value compactly and a binary push
// as its length and hex (never raw bytes), receives a push to the id it printed, and
// acknowledges a push that asks for it.
func TestClientCommandV2(t *testing.T) {
	n := startNode(t, "client-test-secret-0123456789")
	_, stdout, stderr, done := runClient(t, "--url", "ws://"+n.Client+"/ws",
		"--token", testutil.Token(t, n.secret, "42"), "--count", "5")
	var id string
	testutil.WaitFor(t, 10*time.Second, "the client to print its connection id", func() bool {
		m := connectedAs.FindStringSubmatch(stderr.String())
		if m != nil {
			id = m[1]
		}
		return m != nil
	})
	if m := connectedAs.FindStringSubmatch(stderr.String()); m[3] != "all,user:42" || !strings.HasPrefix(id, m[2]+".") {
		t.Fatalf("welcome line: %q", stderr.String())
	}
	n.push(t, `{"to":{"users":["42"]},"data":"hello"}`)
	n.push(t, `{"to":{"users":["42"]},"data":{"n":1,"s":"x"}}`)
	// 40 bytes: the first 32 are shown, then an ellipsis.
	n.push(t, `{"to":{"users":["42"]},"data_base64":"AAEC/wAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}`)
	n.push(t, `{"to":{"connections":["`+id+`"]},"data":"to-the-id"}`)
	r := n.push(t, `{"to":{"users":["42"]},"data":"acked","ack":true,"wait":"10s"}`)
	if r.Status != 200 || !strings.Contains(r.Raw, `"status":"acked"`) {
		t.Errorf("push with ack and wait: %d %s", r.Status, r.Raw)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("client exited with %v; stderr %s", err, stderr)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("client did not exit after 5 messages; stdout %q stderr %q", stdout, stderr)
	}
	want := "hello\n" +
		`{"n":1,"s":"x"}` + "\n" +
		"[binary 42 B] 00 01 02 ff" + strings.Repeat(" 00", 28) + " …\n" +
		"to-the-id\n" +
		"acked\n"
	if got := stdout.String(); got != want {
		t.Errorf("client printed\n%q\nwant\n%q", got, want)
	}
}

// TestClientCommandPlain: with --protocol plain, frames are printed as they come,
// binary ones as length and hex, and the client says it has no connection id.
func TestClientCommandPlain(t *testing.T) {
	n := startNode(t, "client-test-secret-0123456789")
	_, stdout, stderr, done := runClient(t, "--url", "ws://"+n.Client+"/ws", "--protocol", "plain",
		"--secret", n.secret, "--user", "7", "--count", "2")
	testutil.WaitFor(t, 10*time.Second, "the plain client to connect", func() bool {
		return strings.Contains(stderr.String(), "names no connection id to plain clients")
	})
	testutil.WaitFor(t, 10*time.Second, "the node to count the client", func() bool {
		return testutil.Metrics(t, n.API)["longlink_connections"] == 1
	})
	n.push(t, `{"to":{"users":["7"]},"data_base64":"AAEC/w=="}`)
	n.push(t, `{"to":{"users":["7"]},"data":"text"}`)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("client exited with %v; stderr %s", err, stderr)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("client did not exit after 2 messages; stdout %q stderr %q", stdout, stderr)
	}
	if got, want := stdout.String(), "[binary 4 B] 00 01 02 ff\ntext\n"; got != want {
		t.Errorf("plain client printed %q, want %q", got, want)
	}
}

// TestClientCommandErrors: bad flags and a refused token are clear errors.
func TestClientCommandErrors(t *testing.T) {
	n := startNode(t, "client-test-secret-0123456789")
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--protocol", "v3", "--token", "x"}, 2, `--protocol "v3": want v2 or plain`},
		{[]string{}, 2, "give --token, or --secret and --user"},
		{[]string{"--url", "ws://" + n.Client + "/ws", "--token", "not-a-token"}, 1, "401"},
	} {
		_, _, stderr, done := runClient(t, tc.args...)
		select {
		case err := <-done:
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			}
			if code != tc.code || !strings.Contains(stderr.String(), tc.want) {
				t.Errorf("client %v: exit %d, stderr %q; want exit %d and %q", tc.args, code, stderr, tc.code, tc.want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("client %v did not exit", tc.args)
		}
	}
}
