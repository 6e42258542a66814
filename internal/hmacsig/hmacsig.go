// Package hmacsig is the one signature longlink puts on what it sends to services
// (webhooks, the connect hook, business back-ends): "sha256=" and the hex HMAC-SHA256,
// under a shared secret, of the bytes given, in order.
package hmacsig

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
)

// Sign returns "sha256=<hex HMAC-SHA256 of parts, concatenated>".
func Sign(secret []byte, parts ...[]byte) string {
	m := hmac.New(sha256.New, secret)
	for _, p := range parts {
		m.Write(p)
	}
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}
