package node

import (
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"
	"golang.org/x/sys/unix"
)

// Security review, issue 10: tokens whose time claims are not checked as
// docs/protocol.md says must be refused at the upgrade with 401, whichever claims
// decoder (the fast one or encoding/json) reads them.
func TestHandshakeRefusesBadTimeClaims(t *testing.T) {
	n := startNode(t, nil)
	now := time.Now()
	exp := now.Add(time.Hour).Unix()
	sign := func(c jwt.MapClaims) string {
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte(testSecret))
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	f := func(name string, claims jwt.MapClaims, want int) {
		t.Helper()
		c, resp, err := websocket.DefaultDialer.Dial(wsURL(n)+"?token="+url.QueryEscape(sign(claims)), nil)
		if err == nil {
			c.Close()
		}
		got := 101
		if resp != nil {
			got = resp.StatusCode
		}
		if err != nil && resp == nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got != want {
			t.Errorf("%s: upgrade answered %d, want %d", name, got, want)
		}
		if got == want && want == http.StatusUnauthorized && !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s: WWW-Authenticate = %q", name, resp.Header.Get("WWW-Authenticate"))
		}
	}
	f("valid", jwt.MapClaims{"sub": "42", "exp": exp, "iat": now.Unix()}, 101)
	f("iat within the leeway", jwt.MapClaims{"sub": "42", "exp": exp, "iat": now.Add(2 * time.Second).Unix()}, 101)
	f("iat in the future", jwt.MapClaims{"sub": "42", "exp": exp, "iat": now.Add(10 * time.Minute).Unix()}, 401)
	// Fractions send the claims through the encoding/json fallback.
	f("iat in the future (fallback decoder)", jwt.MapClaims{"sub": "42", "exp": float64(exp) + 0.5,
		"iat": float64(now.Add(10*time.Minute).Unix()) + 0.5}, 401)
	f("exp as a string", jwt.MapClaims{"sub": "42", "exp": strconv.FormatInt(exp, 10)}, 401)
	f("nbf as a string", jwt.MapClaims{"sub": "42", "exp": exp, "nbf": strconv.FormatInt(now.Unix(), 10)}, 401)
	f("iat as a string", jwt.MapClaims{"sub": "42", "exp": exp, "iat": strconv.FormatInt(now.Unix(), 10)}, 401)
	f("exp as a bool", jwt.MapClaims{"sub": "42", "exp": true}, 401)
	f("exp as an object", jwt.MapClaims{"sub": "42", "exp": map[string]any{"n": exp}}, 401)
}

// Security review, issue 10: /metrics lacked process_open_fds and process_max_fds
// (VictoriaMetrics/metrics writes them only from WriteFDMetrics), so the
// descriptor alert could never fire and the dashboard's descriptor panel was empty.
func TestMetricsHaveDescriptorCounts(t *testing.T) {
	n := startNode(t, nil)
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	max, open := scrape(t, n, "process_max_fds"), scrape(t, n, "process_open_fds")
	if max != float64(lim.Cur) {
		t.Errorf("process_max_fds = %v, want the soft RLIMIT_NOFILE %d", max, lim.Cur)
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	// The node's listeners, loops and the scrape's own connection are open.
	if open < 5 || open > float64(len(ents)+20) {
		t.Errorf("process_open_fds = %v, want between 5 and about %d", open, len(ents))
	}
}

// openFDs (one stat on Linux 6.2+) agrees with counting /proc/self/fd.
func TestOpenFDsMatchesDirectoryCount(t *testing.T) {
	f, err := os.Open("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc")
	}
	names, _ := f.Readdirnames(-1)
	f.Close()
	n, ok := openFDs()
	if !ok || n < len(names)-3 || n > len(names)+3 {
		t.Fatalf("openFDs = %d, %v; /proc/self/fd lists %d", n, ok, len(names))
	}
}
