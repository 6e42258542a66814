package wsproto

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// frameSpec describes one client frame for tests, including deliberately broken ones.
type frameSpec struct {
	op       byte // 4-bit opcode
	fin      bool
	rsv      byte // bits 0x70
	unmasked bool
	lenMode  int // 0: minimal, 16: force 16-bit length, 64: force 64-bit length
	payload  []byte
	key      [4]byte
}

// clientFrame encodes f the way a client would: masked unless f.unmasked.
func clientFrame(f frameSpec) []byte {
	b0 := f.op&0x0F | f.rsv&0x70
	if f.fin {
		b0 |= 0x80
	}
	var mb byte = 0x80
	if f.unmasked {
		mb = 0
	}
	n := len(f.payload)
	out := []byte{b0}
	switch {
	case f.lenMode == 64 || (f.lenMode == 0 && n > 0xFFFF):
		out = append(out, mb|127)
		out = binary.BigEndian.AppendUint64(out, uint64(n))
	case f.lenMode == 16 || (f.lenMode == 0 && n > 125):
		out = append(out, mb|126)
		out = binary.BigEndian.AppendUint16(out, uint16(n))
	default:
		out = append(out, mb|byte(n))
	}
	if f.unmasked {
		return append(out, f.payload...)
	}
	out = append(out, f.key[:]...)
	for i, c := range f.payload {
		out = append(out, c^f.key[i%4])
	}
	return out
}

var testKey = [4]byte{0x37, 0xfa, 0x21, 0x3d}

func frame(op byte, fin bool, payload string) []byte {
	return clientFrame(frameSpec{op: op, fin: fin, payload: []byte(payload), key: testKey})
}

func closeBody(code uint16, reason string) string {
	return string(binary.BigEndian.AppendUint16(nil, code)) + reason
}

// maskServerFrame turns an unmasked server frame (AppendFrame output) into the
// equivalent masked client frame, so server encodings can round-trip through Parser.
func maskServerFrame(f []byte, key [4]byte) []byte {
	hdr := 2
	switch f[1] & 0x7F {
	case 126:
		hdr = 4
	case 127:
		hdr = 10
	}
	out := append([]byte(nil), f[:hdr]...)
	out[1] |= 0x80
	out = append(out, key[:]...)
	for i, c := range f[hdr:] {
		out = append(out, c^key[i%4])
	}
	return out
}

// rec is an Event with its bytes copied out, comparable across feeds.
type rec struct {
	kind    Kind
	payload string
	code    uint16
	reason  string
}

func (r rec) String() string {
	return fmt.Sprintf("%v(%q code=%d reason=%q)", r.kind, r.payload, r.code, r.reason)
}

func recOf(ev Event) rec {
	return rec{ev.Kind, string(ev.Payload), ev.CloseCode, string(ev.CloseReason)}
}

// feedAll feeds stream in one piece and returns the complete events (KindNone
// omitted), the close code of the error (0 if none) and how many bytes were consumed.
func feedAll(p *Parser, stream []byte) (evs []rec, code uint16, used int) {
	for {
		n, ev, err := p.Next(stream[used:])
		if err != nil {
			return evs, err.(*CloseError).Code, used
		}
		if n == 0 {
			return evs, 0, used
		}
		used += n
		if ev.Kind != KindNone {
			evs = append(evs, recOf(ev))
		}
	}
}

// feedSplit feeds stream in chunks the way the loop sees it: the inbound buffer
// keeps unconsumed bytes in place, new bytes are appended, and Next is called on
// the whole unconsumed region until it returns n == 0. When copyPerAttempt is set,
// each attempt gets a fresh copy (the loop re-peeking into a different buffer).
func feedSplit(p *Parser, stream []byte, chunks []int, copyPerAttempt bool) (evs []rec, code uint16, used int) {
	var inbound []byte
	off := 0
	ci := 0
	for off < len(stream) {
		size := 1
		if ci < len(chunks) {
			size = chunks[ci]
			ci++
		}
		size = min(max(size, 1), len(stream)-off)
		inbound = append(inbound, stream[off:off+size]...)
		off += size
		for {
			view := inbound
			if copyPerAttempt {
				view = bytes.Clone(inbound)
			}
			n, ev, err := p.Next(view)
			if err != nil {
				return evs, err.(*CloseError).Code, used
			}
			if n == 0 {
				break
			}
			if ev.Kind != KindNone {
				evs = append(evs, recOf(ev))
			}
			used += n
			inbound = inbound[n:] // Discard(n)
		}
	}
	return evs, 0, used
}
