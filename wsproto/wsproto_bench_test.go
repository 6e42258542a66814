package wsproto

import (
	"strconv"
	"testing"
)

var benchSizes = []int{16, 125, 1024, 16 << 10, 64 << 10}

func sizeName(n int) string {
	if n >= 1024 {
		return "size=" + strconv.Itoa(n>>10) + "KiB"
	}
	return "size=" + strconv.Itoa(n) + "B"
}

// BenchmarkParseFrame decodes one masked binary frame per op. Unmasking in place
// toggles the payload between masked and clear on each pass, which the binary
// parser does not care about, so no per-op copy distorts the figure.
func BenchmarkParseFrame(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(sizeName(n), func(b *testing.B) {
			f := clientFrame(frameSpec{op: 2, fin: true, payload: make([]byte, n), key: testKey})
			p := Parser{MaxMessage: 1 << 20}
			b.ReportAllocs()
			b.SetBytes(int64(len(f)))
			for b.Loop() {
				if k, _, err := p.Next(f); k != len(f) || err != nil {
					b.Fatal(k, err)
				}
			}
		})
	}
	// Text frames pay for UTF-8 validation; the frame is restored per op by an
	// 8-byte-at-a-time copy, included in the figure.
	for _, n := range benchSizes {
		b.Run("text/"+sizeName(n), func(b *testing.B) {
			payload := make([]byte, n)
			for i := range payload {
				payload[i] = 'a' + byte(i%26)
			}
			tmpl := clientFrame(frameSpec{op: 1, fin: true, payload: payload, key: testKey})
			f := make([]byte, len(tmpl))
			var p Parser
			b.ReportAllocs()
			b.SetBytes(int64(len(f)))
			for b.Loop() {
				copy(f, tmpl)
				if k, _, err := p.Next(f); k != len(f) || err != nil {
					b.Fatal(k, err)
				}
			}
		})
	}
}

func BenchmarkUnmask(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(sizeName(n), func(b *testing.B) {
			p := make([]byte, n+1)[1:] // deliberately unaligned
			b.ReportAllocs()
			b.SetBytes(int64(n))
			for b.Loop() {
				unmask(p, testKey)
			}
		})
	}
}

func BenchmarkAppendFrame(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(sizeName(n), func(b *testing.B) {
			payload := make([]byte, n)
			dst := make([]byte, 0, n+HeaderSize(n))
			b.ReportAllocs()
			b.SetBytes(int64(n))
			for b.Loop() {
				dst = AppendFrame(dst[:0], KindBinary, payload)
			}
		})
	}
}

// BenchmarkParseRequest parses a typical browser upgrade request; its allocations
// are the strings Request keeps.
func BenchmarkParseRequest(b *testing.B) {
	benchParseRequest(b, false)
}

// BenchmarkParseRequestKeepHeader is the same with the header lines copied (a node
// with a connect hook): one allocation more.
func BenchmarkParseRequestKeepHeader(b *testing.B) {
	benchParseRequest(b, true)
}

func benchParseRequest(b *testing.B, keep bool) {
	req := []byte("GET /ws?token=eyJhbGciOiJIUzI1NiJ9.e30.x HTTP/1.1\r\n" +
		"Host: gw.example.com\r\nConnection: Upgrade\r\nPragma: no-cache\r\nCache-Control: no-cache\r\n" +
		"User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36\r\n" +
		"Upgrade: websocket\r\nOrigin: https://app.example.com\r\nSec-WebSocket-Version: 13\r\n" +
		"Accept-Encoding: gzip, deflate, br\r\nAccept-Language: en-US,en;q=0.9\r\n" +
		"Sec-WebSocket-Key: " + goodKey + "\r\n" +
		"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n")
	r := Request{KeepHeader: keep}
	b.ReportAllocs()
	b.SetBytes(int64(len(req)))
	for b.Loop() {
		if _, err := ParseRequest(req, 0, &r); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendUpgradeResponse(b *testing.B) {
	dst := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		dst = AppendUpgradeResponse(dst[:0], goodKey, "")
	}
}

// BenchmarkParseStreamed feeds one binary frame in 1 KiB pieces, as a frame larger
// than one read arrives: each piece is moved into the reassembly chunks. Steady
// state allocates nothing (chunks, assembly and the contiguous copy are reused).
func BenchmarkParseStreamed(b *testing.B) {
	for _, n := range []int{16 << 10, 64 << 10} {
		b.Run(sizeName(n), func(b *testing.B) {
			f := clientFrame(frameSpec{op: 2, fin: true, payload: make([]byte, n), key: testKey})
			p := Parser{Budget: NewBudget(1 << 30)}
			b.ReportAllocs()
			b.SetBytes(int64(len(f)))
			for b.Loop() {
				got := KindNone
				for off := 0; off < len(f); {
					k, ev, err := p.Next(f[off:min(off+1024, len(f))])
					if err != nil || k == 0 {
						b.Fatal(k, err)
					}
					off += k
					got = ev.Kind
				}
				if got != KindBinary {
					b.Fatal(got)
				}
				p.Next(nil)
			}
		})
	}
}
