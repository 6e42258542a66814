package bench

import (
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"strconv"
)

// The client side of RFC 6455 that the event loop needs: one upgrade request,
// checking the 101 answer, and decoding unmasked server frames from a byte
// slice without blocking. Everything here is allocation-free on the hot path.

const (
	opCont   = 0x0
	opText   = 0x1
	opBinary = 0x2
	opClose  = 0x8
	opPing   = 0x9
	opPong   = 0xA
)

// wsKey is the Sec-WebSocket-Key every bench connection sends. RFC 6455 asks
// for a random nonce to defeat caching proxies; a load tester talks straight
// to the gateway, and a fixed key lets the expected accept value be computed
// once instead of one SHA-1 per connection.
const wsKey = "bG9uZ2xpbmstYmVuY2gtMQ=="

var wsAccept = func() []byte {
	s := sha1.Sum([]byte(wsKey + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return []byte(base64.StdEncoding.EncodeToString(s[:]))
}()

// appendUpgrade appends the HTTP upgrade request for path ?token=.
func appendUpgrade(b []byte, host string, token []byte) []byte {
	return appendUpgradeV(b, host, token, false, nil)
}

// subprotocolV2 is what a v2 client offers in Sec-WebSocket-Protocol and the
// server selects.
const subprotocolV2 = "longlink.v2"

// appendUpgradeV appends the upgrade request; v2 offers the longlink.v2
// subprotocol and since, already URL-encoded, resumes from those positions.
func appendUpgradeV(b []byte, host string, token []byte, v2 bool, since []byte) []byte {
	b = append(b, "GET /ws?token="...)
	b = append(b, token...)
	if len(since) > 0 {
		b = append(b, "&since="...)
		b = append(b, since...)
	}
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, host...)
	b = append(b, "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: "...)
	b = append(b, wsKey...)
	if v2 {
		b = append(b, "\r\nSec-WebSocket-Protocol: "+subprotocolV2...)
	}
	b = append(b, "\r\nSec-WebSocket-Version: 13\r\n\r\n"...)
	return b
}

// selectedProtocol returns the Sec-WebSocket-Protocol of an upgrade
// response head (as parseUpgradeResponse accepted it), "" when absent.
func selectedProtocol(b []byte) string {
	end := bytes.Index(b, []byte("\r\n\r\n"))
	if end < 0 {
		return ""
	}
	v, ok := headerValue(b[:end+2], "sec-websocket-protocol:")
	if !ok {
		return ""
	}
	return string(bytes.TrimSpace(v[:bytes.Index(v, []byte("\r\n"))]))
}

var errIncomplete = errors.New("incomplete")

// parseUpgradeResponse inspects the response head in b. It returns the
// length of the head (bytes after it are frames), or errIncomplete, or a
// failure reason such as "http_401" or "bad_accept".
func parseUpgradeResponse(b []byte) (int, string, error) {
	end := bytes.Index(b, []byte("\r\n\r\n"))
	if end < 0 {
		return 0, "", errIncomplete
	}
	head := b[:end+2]
	// "HTTP/1.1 101 Switching Protocols"
	if len(head) < 12 || !bytes.HasPrefix(head, []byte("HTTP/1.")) {
		return 0, "bad_response", errors.New("not an HTTP response")
	}
	code := head[9:12]
	if !bytes.Equal(code, []byte("101")) {
		return 0, "http_" + string(code), errors.New("upgrade refused")
	}
	v, ok := headerValue(head, "sec-websocket-accept:")
	if !ok {
		return 0, "bad_accept", errors.New("no Sec-WebSocket-Accept")
	}
	v = v[:bytes.Index(v, []byte("\r\n"))]
	if !bytes.Equal(bytes.TrimSpace(v), wsAccept) {
		return 0, "bad_accept", errors.New("wrong Sec-WebSocket-Accept")
	}
	return end + 4, "", nil
}

// headerValue returns the rest of the line after name (lower case, with
// the colon) in head, whose lines end in CRLF; names match in any case.
// It compares in place rather than lower-casing a copy of the head for
// every connection.
func headerValue(head []byte, name string) ([]byte, bool) {
	for len(head) > 0 {
		i := bytes.Index(head, []byte("\r\n"))
		if i < 0 {
			return nil, false
		}
		head = head[i+2:]
		if len(head) >= len(name) && bytes.EqualFold(head[:len(name)], []byte(name)) {
			return head[len(name):], true
		}
	}
	return nil, false
}

// frame is one decoded server frame; payload aliases the input.
type frame struct {
	fin     bool
	op      byte
	payload []byte
}

var errMasked = errors.New("server frame is masked")

// nextFrame decodes the frame at the start of b. It returns the number of
// bytes consumed, or 0 and errIncomplete when b holds only part of a frame.
func nextFrame(b []byte) (frame, int, error) {
	if len(b) < 2 {
		return frame{}, 0, errIncomplete
	}
	f := frame{fin: b[0]&0x80 != 0, op: b[0] & 0x0F}
	if b[1]&0x80 != 0 {
		return f, 0, errMasked
	}
	n := uint64(b[1] & 0x7F)
	hdr := 2
	switch n {
	case 126:
		if len(b) < 4 {
			return frame{}, 0, errIncomplete
		}
		n = uint64(b[2])<<8 | uint64(b[3])
		hdr = 4
	case 127:
		if len(b) < 10 {
			return frame{}, 0, errIncomplete
		}
		n = 0
		for _, c := range b[2:10] {
			n = n<<8 | uint64(c)
		}
		hdr = 10
	}
	if n > maxFrame {
		return f, 0, errFrameTooLarge
	}
	total := hdr + int(n)
	if len(b) < total {
		return frame{}, 0, errIncomplete
	}
	f.payload = b[hdr:total]
	return f, total, nil
}

// maxFrame bounds what one connection may buffer for a partial frame.
const maxFrame = 1 << 20

var errFrameTooLarge = errors.New("frame larger than 1 MiB")

// appendClientFrame appends a masked, final frame (client frames must be
// masked). The key only has to be unpredictable to proxies; a per-loop
// counter-derived key is plenty for a load tester talking to the gateway.
func appendClientFrame(b []byte, op byte, payload []byte, key [4]byte) []byte {
	if len(payload) > 125 {
		payload = payload[:125] // control frames carry at most 125 bytes
	}
	b = append(b, 0x80|op, 0x80|byte(len(payload)))
	b = append(b, key[:]...)
	for i, c := range payload {
		b = append(b, c^key[i&3])
	}
	return b
}

// parseStamp reads the "<unix nanos>:" prefix bench payloads start with.
// ok is false for payloads not produced by bench.
func parseStamp(p []byte) (ns int64, ok bool) {
	i := 0
	for ; i < len(p) && i < 20; i++ {
		c := p[i]
		if c == ':' {
			break
		}
		if c < '0' || c > '9' {
			return 0, false
		}
		ns = ns*10 + int64(c-'0')
	}
	if i == 0 || i >= len(p) || p[i] != ':' {
		return 0, false
	}
	return ns, true
}

// appendPayload builds the push payload "<unix nanos>:<seq>".
func appendPayload(b []byte, stampNs int64, seq uint64) []byte {
	b = strconv.AppendInt(b, stampNs, 10)
	b = append(b, ':')
	return strconv.AppendUint(b, seq, 10)
}
