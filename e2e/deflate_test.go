package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"longlink/internal/testutil"
)

// deflatePage opens a WebSocket to the node (?ws=), and posts to /result what the
// first message it receives is: its length and its first and last 24 characters.
const deflatePage = `<!doctype html><html><body><script>
const q = new URLSearchParams(location.search);
const ws = new WebSocket(q.get('ws'));
ws.onopen = () => fetch('/opened', {method: 'POST'});
ws.onmessage = (e) => fetch('/result', {method: 'POST', body: e.data.length + ' ' + e.data.slice(0, 24) + ' ' + e.data.slice(-24)});
ws.onerror = () => fetch('/result', {method: 'POST', body: 'error'});
</script></body></html>`

// TestBrowserDeflate: headless Chromium, which always offers permessage-deflate,
// negotiates it with the node (run with its defaults), and a 2 KB push reaches it
// compressed (longlink_deflate_frames_total) and whole. It needs Chromium only, not
// node or playwright: the page reports back over HTTP.
func TestBrowserDeflate(t *testing.T) {
	chromium := os.Getenv("LONGLINK_CHROMIUM")
	if chromium == "" {
		chromium = defaultBrowser
	}
	if _, err := os.Stat(chromium); err != nil {
		if os.Getenv("LONGLINK_E2E") == "1" {
			t.Fatalf("needs %s", chromium)
		}
		t.Skipf("needs %s (apt-get install -y chromium)", chromium)
	}
	srv := startServer(t, prodFlags...)
	opened, result := make(chan struct{}, 1), make(chan string, 1)
	page := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/opened":
			select {
			case opened <- struct{}{}:
			default:
			}
		case "/result":
			b, _ := io.ReadAll(r.Body)
			select {
			case result <- string(b):
			default:
			}
		default:
			w.Header().Set("Content-Type", "text/html")
			io.WriteString(w, deflatePage)
		}
	}))
	defer page.Close()

	wsURL := "ws://" + srv.Client + "/ws?token=" + url.QueryEscape(testutil.Token(t, tokenSecret, "chromium"))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := exec.CommandContext(ctx, chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
		"--user-data-dir="+t.TempDir(), page.URL+"/?ws="+url.QueryEscape(wsURL))
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cancel()
		cmd.Wait()
		if t.Failed() {
			t.Logf("chromium output:\n%s", out.String())
		}
	}()
	select {
	case <-opened:
	case <-time.After(30 * time.Second):
		t.Fatal("the page did not connect")
	}
	waitMetric(t, srv, "longlink_deflate_connections_total", 1)

	var b strings.Builder
	b.WriteString("deflate-e2e-start ")
	for i := 0; b.Len() < 2000; i++ {
		fmt.Fprintf(&b, "item %d score %d; ", i, i*7919%10007)
	}
	b.WriteString(" deflate-e2e-end")
	msg := b.String()
	push(t, srv, `{"to":{"users":["chromium"]},"data":"`+msg+`"}`)
	want := fmt.Sprintf("%d %s %s", len(msg), msg[:24], msg[len(msg)-24:])
	select {
	case got := <-result:
		if got != want {
			t.Fatalf("the page received %q, want %q", got, want)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the page received nothing")
	}
	waitMetric(t, srv, "longlink_deflate_frames_total", 1)
	waitMetric(t, srv, "longlink_deflate_messages_total", 1)
}
