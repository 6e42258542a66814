package pusher

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"longlink/webhook"
)

// sdkPost is one POST as the SDK's webhook validation receives it.
type sdkPost struct {
	Name    string            `json:"name"`
	Headers map[string]string `json:"headers"`
	RawBody string            `json:"rawBody"`
}

func toSDKPost(name string, p hookPost) sdkPost {
	h := map[string]string{}
	for k, v := range p.Header {
		h[strings.ToLower(k)] = v[0] // as Node's http module gives them
	}
	return sdkPost{Name: name, Headers: h, RawBody: string(p.Body)}
}

// TestWebhookSDK: webhooks this sender made, as they arrived at an httptest
// receiver, are checked by the official Node SDK's webhook validation
// (pusher.webhook({headers, rawBody}).isValid()) with the app's key and secret:
// valid, with getEvents() equal to what was emitted; a tampered body, another
// app's POST and a POST without its content type are invalid.
func TestWebhookSDK(t *testing.T) {
	sdk := pusherSDK(t)
	sink := &hookSink{}
	srv := httptest.NewServer(sink)
	defer srv.Close()
	all := "webhook-events=channel_occupied|channel_vacated|member_added|member_removed|client_event"
	app := hookApp(t, "77:sdk-key:sdk-secret,webhook="+srv.URL+"/a,"+all)
	app.WebhookEvents |= 1 << webhookEventIndex(WebhookSubscriptionCount) // the format, which no spec selects
	other := hookApp(t, "78:other-key:other-secret,webhook="+srv.URL+"/b")
	s, _ := newHookSender(t, func(c *webhook.Config) { c.BatchSize = 4 }, app, other)
	for _, ev := range sampleHookEvents {
		s.Emit("77", ev)
	}
	s.Emit("78", WebhookEvent{Name: WebhookChannelOccupied, Channel: "theirs"})
	s.Close()

	var posts []sdkPost
	var ours, theirs hookPost
	for _, p := range sink.snapshot() {
		if p.Header.Get("X-Pusher-Key") == other.Key {
			theirs = p
			continue
		}
		ours = p
		posts = append(posts, toSDKPost("ours", p))
	}
	if len(posts) != 2 || theirs.Body == nil {
		t.Fatalf("%d POSTs of app 77 (want 2 batches of at most 4), other app's: %s", len(posts), theirs.Body)
	}
	tampered := posts[0]
	tampered.Name, tampered.RawBody = "tampered", strings.Replace(tampered.RawBody, `"news"`, `"newz"`, 1)
	if tampered.RawBody == posts[0].RawBody {
		t.Fatal("nothing tampered")
	}
	noType := toSDKPost("no_content_type", ours)
	delete(noType.Headers, "content-type")
	posts = append(posts, tampered, toSDKPost("other_app", theirs), noType)

	in, _ := json.Marshal(map[string]any{"appId": app.ID, "key": app.Key, "secret": app.Secret, "posts": posts})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", filepath.Join("testdata", "sdk_webhook.mjs"))
	cmd.Env = append(os.Environ(), "PUSHER_SDK_DIR="+sdk)
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node: %v\n%s\n%s", err, out, stderr.String())
	}
	var got []struct {
		Name   string           `json:"name"`
		Valid  bool             `json:"valid"`
		Events []map[string]any `json:"events"`
		TimeMS int64            `json:"timeMs"`
	}
	if err := json.Unmarshal(bytes.TrimSpace(out), &got); err != nil || len(got) != len(posts) {
		t.Fatalf("node printed %q: %v (stderr %s)", out, err, stderr.String())
	}
	var events []map[string]any
	for _, r := range got {
		switch r.Name {
		case "ours":
			if !r.Valid {
				t.Fatalf("the SDK refused a webhook of ours")
			}
			if d := time.Since(time.UnixMilli(r.TimeMS)); d < 0 || d > time.Minute {
				t.Errorf("getTime() %d is %v from now", r.TimeMS, d)
			}
			events = append(events, r.Events...)
		default:
			if r.Valid {
				t.Errorf("%s: the SDK accepted it", r.Name)
			}
		}
	}
	if !reflect.DeepEqual(events, sampleHookJSON) {
		t.Fatalf("getEvents()\n%v\nwant\n%v", events, sampleHookJSON)
	}
}
