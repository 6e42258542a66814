package wsproto

import (
	"encoding/binary"

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
// loop. A complete unfragmented frame is decoded in place, in the caller's buffer.
// Anything else, a fragmented message or a frame whose payload has not all arrived,
// is moved into the parser's own reassembly chunks as it arrives (unmasked and
// UTF-8-checked on the way), and Next reports those bytes consumed so the caller can
// discard them: the caller never has to keep, or offer again, more than a frame
// header or a control frame (at most 131 bytes). The chunks are held only while a
// message is in progress; they go back on the Next call after the message completes,
// on error, and on Reset. The struct is 32 bytes.
//
// A compressed message (Deflate) is inflated when it is complete, into a buffer the
// parser holds, like a reassembled message, until the next Next call: at most
// MaxMessage bytes, not charged to the Budget, since a loop inflates one message at a
// time (a node holds at most one inflated message per loop, and the pool keeps
// buffers of up to 64 KiB).
type Parser struct {
	// MaxMessage is the largest frame or reassembled message, in bytes, accepted
	// before failing with CloseTooBig. Zero means DefaultMaxMessage (1 MiB).
	MaxMessage int
	// Budget, if set, is charged for the chunks this parser holds; when it is
	// exhausted, Next fails with CloseTryAgainLater. Nil: no limit beyond MaxMessage.
	Budget *Budget

	asm  *assembly // the message in progress, or the one just handed out; nil otherwise
	op   Kind      // KindText/KindBinary while a message is in progress in asm
	done bool      // asm holds a completed message handed out by the last Next call
	z    bool      // the message in progress is compressed (RSV1 on its first frame)
	utf8 UTF8      // incremental validator for the text message in asm

	// Deflate (last, in the padding of the small fields) is the connection's
	// permessage-deflate mode from NegotiateDeflate; 0: not negotiated, and RSV1 is
	// a protocol error. With it, a message whose first frame has RSV1 is inflated,
	// within MaxMessage, before it is handed out. The connection's sender reads it
	// too (DeflateWindow).
	Deflate uint8
}

func (p *Parser) release() {
	if p.asm != nil {
		p.asm.release(p.Budget)
		p.asm = nil
	}
	p.done = false
}

// Reset drops any partial message and returns its chunks. Call on connection close;
// the parser is then ready for a new stream.
func (p *Parser) Reset() {
	p.release()
	p.op = KindNone
	p.z = false
	p.utf8.Reset()
}

// InProgress reports whether a message is being reassembled: fragmented, or a
// frame whose payload is still arriving.
func (p *Parser) InProgress() bool { return p.op != KindNone }

// Held is the number of bytes this parser holds in reassembly chunks.
func (p *Parser) Held() int {
	if p.asm == nil {
		return 0
	}
	return len(p.asm.chunks) * ChunkSize
}

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
	errBudget          = "server busy: too many unfinished messages; retry later"
	errRSV1Control     = "compressed bit set on a control or continuation frame"
	errInflate         = "invalid compressed message"
)

// Next decodes at most one frame, or the next piece of one, from the start of buf.
//
//   - n == 0, err == nil: buf holds nothing usable yet (less than a frame header, or
//     part of a control frame); call again with more bytes (same start). buf was not
//     modified.
//   - n > 0: n bytes were consumed (the caller discards them). ev.Kind == KindNone
//     means they went into the message in progress (a non-final fragment, or part of
//     a frame's payload); otherwise ev is a complete message or control frame.
//   - err is a *CloseError: stop reading, send a close frame with its code, close.
//
// A complete unfragmented frame is unmasked in place in buf and its Payload aliases
// buf. Bytes of any other data frame are copied into the parser's chunks and not
// modified in buf. Limits are checked as soon as the header is present: an oversized
// frame is refused before its payload arrives. Non-minimal length encodings (e.g. 5
// bytes in the 64-bit form) are accepted, as gorilla/websocket and Autobahn do. The
// loop must keep calling Next until it returns n == 0; that call returns the chunks
// of a completed message.
func (p *Parser) Next(buf []byte) (n int, ev Event, err error) {
	if p.done {
		p.release() // the caller is finished with the previous reassembled message
	}
	if p.asm != nil && p.asm.left > 0 {
		return p.payload(buf, 0) // the rest of a frame whose header was consumed
	}
	if len(buf) < 2 {
		return 0, Event{}, nil
	}
	b0, b1 := buf[0], buf[1]
	if b0&0x70 != 0 && (b0&0x30 != 0 || p.Deflate == 0) {
		return p.fail(CloseProtocolError, errReservedBits)
	}
	fin := b0&0x80 != 0
	op := ws.OpCode(b0 & 0x0F)
	if op.IsReserved() {
		return p.fail(CloseProtocolError, errReservedOp)
	}
	compressed := b0&rsv1 != 0
	if compressed && op != ws.OpText && op != ws.OpBinary {
		// RFC 7692 §6.1: only a message's first frame carries the bit.
		return p.fail(CloseProtocolError, errRSV1Control)
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
		if p.asm != nil {
			total += uint64(p.asm.n)
		}
		if total > limit {
			return p.fail(CloseTooBig, errTooBig)
		}
	}
	// length is now <= MaxMessage (an int) or <= 125, so the sum cannot overflow.
	end := hdr + 4 + int(length)
	if !control && (len(buf) < end || !fin || p.op != KindNone) {
		// Part of a message that does not fit in buf in one piece: take the header
		// and whatever payload has arrived into the chunks.
		if len(buf) < hdr+4 {
			return 0, Event{}, nil
		}
		if op != ws.OpContinuation {
			p.op = Kind(op)
			p.z = compressed
			p.utf8.Reset()
			p.asm = asmPool.Get().(*assembly)
		}
		a := p.asm
		a.left, a.pos, a.key, a.fin = int(length), 0, [4]byte(buf[hdr:hdr+4]), fin
		return p.payload(buf[hdr+4:], hdr+4)
	}
	if len(buf) < end {
		return 0, Event{}, nil // a control frame: at most 131 bytes
	}
	payload := buf[hdr+4 : end]
	unmask(payload, [4]byte(buf[hdr:hdr+4]))
	if compressed {
		p.asm = asmPool.Get().(*assembly)
		return p.inflated(end, Kind(op), payload)
	}

	switch op {
	case ws.OpText:
		if !ValidUTF8(payload) {
			return p.fail(CloseInvalidPayload, errBadUTF8)
		}
		return end, Event{Kind: KindText, Payload: payload}, nil
	case ws.OpBinary:
		return end, Event{Kind: KindBinary, Payload: payload}, nil
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

// payload moves the next bytes of the current frame's payload from buf into the
// chunks; used bytes of buf (the header) were consumed before it. When the frame is
// complete and ends the message, the message is the event.
func (p *Parser) payload(buf []byte, used int) (int, Event, error) {
	a := p.asm
	k := min(len(buf), a.left)
	ok, valid := a.write(buf[:k], p.Budget, p.op == KindText && !p.z, &p.utf8)
	switch {
	case !ok:
		return p.fail(CloseTryAgainLater, errBudget)
	case !valid:
		return p.fail(CloseInvalidPayload, errBadUTF8)
	}
	a.left -= k
	used += k
	if a.left > 0 || !a.fin {
		return used, Event{}, nil // used may be 0: nothing of the payload has arrived
	}
	if p.z {
		kind := p.op
		p.op, p.z = KindNone, false
		return p.inflated(used, kind, a.bytes(p.Budget))
	}
	if p.op == KindText && !p.utf8.Complete() {
		return p.fail(CloseInvalidPayload, errBadUTF8)
	}
	ev := Event{Kind: p.op, Payload: a.bytes(p.Budget)}
	p.op = KindNone
	p.done = true
	return used, ev, nil
}

// inflated hands out the message of kind whose compressed payload is in (in p.asm's
// chunks or the caller's buffer), inflated into p.asm, which holds it until the next
// Next call. More than MaxMessage bytes inflated fails with CloseTooBig: a small
// message that would inflate to gigabytes stops at the limit.
func (p *Parser) inflated(used int, kind Kind, in []byte) (int, Event, error) {
	limit := p.MaxMessage
	if limit <= 0 {
		limit = DefaultMaxMessage
	}
	a := p.asm
	out, err := inflate(a.inflated, in, limit)
	switch {
	case err == errInflateTooBig:
		return p.fail(CloseTooBig, errTooBig)
	case err != nil:
		return p.fail(CloseInvalidPayload, errInflate)
	}
	a.inflated = out
	if kind == KindText && !ValidUTF8(out) {
		return p.fail(CloseInvalidPayload, errBadUTF8)
	}
	p.done = true
	return used, Event{Kind: kind, Payload: out}, nil
}

// unmask XORs p with the masking key in place (RFC 6455 §5.3). ws.Cipher does it 16
// or 32 bytes at a time with SSE2/AVX2 on amd64; parser_test.go checks it against
// the byte-wise definition.
func unmask(p []byte, key [4]byte) { ws.Cipher(p, key, 0) }
