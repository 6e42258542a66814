package wsproto

import (
	"encoding/binary"
	"strconv"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

// Kind says what Parser.Next produced.
type Kind uint8

// Kinds of events. KindText and KindBinary equal their opcodes; the others do not.
const (
	KindNone Kind = iota // nothing complete: a non-final fragment was absorbed
	KindText
	KindBinary
	KindPing
	KindPong
	KindClose
)

var kindNames = [...]string{"none", "text", "binary", "ping", "pong", "close"}

// String returns the lower-case name of k, for logs and test failures.
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// opcode maps a Kind onto its wire opcode.
func (k Kind) opcode() ws.OpCode {
	switch k {
	case KindText:
		return ws.OpText
	case KindBinary:
		return ws.OpBinary
	case KindPing:
		return ws.OpPing
	case KindPong:
		return ws.OpPong
	case KindClose:
		return ws.OpClose
	}
	panic("BUG: wsproto: no opcode for " + k.String())
}

// Close codes used by the gateway. doc.go says when each is sent.
const (
	CloseNormal          uint16 = 1000
	CloseGoingAway       uint16 = 1001
	CloseProtocolError   uint16 = 1002
	CloseUnsupported     uint16 = 1003
	CloseNoStatus        uint16 = 1005
	CloseInvalidPayload  uint16 = 1007
	ClosePolicyViolation uint16 = 1008
	CloseTooBig          uint16 = 1009
	CloseInternalError   uint16 = 1011
	CloseTryAgainLater   uint16 = 1013
)

// ValidCloseCode reports whether code may appear in a close frame (RFC 6455 §7.4):
// 1000-1003, 1007-1014 and 3000-4999. 1012-1014 were registered with IANA after the
// RFC and Autobahn (case 7.7.x) accepts them. 1004-1006 and 1015 are reserved for
// local use and must never be sent, so a peer that sends them breaks the protocol.
func ValidCloseCode(code uint16) bool {
	switch {
	case code >= 1000 && code <= 1003:
		return true
	case code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}

// CloseError is a protocol failure: the connection must be closed with Code
// (1002/1007/1009...) and Reason, which fits a close frame (<= 123 bytes).
type CloseError struct {
	Code   uint16
	Reason string
}

// Error implements error.
func (e *CloseError) Error() string {
	return "wsproto: close " + strconv.Itoa(int(e.Code)) + ": " + e.Reason
}

// PingFrame is an empty ping, precompiled. Shared: never modify it.
var PingFrame = []byte{0x80 | byte(ws.OpPing), 0}

// HeaderSize returns the size of a server (unmasked) frame header for a payload of
// payloadLen bytes: 2, 4 or 10.
func HeaderSize(payloadLen int) int {
	switch {
	case payloadLen <= 125:
		return 2
	case payloadLen <= 0xFFFF:
		return 4
	}
	return 10
}

// AppendFrame appends one final (FIN) unmasked server frame of the given kind. It
// does not allocate when dst has room for HeaderSize(len(payload))+len(payload)
// more bytes. Control frames (ping, pong, close) must carry <= 125 bytes; a longer
// one is a caller bug and panics.
func AppendFrame(dst []byte, kind Kind, payload []byte) []byte {
	op := kind.opcode()
	n := len(payload)
	if op.IsControl() && n > 125 {
		panic("BUG: wsproto: control frame payload over 125 bytes")
	}
	b0 := 0x80 | byte(op)
	switch {
	case n <= 125:
		dst = append(dst, b0, byte(n))
	case n <= 0xFFFF:
		dst = append(dst, b0, 126, byte(n>>8), byte(n))
	default:
		dst = append(dst, b0, 127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	return append(dst, payload...)
}

// AppendClose appends a close frame with code and reason. The reason is cut to fit
// the 125-byte control frame limit (123 bytes after the code), on a UTF-8 boundary
// so the peer does not fail the close with 1007. Code CloseNoStatus (or 0) means "no
// status" and, as RFC 6455 §7.4.1 forbids sending 1005, yields an empty close frame.
func AppendClose(dst []byte, code uint16, reason string) []byte {
	if code == CloseNoStatus || code == 0 {
		return append(dst, 0x80|byte(ws.OpClose), 0)
	}
	if len(reason) > 123 {
		cut := 123
		for cut > 0 && !utf8.RuneStart(reason[cut]) {
			cut--
		}
		reason = reason[:cut]
	}
	dst = append(dst, 0x80|byte(ws.OpClose), byte(2+len(reason)), byte(code>>8), byte(code))
	return append(dst, reason...)
}
