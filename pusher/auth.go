package pusher

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
)

// Channel authorization and user authentication (the spec's "Authentication and
// authorization signatures"). The app's own auth endpoint signs with the app
// secret; the server checks:
//
//	private-, private-encrypted-:  key:HMAC-SHA256-hex(secret, socket_id + ":" + channel)
//	presence-:                     key:HMAC-SHA256-hex(secret, socket_id + ":" + channel + ":" + channel_data)
//	pusher:signin:                 key:HMAC-SHA256-hex(secret, socket_id + "::user::" + user_data)
//
// channel_data and user_data are checked as the exact text the client sent (it is
// what was signed), then parsed. The socket id in the signature ties an auth to
// one connection, so a leaked auth cannot be replayed on another.

// Auth errors. Each is wrapped with the detail; the caller answers with
// pusher:subscription_error (status 401) or, for a signin, closes with 4009.
var (
	ErrAuthMissing   = errors.New("pusher: auth required")
	ErrAuthFormat    = errors.New(`pusher: auth is not "key:signature"`)
	ErrAuthKey       = errors.New("pusher: auth is for another app key")
	ErrAuthSignature = errors.New("pusher: invalid signature")
	ErrBadSocketID   = errors.New(`pusher: socket id is not digits "." digits`)
	ErrChannelData   = errors.New("pusher: bad channel_data")
	ErrUserData      = errors.New("pusher: bad user_data")
)

// maxSocketIDPart bounds each half of a socket id: two uint64s in decimal.
const maxSocketIDPart = 20

// ValidSocketID checks the spec's socket id form, ^\d+\.\d+$ (what the server
// SDKs check before signing), with each part at most 20 digits.
func ValidSocketID(s string) bool {
	dot := -1
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
		case c == '.' && dot < 0:
			dot = i
		default:
			return false
		}
	}
	return dot > 0 && dot < len(s)-1 && dot <= maxSocketIDPart && len(s)-dot-1 <= maxSocketIDPart
}

// AppendSocketID appends the socket id "<a>.<b>". Callers make (a, b) unique in
// the cluster (e.g. a node number and a connection counter): a socket id names
// one connection everywhere, as the HTTP API's socket_id exclusion relies on it.
func AppendSocketID(dst []byte, a, b uint64) []byte {
	dst = strconv.AppendUint(dst, a, 10)
	dst = append(dst, '.')
	return strconv.AppendUint(dst, b, 10)
}

// sign returns HMAC-SHA256(secret, parts joined) as raw bytes.
func sign(secret string, parts ...string) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	for _, p := range parts {
		m.Write([]byte(p))
	}
	return m.Sum(nil)
}

// ChannelAuth returns the auth string an app's auth endpoint gives a client for
// channel: channelData is "" except on presence channels. It is what the
// official server SDKs' authorizeChannel computes (the tests hold its vectors).
func (a *App) ChannelAuth(socketID, channel, channelData string) string {
	var sum []byte
	if channelData == "" {
		sum = sign(a.Secret, socketID, ":", channel)
	} else {
		sum = sign(a.Secret, socketID, ":", channel, ":", channelData)
	}
	return a.Key + ":" + hex.EncodeToString(sum)
}

// UserAuth returns the auth string for a pusher:signin of userData (the SDKs'
// authenticateUser).
func (a *App) UserAuth(socketID, userData string) string {
	return a.Key + ":" + hex.EncodeToString(sign(a.Secret, socketID, "::user::", userData))
}

// checkAuth verifies auth == key:hex(HMAC(secret, parts)) in constant time.
func (a *App) checkAuth(auth []byte, parts ...string) error {
	if len(auth) == 0 {
		return ErrAuthMissing
	}
	n := len(a.Key)
	if len(auth) != n+1+2*sha256.Size || auth[n] != ':' {
		return fmt.Errorf("%w (%d bytes)", ErrAuthFormat, len(auth))
	}
	if !hmac.Equal(auth[:n], []byte(a.Key)) {
		return ErrAuthKey
	}
	var got [sha256.Size]byte
	if _, err := hex.Decode(got[:], auth[n+1:]); err != nil {
		return fmt.Errorf("%w: signature is not hex", ErrAuthFormat)
	}
	if !hmac.Equal(got[:], sign(a.Secret, parts...)) {
		return ErrAuthSignature
	}
	return nil
}

// CheckChannelAuth verifies a subscription's auth for a private,
// private-encrypted or presence channel; channelData is the presence
// channel_data text as sent (nil otherwise).
func (a *App) CheckChannelAuth(socketID, channel string, auth, channelData []byte) error {
	if channelData == nil {
		return a.checkAuth(auth, socketID, ":", channel)
	}
	return a.checkAuth(auth, socketID, ":", channel, ":", string(channelData))
}

// CheckUserAuth verifies a pusher:signin's auth over its user_data text.
func (a *App) CheckUserAuth(socketID string, auth, userData []byte) error {
	return a.checkAuth(auth, socketID, "::user::", string(userData))
}

// ParseChannelData decodes a presence subscription's channel_data:
// {"user_id": string or integer, "user_info": any JSON}. An integer id becomes its
// decimal text (pusher-js keys members by string anyway). user_id is required.
// The Member owns its bytes (nothing aliases b).
func ParseChannelData(b []byte) (Member, error) {
	var m Member
	if len(b) > MaxChannelData {
		return m, fmt.Errorf("%w: %d bytes, at most %d", ErrChannelData, len(b), MaxChannelData)
	}
	it, err := newObjectIter(b)
	if err != nil {
		return m, fmt.Errorf("%w: %w", ErrChannelData, err)
	}
	var id []byte
	for it.next() {
		switch string(it.key) {
		case "user_id":
			if id, err = userIDValue(it.val); err != nil {
				return m, fmt.Errorf("%w: user_id: %w", ErrChannelData, err)
			}
		case "user_info":
			if string(it.val) != "null" {
				m.Info = it.val
			}
		}
	}
	if id == nil {
		return m, fmt.Errorf("%w: user_id: %w", ErrChannelData, ErrFieldAbsent)
	}
	if len(m.Info) > MaxUserInfo {
		return m, fmt.Errorf("%w: user_info: %w (%d bytes, at most %d)", ErrChannelData, ErrTooLong, len(m.Info), MaxUserInfo)
	}
	m.ID = string(id)
	if err := ValidUserID(m.ID); err != nil {
		return m, fmt.Errorf("%w: %w", ErrChannelData, err)
	}
	m.Info = bytes.Clone(m.Info) // members outlive the frame
	return m, nil
}

// userIDValue accepts a string or an integer literal.
func userIDValue(v []byte) ([]byte, error) {
	if v[0] == '"' {
		return unquote(v), nil
	}
	for i, c := range v {
		if !(c >= '0' && c <= '9' || c == '-' && i == 0 && len(v) > 1) {
			return nil, fmt.Errorf("%w (want a string or an integer, got %.20s)", ErrFieldType, v)
		}
	}
	return v, nil
}

// User is a signed-in user, from a pusher:signin's user_data:
// {"id": string, "user_info": any, "watchlist": [string]}.
type User struct {
	ID        string
	Info      []byte   // raw JSON, nil for none
	Watchlist []string // user ids (the watchlist feature; kept, not acted on here)
}

// maxWatchlist bounds a user's watchlist (Pusher documents 100).
const maxWatchlist = 100

// ParseUserData decodes a signin's user_data. id must be a non-empty string,
// as pusher-js itself requires before it treats the signin as done.
func ParseUserData(b []byte) (User, error) {
	var u User
	if len(b) > MaxUserData {
		return u, fmt.Errorf("%w: %d bytes, at most %d", ErrUserData, len(b), MaxUserData)
	}
	it, err := newObjectIter(b)
	if err != nil {
		return u, fmt.Errorf("%w: %w", ErrUserData, err)
	}
	var id []byte
	for it.next() {
		switch string(it.key) {
		case "id":
			if id, err = stringValue(it.val, "id"); err != nil {
				return u, fmt.Errorf("%w: %w", ErrUserData, err)
			}
		case "user_info":
			if string(it.val) != "null" {
				u.Info = it.val
			}
		case "watchlist":
			if u.Watchlist, err = parseWatchlist(it.val); err != nil {
				return u, fmt.Errorf("%w: watchlist: %w", ErrUserData, err)
			}
		}
	}
	if id == nil {
		return u, fmt.Errorf("%w: id: %w", ErrUserData, ErrFieldAbsent)
	}
	if len(u.Info) > MaxUserInfo {
		return u, fmt.Errorf("%w: user_info: %w (%d bytes, at most %d)", ErrUserData, ErrTooLong, len(u.Info), MaxUserInfo)
	}
	u.ID = string(id)
	if err := ValidUserID(u.ID); err != nil {
		return u, fmt.Errorf("%w: %w", ErrUserData, err)
	}
	u.Info = bytes.Clone(u.Info) // the user outlives the frame
	return u, nil
}

// parseWatchlist decodes an array of user id strings.
func parseWatchlist(v []byte) ([]string, error) {
	if string(v) == "null" {
		return nil, nil
	}
	if v[0] != '[' {
		return nil, fmt.Errorf("%w (want an array)", ErrFieldType)
	}
	var ids []string
	i := skipWS(v, 1)
	for i < len(v) && v[i] != ']' {
		end, _ := scanValue(v, i, 0) // validated by the enclosing object's scan
		s, err := stringValue(v[i:end], "watchlist entry")
		if err != nil {
			return nil, err
		}
		if len(ids) == maxWatchlist {
			return nil, fmt.Errorf("%w: more than %d ids", ErrTooLong, maxWatchlist)
		}
		if err := ValidUserID(string(s)); err != nil {
			return nil, err
		}
		ids = append(ids, string(s))
		i = skipWS(v, end)
		if v[i] == ',' {
			i = skipWS(v, i+1)
		}
	}
	return ids, nil
}

// SubscribeError is a refused subscription: it becomes a
// pusher:subscription_error with {"type":Type,"error":Message,"status":Status}.
type SubscribeError struct {
	Type    string // "AuthError" or "InvalidChannel"
	Message string
	Status  int // 401 for auth failures, 400 for a bad name
	Err     error
}

func (e *SubscribeError) Error() string { return "pusher: subscribe refused: " + e.Message }
func (e *SubscribeError) Unwrap() error { return e.Err }

// CheckSubscribe decides a pusher:subscribe on connection socketID, whose
// signed-in user is user (nil if none). It returns the member to add on a
// presence channel (zero Member otherwise) or a *SubscribeError.
//
// A presence subscription normally carries channel_data, signed with it; without
// it the connection must be signed in, the auth signs socket_id:channel only, and
// the member is the signed-in user (pusher-js's flow for signed-in users whose
// auth endpoint returns no channel_data).
func (a *App) CheckSubscribe(socketID string, s *Subscribe, user *User) (Member, error) {
	channel := string(s.Channel)
	if err := ValidChannelName(channel); err != nil {
		return Member{}, &SubscribeError{Type: "InvalidChannel", Message: err.Error(), Status: 400, Err: err}
	}
	refuse := func(err error) (Member, error) {
		return Member{}, &SubscribeError{Type: "AuthError", Message: fmt.Sprintf("Invalid auth for channel %q: %v", channel, err), Status: 401, Err: err}
	}
	switch KindOf(channel) {
	case KindPublic:
		return Member{}, nil
	case KindPrivate, KindPrivateEncrypted:
		if err := a.CheckChannelAuth(socketID, channel, s.Auth, nil); err != nil {
			return refuse(err)
		}
		return Member{}, nil
	case KindPresence:
		if len(s.ChannelData) == 0 {
			if user == nil {
				return refuse(fmt.Errorf("%w: presence channels need channel_data or a signed-in user", ErrAuthMissing))
			}
			if err := a.CheckChannelAuth(socketID, channel, s.Auth, nil); err != nil {
				return refuse(err)
			}
			return Member{ID: user.ID, Info: user.Info}, nil
		}
		if err := a.CheckChannelAuth(socketID, channel, s.Auth, s.ChannelData); err != nil {
			return refuse(err)
		}
		m, err := ParseChannelData(s.ChannelData)
		if err != nil {
			return refuse(err)
		}
		return m, nil
	case KindServerToUser:
		id, _ := ServerToUserID(channel)
		if user == nil || user.ID != id {
			return refuse(fmt.Errorf("%w: %q is only for the signed-in user %q", ErrAuthMissing, channel, id))
		}
		return Member{}, nil
	}
	panic("BUG: pusher: unknown channel kind")
}
