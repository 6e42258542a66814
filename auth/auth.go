package auth

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Errors a handshake maps onto a short 401 reason. They are sentinels so callers can
// count failures by kind.
var (
	ErrMissing   = errors.New("auth: token missing")
	ErrMalformed = errors.New("auth: token malformed")
	ErrAlgorithm = errors.New("auth: token algorithm not allowed (want HS256)")
	ErrSignature = errors.New("auth: token signature invalid")
	ErrExpired   = errors.New("auth: token expired")
	ErrNoExpiry  = errors.New("auth: token has no exp claim")
	ErrNotYet    = errors.New("auth: token not valid yet")
	ErrSubject   = errors.New("auth: token has no sub claim")
)

// Reason words a Verify error for the client that sent the token: its text without
// this package's "auth: " prefix ("token expired"), as the 401 of a refused
// handshake says it. The prefix is this package's to add and so to take off.
func Reason(err error) string { return strings.TrimPrefix(err.Error(), "auth: ") }

// Leeway is the clock skew allowed between the service that mints tokens and the
// gateway, the same for every time claim: a token is refused once exp is more than
// Leeway in the past, and while nbf or iat is more than Leeway in the future. It is
// small on purpose: each second of it lets an expired token in for a second more.
const Leeway = 5 * time.Second

// MaxUserID bounds the user id length so a hostile token cannot make the gateway hold
// large keys in its session tables.
const MaxUserID = 128

// MaxRooms bounds the rooms claim for the same reason, and the subscribe claim.
const MaxRooms = 64

// Claims is what the gateway needs from a verified token.
type Claims struct {
	User  string
	Rooms []string
	// Subscribe lists the rooms the client may subscribe its connection to itself
	// (the subscribe claim): names, or patterns "prefix*" that match every room
	// starting with prefix. What a pattern may cover is the node's rule.
	Subscribe []string
	Expires   time.Time
}

type tokenClaims struct {
	Rooms     []string `json:"rooms,omitempty"`
	Subscribe []string `json:"subscribe,omitempty"`
	jwt.RegisteredClaims

	// dates backs ExpiresAt, NotBefore and IssuedAt when the fast path in
	// claims_json.go decodes them, so a pooled tokenClaims decodes a token without
	// allocating them. encoding/json ignores unexported fields.
	dates [3]jwt.NumericDate
}

// claimsPool recycles the tokenClaims Verify decodes into: golang-jwt takes them as an
// interface, so one would otherwise escape to the heap per handshake. Verify copies
// out what it returns (the strings and the rooms slice are fresh allocations, the
// expiry a time.Time value) before it puts the claims back.
var claimsPool = sync.Pool{New: func() any { return new(tokenClaims) }}

// Verifier checks tokens against one HS256 secret.
type Verifier struct {
	key    *hmacKey
	parser *jwt.Parser
}

// NewVerifier returns a Verifier for secret. The secret must be at least 16 bytes:
// shorter HMAC keys are guessable.
func NewVerifier(secret []byte) (*Verifier, error) {
	if len(secret) < 16 {
		return nil, fmt.Errorf("auth: token secret is %d bytes; want at least 16", len(secret))
	}
	return &Verifier{
		key: newHMACKey(append([]byte(nil), secret...)),
		parser: jwt.NewParser(
			jwt.WithValidMethods([]string{"HS256"}),
			jwt.WithExpirationRequired(),
			// golang-jwt checks iat only when asked; docs/protocol.md promises it is
			// checked, and a future iat means a minting clock is wrong or a token
			// was forged with a valid key for later use.
			jwt.WithIssuedAt(),
			jwt.WithLeeway(Leeway),
		),
	}, nil
}

// Verify checks token and returns its claims, or one of the sentinel errors above.
func (v *Verifier) Verify(token string) (Claims, error) {
	if token == "" {
		return Claims{}, ErrMissing
	}
	tc := claimsPool.Get().(*tokenClaims)
	defer func() {
		*tc = tokenClaims{}
		claimsPool.Put(tc)
	}()
	_, err := v.parser.ParseWithClaims(token, tc, v.keyFor)
	if err != nil {
		return Claims{}, classify(err)
	}
	if tc.Subject == "" {
		return Claims{}, ErrSubject
	}
	if len(tc.Subject) > MaxUserID {
		return Claims{}, fmt.Errorf("%w: sub longer than %d bytes", ErrMalformed, MaxUserID)
	}
	if len(tc.Rooms) > MaxRooms {
		return Claims{}, fmt.Errorf("%w: more than %d rooms", ErrMalformed, MaxRooms)
	}
	if len(tc.Subscribe) > MaxRooms {
		return Claims{}, fmt.Errorf("%w: more than %d subscribe entries", ErrMalformed, MaxRooms)
	}
	for _, r := range tc.Rooms {
		if r == "" || len(r) > MaxUserID {
			return Claims{}, fmt.Errorf("%w: room names must be 1..%d bytes", ErrMalformed, MaxUserID)
		}
	}
	for _, r := range tc.Subscribe {
		if r == "" || len(r) > MaxUserID {
			return Claims{}, fmt.Errorf("%w: subscribe entries must be 1..%d bytes", ErrMalformed, MaxUserID)
		}
	}
	c := Claims{User: tc.Subject, Rooms: tc.Rooms, Subscribe: tc.Subscribe}
	if tc.ExpiresAt != nil {
		c.Expires = tc.ExpiresAt.Time
	}
	return c, nil
}

func (v *Verifier) keyFor(t *jwt.Token) (any, error) {
	return v.key, nil
}

func classify(err error) error {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return ErrMalformed
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		if strings.Contains(err.Error(), "signing method") {
			return ErrAlgorithm
		}
		return ErrSignature
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return ErrAlgorithm
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return ErrNoExpiry
	case errors.Is(err, jwt.ErrTokenExpired):
		return ErrExpired
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return ErrNotYet
	}
	return fmt.Errorf("%w: %v", ErrMalformed, err)
}

// Mint returns a signed token for user, valid for ttl, with optional rooms. It is for
// tests, `longlink token` and the demo page; production tokens come from the
// application's own auth service, signed with the same secret.
func Mint(secret []byte, user string, rooms []string, ttl time.Duration) (string, error) {
	return MintClaims(secret, Claims{User: user, Rooms: rooms}, ttl)
}

// MintClaims is Mint with every claim the gateway reads (c.Expires is ignored: ttl
// sets it).
func MintClaims(secret []byte, c Claims, ttl time.Duration) (string, error) {
	user, rooms := c.User, c.Rooms
	if user == "" {
		return "", errors.New("auth: user id is empty")
	}
	if len(user) > MaxUserID {
		return "", fmt.Errorf("auth: user id longer than %d bytes", MaxUserID)
	}
	if ttl <= 0 {
		return "", fmt.Errorf("auth: ttl %v must be positive", ttl)
	}
	now := time.Now()
	tc := tokenClaims{
		Rooms:     rooms,
		Subscribe: c.Subscribe,
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   user,
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
		},
	}
	return jwt.NewWithClaims(jwt.SigningMethodHS256, tc).SignedString(secret)
}
