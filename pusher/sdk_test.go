package pusher

import (
	"bytes"
	"context"
	"encoding/json"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// sdkVersion is the official Node server SDK (npm "pusher") the test publishes with.
const sdkVersion = "5.3.3"

// pusherSDK returns a directory holding node_modules/pusher@sdkVersion: $PUSHER_SDK_DIR
// if set, else a cache under the temp dir, installed with npm on first use. It skips
// the test when node or npm is missing or the install fails (no network).
func pusherSDK(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node is not installed: the official SDK test needs Node 18+ and npm")
	}
	dir := os.Getenv("PUSHER_SDK_DIR")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "longlink-pusher-sdk-"+sdkVersion)
	}
	pkg := filepath.Join(dir, "node_modules", "pusher", "package.json")
	if b, err := os.ReadFile(pkg); err == nil && bytes.Contains(b, []byte(`"version": "`+sdkVersion+`"`)) {
		return dir
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		t.Skipf("npm is not installed and %s has no pusher@%s", dir, sdkVersion)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "install", "--prefix", dir, "--no-audit", "--no-fund", "pusher@"+sdkVersion)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Skipf("npm install pusher@%s into %s failed (no network?), set PUSHER_SDK_DIR to an install: %v\n%s", sdkVersion, dir, err, out)
	}
	return dir
}

type sdkStep struct {
	Step   string          `json:"step"`
	Status int             `json:"status"`
	Body   json.RawMessage `json:"body"`
	Error  string          `json:"error"`
}

// TestSDKClient publishes with the official Node SDK, unchanged, to the HTTP API:
// every call it makes verifies and reaches the Backend exactly as sent, and a wrong
// secret or a tampered signature is refused with 401 and reaches nothing.
func TestSDKClient(t *testing.T) {
	sdk := pusherSDK(t)
	srv, fb, h := newTestAPI(t, HTTPAPIConfig{})
	u, _ := url.Parse(srv.URL)
	app := testApps["1"]

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", filepath.Join("testdata", "sdk_client.mjs"))
	cmd.Env = append(os.Environ(), "PUSHER_SDK_DIR="+sdk, "PUSHER_PORT="+u.Port(),
		"PUSHER_APP_ID="+app.ID, "PUSHER_KEY="+app.Key, "PUSHER_SECRET="+app.Secret)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node: %v\n%s\n%s", err, out, stderr.String())
	}
	var steps []sdkStep
	if err := json.Unmarshal(bytes.TrimSpace(out), &steps); err != nil {
		t.Fatalf("node printed %q: %v (stderr %s)", out, err, stderr.String())
	}

	want := map[string]struct {
		status int
		body   string
	}{
		"trigger":      {200, `{}`},
		"trigger_info": {200, `{"channels":{"presence-room":{"user_count":2,"subscription_count":3}}}`},
		"batch":        {200, `{"batch":[{},{"user_count":2}]}`},
		"channels":     {200, `{"channels":{"presence-room":{"user_count":2},"presence-x":{"user_count":1}}}`},
		"channel":      {200, `{"occupied":true,"subscription_count":5}`},
		"users":        {200, `{"users":[{"id":"u1"}]}`},
		"terminate":    {200, `{}`},
		"send_to_user": {200, `{}`},
		"wrong_secret": {401, ``},
		"tampered":     {401, ``},
	}
	if len(steps) != len(want) {
		t.Fatalf("%d steps, want %d: %s", len(steps), len(want), out)
	}
	for _, s := range steps {
		w, ok := want[s.Step]
		if !ok {
			t.Fatalf("unexpected step %q", s.Step)
		}
		if s.Status != w.status {
			t.Errorf("%s: status %d (%s %s), want %d", s.Step, s.Status, s.Error, s.Body, w.status)
			continue
		}
		if w.body != "" {
			jsonEqual(t, string(s.Body), w.body)
		} else if !strings.Contains(string(s.Body), "auth_signature") {
			t.Errorf("%s: refusal body %s does not name the signature", s.Step, s.Body)
		}
	}

	// Exactly what the SDK sent, and nothing of the refused calls.
	wantCalls := []string{
		`trigger app=1 channels=news,presence-room event=ev data={"a":1} exclude=123.456`,
		`trigger app=1 channels=presence-room event=ev2 data=plain string exclude=`,
		`channel app=1 name=presence-room info=3`,
		`trigger app=1 channels=news event=b1 data={"x":1} exclude=`,
		`trigger app=1 channels=presence-room event=b2 data=s exclude=`,
		`channel app=1 name=presence-room info=1`,
		`channels app=1 prefix=presence- info=1`,
		`channel app=1 name=news info=2`,
		`users app=1 channel=presence-x`,
		`terminate app=1 user=u1`,
		`user app=1 user=u2 event=hello data={"hi":true}`,
	}
	if got := fb.Calls(); !reflect.DeepEqual(got, wantCalls) {
		t.Fatalf("backend calls\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(wantCalls, "\n"))
	}
	if n := h.errors[reasonSignature].Get(); n != 2 {
		t.Fatalf("signature refusals %d, want 2", n)
	}
	var ok uint64
	for _, c := range h.requests {
		ok += c.Get()
	}
	if ok != 8 {
		t.Fatalf("%d verified requests, want 8", ok)
	}
}
