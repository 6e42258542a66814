package loop

// Autobahn|Testsuite (fuzzingclient) cases that apply to a server, ported case by case
// and numbered like Autobahn, run against the real Server in echo mode over TCP.
//
// Where a port differs from the Python original it says so at the case. Two deviations
// hold throughout: Autobahn's one-second waits are replaced by waiting for a condition
// (a pong, or the close frame), and its "sync"/"chopped" sends are plain writes of the
// given size (TCP_NODELAY is on, so each write on loopback is its own segment). Cases
// whose id ends in "x" are additions beyond Autobahn's numbering.
//
// Section 10 (auto-fragmentation) is a client concern and does not apply. Section 9
// runs a few sizes only, to keep the file fast. Sections 12 and 13 (permessage-deflate,
// TestAutobahnDeflate) run Autobahn's payload kinds, message sizes (16 B to 128 KiB,
// whole and fragmented) and offers, each case with 10 messages (3 from 32 KiB up)
// instead of Autobahn's 1000, the client compressing every message (no context
// takeover, the standard library's deflate) and checking every echo, compressed or
// not, inflates to what it sent; cases 13.8x on are additions: offers the server must
// decline, and compressed messages it must refuse.

import (
	"bytes"
	"compress/flate"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"

	"longlink/internal/testutil"
	"longlink/wsproto"
)

// abFrame is a server frame a case expects.
type abFrame struct {
	op ws.OpCode
	p  []byte
}

// abStep is one burst of client bytes and the server frames it must produce.
type abStep struct {
	frames [][]byte // client frames; their bytes are concatenated
	raw    []byte   // bytes sent after frames (a piece of a frame cut mid-way)
	// chop says how the bytes are written: 0 in one write, -1 one write per frame,
	// n > 0 in writes of n bytes.
	chop int
	want []abFrame // server frames expected next, in this order
	// failFast: the server's close must arrive now, before any later step is sent
	// (Autobahn's strict "fail fast" outcome). Later steps run only if it does not.
	failFast bool
}

// abCase is one Autobahn case. code is the close code the server must send; 0 means
// the client closes with 1000 after the last step and expects 1000 echoed, and
// closeEmpty means an empty close frame.
type abCase struct {
	id    string
	steps []abStep
	code  uint16
	// srv picks the server: srvEcho (defaults), srvBig (MaxMessage 16 MiB, as an
	// Autobahn run of section 9 needs) or srvBigOut (also MaxOutbound 32 MiB).
	srv int
}

const closeEmpty = wsproto.CloseNoStatus

const (
	srvEcho = iota
	srvBig
	srvBigOut
)

// Frame builders: every client frame is masked, as RFC 6455 requires.
func abF(fin bool, op ws.OpCode, p string) []byte { return frame(fin, 0, op, []byte(p), true) }
func abText(p string) []byte                      { return abF(true, ws.OpText, p) }
func abPing(p string) []byte                      { return abF(true, ws.OpPing, p) }
func abClose(code uint16, reason string) []byte {
	return frame(true, 0, ws.OpClose, closePayload(code, reason), true)
}

func abWant(op ws.OpCode, p string) abFrame { return abFrame{op, []byte(p)} }
func abEcho(p string) abFrame               { return abWant(ws.OpText, p) }
func abPong(p string) abFrame               { return abWant(ws.OpPong, p) }

// one is a case of a single step.
func one(id string, code uint16, chop int, want []abFrame, frames ...[]byte) abCase {
	return abCase{id: id, code: code, steps: []abStep{{frames: frames, chop: chop, want: want}}}
}

// fragments splits p into n-byte pieces sent as one fragmented message of type op.
func fragments(op ws.OpCode, p []byte, n int) [][]byte {
	var out [][]byte
	for first := true; first || len(p) > 0; first = false {
		k := min(n, len(p))
		o := ws.OpContinuation
		if first {
			o = op
		}
		out = append(out, frame(k == len(p), 0, o, p[:k], true))
		p = p[k:]
	}
	return out
}

func repeatTo(pattern string, n int) string { return strings.Repeat(pattern, n/len(pattern)+1)[:n] }

func abCases1() []abCase {
	var cs []abCase
	for i, n := range []int{0, 125, 126, 127, 128, 65535, 65536} {
		text, bin := strings.Repeat("*", n), bytes.Repeat([]byte{0xfe}, n)
		cs = append(cs,
			one(fmt.Sprintf("1.1.%d", i+1), 0, 0, []abFrame{abEcho(text)}, abText(text)),
			one(fmt.Sprintf("1.2.%d", i+1), 0, 0, []abFrame{{ws.OpBinary, bin}}, frame(true, 0, ws.OpBinary, bin, true)))
		chop := 1 // byte by byte; the 64 KiB ones in 61-byte pieces to stay fast
		if n > 128 {
			chop = 61
		}
		cs = append(cs,
			one(fmt.Sprintf("1.1.%dx-chop%d", i+1, chop), 0, chop, []abFrame{abEcho(text)}, abText(text)),
			one(fmt.Sprintf("1.2.%dx-chop%d", i+1, chop), 0, chop, []abFrame{{ws.OpBinary, bin}}, frame(true, 0, ws.OpBinary, bin, true)))
	}
	text, bin := strings.Repeat("*", 65536), bytes.Repeat([]byte{0xfe}, 65536)
	return append(cs,
		one("1.1.8", 0, 997, []abFrame{abEcho(text)}, abText(text)),
		one("1.2.8", 0, 997, []abFrame{{ws.OpBinary, bin}}, frame(true, 0, ws.OpBinary, bin, true)))
}

func abCases2() []abCase {
	binPayload := "\x00\xff\xfe\xfd\xfc\xfb\x00\xff"
	p125, p126 := strings.Repeat("\xfe", 125), strings.Repeat("\xfe", 126)
	var ten [][]byte
	var tenPongs []abFrame
	for i := range 10 {
		p := fmt.Sprintf("payload-%d", i)
		ten = append(ten, abPing(p))
		tenPongs = append(tenPongs, abPong(p))
	}
	return []abCase{
		one("2.1", 0, 0, []abFrame{abPong("")}, abPing("")),
		one("2.2", 0, 0, []abFrame{abPong("Hello, world!")}, abPing("Hello, world!")),
		one("2.3", 0, 0, []abFrame{abPong(binPayload)}, abPing(binPayload)),
		one("2.4", 0, 0, []abFrame{abPong(p125)}, abPing(p125)),
		one("2.5", 1002, 0, nil, abPing(p126)),
		one("2.6", 0, 1, []abFrame{abPong(p125)}, abPing(p125)),
		one("2.7", 0, 0, nil, abF(true, ws.OpPong, "")),
		one("2.8", 0, 0, nil, abF(true, ws.OpPong, "unsolicited pong payload")),
		one("2.9", 0, 0, []abFrame{abPong("ping payload")},
			abF(true, ws.OpPong, "unsolicited pong payload"), abPing("ping payload")),
		one("2.10", 0, 0, tenPongs, ten...),
		one("2.11", 0, 1, tenPongs, ten...),
	}
}

// abCases3 covers reserved bits: Autobahn 3.1-3.7, then every RSV value on every
// opcode, after a valid message that must be echoed first.
func abCases3() []abCase {
	const hello = "Hello, world!"
	binPayload := []byte("\x00\xff\xfe\xfd\xfc\xfb\x00\xff")
	echo := []abFrame{abEcho(hello)}
	cs := []abCase{
		one("3.1", 1002, 0, nil, frame(true, 1, ws.OpText, []byte(hello), true)),
		one("3.2", 1002, 0, echo, abText(hello), frame(true, 2, ws.OpText, []byte(hello), true), abPing("")),
		one("3.3", 1002, 1, echo, abText(hello), frame(true, 3, ws.OpText, []byte(hello), true), abPing("")),
		one("3.4", 1002, -1, echo, abText(hello), frame(true, 4, ws.OpText, []byte(hello), true), abPing("")),
		one("3.5", 1002, 0, nil, frame(true, 5, ws.OpBinary, binPayload, true)),
		one("3.6", 1002, 0, nil, frame(true, 6, ws.OpPing, binPayload, true)),
		one("3.7", 1002, 0, nil, frame(true, 7, ws.OpClose, nil, true)),
	}
	ops := []struct {
		name string
		f    func(rsv byte) [][]byte
	}{
		{"text", func(r byte) [][]byte { return [][]byte{frame(true, r, ws.OpText, []byte(hello), true)} }},
		{"binary", func(r byte) [][]byte { return [][]byte{frame(true, r, ws.OpBinary, binPayload, true)} }},
		{"ping", func(r byte) [][]byte { return [][]byte{frame(true, r, ws.OpPing, []byte("p"), true)} }},
		{"pong", func(r byte) [][]byte { return [][]byte{frame(true, r, ws.OpPong, []byte("p"), true)} }},
		{"close", func(r byte) [][]byte { return [][]byte{frame(true, r, ws.OpClose, closePayload(1000, ""), true)} }},
		{"continuation", func(r byte) [][]byte {
			return [][]byte{abF(false, ws.OpText, "frag"), frame(true, r, ws.OpContinuation, []byte("ment"), true)}
		}},
	}
	for _, op := range ops {
		for rsv := byte(1); rsv <= 7; rsv++ {
			frames := append([][]byte{abText(hello)}, op.f(rsv)...)
			frames = append(frames, abPing("must not be answered"))
			cs = append(cs, one(fmt.Sprintf("3.x-rsv%d-%s", rsv, op.name), 1002, 0, echo, frames...))
		}
	}
	return cs
}

// abCases4 covers reserved opcodes (Autobahn 4.1.x and 4.2.x) and, as additions, every
// reserved opcode with and without a payload after a valid message.
func abCases4() []abCase {
	const hello = "Hello, world!"
	echo := []abFrame{abEcho(hello)}
	cs := []abCase{
		one("4.1.1", 1002, 0, nil, abF(true, 3, "")),
		one("4.1.2", 1002, 0, nil, abF(true, 4, "reserved opcode payload")),
		one("4.1.3", 1002, 0, echo, abText(hello), abF(true, 5, ""), abPing("")),
		one("4.1.4", 1002, 0, echo, abText(hello), abF(true, 6, hello), abPing("")),
		one("4.1.5", 1002, 0, echo, abText(hello), abF(true, 7, hello), abPing("")),
		one("4.2.1", 1002, 0, nil, abF(true, 11, "")),
		one("4.2.2", 1002, 0, nil, abF(true, 12, "reserved opcode payload")),
		one("4.2.3", 1002, 0, echo, abText(hello), abF(true, 13, ""), abPing("")),
		one("4.2.4", 1002, 0, echo, abText(hello), abF(true, 14, hello), abPing("")),
		one("4.2.5", 1002, 0, echo, abText(hello), abF(true, 15, hello), abPing("")),
	}
	for _, op := range []ws.OpCode{3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF} {
		for _, p := range []string{"", hello} {
			cs = append(cs, one(fmt.Sprintf("4.x-op%X-len%d", byte(op), len(p)), 1002, 0, echo,
				abText(hello), abF(true, op, p), abPing("")))
		}
	}
	return cs
}

func abCases5() []abCase {
	const hello = "Hello, world!"
	f1, f2 := abF(false, ws.OpText, "fragment1"), abF(true, ws.OpContinuation, "fragment2")
	msg := []abFrame{abEcho("fragment1fragment2")}
	withPing := []abFrame{abPong("ping payload"), abEcho("fragment1fragment2")}
	nc := "non-continuation payload"
	seq516 := func(firstFin bool) [][]byte {
		var out [][]byte
		for range 2 {
			out = append(out, abF(firstFin, ws.OpContinuation, "fragment1"),
				abF(false, ws.OpText, "fragment2"), abF(true, ws.OpContinuation, "fragment3"))
		}
		return out
	}
	case519 := func(id string, chop int) abCase {
		// Autobahn waits one second between the two halves; waiting for the first
		// pong proves the same thing: the server answers mid-message.
		return abCase{id: id, steps: []abStep{
			{chop: chop, want: []abFrame{abPong("pongme 1!")}, frames: [][]byte{
				abF(false, ws.OpText, "fragment1"), abF(false, ws.OpContinuation, "fragment2"),
				abPing("pongme 1!"), abF(false, ws.OpContinuation, "fragment3")}},
			{chop: chop, want: []abFrame{abPong("pongme 2!"), abEcho("fragment1fragment2fragment3fragment4fragment5")},
				frames: [][]byte{abF(false, ws.OpContinuation, "fragment4"), abPing("pongme 2!"),
					abF(true, ws.OpContinuation, "fragment5")}},
		}}
	}
	cs := []abCase{
		one("5.1", 1002, 0, nil, abF(false, ws.OpPing, "fragment1"), abF(true, ws.OpContinuation, "fragment2")),
		one("5.2", 1002, 0, nil, abF(false, ws.OpPong, "fragment1"), abF(true, ws.OpContinuation, "fragment2")),
		one("5.3", 0, 0, msg, f1, f2),
		one("5.4", 0, 1, msg, f1, f2),
		one("5.5", 0, 3, msg, f1, f2), // Autobahn: octet-wise with syncs; here 3-byte writes
		one("5.6", 0, 0, withPing, f1, abPing("ping payload"), f2),
		one("5.7", 0, 1, withPing, f1, abPing("ping payload"), f2),
		one("5.8", 0, -1, withPing, f1, abPing("ping payload"), f2),
		one("5.9", 1002, 0, nil, abF(true, ws.OpContinuation, nc), abText(hello)),
		one("5.10", 1002, 1, nil, abF(true, ws.OpContinuation, nc), abText(hello)),
		one("5.11", 1002, -1, nil, abF(true, ws.OpContinuation, nc), abText(hello)),
		one("5.12", 1002, 0, nil, abF(false, ws.OpContinuation, nc), abText(hello)),
		one("5.13", 1002, 1, nil, abF(false, ws.OpContinuation, nc), abText(hello)),
		one("5.14", 1002, -1, nil, abF(false, ws.OpContinuation, nc), abText(hello)),
		one("5.15", 1002, 0, msg, f1, f2, abF(false, ws.OpContinuation, "fragment3"), abF(true, ws.OpText, "fragment4")),
		one("5.16", 1002, 0, nil, seq516(false)...),
		one("5.17", 1002, 0, nil, seq516(true)...),
		one("5.18", 1002, 0, nil, f1, abF(true, ws.OpText, "fragment2")),
		case519("5.19", 0),
		case519("5.20", 1),
		// Additions: a ping between every pair of fragments; a binary message cut in
		// fragments of every size; a data frame interleaved in a binary message.
		one("5.x-ping-between-all", 0, 0, []abFrame{abPong("1"), abPong("2"), abEcho("abc")},
			abF(false, ws.OpText, "a"), abPing("1"), abF(false, ws.OpContinuation, "b"), abPing("2"),
			abF(true, ws.OpContinuation, "c")),
		one("5.x-binary-then-binary", 1002, 0, nil, abF(false, ws.OpBinary, "a"), abF(true, ws.OpBinary, "b")),
		one("5.x-text-in-binary", 1002, 0, nil, abF(false, ws.OpBinary, "a"), abF(true, ws.OpText, "b")),
	}
	msgText := "Hello, fragmented world ✓ κόσμε"
	for n := 1; n <= 8; n++ {
		size := (len(msgText) + n - 1) / n
		cs = append(cs,
			one(fmt.Sprintf("5.x-text-in-%d-fragments", n), 0, 0, []abFrame{abEcho(msgText)},
				fragments(ws.OpText, []byte(msgText), size)...),
			one(fmt.Sprintf("5.x-text-in-%d-fragments-chop1", n), 0, 1, []abFrame{abEcho(msgText)},
				fragments(ws.OpText, []byte(msgText), size)...))
	}
	return cs
}

// kosme is Autobahn's valid multi-byte string ("κόσμε"); kosmeBad appends a UTF-16
// surrogate (ED A0 80), which is not valid UTF-8, then "edited".
const (
	kosme    = "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"
	kosmeBad = kosme + "\xed\xa0\x80\x65\x64\x69\x74\x65\x64"
)

func abCases6() []abCase {
	valid := "Hello-\xc2\xb5@\xc3\x9f\xc3\xb6\xc3\xa4\xc3\xbc\xc3\xa0\xc3\xa1-UTF-8!!"
	perByte := func(s string) [][]byte { return fragments(ws.OpText, []byte(s), 1) }
	cs := []abCase{
		one("6.1.1", 0, 0, []abFrame{abEcho("")}, abText("")),
		one("6.1.2", 0, 0, []abFrame{abEcho("")},
			abF(false, ws.OpText, ""), abF(false, ws.OpContinuation, ""), abF(true, ws.OpContinuation, "")),
		one("6.1.3", 0, 0, []abFrame{abEcho("middle")},
			abF(false, ws.OpText, ""), abF(false, ws.OpContinuation, "middle"), abF(true, ws.OpContinuation, "")),
		one("6.2.1", 0, 0, []abFrame{abEcho(valid)}, abText(valid)),
		one("6.2.2", 0, 0, []abFrame{abEcho(valid)},
			abF(false, ws.OpText, valid[:16]), abF(true, ws.OpContinuation, valid[16:])),
		one("6.2.3", 0, 0, []abFrame{abEcho(valid)}, perByte(valid)...),
		one("6.2.4", 0, 0, []abFrame{abEcho(kosme)}, perByte(kosme)...),
		one("6.3.1", 1007, 0, nil, abText(kosmeBad)),
		// 6.3.2 sends one fragment per byte. Only the fragments up to the byte that
		// makes the stream invalid (A0, index 12) go first: the close must come
		// before the rest of the message is sent.
		{id: "6.3.2", code: 1007, steps: []abStep{
			{frames: perByte(kosmeBad)[:13], failFast: true},
			{frames: perByte(kosmeBad)[13:]},
		}},
		abFailFast("6.4.1", kosme, "\xf4\x90\x80\x80", "\x65\x64\x69\x74\x65\x64", false),
		abFailFast("6.4.2", kosme+"\xf4", "\x90", "\x80\x80\x65\x64\x69\x74\x65\x64", false),
		abFailFast("6.4.3", kosme, "\xf4\x90\x80\x80", "\x65\x64\x69\x74\x65\x64", true),
		abFailFast("6.4.4", kosme+"\xf4", "\x90", "\x80\x80\x65\x64\x69\x74\x65\x64", true),
	}
	for i, cat := range utf8Sequences() {
		for j, seq := range cat.seqs {
			id := fmt.Sprintf("6.%d.%d", i+5, j+1)
			if seq.valid {
				cs = append(cs,
					one(id, 0, 0, []abFrame{abEcho(seq.b)}, abText(seq.b)),
					one(id+"x-per-byte", 0, 0, []abFrame{abEcho(seq.b)}, perByte(seq.b)...))
			} else {
				cs = append(cs,
					one(id, 1007, 0, nil, abText(seq.b)),
					one(id+"x-per-byte", 1007, 0, nil, perByte(seq.b)...))
			}
		}
	}
	return cs
}

// abFailFast is Autobahn 6.4.x: a text message whose second part makes it invalid.
// With chunks=false the parts are three fragments; with chunks=true they are three
// pieces of one frame. The server must close with 1007 once part 2 is in, while the
// message is still open; part 3 is sent only if it does not. In the fragment form a
// ping after part 1 checks that the valid prefix was accepted (Autobahn's "timeout A").
func abFailFast(id, p1, p2, p3 string, chunks bool) abCase {
	if !chunks {
		return abCase{id: id, code: 1007, steps: []abStep{
			{frames: [][]byte{abF(false, ws.OpText, p1), abPing("A")}, want: []abFrame{abPong("A")}},
			{frames: [][]byte{abF(false, ws.OpContinuation, p2)}, failFast: true},
			{frames: [][]byte{abF(true, ws.OpContinuation, p3)}},
		}}
	}
	f := abText(p1 + p2 + p3)
	cut1, cut2 := 6+len(p1), 6+len(p1)+len(p2) // 2-byte header + 4-byte mask key
	return abCase{id: id, code: 1007, steps: []abStep{
		{raw: f[:cut1]},
		{raw: f[cut1:cut2], failFast: true},
		{raw: f[cut2:]},
	}}
}

type utf8Category struct {
	name string
	seqs []utf8Seq
}

type utf8Seq struct {
	valid bool
	b     string
}

// utf8Sequences is Autobahn's createUtf8TestSequences (after Markus Kuhn's
// UTF-8-test.txt), in its order: category i is case 6.(i+5), sequence j is 6.(i+5).(j+1).
func utf8Sequences() []utf8Category {
	v := func(ss ...string) []utf8Seq { return seqs(true, ss...) }
	x := func(ss ...string) []utf8Seq { return seqs(false, ss...) }
	// Byte ranges are half-open, as Python's xrange in the original.
	rng := func(lo, hi int, sep string) string {
		var b strings.Builder
		for c := lo; c < hi; c++ {
			b.WriteByte(byte(c))
			b.WriteString(sep)
		}
		return b.String()
	}
	var prefixes []utf8Seq
	for i := 1; i <= len(kosme); i++ {
		// A prefix is valid exactly when it ends on a code point boundary.
		prefixes = append(prefixes, utf8Seq{utf8.ValidString(kosme[:i]), kosme[:i]})
	}
	missing := []string{"\xc0", "\xe0\x80", "\xf0\x80\x80", "\xf8\x80\x80\x80", "\xfc\x80\x80\x80\x80",
		"\xdf", "\xef\xbf", "\xf7\xbf\xbf", "\xfb\xbf\xbf\xbf", "\xfd\xbf\xbf\xbf\xbf"}
	var nonChars []string
	nonChars = append(nonChars, "\xef\xbf\xbe", "\xef\xbf\xbf")
	for _, z1 := range []byte{0xf0, 0xf1, 0xf2, 0xf3, 0xf4} {
		for _, z2 := range []byte{0x8f, 0x9f, 0xaf, 0xbf} {
			if z1 == 0xf4 && z2 != 0x8f {
				continue // above U+10FFFF
			}
			for _, z3 := range []byte{0xbe, 0xbf} {
				if z1 == 0xf0 && z2 == 0x8f {
					continue // overlong
				}
				nonChars = append(nonChars, string([]byte{z1, z2, 0xbf, z3}))
			}
		}
	}
	return []utf8Category{
		{"Some valid UTF-8 sequences", v("hello\x24world", "hello\xc2\xa2world", "hello\xe2\x82\xacworld",
			"hello\xf0\xa4\xad\xa2world", kosme)},
		{"All prefixes of a valid UTF-8 string that contains multi-byte code points", prefixes},
		{"First possible sequence of a certain length", v("\x00", "\xc2\x80", "\xe0\xa0\x80", "\xf0\x90\x80\x80")},
		{"First possible sequence length 5/6 (invalid codepoints)", x("\xf8\x88\x80\x80\x80", "\xfc\x84\x80\x80\x80\x80")},
		{"Last possible sequence of a certain length", v("\x7f", "\xdf\xbf", "\xef\xbf\xbf", "\xf4\x8f\xbf\xbf")},
		{"Last possible sequence length 4/5/6 (invalid codepoints)", x("\xf7\xbf\xbf\xbf", "\xfb\xbf\xbf\xbf\xbf", "\xfd\xbf\xbf\xbf\xbf\xbf")},
		{"Other boundary conditions", append(v("\xed\x9f\xbf", "\xee\x80\x80", "\xef\xbf\xbd", "\xf4\x8f\xbf\xbf"),
			x("\xf4\x90\x80\x80")...)},
		{"Unexpected continuation bytes", x("\x80", "\xbf", "\x80\xbf", "\x80\xbf\x80", "\x80\xbf\x80\xbf",
			"\x80\xbf\x80\xbf\x80", "\x80\xbf\x80\xbf\x80\xbf", rng(0x80, 0xbf, ""))},
		{"Lonely start characters", x(rng(0xc0, 0xdf, " "), rng(0xe0, 0xef, " "), rng(0xf0, 0xf7, " "),
			rng(0xf8, 0xfb, " "), rng(0xfc, 0xfd, " "))},
		{"Sequences with last continuation byte missing", x(missing...)},
		{"Concatenation of incomplete sequences", x(strings.Join(missing, ""))},
		{"Impossible bytes", x("\xfe", "\xff", "\xfe\xfe\xff\xff")},
		{"Examples of an overlong ASCII character", x("\xc0\xaf", "\xe0\x80\xaf", "\xf0\x80\x80\xaf",
			"\xf8\x80\x80\x80\xaf", "\xfc\x80\x80\x80\x80\xaf")},
		{"Maximum overlong sequences", x("\xc1\xbf", "\xe0\x9f\xbf", "\xf0\x8f\xbf\xbf", "\xf8\x87\xbf\xbf\xbf",
			"\xfc\x83\xbf\xbf\xbf\xbf")},
		{"Overlong representation of the NUL character", x("\xc0\x80", "\xe0\x80\x80", "\xf0\x80\x80\x80",
			"\xf8\x80\x80\x80\x80", "\xfc\x80\x80\x80\x80\x80")},
		{"Single UTF-16 surrogates", x("\xed\xa0\x80", "\xed\xad\xbf", "\xed\xae\x80", "\xed\xaf\xbf",
			"\xed\xb0\x80", "\xed\xbe\x80", "\xed\xbf\xbf")},
		{"Paired UTF-16 surrogates", x("\xed\xa0\x80\xed\xb0\x80", "\xed\xa0\x80\xed\xbf\xbf",
			"\xed\xad\xbf\xed\xb0\x80", "\xed\xad\xbf\xed\xbf\xbf", "\xed\xae\x80\xed\xb0\x80",
			"\xed\xae\x80\xed\xbf\xbf", "\xed\xaf\xbf\xed\xb0\x80", "\xed\xaf\xbf\xed\xbf\xbf")},
		{"Non-character code points (valid UTF-8)", v(nonChars...)},
		{"Unicode specials (i.e. replacement char)", v("\xef\xbf\xb9", "\xef\xbf\xba", "\xef\xbf\xbb",
			"\xef\xbf\xbc", "\xef\xbf\xbd", "\xef\xbf\xbe", "\xef\xbf\xbf")},
	}
}

func seqs(valid bool, ss ...string) []utf8Seq {
	out := make([]utf8Seq, len(ss))
	for i, s := range ss {
		out[i] = utf8Seq{valid, s}
	}
	return out
}

func abCases7() []abCase {
	const hw = "Hello World!"
	big := repeatTo("BAsd7&jh23", 256<<10)
	cs := []abCase{
		{id: "7.1.1", steps: []abStep{{frames: [][]byte{abText(hw)}, want: []abFrame{abEcho(hw)}}}},
		one("7.1.2", 1000, 0, nil, abClose(1000, ""), abClose(1000, "")),
		one("7.1.3", 1000, 0, nil, abClose(1000, ""), abPing(hw)), // no pong after close
		one("7.1.4", 1000, 0, nil, abClose(1000, ""), abText(hw)), // no echo after close
		one("7.1.5", 1000, 0, nil, abF(false, ws.OpText, "fragment1"), abClose(1000, ""),
			abF(true, ws.OpContinuation, "fragment2")),
		// Informational in Autobahn; this server handles frames in order, so both
		// messages are echoed before the close, and the ping is not answered.
		one("7.1.6", 1000, 0, []abFrame{abEcho(big), abEcho(hw)}, abText(big), abText(hw), abClose(1000, ""), abPing("")),
		one("7.3.1", closeEmpty, 0, nil, frame(true, 0, ws.OpClose, nil, true)),
		one("7.3.2", 1002, 0, nil, frame(true, 0, ws.OpClose, []byte("a"), true)),
		one("7.3.3", 1000, 0, nil, abClose(1000, "")),
		one("7.3.4", 1000, 0, nil, abClose(1000, "Hello World!")),
		one("7.3.5", 1000, 0, nil, abClose(1000, strings.Repeat("*", 123))),
		one("7.3.6", 1002, 0, nil, abClose(1000, strings.Repeat("*", 124))),
		one("7.5.1", 1007, 0, nil, abClose(1000, kosmeBad)),
		// Addition: a close reason with a valid multi-byte reason is accepted.
		one("7.5.1x-valid-reason", 1000, 0, nil, abClose(1000, kosme)),
	}
	for i, code := range []uint16{1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999} {
		cs = append(cs, one(fmt.Sprintf("7.7.%d", i+1), code, 0, nil, abClose(code, "")))
	}
	for i, code := range []uint16{0, 999, 1004, 1005, 1006, 1016, 1100, 2000, 2999} {
		cs = append(cs, one(fmt.Sprintf("7.9.%d", i+1), 1002, 0, nil, abClose(code, "")))
	}
	// 7.13.x is informational in Autobahn; RFC 6455 defines no codes above 4999.
	cs = append(cs, one("7.13.1", 1002, 0, nil, abClose(5000, "")), one("7.13.2", 1002, 0, nil, abClose(65535, "")))
	return cs
}

// abCases9 is a few section-9 sizes (Autobahn goes to 16 MiB; the file must stay fast).
// They run on a server with MaxMessage = 16 MiB, as an Autobahn run would configure it,
// and otherwise default limits.
func abCases9() []abCase {
	bin := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i*131 + i>>8) // not periodic in 4, so a mask slip shows
		}
		return b
	}
	var cs []abCase
	for i, n := range []int{64 << 10, 256 << 10, 1 << 20} {
		t, b := repeatTo("BAsd7&jh23", n), bin(n)
		cs = append(cs,
			abCase{id: fmt.Sprintf("9.1.%d", i+1), srv: srvBig, steps: []abStep{{frames: [][]byte{abText(t)}, want: []abFrame{abEcho(t)}}}},
			abCase{id: fmt.Sprintf("9.2.%d", i+1), srv: srvBig, steps: []abStep{{frames: [][]byte{frame(true, 0, ws.OpBinary, b, true)}, want: []abFrame{{ws.OpBinary, b}}}}})
	}
	t4, b4 := repeatTo("BAsd7&jh23", 4<<20), bin(4<<20)
	t1, b1 := t4[:1<<20], b4[:1<<20]
	smallT, smallB := repeatTo("BAsd7&jh23", 64), bin(64)
	var manyT, manyB []abStep
	for range 1000 {
		// Autobahn sends each message after the previous echo; so do these steps.
		manyT = append(manyT, abStep{frames: [][]byte{abText(smallT)}, want: []abFrame{abEcho(smallT)}})
		manyB = append(manyB, abStep{frames: [][]byte{frame(true, 0, ws.OpBinary, smallB, true)}, want: []abFrame{{ws.OpBinary, smallB}}})
	}
	return append(cs,
		abCase{id: "9.3.3", srv: srvBig, steps: []abStep{{frames: fragments(ws.OpText, []byte(t4), 1024), want: []abFrame{abEcho(t4)}}}},
		abCase{id: "9.4.3", srv: srvBig, steps: []abStep{{frames: fragments(ws.OpBinary, b4, 1024), want: []abFrame{{ws.OpBinary, b4}}}}},
		abCase{id: "9.5.5", srv: srvBig, steps: []abStep{{frames: [][]byte{abText(t1)}, chop: 1024, want: []abFrame{abEcho(t1)}}}},
		abCase{id: "9.6.5", srv: srvBig, steps: []abStep{{frames: [][]byte{frame(true, 0, ws.OpBinary, b1, true)}, chop: 1024, want: []abFrame{{ws.OpBinary, b1}}}}},
		abCase{id: "9.7.3", srv: srvBig, steps: manyT},
		abCase{id: "9.8.3", srv: srvBig, steps: manyB},
		// Additions: over MaxMessage is 1009, decided from the header alone (no
		// payload is sent), for one frame and for the fragments of a message.
		abCase{id: "9.x-too-big-frame", srv: srvBig, code: 1009, steps: []abStep{{raw: frameHeader(ws.OpBinary, true, 16<<20+1)}}},
		abCase{id: "9.x-too-big-fragments", srv: srvBig, code: 1009, steps: []abStep{{
			frames: fragments(ws.OpBinary, b4[:1<<20+1], 64<<10)[:16], // 1 MiB, none final
			raw:    frameHeader(ws.OpContinuation, true, 15<<20+1)}}},
	)
}

// frameHeader is a masked client frame header announcing n payload bytes.
func frameHeader(op ws.OpCode, fin bool, n int) []byte {
	h := frame(fin, 0, op, nil, true) // 2-byte header + mask key for an empty payload
	out := []byte{h[0], 0x80 | 127, 0, 0, 0, 0, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}
	return append(out, h[2:6]...)
}

func abAllCases() []abCase {
	var cs []abCase
	for _, f := range []func() []abCase{abCases1, abCases2, abCases3, abCases4, abCases5, abCases6, abCases7, abCases9} {
		cs = append(cs, f()...)
	}
	return cs
}

// TestAutobahn runs every ported case on its own connection. Each ends with the
// server's close frame carrying the exact code, then the server closing TCP, with no
// frame in between or after that the case did not expect.
func TestAutobahn(t *testing.T) {
	servers := [...]*Server{
		srvEcho:   startServer(t, func(c *Config) { c.Echo = true }),
		srvBig:    startServer(t, func(c *Config) { c.Echo = true; c.MaxMessage = 16 << 20 }),
		srvBigOut: startServer(t, func(c *Config) { c.Echo = true; c.MaxMessage = 16 << 20; c.MaxOutbound = 32 << 20 }),
	}
	cases := abAllCases()
	// Section 9 runs twice: with the default MaxOutbound, as "longlink --echo
	// --max-message 16777216" would face Autobahn, and with MaxOutbound wide enough
	// for the largest echo, which isolates the echo path from the slow-consumer policy.
	for _, tc := range cases {
		if tc.srv == srvBig {
			tc.id += "x-maxoutbound-32MiB"
			tc.srv = srvBigOut
			cases = append(cases, tc)
		}
	}
	seen := map[string]bool{}
	for _, tc := range cases {
		if seen[tc.id] {
			t.Fatalf("BUG: case id %s used twice", tc.id)
		}
		seen[tc.id] = true
	}
	t.Logf("%d cases", len(cases))
	for _, tc := range cases {
		t.Run(tc.id, func(t *testing.T) { runAutobahnCase(t, servers[tc.srv], tc) })
	}
}

func runAutobahnCase(t *testing.T, s *Server, tc abCase) {
	slow0, none0 := s.m.slowConsumers.Get(), s.m.closesNone.Get()
	defer func() {
		// Name the server-side cause of a failure: a drop without a close frame is
		// otherwise just an EOF here.
		if t.Failed() {
			if n := s.m.slowConsumers.Get() - slow0; n > 0 {
				t.Errorf("the server dropped the connection as a slow consumer (%d), without a close frame: "+
					"the echo frame is larger than MaxOutbound (%d bytes) although the client reads all the time",
					n, s.cfg.MaxOutbound)
			}
			t.Logf("server counters during the case: slow-consumer closes +%d, closes without a close frame +%d",
				s.m.slowConsumers.Get()-slow0, s.m.closesNone.Get()-none0)
		}
	}()
	c := abDial(t, s, "ab-"+tc.id)
	// Once the server is expected to fail the connection, writes may meet a closed
	// socket; that is not an error of the case.
	lenient := tc.code != 0
	closed := false
	for i, st := range tc.steps {
		c.write(t, st, lenient)
		for k, w := range st.want {
			c.expectFrame(t, w, fmt.Sprintf("step %d, frame %d", i+1, k+1))
		}
		if !st.failFast {
			continue
		}
		f, err := c.read(time.Second)
		if errors.Is(err, errABTimeout) {
			t.Errorf("NON-STRICT: no close %d within 1s after step %d (%d bytes); the server waits for more "+
				"of the message before failing it (Autobahn reports NON-STRICT, not OK)", tc.code, i+1, stepLen(st))
			continue
		}
		c.checkClose(t, f, err, tc.code)
		closed = true
		break
	}
	if !closed {
		if tc.code == 0 {
			c.write(t, abStep{frames: [][]byte{abClose(1000, "")}}, false)
			c.expectClose(t, 1000)
		} else {
			c.expectClose(t, tc.code)
		}
	}
}

var errABTimeout = errors.New("timed out")

type abEvent struct {
	f   ws.Frame
	err error
}

// abConn is a raw client whose frames are read by a goroutine as they arrive, so the
// test can write large or slow messages while the server answers, and can wait for a
// frame with a timeout without losing it.
type abConn struct {
	*rawClient
	events chan abEvent
}

func abDial(t *testing.T, s *Server, user string) *abConn {
	t.Helper()
	return abWrap(t, rawDial(t, s, user))
}

// abWrap starts reading the frames of an upgraded raw client.
func abWrap(t *testing.T, rc *rawClient) *abConn {
	t.Helper()
	c := &abConn{rawClient: rc, events: make(chan abEvent, 4096)}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	done := make(chan struct{})
	t.Cleanup(func() { close(done) }) // runs before rawConnect's Close (LIFO)
	go func() {
		for {
			f, err := ws.ReadFrame(c.br)
			select {
			case c.events <- abEvent{f, err}:
			case <-done:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return c
}

func (c *abConn) read(d time.Duration) (ws.Frame, error) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case ev := <-c.events:
		return ev.f, ev.err
	case <-timer.C:
		return ws.Frame{}, errABTimeout
	}
}

func stepLen(st abStep) int {
	n := len(st.raw)
	for _, f := range st.frames {
		n += len(f)
	}
	return n
}

func (c *abConn) write(t *testing.T, st abStep, lenient bool) {
	t.Helper()
	// Copy before appending: st.frames may be a sub-slice whose spare capacity belongs
	// to the case table.
	pieces := append(append([][]byte(nil), st.frames...), st.raw)
	all := bytes.Join(pieces, nil)
	switch {
	case st.chop < 0:
		// one write per frame, as built above
	case st.chop == 0:
		pieces = [][]byte{all}
	default:
		pieces = nil
		for len(all) > 0 {
			k := min(st.chop, len(all))
			pieces = append(pieces, all[:k])
			all = all[k:]
		}
	}
	for _, p := range pieces {
		if len(p) == 0 {
			continue
		}
		if _, err := c.Write(p); err != nil {
			if lenient {
				return
			}
			t.Fatalf("write: %v", err)
		}
	}
}

func describe(f ws.Frame) string {
	s := fmt.Sprintf("%v fin=%v rsv=%d len=%d", f.Header.OpCode, f.Header.Fin, f.Header.Rsv, len(f.Payload))
	if f.Header.OpCode == ws.OpClose && len(f.Payload) >= 2 {
		return s + fmt.Sprintf(" code=%d reason=%q", int(f.Payload[0])<<8|int(f.Payload[1]), f.Payload[2:])
	}
	if len(f.Payload) <= 40 {
		return s + fmt.Sprintf(" %q", f.Payload)
	}
	return s
}

// wellFormed checks what every server frame must be: final, no RSV, unmasked.
func wellFormed(t *testing.T, f ws.Frame) {
	t.Helper()
	if !f.Header.Fin || f.Header.Rsv != 0 || f.Header.Masked {
		t.Fatalf("malformed server frame: %s masked=%v", describe(f), f.Header.Masked)
	}
}

func (c *abConn) expectFrame(t *testing.T, w abFrame, where string) {
	t.Helper()
	f, err := c.read(10 * time.Second)
	if err != nil {
		t.Fatalf("%s: want %v (%d bytes), got error %v", where, w.op, len(w.p), err)
	}
	wellFormed(t, f)
	if f.Header.OpCode != w.op {
		t.Fatalf("%s: want %v (%d bytes), got %s", where, w.op, len(w.p), describe(f))
	}
	if !bytes.Equal(f.Payload, w.p) {
		i := 0
		for i < len(f.Payload) && i < len(w.p) && f.Payload[i] == w.p[i] {
			i++
		}
		t.Fatalf("%s: %v payload differs at byte %d: got %d bytes, want %d", where, w.op, i, len(f.Payload), len(w.p))
	}
}

// expectClose reads the next frame, which must be the server's close with code.
func (c *abConn) expectClose(t *testing.T, code uint16) {
	t.Helper()
	f, err := c.read(10 * time.Second)
	c.checkClose(t, f, err, code)
}

// checkClose asserts f is a close frame with code (closeEmpty: no payload), answers it
// like a client, and asserts the server then closes TCP with nothing more sent.
func (c *abConn) checkClose(t *testing.T, f ws.Frame, err error, code uint16) {
	t.Helper()
	if err != nil {
		t.Fatalf("want close %d, got error %v", code, err)
	}
	wellFormed(t, f)
	if f.Header.OpCode != ws.OpClose {
		t.Fatalf("want close %d, got %s", code, describe(f))
	}
	switch {
	case code == closeEmpty:
		if len(f.Payload) != 0 {
			t.Fatalf("want an empty close, got %s", describe(f))
		}
	case len(f.Payload) < 2:
		t.Fatalf("want close %d, got a close with %d payload bytes", code, len(f.Payload))
	default:
		got := uint16(f.Payload[0])<<8 | uint16(f.Payload[1])
		if got != code {
			t.Fatalf("want close %d, got %s", code, describe(f))
		}
		if len(f.Payload) > 125 || !utf8.Valid(f.Payload[2:]) {
			t.Fatalf("server close frame is invalid: %s", describe(f))
		}
	}
	// Answer like a well-behaved client; the server may have closed already.
	c.Write(frame(true, 0, ws.OpClose, f.Payload[:min(2, len(f.Payload))], true))
	f, err = c.read(10 * time.Second)
	switch {
	case err == nil:
		t.Fatalf("frame after the close: %s", describe(f))
	case errors.Is(err, io.EOF), errors.Is(err, syscall.ECONNRESET):
	case errors.Is(err, io.ErrUnexpectedEOF):
		t.Fatalf("partial frame after the close")
	default:
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, errABTimeout) {
			t.Fatalf("server did not close the connection after its close frame: %v", err)
		}
		t.Fatalf("after the close: %v", err)
	}
}

// Sections 12 and 13: permessage-deflate (RFC 7692).

// abZCase is one case of sections 12 and 13: a connection made with offer, whose 101
// must answer it with answer ("": declined), then count messages of size bytes of
// payload kind, each compressed and sent in frames of frag bytes (0: one frame),
// each echoed back. window > 0: a compressed echo may not be longer than that (the
// server_max_window_bits the offer set). code != 0: instead, the one client frame in
// bad must be refused with that close code.
type abZCase struct {
	id, offer, answer string
	kind              int
	size, frag, count int
	window            int
	bad               []byte
	code              uint16
}

// abZKinds name Autobahn 12.1-12.5's payload files; abZPayload makes a stand-in of
// each kind: 12.1 JSON, 12.2 a black-and-white bitmap, 12.3 German prose (UTF-8),
// 12.4 HTML, 12.5 PDF-like binary (mostly incompressible).
var abZKinds = []string{"json", "bitmap", "faust", "html", "pdf"}

func abZPayload(kind, n, seed int) ([]byte, ws.OpCode) {
	rng := rand.New(rand.NewPCG(uint64(kind), uint64(n*1000+seed)))
	var b []byte
	op := ws.OpText
	switch kind {
	case 0:
		for i := 0; len(b) < n; i++ {
			b = fmt.Appendf(b, `{"id":%d,"name":"user-%04d","tags":["a","b%d"],"score":%.3f},`, i, rng.IntN(10000), rng.IntN(50), rng.Float64())
		}
	case 1:
		op = ws.OpBinary
		for len(b) < n {
			v := byte(0)
			if rng.IntN(3) == 0 {
				v = 0xff
			}
			b = append(b, bytes.Repeat([]byte{v}, 1+rng.IntN(40))...)
		}
	case 2:
		words := []string{"Habe", "nun,", "ach!", "Philosophie,", "Juristerei", "und", "Medizin,", "Und", "leider", "auch", "Theologie", "Durchaus", "studiert,", "mit", "heißem", "Bemühn.", "Da", "steh", "ich", "nun,", "ich", "armer", "Tor!", "Und", "bin", "so", "klug", "als", "wie", "zuvor;", "Größe", "Übermut", "süß"}
		for len(b) < n {
			b = append(append(b, words[rng.IntN(len(words))]...), ' ')
		}
	case 3:
		for i := 0; len(b) < n; i++ {
			b = fmt.Appendf(b, `<div class="row r%d"><a href="/item/%d">Item %d</a><span>%d</span></div>`+"\n", i%7, rng.IntN(1e5), i, rng.IntN(1e3))
		}
	case 4:
		op = ws.OpBinary
		b = fmt.Appendf(b, "%%PDF-1.4\n")
		for len(b) < n {
			if rng.IntN(4) == 0 {
				b = append(b, "endobj\nobj << /Type /Page >>\n"...)
			}
			for range 64 {
				b = append(b, byte(rng.Uint32()))
			}
		}
	}
	b = b[:n]
	if op == ws.OpText {
		for !utf8.Valid(b) { // cut inside a multi-byte character
			b = b[:len(b)-1]
		}
		b = append(b, bytes.Repeat([]byte{'.'}, n-len(b))...)
	}
	return b, op
}

// abDeflate compresses p as an RFC 7692 client with client_no_context_takeover.
func abDeflate(p []byte) []byte {
	var b bytes.Buffer
	w, _ := flate.NewWriter(&b, flate.DefaultCompression)
	w.Write(p)
	w.Flush()
	return b.Bytes()[:b.Len()-4]
}

// abZFrames sends z, the compressed message, as a message of type op in frag-byte
// frames (0: one), RSV1 on the first.
func abZFrames(op ws.OpCode, z []byte, frag int) []byte {
	if frag <= 0 {
		frag = len(z)
	}
	var out []byte
	for first := true; first || len(z) > 0; first = false {
		k := min(frag, len(z))
		o, rsv := ws.OpContinuation, byte(0)
		if first {
			o, rsv = op, 0x4
		}
		out = append(out, frame(k == len(z), rsv, o, z[:k], true)...)
		z = z[k:]
	}
	return out
}

// abZSizes are Autobahn 12.x.1-18 (and 13.x.1-18): size and fragment size.
var abZSizes = [][2]int{{16, 0}, {64, 0}, {256, 0}, {1024, 0}, {4096, 0}, {8192, 0}, {16384, 0}, {32768, 0}, {65536, 0}, {131072, 0},
	{8192, 256}, {16384, 256}, {32768, 256}, {65536, 256}, {131072, 256}, {131072, 1024}, {131072, 4096}, {131072, 32768}}

func abZCount(size int) int {
	if size >= 32768 {
		return 3
	}
	return 10
}

func abZCases() []abZCase {
	answer := wsproto.DeflateAnswer
	var cs []abZCase
	// Section 12: payload kinds, the offer every browser makes.
	for k := range abZKinds {
		for i, sz := range abZSizes {
			cs = append(cs, abZCase{id: fmt.Sprintf("12.%d.%d", k+1, i+1), offer: "permessage-deflate; client_max_window_bits",
				answer: answer(wsproto.DeflateNoLimit), kind: k, size: sz[0], frag: sz[1], count: abZCount(sz[0])})
		}
	}
	// Section 13: offers (Autobahn's parameter pairs: server_no_context_takeover,
	// server_max_window_bits), JSON payloads.
	offers := []struct {
		offer  string
		mode   uint8
		window int
	}{
		{"permessage-deflate", wsproto.DeflateNoLimit, 0},
		{"permessage-deflate; server_no_context_takeover", wsproto.DeflateNoLimit, 0},
		{"permessage-deflate; server_max_window_bits=8", 8, 256},
		{"permessage-deflate; server_max_window_bits=15", 15, 0},
		{"permessage-deflate; server_no_context_takeover; server_max_window_bits=8; client_max_window_bits", 8, 256},
		{"permessage-deflate; server_no_context_takeover; server_max_window_bits=15; client_max_window_bits=15", 15, 0},
		{"permessage-deflate; server_no_context_takeover; server_max_window_bits=9, permessage-deflate; server_no_context_takeover, permessage-deflate", 9, 512},
	}
	for o, of := range offers {
		for i, sz := range abZSizes {
			cs = append(cs, abZCase{id: fmt.Sprintf("13.%d.%d", o+1, i+1), offer: of.offer, answer: answer(of.mode),
				size: sz[0], frag: sz[1], count: abZCount(sz[0]), window: of.window})
		}
	}
	// Additions: offers to decline (the connection then has no deflate, so RSV1 is a
	// protocol error), and one declined offer before an acceptable one.
	rsv1 := abZFrames(ws.OpText, abDeflate([]byte("hello hello hello")), 0)
	for i, offer := range []string{
		"permessage-deflate; server_max_window_bits=7",
		"permessage-deflate; server_max_window_bits=16",
		"permessage-deflate; client_max_window_bits=7",
		"permessage-deflate; server_max_window_bits",
		"permessage-deflate; client_no_context_takeover=yes",
		"permessage-deflate; server_no_context_takeover; server_no_context_takeover",
		"permessage-deflate; no_such_parameter",
		"x-webkit-deflate-frame",
	} {
		cs = append(cs, abZCase{id: fmt.Sprintf("13.8.%dx", i+1), offer: offer, bad: rsv1, code: wsproto.CloseProtocolError})
	}
	cs = append(cs, abZCase{id: "13.9.1x", offer: "permessage-deflate; server_max_window_bits=7, permessage-deflate; client_max_window_bits=10",
		answer: answer(wsproto.DeflateNoLimit), size: 4096, count: 3})
	// Additions: compressed messages the server must refuse.
	ok := answer(wsproto.DeflateNoLimit)
	z := abDeflate(bytes.Repeat([]byte("abc"), 1000))
	var cont []byte
	cont = append(cont, frame(false, 0x4, ws.OpText, z[:10], true)...)
	cont = append(cont, frame(true, 0x4, ws.OpContinuation, z[10:], true)...)
	cs = append(cs,
		abZCase{id: "13.10.1x", offer: "permessage-deflate", answer: ok, bad: cont, code: wsproto.CloseProtocolError},
		abZCase{id: "13.10.2x", offer: "permessage-deflate", answer: ok, bad: frame(true, 0x4, ws.OpPing, nil, true), code: wsproto.CloseProtocolError},
		abZCase{id: "13.10.3x", offer: "permessage-deflate", answer: ok, bad: frame(true, 0x4, ws.OpText, []byte{0xff, 0xff, 0xff, 0xff}, true), code: wsproto.CloseInvalidPayload},
		abZCase{id: "13.10.4x", offer: "permessage-deflate", answer: ok, bad: abZFrames(ws.OpText, abDeflate([]byte("caf\xc3")), 0), code: wsproto.CloseInvalidPayload},
		// 2 MiB of zeros in 2 KiB: over MaxMessage (1 MiB) once inflated.
		abZCase{id: "13.10.5x", offer: "permessage-deflate", answer: ok, bad: abZFrames(ws.OpBinary, abDeflate(make([]byte, 2<<20)), 0), code: wsproto.CloseTooBig},
		abZCase{id: "13.10.6x", offer: "permessage-deflate", answer: ok, bad: frame(true, 0x6, ws.OpText, z, true), code: wsproto.CloseProtocolError},
	)
	return cs
}

// TestAutobahnDeflate runs sections 12 and 13 against an echo server with deflate
// on and DeflateMinBytes 1, so that it compresses every echo compression shrinks, as
// Autobahn's reference servers do.
func TestAutobahnDeflate(t *testing.T) {
	s := startServer(t, func(c *Config) { c.Echo = true; c.Deflate = true; c.DeflateMinBytes = 1 })
	cases := abZCases()
	t.Logf("%d cases", len(cases))
	compressed := 0
	for _, tc := range cases {
		t.Run(tc.id, func(t *testing.T) { compressed += runAutobahnDeflateCase(t, s, tc) })
	}
	if compressed == 0 {
		t.Fatal("no echo came back compressed")
	}
	t.Logf("%d echoes came back compressed", compressed)
}

func runAutobahnDeflateCase(t *testing.T, s *Server, tc abZCase) (compressed int) {
	rc := rawConnect(t, s)
	resp := rc.request(t, upgradeRequest(s.Addrs()[0], "/ws?token="+testutil.Token(t, testSecret, "abz-"+tc.id), "Sec-WebSocket-Extensions: "+tc.offer+"\r\n"))
	if resp.StatusCode != 101 {
		t.Fatalf("upgrade: %s", resp.Status)
	}
	if got := resp.Header.Get("Sec-WebSocket-Extensions"); got != tc.answer {
		t.Fatalf("offer %q answered with %q, want %q", tc.offer, got, tc.answer)
	}
	c := abWrap(t, rc)
	if tc.code != 0 {
		c.write(t, abStep{raw: tc.bad}, true)
		c.expectClose(t, tc.code)
		return 0
	}
	for i := range tc.count {
		p, op := abZPayload(tc.kind, tc.size, i)
		c.write(t, abStep{raw: abZFrames(op, abDeflate(p), tc.frag)}, false)
		f, err := c.read(10 * time.Second)
		if err != nil {
			t.Fatalf("message %d: no echo: %v", i+1, err)
		}
		if !f.Header.Fin || f.Header.Masked || f.Header.Rsv&^0x4 != 0 || f.Header.OpCode != op {
			t.Fatalf("message %d: malformed echo %s", i+1, describe(f))
		}
		got := inflateMessage(t, f)
		if !bytes.Equal(got, p) {
			t.Fatalf("message %d: echo of %d bytes differs from the %d sent", i+1, len(got), len(p))
		}
		if f.Header.Rsv1() {
			compressed++
			if tc.window > 0 && len(p) > tc.window {
				t.Fatalf("message %d: %d bytes sent compressed to a client whose window is %d", i+1, len(p), tc.window)
			}
		}
	}
	c.write(t, abStep{frames: [][]byte{abClose(1000, "")}}, false)
	c.expectClose(t, 1000)
	return compressed
}
