package bench

import (
	"bufio"
	"bytes"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
	"time"
)

func TestHistogramQuantilesMatchNaive(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var h Histogram
	var vals []int64
	for i := 0; i < 20000; i++ {
		v := int64(rng.ExpFloat64() * 5e6) // mean 5 ms
		vals = append(vals, v)
		h.Record(v)
	}
	sort.Slice(vals, func(i, j int) bool { return vals[i] < vals[j] })
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		exact := float64(vals[int(q*float64(len(vals)))])
		got := float64(h.Quantile(q))
		if d := (got - exact) / exact; d > 0.07 || d < -0.07 {
			t.Errorf("q%.3f: got %v, exact %v (%.1f%% off)", q, time.Duration(got), time.Duration(exact), d*100)
		}
	}
	if h.Min() != time.Duration(vals[0]) || h.Max() != time.Duration(vals[len(vals)-1]) || h.Count() != 20000 {
		t.Errorf("min %v max %v count %d", h.Min(), h.Max(), h.Count())
	}
	b, err := h.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	var h2 Histogram
	if err := h2.UnmarshalJSON(b); err != nil {
		t.Fatal(err)
	}
	if h2 != h {
		t.Error("JSON round trip changed the histogram")
	}
	var m Histogram
	m.Merge(&h)
	m.Merge(&h2)
	if m.Count() != 40000 || m.Quantile(0.5) != h.Quantile(0.5) {
		t.Errorf("merge: count %d p50 %v vs %v", m.Count(), m.Quantile(0.5), h.Quantile(0.5))
	}
	var empty Histogram
	if empty.Quantile(0.99) != 0 || empty.Summary().MaxMs != 0 {
		t.Error("empty histogram not zero")
	}
}

func TestBucketBounds(t *testing.T) {
	for _, us := range []uint64{0, 1, 15, 16, 17, 31, 32, 33, 1000, 123456, 1 << 30} {
		i := bucketOf(us)
		if lo, hi := bucketLowerUs(i), bucketUpperUs(i); float64(us) < lo || float64(us) >= hi {
			t.Errorf("%d µs in bucket %d [%v,%v)", us, i, lo, hi)
		}
	}
}

func TestParseStamp(t *testing.T) {
	f := func(in string, want int64, ok bool) {
		t.Helper()
		got, gotOK := parseStamp([]byte(in))
		if got != want && ok || gotOK != ok {
			t.Errorf("parseStamp(%q) = %d,%v want %d,%v", in, got, gotOK, want, ok)
		}
	}
	f("1700000000123456789:42", 1700000000123456789, true)
	f("5:0xxxx", 5, true)
	f(":1", 0, false)
	f("12a:1", 0, false)
	f("123", 0, false)
	f("", 0, false)
	f("hello world", 0, false)
	b := appendPayload(nil, 987654321, 7)
	if got, ok := parseStamp(b); !ok || got != 987654321 || string(b) != "987654321:7" {
		t.Errorf("appendPayload round trip: %q", b)
	}
	if allocs := testing.AllocsPerRun(100, func() { parseStamp(b) }); allocs != 0 {
		t.Errorf("parseStamp allocates %v", allocs)
	}
}

func TestNextFrame(t *testing.T) {
	mk := func(op byte, n int) []byte {
		b := []byte{0x80 | op}
		switch {
		case n < 126:
			b = append(b, byte(n))
		case n < 65536:
			b = append(b, 126, byte(n>>8), byte(n))
		default:
			b = append(b, 127, 0, 0, 0, 0, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
		}
		return append(b, bytes.Repeat([]byte{'a'}, n)...)
	}
	for _, n := range []int{0, 5, 125, 126, 1000, 65535, 65536, 200000} {
		whole := mk(opText, n)
		// Every prefix is incomplete; the whole frame decodes.
		for _, cut := range []int{0, 1, len(whole) / 2, len(whole) - 1} {
			if _, used, err := nextFrame(whole[:cut]); err != errIncomplete || used != 0 {
				t.Errorf("n=%d cut=%d: used %d err %v", n, cut, used, err)
			}
		}
		f, used, err := nextFrame(append(whole, 0x89, 0))
		if err != nil || used != len(whole) || len(f.payload) != n || f.op != opText || !f.fin {
			t.Errorf("n=%d: used %d err %v len %d", n, used, err, len(f.payload))
		}
	}
	if _, _, err := nextFrame([]byte{0x81, 0x85, 1, 2, 3, 4, 5}); err != errMasked {
		t.Errorf("masked server frame: %v", err)
	}
	if _, _, err := nextFrame([]byte{0x82, 127, 0, 0, 0, 0, 0x10, 0, 0, 0}); err != errFrameTooLarge {
		t.Errorf("huge frame: %v", err)
	}
}

func TestClientFrameMasked(t *testing.T) {
	key := [4]byte{1, 2, 3, 4}
	b := appendClientFrame(nil, opPong, []byte("hello"), key)
	if b[0] != 0x8A || b[1] != 0x80|5 || !bytes.Equal(b[2:6], key[:]) {
		t.Fatalf("header % x", b[:6])
	}
	for i, c := range b[6:] {
		if c^key[i&3] != "hello"[i] {
			t.Fatalf("payload not masked correctly: % x", b)
		}
	}
}

func TestParseUpgradeResponse(t *testing.T) {
	ok := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + string(wsAccept) + "\r\n\r\n\x81\x01x"
	n, reason, err := parseUpgradeResponse([]byte(ok))
	if err != nil || reason != "" || ok[n:] != "\x81\x01x" {
		t.Fatalf("101: n=%d reason=%q err=%v", n, reason, err)
	}
	if _, _, err := parseUpgradeResponse([]byte(ok[:40])); err != errIncomplete {
		t.Errorf("partial: %v", err)
	}
	if _, reason, _ := parseUpgradeResponse([]byte("HTTP/1.1 401 Unauthorized\r\nContent-Length: 3\r\n\r\nno\n")); reason != "http_401" {
		t.Errorf("401: %q", reason)
	}
	// Header names match in any case; a value elsewhere does not count.
	for _, name := range []string{"sec-websocket-accept:", "SEC-WEBSOCKET-ACCEPT:  "} {
		v := strings.Replace(ok, "Sec-WebSocket-Accept: ", name, 1)
		if _, reason, err := parseUpgradeResponse([]byte(v)); err != nil {
			t.Errorf("%q: %q %v", name, reason, err)
		}
	}
	hidden := strings.Replace(ok, "Sec-WebSocket-Accept: ", "X-Note: Sec-WebSocket-Accept: ", 1)
	if _, reason, _ := parseUpgradeResponse([]byte(hidden)); reason != "bad_accept" {
		t.Errorf("accept inside another header's value: %q", reason)
	}
	bad := strings.Replace(ok, string(wsAccept), "AAAA", 1)
	if _, reason, _ := parseUpgradeResponse([]byte(bad)); reason != "bad_accept" {
		t.Errorf("bad accept: %q", reason)
	}
	req := string(appendUpgrade(nil, "127.0.0.1:9", []byte("TOK")))
	if !strings.HasPrefix(req, "GET /ws?token=TOK HTTP/1.1\r\nHost: 127.0.0.1:9\r\n") || !strings.HasSuffix(req, "\r\n\r\n") {
		t.Errorf("upgrade request: %q", req)
	}
}

func TestParseSourceIPs(t *testing.T) {
	lo := []string{"127.0.0.1:80"}
	f := func(spec string, conns int, targets []string, want string) {
		t.Helper()
		ips, err := parseSourceIPs(spec, conns, targets)
		got := strings.Join(ips, ",")
		if err != nil {
			got = "error"
		}
		if got != want {
			t.Errorf("parseSourceIPs(%q,%d,%v) = %q, want %q", spec, conns, targets, got, want)
		}
	}
	f("127.0.0.2-127.0.0.4", 1, lo, "127.0.0.2,127.0.0.3,127.0.0.4")
	f("127.0.0.255-127.0.1.1", 1, lo, "127.0.0.255,127.0.1.0,127.0.1.1")
	f("3", 1, lo, "127.0.0.2,127.0.0.3,127.0.0.4")
	f("127.0.0.7,127.0.0.9", 1, lo, "127.0.0.7,127.0.0.9")
	f("", 100, lo, "127.0.0.2")
	f("", 90000, lo, "127.0.0.2,127.0.0.3,127.0.0.4") // one per 30,000
	f("", 90001, lo, "127.0.0.2,127.0.0.3,127.0.0.4,127.0.0.5")
	f("", 100, []string{"10.1.2.3:80"}, "")
	f("127.0.0.9-127.0.0.2", 1, lo, "error")
	f("0", 1, lo, "error")
	f("nonsense", 1, lo, "error")
}

func TestParseMetrics(t *testing.T) {
	m := parseMetrics([]byte("# HELP x\nlonglink_connections 42\nlonglink_loop_connections{loop=\"0\"} 40\nprocess_resident_memory_bytes 1.5e+07\ngo_memstats_heap_inuse_bytes 123\nother 1\n"))
	if m["longlink_connections"] != 42 || m["process_resident_memory_bytes"] != 1.5e7 || m["go_memstats_heap_inuse_bytes"] != 123 || len(m) != 3 {
		t.Errorf("%v", m)
	}
}

func TestCommas(t *testing.T) {
	for in, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 1234567: "1,234,567", -12345: "-12,345"} {
		if got := commas(in); got != want {
			t.Errorf("commas(%d) = %q", in, got)
		}
	}
}

func TestReadResponse(t *testing.T) {
	f := func(raw string, wantStatus int, wantBody string, wantClose, wantErr bool) {
		t.Helper()
		st, body, cl, err := readResponse(bufio.NewReader(strings.NewReader(raw)), nil)
		if (err != nil) != wantErr {
			t.Fatalf("%q: err %v", raw, err)
		}
		if err == nil && (st != wantStatus || string(body) != wantBody || cl != wantClose) {
			t.Errorf("%q: status %d body %q close %v", raw, st, body, cl)
		}
	}
	f("HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 26\r\n\r\n{\"id\":\"a\",\"delivered\":10}\n", 202, "{\"id\":\"a\",\"delivered\":10}\n", false, false)
	f("HTTP/1.1 401 Unauthorized\r\nConnection: close\r\nContent-Length: 2\r\n\r\nno", 401, "no", true, false)
	f("HTTP/1.1 202 Accepted\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3\r\nabc\r\n0\r\n\r\n", 202, "helloabc", false, false)
	f("HTTP/1.1 202 Accepted\r\n\r\n", 0, "", false, true)
	f("garbage\r\n\r\n", 0, "", false, true)
	f("HTTP/1.1 202 Accepted\r\nContent-Length: 10\r\n\r\nshort", 0, "", false, true)

	for in, want := range map[string]int64{`{"id":"x","delivered":42,"forwarded":1}`: 42, `{"delivered": 0}`: 0} {
		if got, ok := jsonInt([]byte(in), `"delivered":`); !ok || got != want {
			t.Errorf("jsonInt(%s) = %d,%v", in, got, ok)
		}
	}
	if _, ok := jsonInt([]byte(`{"error":"x"}`), `"delivered":`); ok {
		t.Error("jsonInt found a missing key")
	}
}

func TestHostCPUFromProcStat(t *testing.T) {
	a := parseCPULine("cpu  280388 2505 161063 1048446 5850 0 48166 72280 0 0")
	b := parseCPULine("cpu  280488 2505 161163 1048546 5850 0 48166 72330 11 0")
	if !a.ok || !b.ok || a.steal != 72280 || a.total != 280388+2505+161063+1048446+5850+48166+72280 {
		t.Fatalf("parsed %+v", a)
	}
	h := hostCPU(a, b, 2*time.Second)
	// 350 ticks in all: 50 steal, 100 idle.
	if !h.Available || h.StealS != 0.5 || h.StealPct < 14.28 || h.StealPct > 14.29 || h.BusyPct < 57.14 || h.BusyPct > 57.15 {
		t.Fatalf("got %+v", h)
	}
	if parseCPULine("cpu0 1 2 3").ok || parseCPULine("intr 1 2 3 4 5 6 7 8 9").ok || hostCPU(a, cpuTimes{}, time.Second).Available {
		t.Fatal("accepted a bad line")
	}
	if now := readCPUTimes(); !now.ok {
		t.Fatal("cannot read /proc/stat on Linux")
	}
}

// Bench's explicit source ports stay out of the kernel's ephemeral range (a port bound
// there, on any address, is lost to every autobinding connect() on the box) and are
// each used once per round of portSpan.
func TestSourcePortsAvoidTheEphemeralRange(t *testing.T) {
	seen := make(map[int]bool, portSpan)
	for n := 0; n < portSpan; n++ {
		p := sourcePort(n)
		if p < 1024 || p > 65535 || (ephemeralLo <= p && p <= ephemeralHi) {
			t.Fatalf("sourcePort(%d) = %d: outside 1024-65535 or inside the ephemeral range %d-%d", n, p, ephemeralLo, ephemeralHi)
		}
		if seen[p] {
			t.Fatalf("sourcePort(%d) = %d twice in one round", n, p)
		}
		seen[p] = true
	}
	if sourcePort(portSpan+7) != sourcePort(7) {
		t.Fatal("sourcePort does not wrap at portSpan")
	}
}
