package wsproto

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

const goodKey = "dGhlIHNhbXBsZSBub25jZQ=="

const goodReq = "GET /ws?token=a%20b&x=1 HTTP/1.1\r\n" +
	"Host: example.com\r\n" +
	"upgrade: WebSocket\r\n" +
	"CONNECTION: keep-alive, Upgrade\r\n" +
	"Sec-WebSocket-Version: 13\r\n" +
	"Sec-WebSocket-Key: " + goodKey + "\r\n" +
	"Sec-WebSocket-Protocol: chat, , superchat\r\n" +
	"Sec-WebSocket-Protocol:v2\r\n" +
	"Sec-WebSocket-Extensions: permessage-deflate\r\n" +
	"Origin: https://example.com\r\n" +
	"User-Agent: test\r\n" +
	"Authorization: Bearer abc\r\n" +
	"X-Forwarded-For: 10.0.0.1\r\n" +
	"x-forwarded-for: 10.0.0.2\r\n" +
	"X-Unknown: skipped\r\n" +
	"\r\n"

func TestParseRequestFields(t *testing.T) {
	var r Request
	tail := "\x81\x80junk" // a frame pipelined after the head is not consumed
	n, err := ParseRequest([]byte(goodReq+tail), 0, &r)
	if err != nil || n != len(goodReq) {
		t.Fatalf("n=%d err=%v", n, err)
	}
	want := Request{
		Method: "GET", Path: "/ws", RawQuery: "token=a%20b&x=1", Proto: "HTTP/1.1",
		Host: "example.com", Origin: "https://example.com", UserAgent: "test", Authorization: "Bearer abc",
		ForwardedFor: "10.0.0.1, 10.0.0.2", Upgrade: "WebSocket", Connection: "keep-alive, Upgrade",
		Version: "13", Key: goodKey, Extensions: "permessage-deflate",
		Protocols: []string{"chat", "superchat", "v2"},
	}
	if !requestEqual(r, want) {
		t.Fatalf("got %+v\nwant %+v", r, want)
	}
	if e := r.ValidateUpgrade(); e != nil {
		t.Fatalf("ValidateUpgrade: %v", e)
	}
	if QueryValue(r.RawQuery, "token") != "a b" {
		t.Fatal("QueryValue token")
	}
}

func requestEqual(a, b Request) bool {
	return fmt.Sprintf("%+v", a) == fmt.Sprintf("%+v", b) && slices.Equal(a.Protocols, b.Protocols)
}

func TestParseRequestEveryOffset(t *testing.T) {
	for _, req := range []string{goodReq, strings.ReplaceAll(goodReq, "\r\n", "\n")} {
		for i := range len(req) {
			var r Request
			n, err := ParseRequest([]byte(req[:i]), 0, &r)
			if n != 0 || err != nil {
				t.Fatalf("prefix %d: n=%d err=%v, want need-more", i, n, err)
			}
		}
		var r Request
		if n, err := ParseRequest([]byte(req), 0, &r); n != len(req) || err != nil || r.ValidateUpgrade() != nil {
			t.Fatalf("full: n=%d err=%v", n, err)
		}
	}
}

func TestParseRequestRejects(t *testing.T) {
	const tail = "Host: h\r\n\r\n"
	cases := []struct {
		name, req string
		status    int
	}{
		{"garbage line early", "\x16\x03\x01\x02\x00\r\n", 400},
		{"empty request line", "\r\n" + tail, 400},
		{"no target", "GET HTTP/1.1\r\n" + tail, 400},
		{"space in target", "GET /a b HTTP/1.1\r\n" + tail, 400},
		{"bad version", "GET / HTTX/1.1\r\n" + tail, 400},
		{"http2", "GET / HTTP/2.0\r\n" + tail, 505},
		{"http0.9ish", "GET / HTTP/0.9\r\n" + tail, 505},
		{"folding", "GET / HTTP/1.1\r\nHost: h\r\n  continued\r\n\r\n", 400},
		{"space before colon", "GET / HTTP/1.1\r\nHost : h\r\n\r\n", 400},
		{"no colon", "GET / HTTP/1.1\r\nHost\r\n\r\n", 400},
		{"stray CR", "GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", 400},
		{"control char", "GET / HTTP/1.1\r\nHost: a\x01b\r\n\r\n", 400},
		{"duplicate host", "GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", 400},
		{"duplicate authorization", "GET / HTTP/1.1\r\nAuthorization: a\r\nAuthorization: b\r\n\r\n", 400},
		{"body", "GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\n", 400},
		{"bad content-length", "GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n", 400},
		{"chunked", "GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
	}
	for _, c := range cases {
		var r Request
		_, err := ParseRequest([]byte(c.req), 0, &r)
		he, ok := err.(*HTTPError)
		if !ok || he.Status != c.status {
			t.Errorf("%s: err %v, want status %d", c.name, err, c.status)
		}
	}
	var r Request
	if n, err := ParseRequest([]byte("GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n"), 0, &r); n == 0 || err != nil {
		t.Errorf("Content-Length: 0 rejected: %v", err)
	}
}

func TestParseRequestTooLarge(t *testing.T) {
	head := "GET / HTTP/1.1\r\nX-Pad: " + strings.Repeat("a", 100) + "\r\n\r\n"
	var r Request
	if n, err := ParseRequest([]byte(head), len(head), &r); n != len(head) || err != nil {
		t.Fatalf("head of exactly max: n=%d err=%v", n, err)
	}
	if n, err := ParseRequest([]byte(head[:50]), 50, &r); n != 0 || err != nil {
		t.Fatalf("len == max, incomplete: n=%d err=%v, want need-more", n, err)
	}
	_, err := ParseRequest([]byte(head), len(head)-1, &r)
	if he, ok := err.(*HTTPError); !ok || he.Status != 431 {
		t.Fatalf("oversize: %v, want 431", err)
	}
	big := []byte("GET / HTTP/1.1\r\nX: " + strings.Repeat("a", DefaultMaxRequestBytes))
	if _, err := ParseRequest(big, 0, &r); err == nil || err.(*HTTPError).Status != 431 {
		t.Fatalf("default max: %v, want 431", err)
	}
}

func TestValidateUpgrade(t *testing.T) {
	ok := func() Request {
		return Request{Method: "GET", Proto: "HTTP/1.1", Host: "h", Upgrade: "websocket", Connection: "Upgrade", Version: "13", Key: goodKey}
	}
	cases := []struct {
		name   string
		mod    func(*Request)
		status int
		header string
	}{
		{"ok", func(*Request) {}, 0, ""},
		{"post", func(r *Request) { r.Method = "POST" }, 405, "Allow: GET\r\n"},
		{"http1.0", func(r *Request) { r.Proto = "HTTP/1.0" }, 400, ""},
		{"no upgrade", func(r *Request) { r.Upgrade = "" }, 400, ""},
		{"upgrade h2c", func(r *Request) { r.Upgrade = "h2c" }, 400, ""},
		{"upgrade list", func(r *Request) { r.Upgrade = "foo, WebSocket" }, 0, ""},
		{"no connection", func(r *Request) { r.Connection = "keep-alive" }, 400, ""},
		{"connection list", func(r *Request) { r.Connection = "keep-alive,upgrade" }, 0, ""},
		{"connection substring", func(r *Request) { r.Connection = "upgrades" }, 400, ""},
		{"version 8", func(r *Request) { r.Version = "8" }, 426, "Sec-WebSocket-Version: 13\r\n"},
		{"version repeated", func(r *Request) { r.Version = "13, 13" }, 426, "Sec-WebSocket-Version: 13\r\n"},
		{"no key", func(r *Request) { r.Key = "" }, 400, ""},
		{"short key", func(r *Request) { r.Key = "dGhlIHNhbXBsZQ==" }, 400, ""},
		{"non-base64 key", func(r *Request) { r.Key = "!!!!!!!!!!!!!!!!!!!!!!==" }, 400, ""},
		{"no host", func(r *Request) { r.Host = "" }, 400, ""},
	}
	for _, c := range cases {
		r := ok()
		c.mod(&r)
		e := r.ValidateUpgrade()
		switch {
		case c.status == 0 && e != nil:
			t.Errorf("%s: unexpected %v", c.name, e)
		case c.status != 0 && (e == nil || e.Status != c.status || e.Header != c.header):
			t.Errorf("%s: got %+v, want %d %q", c.name, e, c.status, c.header)
		}
	}
}

func TestResponses(t *testing.T) {
	got := string(AppendUpgradeResponse(nil, goodKey, "chat"))
	want := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nSec-WebSocket-Protocol: chat\r\n\r\n" // RFC 6455 §1.3
	if got != want {
		t.Fatalf("upgrade response:\n%q\nwant\n%q", got, want)
	}
	if strings.Contains(string(AppendUpgradeResponse(nil, goodKey, "")), "Sec-WebSocket-Protocol") {
		t.Fatal("empty protocol advertised")
	}
	e := &HTTPError{Status: 426, Reason: "unsupported", Header: "Sec-WebSocket-Version: 13\r\n"}
	got = string(AppendHTTPError(nil, e))
	want = "HTTP/1.1 426 Upgrade Required\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 12\r\n" +
		"Connection: close\r\nSec-WebSocket-Version: 13\r\n\r\nunsupported\n"
	if got != want {
		t.Fatalf("error response:\n%q\nwant\n%q", got, want)
	}
	if e.Error() != "wsproto: 426 Upgrade Required: unsupported" {
		t.Fatalf("Error() = %q", e.Error())
	}
	key := make([]byte, 0, 256)
	if a := testing.AllocsPerRun(100, func() { key = AppendUpgradeResponse(key[:0], goodKey, "chat") }); a != 0 {
		t.Fatalf("AppendUpgradeResponse allocates %v", a)
	}
}

func TestQueryValue(t *testing.T) {
	cases := []struct{ q, name, want string }{
		{"a=1&b=2", "b", "2"},
		{"a=1&a=2", "a", "1"},
		{"a", "a", ""},
		{"b=%zz", "b", ""},
		{"tok%65n=x+y", "token", "x y"},
		{"token=%E2%82%AC", "token", "€"},
		{"", "a", ""},
		{"aa=1", "a", ""},
	}
	for _, c := range cases {
		if got := QueryValue(c.q, c.name); got != c.want {
			t.Errorf("QueryValue(%q, %q) = %q, want %q", c.q, c.name, got, c.want)
		}
	}
}

func TestParseRequestAllocs(t *testing.T) {
	var r Request
	r.Protocols = make([]string, 0, 4)
	buf := []byte(goodReq)
	// Kept strings: path, query, host, "WebSocket" (mixed case, not interned),
	// origin, UA, authorization, 2 for X-Forwarded-For (value + join), key,
	// extensions, 2 protocol lines = 13. Method, proto, version and connection
	// values are interned.
	a := testing.AllocsPerRun(100, func() {
		if _, err := ParseRequest(buf, 0, &r); err != nil {
			t.Fatal(err)
		}
	})
	if a > 13 {
		t.Fatalf("ParseRequest: %v allocs, want <= 13", a)
	}
	if a := testing.AllocsPerRun(100, func() { ParseRequest(buf[:len(buf)-2], 0, &r) }); a != 0 {
		t.Fatalf("incomplete head allocates %v", a)
	}
}

// FuzzParseRequest: never panics, never consumes more than it was given, and a head
// that parses in full reads as need-more at every shorter prefix.
func FuzzParseRequest(f *testing.F) {
	f.Add([]byte(goodReq), 0)
	f.Add([]byte(strings.ReplaceAll(goodReq, "\r\n", "\n")), 100)
	f.Add([]byte("GET / HTTP/1.1\r\nHost: a\r\n  fold\r\n\r\n"), 0)
	f.Fuzz(func(t *testing.T, in []byte, max int) {
		max %= 4096
		var r Request
		n, err := ParseRequest(in, max, &r)
		if n < 0 || n > len(in) || (n > 0 && err != nil) {
			t.Fatalf("n=%d err=%v len=%d", n, err, len(in))
		}
		if n == 0 {
			return
		}
		r.ValidateUpgrade()
		for i := range n {
			if pn, perr := ParseRequest(in[:i], max, &r); pn != 0 || perr != nil {
				t.Fatalf("prefix %d of a valid head: n=%d err=%v", i, pn, perr)
			}
		}
	})
}

// TestParseRequestKeepHeader: with KeepHeader, Header is the header lines exactly as
// received; without it, nothing (the usual path copies nothing more).
func TestParseRequestKeepHeader(t *testing.T) {
	f := func(req string, keep bool, want string) {
		t.Helper()
		r := Request{KeepHeader: keep}
		n, err := ParseRequest([]byte(req+"\x81\x80junk"), 0, &r)
		if err != nil || n != len(req) {
			t.Fatalf("n=%d err=%v", n, err)
		}
		if string(r.Header) != want || r.KeepHeader != keep || (!keep && r.Header != nil) {
			t.Fatalf("keep=%v: Header %q, want %q", keep, r.Header, want)
		}
	}
	lines := goodReq[strings.Index(goodReq, "\r\n")+2 : len(goodReq)-2]
	f(goodReq, true, lines)
	f(goodReq, false, "")
	lf := strings.ReplaceAll(goodReq, "\r\n", "\n")
	f(lf, true, strings.ReplaceAll(lines, "\r\n", "\n"))
	f("GET /ws HTTP/1.1\r\n\r\n", true, "")
	f("GET /ws HTTP/1.1\n\n", true, "")
	f("GET /ws HTTP/1.1\r\nA: b\n\r\n", true, "A: b\n")
}
