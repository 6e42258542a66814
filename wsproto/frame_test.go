package wsproto

import (
	"bytes"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestHeaderSize(t *testing.T) {
	for _, c := range []struct{ n, want int }{{0, 2}, {125, 2}, {126, 4}, {65535, 4}, {65536, 10}, {1 << 20, 10}} {
		if got := HeaderSize(c.n); got != c.want {
			t.Errorf("HeaderSize(%d) = %d, want %d", c.n, got, c.want)
		}
		if got := len(AppendFrame(nil, KindBinary, make([]byte, c.n))) - c.n; got != c.want {
			t.Errorf("AppendFrame header for %d = %d bytes, want %d", c.n, got, c.want)
		}
	}
}

func TestAppendFrameRoundTrip(t *testing.T) {
	for _, kind := range []Kind{KindText, KindBinary, KindPing, KindPong} {
		for _, n := range []int{0, 1, 125, 126, 127, 65535, 65536, 70000} {
			if kind == KindPing || kind == KindPong {
				n = min(n, 125)
			}
			payload := []byte(strings.Repeat("z", n))
			f := AppendFrame(nil, kind, payload)
			if f[0] != 0x80|byte(kind.opcode()) {
				t.Fatalf("%v/%d: first byte %#x", kind, n, f[0])
			}
			if f[1]&0x80 != 0 {
				t.Fatalf("%v/%d: server frame masked", kind, n)
			}
			var p Parser
			evs, code, used := feedAll(&p, maskServerFrame(f, testKey))
			if code != 0 || len(evs) != 1 || evs[0].kind != kind || evs[0].payload != string(payload) || used != len(f)+4 {
				t.Fatalf("%v/%d: round trip got %v code %d used %d", kind, n, evs, code, used)
			}
		}
	}
}

func TestAppendFrameNoAlloc(t *testing.T) {
	payload := make([]byte, 1000)
	dst := make([]byte, 0, 2048)
	if a := testing.AllocsPerRun(100, func() { dst = AppendFrame(dst[:0], KindBinary, payload) }); a != 0 {
		t.Fatalf("AppendFrame allocates %v times with room in dst", a)
	}
}

func TestAppendClose(t *testing.T) {
	long := strings.Repeat("é", 100) // 200 bytes; 123 is mid-rune
	cases := []struct {
		code       uint16
		reason     string
		wantCode   uint16
		wantReason string
	}{
		{1000, "", 1000, ""},
		{1001, "going away", 1001, "going away"},
		{1008, long, 1008, long[:122]},
		{1009, strings.Repeat("a", 200), 1009, strings.Repeat("a", 123)},
		{CloseNoStatus, "ignored", CloseNoStatus, ""},
	}
	for _, c := range cases {
		f := AppendClose(nil, c.code, c.reason)
		if len(f) > 127 {
			t.Fatalf("close frame %d bytes", len(f))
		}
		var p Parser
		evs, code, _ := feedAll(&p, maskServerFrame(f, testKey))
		if code != 0 || len(evs) != 1 || evs[0].kind != KindClose || evs[0].code != c.wantCode || evs[0].reason != c.wantReason {
			t.Fatalf("AppendClose(%d, %q): parsed %v code %d", c.code, c.reason, evs, code)
		}
		if !utf8.ValidString(evs[0].reason) {
			t.Fatalf("reason cut mid-rune")
		}
	}
}

func TestPingFrame(t *testing.T) {
	if !bytes.Equal(PingFrame, AppendFrame(nil, KindPing, nil)) {
		t.Fatalf("PingFrame = %x", PingFrame)
	}
}

func TestValidCloseCode(t *testing.T) {
	valid := func(c uint16) bool {
		return (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) || (c >= 3000 && c <= 4999)
	}
	for c := range 70000 {
		if c > 0xFFFF {
			break
		}
		if got := ValidCloseCode(uint16(c)); got != valid(uint16(c)) {
			t.Fatalf("ValidCloseCode(%d) = %v", c, got)
		}
	}
	for _, c := range []uint16{1004, 1005, 1006, 1015, 999, 2999, 5000} {
		if ValidCloseCode(c) {
			t.Fatalf("ValidCloseCode(%d) = true", c)
		}
	}
}

func TestCloseErrorString(t *testing.T) {
	if got := (&CloseError{Code: 1002, Reason: "bad"}).Error(); got != "wsproto: close 1002: bad" {
		t.Fatalf("got %q", got)
	}
	if KindText.String() != "text" || Kind(9).String() != "kind(9)" {
		t.Fatal("Kind.String")
	}
}
