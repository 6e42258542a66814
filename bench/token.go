package bench

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"hash"
	"strconv"
)

// jwtHeader is the encoded header of every token bench mints. golang-jwt
// writes the same bytes for SigningMethodHS256.
var jwtHeader = base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))

// jwtMinter signs the HS256 client tokens the event loop sends, by hand:
// golang-jwt's MapClaims, reflection-driven JSON and fresh HMAC per token
// cost about 5 µs and a dozen allocations each, CPU taken from the gateway
// sharing the machine. Here the claims are appended into reused buffers and
// one HMAC state is reset per token: about 1 µs and no allocation (see
// BenchmarkMintToken). Not safe for concurrent use: one per event loop.
type jwtMinter struct {
	mac    hash.Hash
	subPre []byte // `{"sub":"` + JSON-escaped user prefix, without the closing quote
	rooms  []byte // `,"rooms":[...]` when every token names rooms (push --room); else empty
	claims []byte
	tok    []byte
	sum    []byte
}

func newJWTMinter(secret []byte, userPrefix string) *jwtMinter {
	q, _ := json.Marshal(userPrefix) // a string always encodes
	m := &jwtMinter{mac: hmac.New(sha256.New, secret)}
	m.subPre = append(append(m.subPre, `{"sub":`...), q[:len(q)-1]...)
	return m
}

// withRoom makes every token list room in its rooms claim.
func (m *jwtMinter) withRoom(room string) *jwtMinter {
	if room != "" {
		q, _ := json.Marshal(room)
		m.rooms = append(append([]byte(`,"rooms":[`), q...), ']')
	}
	return m
}

// mint returns the token for user userPrefix+user with the given iat and
// exp (unix seconds). The result aliases the minter's buffer and is valid
// until the next call.
func (m *jwtMinter) mint(user int, iat, exp int64) []byte {
	c := append(m.claims[:0], m.subPre...)
	c = strconv.AppendInt(c, int64(user), 10)
	c = append(c, `","iat":`...)
	c = strconv.AppendInt(c, iat, 10)
	c = append(c, `,"exp":`...)
	c = strconv.AppendInt(c, exp, 10)
	c = append(c, m.rooms...)
	c = append(c, '}')
	m.claims = c

	enc := base64.RawURLEncoding
	t := append(m.tok[:0], jwtHeader...)
	t = append(t, '.')
	t = enc.AppendEncode(t, c)
	m.mac.Reset()
	m.mac.Write(t) // the signing input is header.claims
	m.sum = m.mac.Sum(m.sum[:0])
	t = append(t, '.')
	t = enc.AppendEncode(t, m.sum)
	m.tok = t
	return t
}
