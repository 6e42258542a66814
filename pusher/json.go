package pusher

import (
	"bytes"
	"fmt"
	"unicode/utf16"
	"unicode/utf8"
)

// A minimal JSON scanner and writer for the protocol's messages. It exists so that
// decoding a client frame allocates nothing (encoding/json would allocate a map or
// a RawMessage per field) and so that the double-encoded data strings the protocol
// sends (JSON inside a JSON string) are written in one pass. It validates the full
// RFC 8259 grammar of what it scans; the fuzz test checks it against encoding/json.

// objectIter walks the members of one JSON object. key is the unescaped key (a
// view of the input unless it held escapes); val is the raw value.
type objectIter struct {
	b        []byte
	i        int
	key, val []byte
	err      error
	first    bool
}

// newObjectIter checks that b is exactly one JSON object (whitespace around it
// allowed) and opens it. Validating the whole value first means next cannot fail
// half-way.
func newObjectIter(b []byte) (objectIter, error) {
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '{' {
		return objectIter{}, fmt.Errorf("%w: want an object", ErrMalformed)
	}
	end, err := scanValue(b, i, 0)
	if err != nil {
		return objectIter{}, err
	}
	if skipWS(b, end) != len(b) {
		return objectIter{}, fmt.Errorf("%w: data after the object at offset %d", ErrMalformed, end)
	}
	return objectIter{b: b[:end], i: i + 1, first: true}, nil
}

// next advances to the next member; false at the end.
func (it *objectIter) next() bool {
	if it.b == nil {
		return false
	}
	i := skipWS(it.b, it.i)
	if it.b[i] == '}' {
		it.b = nil
		return false
	}
	if !it.first {
		i = skipWS(it.b, i+1) // the comma, already validated
	}
	it.first = false
	kEnd, _ := scanString(it.b, i)
	it.key = unquote(it.b[i:kEnd])
	i = skipWS(it.b, kEnd)
	i = skipWS(it.b, i+1) // the colon
	vEnd, _ := scanValue(it.b, i, 0)
	it.val = it.b[i:vEnd]
	it.i = vEnd
	return true
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

func syntaxErr(i int) error { return fmt.Errorf("%w at offset %d", ErrMalformed, i) }

// scanValue returns the offset just past the value starting at b[i].
func scanValue(b []byte, i, depth int) (int, error) {
	if i >= len(b) {
		return i, syntaxErr(i)
	}
	switch c := b[i]; {
	case c == '"':
		return scanString(b, i)
	case c == '{' || c == '[':
		if depth >= maxJSONDepth {
			return i, fmt.Errorf("%w: nested deeper than %d", ErrMalformed, maxJSONDepth)
		}
		return scanContainer(b, i, depth+1)
	case c == '-' || (c >= '0' && c <= '9'):
		return scanNumber(b, i)
	case c == 't':
		return scanLiteral(b, i, "true")
	case c == 'f':
		return scanLiteral(b, i, "false")
	case c == 'n':
		return scanLiteral(b, i, "null")
	}
	return i, syntaxErr(i)
}

func scanContainer(b []byte, i, depth int) (int, error) {
	obj := b[i] == '{'
	closer := byte(']')
	if obj {
		closer = '}'
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == closer {
		return i + 1, nil
	}
	for {
		var err error
		if obj {
			if i >= len(b) || b[i] != '"' {
				return i, syntaxErr(i)
			}
			if i, err = scanString(b, i); err != nil {
				return i, err
			}
			i = skipWS(b, i)
			if i >= len(b) || b[i] != ':' {
				return i, syntaxErr(i)
			}
			i = skipWS(b, i+1)
		}
		if i, err = scanValue(b, i, depth); err != nil {
			return i, err
		}
		i = skipWS(b, i)
		if i >= len(b) {
			return i, syntaxErr(i)
		}
		if b[i] == closer {
			return i + 1, nil
		}
		if b[i] != ',' {
			return i, syntaxErr(i)
		}
		i = skipWS(b, i+1)
	}
}

// scanString returns the offset past the closing quote of the string at b[i],
// checking escapes, control characters and UTF-8.
func scanString(b []byte, i int) (int, error) {
	start := i
	i++
	for i < len(b) {
		c := b[i]
		switch {
		case c == '"':
			return i + 1, nil
		case c == '\\':
			if i+1 >= len(b) {
				return i, syntaxErr(i)
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) || !isHex4(b[i+2:i+6]) {
					return i, syntaxErr(i)
				}
				i += 6
			default:
				return i, syntaxErr(i)
			}
		case c < 0x20:
			return i, syntaxErr(i)
		case c < utf8.RuneSelf:
			i++
		default:
			r, n := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && n == 1 {
				return i, fmt.Errorf("%w: invalid UTF-8 at offset %d", ErrMalformed, i)
			}
			i += n
		}
	}
	return start, fmt.Errorf("%w: unterminated string at offset %d", ErrMalformed, start)
}

func isHex4(h []byte) bool {
	for _, c := range h {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

func scanNumber(b []byte, i int) (int, error) {
	start := i
	if b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	default:
		return start, syntaxErr(start)
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return start, syntaxErr(start)
		}
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return start, syntaxErr(start)
		}
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	}
	return i, nil
}

func scanLiteral(b []byte, i int, lit string) (int, error) {
	if len(b)-i < len(lit) || string(b[i:i+len(lit)]) != lit {
		return i, syntaxErr(i)
	}
	return i + len(lit), nil
}

// unquote returns a scanned string's text. Without escapes it is a view of the
// input; with them it is decoded into one new slice (the one allocating path,
// taken by presence subscriptions, whose channel_data is JSON inside a string).
// It decodes as encoding/json does: a lone or broken surrogate becomes U+FFFD.
func unquote(v []byte) []byte {
	inner := v[1 : len(v)-1]
	esc := bytes.IndexByte(inner, '\\')
	if esc < 0 {
		return inner
	}
	out := make([]byte, esc, len(inner)) // escapes only shrink the text
	copy(out, inner)
	for i := esc; i < len(inner); {
		c := inner[i]
		if c != '\\' {
			out = append(out, c)
			i++
			continue
		}
		switch e := inner[i+1]; e { // scanString checked every escape
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r := hex4(inner[i+2:])
			i += 6
			if utf16.IsSurrogate(r) {
				r2 := rune(-1)
				if i+6 <= len(inner) && inner[i] == '\\' && inner[i+1] == 'u' {
					r2 = hex4(inner[i+2:])
				}
				if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
					r = dec
					i += 6
				} else {
					r = utf8.RuneError
				}
			}
			out = utf8.AppendRune(out, r)
			continue
		default: // " \ /
			out = append(out, e)
		}
		i += 2
	}
	return out
}

// hex4 decodes four hex digits (already checked by scanString).
func hex4(h []byte) rune {
	var r rune
	for _, c := range h[:4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c -= 'a' - 10
		default:
			c -= 'A' - 10
		}
		r = r<<4 | rune(c)
	}
	return r
}

// ---- writing ----

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string.
func appendString[T string | []byte](dst []byte, s T) []byte {
	dst = append(dst, '"')
	dst = appendEscaped(dst, s, 1)
	return append(dst, '"')
}

// appendStringIn appends s as a JSON string inside a JSON string: \"...\" with
// its escapes escaped again.
func appendStringIn(dst []byte, s string) []byte {
	dst = append(dst, `\"`...)
	dst = appendEscaped(dst, s, 2)
	return append(dst, `\"`...)
}

// appendRawIn appends raw JSON text inside a JSON string (escaped once); nil is
// written as null.
func appendRawIn(dst []byte, raw []byte) []byte {
	if len(raw) == 0 {
		return append(dst, "null"...)
	}
	return appendEscaped(dst, raw, 1)
}

// appendEscaped escapes s once (depth 1) or twice (depth 2). Invalid UTF-8 becomes
// U+FFFD byte by byte, as encoding/json does, so what is written is always valid
// JSON. It is generic so that []byte payloads are not converted to strings (which
// allocates past 32 bytes).
func appendEscaped[T string | []byte](dst []byte, s T, depth int) []byte {
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			dst = append(dst, c)
			i++
			continue
		}
		if c >= utf8.RuneSelf {
			if n := validRuneLen(s[i:]); n > 0 {
				dst = append(dst, s[i:i+n]...)
				i += n
			} else {
				dst = appendBackslash(dst, depth)
				dst = append(dst, "ufffd"...)
				i++
			}
			continue
		}
		dst = appendBackslash(dst, depth)
		switch c {
		case '"', '\\':
			if depth == 2 {
				dst = append(dst, '\\') // the once-escaped text's own \ or " needs one more
			}
			dst = append(dst, c)
		case '\n':
			dst = append(dst, 'n')
		case '\r':
			dst = append(dst, 'r')
		case '\t':
			dst = append(dst, 't')
		default:
			dst = append(dst, 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		i++
	}
	return dst
}

// validRuneLen returns the length of the valid multi-byte UTF-8 sequence starting
// s, or 0 (RFC 3629's table: no overlongs, no surrogates, nothing past U+10FFFF).
func validRuneLen[T string | []byte](s T) int {
	lo, hi, n := byte(0x80), byte(0xbf), 0
	switch c := s[0]; {
	case c >= 0xc2 && c <= 0xdf:
		n = 2
	case c == 0xe0:
		lo, n = 0xa0, 3
	case c == 0xed:
		hi, n = 0x9f, 3
	case c >= 0xe1 && c <= 0xef:
		n = 3
	case c == 0xf0:
		lo, n = 0x90, 4
	case c >= 0xf1 && c <= 0xf3:
		n = 4
	case c == 0xf4:
		hi, n = 0x8f, 4
	default:
		return 0
	}
	if len(s) < n || s[1] < lo || s[1] > hi {
		return 0
	}
	for i := 2; i < n; i++ {
		if s[i] < 0x80 || s[i] > 0xbf {
			return 0
		}
	}
	return n
}

// appendBackslash writes the backslash that starts an escape: "\" once, or "\\"
// when the escape itself sits inside a string.
func appendBackslash(dst []byte, depth int) []byte {
	if depth == 2 {
		return append(dst, '\\', '\\')
	}
	return append(dst, '\\')
}
