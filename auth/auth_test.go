package auth

import (
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

var secret = []byte("0123456789abcdef0123456789abcdef")

func TestVerify(t *testing.T) {
	v, err := NewVerifier(secret)
	if err != nil {
		t.Fatal(err)
	}
	good, err := Mint(secret, "42", []string{"lobby", "news"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c, err := v.Verify(good)
	if err != nil {
		t.Fatalf("good token: %v", err)
	}
	if c.User != "42" || len(c.Rooms) != 2 || c.Rooms[1] != "news" || time.Until(c.Expires) < 59*time.Minute {
		t.Fatalf("claims = %+v", c)
	}

	forged, _ := Mint([]byte("another-secret-of-32-bytes-long!"), "42", nil, time.Hour)
	expired, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{
		Subject: "42", ExpiresAt: jwt.NewNumericDate(time.Now().Add(-time.Minute)),
	}).SignedString(secret)
	noExp, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{Subject: "42"}).SignedString(secret)
	noSub, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.RegisteredClaims{
		ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour)),
	}).SignedString(secret)
	hs512, _ := jwt.NewWithClaims(jwt.SigningMethodHS512, jwt.RegisteredClaims{
		Subject: "42", ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour)),
	}).SignedString(secret)
	b64 := base64.RawURLEncoding.EncodeToString
	none := b64([]byte(`{"alg":"none","typ":"JWT"}`)) + "." +
		b64([]byte(`{"sub":"42","exp":`+itoa(time.Now().Add(time.Hour).Unix())+`}`)) + "."
	longSub, _ := Mint(secret, strings.Repeat("x", MaxUserID), nil, time.Hour)
	exp := time.Now().Add(time.Hour).Unix()
	signed := func(c jwt.MapClaims) string {
		tok, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
		return tok
	}
	futureIat := signed(jwt.MapClaims{"sub": "42", "exp": exp, "iat": time.Now().Add(Leeway + time.Minute).Unix()})
	futureNbf := signed(jwt.MapClaims{"sub": "42", "exp": exp, "nbf": time.Now().Add(Leeway + time.Minute).Unix()})
	stringExp := signed(jwt.MapClaims{"sub": "42", "exp": itoa(exp)})
	stringNbf := signed(jwt.MapClaims{"sub": "42", "exp": exp, "nbf": itoa(time.Now().Unix())})
	stringIat := signed(jwt.MapClaims{"sub": "42", "exp": exp, "iat": itoa(time.Now().Unix())})
	iatInLeeway := signed(jwt.MapClaims{"sub": "42", "exp": exp, "iat": time.Now().Add(Leeway / 2).Unix()})

	f := func(name, token string, want error) {
		t.Helper()
		_, err := v.Verify(token)
		if !errors.Is(err, want) {
			t.Errorf("%s: err = %v, want %v", name, err, want)
		}
	}
	f("empty", "", ErrMissing)
	f("garbage", "not-a-token", ErrMalformed)
	f("forged", forged, ErrSignature)
	f("expired", expired, ErrExpired)
	f("no exp", noExp, ErrNoExpiry)
	f("no sub", noSub, ErrSubject)
	f("alg none", none, ErrAlgorithm)
	f("HS512", hs512, ErrAlgorithm)
	f("truncated signature", good[:len(good)-4], ErrSignature)
	f("iat in the future", futureIat, ErrNotYet)
	f("nbf in the future", futureNbf, ErrNotYet)
	f("exp as a string", stringExp, ErrMalformed)
	f("nbf as a string", stringNbf, ErrMalformed)
	f("iat as a string", stringIat, ErrMalformed)
	if _, err := v.Verify(iatInLeeway); err != nil {
		t.Errorf("iat within the leeway: %v", err)
	}
	if _, err := v.Verify(longSub); err != nil {
		t.Errorf("sub of exactly MaxUserID bytes: %v", err)
	}
}

func TestNewVerifierShortSecret(t *testing.T) {
	if _, err := NewVerifier([]byte("short")); err == nil {
		t.Fatal("want error for a 5-byte secret")
	}
}

func TestMintRejects(t *testing.T) {
	if _, err := Mint(secret, "", nil, time.Hour); err == nil {
		t.Error("empty user accepted")
	}
	if _, err := Mint(secret, "42", nil, 0); err == nil {
		t.Error("zero ttl accepted")
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
func BenchmarkVerify(b *testing.B) {
	v, _ := NewVerifier(secret)
	tok, _ := Mint(secret, "42", []string{"lobby"}, time.Hour)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(tok); err != nil {
			b.Fatal(err)
		}
	}
}

// TestVerifyConcurrent: the pooled HMAC states are safe to share between loops.
func TestVerifyConcurrent(t *testing.T) {
	v, _ := NewVerifier(secret)
	good, _ := Mint(secret, "42", nil, time.Hour)
	forged, _ := Mint([]byte("another-secret-of-32-bytes-long!"), "42", nil, time.Hour)
	done := make(chan error, 8)
	for g := 0; g < 8; g++ {
		go func() {
			for i := 0; i < 500; i++ {
				if _, err := v.Verify(good); err != nil {
					done <- err
					return
				}
				if _, err := v.Verify(forged); !errors.Is(err, ErrSignature) {
					done <- err
					return
				}
			}
			done <- nil
		}()
	}
	for g := 0; g < 8; g++ {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

func TestReason(t *testing.T) {
	if got := Reason(ErrExpired); got != "token expired" {
		t.Fatalf("Reason(ErrExpired) = %q", got)
	}
	if got := Reason(fmt.Errorf("%w: sub longer than 128 bytes", ErrMalformed)); got != "token malformed: sub longer than 128 bytes" {
		t.Fatalf("Reason(wrapped) = %q", got)
	}
}

// The subscribe claim comes through Verify and MintClaims, and is bounded like rooms.
func TestSubscribeClaim(t *testing.T) {
	v, err := NewVerifier(secret)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := MintClaims(secret, Claims{User: "42", Rooms: []string{"news"}, Subscribe: []string{"chat/lobby", "chat/*"}}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	c, err := v.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.Subscribe, []string{"chat/lobby", "chat/*"}) || !slices.Equal(c.Rooms, []string{"news"}) {
		t.Fatalf("claims = %+v", c)
	}
	many := make([]string, MaxRooms+1)
	for i := range many {
		many[i] = "r"
	}
	for _, bad := range [][]string{many, {""}, {strings.Repeat("x", MaxUserID+1)}} {
		tok, _ := MintClaims(secret, Claims{User: "42", Subscribe: bad}, time.Hour)
		if _, err := v.Verify(tok); !errors.Is(err, ErrMalformed) {
			t.Fatalf("subscribe of %d entries (first %d bytes): err = %v, want malformed", len(bad), len(bad[0]), err)
		}
	}
}
