package wsproto

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"github.com/klauspost/compress/flate"
)

// permessage-deflate (RFC 7692), the way a gateway that broadcasts wants it.
//
// The server accepts an offer only with server_no_context_takeover and
// client_no_context_takeover both in force (it adds them to its answer whatever the
// offer says, which RFC 7692 §7.1.1 allows). The first makes every compressed message
// independent of the ones before it, so one compressed frame serves every recipient
// of a broadcast; the second means the client does the same, so the server inflates
// each message on its own with a pooled decompressor and keeps no LZ77 window per
// connection: what a connection holds for deflate is the one byte Parser.Deflate.
//
// server_max_window_bits=N (8..15) is accepted and echoed: the server then sends that
// connection compressed only the messages of at most 2^N bytes, whose back-references
// cannot reach further than the window. client_max_window_bits (with or without a
// value) is accepted and not answered: the inflater takes any window up to 15 bits.

// DeflateExtension is the extension token.
const DeflateExtension = "permessage-deflate"

// deflateTail is what RFC 7692 §7.2.2 has the receiver append before inflating
// (the sync flush marker the sender strips), then an empty final stored block, so the
// decompressor ends with io.EOF rather than waiting for more.
var deflateTail = []byte{0x00, 0x00, 0xff, 0xff, 0x01, 0x00, 0x00, 0xff, 0xff}

// DeflateNoLimit is the Parser.Deflate value of a connection whose client set no
// server_max_window_bits: the server uses its full 15-bit window.
const DeflateNoLimit = 16

// deflateAnswers are the response values, indexed by Parser.Deflate (8..15: the
// server_max_window_bits echoed; DeflateNoLimit: none), built once so a handshake
// allocates nothing for them.
var deflateAnswers = func() (a [DeflateNoLimit + 1]string) {
	base := DeflateExtension + "; server_no_context_takeover; client_no_context_takeover"
	a[DeflateNoLimit] = base
	for n := 8; n <= 15; n++ {
		a[n] = base + "; server_max_window_bits=" + strconv.Itoa(n)
	}
	return a
}()

// DeflateAnswer is the Sec-WebSocket-Extensions value that accepts the offer
// NegotiateDeflate chose, from its mode; "" for mode 0 (not negotiated).
func DeflateAnswer(mode uint8) string {
	if int(mode) < len(deflateAnswers) {
		return deflateAnswers[mode]
	}
	return ""
}

// DeflateWindow is the largest message, in bytes, that may be sent compressed to a
// connection of the given mode: one whose back-references cannot reach past the
// window the client allowed (2^bits; unlimited with DeflateNoLimit). 0: none.
func DeflateWindow(mode uint8) int {
	switch {
	case mode == DeflateNoLimit:
		return int(^uint(0) >> 1)
	case mode >= 8 && mode <= 15:
		return 1 << mode
	}
	return 0
}

// NegotiateDeflate picks the first permessage-deflate offer of a
// Sec-WebSocket-Extensions value that the server can meet (RFC 7692 §5, §7.1). It
// returns the connection's mode for Parser.Deflate: the offer's
// server_max_window_bits (8..15), echoed in the answer, or DeflateNoLimit; ok false
// when there is no acceptable offer: then the connection goes uncompressed, which is
// how RFC 7692 declines. Offers with unknown, repeated or malformed parameters are
// declined one by one, as §7.1 asks; other extensions are ignored. DeflateAnswer
// gives the response header's value.
func NegotiateDeflate(header string) (mode uint8, ok bool) {
	for header != "" {
		var offer string
		offer, header = cutOutsideQuotes(header, ',')
		name, params := cutOutsideQuotes(offer, ';')
		if !strings.EqualFold(strings.Trim(name, " \t"), DeflateExtension) {
			continue
		}
		if bits, ok := deflateOffer(params); ok {
			if bits == 0 {
				return DeflateNoLimit, true
			}
			return bits, true
		}
	}
	return 0, false
}

// deflateOffer checks one offer's parameters. bits is its server_max_window_bits, 0
// when absent; ok false declines the offer.
func deflateOffer(params string) (bits uint8, ok bool) {
	var seen [4]bool
	for params != "" {
		var p string
		p, params = cutOutsideQuotes(params, ';')
		name, value, hasValue := strings.Cut(strings.Trim(p, " \t"), "=")
		name = strings.Trim(name, " \t")
		value = strings.Trim(value, " \t")
		if len(value) >= 2 && value[0] == '"' && value[len(value)-1] == '"' {
			value = value[1 : len(value)-1] // RFC 7692 §7.1: the quoted form is the same value
		}
		var i int
		switch strings.ToLower(name) {
		case "server_no_context_takeover":
			i = 0
		case "client_no_context_takeover":
			i = 1
		case "server_max_window_bits":
			i = 2
		case "client_max_window_bits":
			i = 3
		default:
			return 0, false // an unknown parameter: this offer cannot be accepted
		}
		if seen[i] {
			return 0, false // §7: a parameter given twice declines the offer
		}
		seen[i] = true
		switch i {
		case 0, 1:
			if hasValue {
				return 0, false
			}
		case 2:
			n, valid := windowBitsValue(value)
			if !hasValue || !valid {
				return 0, false
			}
			bits = n
		case 3:
			if hasValue {
				if _, valid := windowBitsValue(value); !valid {
					return 0, false
				}
			}
		}
	}
	return bits, true
}

// windowBitsValue parses an RFC 7692 window size: 8..15, no sign, no leading zero.
func windowBitsValue(v string) (uint8, bool) {
	if v == "" || v[0] == '0' || len(v) > 2 {
		return 0, false
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 8 || n > 15 || v[0] == '+' {
		return 0, false
	}
	return uint8(n), true
}

// cutOutsideQuotes cuts s at the first sep that is not inside a quoted string.
func cutOutsideQuotes(s string, sep byte) (before, after string) {
	quoted := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\' && quoted:
			i++
		case c == '"':
			quoted = !quoted
		case c == sep && !quoted:
			return s[:i], s[i+1:]
		}
	}
	return s, ""
}

// DeflateLevel is the compression level of outgoing messages (klauspost/compress).
// A broadcast is compressed once for all its recipients, but a push to one user is
// compressed for a few: level 1 takes 9-12 µs for 2 KB of JSON where levels 3 and 6
// take 13-16 µs, for 3-6% more bytes (528 against 512 and 496; BenchmarkDeflateFrame2K).
const DeflateLevel = 1

// deflater is a compressor with the buffer it writes into. A level-1 flate.Writer
// is about 480 KiB, so there is one per concurrent compression (loops compress one
// message at a time), never one per connection.
type deflater struct {
	w   *flate.Writer
	out bytes.Buffer
}

// freeDeflaters keeps the compressors between messages. A bounded channel rather
// than a sync.Pool, which the GC empties every other cycle: a node pushing all the
// time would otherwise allocate and zero 480 KiB per loop after each GC. It keeps
// at most GOMAXPROCS of them (capped at 64): the loops' worth.
var freeDeflaters = make(chan *deflater, min(runtime.GOMAXPROCS(0), 64))

func getDeflater() *deflater {
	select {
	case d := <-freeDeflaters:
		return d
	default:
		d := new(deflater)
		d.w, _ = flate.NewWriter(&d.out, DeflateLevel) // a valid level: never fails
		return d
	}
}

func putDeflater(d *deflater) {
	select {
	case freeDeflaters <- d:
	default: // full: left to the GC
	}
}

// DeflateFrame returns the compressed variant of frame, one final unmasked text or
// binary server frame as AppendFrame builds it: the same message with its payload
// compressed (RFC 7692 §7.2.1, no context takeover) and RSV1 set. It returns nil when
// the compressed frame would not be smaller, or frame is not such a frame.
func DeflateFrame(frame []byte) []byte {
	if len(frame) < 2 || frame[0]&0x70 != 0 || frame[0]&0x80 == 0 {
		return nil
	}
	op := frame[0] & 0x0F
	if op != byte(KindText) && op != byte(KindBinary) {
		return nil
	}
	hdr, n := 2, int(frame[1]&0x7F)
	switch n {
	case 126:
		hdr, n = 4, int(binary.BigEndian.Uint16(frame[2:]))
	case 127:
		hdr, n = 10, int(binary.BigEndian.Uint64(frame[2:]))
	}
	if hdr+n != len(frame) {
		return nil
	}
	d := getDeflater()
	defer putDeflater(d)
	d.out.Reset()
	d.w.Reset(&d.out)
	if _, err := d.w.Write(frame[hdr:]); err != nil {
		return nil
	}
	if err := d.w.Flush(); err != nil {
		return nil
	}
	z := d.out.Bytes()
	// Flush ends with the empty stored block 00 00 ff ff, which §7.2.1 has us strip.
	if len(z) < 4 || !bytes.Equal(z[len(z)-4:], deflateTail[:4]) {
		return nil
	}
	z = z[:len(z)-4]
	if len(z) == 0 {
		// An empty message: "0x00" is the one-byte compressed form (§7.2.3.6).
		z = []byte{0x00}
	}
	size := HeaderSize(len(z)) + len(z)
	if size >= len(frame) {
		return nil
	}
	out := AppendFrame(make([]byte, 0, size), Kind(op), z)
	out[0] |= rsv1
	if d.out.Cap() > maxKeptOut {
		d.out = bytes.Buffer{} // a large message's buffer is not kept in the pool
	}
	return out
}

// rsv1 is the "per-message compressed" bit of a first frame (RFC 7692 §6).
const rsv1 = 0x40

// inflater is a pooled decompressor and its input.
type inflater struct {
	r   io.ReadCloser
	src tailReader
}

var inflaters = sync.Pool{New: func() any {
	f := new(inflater)
	f.r = flate.NewReader(&f.src)
	return f
}}

// tailReader reads p then deflateTail. It is an io.ByteReader so that the
// decompressor reads it directly instead of wrapping it in a bufio.Reader.
type tailReader struct {
	p    []byte
	tail int
}

func (t *tailReader) Read(b []byte) (int, error) {
	if len(t.p) > 0 {
		n := copy(b, t.p)
		t.p = t.p[n:]
		return n, nil
	}
	if t.tail == len(deflateTail) {
		return 0, io.EOF
	}
	n := copy(b, deflateTail[t.tail:])
	t.tail += n
	return n, nil
}

func (t *tailReader) ReadByte() (byte, error) {
	if len(t.p) > 0 {
		c := t.p[0]
		t.p = t.p[1:]
		return c, nil
	}
	if t.tail == len(deflateTail) {
		return 0, io.EOF
	}
	c := deflateTail[t.tail]
	t.tail++
	return c, nil
}

var errInflateTooBig = errors.New("inflated message over the limit")

// inflate appends the decompression of in (a message's compressed payload) to
// dst[:0] and returns it. It never holds more than limit+1 bytes of output: a
// message that inflates beyond limit fails with errInflateTooBig as soon as the
// byte past the limit appears, whatever the compressed size.
func inflate(dst, in []byte, limit int) ([]byte, error) {
	f := inflaters.Get().(*inflater)
	defer inflaters.Put(f)
	f.src = tailReader{p: in}
	if err := f.r.(flate.Resetter).Reset(&f.src, nil); err != nil {
		return nil, err
	}
	out := dst[:0]
	if cap(out) == 0 {
		out = make([]byte, 0, min(limit+1, max(4*len(in), 512)))
	}
	for {
		if len(out) == cap(out) {
			if len(out) > limit {
				return nil, errInflateTooBig
			}
			grown := make([]byte, len(out), min(limit+1, 2*cap(out)))
			copy(grown, out)
			out = grown
		}
		n, err := f.r.Read(out[len(out):cap(out)])
		out = out[:len(out)+n]
		if len(out) > limit {
			return nil, errInflateTooBig
		}
		switch {
		case err == io.EOF:
			return out, nil
		case err != nil:
			return nil, err
		}
	}
}
