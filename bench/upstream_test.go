package bench

import (
	"bytes"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"longlink/internal/testutil"
	"longlink/upstream"
)

func TestReplyStatus(t *testing.T) {
	f := func(in string, id int64, st int, ok bool) {
		t.Helper()
		gid, gst, gok := replyStatus([]byte(in))
		if gid != id || gst != st || gok != ok {
			t.Errorf("%s: %d %d %v, want %d %d %v", in, gid, gst, gok, id, st, ok)
		}
	}
	f(`{"type":"reply","id":7,"status":200,"data":{"ok":true}}`, 7, 200, true)
	f(`{"type":"reply","id":12,"status":503,"reason":"busy"}`, 12, 503, true)
	f(`{"type":"push","id":"n1-1","data":"x"}`, 0, 0, false)
	f(`{"type":"reply","id":"s","status":200}`, 0, 0, false)
}

// The bundled back-end echoes the data and checks signatures when it has a secret.
func TestBackend(t *testing.T) {
	b := &Backend{Secret: "k"}
	srv, ln, err := serveBackend("127.0.0.1:0", b)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	body := `{"business":"bench","id":1,"user":"bench-1","connection":"c","node":"n","meta":null,"data":{"n":1}}`
	post := func(sig string) (int, string) {
		req, _ := http.NewRequest("POST", "http://"+ln.Addr().String()+"/", strings.NewReader(body))
		req.Header.Set("X-Longlink-Timestamp", "100")
		req.Header.Set("X-Longlink-Signature", sig)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(out)
	}
	if st, _ := post("sha256=00"); st != 401 {
		t.Fatalf("a bad signature got %d", st)
	}
	if st, _ := post(upstream.Sign("k", "100", []byte(body))); st != 200 {
		t.Fatalf("the gateway's signature got %d", st)
	}
	b.Secret = ""
	if st, out := post(""); st != 200 || out != `{"ok":true,"echo":{"n":1}}` || b.Requests() != 2 {
		t.Fatalf("echo: %d %s (%d answered)", st, out, b.Requests())
	}
}

func TestRealUpstream(t *testing.T) {
	if _, err := testutil.BuildBinary(); err != nil {
		t.Skipf("cannot build the real server: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	backend := ln.Addr().String()
	ln.Close()
	n := testutil.StartNode(t, nil, "--client-addr", "127.0.0.1:0", "--api-addr", "127.0.0.1:0", "--token-secret", itSecret,
		"--api-key", itKey, "--demo=false", "--client-rate", "-1", "--business", "bench=http://"+backend+"/")
	dir := t.TempDir()
	jp, hp := filepath.Join(dir, "u.json"), filepath.Join(dir, "u.html")
	out := runBench(t, "upstream", "--target", n.Client, "--api", n.API, "--token-secret", itSecret,
		"--conns", "8", "--duration", "1s", "--backend-addr", backend, "--json", jp, "--html", hp)
	rep := readReport(t, jp)
	u := rep.Upstream
	if u == nil || u.Requests < 100 || u.OK != u.Requests || u.BackendRequests != u.Requests || u.Latency.P50Ms <= 0 ||
		u.ServerCPUPerRequestUs <= 0 || len(u.Errors) != 0 {
		t.Fatalf("upstream report %+v\n%s", u, out)
	}
	// The floor ran after the gateway phase, as long, with as many workers, and
	// every answer was the back-end's 200.
	f := u.Floor
	if f == nil || f.Order != "after" || f.Conns != 8 || f.DurationS < 0.9 || f.Requests < 100 || f.OK != f.Requests ||
		len(f.Errors) != 0 || len(f.Statuses) != 0 || f.Latency.P50Ms <= 0 || f.ClientCPUPerRequestUs <= 0 || f.CPUMeasured == "" {
		t.Fatalf("floor %+v\n%s", f, out)
	}
	r := f.Ratios
	if r.RequestsPerS <= 0 || r.P50 <= 0 || r.P99 <= 0 || r.CPUPerRequest <= 0 ||
		math.Abs(r.RequestsPerS-u.RequestsPerS/f.RequestsPerS) > 1e-9 || math.Abs(r.P50-u.Latency.P50Ms/f.Latency.P50Ms) > 1e-9 {
		t.Fatalf("ratios %+v for gateway %+v and floor %+v", r, u, f)
	}
	if len(rep.Hists["floor_round_trip"]) == 0 || len(rep.Hists["round_trip"]) == 0 {
		t.Fatalf("histograms: %d gateway bins, %d floor bins", len(rep.Hists["round_trip"]), len(rep.Hists["floor_round_trip"]))
	}
	for _, w := range []string{"round trip", "floor round trip", "gateway / floor"} {
		if !strings.Contains(out, w) {
			t.Fatalf("summary has no %q:\n%s", w, out)
		}
	}
	checkHTML(t, hp, 5)
	if h, _ := os.ReadFile(hp); !strings.Contains(string(h), "floor: straight to the back-end") {
		t.Fatalf("the HTML report has no gateway/floor table")
	}

	// Before the gateway phase; and off.
	out = runBench(t, "upstream", "--target", n.Client, "--api", n.API, "--token-secret", itSecret,
		"--conns", "2", "--duration", "300ms", "--backend-addr", backend, "--floor", "before", "--json", jp)
	if f := readReport(t, jp).Upstream.Floor; f == nil || f.Order != "before" || f.Requests == 0 || f.OK != f.Requests {
		t.Fatalf("floor before: %+v\n%s", f, out)
	}
	out = runBench(t, "upstream", "--target", n.Client, "--api", n.API, "--token-secret", itSecret,
		"--conns", "2", "--duration", "300ms", "--backend-addr", backend, "--floor", "off", "--json", jp)
	if f := readReport(t, jp).Upstream.Floor; f != nil || !strings.Contains(out, "not run (--floor off)") {
		t.Fatalf("floor off: %+v\n%s", f, out)
	}
}

// --floor: after by default, before and off, a clear error for anything else, and
// off by itself with an external back-end (it POSTs to the bundled one).
func TestFloorOption(t *testing.T) {
	base := []string{"upstream", "--target", "127.0.0.1:1", "--api", "127.0.0.1:2", "--token-secret", "s"}
	parse := func(extra ...string) (Options, error) {
		return parseOptions(append(append([]string{}, base...), extra...), &bytes.Buffer{})
	}
	for _, c := range []struct {
		args []string
		want string
	}{{nil, "after"}, {[]string{"--floor", "before"}, "before"}, {[]string{"--floor", "off"}, "off"},
		{[]string{"--backend-addr", ""}, "off"}} {
		o, err := parse(c.args...)
		if err != nil || o.Floor != c.want {
			t.Errorf("%v: floor %q, %v; want %q", c.args, o.Floor, err, c.want)
		}
	}
	for _, bad := range [][]string{{"--floor", "sometimes"}, {"--floor", "after", "--backend-addr", ""}} {
		if _, err := parse(bad...); err == nil || !strings.Contains(err.Error(), "floor") {
			t.Errorf("%v: %v, want an error about the floor", bad, err)
		}
	}
	if o, _ := parseOptions([]string{"connect", "--target", "127.0.0.1:1", "--token-secret", "s"}, &bytes.Buffer{}); o.Floor != "" {
		t.Errorf("connect has floor %q", o.Floor)
	}
}
