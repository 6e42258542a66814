package bench

import (
	"bytes"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"longlink/auth"
	"longlink/internal/testutil"
)

// The request signature against the Pusher HTTP API reference's worked example.
func TestPusherSignerWorkedExample(t *testing.T) {
	s := newPusherSigner("3", "278d425bdf160c739803", "7ad3773142a6692b25b8")
	body := []byte(`{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}`)
	got := string(s.appendQuery(nil, body, 1353088179))
	want := "auth_key=278d425bdf160c739803&auth_timestamp=1353088179&auth_version=1.0" +
		"&body_md5=ec365a775a4cd0599faeb73354201b6f" +
		"&auth_signature=da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c"
	if got != want {
		t.Fatalf("query\n%s\nwant\n%s", got, want)
	}
	// The signer is reused per request: a second body signs afresh.
	if again := string(s.appendQuery(nil, body, 1353088179)); again != want {
		t.Fatalf("second signature differs: %s", again)
	}
}

// Private channel auth against the official server SDK's output
// (pusher/vectors_test.go: authorizeChannel of pusher 5.3.4).
func TestPusherChannelAuthVector(t *testing.T) {
	got := channelAuth("278d425bdf160c739803", "7ad3773142a6692b25b8", "1234.1234", "private-foobar")
	if want := "278d425bdf160c739803:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4"; got != want {
		t.Fatalf("auth %s, want %s", got, want)
	}
}

func TestRoomTokenVerifiesWithGateway(t *testing.T) {
	v, err := auth.NewVerifier([]byte(testSecret))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().Unix()
	c, err := v.Verify(string(roomToken([]byte(testSecret), 17, "bench-ch-3", now, now+60)))
	if err != nil {
		t.Fatal(err)
	}
	if c.User != "bench-17" || len(c.Rooms) != 1 || c.Rooms[0] != "bench-ch-3" {
		t.Fatalf("claims %+v", c)
	}
}

func TestPusherParsers(t *testing.T) {
	est := []byte(`{"event":"pusher:connection_established","data":"{\"socket_id\":\"2166136261.17\",\"activity_timeout\":120}"}`)
	if ev, _ := jsonStr(est, `"event":"`); string(ev) != "pusher:connection_established" {
		t.Fatalf("event %q", ev)
	}
	if id, ok := socketIDOf(est); !ok || id != "2166136261.17" {
		t.Fatalf("socket id %q %v", id, ok)
	}
	for _, bad := range []string{`{"data":"{}"}`, `{"data":"{\"socket_id\":\"12\"}"}`, `{"data":"{\"socket_id\":\".5\"}"}`} {
		if id, ok := socketIDOf([]byte(bad)); ok {
			t.Errorf("%s: socket id %q", bad, id)
		}
	}
	ev := []byte(`{"event":"bench","channel":"bench-7","data":"1712345678901234567:42xxxx"}`)
	ch, _ := jsonStr(ev, `"channel":"`)
	d, _ := jsonStr(ev, `"data":"`)
	if string(ch) != "bench-7" || string(d) != "1712345678901234567:42xxxx" {
		t.Fatalf("channel %q data %q", ch, d)
	}
	if seq, ok := parseSeq(d); !ok || seq != 42 {
		t.Fatalf("seq %d %v", seq, ok)
	}
	if v, ok := jsonStr([]byte(`{"a":"x\"y","b":1}`), `"a":"`); !ok || string(v) != `x\"y` {
		t.Fatalf("escaped value %q", v)
	}
	if r := pusherRefusal([]byte("pusher:error"), []byte(`{"event":"pusher:error","data":{"code":4001,"message":"no"}}`)); r != "pusher_error_4001" {
		t.Fatalf("refusal %q", r)
	}
	if r := pusherRefusal([]byte("pusher:subscription_error"), []byte(`{"event":"pusher:subscription_error","data":{"type":"AuthError","error":"x","status":401}}`)); r != "subscription_error_401" {
		t.Fatalf("refusal %q", r)
	}
}

func TestPusherOptions(t *testing.T) {
	base := []string{"pusher", "--target", "127.0.0.1:1", "--api", "127.0.0.1:2", "--pusher-app", "1:k:s:e,client-events",
		"--token-secret", "t", "--api-key", "a"}
	o, err := parseOptions(base, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.PusherAppID != "1" || o.PusherKey != "k" || o.Channels != 100 || o.ChannelKind != "public" || o.Protocol != "pusher" ||
		o.Floor != "after" || o.Duration != 10*time.Second {
		t.Fatalf("defaults: %+v", o)
	}
	if _, _, secret, _ := parsePusherApp(o.PusherApp); secret != "s:e" {
		t.Fatalf("secret %q (may hold ':', ends at ',')", secret)
	}
	o, err = parseOptions(append(base, "--conns", "10"), io.Discard)
	if err != nil || o.Channels != 10 {
		t.Fatalf("channels default capped at conns: %d %v", o.Channels, err)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"pusher", "--target", "127.0.0.1:1", "--api", "127.0.0.1:2"}, "--pusher-app"},
		{[]string{"pusher", "--target", "127.0.0.1:1", "--pusher-app", "1:k:s"}, "--api"},
		{append(base[:len(base):len(base)], "--pusher-app", "1:k"), "id:key:secret"},
		{append(base[:len(base):len(base)], "--channel-kind", "presence"), "--channel-kind"},
		{append(base[:len(base):len(base)], "--conns", "10", "--channels", "11"), "--channels"},
		{append(base[:len(base):len(base)], "--event-bytes", "10001"), "--event-bytes"},
		{append(base[:len(base):len(base)], "--size", "100"), "--event-bytes"},
		{append(base[:len(base):len(base)], "--workers", "2"), "not a pusher option"},
		{append(base[:len(base):len(base)], "--floor", "sideways"), "--floor"},
		{[]string{"pusher", "--target", "127.0.0.1:1", "--api", "127.0.0.1:2", "--pusher-app", "1:k:s"}, "--token-secret"},
	} {
		if _, err := parseOptions(c.args, io.Discard); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want one naming %q", c.args[1:], err, c.want)
		}
	}
	if o, err := parseOptions([]string{"pusher", "--target", "127.0.0.1:1", "--api", "127.0.0.1:2", "--pusher-app", "1:k:s", "--floor", "off"}, io.Discard); err != nil || o.Floor != "off" {
		t.Errorf("--floor off needs no token secret or API key: %v", err)
	}
	// Other scenarios keep none of pusher's defaults in their reports.
	if o, err := parseOptions([]string{"connect", "--target", "127.0.0.1:1", "--token-secret", "t"}, io.Discard); err != nil || o.Channels != 0 || o.ChannelKind != "" {
		t.Errorf("connect options: %+v %v", o, err)
	}
}

const itPusherApp = "benchapp:benchkey:bench-pusher-secret-0123456789"

func startPusherNode(t *testing.T) *testutil.Node {
	t.Helper()
	if _, err := testutil.BuildBinary(); err != nil {
		t.Skipf("cannot build the real server, skipping integration test: %v", err)
	}
	return testutil.StartNode(t, nil, "--client-addr", "127.0.0.1:0", "--api-addr", "127.0.0.1:0", "--token-secret", itSecret,
		"--api-key", itKey, "--gossip-addr", "127.0.0.1:0", "--forward-addr", "127.0.0.1:0", "--demo=false",
		"--pusher-app", itPusherApp, "--pprof")
}

func checkPusherPhase(t *testing.T, p *PusherPhase, conns int, open bool) {
	t.Helper()
	if p.Opened != int64(conns) || p.Failed != 0 || p.Dropped != 0 || p.OpenAtEnd != int64(conns) || p.WarmedUp != int64(conns) {
		t.Fatalf("%s connections: opened %d failed %d (%v) dropped %d (%v) warmed %d", p.Protocol, p.Opened, p.Failed, p.Failures,
			p.Dropped, p.Drops, p.WarmedUp)
	}
	if p.Handshake.Count != uint64(conns) || p.Handshake.P50Ms <= 0 || p.ConnectPerS <= 0 || p.TCP.Count != uint64(conns) {
		t.Errorf("%s handshake %+v, %v/s", p.Protocol, p.Handshake, p.ConnectPerS)
	}
	if p.Protocol == "pusher" && (p.Subscribe == nil || p.Subscribe.Count != uint64(conns) || p.Subscribe.P50Ms <= 0) {
		t.Errorf("pusher subscribe %+v", p.Subscribe)
	}
	if p.Events < 20 || len(p.APIErrors) != 0 || p.DrainTimedOut {
		t.Fatalf("%s events: %d accepted, errors %v, drain timed out %v", p.Protocol, p.Events, p.APIErrors, p.DrainTimedOut)
	}
	if p.Missing != 0 || p.Duplicates != 0 || p.WrongChannel != 0 || p.Unknown != 0 || p.Unaccepted != 0 || len(p.Other) != 0 {
		t.Errorf("%s deliveries: missing %d dups %d wrong channel %d unknown %d unaccepted %d other %v", p.Protocol,
			p.Missing, p.Duplicates, p.WrongChannel, p.Unknown, p.Unaccepted, p.Other)
	}
	// Connection i is on channel i mod 20 and 200 / 20 = 10 per channel, so
	// every accepted event is owed to exactly 10 clients.
	if p.Expected != p.Events*int64(conns/20) || p.Delivered != p.Expected || p.Latency.Count != uint64(p.Delivered) {
		t.Errorf("%s: %d events, expected %d, delivered %d, latency count %d", p.Protocol, p.Events, p.Expected, p.Delivered, p.Latency.Count)
	}
	l := p.Latency
	if l.P50Ms <= 0 || l.P99Ms < l.P50Ms || l.MaxMs < l.P999Ms || l.MaxMs > 10000 {
		t.Errorf("%s latency %+v", p.Protocol, l)
	}
	if p.ServerCPUS <= 0 || p.ServerCPUPerDeliveryUs <= 0 || p.ServerCPUPerEventUs < p.ServerCPUPerDeliveryUs || p.DeliveriesPerS <= 0 {
		t.Errorf("%s server CPU %.3fs, %.2f µs/delivery, %.2f µs/event, %.0f deliveries/s", p.Protocol, p.ServerCPUS,
			p.ServerCPUPerDeliveryUs, p.ServerCPUPerEventUs, p.DeliveriesPerS)
	}
	// 200 connections are too few for a steady heap figure (a native one holds
	// about 1 KiB): only its presence and bounds are checked.
	if !p.ForcedGC || p.HeapPerConnBytes == 0 || p.HeapPerConnBytes > 1<<20 || p.HeapPerConnBytes < -(1<<20) || p.APILatency.Count < uint64(p.Events) {
		t.Errorf("%s server memory: forced GC %v, heap %.0f B/conn; API calls %d", p.Protocol, p.ForcedGC, p.HeapPerConnBytes, p.APILatency.Count)
	}
	if open && p.EventsPerS < 50 {
		t.Errorf("%s open loop at 100/s managed %.0f events/s", p.Protocol, p.EventsPerS)
	}
}

// TestRealPusher runs the scenario against the real binary: 200 Pusher clients over
// 20 channels, 2 s of events open loop, then the native comparison; then private
// channels closed loop without the comparison.
func TestRealPusher(t *testing.T) {
	n := startPusherNode(t)
	dir := t.TempDir()
	jp, hp := filepath.Join(dir, "p.json"), filepath.Join(dir, "p.html")
	out := runBench(t, "pusher", "--target", n.Client, "--api", n.API, "--pusher-app", itPusherApp, "--token-secret", itSecret,
		"--api-key", itKey, "--conns", "200", "--channels", "20", "--push-rate", "100", "--callers", "8", "--duration", "2s",
		"--event-bytes", "64", "--json", jp, "--html", hp)
	rep := readReport(t, jp)
	x := rep.Pusher
	if x == nil || x.Native == nil || x.Ratios == nil || x.NativeOrder != "after" || x.Mode != "open" {
		t.Fatalf("report: %+v\n%s", x, out)
	}
	checkPusherPhase(t, &x.Pusher, 200, true)
	checkPusherPhase(t, x.Native, 200, true)
	if q := x.Ratios; q.ServerCPUPerDelivery <= 0 || q.P50 <= 0 || q.DeliveriesPerS <= 0 {
		t.Errorf("ratios %+v", *q)
	}
	if rep.Connect.Opened != 200 || rep.Connect.Handshake.Count != 200 || !rep.Server.Available {
		t.Errorf("generic rows: %+v %+v", rep.Connect, rep.Server)
	}
	for _, want := range []string{"pusher subscribed", "pusher / native", "native deliveries", "missing 0, duplicates 0", "connect() to pusher:connection_established"} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
	checkHTML(t, hp, 6)
	m := testutil.Metrics(t, n.API)
	if m[`longlink_pusher_api_events_total`] < float64(x.Pusher.Events) {
		t.Errorf("node counted %v Pusher API events, bench %d", m[`longlink_pusher_api_events_total`], x.Pusher.Events)
	}

	jp = filepath.Join(dir, "priv.json")
	runBench(t, "pusher", "--target", n.Client, "--api", n.API, "--pusher-app", itPusherApp, "--channel-kind", "private",
		"--conns", "200", "--channels", "20", "--callers", "4", "--duration", "1s", "--floor", "off", "--json", jp)
	x = readReport(t, jp).Pusher
	if x == nil || x.Native != nil || x.Ratios != nil || x.Mode != "closed" || x.ChannelKind != "private" {
		t.Fatalf("private run: %+v", x)
	}
	p := x.Pusher
	// No --api-key: no forced GC, the rest as before.
	p.ForcedGC, p.HeapPerConnBytes = true, 1
	checkPusherPhase(t, &p, 200, false)
}

// A wrong secret: every private subscription is refused with 401, and the run
// says so by reason instead of hanging.
func TestRealPusherRefused(t *testing.T) {
	n := startPusherNode(t)
	var out, errb bytes.Buffer
	code := Main([]string{"pusher", "--target", n.Client, "--api", n.API, "--pusher-app", "benchapp:benchkey:wrong-secret",
		"--channel-kind", "private", "--conns", "20", "--channels", "2", "--duration", "1s", "--floor", "off"}, &out, &errb)
	if code != 1 || !strings.Contains(out.String(), "subscription_error_401=20") || !strings.Contains(errb.String(), "no Pusher connection") {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errb.String())
	}
}
