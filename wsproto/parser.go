package wsproto

import (
	"encoding/binary"
	"sync"

	"github.com/gobwas/ws"
)

// DefaultMaxMessage is the message size limit of a Parser whose MaxMessage is 0.
const DefaultMaxMessage = 1 << 20

// Event is one complete data message or one control frame.
type Event struct {
	Kind Kind
	// Payload is the unmasked data/ping/pong payload (for KindClose: the whole
	// close payload, code included, handy to echo). It aliases the buffer passed
	// to Next or the parser's reassembly buffer: valid only until the next Next or
	// Reset call.
	Payload []byte
	// CloseCode is, for KindClose, the code from the peer's close frame, or
	// CloseNoStatus (1005) when the frame had no payload.
	CloseCode uint16
	// CloseReason is, for KindClose, the reason bytes (validated UTF-8). Same
	// lifetime as Payload.
	CloseReason []byte
}

// Parser decodes client-to-server frames incrementally. The zero value is ready.
//
// It is not safe for concurrent use: one per connection, owned by that connection's
// loop. It holds no buffer while no fragmented message is in progress: a pooled
// buffer is borrowed only during reassembly and returned on the Next call after the
// message completes, on error, and on Reset. The struct is 32 bytes.
type Parser struct {
	// MaxMessage is the largest frame or reassembled message, in bytes, accepted
	// before failing with CloseTooBig. Zero means DefaultMaxMessage (1 MiB).
	MaxMessage int

	buf  *[]byte // reassembly buffer from msgPool; nil unless fragmenting or done
	op   Kind    // KindText/KindBinary while a fragmented message is in progress
	done bool    // buf holds a completed message handed out by the last Next call
	utf8 UTF8    // incremental validator for a fragmented text message

	// The part of a text frame that has arrived is checked before the rest does, so
	// an invalid sequence fails at once (Autobahn 6.4.x "fail fast") rather than when
	// the frame completes. The bytes are unmasked into a copy, never in place: gnet
	// may offer a partial frame again from a fresh copy of its buffer. partialDone
	// bytes of the partial payload are checked, leaving partialUTF8; each byte is
	// checked once however the frame trickles in.
	partialDone uint32
	partialUTF8 UTF8
}

// msgPool holds reassembly buffers. Buffers that grew past maxPooledCap are left to
// the GC so one large message does not pin memory in the pool forever.
var msgPool = sync.Pool{New: func() any {
	b := make([]byte, 0, 4096)
	return &b
}}

const maxPooledCap = 64 << 10

func (p *Parser) release() {
	if p.buf == nil {
		return
	}
	if cap(*p.buf) <= maxPooledCap {
		*p.buf = (*p.buf)[:0]
		msgPool.Put(p.buf)
	}
	p.buf = nil
	p.done = false
}

// Reset drops any partial message and returns the pooled buffer. Call on connection
// close; the parser is then ready for a new stream.
func (p *Parser) Reset() {
	p.release()
	p.op = KindNone
	p.utf8.Reset()
	p.partialDone = 0
}

// InProgress reports whether a fragmented message is being reassembled.
func (p *Parser) InProgress() bool { return p.op != KindNone }

func (p *Parser) fail(code uint16, reason string) (int, Event, error) {
	p.Reset()
	return 0, Event{}, &CloseError{Code: code, Reason: reason}
}

// Close reasons sent to the peer (each fits a close frame).
const (
	errReservedBits    = "reserved bits set"
	errReservedOp      = "reserved opcode"
	errNotMasked       = "client frame not masked"
	errControlFragment = "fragmented control frame"
	errControlTooLong  = "control frame payload over 125 bytes"
	errStrayContinue   = "continuation frame without a message in progress"
	errInterleaved     = "new data frame while a fragmented message is in progress"
	errLength64        = "64-bit payload length has its most significant bit set"
	errTooBig          = "message too big"
	errBadUTF8         = "invalid UTF-8 in text message"
	errCloseLen1       = "close frame payload of 1 byte"
	errCloseCode       = "invalid close code"
	errCloseReason     = "invalid UTF-8 in close reason"
)

// Next decodes at most one frame from the start of buf.
//
//   - n == 0, err == nil: buf holds no complete frame yet; call again with more
//     bytes (same start). buf was not modified.
//   - n > 0: n bytes were consumed (the caller discards them). ev.Kind == KindNone
//     means a non-final fragment was absorbed; otherwise ev is a complete message or
//     control frame.
//   - err is a *CloseError: stop reading, send a close frame with its code, close.
//
// The payload is unmasked in place in buf, and only once the whole frame is present,
// so a partial frame offered again later is never unmasked twice. Limits are checked
// as soon as the header is present: an oversized frame is refused before its payload
// arrives. Non-minimal length encodings (e.g. 5 bytes in the 64-bit form) are
// accepted, as gorilla/websocket and Autobahn do. The loop must keep calling Next until it returns n == 0; that call
// returns a completed reassembly buffer to the pool.
func (p *Parser) Next(buf []byte) (n int, ev Event, err error) {
	if p.done {
		p.release() // the caller is finished with the previous reassembled message
	}
	if len(buf) < 2 {
		return 0, Event{}, nil
	}
	b0, b1 := buf[0], buf[1]
	if b0&0x70 != 0 {
		return p.fail(CloseProtocolError, errReservedBits)
	}
	fin := b0&0x80 != 0
	op := ws.OpCode(b0 & 0x0F)
	if op.IsReserved() {
		return p.fail(CloseProtocolError, errReservedOp)
	}
	if b1&0x80 == 0 {
		return p.fail(CloseProtocolError, errNotMasked)
	}
	control := op.IsControl()
	length := uint64(b1 & 0x7F)
	switch {
	case control && !fin:
		return p.fail(CloseProtocolError, errControlFragment)
	case control && length > 125:
		return p.fail(CloseProtocolError, errControlTooLong)
	case op == ws.OpContinuation && p.op == KindNone:
		return p.fail(CloseProtocolError, errStrayContinue)
	case (op == ws.OpText || op == ws.OpBinary) && p.op != KindNone:
		return p.fail(CloseProtocolError, errInterleaved)
	}
	hdr := 2
	switch length {
	case 126:
		if len(buf) < 4 {
			return 0, Event{}, nil
		}
		length = uint64(binary.BigEndian.Uint16(buf[2:]))
		hdr = 4
	case 127:
		if len(buf) < 10 {
			return 0, Event{}, nil
		}
		length = binary.BigEndian.Uint64(buf[2:])
		if length>>63 != 0 {
			return p.fail(CloseProtocolError, errLength64)
		}
		hdr = 10
	}
	if !control {
		limit := uint64(p.MaxMessage)
		if p.MaxMessage <= 0 {
			limit = DefaultMaxMessage
		}
		total := length
		if p.op != KindNone {
			total += uint64(len(*p.buf))
		}
		if total > limit {
			return p.fail(CloseTooBig, errTooBig)
		}
	}
	// length is now <= MaxMessage (an int) or <= 125, so the sum cannot overflow.
	end := hdr + 4 + int(length)
	if len(buf) < end {
		if (op == ws.OpText || op == ws.OpContinuation && p.op == KindText) && len(buf) > hdr+4 {
			if !p.checkPartial(op, buf[hdr+4:], [4]byte(buf[hdr:hdr+4])) {
				return p.fail(CloseInvalidPayload, errBadUTF8)
			}
		}
		return 0, Event{}, nil
	}
	p.partialDone = 0
	payload := buf[hdr+4 : end]
	unmask(payload, [4]byte(buf[hdr:hdr+4]))

	switch op {
	case ws.OpText:
		if fin {
			if !ValidUTF8(payload) {
				return p.fail(CloseInvalidPayload, errBadUTF8)
			}
			return end, Event{Kind: KindText, Payload: payload}, nil
		}
		p.utf8.Reset()
		if !p.utf8.Feed(payload) {
			return p.fail(CloseInvalidPayload, errBadUTF8)
		}
		p.begin(KindText, payload)
		return end, Event{}, nil
	case ws.OpBinary:
		if fin {
			return end, Event{Kind: KindBinary, Payload: payload}, nil
		}
		p.begin(KindBinary, payload)
		return end, Event{}, nil
	case ws.OpContinuation:
		if p.op == KindText && !p.utf8.Feed(payload) {
			return p.fail(CloseInvalidPayload, errBadUTF8)
		}
		*p.buf = append(*p.buf, payload...)
		if !fin {
			return end, Event{}, nil
		}
		if p.op == KindText && !p.utf8.Complete() {
			return p.fail(CloseInvalidPayload, errBadUTF8)
		}
		ev = Event{Kind: p.op, Payload: *p.buf}
		p.op = KindNone
		p.done = true
		return end, ev, nil
	case ws.OpPing:
		return end, Event{Kind: KindPing, Payload: payload}, nil
	case ws.OpPong:
		return end, Event{Kind: KindPong, Payload: payload}, nil
	}
	// ws.OpClose: the only opcode left after the IsReserved check.
	switch len(payload) {
	case 0:
		return end, Event{Kind: KindClose, CloseCode: CloseNoStatus}, nil
	case 1:
		return p.fail(CloseProtocolError, errCloseLen1)
	}
	code := binary.BigEndian.Uint16(payload)
	if !ValidCloseCode(code) {
		return p.fail(CloseProtocolError, errCloseCode)
	}
	if !ValidUTF8(payload[2:]) {
		return p.fail(CloseInvalidPayload, errCloseReason)
	}
	return end, Event{Kind: KindClose, Payload: payload, CloseCode: code, CloseReason: payload[2:]}, nil
}

// checkPartial validates the newly arrived part of an incomplete text frame's
// payload. avail is the masked payload that has arrived so far.
func (p *Parser) checkPartial(op ws.OpCode, avail []byte, key [4]byte) bool {
	if p.partialDone == 0 {
		if op == ws.OpText {
			p.partialUTF8.Reset()
		} else {
			p.partialUTF8 = p.utf8 // continue from the message so far
		}
	}
	var tmp [256]byte
	for off := int(p.partialDone); off < len(avail); {
		n := copy(tmp[:], avail[off:])
		ws.Cipher(tmp[:n], key, off)
		if !p.partialUTF8.Feed(tmp[:n]) {
			return false
		}
		off += n
	}
	p.partialDone = uint32(len(avail))
	return true
}

// begin starts reassembly of a fragmented message with its first fragment.
func (p *Parser) begin(kind Kind, first []byte) {
	p.buf = msgPool.Get().(*[]byte)
	*p.buf = append((*p.buf)[:0], first...)
	p.op = kind
}

// unmask XORs p with the masking key in place (RFC 6455 §5.3). ws.Cipher does it 16
// or 32 bytes at a time with SSE2/AVX2 on amd64; parser_test.go checks it against
// the byte-wise definition.
func unmask(p []byte, key [4]byte) { ws.Cipher(p, key, 0) }
