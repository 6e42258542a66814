package pusher

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestParseFrame(t *testing.T) {
	ok := func(in, event, channel, data string) {
		t.Helper()
		f, err := ParseFrame([]byte(in))
		if err != nil {
			t.Fatalf("ParseFrame(%s): %v", in, err)
		}
		if string(f.Event) != event || string(f.Channel) != channel || string(f.Data) != data {
			t.Errorf("ParseFrame(%s) = %q %q %q, want %q %q %q", in, f.Event, f.Channel, f.Data, event, channel, data)
		}
	}
	bad := func(in string, want error) {
		t.Helper()
		if _, err := ParseFrame([]byte(in)); !errors.Is(err, want) {
			t.Errorf("ParseFrame(%.60q) = %v, want %v", in, err, want)
		}
	}
	// What pusher-js sends (send_event: JSON.stringify({event, data, channel})).
	ok(`{"event":"pusher:ping","data":{}}`, "pusher:ping", "", "{}")
	ok(`{"event":"client-typing","data":{"who":"me"},"channel":"private-a"}`, "client-typing", "private-a", `{"who":"me"}`)
	ok(`{"event":"pusher:subscribe","data":{"auth":"","channel":"news"}}`, "pusher:subscribe", "", `{"auth":"","channel":"news"}`)
	// Other clients: data as a string, whitespace, unknown fields, escapes.
	ok(" {\n\"data\" : \"{\\\"channel\\\":\\\"a\\\"}\" ,\t\"event\":\"pusher:subscribe\", \"x\":[1,{\"y\":null}]}\r\n",
		"pusher:subscribe", "", `"{\"channel\":\"a\"}"`)
	ok(`{"event":"client-\u00e9","channel":"private-\u0061","data":null}`, "client-é", "private-a", "null")
	ok(`{"event":"e","data":-12.5e+3}`, "e", "", "-12.5e+3")
	ok(`{"event":"a","event":"b"}`, "b", "", "") // the last duplicate wins, as in encoding/json
	ok(`{"ev\u0065nt":"a","\u0063hannel":"c"}`, "a", "c", "")
	bad(`{"event":""}`, ErrNoEvent)
	bad(`{"channel":"a"}`, ErrNoEvent)
	bad(`{}`, ErrNoEvent)
	bad(`{"event":1}`, ErrFieldType)
	bad(`{"event":"a","channel":null}`, ErrFieldType)
	bad(`{"event":"`+strings.Repeat("e", MaxEventName+1)+`"}`, ErrTooLong)
	bad(`{"event":"e","channel":"`+strings.Repeat("c", MaxChannelName+1)+`"}`, ErrTooLong)
	for _, in := range []string{
		``, ` `, `[]`, `"event"`, `{`, `{"event":"a"`, `{"event":"a",}`, `{"event":"a"} x`, `{"event":"a"}{}`,
		`{"event" "a"}`, `{event:"a"}`, `{"event":'a'}`, `{"event":"a","data":01}`, `{"event":"a","data":1.}`,
		`{"event":"a","data":.5}`, `{"event":"a","data":tru}`, `{"event":"a","data":[1,]}`, `{"event":"a\x01"}`,
		`{"event":"a\q"}`, `{"event":"a\u12"}`, "{\"event\":\"a\xff\"}", `{"event":"a","data":` + strings.Repeat("[", 65) + strings.Repeat("]", 65) + `}`,
	} {
		bad(in, ErrMalformed)
	}
	ok(`{"event":"a","data":`+strings.Repeat("[", 63)+strings.Repeat("]", 63)+`}`, "a", "", strings.Repeat("[", 63)+strings.Repeat("]", 63))
}

func TestParseSubscribe(t *testing.T) {
	f := func(data, channel, auth, cd string) {
		t.Helper()
		s, err := ParseSubscribe([]byte(data))
		if err != nil {
			t.Fatalf("ParseSubscribe(%s): %v", data, err)
		}
		if string(s.Channel) != channel || string(s.Auth) != auth || string(s.ChannelData) != cd {
			t.Errorf("ParseSubscribe(%s) = %q %q %q", data, s.Channel, s.Auth, s.ChannelData)
		}
	}
	f(`{"auth":"k:s","channel_data":"{\"user_id\":\"1\"}","channel":"presence-a"}`, "presence-a", "k:s", `{"user_id":"1"}`)
	f(`{"channel":"news"}`, "news", "", "")
	f(`{"channel":"news","auth":null,"channel_data":null}`, "news", "", "")
	f(`"{\"channel\":\"private-a\",\"auth\":\"k:s\"}"`, "private-a", "k:s", "")
	bad := func(data string, want error) {
		t.Helper()
		if _, err := ParseSubscribe([]byte(data)); !errors.Is(err, want) {
			t.Errorf("ParseSubscribe(%.60s) = %v, want %v", data, err, want)
		}
	}
	bad(``, ErrFieldAbsent)
	bad(`{}`, ErrFieldAbsent)
	bad(`{"channel":""}`, ErrFieldAbsent)
	bad(`{"channel":7}`, ErrFieldType)
	bad(`{"channel":"a","auth":7}`, ErrFieldType)
	bad(`{"channel":"a","channel_data":{"user_id":"1"}}`, ErrFieldType) // the signature covers text, not an object
	bad(`"not json"`, ErrMalformed)
	bad(`[]`, ErrMalformed)
	bad(`{"channel":"a","channel_data":"`+strings.Repeat("x", MaxChannelData+1)+`"}`, ErrTooLong)

	if ch, err := ParseUnsubscribe([]byte(`{"channel":"private-a"}`)); err != nil || string(ch) != "private-a" {
		t.Errorf("ParseUnsubscribe = %q, %v", ch, err)
	}
	if ch, err := ParseUnsubscribe([]byte(`"{\"channel\":\"a\"}"`)); err != nil || string(ch) != "a" {
		t.Errorf("ParseUnsubscribe(string) = %q, %v", ch, err)
	}
	if _, err := ParseUnsubscribe([]byte(`{"chan":"a"}`)); !errors.Is(err, ErrFieldAbsent) {
		t.Errorf("ParseUnsubscribe without channel: %v", err)
	}

	s, err := ParseSignin([]byte(`{"auth":"k:s","user_data":"{\"id\":\"1\"}"}`))
	if err != nil || string(s.Auth) != "k:s" || string(s.UserData) != `{"id":"1"}` {
		t.Errorf("ParseSignin = %q %q, %v", s.Auth, s.UserData, err)
	}
	for _, in := range []string{`{"user_data":"{}"}`, `{"auth":"k:s"}`, `{"auth":"k:s","user_data":{"id":"1"}}`,
		`{"auth":"k:s","user_data":"` + strings.Repeat("x", MaxUserData+1) + `"}`} {
		if _, err := ParseSignin([]byte(in)); err == nil {
			t.Errorf("ParseSignin(%.60s) accepted", in)
		}
	}
}

// pusherJSDecode decodes a server message the way pusher-js's Protocol.decodeMessage
// does (src/core/connection/protocol/protocol.ts): parse the envelope, then parse a
// string data as JSON too, keeping the string when that fails.
func pusherJSDecode(t *testing.T, msg []byte) (event, channel string, data any, userID string) {
	t.Helper()
	var env struct {
		Event   string          `json:"event"`
		Channel string          `json:"channel"`
		Data    json.RawMessage `json:"data"`
		UserID  string          `json:"user_id"`
	}
	if !utf8.Valid(msg) || !json.Valid(msg) {
		t.Fatalf("not valid JSON: %s", msg)
	}
	if err := json.Unmarshal(msg, &env); err != nil {
		t.Fatalf("envelope %s: %v", msg, err)
	}
	if err := json.Unmarshal(env.Data, &data); err != nil {
		t.Fatalf("data %s: %v", env.Data, err)
	}
	if s, ok := data.(string); ok {
		var inner any
		if json.Unmarshal([]byte(s), &inner) == nil {
			data = inner
		}
	}
	return env.Event, env.Channel, data, env.UserID
}

func jsonOf(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestEncoders(t *testing.T) {
	const nasty = "q\"b\\s/n\nt\tc\x01ü€𝄞<>&\u2028"
	f := func(name string, msg []byte, event, channel, data, userID string) {
		t.Helper()
		e, c, d, u := pusherJSDecode(t, msg)
		if e != event || c != channel || jsonOf(t, d) != data || u != userID {
			t.Errorf("%s: %s\ndecodes to %q %q %s %q\nwant       %q %q %s %q", name, msg, e, c, jsonOf(t, d), u, event, channel, data, userID)
		}
	}
	f("connection_established", AppendConnectionEstablished(nil, "123.456", 120),
		EventConnectionEstablished, "", `{"activity_timeout":120,"socket_id":"123.456"}`, "")
	if got := string(AppendConnectionEstablished(nil, "1.2", 30)); got != `{"event":"pusher:connection_established","data":"{\"socket_id\":\"1.2\",\"activity_timeout\":30}"}` {
		t.Errorf("connection_established bytes: %s", got)
	}
	f("ping", AppendPing(nil), EventPing, "", `{}`, "")
	f("pong", AppendPong(nil), EventPong, "", `{}`, "")
	f("error", AppendError(nil, 4001, "App "+nasty), EventError, "", jsonOf(t, map[string]any{"code": 4001, "message": "App " + nasty}), "")
	f("error null", AppendError(nil, 0, "x"), EventError, "", `{"code":null,"message":"x"}`, "")
	f("subscription_error", AppendSubscriptionError(nil, "private-a", "AuthError", nasty, 401),
		EventSubscriptionError, "private-a", jsonOf(t, map[string]any{"type": "AuthError", "error": nasty, "status": 401}), "")
	f("subscription_error no status", AppendSubscriptionError(nil, "a", "InvalidChannel", "m", 0),
		EventSubscriptionError, "a", `{"error":"m","type":"InvalidChannel"}`, "")
	f("subscription_succeeded", AppendSubscriptionSucceeded(nil, "private-a"), EventSubscriptionSucceeded, "private-a", `{}`, "")
	members := []Member{{ID: "1", Info: []byte(`{"name":"A \"q\" \\ \n"}`)}, {ID: nasty}, {ID: "3", Info: []byte(`[1, 2]`)}}
	f("presence", AppendPresenceSucceeded(nil, "presence-a", members), EventSubscriptionSucceeded, "presence-a",
		jsonOf(t, map[string]any{"presence": map[string]any{
			"ids":   []string{"1", nasty, "3"},
			"hash":  map[string]any{"1": map[string]any{"name": "A \"q\" \\ \n"}, nasty: nil, "3": []int{1, 2}},
			"count": 3,
		}}), "")
	f("presence empty", AppendPresenceSucceeded(nil, "presence-a", nil), EventSubscriptionSucceeded, "presence-a",
		`{"presence":{"count":0,"hash":{},"ids":[]}}`, "")
	f("member_added", AppendMemberAdded(nil, "presence-a", Member{ID: nasty, Info: []byte(`{"k":"v\"w"}`)}), EventMemberAdded, "presence-a",
		jsonOf(t, map[string]any{"user_id": nasty, "user_info": map[string]any{"k": "v\"w"}}), "")
	f("member_added no info", AppendMemberAdded(nil, "presence-a", Member{ID: "7"}), EventMemberAdded, "presence-a", `{"user_id":"7"}`, "")
	f("member_removed", AppendMemberRemoved(nil, "presence-a", nasty), EventMemberRemoved, "presence-a", jsonOf(t, map[string]any{"user_id": nasty}), "")
	ud := `{"id":"1","user_info":{"q":"\""}}`
	f("signin_success", AppendSigninSuccess(nil, []byte(ud)), EventSigninSuccess, "", jsonOf(t, map[string]any{"user_data": ud}), "")
	f("event object", AppendEvent(nil, "my-event", "news", []byte(`{"message":"hi"}`)), "my-event", "news", `{"message":"hi"}`, "")
	f("event text", AppendEvent(nil, "e", "news", []byte(nasty)), "e", "news", jsonOf(t, nasty), "")
	f("event no channel", AppendEvent(nil, "e", "", []byte("x")), "e", "", `"x"`, "")
	f("client event", AppendClientEvent(nil, "client-x", "presence-a", []byte(`{"a":[1]}`), "u1"), "client-x", "presence-a", `{"a":[1]}`, "u1")
	f("client event private", AppendClientEvent(nil, "client-x", "private-a", []byte(`"s"`), ""), "client-x", "private-a", `"s"`, "")
	f("client event null", AppendClientEvent(nil, "client-x", "private-a", nil, ""), "client-x", "private-a", `null`, "")
	// Invalid UTF-8 in a published payload still gives valid JSON.
	f("event bad utf8", AppendEvent(nil, "e", "c", []byte("a\xffb")), "e", "c", `"a�b"`, "")
	f("member bad utf8", AppendMemberRemoved(nil, "c", "a\xffb"), EventMemberRemoved, "c", `{"user_id":"a�b"}`, "")
}

func TestCloseCodes(t *testing.T) {
	for code, want := range map[int]CloseAction{
		1000: ActionNone, 3999: ActionNone, 4000: ActionRefused, 4001: ActionRefused, 4009: ActionRefused, 4099: ActionRefused,
		4100: ActionBackoff, 4199: ActionBackoff, 4200: ActionReconnect, 4201: ActionReconnect, 4202: ActionReconnect,
		4301: ActionOther, 4400: ActionNone,
	} {
		if got := CloseActionOf(code); got != want {
			t.Errorf("CloseActionOf(%d) = %d, want %d", code, got, want)
		}
	}
	for _, c := range []int{4000, 4001, 4003, 4004, 4005, 4006, 4007, 4008, 4009, 4100, 4200, 4201, 4202, 4301} {
		// A close frame's reason has at most 123 bytes.
		if r := CloseReason(c); r == "" || len(r) > 123 {
			t.Errorf("CloseReason(%d) = %q", c, r)
		}
	}
	if CloseReason(1000) != "" {
		t.Error("CloseReason(1000) is not empty")
	}
}

// The hot paths allocate nothing: a client event's decode, and every encoder
// into a reused buffer.
func TestNoAllocs(t *testing.T) {
	frame := []byte(`{"event":"client-typing","data":{"who":"me","n":[1,2,3]},"channel":"presence-room"}`)
	sub := []byte(`{"event":"pusher:subscribe","data":{"auth":"k:0123","channel":"private-a"}}`)
	presence := []byte(`{"event":"pusher:subscribe","data":{"auth":"k:0123","channel_data":"{\"user_id\":\"1\"}","channel":"presence-a"}}`)
	buf := make([]byte, 0, 4096)
	members := []Member{{ID: "1", Info: []byte(`{"n":"a"}`)}, {ID: "2"}}
	for name, fn := range map[string]func(){
		"ParseFrame": func() {
			if f, err := ParseFrame(frame); err != nil || !IsClientEvent(f.Event) {
				t.Fatal(err)
			}
		},
		"ParseSubscribe": func() {
			f, _ := ParseFrame(sub)
			if _, err := ParseSubscribe(f.Data); err != nil {
				t.Fatal(err)
			}
		},
		"AppendEvent": func() {
			buf = AppendEvent(buf[:0], "e", "news", []byte(`{"m":"a\"b","more":"than thirty-two bytes, which once allocated"}`))
		},
		"AppendClientEvent":    func() { buf = AppendClientEvent(buf[:0], "client-e", "presence-a", []byte(`{}`), "u") },
		"AppendPresence":       func() { buf = AppendPresenceSucceeded(buf[:0], "presence-a", members) },
		"AppendMemberAdded":    func() { buf = AppendMemberAdded(buf[:0], "presence-a", members[0]) },
		"AppendConnection":     func() { buf = AppendConnectionEstablished(buf[:0], "1.2", 120) },
		"AppendSigninSuccess":  func() { buf = AppendSigninSuccess(buf[:0], []byte(`{"id":"1"}`)) },
		"AppendSubscriptionOK": func() { buf = AppendSubscriptionSucceeded(buf[:0], "private-a") },
	} {
		if n := testing.AllocsPerRun(100, fn); n != 0 {
			t.Errorf("%s: %v allocs", name, n)
		}
	}
	// channel_data is JSON inside a string: unescaping it takes its one slice.
	if n := testing.AllocsPerRun(100, func() {
		f, _ := ParseFrame(presence)
		if _, err := ParseSubscribe(f.Data); err != nil {
			t.Fatal(err)
		}
	}); n != 1 {
		t.Errorf("presence ParseSubscribe: %v allocs, want 1", n)
	}
}

// FuzzUnquote checks the string decoder against encoding/json.
func FuzzUnquote(f *testing.F) {
	for _, s := range []string{`""`, `"abc"`, `"a\"b\\c\/d\b\f\n\r\t"`, `"\u00e9\u20AC"`, `"\ud834\udd1e"`,
		`"\ud834"`, `"\ud834\u0041"`, `"\udd1e\ud834"`, `"\ud834\ud834\udd1e"`, "\"\xff\"", `"\u0000"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) == 0 || b[0] != '"' {
			return
		}
		end, err := scanString(b, 0)
		var want string
		jerr := json.Unmarshal(b, &want)
		if err == nil && skipWS(b, end) == len(b) {
			b = b[:end] // encoding/json allows whitespace after the value
		}
		if err != nil || end != len(b) {
			if jerr == nil && utf8.Valid(b) {
				t.Fatalf("scanString refused %q (end %d): %v", b, end, err)
			}
			return
		}
		if jerr != nil {
			t.Fatalf("scanString accepted %q: json says %v", b, jerr)
		}
		if got := string(unquote(b)); got != want {
			t.Fatalf("unquote(%q) = %q, encoding/json says %q", b, got, want)
		}
	})
}

// FuzzParseFrame checks the scanner against encoding/json: it accepts exactly the
// valid JSON objects (within the depth bound), and what it returns matches.
func FuzzParseFrame(f *testing.F) {
	for _, s := range []string{
		`{"event":"pusher:ping","data":{}}`,
		`{"event":"client-a","channel":"private-a","data":{"x":[1,2.5e3,"\u00e9\n",true,false,null]}}`,
		`{"event":"pusher:subscribe","data":"{\"channel\":\"a\"}"}`,
		`{"event":"a","event":"b","x":{}}`, `{"event":1}`, `{`, `[]`, `{"event":"\ud800"}`, " {\"event\" : \"e\" } ",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := ParseFrame(b)
		var m map[string]json.RawMessage
		jerr := json.Unmarshal(b, &m)
		valid := jerr == nil && m != nil && utf8.Valid(b) && depthOK(b)
		if errors.Is(err, ErrMalformed) {
			if valid {
				t.Fatalf("ParseFrame refused valid JSON %q: %v", b, err)
			}
			return
		}
		if !valid {
			t.Fatalf("ParseFrame accepted invalid JSON %q (json: %v)", b, jerr)
		}
		var event string
		if json.Unmarshal(m["event"], &event) != nil || event == "" {
			if err == nil {
				t.Fatalf("accepted %q without a string event", b)
			}
			return
		}
		if err != nil {
			if errors.Is(err, ErrTooLong) || errors.Is(err, ErrFieldType) {
				return
			}
			t.Fatalf("ParseFrame(%q): %v", b, err)
		}
		if string(fr.Event) != event {
			t.Fatalf("event %q, encoding/json says %q", fr.Event, event)
		}
		if raw, ok := m["channel"]; ok {
			var ch string
			if json.Unmarshal(raw, &ch) != nil || string(fr.Channel) != ch {
				t.Fatalf("channel %q vs %s", fr.Channel, raw)
			}
		}
		if !bytes.Equal(fr.Data, m["data"]) {
			t.Fatalf("data %q vs %q", fr.Data, m["data"])
		}
	})
}

// depthOK says whether b nests at most maxJSONDepth deep (brackets in strings
// counted too, which only makes it refuse more; then the test skips the case).
func depthOK(b []byte) bool {
	d, inStr, esc := 0, false, false
	for _, c := range b {
		switch {
		case esc:
			esc = false
		case inStr && c == '\\':
			esc = true
		case c == '"':
			inStr = !inStr
		case inStr:
		case c == '{' || c == '[':
			d++
			if d > maxJSONDepth {
				return false
			}
		case c == '}' || c == ']':
			d--
		}
	}
	return true
}

// FuzzEncoders checks that every string survives the single and double encoding
// as pusher-js decodes it (invalid UTF-8 becoming U+FFFD byte by byte).
func FuzzEncoders(f *testing.F) {
	for _, s := range []string{"", "plain", "q\"b\\s\n\x00\x1f", "ü€𝄞", "a\xffb\xc3", "\u2028</script>"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want := fffd(s)
		_, _, d, _ := pusherJSDecode(t, AppendMemberRemoved(nil, "c", s))
		if got, _ := d.(map[string]any)["user_id"].(string); got != want {
			t.Fatalf("member_removed user_id %q, want %q", got, want)
		}
		msg := AppendEvent(nil, s, s, []byte(s))
		var env struct{ Event, Channel, Data string }
		if err := json.Unmarshal(msg, &env); err != nil || !utf8.Valid(msg) {
			t.Fatalf("event %q: %v", msg, err)
		}
		if env.Event != want || env.Channel != want || env.Data != want {
			t.Fatalf("event %+v, want %q", env, want)
		}
		if _, _, d, _ := pusherJSDecode(t, AppendPresenceSucceeded(nil, "c", []Member{{ID: s}})); jsonOf(t, d) != jsonOf(t, map[string]any{"presence": map[string]any{"ids": []string{want}, "hash": map[string]any{want: nil}, "count": 1}}) {
			t.Fatalf("presence %s", jsonOf(t, d))
		}
	})
}

// TestValidRuneLen checks the encoder's UTF-8 rule against unicode/utf8.
func TestValidRuneLen(t *testing.T) {
	tails := []byte{0x00, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xff}
	for b0 := 0x80; b0 <= 0xff; b0++ {
		for b1 := 0; b1 <= 0xff; b1++ {
			for _, b2 := range tails {
				for _, b3 := range tails {
					for n := 2; n <= 4; n++ {
						s := []byte{byte(b0), byte(b1), b2, b3}[:n]
						r, size := utf8.DecodeRune(s)
						want := size
						if r == utf8.RuneError && size == 1 {
							want = 0
						}
						if got := validRuneLen(s); got != want {
							t.Fatalf("validRuneLen(% x) = %d, utf8 says %d", s, got, want)
						}
					}
				}
			}
		}
	}
}

func fffd(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			b.WriteRune(utf8.RuneError)
		} else {
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}

// An empty (not nil) Info is no info: the encoders never write an empty JSON value.
func TestEmptyMemberInfo(t *testing.T) {
	for _, b := range [][]byte{
		AppendMemberAdded(nil, "presence-x", Member{ID: "u", Info: []byte{}}),
		AppendPresenceSucceeded(nil, "presence-x", []Member{{ID: "u", Info: []byte{}}}),
	} {
		var m struct{ Data string }
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		var v any
		if err := json.Unmarshal([]byte(m.Data), &v); err != nil {
			t.Fatalf("data %q: %v", m.Data, err)
		}
	}
}
