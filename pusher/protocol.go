package pusher

import (
	"errors"
	"fmt"
	"strconv"
)

// The Pusher Channels protocol, version 7 (docs/pusher.md): every WebSocket text
// message is one JSON object {"event": ..., "channel": ..., "data": ..., "user_id": ...}.
// Server-sent data is mostly a JSON string holding JSON (the client parses twice);
// client-sent data is usually an object, but older and third-party clients send the
// same payloads as a string, so every decoder here accepts both.
//
// Decoding takes the frame's bytes and returns views into them: nothing is copied
// unless a string holds escapes (rare in event and channel names). Encoding appends
// to a caller's buffer, so a loop can reuse one buffer for every frame it builds.

// ProtocolVersion is the protocol this package speaks (?protocol=7).
const ProtocolVersion = 7

// Event names of the protocol.
const (
	EventConnectionEstablished = "pusher:connection_established"
	EventError                 = "pusher:error"
	EventPing                  = "pusher:ping"
	EventPong                  = "pusher:pong"
	EventSubscribe             = "pusher:subscribe"
	EventUnsubscribe           = "pusher:unsubscribe"
	EventSubscriptionError     = "pusher:subscription_error"
	EventSignin                = "pusher:signin"
	EventSigninSuccess         = "pusher:signin_success"
	EventSubscriptionSucceeded = "pusher_internal:subscription_succeeded"
	EventMemberAdded           = "pusher_internal:member_added"
	EventMemberRemoved         = "pusher_internal:member_removed"

	// ClientEventPrefix starts every event a client may send to a channel.
	ClientEventPrefix = "client-"
)

// Close codes and pusher:error codes (the spec's "Error codes"). The range says
// what the client does: 4000–4099 do not reconnect, 4100–4199 reconnect after a
// backoff, 4200–4299 reconnect at once. 4300–4399 are other errors, sent in a
// pusher:error without closing.
const (
	CodeTLSOnly                 = 4000 // the app accepts TLS connections only
	CodeAppNotFound             = 4001 // no app has this key
	CodeAppDisabled             = 4003 // the app is disabled
	CodeOverConnectionQuota     = 4004 // the app is over its connection quota
	CodePathNotFound            = 4005 // the path is not /app/{key}
	CodeInvalidVersion          = 4006 // the version parameter is malformed
	CodeUnsupportedProtocol     = 4007 // protocol is not 7
	CodeNoProtocolVersion       = 4008 // no protocol parameter
	CodeUnauthorized            = 4009 // e.g. a bad pusher:signin
	CodeOverCapacity            = 4100 // try again later, with backoff
	CodeReconnect               = 4200 // generic: reconnect at once
	CodePongNotReceived         = 4201 // a pusher:ping went unanswered
	CodeClosedAfterInactivity   = 4202 // idle too long
	CodeClientEventRateExceeded = 4301 // client event dropped: over the rate limit
)

// CloseAction is what a client does after a close code.
type CloseAction int

const (
	ActionNone      CloseAction = iota // not a Pusher code (below 4000)
	ActionRefused                      // 4000–4099: do not reconnect
	ActionBackoff                      // 4100–4199: reconnect after a delay
	ActionReconnect                    // 4200–4299: reconnect at once
	ActionOther                        // 4300–4399: other errors
)

// CloseActionOf says how the spec's clients treat code.
func CloseActionOf(code int) CloseAction {
	switch {
	case code >= 4000 && code < 4100:
		return ActionRefused
	case code >= 4100 && code < 4200:
		return ActionBackoff
	case code >= 4200 && code < 4300:
		return ActionReconnect
	case code >= 4300 && code < 4400:
		return ActionOther
	}
	return ActionNone
}

// CloseReason is the close frame's reason for the codes above (what pusher-js
// shows its user); "" for other codes.
func CloseReason(code int) string {
	switch code {
	case CodeTLSOnly:
		return "Application only accepts TLS connections"
	case CodeAppNotFound:
		return "Application does not exist"
	case CodeAppDisabled:
		return "Application disabled"
	case CodeOverConnectionQuota:
		return "Application is over connection quota"
	case CodePathNotFound:
		return "Path not found"
	case CodeInvalidVersion:
		return "Invalid version string format"
	case CodeUnsupportedProtocol:
		return "Unsupported protocol version"
	case CodeNoProtocolVersion:
		return "No protocol version supplied"
	case CodeUnauthorized:
		return "Connection is unauthorized"
	case CodeOverCapacity:
		return "Over capacity"
	case CodeReconnect:
		return "Generic reconnect immediately"
	case CodePongNotReceived:
		return "Pong reply not received"
	case CodeClosedAfterInactivity:
		return "Closed after inactivity"
	case CodeClientEventRateExceeded:
		return "Client event rejected due to rate limit"
	}
	return ""
}

// Bounds on what a client sends. MaxEventName and MaxChannelName are the HTTP
// API's limits (pusher-http-node checks the same); the others are longlink's, so
// that nothing a client sends can grow a member list or a signin without bound.
const (
	MaxEventName   = 200  // bytes
	MaxChannelName = 200  // bytes
	MaxUserID      = 128  // bytes
	MaxUserInfo    = 1024 // bytes of raw JSON (Pusher documents 1 KB)
	MaxChannelData = 2048 // bytes of a presence subscription's channel_data
	MaxUserData    = 4096 // bytes of a signin's user_data (with its watchlist)
	maxJSONDepth   = 64   // nesting of any decoded message
)

// Decoding errors. Each is wrapped with the field it concerns; callers test with
// errors.Is and send the text in a pusher:error.
var (
	ErrMalformed   = errors.New("pusher: malformed JSON")
	ErrNoEvent     = errors.New("pusher: message has no event")
	ErrFieldType   = errors.New("pusher: field has the wrong type")
	ErrFieldAbsent = errors.New("pusher: required field missing")
	ErrTooLong     = errors.New("pusher: field too long")
)

// Frame is one decoded client message. Its slices alias the input (or, when a
// string held escapes, a fresh copy) and live as long as the input does.
type Frame struct {
	Event   []byte // unescaped event name, never empty
	Channel []byte // unescaped channel name, nil when absent
	Data    []byte // the data value's raw JSON as sent, nil when absent
}

// ParseFrame decodes a whole client message. It checks the message is one valid
// JSON object with a string event, an optional string channel, and any data.
// Unknown fields are ignored, as clients add their own.
func ParseFrame(b []byte) (Frame, error) {
	var f Frame
	it, err := newObjectIter(b)
	if err != nil {
		return f, err
	}
	for it.next() {
		switch string(it.key) { // no allocation: the compiler compares in place
		case "event":
			if f.Event, err = stringValue(it.val, "event"); err != nil {
				return f, err
			}
		case "channel":
			if f.Channel, err = stringValue(it.val, "channel"); err != nil {
				return f, err
			}
		case "data":
			f.Data = it.val
		}
	}
	if it.err != nil {
		return f, it.err
	}
	if len(f.Event) == 0 {
		return f, ErrNoEvent
	}
	if len(f.Event) > MaxEventName {
		return f, fmt.Errorf("event: %w (%d bytes, at most %d)", ErrTooLong, len(f.Event), MaxEventName)
	}
	if len(f.Channel) > MaxChannelName {
		return f, fmt.Errorf("channel: %w (%d bytes, at most %d)", ErrTooLong, len(f.Channel), MaxChannelName)
	}
	return f, nil
}

// IsClientEvent says whether a frame's event is a client event (client-*).
func IsClientEvent(event []byte) bool {
	return len(event) > len(ClientEventPrefix) && string(event[:len(ClientEventPrefix)]) == ClientEventPrefix
}

// Subscribe is a pusher:subscribe's data: {"channel", "auth", "channel_data"}.
type Subscribe struct {
	Channel     []byte
	Auth        []byte // "key:signature"; empty for public channels
	ChannelData []byte // presence only: the JSON text the signature covers
}

// ParseSubscribe decodes a pusher:subscribe's data, an object or a string holding one.
func ParseSubscribe(data []byte) (Subscribe, error) {
	var s Subscribe
	it, err := dataObject(data)
	if err != nil {
		return s, err
	}
	for it.next() {
		switch string(it.key) {
		case "channel":
			s.Channel, err = stringValue(it.val, "channel")
		case "auth":
			s.Auth, err = optStringValue(it.val, "auth")
		case "channel_data":
			s.ChannelData, err = optStringValue(it.val, "channel_data")
		}
		if err != nil {
			return s, err
		}
	}
	if it.err != nil {
		return s, it.err
	}
	if len(s.Channel) == 0 {
		return s, fmt.Errorf("channel: %w", ErrFieldAbsent)
	}
	if len(s.ChannelData) > MaxChannelData {
		return s, fmt.Errorf("channel_data: %w (%d bytes, at most %d)", ErrTooLong, len(s.ChannelData), MaxChannelData)
	}
	return s, nil
}

// ParseUnsubscribe decodes a pusher:unsubscribe's data and returns its channel.
func ParseUnsubscribe(data []byte) ([]byte, error) {
	it, err := dataObject(data)
	if err != nil {
		return nil, err
	}
	var ch []byte
	for it.next() {
		if string(it.key) == "channel" {
			if ch, err = stringValue(it.val, "channel"); err != nil {
				return nil, err
			}
		}
	}
	if it.err != nil {
		return nil, it.err
	}
	if len(ch) == 0 {
		return nil, fmt.Errorf("channel: %w", ErrFieldAbsent)
	}
	return ch, nil
}

// Signin is a pusher:signin's data: {"auth", "user_data"}.
type Signin struct {
	Auth     []byte // "key:signature" over "socket_id::user::user_data"
	UserData []byte // the JSON text the signature covers
}

// ParseSignin decodes a pusher:signin's data, an object or a string holding one.
func ParseSignin(data []byte) (Signin, error) {
	var s Signin
	it, err := dataObject(data)
	if err != nil {
		return s, err
	}
	for it.next() {
		switch string(it.key) {
		case "auth":
			s.Auth, err = stringValue(it.val, "auth")
		case "user_data":
			s.UserData, err = stringValue(it.val, "user_data")
		}
		if err != nil {
			return s, err
		}
	}
	if it.err != nil {
		return s, it.err
	}
	if len(s.Auth) == 0 {
		return s, fmt.Errorf("auth: %w", ErrFieldAbsent)
	}
	if len(s.UserData) == 0 {
		return s, fmt.Errorf("user_data: %w", ErrFieldAbsent)
	}
	if len(s.UserData) > MaxUserData {
		return s, fmt.Errorf("user_data: %w (%d bytes, at most %d)", ErrTooLong, len(s.UserData), MaxUserData)
	}
	return s, nil
}

// dataObject opens a data value that must be an object, or a string holding one.
func dataObject(data []byte) (objectIter, error) {
	if len(data) == 0 {
		return objectIter{}, fmt.Errorf("data: %w", ErrFieldAbsent)
	}
	if data[0] == '"' {
		inner, err := stringValue(data, "data")
		if err != nil {
			return objectIter{}, err
		}
		data = inner
	}
	it, err := newObjectIter(data)
	if err != nil {
		return it, fmt.Errorf("data: %w", err)
	}
	return it, nil
}

// stringValue returns a JSON string value's text; anything else is ErrFieldType.
func stringValue(v []byte, field string) ([]byte, error) {
	if len(v) < 2 || v[0] != '"' {
		return nil, fmt.Errorf("%s: %w (want a string)", field, ErrFieldType)
	}
	return unquote(v), nil
}

// optStringValue is stringValue that also takes null (pusher-js sends
// channel_data: undefined, which JSON.stringify drops, but other clients send null).
func optStringValue(v []byte, field string) ([]byte, error) {
	if string(v) == "null" {
		return nil, nil
	}
	return stringValue(v, field)
}

// ---- encoders: each appends one complete message to dst ----

// AppendConnectionEstablished appends pusher:connection_established. Its data is a
// JSON string, and activity_timeout must be at least 1: pusher-js refuses a
// handshake without one.
func AppendConnectionEstablished(dst []byte, socketID string, activityTimeoutSec int) []byte {
	dst = append(dst, `{"event":"pusher:connection_established","data":"{\"socket_id\":`...)
	dst = appendStringIn(dst, socketID)
	dst = append(dst, `,\"activity_timeout\":`...)
	dst = strconv.AppendInt(dst, int64(activityTimeoutSec), 10)
	return append(dst, `}"}`...)
}

// AppendPing appends a pusher:ping (the server asks for a pusher:pong).
func AppendPing(dst []byte) []byte {
	return append(dst, `{"event":"pusher:ping","data":{}}`...)
}

// AppendPong appends the answer to a client's pusher:ping.
func AppendPong(dst []byte) []byte {
	return append(dst, `{"event":"pusher:pong","data":{}}`...)
}

// AppendError appends pusher:error with data {"code":code,"message":msg}; code 0
// is written as null, as Pusher does for errors without a code.
func AppendError(dst []byte, code int, msg string) []byte {
	dst = append(dst, `{"event":"pusher:error","data":{"code":`...)
	if code == 0 {
		dst = append(dst, "null"...)
	} else {
		dst = strconv.AppendInt(dst, int64(code), 10)
	}
	dst = append(dst, `,"message":`...)
	dst = appendString(dst, msg)
	return append(dst, "}}"...)
}

// AppendSubscriptionError appends pusher:subscription_error for channel with data
// {"type":typ,"error":msg,"status":status}, the shape pusher-js gives its own
// auth failures, so apps handle both alike. status 0 is left out.
func AppendSubscriptionError(dst []byte, channel, typ, msg string, status int) []byte {
	dst = append(dst, `{"event":"pusher:subscription_error","channel":`...)
	dst = appendString(dst, channel)
	dst = append(dst, `,"data":{"type":`...)
	dst = appendString(dst, typ)
	dst = append(dst, `,"error":`...)
	dst = appendString(dst, msg)
	if status != 0 {
		dst = append(dst, `,"status":`...)
		dst = strconv.AppendInt(dst, int64(status), 10)
	}
	return append(dst, "}}"...)
}

// AppendSubscriptionSucceeded appends pusher_internal:subscription_succeeded for a
// channel that is not a presence channel (data "{}").
func AppendSubscriptionSucceeded(dst []byte, channel string) []byte {
	dst = append(dst, `{"event":"pusher_internal:subscription_succeeded","channel":`...)
	dst = appendString(dst, channel)
	return append(dst, `,"data":"{}"}`...)
}

// Member is one presence channel member: its user_id and its user_info (raw JSON,
// nil for none).
type Member struct {
	ID   string
	Info []byte
}

// AppendPresenceSucceeded appends pusher_internal:subscription_succeeded for a
// presence channel; its data is a JSON string holding
// {"presence":{"ids":[...],"hash":{id: info},"count":n}}. members must hold each
// user once (the caller's member list is keyed by user).
func AppendPresenceSucceeded(dst []byte, channel string, members []Member) []byte {
	dst = append(dst, `{"event":"pusher_internal:subscription_succeeded","channel":`...)
	dst = appendString(dst, channel)
	dst = append(dst, `,"data":"{\"presence\":{\"ids\":[`...)
	for i := range members {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendStringIn(dst, members[i].ID)
	}
	dst = append(dst, `],\"hash\":{`...)
	for i := range members {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendStringIn(dst, members[i].ID)
		dst = append(dst, ':')
		dst = appendRawIn(dst, members[i].Info)
	}
	dst = append(dst, `},\"count\":`...)
	dst = strconv.AppendInt(dst, int64(len(members)), 10)
	return append(dst, `}}"}`...)
}

// AppendMemberAdded appends pusher_internal:member_added, data a JSON string
// holding {"user_id":id,"user_info":info}.
func AppendMemberAdded(dst []byte, channel string, m Member) []byte {
	dst = append(dst, `{"event":"pusher_internal:member_added","channel":`...)
	dst = appendString(dst, channel)
	dst = append(dst, `,"data":"{\"user_id\":`...)
	dst = appendStringIn(dst, m.ID)
	if len(m.Info) > 0 {
		dst = append(dst, `,\"user_info\":`...)
		dst = appendRawIn(dst, m.Info)
	}
	return append(dst, `}"}`...)
}

// AppendMemberRemoved appends pusher_internal:member_removed, data a JSON string
// holding {"user_id":id}.
func AppendMemberRemoved(dst []byte, channel, userID string) []byte {
	dst = append(dst, `{"event":"pusher_internal:member_removed","channel":`...)
	dst = appendString(dst, channel)
	dst = append(dst, `,"data":"{\"user_id\":`...)
	dst = appendStringIn(dst, userID)
	return append(dst, `}"}`...)
}

// AppendSigninSuccess appends pusher:signin_success with data {"user_data":s},
// s being the signed user_data text exactly as the client sent it.
func AppendSigninSuccess(dst []byte, userData []byte) []byte {
	dst = append(dst, `{"event":"pusher:signin_success","data":{"user_data":`...)
	dst = appendString(dst, userData)
	return append(dst, "}}"...)
}

// AppendEvent appends a server event: {"event","channel","data":"<data>"}, data
// being the published text (the HTTP API's data is always a string). channel ""
// is left out.
func AppendEvent(dst []byte, event, channel string, data []byte) []byte {
	dst = append(dst, `{"event":`...)
	dst = appendString(dst, event)
	if channel != "" {
		dst = append(dst, `,"channel":`...)
		dst = appendString(dst, channel)
	}
	dst = append(dst, `,"data":`...)
	dst = appendString(dst, data)
	return append(dst, '}')
}

// AppendClientEvent appends a client event as relayed to the channel's other
// members. data is the sender's data value as raw JSON (pusher-js sends objects;
// clients parse a string payload as JSON anyway), checked by ParseFrame. userID is
// set on presence channels ("" leaves user_id out).
func AppendClientEvent(dst []byte, event, channel string, data []byte, userID string) []byte {
	dst = append(dst, `{"event":`...)
	dst = appendString(dst, event)
	dst = append(dst, `,"channel":`...)
	dst = appendString(dst, channel)
	dst = append(dst, `,"data":`...)
	if len(data) == 0 {
		dst = append(dst, "null"...)
	} else {
		dst = append(dst, data...)
	}
	if userID != "" {
		dst = append(dst, `,"user_id":`...)
		dst = appendString(dst, userID)
	}
	return append(dst, '}')
}
