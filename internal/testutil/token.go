package testutil

import (
	"testing"
	"time"

	"longlink/auth"
)

// Token mints a client token for user in rooms, signed with secret, valid for an
// hour.
func Token(t testing.TB, secret, user string, rooms ...string) string {
	t.Helper()
	tok, err := auth.Mint([]byte(secret), user, rooms, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
