package bench

import (
	"bytes"
	"encoding/json"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseEnvelope(t *testing.T) {
	e, ok := parseEnvelope([]byte(`{"type":"push","id":"n1-18ea8ea12a70582e","stream":"user:bench-7","epoch":"lz2k3-1x","offset":18,"data":"1712345678901234567:42xxxx"}`))
	if !ok || string(e.stream) != "user:bench-7" || string(e.epoch) != "lz2k3-1x" || e.offset != 18 {
		t.Fatalf("envelope %+v ok %v", e, ok)
	}
	if ts, ok := e.stampOf(); !ok || ts != 1712345678901234567 {
		t.Errorf("stamp %d %v", ts, ok)
	}
	// History off: no epoch, no offset; data that looks like keys is not read as keys.
	e, ok = parseEnvelope([]byte(`{"type":"push","id":"n1-1","stream":"all","data":{"epoch":"x","offset":9}}`))
	if !ok || string(e.stream) != "all" || e.epoch != nil || e.offset != 0 || string(e.data) != `{"epoch":"x","offset":9}` {
		t.Fatalf("no-history envelope %+v ok %v", e, ok)
	}
	if _, ok := e.stampOf(); ok {
		t.Error("object data has no bench stamp")
	}
	// To connection ids: no stream.
	e, ok = parseEnvelope([]byte(`{"type":"push","id":"n1-2","data_base64":"AAE="}`))
	if !ok || e.stream != nil || string(e.data) != `"AAE="` {
		t.Fatalf("connection-id envelope %+v ok %v", e, ok)
	}
	for _, bad := range []string{`{"type":"welcome","streams":{}}`, `hello`, `{"type":"push","id":"x"}`,
		`{"type":"push","id":"x","stream":"s","epoch":"e","data":1}`} {
		if _, ok := parseEnvelope([]byte(bad)); ok {
			t.Errorf("%s parsed as a push", bad)
		}
	}
}

func TestParseWelcome(t *testing.T) {
	w, err := parseWelcome([]byte(`{"type":"welcome","connection":"n1.a-1","node":"n1","streams":{"user:u1":{"epoch":"e1","offset":3,"recovered":false},"all":{"epoch":"e2","offset":0}}}`))
	if err != nil || w.Connection != "n1.a-1" || len(w.Streams) != 2 || w.Streams["user:u1"].Offset != 3 ||
		w.Streams["user:u1"].Recovered == nil || *w.Streams["user:u1"].Recovered || w.Streams["all"].Recovered != nil {
		t.Fatalf("welcome %+v %v", w, err)
	}
	for _, bad := range []string{`{"type":"push","id":"x","data":1}`, `{"type":"welcome","streams":{}}`, `{"type":"welcome",`} {
		if _, err := parseWelcome([]byte(bad)); err == nil {
			t.Errorf("%s accepted as a welcome", bad)
		}
	}
}

func TestAppendSince(t *testing.T) {
	enc := appendSince(nil, []streamPos{{"user:bench-1", "lz2k3-1x", 18}, {"all", "e", 0}})
	if bytes.ContainsAny(enc, `{}":, `) {
		t.Fatalf("not URL-encoded: %s", enc)
	}
	dec, err := url.QueryUnescape(string(enc))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]struct {
		Epoch  string `json:"epoch"`
		Offset uint64 `json:"offset"`
	}
	if err := json.Unmarshal([]byte(dec), &m); err != nil || m["user:bench-1"].Epoch != "lz2k3-1x" ||
		m["user:bench-1"].Offset != 18 || m["all"].Epoch != "e" {
		t.Fatalf("since %s: %+v %v", dec, m, err)
	}
	req := string(appendUpgradeV(nil, "h:1", []byte("TOK"), true, enc))
	if !strings.HasPrefix(req, "GET /ws?token=TOK&since="+string(enc)+" HTTP/1.1\r\n") ||
		!strings.Contains(req, "\r\nSec-WebSocket-Protocol: longlink.v2\r\n") {
		t.Errorf("v2 upgrade request: %q", req)
	}
	if strings.Contains(string(appendUpgrade(nil, "h:1", []byte("TOK"))), "Protocol") {
		t.Error("a plain request offers a subprotocol")
	}
	resp := "HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Protocol:  longlink.v2 \r\nSec-WebSocket-Accept: x\r\n\r\n"
	if p := selectedProtocol([]byte(resp)); p != "longlink.v2" {
		t.Errorf("selected %q", p)
	}
}

func TestBatchResults(t *testing.T) {
	a, s, errs := batchResults([]byte(`{"results":[{"id":"n1-1","stored":1,"delivered":0,"forwarded":0,"offline_users":["bench-1"]},`+
		`{"error":"messages[1]: to must name at least one of users, connections, rooms, all","status":400},`+
		`{"id":"n1-2","stored":2,"delivered":1,"forwarded":0}]}`), 3)
	if a != 2 || s != 3 || len(errs) != 1 || errs["http_400"] != 1 {
		t.Fatalf("accepted %d stored %d errs %v", a, s, errs)
	}
	if _, _, errs := batchResults([]byte(`{"error":"x","status":400}`), 5); errs["bad_answer"] != 5 {
		t.Errorf("not a batch answer: %v", errs)
	}
}

func TestAppendBodyOptions(t *testing.T) {
	type body struct {
		To      struct{ Users []string } `json:"to"`
		Data    string                   `json:"data"`
		History *bool                    `json:"history"`
		Ack     bool                     `json:"ack"`
		Wait    string                   `json:"wait"`
	}
	for _, c := range []struct {
		history, ack bool
		wait         time.Duration
		waitStr      string
	}{{true, false, 0, ""}, {false, false, 0, ""}, {true, true, 0, ""}, {true, true, 5 * time.Second, "5s"},
		{false, false, 1500 * time.Millisecond, "1.5s"}} {
		b := appendBody(nil, 7, 123, 4, 0, bodyTail(c.history, c.ack, c.wait))
		var v body
		if err := json.Unmarshal(b, &v); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		if v.To.Users[0] != "bench-7" || v.Data != "123:4" || (c.history != (v.History == nil)) || (!c.history && *v.History) ||
			v.Ack != c.ack || v.Wait != c.waitStr {
			t.Errorf("%+v: %s", c, b)
		}
	}
}

func TestAckEnvelopeAndMessage(t *testing.T) {
	e, ok := parseEnvelope([]byte(`{"type":"push","id":"n1-1","stream":"user:bench-7","epoch":"e1","offset":18,"ack":true,"data":"1:2"}`))
	if !ok || !e.ack || e.offset != 18 || string(e.stream) != "user:bench-7" {
		t.Fatalf("ack envelope %+v ok %v", e, ok)
	}
	// "ack":true in the data is data, not the envelope's flag.
	e, ok = parseEnvelope([]byte(`{"type":"push","id":"n1-2","stream":"user:bench-7","epoch":"e1","offset":19,"data":{"x":1,"ack":true}}`))
	if !ok || e.ack {
		t.Fatalf("data with ack read as the flag: %+v ok %v", e, ok)
	}
	var m struct {
		Type, Stream, Epoch string
		Offset              uint64
	}
	b := appendAck(nil, "user:bench-7", "mx4j1qha-1hsayp6", 18)
	if err := json.Unmarshal(b, &m); err != nil || m.Type != "ack" || m.Stream != "user:bench-7" || m.Epoch != "mx4j1qha-1hsayp6" || m.Offset != 18 {
		t.Fatalf("ack %s: %+v %v", b, m, err)
	}
}

func TestAckOptions(t *testing.T) {
	base := []string{"push", "--target", "127.0.0.1:1", "--api", "127.0.0.1:2", "--token-secret", "s", "--api-key", "k"}
	o, err := parseOptions(append(base, "--protocol", "v2", "--ack", "--wait", "5s"), &bytes.Buffer{})
	if err != nil || !o.Ack || o.Wait != 5*time.Second {
		t.Fatalf("--ack --wait: %+v %v", o, err)
	}
	if o, err := parseOptions(append(base, "--wait", "250ms"), &bytes.Buffer{}); err != nil || o.Ack || o.Wait != 250*time.Millisecond {
		t.Fatalf("--wait alone: %+v %v", o, err)
	}
	for _, c := range []struct {
		want string
		args []string
	}{
		{"--ack needs --protocol v2", []string{"--ack"}},
		{"drop --history=false", []string{"--ack", "--protocol", "v2", "--history=false"}},
		{"--wait must be more than 0", []string{"--wait", "31s"}},
		{"--wait must be more than 0", []string{"--wait", "0s"}},
	} {
		if _, err := parseOptions(append(append([]string{}, base...), c.args...), &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c.args, err, c.want)
		}
	}
	if _, err := parseOptions([]string{"broadcast", "--target", "127.0.0.1:1", "--api", "127.0.0.1:2", "--token-secret", "s",
		"--api-key", "k", "--protocol", "v2", "--ack"}, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "for push") {
		t.Errorf("broadcast --ack: %v", err)
	}
}

func TestV2Options(t *testing.T) {
	base := []string{"--target", "127.0.0.1:1", "--api", "127.0.0.1:2", "--token-secret", "s", "--api-key", "k"}
	o, err := parseOptions(append([]string{"reconnect"}, base...), &bytes.Buffer{})
	if err != nil || o.Protocol != "v2" || o.Messages != 10 || o.Callers != 8 || !o.History || o.Conns != 1000 {
		t.Fatalf("reconnect defaults: %+v %v", o, err)
	}
	o, err = parseOptions(append([]string{"push", "--protocol", "v2", "--history=false"}, base...), &bytes.Buffer{})
	if err != nil || o.Protocol != "v2" || o.History || o.Callers != 64 {
		t.Fatalf("push v2: %+v %v", o, err)
	}
	o, _ = parseOptions(append([]string{"push"}, base...), &bytes.Buffer{})
	if o.Protocol != "plain" || !o.History {
		t.Errorf("push defaults: protocol %q history %v", o.Protocol, o.History)
	}
	for _, bad := range [][]string{
		{"reconnect", "--protocol", "plain"}, {"reconnect", "--history=false"}, {"reconnect", "--messages", "-1"},
		{"push", "--protocol", "v3"},
	} {
		if _, err := parseOptions(append(bad, base...), &bytes.Buffer{}); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

// A v2 client against a server that does not select longlink.v2 fails with a
// reason that says so, rather than waiting for a welcome that never comes.
func TestV2AgainstPlainServer(t *testing.T) {
	n := startFakeNode(t, "sec", "key")
	jp := filepath.Join(t.TempDir(), "r.json")
	runBench(t, "connect", "--target", n.wsAddr, "--token-secret", "sec", "--conns", "20", "--duration", "0s",
		"--protocol", "v2", "--in-process", "--json", jp)
	rep := readReport(t, jp)
	if rep.Connect.Opened != 0 || rep.Connect.Failures["no_v2_protocol"] != 20 || rep.Options.Protocol != "v2" {
		t.Fatalf("opened %d failures %v", rep.Connect.Opened, rep.Connect.Failures)
	}
}

func BenchmarkParseEnvelope(b *testing.B) {
	p := []byte(`{"type":"push","id":"n1-18ea8ea12a70582e","stream":"user:bench-1234","epoch":"mbq3x1c0-1k2j3h","offset":1818,"data":"1712345678901234567:1099511627777"}`)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		e, ok := parseEnvelope(p)
		if _, sok := e.stampOf(); !ok || !sok {
			b.Fatal("not parsed")
		}
	}
}
