// Package jsonstr encodes JSON strings into byte slices, for the answers and
// envelopes longlink builds by hand on hot paths (the push API's answers, the v2
// client protocol) instead of through encoding/json. A leaf: it imports only the
// standard library.
package jsonstr

import "unicode/utf8"

// Append appends s as a JSON string (RFC 8259). Invalid UTF-8 becomes U+FFFD as
// in encoding/json; HTML characters are not escaped (nothing here is embedded in
// HTML).
func Append(b []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
