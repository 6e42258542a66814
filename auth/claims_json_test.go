package auth

import (
	"bytes"
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// claimsInputs are claim sets for the differential test and the fuzz seed corpus:
// the shapes the fast path takes and each way out of it.
var claimsInputs = []string{
	// Fast path.
	`{}`,
	` { } `,
	`{"sub":"42","exp":1700000000}`,
	`{"rooms":["lobby","news"],"sub":"42","exp":1700003600,"iat":1700000000}`,
	`{"sub":"42","exp":1700000000,"nbf":0,"iss":"auth.example","jti":"a-b-c"}`,
	"{\n\t\"sub\" : \"42\" ,\r\n \"rooms\" : [ \"a\" , \"b\" ] , \"exp\" : 1 }",
	`{"sub":"","rooms":[],"exp":999999999999999}`,
	`{"sub":"Zoë","rooms":["café","日本"],"exp":1700000000}`,
	`{"aud":"gw","sub":"42"}`,
	`{"aud":["gw","api"],"sub":"42"}`,
	`{"aud":[],"sub":"42"}`,
	`{"sub":"1","sub":"2","exp":1,"exp":2,"rooms":["a","b","c"],"rooms":["d"]}`,
	`{"aud":["x","y"],"aud":"z"}`,
	`{"sub":"42","exp":1700000000,"subscribe":["chat/lobby","chat/*"],"rooms":["a"]}`,
	`{"subscribe":[],"sub":"42"}`,
	`{"subscribe":["a"],"subscribe":["b","c"]}`,
	`{"name":"Ann","admin":true,"beta":false,"x":null,"n":-1.5e+3,"m":0,"k":12.25E-1}`,
	// Fallbacks.
	`{"sub":"4\u0032","exp":1700000000}`,
	`{"sub":"a\"b"}`,
	`{"rooms":["a\/b"]}`,
	`{"exp":1700000000.5}`,
	`{"exp":1.7e9}`,
	`{"exp":-1}`,
	`{"exp":1000000000000000}`,
	`{"exp":9007199254740993}`,
	`{"exp":1e400}`,
	`{"exp":"1700000000"}`,
	`{"nbf":"1","sub":"42"}`,
	`{"iat":"x"}`,
	`{"EXP":"1"}`,
	`{"\u0065xp":"1"}`,
	`{"exp":1,"exp":"2"}`,
	`{"exp":"2","exp":1}`,
	`{"exp":{}}`,
	`{"iat":true}`,
	`{"nbf":[1]}`,
	`{"exp":"1","sub":42}`,
	`{"extra":{"exp":"1"}}`,
	`{"exp":null,"sub":null,"rooms":null,"aud":null}`,
	`{"sub":42}`,
	`{"rooms":"lobby"}`,
	`{"rooms":["a",1]}`,
	`{"rooms":[["a"]]}`,
	`{"subscribe":"chat/*"}`,
	`{"subscribe":["a\/b"]}`,
	`{"subscribe":[1]}`,
	`{"subscribe":null}`,
	`{"SUBSCRIBE":["x"]}`,
	`{"aud":["a",1]}`,
	`{"aud":5}`,
	`{"SUB":"42","Exp":1700000000,"ROOMS":["a"]}`,
	"{\"\u017fub\":\"42\"}",
	"{\"naïve\":1}",
	`{"extra":{"a":1},"sub":"42"}`,
	`{"extra":[1,2],"sub":"42"}`,
	"{\"sub\":\"\xff\"}",
	"{\"sub\":\"\xed\xa0\x80\"}",
	`[]`,
	`"sub"`,
	`null`,
	`1`,
	`true`,
	// Not JSON: only reachable by calling UnmarshalJSON directly.
	``,
	`{`,
	`{"sub":"42",}`,
	`{"sub":"42"} x`,
	`{"exp":01}`,
	`{"n":1.}`,
	`{"n":-}`,
	`{"n":1e}`,
	`{"sub" "42"}`,
	`{"rooms":["a" "b"]}`,
	`{"rooms":["a",]}`,
	`{"t":tru}`,
	"{\"sub\":\"a\tb\"}",
}

// decodedClaims is everything a decode yields that callers can see: tokenClaims
// minus the storage behind its date pointers (reflect.DeepEqual follows pointers).
type decodedClaims struct {
	Rooms, Subscribe []string
	Reg              jwt.RegisteredClaims
}

// nonNumericDate reports whether data is a valid JSON object with a key that
// encoding/json would match to exp, nbf or iat and a value that is neither a number
// nor null. It walks the tokens rather than decoding into a struct, so it does not
// share its logic with checkDateTypes.
func nonNumericDate(data []byte) bool {
	if !json.Valid(data) {
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return false
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return false
		}
		key := tok.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return false
		}
		isDate := strings.EqualFold(key, "exp") || strings.EqualFold(key, "nbf") || strings.EqualFold(key, "iat")
		if isDate && !(v[0] == '-' || (v[0] >= '0' && v[0] <= '9') || string(v) == "null") {
			return true
		}
	}
	return false
}

// referenceDecode is what UnmarshalJSON must do: encoding/json's result, except that a
// non-numeric date is errDateNotNumber and leaves tc as it was.
func referenceDecode(data []byte, tc *tokenClaims) error {
	if nonNumericDate(data) {
		return errDateNotNumber
	}
	return json.Unmarshal(data, (*plainClaims)(tc))
}

// decodeBoth decodes data with the fast UnmarshalJSON and with referenceDecode,
// each into a copy of start, and fails t if the results or errors differ.
func decodeBoth(t *testing.T, data []byte, start func() *tokenClaims) {
	t.Helper()
	check := func(how string, fast *tokenClaims, fastErr error, plain *tokenClaims, plainErr error) {
		t.Helper()
		if (fastErr == nil) != (plainErr == nil) || (fastErr != nil && fastErr.Error() != plainErr.Error()) {
			t.Fatalf("%s %q: fast err = %v, encoding/json err = %v", how, data, fastErr, plainErr)
		}
		got := decodedClaims{fast.Rooms, fast.Subscribe, fast.RegisteredClaims}
		want := decodedClaims{plain.Rooms, plain.Subscribe, plain.RegisteredClaims}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s %q:\nfast           %#v\nencoding/json  %#v", how, data, got, want)
		}
	}

	// The way golang-jwt calls it: json.Unmarshal validates data, then calls the method.
	fast, plain := start(), start()
	fastErr := json.Unmarshal(data, fast)
	plainErr := referenceDecode(data, plain)
	check("json.Unmarshal", fast, fastErr, plain, plainErr)

	// A direct call also gets input encoding/json has not validated.
	fast, plain = start(), start()
	fastErr = fast.UnmarshalJSON(data)
	plainErr = referenceDecode(data, plain)
	check("UnmarshalJSON", fast, fastErr, plain, plainErr)
}

func zeroClaims() *tokenClaims { return new(tokenClaims) }

// filledClaims returns claims with every field set, so decoding has to merge the way
// encoding/json does: absent claims stay, date pointers are written through.
func filledClaims() *tokenClaims {
	return &tokenClaims{
		Rooms:     []string{"old1", "old2", "old3"},
		Subscribe: []string{"olds/*"},
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer: "old-iss", Subject: "old-sub", ID: "old-jti",
			Audience:  jwt.ClaimStrings{"old-aud"},
			ExpiresAt: jwt.NewNumericDate(time.Unix(11, 0)),
			NotBefore: jwt.NewNumericDate(time.Unix(22, 0)),
			IssuedAt:  jwt.NewNumericDate(time.Unix(33, 0)),
		},
	}
}

func TestClaimsUnmarshalMatchesEncodingJSON(t *testing.T) {
	for _, in := range claimsInputs {
		decodeBoth(t, []byte(in), zeroClaims)
		decodeBoth(t, []byte(in), filledClaims)
	}
}

// TestClaimsUnmarshalTimePrecision: dates are truncated to jwt.TimePrecision as
// NumericDate.UnmarshalJSON does.
func TestClaimsUnmarshalTimePrecision(t *testing.T) {
	defer func(p time.Duration) { jwt.TimePrecision = p }(jwt.TimePrecision)
	for _, p := range []time.Duration{time.Millisecond, time.Hour} {
		jwt.TimePrecision = p
		decodeBoth(t, []byte(`{"exp":1700001234,"nbf":1700000001,"iat":59}`), zeroClaims)
	}
}

// TestClaimsFastPathTaken: the shapes tokens really have must not fall back, or the
// optimisation is silently gone; the differential test alone cannot tell.
func TestClaimsFastPathTaken(t *testing.T) {
	tok, err := Mint(secret, "42", []string{"lobby", "news"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	var tc tokenClaims
	p := jwt.NewParser()
	if _, _, err := p.ParseUnverified(tok, &tc); err != nil {
		t.Fatal(err)
	}
	minted, err := json.Marshal(tc)
	if err != nil {
		t.Fatal(err)
	}
	f := func(in string, want bool) {
		t.Helper()
		var fc fastClaims
		if got := fc.parse([]byte(in)); got != want {
			t.Errorf("fast path for %s = %v, want %v", in, got, want)
		}
	}
	f(string(minted), true)
	f(`{"iss":"auth","sub":"u-1","aud":["gw"],"exp":1700003600,"nbf":1700000000,"iat":1700000000,"jti":"x","rooms":["a"],"name":"Ann"}`, true)
	f(`{"sub":"42","exp":1700003600,"subscribe":["chat/lobby","chat/*"]}`, true)
	f(`{"sub":"4\u0032"}`, false)
	f(`{"exp":1.5}`, false)
	f(`{"Sub":"42"}`, false)
	f(`{"x":{}}`, false)
}

// TestVerifyFallbackClaims: a token whose claims need encoding/json still verifies.
func TestVerifyFallbackClaims(t *testing.T) {
	v, err := NewVerifier(secret)
	if err != nil {
		t.Fatal(err)
	}
	exp := time.Now().Add(time.Hour).Unix()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub":   "4\u00e9\"2",
		"exp":   float64(exp) + 0.5,
		"rooms": []string{"a\\b"},
		"meta":  map[string]any{"k": 1},
	}).SignedString(secret)
	if err != nil {
		t.Fatal(err)
	}
	c, err := v.Verify(tok)
	if err != nil {
		t.Fatal(err)
	}
	if c.User != "4é\"2" || !slices.Equal(c.Rooms, []string{"a\\b"}) || c.Expires.Unix() != exp {
		t.Fatalf("claims = %+v", c)
	}
}

// TestVerifyReusesNothing: the pooled claims are reset, so one token's rooms or
// expiry never show up in the next token's result.
func TestVerifyReusesNothing(t *testing.T) {
	v, err := NewVerifier(secret)
	if err != nil {
		t.Fatal(err)
	}
	withRooms, _ := Mint(secret, "1", []string{"a", "b"}, time.Hour)
	noExp, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "2"}).SignedString(secret)
	plain, _ := Mint(secret, "3", nil, 2*time.Hour)
	for i := 0; i < 3; i++ {
		first, err := v.Verify(withRooms)
		if err != nil || len(first.Rooms) != 2 {
			t.Fatalf("with rooms: %+v, %v", first, err)
		}
		if _, err := v.Verify(noExp); err != ErrNoExpiry {
			t.Fatalf("no exp after a token with exp: err = %v", err)
		}
		c, err := v.Verify(plain)
		if err != nil || c.User != "3" || c.Rooms != nil || time.Until(c.Expires) < time.Hour {
			t.Fatalf("plain after rooms: %+v, %v", c, err)
		}
		if first.Rooms[0] != "a" || first.Rooms[1] != "b" {
			t.Fatalf("earlier result changed: %+v", first)
		}
	}
}

func FuzzClaimsUnmarshal(f *testing.F) {
	for _, in := range claimsInputs {
		f.Add([]byte(in))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 4096 || strings.Count(string(data), "[")+strings.Count(string(data), "{") > 100 {
			t.Skip("claims are small; deep nesting only exercises encoding/json")
		}
		decodeBoth(t, data, zeroClaims)
		decodeBoth(t, data, filledClaims)
	})
}
