package bench

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"longlink/auth"
)

const testSecret = "0123456789abcdef0123"

// The hand-built tokens must be accepted by the gateway's own verifier, or
// every bench connection would fail with http_401.
func TestMintedTokenVerifiesWithGateway(t *testing.T) {
	v, err := auth.NewVerifier([]byte(testSecret))
	if err != nil {
		t.Fatal(err)
	}
	m := newJWTMinter([]byte(testSecret), "bench-")
	now := time.Now()
	for _, user := range []int{0, 7, 42, 1234567} {
		tok := string(m.mint(user, now.Unix(), now.Add(time.Hour).Unix()))
		c, err := v.Verify(tok)
		if err != nil {
			t.Fatalf("user %d: gateway rejected %q: %v", user, tok, err)
		}
		if want := "bench-" + strconv.Itoa(user); c.User != want {
			t.Fatalf("user %d: got sub %q, want %q", user, c.User, want)
		}
		if c.Expires.Unix() != now.Add(time.Hour).Unix() {
			t.Fatalf("user %d: exp %v, want %v", user, c.Expires, now.Add(time.Hour))
		}
	}
	// An expired token and one signed with another secret are refused, so
	// the test above is not passing a verifier that accepts anything.
	expired := string(m.mint(1, now.Add(-2*time.Hour).Unix(), now.Add(-time.Hour).Unix()))
	if _, err := v.Verify(expired); !errors.Is(err, auth.ErrExpired) {
		t.Fatalf("expired token: got %v, want ErrExpired", err)
	}
	other := newJWTMinter([]byte("another-secret-of-20b"), "bench-")
	if _, err := v.Verify(string(other.mint(1, now.Unix(), now.Add(time.Hour).Unix()))); !errors.Is(err, auth.ErrSignature) {
		t.Fatalf("token with another secret: got %v, want ErrSignature", err)
	}
}

func TestMintedTokenMatchesGolangJWT(t *testing.T) {
	// A prefix that needs JSON escaping checks the claims are valid JSON.
	for _, prefix := range []string{"bench-", `we"ird\pre<fix>`} {
		m := newJWTMinter([]byte(testSecret), prefix)
		tok := string(m.mint(99, 1700000000, 4100000000))
		parsed, err := jwt.Parse(tok, func(*jwt.Token) (any, error) { return []byte(testSecret), nil },
			jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired())
		if err != nil {
			t.Fatalf("prefix %q: golang-jwt rejected %q: %v", prefix, tok, err)
		}
		mc := parsed.Claims.(jwt.MapClaims)
		if mc["sub"] != prefix+"99" || mc["iat"] != 1700000000.0 || mc["exp"] != 4100000000.0 {
			t.Fatalf("prefix %q: claims %v", prefix, mc)
		}
		if parsed.Header["typ"] != "JWT" || parsed.Header["alg"] != "HS256" {
			t.Fatalf("header %v", parsed.Header)
		}
		// The header bytes are the ones golang-jwt writes.
		ss, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{}).SigningString()
		if err != nil {
			t.Fatal(err)
		}
		if want, _, _ := strings.Cut(ss, "."); want != jwtHeader {
			t.Fatalf("header %q, golang-jwt writes %q", jwtHeader, want)
		}
	}
}

// The event loop reuses one user's token for consecutive connections and
// mints a new one when the user changes; the cached bytes must follow.
func TestLoopTokenPerUser(t *testing.T) {
	l, err := newLoop()
	if err != nil {
		t.Fatal(err)
	}
	defer l.closeAll()
	if err := l.setSpec(OpenSpec{Targets: []string{"127.0.0.1:9"}, Count: 4, ConnsPerUser: 2,
		UserPrefix: "u", TokenSecret: testSecret}); err != nil {
		t.Fatal(err)
	}
	v, err := auth.NewVerifier([]byte(testSecret))
	if err != nil {
		t.Fatal(err)
	}
	for _, user := range []int{0, 0, 1, 5, 5} {
		c, err := v.Verify(string(l.token(user)))
		if err != nil || c.User != "u"+strconv.Itoa(user) {
			t.Fatalf("user %d: got %q, %v", user, c.User, err)
		}
	}
}

// BenchmarkMintToken is the per-user token cost on the connect path.
func BenchmarkMintToken(b *testing.B) {
	m := newJWTMinter([]byte(testSecret), "bench-")
	now := time.Now().Unix()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		m.mint(i, now, now+86400)
	}
}

// BenchmarkMintTokenGolangJWT is what minting cost before, for comparison.
func BenchmarkMintTokenGolangJWT(b *testing.B) {
	now := time.Now()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		claims := jwt.MapClaims{"sub": "bench-" + strconv.Itoa(i), "iat": now.Unix(), "exp": now.Add(24 * time.Hour).Unix()}
		if _, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(testSecret)); err != nil {
			b.Fatal(err)
		}
	}
}
