package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"hash"
	"sync"
	"unsafe"

	"github.com/golang-jwt/jwt/v5"
)

// hmacKey is the key the Verifier hands golang-jwt: the secret plus a pool of HMAC
// states for it, so checking a signature allocates nothing. Handshakes arrive in
// storms (a node restart reconnects every client), and the library's HS256 builds a
// new HMAC, two SHA-256 states and a copy of the token per call; that garbage is what
// a connect storm leaves in the RSS.
type hmacKey struct {
	secret []byte
	pool   sync.Pool // of *hmacState
}

// hmacState is a pooled HMAC with room for its sum: h.Sum is an interface call, so a
// sum buffer on the stack would escape and cost an allocation per signature check.
type hmacState struct {
	h   hash.Hash
	sum [sha256.Size]byte
}

func newHMACKey(secret []byte) *hmacKey {
	k := &hmacKey{secret: secret}
	k.pool.New = func() any { return &hmacState{h: hmac.New(sha256.New, k.secret)} }
	return k
}

// pooledHS256 is golang-jwt's HS256 with pooled HMAC states for *hmacKey keys. It is
// registered under "HS256" through the library's extension point
// (jwt.RegisterSigningMethod); the parsing, header checks and claim validation stay
// the library's. Any other key type goes to the library's own implementation.
type pooledHS256 struct{}

func (pooledHS256) Alg() string { return jwt.SigningMethodHS256.Alg() }

func (pooledHS256) Verify(signingString string, sig []byte, key any) error {
	k, ok := key.(*hmacKey)
	if !ok {
		return jwt.SigningMethodHS256.Verify(signingString, sig, key)
	}
	st := k.pool.Get().(*hmacState)
	st.h.Reset()
	// hmac does not keep the bytes it is given, so the string is not copied.
	st.h.Write(unsafe.Slice(unsafe.StringData(signingString), len(signingString)))
	ok = hmac.Equal(sig, st.h.Sum(st.sum[:0]))
	k.pool.Put(st)
	if !ok {
		return jwt.ErrSignatureInvalid
	}
	return nil
}

func (pooledHS256) Sign(signingString string, key any) ([]byte, error) {
	if k, ok := key.(*hmacKey); ok {
		key = k.secret
	}
	return jwt.SigningMethodHS256.Sign(signingString, key)
}

func init() {
	jwt.RegisterSigningMethod("HS256", func() jwt.SigningMethod { return pooledHS256{} })
}
