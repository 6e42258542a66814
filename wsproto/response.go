package wsproto

import (
	"crypto/sha1"
	"encoding/base64"
	"net/http"
	"strconv"
)

// statusText is http.StatusText with a fallback, so a status line is never empty.
func statusText(code int) string {
	if s := http.StatusText(code); s != "" {
		return s
	}
	return "Status " + strconv.Itoa(code)
}

// AppendHTTPResponse appends a complete HTTP/1.1 response: status line,
// Content-Type, Content-Length, "Connection: close", the extra header lines (each
// must end in "\r\n"), a blank line and body. The gateway closes after every non-101
// response, hence Connection: close.
func AppendHTTPResponse(dst []byte, status int, contentType, header string, body []byte) []byte {
	dst = appendHead(dst, status, contentType, header, len(body))
	return append(dst, body...)
}

// AppendHTTPError appends the response for a handshake rejection: a text/plain body
// of e.Reason and a newline, plus e.Header.
func AppendHTTPError(dst []byte, e *HTTPError) []byte {
	dst = appendHead(dst, e.Status, "text/plain; charset=utf-8", e.Header, len(e.Reason)+1)
	return append(append(dst, e.Reason...), '\n')
}

func appendHead(dst []byte, status int, contentType, header string, bodyLen int) []byte {
	dst = append(dst, "HTTP/1.1 "...)
	dst = strconv.AppendInt(dst, int64(status), 10)
	dst = append(dst, ' ')
	dst = append(dst, statusText(status)...)
	dst = append(dst, "\r\nContent-Type: "...)
	dst = append(dst, contentType...)
	dst = append(dst, "\r\nContent-Length: "...)
	dst = strconv.AppendInt(dst, int64(bodyLen), 10)
	dst = append(dst, "\r\nConnection: close\r\n"...)
	dst = append(dst, header...)
	return append(dst, "\r\n"...)
}

// acceptGUID is the RFC 6455 §1.3 constant appended to the client's key.
const acceptGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// AppendUpgradeResponse appends the "101 Switching Protocols" response with
// Sec-WebSocket-Accept computed from key (base64 of SHA-1 of key+GUID, RFC 6455
// §4.2.2) and "Sec-WebSocket-Protocol: <protocol>" if protocol != "". It
// advertises no extension: leaving permessage-deflate out declines it (RFC 7692 §5).
func AppendUpgradeResponse(dst []byte, key, protocol string) []byte {
	return AppendUpgradeResponseExt(dst, key, protocol, "")
}

// AppendUpgradeResponseExt is AppendUpgradeResponse with
// "Sec-WebSocket-Extensions: <extensions>" if extensions != "" (the answer of
// NegotiateDeflate).
func AppendUpgradeResponseExt(dst []byte, key, protocol, extensions string) []byte {
	dst = append(dst, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "...)
	dst = appendAccept(dst, key)
	if protocol != "" {
		dst = append(dst, "\r\nSec-WebSocket-Protocol: "...)
		dst = append(dst, protocol...)
	}
	if extensions != "" {
		dst = append(dst, "\r\nSec-WebSocket-Extensions: "...)
		dst = append(dst, extensions...)
	}
	return append(dst, "\r\n\r\n"...)
}

// appendAccept appends the Sec-WebSocket-Accept value for key, hashing on the stack.
func appendAccept(dst []byte, key string) []byte {
	var in [24 + len(acceptGUID)]byte
	b := append(append(in[:0], key...), acceptGUID...)
	sum := sha1.Sum(b)
	return base64.StdEncoding.AppendEncode(dst, sum[:])
}
