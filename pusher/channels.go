package pusher

import (
	"errors"
	"fmt"
	"strings"
)

// Channel names and kinds, and the rules for client events. The prefixes decide
// the kind, longest first: "private-encrypted-" is a private channel whose data
// the server relays as-is (it never holds the key), and "#server-to-user-<id>" is
// the channel pusher-js subscribes to after a signin to get server-to-user events.

// Kind is a channel's kind, from its name.
type Kind uint8

const (
	KindPublic           Kind = iota // no auth
	KindPrivate                      // private-: auth over socket_id:channel
	KindPresence                     // presence-: auth over socket_id:channel:channel_data, members
	KindPrivateEncrypted             // private-encrypted-: auth like private; payloads end-to-end encrypted
	KindServerToUser                 // #server-to-user-<id>: only the signed-in user <id>
)

// Channel name prefixes.
const (
	PrivatePrefix          = "private-"
	PresencePrefix         = "presence-"
	PrivateEncryptedPrefix = "private-encrypted-"
	ServerToUserPrefix     = "#server-to-user-"
)

func (k Kind) String() string {
	switch k {
	case KindPublic:
		return "public"
	case KindPrivate:
		return "private"
	case KindPresence:
		return "presence"
	case KindPrivateEncrypted:
		return "private-encrypted"
	case KindServerToUser:
		return "server-to-user"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// NeedsAuth says whether subscribing needs an auth signature.
func (k Kind) NeedsAuth() bool {
	return k == KindPrivate || k == KindPresence || k == KindPrivateEncrypted
}

// KindOf returns the kind of a channel name (valid or not).
func KindOf(name string) Kind {
	switch {
	case strings.HasPrefix(name, PrivateEncryptedPrefix):
		return KindPrivateEncrypted
	case strings.HasPrefix(name, PrivatePrefix):
		return KindPrivate
	case strings.HasPrefix(name, PresencePrefix):
		return KindPresence
	case strings.HasPrefix(name, ServerToUserPrefix):
		return KindServerToUser
	}
	return KindPublic
}

// Channel name errors.
var (
	ErrChannelEmpty    = errors.New("pusher: empty channel name")
	ErrChannelTooLong  = errors.New("pusher: channel name longer than 200 bytes")
	ErrChannelChars    = errors.New("pusher: channel name may hold only A-Z a-z 0-9 _ - = @ , . ;")
	ErrChannelReserved = errors.New("pusher: channel names starting with # are reserved")
	ErrBadUserID       = errors.New("pusher: bad user id")
)

// ValidChannelName checks a channel name against the spec's rules: 1 to 200
// bytes of [A-Za-z0-9_\-=@,.;]. Names starting with '#' are reserved for the
// server; the one such name a client may use is "#server-to-user-<id>", whose id
// follows ValidUserID instead (ids such as e-mail addresses are common).
func ValidChannelName(name string) error {
	if name == "" {
		return ErrChannelEmpty
	}
	if len(name) > MaxChannelName {
		return fmt.Errorf("%w (%d)", ErrChannelTooLong, len(name))
	}
	if name[0] == '#' {
		id, ok := strings.CutPrefix(name, ServerToUserPrefix)
		if !ok {
			return fmt.Errorf("%w: %q", ErrChannelReserved, name)
		}
		if err := ValidUserID(id); err != nil {
			return fmt.Errorf("%q: %w", name, err)
		}
		return nil
	}
	for i := 0; i < len(name); i++ {
		if !channelByte[name[i]] {
			return fmt.Errorf("%w: %q has %q at offset %d", ErrChannelChars, name, name[i], i)
		}
	}
	return nil
}

var channelByte = func() (t [256]bool) {
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range "_-=@,.;" {
		t[c] = true
	}
	return t
}()

// ServerToUserChannel returns the channel that carries server-to-user events for
// userID.
func ServerToUserChannel(userID string) string { return ServerToUserPrefix + userID }

// ServerToUserID returns the user a "#server-to-user-" channel is for.
func ServerToUserID(channel string) (string, bool) {
	return strings.CutPrefix(channel, ServerToUserPrefix)
}

// ValidUserID checks a user id (from presence channel_data or a signin's
// user_data): 1 to MaxUserID bytes, no control characters. The spec puts no
// limit; this one keeps member lists and channel names bounded.
func ValidUserID(id string) error {
	if id == "" {
		return fmt.Errorf("%w: empty", ErrBadUserID)
	}
	if len(id) > MaxUserID {
		return fmt.Errorf("%w: %d bytes, at most %d", ErrBadUserID, len(id), MaxUserID)
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x20 || id[i] == 0x7f {
			return fmt.Errorf("%w: control character at offset %d", ErrBadUserID, i)
		}
	}
	return nil
}

// ClientEventError is a client event the server refuses: it becomes a
// pusher:error (Code 0 is sent as null, as Pusher does) and the event is dropped.
// The connection stays open.
type ClientEventError struct {
	Code    int
	Message string
}

func (e *ClientEventError) Error() string { return "pusher: client event refused: " + e.Message }

// CheckClientEvent applies the spec's rules to a client event before it is
// relayed: the app enables client events; the name starts with client- and is at
// most 200 bytes; the channel is private or presence (encrypted channels carry
// only what the server relays from the HTTP API: pusher-js refuses to trigger on
// them, and the server cannot check what it cannot read); the sender is
// subscribed to it. The caller then relays to the channel's other members only
// (never back to the sender), adding user_id on presence channels, after its rate
// limiter allowed the event.
func CheckClientEvent(app *App, event, channel string, subscribed bool) error {
	if !app.ClientEvents {
		return &ClientEventError{Message: "To send client events, you must enable this feature in the Settings page of your dashboard."}
	}
	if !strings.HasPrefix(event, ClientEventPrefix) || len(event) == len(ClientEventPrefix) {
		return &ClientEventError{Message: fmt.Sprintf("Client event name %q must start with %q", event, ClientEventPrefix)}
	}
	if len(event) > MaxEventName {
		return &ClientEventError{Message: fmt.Sprintf("Client event name longer than %d bytes", MaxEventName)}
	}
	if k := KindOf(channel); k != KindPrivate && k != KindPresence {
		return &ClientEventError{Message: fmt.Sprintf("Client event rejected - only supported on private and presence channels, not on %s channel %q", k, channel)}
	}
	if !subscribed {
		return &ClientEventError{Message: fmt.Sprintf("Client event rejected - not subscribed to %q", channel)}
	}
	return nil
}

// ErrClientEventRate is the error sent (pusher:error 4301) for a client event over
// the connection's rate; the event is dropped and the connection stays open.
var ErrClientEventRate = &ClientEventError{Code: CodeClientEventRateExceeded, Message: "Client event rejected due to rate limit"}

// ClientEventLimiter is one connection's client event rate limit: a token bucket
// of Rate tokens a second holding at most Rate. It is 16 bytes, has no timer and
// is owned by whoever owns the connection (the loop); its zero value refuses
// nothing until Reset.
type ClientEventLimiter struct {
	tokens int32 // in milli-events
	rate   int32 // events per second; 0 means unlimited
	last   int64 // unix milliseconds of the last refill
}

// Reset sets the rate (events a second, at most 1e6; 0 or less disables the
// limit) and fills the bucket.
func (l *ClientEventLimiter) Reset(rate int, nowMillis int64) {
	if rate <= 0 {
		*l = ClientEventLimiter{}
		return
	}
	rate = min(rate, 1_000_000)
	*l = ClientEventLimiter{tokens: int32(rate) * 1000, rate: int32(rate), last: nowMillis}
}

// Allow takes one event's token at nowMillis (a coarse clock is fine) and says
// whether the event may go.
func (l *ClientEventLimiter) Allow(nowMillis int64) bool {
	if l.rate == 0 {
		return true
	}
	full := int64(l.rate) * 1000
	if d := nowMillis - l.last; d > 0 {
		// rate tokens a second is rate milli-tokens a millisecond; past a second
		// the bucket is full anyway (and d*rate cannot overflow).
		d = min(d, 1000)
		l.tokens = int32(min(int64(l.tokens)+d*int64(l.rate), full))
		l.last = nowMillis
	}
	if l.tokens < 1000 {
		return false
	}
	l.tokens -= 1000
	return true
}
