package pusher

import (
	"errors"
	"strings"
	"testing"
)

// TestSDKVectors checks this package against the official server SDK: the auth
// strings it computes, and that pusher-js's own subscribe and signin frames carrying
// them pass the whole decode-and-check path.
func TestSDKVectors(t *testing.T) {
	for _, v := range loadSDKVectors(t) {
		t.Run(v.Kind+"/"+v.Channel+v.UserData, func(t *testing.T) {
			f, err := ParseFrame([]byte(v.Frame))
			if err != nil {
				t.Fatalf("ParseFrame(%s): %v", v.Frame, err)
			}
			switch v.Kind {
			case "channel":
				if got := sdkApp.ChannelAuth(v.SocketID, v.Channel, v.ChannelData); got != v.Auth {
					t.Errorf("ChannelAuth = %s, the SDK says %s", got, v.Auth)
				}
				if string(f.Event) != EventSubscribe {
					t.Fatalf("event %q", f.Event)
				}
				s, err := ParseSubscribe(f.Data)
				if err != nil {
					t.Fatalf("ParseSubscribe: %v", err)
				}
				if string(s.Channel) != v.Channel || string(s.Auth) != v.Auth || string(s.ChannelData) != v.ChannelData {
					t.Fatalf("ParseSubscribe = %q %q %q", s.Channel, s.Auth, s.ChannelData)
				}
				m, err := sdkApp.CheckSubscribe(v.SocketID, &s, nil)
				if err != nil {
					t.Fatalf("CheckSubscribe: %v", err)
				}
				if KindOf(v.Channel) == KindPresence && m.ID == "" {
					t.Fatalf("presence member has no id")
				}
				// The same auth on another connection or channel is refused.
				if _, err := sdkApp.CheckSubscribe("1.1", &s, nil); !errors.Is(err, ErrAuthSignature) {
					t.Errorf("other socket id: %v", err)
				}
				s2 := s
				s2.Channel = append([]byte(v.Channel), 'x')
				if _, err := sdkApp.CheckSubscribe(v.SocketID, &s2, nil); !errors.Is(err, ErrAuthSignature) {
					t.Errorf("other channel: %v", err)
				}
			case "user":
				if got := sdkApp.UserAuth(v.SocketID, v.UserData); got != v.Auth {
					t.Errorf("UserAuth = %s, the SDK says %s", got, v.Auth)
				}
				s, err := ParseSignin(f.Data)
				if err != nil {
					t.Fatalf("ParseSignin: %v", err)
				}
				if err := sdkApp.CheckUserAuth(v.SocketID, s.Auth, s.UserData); err != nil {
					t.Fatalf("CheckUserAuth: %v", err)
				}
				if _, err := ParseUserData(s.UserData); err != nil {
					t.Fatalf("ParseUserData: %v", err)
				}
				if err := sdkApp.CheckUserAuth("9.9", s.Auth, s.UserData); !errors.Is(err, ErrAuthSignature) {
					t.Errorf("other socket id: %v", err)
				}
			default:
				t.Fatalf("kind %q", v.Kind)
			}
		})
	}
}

func TestCheckAuthRefuses(t *testing.T) {
	good := sdkApp.ChannelAuth("1.2", "private-a", "")
	sig := good[len(sdkApp.Key)+1:]
	f := func(auth string, want error) {
		t.Helper()
		err := sdkApp.CheckChannelAuth("1.2", "private-a", []byte(auth), nil)
		if !errors.Is(err, want) {
			t.Errorf("CheckChannelAuth(%q) = %v, want %v", auth, err, want)
		}
	}
	f(good, nil)
	f(strings.ToUpper(good[:len(sdkApp.Key)])+good[len(sdkApp.Key):], ErrAuthKey)
	f("", ErrAuthMissing)
	f(sdkApp.Key, ErrAuthFormat)
	f(sdkApp.Key+":"+sig[:63], ErrAuthFormat)
	f(sdkApp.Key+":"+sig+"0", ErrAuthFormat)
	f(sdkApp.Key+";"+sig, ErrAuthFormat)
	f(sdkApp.Key+":"+sig[:63]+"g", ErrAuthFormat)
	f("xxxxxxxxxxxxxxxxxxxx:"+sig, ErrAuthKey)
	flipped := []byte(good)
	flipped[len(flipped)-1] ^= 1
	f(string(flipped), ErrAuthSignature)
	// A presence auth does not pass for the same channel without its channel_data.
	pres := sdkApp.ChannelAuth("1.2", "presence-a", `{"user_id":"1"}`)
	if err := sdkApp.CheckChannelAuth("1.2", "presence-a", []byte(pres), nil); !errors.Is(err, ErrAuthSignature) {
		t.Errorf("presence auth without channel_data: %v", err)
	}
	// A signin auth is not a channel auth.
	ua := sdkApp.UserAuth("1.2", `{"id":"1"}`)
	if err := sdkApp.CheckChannelAuth("1.2", "private-a", []byte(ua), nil); !errors.Is(err, ErrAuthSignature) {
		t.Errorf("user auth as channel auth: %v", err)
	}
}

func TestValidSocketID(t *testing.T) {
	for s, want := range map[string]bool{
		"1.2": true, "123.456": true, "0.0": true,
		"12345678901234567890.12345678901234567890": true,
		"123456789012345678901.1":                   false,
		"1.123456789012345678901":                   false,
		"":                                          false, ".": false, "1.": false, ".1": false, "1": false,
		"1.2.3": false, "a.1": false, "1.b": false, " 1.2": false, "1.2\n": false, "-1.2": false, "1,2": false,
	} {
		if got := ValidSocketID(s); got != want {
			t.Errorf("ValidSocketID(%q) = %v", s, got)
		}
	}
	if got := string(AppendSocketID(nil, 18446744073709551615, 7)); got != "18446744073709551615.7" || !ValidSocketID(got) {
		t.Errorf("AppendSocketID = %q", got)
	}
}

func TestParseChannelData(t *testing.T) {
	ok := func(in, id, info string) {
		t.Helper()
		m, err := ParseChannelData([]byte(in))
		if err != nil {
			t.Fatalf("ParseChannelData(%s): %v", in, err)
		}
		if m.ID != id || string(m.Info) != info {
			t.Errorf("ParseChannelData(%s) = %q %s, want %q %s", in, m.ID, m.Info, id, info)
		}
	}
	bad := func(in string, want error) {
		t.Helper()
		if _, err := ParseChannelData([]byte(in)); !errors.Is(err, ErrChannelData) || !errors.Is(err, want) {
			t.Errorf("ParseChannelData(%.60s) = %v, want %v", in, err, want)
		}
	}
	ok(`{"user_id":"10","user_info":{"name":"Mr. Channels"}}`, "10", `{"name":"Mr. Channels"}`)
	ok(`{"user_id":42}`, "42", "")
	ok(`{"user_id":-7,"user_info":null}`, "-7", "")
	ok(` {"user_info":[1,2], "user_id":"a\u00e9\"b"} `, "aé\"b", "[1,2]")
	ok(`{"user_id":"x","user_info":"just text"}`, "x", `"just text"`)
	bad(`{"user_info":{}}`, ErrFieldAbsent)
	bad(`{"user_id":null}`, ErrFieldType)
	bad(`{"user_id":1.5}`, ErrFieldType)
	bad(`{"user_id":1e3}`, ErrFieldType)
	bad(`{"user_id":true}`, ErrFieldType)
	bad(`{"user_id":""}`, ErrBadUserID)
	bad(`{"user_id":"a\nb"}`, ErrBadUserID)
	bad(`{"user_id":"`+strings.Repeat("a", MaxUserID+1)+`"}`, ErrBadUserID)
	bad(`{"user_id":"a","user_info":"`+strings.Repeat("a", MaxUserInfo)+`"}`, ErrTooLong)
	bad(`{"user_id":"a","user_info":"`+strings.Repeat("a", MaxChannelData)+`"}`, ErrChannelData)
	bad(`{"user_id":"a"`, ErrMalformed)
	bad(`["user_id"]`, ErrMalformed)
	bad(``, ErrMalformed)
}

func TestParseUserData(t *testing.T) {
	u, err := ParseUserData([]byte(`{"id":"alice@example.com","user_info":{"n":1},"watchlist":["bob", "carol"]}`))
	if err != nil || u.ID != "alice@example.com" || string(u.Info) != `{"n":1}` || strings.Join(u.Watchlist, "|") != "bob|carol" {
		t.Fatalf("ParseUserData = %+v, %v", u, err)
	}
	bad := func(in string, want error) {
		t.Helper()
		if _, err := ParseUserData([]byte(in)); !errors.Is(err, ErrUserData) || !errors.Is(err, want) {
			t.Errorf("ParseUserData(%.60s) = %v, want %v", in, err, want)
		}
	}
	bad(`{"user_info":{}}`, ErrFieldAbsent)
	bad(`{"id":10}`, ErrFieldType) // pusher-js too requires a string id
	bad(`{"id":""}`, ErrBadUserID)
	bad(`{"id":"a","watchlist":"bob"}`, ErrFieldType)
	bad(`{"id":"a","watchlist":[1]}`, ErrFieldType)
	bad(`{"id":"a","watchlist":[""]}`, ErrBadUserID)
	bad(`{"id":"a","watchlist":[`+strings.TrimSuffix(strings.Repeat(`"b",`, maxWatchlist+1), ",")+`]}`, ErrTooLong)
	bad(`{"id":"a","user_info":"`+strings.Repeat("a", MaxUserInfo)+`"}`, ErrTooLong)
	bad(`{"id":"a","x":"`+strings.Repeat("a", MaxUserData)+`"}`, ErrUserData)
	bad(`{"id":"a",}`, ErrMalformed)
}

func TestCheckSubscribe(t *testing.T) {
	const sock = "11.22"
	alice := &User{ID: "alice", Info: []byte(`{"n":1}`)}
	type want struct {
		status int
		member string
		info   string
	}
	f := func(channel, auth, channelData string, user *User, w want) {
		t.Helper()
		s := Subscribe{Channel: []byte(channel), Auth: []byte(auth)}
		if channelData != "" {
			s.ChannelData = []byte(channelData)
		}
		m, err := sdkApp.CheckSubscribe(sock, &s, user)
		var se *SubscribeError
		switch {
		case w.status == 0 && err != nil:
			t.Errorf("%s: %v", channel, err)
		case w.status != 0 && (!errors.As(err, &se) || se.Status != w.status):
			t.Errorf("%s: got %v, want status %d", channel, err, w.status)
		case m.ID != w.member || string(m.Info) != w.info:
			t.Errorf("%s: member %q %s, want %q %s", channel, m.ID, m.Info, w.member, w.info)
		}
	}
	f("news", "", "", nil, want{})
	f("news", "garbage is ignored on public channels", "", nil, want{})
	f("bad name", "", "", nil, want{status: 400})
	f("#other", "", "", nil, want{status: 400})
	f("private-a", "", "", nil, want{status: 401})
	f("private-a", sdkApp.ChannelAuth(sock, "private-a", ""), "", nil, want{})
	f("private-a", sdkApp.ChannelAuth("11.23", "private-a", ""), "", nil, want{status: 401})
	f("private-encrypted-a", sdkApp.ChannelAuth(sock, "private-encrypted-a", ""), "", nil, want{})
	f("private-encrypted-a", "", "", nil, want{status: 401})
	cd := `{"user_id":"bob","user_info":{"x":true}}`
	f("presence-a", sdkApp.ChannelAuth(sock, "presence-a", cd), cd, nil, want{member: "bob", info: `{"x":true}`})
	f("presence-a", sdkApp.ChannelAuth(sock, "presence-a", cd), cd, alice, want{member: "bob", info: `{"x":true}`})
	f("presence-a", sdkApp.ChannelAuth(sock, "presence-a", ""), "", nil, want{status: 401})
	f("presence-a", sdkApp.ChannelAuth(sock, "presence-a", ""), "", alice, want{member: "alice", info: `{"n":1}`})
	unsignedOK := `{"user_info":{}}` // signed, but no user_id
	f("presence-a", sdkApp.ChannelAuth(sock, "presence-a", unsignedOK), unsignedOK, nil, want{status: 401})
	f("#server-to-user-alice", "", "", alice, want{})
	f("#server-to-user-alice", "", "", nil, want{status: 401})
	f("#server-to-user-bob", "", "", alice, want{status: 401})
}
