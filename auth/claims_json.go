package auth

import (
	"bytes"
	"encoding/json"
	"errors"
	"time"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"
)

// plainClaims is tokenClaims without its UnmarshalJSON method: the fallback decodes
// into it so that encoding/json does the work without recursing into the fast path.
type plainClaims tokenClaims

// UnmarshalJSON decodes the claims golang-jwt hands it. encoding/json decodes a
// struct by reflection and NumericDate re-enters json.Unmarshal per date, which made
// claim decoding the largest cost of a handshake in a connect storm. The fast path
// covers the shape real tokens have: a flat object of strings without escapes, plain
// integer dates and arrays of plain strings for rooms and subscribe. Anything else (escapes,
// fractions, nulls, nested values, keys that only differ in case from a claim name)
// is decoded by encoding/json from the same bytes, so the result is always the one
// encoding/json gives, with one deliberate difference: a time claim that is not a
// JSON number (or null) is an error (errDateNotNumber). FuzzClaimsUnmarshal checks
// both.
//
// The fast path writes to tc only after the whole input is accepted, so a fallback
// starts from tc as the caller passed it.
func (tc *tokenClaims) UnmarshalJSON(data []byte) error {
	var f fastClaims
	if f.parse(data) {
		f.commit(tc)
		return nil
	}
	if err := checkDateTypes(data); err != nil {
		return err
	}
	return json.Unmarshal(data, (*plainClaims)(tc))
}

// errDateNotNumber refuses a time claim that is not a JSON number. RFC 7519 defines
// NumericDate as a number, but NumericDate.UnmarshalJSON decodes through json.Number,
// which also takes a string holding one ("exp":"1700000000"): a token that other
// verifiers refuse would pass here.
var errDateNotNumber = errors.New("auth: exp, nbf and iat must be JSON numbers")

// dateTypes has the JSON names of tokenClaims' dates, so encoding/json matches keys
// to them exactly as it does when decoding tokenClaims (exact name, else case-folded)
// and calls dateType.UnmarshalJSON for every occurrence, duplicates included.
type dateTypes struct {
	Exp dateType `json:"exp"`
	Nbf dateType `json:"nbf"`
	Iat dateType `json:"iat"`
}

type dateType struct{}

// UnmarshalJSON accepts a number, or null (which leaves the claim unset).
func (dateType) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && (b[0] == '-' || (b[0] >= '0' && b[0] <= '9') || bytes.Equal(b, []byte("null"))) {
		return nil
	}
	return errDateNotNumber
}

// checkDateTypes returns errDateNotNumber if data is a JSON object with a time claim
// that is not a number. Anything else (invalid JSON, not an object) is left to the
// real decode, so its error is encoding/json's own. The fast path never needs this:
// it accepts only digits for dates.
func checkDateTypes(data []byte) error {
	var d dateTypes
	if err := json.Unmarshal(data, &d); errors.Is(err, errDateNotNumber) {
		return err
	}
	return nil
}

// Bits of fastClaims.seen: which claims the input set.
const (
	seenSub = 1 << iota
	seenIss
	seenJti
	seenAud
	seenExp
	seenNbf
	seenIat
	seenRooms
	seenSubscribe
)

// fastClaims holds what the fast path read until the input is known to be fully
// acceptable. Strings are sub-slices of the input; commit copies them.
type fastClaims struct {
	seen          uint
	sub, iss, jti []byte
	exp, nbf, iat int64
	// rooms, subscribe and aud are the array's bytes from '[' to ']', re-walked by
	// commit once the element count is known so each slice is allocated once at its
	// final size.
	rooms, subscribe, aud []byte
	// audOne is set when aud was a single string rather than an array.
	audOne bool
}

// maxFastDigits bounds the dates the fast path decodes: below 2^53 a float64 holds
// every integer exactly, so time.Unix(n, 0) is what NumericDate.UnmarshalJSON gets
// from its float64 round trip. Fifteen digits is far beyond any real date.
const maxFastDigits = 15

// parse reports whether data is an object the fast path decodes exactly as
// encoding/json would. It accepts only valid JSON, so a direct call with invalid
// input also falls back and gets encoding/json's syntax error.
func (f *fastClaims) parse(data []byte) bool {
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return false
	}
	i = skipSpace(data, i+1)
	if i < len(data) && data[i] == '}' {
		return skipSpace(data, i+1) == len(data)
	}
	for {
		key, next, ok := scanString(data, i)
		if !ok {
			return false
		}
		i = skipSpace(data, next)
		if i >= len(data) || data[i] != ':' {
			return false
		}
		i = skipSpace(data, i+1)
		if i, ok = f.value(data, i, key); !ok {
			return false
		}
		i = skipSpace(data, i)
		if i >= len(data) {
			return false
		}
		switch data[i] {
		case ',':
			i = skipSpace(data, i+1)
		case '}':
			return skipSpace(data, i+1) == len(data)
		default:
			return false
		}
	}
}

// value reads the value of key starting at data[i] and returns the index after it.
func (f *fastClaims) value(data []byte, i int, key []byte) (int, bool) {
	var ok bool
	switch string(key) {
	case "sub":
		f.seen |= seenSub
		f.sub, i, ok = scanString(data, i)
	case "iss":
		f.seen |= seenIss
		f.iss, i, ok = scanString(data, i)
	case "jti":
		f.seen |= seenJti
		f.jti, i, ok = scanString(data, i)
	case "exp":
		f.seen |= seenExp
		f.exp, i, ok = scanSeconds(data, i)
	case "nbf":
		f.seen |= seenNbf
		f.nbf, i, ok = scanSeconds(data, i)
	case "iat":
		f.seen |= seenIat
		f.iat, i, ok = scanSeconds(data, i)
	case "rooms":
		f.seen |= seenRooms
		start := i
		if i, ok = scanStringArray(data, i); ok {
			f.rooms = data[start:i]
		}
	case "subscribe":
		f.seen |= seenSubscribe
		start := i
		if i, ok = scanStringArray(data, i); ok {
			f.subscribe = data[start:i]
		}
	case "aud":
		f.seen |= seenAud
		start := i
		if i < len(data) && data[i] == '"' {
			f.audOne = true
			_, i, ok = scanString(data, i)
		} else {
			f.audOne = false
			i, ok = scanStringArray(data, i)
		}
		f.aud = data[start:i]
	default:
		// encoding/json matches keys case-insensitively (with Unicode folding) when
		// there is no exact match, so a key that could fold onto a claim name is
		// decoded by encoding/json.
		if mayFoldToClaim(key) {
			return i, false
		}
		i, ok = skipScalar(data, i)
	}
	return i, ok
}

// commit stores what parse read into tc the way encoding/json would: a string claim
// replaces the field, a date is written through an existing pointer or a new one, an
// array replaces the slice's contents, and an empty aud array leaves aud nil (that is
// what ClaimStrings.UnmarshalJSON does) while an empty rooms or subscribe array is an
// empty slice.
func (f *fastClaims) commit(tc *tokenClaims) {
	if f.seen&seenSub != 0 {
		tc.Subject = string(f.sub)
	}
	if f.seen&seenIss != 0 {
		tc.Issuer = string(f.iss)
	}
	if f.seen&seenJti != 0 {
		tc.ID = string(f.jti)
	}
	if f.seen&seenExp != 0 {
		tc.ExpiresAt = setDate(tc.ExpiresAt, &tc.dates[0], f.exp)
	}
	if f.seen&seenNbf != 0 {
		tc.NotBefore = setDate(tc.NotBefore, &tc.dates[1], f.nbf)
	}
	if f.seen&seenIat != 0 {
		tc.IssuedAt = setDate(tc.IssuedAt, &tc.dates[2], f.iat)
	}
	if f.seen&seenRooms != 0 {
		tc.Rooms = appendStrings(make([]string, 0, countStrings(f.rooms)), f.rooms)
	}
	if f.seen&seenSubscribe != 0 {
		tc.Subscribe = appendStrings(make([]string, 0, countStrings(f.subscribe)), f.subscribe)
	}
	if f.seen&seenAud != 0 {
		if f.audOne {
			s, _, _ := scanString(f.aud, 0)
			tc.Audience = jwt.ClaimStrings{string(s)}
		} else if n := countStrings(f.aud); n == 0 {
			tc.Audience = nil
		} else {
			tc.Audience = appendStrings(make(jwt.ClaimStrings, 0, n), f.aud)
		}
	}
}

// setDate is NumericDate.UnmarshalJSON for a whole number of seconds that a float64
// holds exactly: encoding/json decodes into an existing pointee rather than replacing
// the pointer, so this does too. A nil d gets spare, tokenClaims' own storage, where
// encoding/json would allocate; the value is the same.
func setDate(d, spare *jwt.NumericDate, sec int64) *jwt.NumericDate {
	if d == nil {
		d = spare
	}
	*d = *jwt.NewNumericDate(time.Unix(sec, 0))
	return d
}

// countStrings returns how many strings the array arr, already checked by
// scanStringArray, holds.
func countStrings(arr []byte) int {
	n := 0
	for i := 1; i < len(arr); i++ {
		if arr[i] == '"' {
			n++
		}
	}
	// Escapes were rejected, so every string is two quotes.
	return n / 2
}

// appendStrings appends copies of the strings in arr, already checked by
// scanStringArray, to dst.
func appendStrings[S ~[]string](dst S, arr []byte) S {
	i := 1
	for {
		i = skipSpace(arr, i)
		if arr[i] == ']' {
			return dst
		}
		if arr[i] == ',' {
			i = skipSpace(arr, i+1)
		}
		s, next, _ := scanString(arr, i)
		dst = append(dst, string(s))
		i = next
	}
}

func skipSpace(data []byte, i int) int {
	for i < len(data) {
		switch data[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// scanString reads a string without escapes at data[i] and returns its contents and
// the index after the closing quote. Non-ASCII bytes are accepted only as valid
// UTF-8, which encoding/json keeps as is (it replaces invalid bytes with U+FFFD).
func scanString(data []byte, i int) ([]byte, int, bool) {
	if i >= len(data) || data[i] != '"' {
		return nil, i, false
	}
	start := i + 1
	ascii := true
	for j := start; j < len(data); j++ {
		switch c := data[j]; {
		case c == '"':
			s := data[start:j]
			if !ascii && !utf8.Valid(s) {
				return nil, i, false
			}
			return s, j + 1, true
		case c == '\\' || c < 0x20:
			return nil, i, false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return nil, i, false
}

// scanStringArray reads an array of strings without escapes at data[i] and returns
// the index after the closing bracket.
func scanStringArray(data []byte, i int) (int, bool) {
	if i >= len(data) || data[i] != '[' {
		return i, false
	}
	i = skipSpace(data, i+1)
	if i < len(data) && data[i] == ']' {
		return i + 1, true
	}
	for {
		var ok bool
		if _, i, ok = scanString(data, i); !ok {
			return i, false
		}
		i = skipSpace(data, i)
		if i >= len(data) {
			return i, false
		}
		switch data[i] {
		case ',':
			i = skipSpace(data, i+1)
		case ']':
			return i + 1, true
		default:
			return i, false
		}
	}
}

// scanSeconds reads a non-negative integer of at most maxFastDigits digits at data[i].
// Fractions, exponents and signs are left to NumericDate.UnmarshalJSON.
func scanSeconds(data []byte, i int) (int64, int, bool) {
	start := i
	var n int64
	for i < len(data) && data[i] >= '0' && data[i] <= '9' {
		n = n*10 + int64(data[i]-'0')
		i++
	}
	digits := i - start
	if digits == 0 || digits > maxFastDigits || (digits > 1 && data[start] == '0') {
		return 0, i, false
	}
	if i < len(data) && (data[i] == '.' || data[i] == 'e' || data[i] == 'E') {
		return 0, i, false
	}
	return n, i, true
}

// skipScalar skips the value of a claim the gateway does not use: a string without
// escapes, a number, true, false or null. Objects and arrays are left to encoding/json.
func skipScalar(data []byte, i int) (int, bool) {
	if i >= len(data) {
		return i, false
	}
	switch c := data[i]; {
	case c == '"':
		_, next, ok := scanString(data, i)
		return next, ok
	case c == '-' || (c >= '0' && c <= '9'):
		return skipNumber(data, i)
	case c == 't':
		return skipLiteral(data, i, "true")
	case c == 'f':
		return skipLiteral(data, i, "false")
	case c == 'n':
		return skipLiteral(data, i, "null")
	}
	return i, false
}

func skipLiteral(data []byte, i int, lit string) (int, bool) {
	if len(data)-i < len(lit) || string(data[i:i+len(lit)]) != lit {
		return i, false
	}
	return i + len(lit), true
}

// skipNumber skips a JSON number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func skipNumber(data []byte, i int) (int, bool) {
	if data[i] == '-' {
		i++
	}
	switch {
	case i < len(data) && data[i] == '0':
		i++
	case i < len(data) && data[i] >= '1' && data[i] <= '9':
		i = skipDigits(data, i)
	default:
		return i, false
	}
	if i < len(data) && data[i] == '.' {
		j := skipDigits(data, i+1)
		if j == i+1 {
			return i, false
		}
		i = j
	}
	if i < len(data) && (data[i] == 'e' || data[i] == 'E') {
		i++
		if i < len(data) && (data[i] == '+' || data[i] == '-') {
			i++
		}
		j := skipDigits(data, i)
		if j == i {
			return i, false
		}
		i = j
	}
	return i, true
}

func skipDigits(data []byte, i int) int {
	for i < len(data) && data[i] >= '0' && data[i] <= '9' {
		i++
	}
	return i
}

// claimNames are the JSON names of tokenClaims' fields.
var claimNames = [...]string{"sub", "iss", "jti", "aud", "exp", "nbf", "iat", "rooms", "subscribe"}

// mayFoldToClaim reports whether encoding/json might match key, which is not exactly
// a claim name, to a claim field: it does when the key equals a name ignoring ASCII
// case, and non-ASCII keys can fold onto ASCII letters (U+017F to 's', U+212A to 'k').
func mayFoldToClaim(key []byte) bool {
	for _, c := range key {
		if c >= utf8.RuneSelf {
			return true
		}
	}
	for _, name := range claimNames {
		if len(key) == len(name) && equalFoldASCII(key, name) {
			return true
		}
	}
	return false
}

func equalFoldASCII(key []byte, name string) bool {
	for i := range key {
		c := key[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != name[i] {
			return false
		}
	}
	return true
}
