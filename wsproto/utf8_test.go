package wsproto

import (
	"math/rand/v2"
	"sync"
	"testing"
	"unicode/utf8"
)

// validPrefixes is the naive reference: every proper prefix of the encoding of every
// valid code point, built by brute force over all of Unicode.
var validPrefixes = sync.OnceValue(func() map[string]bool {
	m := make(map[string]bool)
	var buf [4]byte
	for r := rune(0); r <= utf8.MaxRune; r++ {
		if r >= 0xD800 && r <= 0xDFFF {
			continue
		}
		n := utf8.EncodeRune(buf[:], r)
		for k := 1; k < n; k++ {
			m[string(buf[:k])] = true
		}
	}
	return m
})

// naiveValidPrefix reports whether b can be extended into valid UTF-8.
func naiveValidPrefix(b []byte) bool {
	for k := len(b); k >= 0 && k >= len(b)-3; k-- {
		if utf8.Valid(b[:k]) && (k == len(b) || validPrefixes()[string(b[k:])]) {
			return true
		}
	}
	return false
}

// utf8Cases include the Autobahn 6.x sequences: boundaries, overlongs, surrogates,
// code points above U+10FFFF, stray continuations and truncated sequences.
var utf8Cases = []struct {
	in    string
	valid bool
}{
	{"", true},
	{"hello", true},
	{"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", true},
	{"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80\x65\x64\x69\x74\x65\x64", false}, // 6.3.1
	{"\x00", true},
	{"\xc2\x80", true},
	{"\xe0\xa0\x80", true},
	{"\xf0\x90\x80\x80", true},
	{"\x7f", true},
	{"\xdf\xbf", true},
	{"\xef\xbf\xbf", true},
	{"\xf4\x8f\xbf\xbf", true},  // U+10FFFF
	{"\xf4\x90\x80\x80", false}, // U+110000
	{"\xf7\xbf\xbf\xbf", false},
	{"\xf8\x88\x80\x80\x80", false}, // 5-byte form
	{"\xfc\x84\x80\x80\x80\x80", false},
	{"\x80", false},
	{"\xbf", false},
	{"\x80\xbf\x80", false},
	{"\xc0 ", false},
	{"\xe0\x80", false},
	{"\xfe", false},
	{"\xff", false},
	{"\xfe\xfe\xff\xff", false},
	{"\xc0\xaf", false},                 // overlong '/'
	{"\xe0\x80\xaf", false},             // overlong '/'
	{"\xf0\x80\x80\xaf", false},         // overlong '/'
	{"\xc1\xbf", false},                 // overlong U+007F
	{"\xe0\x9f\xbf", false},             // overlong U+07FF
	{"\xf0\x8f\xbf\xbf", false},         // overlong U+FFFF
	{"\xed\xa0\x80", false},             // U+D800
	{"\xed\xbf\xbf", false},             // U+DFFF
	{"\xed\xa0\x80\xed\xb0\x80", false}, // surrogate pair
	{"\xed\x9f\xbf", true},              // U+D7FF
	{"\xee\x80\x80", true},              // U+E000
	{"\xef\xbf\xbe", true},              // U+FFFE noncharacter: valid UTF-8
	{"\xce", false},
	{"\xe1\xbd", false},
	{"\xf0\x90\x80", false},
	{"a\xf4\x8f\xbf", false},
}

func TestValidUTF8(t *testing.T) {
	for _, c := range utf8Cases {
		if got := ValidUTF8([]byte(c.in)); got != c.valid {
			t.Errorf("ValidUTF8(%q) = %v, want %v", c.in, got, c.valid)
		}
	}
}

// checkStream feeds b in the given pieces and compares every answer with the naive
// reference: Feed must fail exactly on the piece that makes the prefix invalid.
func checkStream(t *testing.T, b []byte, cuts []int) {
	t.Helper()
	var u UTF8
	start := 0
	failed := false
	for _, end := range append(cuts, len(b)) {
		got := u.Feed(b[start:end])
		want := !failed && naiveValidPrefix(b[:end])
		if got != want {
			t.Fatalf("%q cut %v: Feed(%q) = %v, want %v", b, cuts, b[start:end], got, want)
		}
		failed = failed || !got
		start = end
	}
	if got, want := u.Complete() && !failed, utf8.Valid(b); got != want {
		t.Fatalf("%q cut %v: Complete = %v, want %v", b, cuts, got, want)
	}
}

func TestUTF8StreamSplits(t *testing.T) {
	for _, c := range utf8Cases {
		b := []byte(c.in)
		// every single cut, every pair of cuts, and byte by byte
		for i := 0; i <= len(b); i++ {
			checkStream(t, b, []int{i})
			for j := i; j <= len(b); j++ {
				checkStream(t, b, []int{i, j})
			}
		}
		byByte := make([]int, 0, len(b))
		for i := 1; i < len(b); i++ {
			byByte = append(byByte, i)
		}
		checkStream(t, b, byByte)
	}
}

func TestUTF8StreamRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	alphabet := []byte{'a', 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc2, 0xdf, 0xe0, 0xe1, 0xed, 0xef, 0xf0, 0xf1, 0xf4, 0xf5, 0xff}
	for range 5000 {
		b := make([]byte, rng.IntN(12))
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		var cuts []int
		for i := 1; i < len(b); i++ {
			if rng.IntN(3) == 0 {
				cuts = append(cuts, i)
			}
		}
		checkStream(t, b, cuts)
	}
	// Real text of every length class, cut everywhere.
	var u UTF8
	text := []byte("aé€😀" + "\U0010FFFF")
	for i := range text {
		u.Reset()
		if !u.Feed(text[:i]) || !u.Feed(text[i:]) || !u.Complete() {
			t.Fatalf("valid text cut at %d rejected", i)
		}
	}
}
