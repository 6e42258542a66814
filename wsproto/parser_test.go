package wsproto

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"unsafe"
)

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func TestParserRules(t *testing.T) {
	big := strings.Repeat("x", 300)
	type tc struct {
		name   string
		max    int
		stream []byte
		want   []rec
		code   uint16 // 0: no error
	}
	cases := []tc{
		{name: "text", stream: frame(1, true, "hello"), want: []rec{{kind: KindText, payload: "hello"}}},
		{name: "empty text", stream: frame(1, true, ""), want: []rec{{kind: KindText}}},
		{name: "binary 16-bit length", stream: frame(2, true, big), want: []rec{{kind: KindBinary, payload: big}}},
		{name: "non-minimal 64-bit length", stream: clientFrame(frameSpec{op: 2, fin: true, lenMode: 64, payload: []byte("ab"), key: testKey}),
			want: []rec{{kind: KindBinary, payload: "ab"}}},
		{name: "non-minimal 16-bit length", stream: clientFrame(frameSpec{op: 1, fin: true, lenMode: 16, payload: []byte("ab"), key: testKey}),
			want: []rec{{kind: KindText, payload: "ab"}}},
		{name: "ping pong", stream: cat(frame(9, true, "p"), frame(10, true, "q")),
			want: []rec{{kind: KindPing, payload: "p"}, {kind: KindPong, payload: "q"}}},
		{name: "ping 125", stream: frame(9, true, big[:125]), want: []rec{{kind: KindPing, payload: big[:125]}}},
		{name: "unmasked", stream: clientFrame(frameSpec{op: 1, fin: true, unmasked: true, payload: []byte("hi")}), code: 1002},
		{name: "rsv1", stream: clientFrame(frameSpec{op: 1, fin: true, rsv: 0x40, key: testKey}), code: 1002},
		{name: "rsv2", stream: clientFrame(frameSpec{op: 1, fin: true, rsv: 0x20, key: testKey}), code: 1002},
		{name: "rsv3", stream: clientFrame(frameSpec{op: 9, fin: true, rsv: 0x10, key: testKey}), code: 1002},
		{name: "fragmented ping", stream: frame(9, false, "p"), code: 1002},
		{name: "ping 126", stream: frame(9, true, big[:126]), code: 1002},
		{name: "close 126 header only", stream: frame(8, true, big[:126])[:2], code: 1002},
		{name: "stray continuation", stream: frame(0, true, "x"), code: 1002},
		{name: "text inside fragmented", stream: cat(frame(1, false, "a"), frame(1, true, "b")), code: 1002},
		{name: "binary inside fragmented", stream: cat(frame(2, false, "a"), frame(2, false, "b")), code: 1002},
		{name: "64-bit MSB", stream: []byte{0x82, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1}, code: 1002},
		{name: "too big header only", max: 100, stream: frame(2, true, big)[:4], code: 1009},
		{name: "too big 64-bit header only", stream: []byte{0x82, 0xFF, 0, 0, 0, 0, 0, 0x20, 0, 0}, code: 1009},
		{name: "exactly max", max: 300, stream: frame(2, true, big), want: []rec{{kind: KindBinary, payload: big}}},
		{name: "reassembled too big", max: 250, stream: cat(frame(2, false, big[:200]), frame(0, false, big[:60])[:4]), code: 1009},
		{name: "reassembled exactly max", max: 260, stream: cat(frame(2, false, big[:200]), frame(0, true, big[:60])),
			want: []rec{{kind: KindBinary, payload: big[:260]}}},
		{name: "invalid utf8", stream: frame(1, true, "a\xff"), code: 1007},
		{name: "truncated utf8 final", stream: frame(1, true, "a\xce"), code: 1007},
		{name: "utf8 split across fragments", stream: cat(frame(1, false, "\xce"), frame(0, false, "\xba\xe1"), frame(0, true, "\xbd\xb9")),
			want: []rec{{kind: KindText, payload: "\xce\xba\xe1\xbd\xb9"}}},
		{name: "utf8 incomplete at end of message", stream: cat(frame(1, false, "ok"), frame(0, true, "\xe1\xbd")), code: 1007},
		{name: "utf8 invalid in first fragment", stream: cat(frame(1, false, "\xed\xa0\x80"), frame(0, true, "")), code: 1007},
		{name: "binary need not be utf8", stream: frame(2, true, "\xff\xfe"), want: []rec{{kind: KindBinary, payload: "\xff\xfe"}}},
		{name: "fragments with interleaved control", stream: cat(frame(1, false, "he"), frame(9, true, "p1"), frame(0, false, ""),
			frame(10, true, ""), frame(0, true, "llo")),
			want: []rec{{kind: KindPing, payload: "p1"}, {kind: KindPong}, {kind: KindText, payload: "hello"}}},
		{name: "empty fragments", stream: cat(frame(2, false, ""), frame(0, false, ""), frame(0, true, "")), want: []rec{{kind: KindBinary}}},
		{name: "message after fragmented", stream: cat(frame(2, false, "a"), frame(0, true, "b"), frame(1, true, "c")),
			want: []rec{{kind: KindBinary, payload: "ab"}, {kind: KindText, payload: "c"}}},
		{name: "close empty", stream: frame(8, true, ""), want: []rec{{kind: KindClose, code: 1005}}},
		{name: "close 1 byte", stream: frame(8, true, "\x03"), code: 1002},
		{name: "close reason", stream: frame(8, true, closeBody(1000, "bye")),
			want: []rec{{kind: KindClose, payload: closeBody(1000, "bye"), code: 1000, reason: "bye"}}},
		{name: "close bad reason", stream: frame(8, true, closeBody(1000, "\xce")), code: 1007},
		{name: "close fragmented", stream: frame(8, false, closeBody(1000, "")), code: 1002},
	}
	for _, code := range []uint16{1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999} {
		cases = append(cases, tc{name: "close code valid", stream: frame(8, true, closeBody(code, "")),
			want: []rec{{kind: KindClose, payload: closeBody(code, ""), code: code}}})
	}
	for _, code := range []uint16{0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535} {
		cases = append(cases, tc{name: "close code invalid", stream: frame(8, true, closeBody(code, "")), code: 1002})
	}
	for _, op := range []byte{3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF} {
		cases = append(cases, tc{name: "reserved opcode", stream: frame(op, true, ""), code: 1002})
	}
	for _, c := range cases {
		p := Parser{MaxMessage: c.max}
		evs, code, _ := feedAll(&p, bytes.Clone(c.stream))
		if code != c.code || !slices.Equal(evs, c.want) {
			t.Errorf("%s: got %v code %d, want %v code %d", c.name, evs, code, c.want, c.code)
		}
		if code != 0 && (p.asm != nil || p.InProgress()) {
			t.Errorf("%s: parser kept state after error", c.name)
		}
		// Every split gives the same result, and a partial frame is never modified.
		for cut := 1; cut < len(c.stream); cut++ {
			p := Parser{MaxMessage: c.max}
			sevs, scode, _ := feedSplit(&p, bytes.Clone(c.stream), []int{cut}, false)
			if scode != c.code || !slices.Equal(sevs, c.want) {
				t.Fatalf("%s cut at %d: got %v code %d, want %v code %d", c.name, cut, sevs, scode, c.want, c.code)
			}
		}
	}
}

// A partial data frame is taken whole once its header and mask key are there (the
// caller then discards it, so nothing is offered twice) and is never modified in the
// caller's buffer; before that, nothing is consumed.
func TestParserPartialFrameUntouched(t *testing.T) {
	full := frame(1, true, strings.Repeat("abc", 100))
	const hdr = 8 // 16-bit length form + mask key
	for i := range len(full) {
		var p Parser
		part := bytes.Clone(full[:i])
		n, ev, err := p.Next(part)
		want := 0
		if i >= hdr {
			want = i
		}
		if n != want || ev.Kind != KindNone || err != nil {
			t.Fatalf("prefix %d: n=%d kind=%v err=%v, want n=%d", i, n, ev.Kind, err, want)
		}
		if !bytes.Equal(part, full[:i]) {
			t.Fatalf("prefix %d: partial frame was modified", i)
		}
		if n > 0 {
			n, ev, err = p.Next(full[i:])
			if n != len(full)-i || ev.Kind != KindText || string(ev.Payload) != strings.Repeat("abc", 100) || err != nil {
				t.Fatalf("prefix %d, then the rest: n=%d kind=%v err=%v", i, n, ev.Kind, err)
			}
		}
		p.Reset()
	}
}

// Issue 10, finding 3: a client that announces a 1 MiB frame and dribbles its
// payload makes the parser hold what it sent (rounded up to a chunk), never what the
// header announced, and every byte is consumed as it arrives.
func TestParserHoldsWhatArrived(t *testing.T) {
	b := NewBudget(4 << 20)
	p := Parser{Budget: b}
	n, _, err := p.Next([]byte{0x82, 0xFF, 0, 0, 0, 0, 0, 0x0F, 0xFF, 0xFF, 1, 2, 3, 4})
	if n != 14 || err != nil || p.Held() != 0 || b.Held() != 0 {
		t.Fatalf("header: n=%d err=%v held=%d budget=%d; want the header consumed and nothing held", n, err, p.Held(), b.Held())
	}
	piece := make([]byte, 64000)
	sent := 0
	for sent < 1_000_000 {
		n, ev, err := p.Next(piece)
		if n != len(piece) || ev.Kind != KindNone || err != nil {
			t.Fatalf("after %d bytes: n=%d kind=%v err=%v", sent, n, ev.Kind, err)
		}
		sent += n
		if h := p.Held(); h < sent || h > sent+ChunkSize || int64(h) != b.Held() {
			t.Fatalf("after %d bytes: parser holds %d, budget %d", sent, h, b.Held())
		}
	}
	for range 5 {
		if n, _, _ := p.Next([]byte{0}); n != 1 {
			t.Fatalf("1-byte dribble: n=%d", n)
		}
	}
	p.Reset()
	if b.Held() != 0 || b.Released() == 0 {
		t.Fatalf("after Reset the budget holds %d (released %d)", b.Held(), b.Released())
	}
}

// Over the Budget, the message fails with 1013 and gives back what it held; another
// parser can then use it.
func TestParserBudget(t *testing.T) {
	b := NewBudget(3 * ChunkSize)
	var p, q Parser
	p.Budget, q.Budget = b, b
	if n, _, err := p.Next(frame(2, false, strings.Repeat("x", 2*ChunkSize))); n == 0 || err != nil {
		t.Fatalf("first: n=%d err=%v", n, err)
	}
	_, _, err := q.Next(frame(2, false, strings.Repeat("y", 2*ChunkSize)))
	if ce, _ := err.(*CloseError); ce == nil || ce.Code != CloseTryAgainLater {
		t.Fatalf("over budget: err=%v, want close 1013", err)
	}
	if b.Held() != 2*ChunkSize {
		t.Fatalf("budget holds %d after the refused message, want %d", b.Held(), 2*ChunkSize)
	}
	if _, ev, err := p.Next(frame(0, true, "z")); ev.Kind != KindBinary || len(ev.Payload) != 2*ChunkSize+1 || err != nil {
		t.Fatalf("finishing the first: %v %d %v", ev.Kind, len(ev.Payload), err)
	}
	p.Next(nil)
	if b.Held() != 0 {
		t.Fatalf("budget holds %d after the message was handed out", b.Held())
	}
}

func TestParserBufferLifecycle(t *testing.T) {
	var p Parser
	stream := cat(frame(2, false, "ab"), frame(9, true, ""), frame(0, true, "cd"))
	n, ev, err := p.Next(stream)
	if err != nil || ev.Kind != KindNone || !p.InProgress() || p.asm == nil {
		t.Fatalf("first fragment: n=%d ev=%v err=%v inProgress=%v", n, ev.Kind, err, p.InProgress())
	}
	stream = stream[n:]
	n, ev, _ = p.Next(stream)
	if ev.Kind != KindPing || !p.InProgress() {
		t.Fatalf("interleaved ping: %v", ev.Kind)
	}
	stream = stream[n:]
	n, ev, _ = p.Next(stream)
	if ev.Kind != KindBinary || string(ev.Payload) != "abcd" || p.InProgress() {
		t.Fatalf("final: %v %q inProgress=%v", ev.Kind, ev.Payload, p.InProgress())
	}
	if p.asm == nil {
		t.Fatal("reassembly buffer released while its payload is still handed out")
	}
	if n, _, _ = p.Next(stream[n:]); n != 0 || p.asm != nil {
		t.Fatalf("buffer not returned on the next call (n=%d)", n)
	}
	// Reset mid-message returns the buffer and forgets the message.
	p.Next(frame(1, false, "x"))
	p.Reset()
	if p.asm != nil || p.InProgress() {
		t.Fatal("Reset kept state")
	}
	if _, _, err := p.Next(frame(0, true, "y")); err == nil {
		t.Fatal("continuation after Reset accepted")
	}
}

func TestParserSize(t *testing.T) {
	if s := unsafe.Sizeof(Parser{}); s > 32 {
		t.Fatalf("Parser is %d bytes, want <= 24 (one per connection)", s)
	}
}

func naiveUnmask(p []byte, key [4]byte) {
	for i := range p {
		p[i] ^= key[i%4]
	}
}

func TestUnmaskMatchesNaive(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	backing := make([]byte, 8+300)
	for n := 0; n <= 300; n++ {
		for off := range 8 {
			var key [4]byte
			for i := range key {
				key[i] = byte(rng.Uint32())
			}
			for i := range backing {
				backing[i] = byte(rng.Uint32())
			}
			want := bytes.Clone(backing)
			naiveUnmask(want[off:off+n], key)
			got := bytes.Clone(backing)
			unmask(got[off:off+n], key)
			if !bytes.Equal(got, want) {
				t.Fatalf("len %d offset %d: unmask differs from naive (or wrote outside its slice)", n, off)
			}
		}
	}
}

// The parser unmasks payloads wherever they sit in the peeked buffer.
func TestParserUnalignedPayloads(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for n := 0; n <= 300; n += 7 {
		payload := make([]byte, n)
		for i := range payload {
			payload[i] = byte(rng.Uint32())
		}
		f := clientFrame(frameSpec{op: 2, fin: true, payload: payload, key: [4]byte{1, 2, 3, 4}})
		for off := range 8 {
			buf := append(make([]byte, off), f...)
			var p Parser
			_, ev, err := p.Next(buf[off:])
			if err != nil || !bytes.Equal(ev.Payload, payload) {
				t.Fatalf("len %d offset %d: err=%v payload mismatch", n, off, err)
			}
		}
	}
}
