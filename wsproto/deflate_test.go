package wsproto

import (
	"bytes"
	"compress/flate"
	"fmt"
	"io"
	"math/rand/v2"

	"longlink/internal/testutil"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestNegotiateDeflate(t *testing.T) {
	base := "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
	cases := []struct {
		offer  string
		mode   uint8 // 0: declined
		answer string
	}{
		{"permessage-deflate", DeflateNoLimit, base},
		{"PerMessage-Deflate", DeflateNoLimit, base},
		// Chromium and Firefox
		{"permessage-deflate; client_max_window_bits", DeflateNoLimit, base},
		// gorilla/websocket
		{"permessage-deflate; server_no_context_takeover; client_no_context_takeover", DeflateNoLimit, base},
		{"permessage-deflate; client_max_window_bits=10", DeflateNoLimit, base},
		{`permessage-deflate; client_max_window_bits="10"`, DeflateNoLimit, base},
		{"permessage-deflate; server_max_window_bits=8", 8, base + "; server_max_window_bits=8"},
		{"permessage-deflate; server_max_window_bits=15", 15, base + "; server_max_window_bits=15"},
		{"permessage-deflate;server_max_window_bits=12;client_no_context_takeover", 12, base + "; server_max_window_bits=12"},
		{"x-webkit-deflate-frame, permessage-deflate", DeflateNoLimit, base},
		// Declined offers, each alone and then followed by an acceptable one.
		{"permessage-deflate; server_max_window_bits=7", 0, ""},
		{"permessage-deflate; server_max_window_bits=16", 0, ""},
		{"permessage-deflate; server_max_window_bits=08", 0, ""},
		{"permessage-deflate; server_max_window_bits", 0, ""},
		{"permessage-deflate; client_max_window_bits=7", 0, ""},
		{"permessage-deflate; server_no_context_takeover=1", 0, ""},
		{"permessage-deflate; client_no_context_takeover; client_no_context_takeover", 0, ""},
		{"permessage-deflate; mystery", 0, ""},
		{"permessage-deflate; server_max_window_bits=7, permessage-deflate; server_max_window_bits=9", 9, base + "; server_max_window_bits=9"},
		{"permessage-deflate; mystery, permessage-deflate", DeflateNoLimit, base},
		{`permessage-deflate; mystery="a,b", permessage-deflate`, DeflateNoLimit, base},
		{"x-webkit-deflate-frame", 0, ""},
		{"", 0, ""},
	}
	for _, c := range cases {
		mode, ok := NegotiateDeflate(c.offer)
		if ok != (c.mode != 0) || mode != c.mode || DeflateAnswer(mode) != c.answer {
			t.Errorf("%q: mode %d ok %v answer %q; want mode %d answer %q", c.offer, mode, ok, DeflateAnswer(mode), c.mode, c.answer)
		}
	}
	if w := DeflateWindow(9); w != 512 {
		t.Errorf("DeflateWindow(9) = %d", w)
	}
	if w := DeflateWindow(0); w != 0 {
		t.Errorf("DeflateWindow(0) = %d", w)
	}
	got := string(AppendUpgradeResponseExt(nil, goodKey, "", DeflateAnswer(DeflateNoLimit)))
	if !strings.Contains(got, "\r\nSec-WebSocket-Extensions: "+base+"\r\n\r\n") {
		t.Errorf("101 without the extension answer:\n%s", got)
	}
}

// stdDeflate compresses p as an RFC 7692 client does (no context takeover), with the
// standard library, so the server's inflater is checked against another encoder.
func stdDeflate(t testing.TB, p []byte) []byte {
	var b bytes.Buffer
	w, _ := flate.NewWriter(&b, flate.BestCompression)
	w.Write(p)
	w.Flush()
	z := b.Bytes()
	if !bytes.HasSuffix(z, []byte{0, 0, 0xff, 0xff}) {
		t.Fatal("flush marker missing")
	}
	return z[:len(z)-4]
}

func stdInflate(t testing.TB, z []byte) []byte {
	r := flate.NewReader(io.MultiReader(bytes.NewReader(z), bytes.NewReader([]byte{0, 0, 0xff, 0xff, 1, 0, 0, 0xff, 0xff})))
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("inflate: %v", err)
	}
	return out
}

func TestParserInflates(t *testing.T) {
	text := strings.Repeat(`{"user":"ü17","seq":12345,"ok":true} `, 200)
	z := stdDeflate(t, []byte(text))
	zbin := stdDeflate(t, bytes.Repeat([]byte{0, 0xff, 7}, 5000))
	cases := []struct {
		name   string
		max    int
		stream []byte
		want   []rec
		code   uint16
	}{
		{name: "one frame", stream: clientFrame(frameSpec{op: 1, fin: true, rsv: 0x40, payload: z, key: testKey}),
			want: []rec{{kind: KindText, payload: text}}},
		{name: "binary", stream: clientFrame(frameSpec{op: 2, fin: true, rsv: 0x40, payload: zbin, key: testKey}),
			want: []rec{{kind: KindBinary, payload: string(bytes.Repeat([]byte{0, 0xff, 7}, 5000))}}},
		{name: "fragmented, RSV1 on the first frame only", stream: cat(
			clientFrame(frameSpec{op: 1, rsv: 0x40, payload: z[:10], key: testKey}),
			frame(9, true, "p"),
			clientFrame(frameSpec{op: 0, payload: z[10:20], key: testKey}),
			clientFrame(frameSpec{op: 0, fin: true, payload: z[20:], key: testKey})),
			want: []rec{{kind: KindPing, payload: "p"}, {kind: KindText, payload: text}}},
		{name: "uncompressed message on a deflate connection", stream: frame(1, true, "plain"),
			want: []rec{{kind: KindText, payload: "plain"}}},
		{name: "empty compressed message", stream: clientFrame(frameSpec{op: 1, fin: true, rsv: 0x40, payload: []byte{0}, key: testKey}),
			want: []rec{{kind: KindText}}},
		{name: "RSV1 on a continuation", stream: cat(
			clientFrame(frameSpec{op: 1, rsv: 0x40, payload: z[:10], key: testKey}),
			clientFrame(frameSpec{op: 0, fin: true, rsv: 0x40, payload: z[10:], key: testKey})), code: 1002},
		{name: "RSV1 on a ping", stream: clientFrame(frameSpec{op: 9, fin: true, rsv: 0x40, key: testKey}), code: 1002},
		{name: "RSV2 still refused", stream: clientFrame(frameSpec{op: 1, fin: true, rsv: 0x60, payload: z, key: testKey}), code: 1002},
		{name: "not deflate data", stream: clientFrame(frameSpec{op: 1, fin: true, rsv: 0x40, payload: []byte{0xff, 0xff, 0xff}, key: testKey}), code: 1007},
		{name: "inflates to invalid UTF-8", stream: clientFrame(frameSpec{op: 1, fin: true, rsv: 0x40, payload: stdDeflate(t, []byte("ok\xff")), key: testKey}), code: 1007},
		{name: "inflates past max", max: len(text) - 1, stream: clientFrame(frameSpec{op: 1, fin: true, rsv: 0x40, payload: z, key: testKey}), code: 1009},
		{name: "inflates to exactly max", max: len(text), stream: clientFrame(frameSpec{op: 1, fin: true, rsv: 0x40, payload: z, key: testKey}),
			want: []rec{{kind: KindText, payload: text}}},
	}
	for _, c := range cases {
		for _, split := range []bool{false, true} {
			p := Parser{MaxMessage: c.max, Deflate: DeflateNoLimit}
			var evs []rec
			var code uint16
			stream := bytes.Clone(c.stream) // the parser unmasks in place
			if split {
				evs, code, _ = feedSplit(&p, stream, []int{7, 3, 50}, false)
			} else {
				evs, code, _ = feedAll(&p, stream)
			}
			if code != c.code || len(evs) != len(c.want) {
				t.Errorf("%s (split %v): %d events code %d; want %d code %d", c.name, split, len(evs), code, len(c.want), c.code)
				continue
			}
			for i := range evs {
				if evs[i].kind != c.want[i].kind || evs[i].payload != c.want[i].payload {
					t.Errorf("%s (split %v): event %d is %v of %d bytes, want %v of %d", c.name, split, i, evs[i].kind, len(evs[i].payload), c.want[i].kind, len(c.want[i].payload))
				}
			}
			if p.Held() != 0 {
				t.Errorf("%s: parser holds %d bytes after the stream", c.name, p.Held())
			}
		}
	}
	// Without negotiation RSV1 is what it always was.
	p := Parser{}
	if _, code, _ := feedAll(&p, clientFrame(frameSpec{op: 1, fin: true, rsv: 0x40, payload: z, key: testKey})); code != 1002 {
		t.Errorf("RSV1 without deflate: code %d, want 1002", code)
	}
}

// TestInflateBomb sends 128 KiB that inflate to 128 MiB: the parser stops at MaxMessage
// with 1009 and never holds more than the limit.
func TestInflateBomb(t *testing.T) {
	var b bytes.Buffer
	w, _ := flate.NewWriter(&b, flate.BestCompression)
	zeros := make([]byte, 1<<20)
	for range 128 {
		w.Write(zeros)
	}
	w.Flush()
	z := b.Bytes()[:b.Len()-4]
	t.Logf("bomb: %d bytes inflating to 128 MiB", len(z))
	p := Parser{MaxMessage: 1 << 20, Deflate: DeflateNoLimit}
	out, err := inflate(nil, z, 1<<20)
	if err != errInflateTooBig || out != nil {
		t.Fatalf("inflate: %v", err)
	}
	_, code, _ := feedAll(&p, clientFrame(frameSpec{op: 2, fin: true, rsv: 0x40, payload: z, key: testKey}))
	if code != 1009 {
		t.Fatalf("bomb: code %d, want 1009", code)
	}
	// What one inflate may allocate is bounded by the limit, not the bomb.
	allocs := testing.AllocsPerRun(3, func() { inflate(nil, z, 64<<10) })
	if allocs > 20 {
		t.Errorf("inflate of a bomb allocates %v times", allocs)
	}
}

func TestDeflateFrame(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, 16, 125, 126, 300, 2048, 65535, 65536, 200000} {
		var b []byte // JSON-like: repeated keys, varying values
		for len(b) < n {
			b = fmt.Appendf(b, `{"seq":%d,"user":"u%d","ok":%v},`, rng.IntN(1e6), rng.IntN(1000), rng.IntN(2) == 0)
		}
		p := b[:n]
		plain := AppendFrame(nil, KindText, p)
		z := DeflateFrame(plain)
		if z == nil {
			if n >= 256 {
				t.Errorf("%d bytes: not compressed", n)
			}
			continue
		}
		if z[0] != 0x80|0x40|1 || len(z) >= len(plain) {
			t.Fatalf("%d bytes: header %#x, %d bytes for %d", n, z[0], len(z), len(plain))
		}
		// The server frame read as a client would, masked here for the parser.
		masked := maskServerFrame(z, testKey)
		pr := Parser{MaxMessage: 1 << 20, Deflate: DeflateNoLimit}
		evs, code, _ := feedAll(&pr, masked)
		if code != 0 || len(evs) != 1 || evs[0].payload != string(p) {
			t.Fatalf("%d bytes: round trip code %d, %d events", n, code, len(evs))
		}
		hdr := map[byte]int{126: 4, 127: 10}[z[1]&0x7F]
		if hdr == 0 {
			hdr = 2
		}
		if got := stdInflate(t, z[hdr:]); !bytes.Equal(got, p) {
			t.Fatalf("%d bytes: the standard library inflates something else", n)
		}
	}
	if DeflateFrame(AppendFrame(nil, KindPing, nil)) != nil || DeflateFrame([]byte{0x81}) != nil {
		t.Error("DeflateFrame took a control or truncated frame")
	}
	random := make([]byte, 4096)
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	if DeflateFrame(AppendFrame(nil, KindBinary, random)) != nil {
		t.Error("random bytes compressed to a larger frame were kept")
	}
}

func BenchmarkDeflateFrame2K(b *testing.B) {
	p := json2K()
	plain := AppendFrame(nil, KindText, p)
	b.SetBytes(int64(len(plain)))
	b.ReportAllocs()
	var z []byte
	for b.Loop() {
		z = DeflateFrame(plain)
	}
	b.ReportMetric(float64(len(z)), "bytes/frame")
}

func BenchmarkInflate2K(b *testing.B) {
	z := stdDeflate(b, json2K())
	b.ReportAllocs()
	var out []byte
	for b.Loop() {
		out, _ = inflate(out, z, 1<<20)
	}
}

// json2K is the shared 2 KB JSON payload (testutil.JSON2K).
func json2K() []byte { return testutil.JSON2K() }

// FuzzDeflateParser feeds arbitrary bytes as the payload of a compressed message, in
// one frame or in fragments, to a parser with deflate on: it either yields the
// message the standard library inflates them to (within the limit) or fails with
// 1007 or 1009, and holds nothing afterwards.
func FuzzDeflateParser(f *testing.F) {
	f.Add(stdDeflate(f, []byte("hello hello hello")), uint8(0), true)
	f.Add(stdDeflate(f, bytes.Repeat([]byte{0}, 5000)), uint8(7), false)
	f.Add([]byte{0xff, 0x00, 0x12}, uint8(1), true)
	f.Fuzz(func(t *testing.T, z []byte, frag uint8, text bool) {
		const limit = 4096
		op := byte(2)
		if text {
			op = 1
		}
		var stream []byte
		if frag == 0 || int(frag) >= len(z) {
			stream = clientFrame(frameSpec{op: op, fin: true, rsv: 0x40, payload: z, key: testKey})
		} else {
			stream = cat(clientFrame(frameSpec{op: op, rsv: 0x40, payload: z[:frag], key: testKey}),
				clientFrame(frameSpec{op: 0, fin: true, payload: z[frag:], key: testKey}))
		}
		p := Parser{MaxMessage: limit, Deflate: DeflateNoLimit}
		evs, code, _ := feedAll(&p, stream)
		ref, err := io.ReadAll(io.LimitReader(flate.NewReader(io.MultiReader(bytes.NewReader(z), bytes.NewReader(deflateTail))), limit+1))
		switch {
		case code == 0:
			if len(evs) != 1 || err != nil || evs[0].payload != string(ref) {
				t.Fatalf("accepted: %d events; the reference says %d bytes, %v", len(evs), len(ref), err)
			}
		case code == CloseTooBig:
			if len(ref) <= limit {
				t.Fatalf("1009 for %d bytes", len(ref))
			}
		case code == CloseInvalidPayload:
			if err == nil && len(ref) <= limit && (!text || utf8.Valid(ref)) {
				t.Fatalf("1007 for valid data of %d bytes", len(ref))
			}
		default:
			t.Fatalf("code %d", code)
		}
		p.Reset()
		if p.Held() != 0 {
			t.Fatal("held bytes")
		}
	})
}
