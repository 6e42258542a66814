package wsproto

import (
	"bytes"
	"encoding/base64"
	"net/url"
	"strconv"
	"strings"
)

// DefaultMaxRequestBytes is the default cap on an HTTP request head (8 KiB).
const DefaultMaxRequestBytes = 8192

// Request is one parsed HTTP/1.x request head. All strings are copies: the input may
// be discarded after ParseRequest returns.
type Request struct {
	Method, Path, RawQuery, Proto string // Path without query; Proto e.g. "HTTP/1.1"
	// Host, Origin and Authorization must appear at most once (400 otherwise: two
	// values would be ambiguous in exactly the places where that matters).
	// UserAgent and ForwardedFor (X-Forwarded-For) are joined with ", " if repeated.
	Host, Origin, UserAgent, Authorization, ForwardedFor string
	// Raw values of Upgrade, Connection, Sec-WebSocket-Version, -Key and
	// -Extensions, joined with ", " if repeated (a repeated Key or Version then
	// fails ValidateUpgrade, as RFC 6455 §4.1 allows each only once).
	Upgrade, Connection, Version, Key, Extensions string
	// Protocols are the Sec-WebSocket-Protocol tokens in order, over all header
	// lines (split on commas, trimmed, empty elements dropped).
	Protocols []string

	// KeepHeader is set by the caller before ParseRequest (which leaves it as it is)
	// to have Header filled; off, nothing more is copied or allocated.
	KeepHeader bool
	// Header is, with KeepHeader, a copy of the header lines as received (after the
	// request line, without the final blank line; CRLF or bare LF line ends), for a
	// consumer that wants every header (the connect hook). It is at most the request
	// head's size, which max bounds.
	Header []byte
}

// HTTPError is a handshake rejection that maps straight onto an HTTP response.
type HTTPError struct {
	Status int
	Reason string
	Header string // extra header lines, each ending in "\r\n"
}

// Error implements error: "wsproto: 400 Bad Request: <reason>".
func (e *HTTPError) Error() string {
	return "wsproto: " + strconv.Itoa(e.Status) + " " + statusText(e.Status) + ": " + e.Reason
}

func badRequest(reason string) *HTTPError { return &HTTPError{Status: 400, Reason: reason} }

// ParseRequest parses one request head at the start of buf into req.
//
// It returns n == 0, err == nil while the head is incomplete and len(buf) <= max;
// n = the length of the head including the final blank line on success. Errors are
// *HTTPError: 431 when no complete head fits in max bytes, 505 for a version other
// than HTTP/1.x, 400 for anything malformed, including a body (Content-Length > 0 or
// any Transfer-Encoding: an upgrade request has none, and refusing it rules out
// request smuggling). max <= 0 means DefaultMaxRequestBytes.
//
// Line endings: CRLF, or a bare LF (RFC 7230 §3.5 lets a recipient accept it; some
// hand-written clients send it). A CR anywhere else is refused. Obsolete line
// folding (a line starting with SP or HTAB) is refused with 400, which RFC 7230
// §3.2.4 allows and which avoids ambiguity with proxies. An empty line before the
// request line is refused too (RFC 7230 §3.5 only says a server SHOULD skip it; a
// WebSocket client never sends one). Whitespace between a field
// name and the colon is refused (RFC 7230 §3.2.4 requires it).
//
// Complete lines are checked as they arrive, so a garbage request line fails at
// once instead of waiting for the handshake timeout; nothing is allocated until the
// head is complete, and then only the strings kept in req (common values such as
// "GET", "HTTP/1.1", "websocket", "Upgrade" and "13" are not allocated at all).
// Unknown headers are skipped without allocation.
func ParseRequest(buf []byte, max int, req *Request) (n int, err error) {
	if max <= 0 {
		max = DefaultMaxRequestBytes
	}
	limit := buf
	if len(limit) > max {
		limit = limit[:max]
	}
	// Pass 1: syntax of each complete line, and where the head ends.
	pos, first := 0, true
	for {
		i := bytes.IndexByte(limit[pos:], '\n')
		if i < 0 {
			if len(buf) > max {
				return 0, &HTTPError{Status: 431, Reason: "request head larger than " + strconv.Itoa(max) + " bytes"}
			}
			return 0, nil
		}
		line, ok := trimCR(limit[pos : pos+i])
		pos += i + 1
		if !ok {
			return 0, badRequest("stray CR in request head")
		}
		if first {
			if _, _, _, herr := splitRequestLine(line); herr != nil {
				return 0, herr
			}
			first = false
			continue
		}
		if len(line) == 0 {
			break
		}
		if _, _, herr := splitHeader(line); herr != nil {
			return 0, herr
		}
	}
	n = pos

	// Pass 2: the head is complete and well-formed; copy out what we keep.
	*req = Request{Protocols: req.Protocols[:0], KeepHeader: req.KeepHeader}
	lines := buf[:n]
	i := bytes.IndexByte(lines, '\n')
	reqLine, _ := trimCR(lines[:i])
	lines = lines[i+1:]
	if req.KeepHeader {
		// Everything up to the blank line that ends the head ("\r\n" or "\n").
		end := len(lines) - 1
		if end > 0 && lines[end-1] == '\r' {
			end--
		}
		req.Header = append([]byte(nil), lines[:end]...)
	}
	method, target, proto, _ := splitRequestLine(reqLine)
	req.Method = intern(method)
	req.Proto = intern(proto)
	if q := bytes.IndexByte(target, '?'); q >= 0 {
		req.Path, req.RawQuery = string(target[:q]), string(target[q+1:])
	} else {
		req.Path = intern(target)
	}
	for len(lines) > 0 {
		i := bytes.IndexByte(lines, '\n')
		line, _ := trimCR(lines[:i])
		lines = lines[i+1:]
		if len(line) == 0 {
			break
		}
		// Pass 1 validated the line: only split it.
		c := bytes.IndexByte(line, ':')
		name, value := line[:c], trimOWS(line[c+1:])
		if herr := req.setHeader(name, value); herr != nil {
			return 0, herr
		}
	}
	return n, nil
}

// trimCR strips the CR of a CRLF line ending and reports false when a CR is left.
func trimCR(line []byte) ([]byte, bool) {
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	return line, bytes.IndexByte(line, '\r') < 0
}

// splitRequestLine splits "METHOD SP target SP HTTP/x.y" (RFC 7230 §3.1.1).
func splitRequestLine(line []byte) (method, target, proto []byte, err *HTTPError) {
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 <= 0 || !isToken(line[:sp1]) {
		return nil, nil, nil, badRequest("malformed request line")
	}
	rest := line[sp1+1:]
	sp2 := bytes.IndexByte(rest, ' ')
	if sp2 <= 0 {
		return nil, nil, nil, badRequest("malformed request line")
	}
	method, target, proto = line[:sp1], rest[:sp2], rest[sp2+1:]
	for _, c := range target {
		if c <= ' ' || c == 0x7F {
			return nil, nil, nil, badRequest("malformed request target")
		}
	}
	if len(proto) != 8 || string(proto[:5]) != "HTTP/" || !isDigit(proto[5]) || proto[6] != '.' || !isDigit(proto[7]) {
		return nil, nil, nil, badRequest("malformed HTTP version")
	}
	if proto[5] != '1' {
		return nil, nil, nil, &HTTPError{Status: 505, Reason: "only HTTP/1.x is supported"}
	}
	return method, target, proto, nil
}

// splitHeader splits "name: value", trimming optional whitespace around value.
func splitHeader(line []byte) (name, value []byte, err *HTTPError) {
	if line[0] == ' ' || line[0] == '\t' {
		return nil, nil, badRequest("obsolete header line folding")
	}
	c := bytes.IndexByte(line, ':')
	if c <= 0 || !isToken(line[:c]) {
		return nil, nil, badRequest("malformed header line")
	}
	value = trimOWS(line[c+1:])
	for _, b := range value {
		if (b < ' ' && b != '\t') || b == 0x7F {
			return nil, nil, badRequest("control character in header value")
		}
	}
	return line[:c], value, nil
}

// trimOWS strips optional whitespace (SP, HTAB) at both ends.
func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// isToken reports whether b is a non-empty RFC 7230 token (tchar+).
func isToken(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if c >= 0x80 || !tchar[c] {
			return false
		}
	}
	return true
}

var tchar = func() (t [128]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

// interned are values common enough in upgrade requests that copying them per
// connection would be waste.
var interned = [...]string{"GET", "HTTP/1.1", "HTTP/1.0", "/", "websocket", "Upgrade", "upgrade", "keep-alive, Upgrade", "13"}

func intern(b []byte) string {
	for _, s := range interned {
		if string(b) == s {
			return s
		}
	}
	return string(b)
}

// setHeader stores one header the gateway cares about; others are ignored.
func (r *Request) setHeader(name, value []byte) *HTTPError {
	var dst *string
	join := true
	// Dispatch on length first: most headers a browser sends match no case and
	// are rejected by one integer compare.
	switch len(name) {
	case 4:
		if equalFold(name, "Host") {
			dst, join = &r.Host, false
		}
	case 6:
		if equalFold(name, "Origin") {
			dst, join = &r.Origin, false
		}
	case 7:
		if equalFold(name, "Upgrade") {
			dst = &r.Upgrade
		}
	case 10:
		switch {
		case equalFold(name, "User-Agent"):
			dst = &r.UserAgent
		case equalFold(name, "Connection"):
			dst = &r.Connection
		}
	case 13:
		if equalFold(name, "Authorization") {
			dst, join = &r.Authorization, false
		}
	case 14:
		if equalFold(name, "Content-Length") {
			if n, err := strconv.ParseUint(string(value), 10, 63); err != nil || n > 0 {
				return badRequest("request body not supported")
			}
		}
	case 15:
		if equalFold(name, "X-Forwarded-For") {
			dst = &r.ForwardedFor
		}
	case 17:
		switch {
		case equalFold(name, "Sec-WebSocket-Key"):
			dst = &r.Key
		case equalFold(name, "Transfer-Encoding"):
			return badRequest("request body not supported")
		}
	case 21:
		if equalFold(name, "Sec-WebSocket-Version") {
			dst = &r.Version
		}
	case 22:
		if equalFold(name, "Sec-WebSocket-Protocol") {
			r.addProtocols(value)
		}
	case 24:
		if equalFold(name, "Sec-WebSocket-Extensions") {
			dst = &r.Extensions
		}
	}
	if dst == nil {
		return nil
	}
	switch {
	case *dst == "":
		// An empty first value is indistinguishable from an absent one; a later
		// duplicate then simply fills it.
		*dst = intern(value)
	case !join:
		return badRequest("duplicate " + string(name) + " header")
	case len(value) > 0:
		*dst = *dst + ", " + string(value)
	}
	return nil
}

// addProtocols appends the comma-separated tokens of one Sec-WebSocket-Protocol
// line. The line is copied once and the tokens are substrings of that copy.
func (r *Request) addProtocols(value []byte) {
	if len(value) == 0 {
		return
	}
	s := string(value)
	for s != "" {
		tok, rest, _ := strings.Cut(s, ",")
		if tok = strings.Trim(tok, " \t"); tok != "" {
			r.Protocols = append(r.Protocols, tok)
		}
		s = rest
	}
}

// equalFold compares an ASCII header name with a canonical one, case-insensitively,
// without allocating.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		c, d := b[i], s[i]
		if c == d {
			continue
		}
		if l := d | 0x20; c|0x20 != l || l < 'a' || l > 'z' {
			return false
		}
	}
	return true
}

// ValidateUpgrade checks the RFC 6455 §4.2.1 requirements for a WebSocket upgrade
// and returns the rejection to send, or nil.
func (r *Request) ValidateUpgrade() *HTTPError {
	switch {
	case r.Method != "GET":
		return &HTTPError{Status: 405, Reason: "WebSocket upgrade requires GET", Header: "Allow: GET\r\n"}
	case r.Proto == "HTTP/1.0":
		return badRequest("WebSocket upgrade requires HTTP/1.1")
	case !hasToken(r.Upgrade, "websocket"):
		return badRequest("missing Upgrade: websocket")
	case !hasToken(r.Connection, "upgrade"):
		return badRequest("missing Connection: Upgrade")
	case r.Version != "13":
		return &HTTPError{Status: 426, Reason: "unsupported Sec-WebSocket-Version", Header: "Sec-WebSocket-Version: 13\r\n"}
	case !validKey(r.Key):
		return badRequest("invalid Sec-WebSocket-Key")
	case r.Host == "":
		return badRequest("missing Host")
	}
	return nil
}

// hasToken reports whether the comma-separated list contains token, ignoring case.
func hasToken(list, token string) bool {
	for list != "" {
		var tok string
		tok, list, _ = strings.Cut(list, ",")
		if strings.EqualFold(strings.Trim(tok, " \t"), token) {
			return true
		}
	}
	return false
}

// validKey reports whether key is base64 for exactly 16 bytes (RFC 6455 §4.1).
func validKey(key string) bool {
	if len(key) != 24 {
		return false
	}
	var dst [18]byte
	n, err := base64.StdEncoding.Decode(dst[:], []byte(key))
	return err == nil && n == 16
}

// QueryValue returns the first value of name in a raw query string,
// percent-decoded ("" if absent or badly encoded).
func QueryValue(rawQuery, name string) string {
	for rawQuery != "" {
		var pair string
		pair, rawQuery, _ = strings.Cut(rawQuery, "&")
		key, value, _ := strings.Cut(pair, "=")
		if key != name {
			if !strings.ContainsAny(key, "%+") {
				continue
			}
			if k, err := url.QueryUnescape(key); err != nil || k != name {
				continue
			}
		}
		v, err := url.QueryUnescape(value)
		if err != nil {
			return ""
		}
		return v
	}
	return ""
}
