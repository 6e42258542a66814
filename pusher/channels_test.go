package pusher

import (
	"errors"
	"strings"
	"testing"
)

func TestValidChannelName(t *testing.T) {
	for name, want := range map[string]error{
		"news":                              nil,
		"private-chat.room=1;a@b,c_d":       nil,
		"presence-ABC-xyz-09":               nil,
		"private-encrypted-x":               nil,
		strings.Repeat("a", 200):            nil,
		"#server-to-user-alice@example.com": nil,
		"#server-to-user-Jöhn Doe":          nil, // user ids follow ValidUserID
		"":                                  ErrChannelEmpty,
		strings.Repeat("a", 201):            ErrChannelTooLong,
		"a b":                               ErrChannelChars,
		"a/b":                               ErrChannelChars,
		"a:b":                               ErrChannelChars,
		"é":                                 ErrChannelChars,
		"a\x00":                             ErrChannelChars,
		"a#b":                               ErrChannelChars,
		"#news":                             ErrChannelReserved,
		"#server-to-user-":                  ErrBadUserID,
		"#server-to-user-a\nb":              ErrBadUserID,
	} {
		if err := ValidChannelName(name); !errors.Is(err, want) || (want == nil) != (err == nil) {
			t.Errorf("ValidChannelName(%.40q) = %v, want %v", name, err, want)
		}
	}
}

func TestKindOf(t *testing.T) {
	for name, want := range map[string]Kind{
		"news": KindPublic, "privatex": KindPublic, "private": KindPublic, "presence": KindPublic,
		"private-a": KindPrivate, "private-": KindPrivate, "private-encrypted": KindPrivate,
		"private-encrypted-a": KindPrivateEncrypted, "presence-a": KindPresence,
		"#server-to-user-1": KindServerToUser, "presence-private-a": KindPresence,
	} {
		if got := KindOf(name); got != want {
			t.Errorf("KindOf(%q) = %s, want %s", name, got, want)
		}
	}
	if !KindPrivate.NeedsAuth() || !KindPresence.NeedsAuth() || !KindPrivateEncrypted.NeedsAuth() || KindPublic.NeedsAuth() || KindServerToUser.NeedsAuth() {
		t.Error("NeedsAuth")
	}
	if id, ok := ServerToUserID(ServerToUserChannel("u1")); !ok || id != "u1" {
		t.Errorf("ServerToUserID = %q %v", id, ok)
	}
}

func TestCheckClientEvent(t *testing.T) {
	on := &App{ClientEvents: true}
	off := &App{}
	f := func(app *App, event, channel string, subscribed bool, wantOK bool, msg string) {
		t.Helper()
		err := CheckClientEvent(app, event, channel, subscribed)
		var ce *ClientEventError
		if wantOK != (err == nil) || (err != nil && (!errors.As(err, &ce) || !strings.Contains(ce.Message, msg))) {
			t.Errorf("CheckClientEvent(%q, %q, %v) = %v, want ok=%v (%q)", event, channel, subscribed, err, wantOK, msg)
		}
	}
	f(on, "client-typing", "private-a", true, true, "")
	f(on, "client-typing", "presence-a", true, true, "")
	f(off, "client-typing", "private-a", true, false, "enable")
	f(on, "typing", "private-a", true, false, "must start with")
	f(on, "client-", "private-a", true, false, "must start with")
	f(on, "pusher:subscribe", "private-a", true, false, "must start with")
	f(on, "client-"+strings.Repeat("x", 200), "private-a", true, false, "longer than")
	f(on, "client-typing", "news", true, false, "only supported on private and presence")
	f(on, "client-typing", "private-encrypted-a", true, false, "private-encrypted")
	f(on, "client-typing", "#server-to-user-1", true, false, "server-to-user")
	f(on, "client-typing", "private-a", false, false, "not subscribed")
	if ErrClientEventRate.Code != 4301 {
		t.Error("rate limit code")
	}
}

func TestClientEventLimiter(t *testing.T) {
	var l ClientEventLimiter
	l.Reset(10, 1000)
	n := 0
	for l.Allow(1000) {
		n++
		if n > 100 {
			t.Fatal("no limit")
		}
	}
	if n != 10 {
		t.Fatalf("burst %d, want 10", n)
	}
	if l.Allow(1050) {
		t.Error("allowed half a token")
	}
	if !l.Allow(1100) || l.Allow(1100) {
		t.Error("100 ms should refill exactly one token")
	}
	// A long pause refills the bucket, never beyond its size.
	n = 0
	for l.Allow(1 << 50) {
		n++
	}
	if n != 10 {
		t.Errorf("after a pause: burst %d, want 10", n)
	}
	// A clock going back refills nothing and breaks nothing.
	if l.Allow(0) {
		t.Error("allowed on a clock going back")
	}
	// Sustained: 10 a second over 10 s, one every 50 ms, gives 10 + 100.
	l.Reset(10, 0)
	n = 0
	for ms := int64(0); ms < 10_000; ms += 50 {
		if l.Allow(ms) {
			n++
		}
	}
	if n < 105 || n > 110 {
		t.Errorf("sustained: %d in 10 s at 10/s", n)
	}
	var unlimited ClientEventLimiter
	unlimited.Reset(0, 0)
	for i := 0; i < 1000; i++ {
		if !unlimited.Allow(0) {
			t.Fatal("rate 0 limits")
		}
	}
	l.Reset(MaxClientEventRate*10, 0) // clamped, no overflow
	if !l.Allow(0) {
		t.Error("huge rate refuses")
	}
}
