package wsproto

import "unicode/utf8"

// ValidUTF8 reports whether b is entirely valid UTF-8 (RFC 3629: no overlong forms,
// no surrogates U+D800..U+DFFF, nothing above U+10FFFF), as RFC 6455 §8.1 requires of
// text messages and close reasons.
func ValidUTF8(b []byte) bool { return utf8.Valid(b) }

// UTF8 validates a byte stream that arrives in pieces (the fragments of one text
// message). A multi-byte sequence may be split across Feed calls; an invalid
// sequence is reported by the Feed call that contains its first bad byte, which is
// what Autobahn section 6.4 ("fail fast on invalid UTF-8") checks.
//
// The zero value is ready. It is three bytes so it can live inside every Parser.
type UTF8 struct {
	// need is how many continuation bytes the current sequence still needs;
	// utf8Bad marks a stream that has already failed.
	need uint8
	// lo and hi bound the next continuation byte. They are tighter than
	// 0x80..0xBF right after E0, ED, F0 and F4: that is how overlongs, surrogates
	// and code points above U+10FFFF are refused before the sequence ends.
	lo, hi uint8
}

const utf8Bad = 0xFF

// Feed validates the next piece of the stream. It returns false as soon as the
// bytes seen so far cannot be the prefix of valid UTF-8; once false, it stays false
// until Reset.
func (u *UTF8) Feed(b []byte) bool {
	if u.need == utf8Bad {
		return false
	}
	// Finish a sequence left open by the previous piece, byte by byte.
	i := 0
	for u.need > 0 && i < len(b) {
		c := b[i]
		if c < u.lo || c > u.hi {
			u.need = utf8Bad
			return false
		}
		u.lo, u.hi = 0x80, 0xBF
		u.need--
		i++
	}
	rest := b[i:]
	if len(rest) == 0 {
		return true
	}
	// Find a sequence that starts in the last three bytes and is cut off by the end
	// of this piece. Everything before it is checked by the standard library's fast
	// validator; the cut-off tail goes through the byte-wise state machine.
	tail := len(rest)
	for j := len(rest) - 1; j >= 0 && j >= len(rest)-3; j-- {
		c := rest[j]
		if c < 0x80 {
			break // ASCII: nothing can be open after it
		}
		if c >= 0xC0 {
			if j+seqLen(c) > len(rest) {
				tail = j
			}
			break
		}
	}
	if !utf8.Valid(rest[:tail]) {
		u.need = utf8Bad
		return false
	}
	for _, c := range rest[tail:] {
		if !u.step(c) {
			u.need = utf8Bad
			return false
		}
	}
	return true
}

// step advances the state machine by one byte.
func (u *UTF8) step(c byte) bool {
	if u.need > 0 {
		if c < u.lo || c > u.hi {
			return false
		}
		u.lo, u.hi = 0x80, 0xBF
		u.need--
		return true
	}
	u.lo, u.hi = 0x80, 0xBF
	switch {
	case c < 0x80:
	case c >= 0xC2 && c <= 0xDF:
		u.need = 1
	case c == 0xE0:
		u.need, u.lo = 2, 0xA0 // below A0 would be an overlong 3-byte form
	case c == 0xED:
		u.need, u.hi = 2, 0x9F // above 9F would be a surrogate
	case c >= 0xE1 && c <= 0xEF:
		u.need = 2
	case c == 0xF0:
		u.need, u.lo = 3, 0x90 // below 90 would be an overlong 4-byte form
	case c == 0xF4:
		u.need, u.hi = 3, 0x8F // above 8F would exceed U+10FFFF
	case c >= 0xF1 && c <= 0xF3:
		u.need = 3
	default: // C0, C1, F5..FF, or a stray continuation byte
		return false
	}
	return true
}

// seqLen is the length a sequence starting with lead byte c claims (1 for bytes
// that cannot start one; utf8.Valid or step rejects those).
func seqLen(c byte) int {
	switch {
	case c >= 0xF0:
		return 4
	case c >= 0xE0:
		return 3
	case c >= 0xC0:
		return 2
	}
	return 1
}

// Complete reports whether the stream fed so far is valid and ends on a code point
// boundary, i.e. the message is valid UTF-8 as a whole.
func (u *UTF8) Complete() bool { return u.need == 0 }

// Reset prepares u for a new stream.
func (u *UTF8) Reset() { *u = UTF8{} }
