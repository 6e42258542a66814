package node

import (
	"encoding/json"
	"reflect"
	"testing"
)

var ackAccepted = []string{
	`{"type":"ack","stream":"user:42","epoch":"mx4j1qha-1hsayp6","offset":18}`,
	` { "offset" : 0 , "type" : "ack" , "stream" : "user:a" } `,
	"{\n\t\"type\":\"ack\",\r\"message\":\"n1-18ea8ea12a705831\"}",
	`{"type":"ack","offset":9999999999999999999}`,
	`{"type":"ack","stream":"","epoch":"` + "\x7f" + `"}`,
}

var ackRejected = []string{
	``, `{}`, `[]`, `null`, `{"type":"ack"`, `{"type":"ack"}x`, `{"type":"ack",}`,
	`{"type":"send","id":1}`, `{"type":"ack","id":7,"stream":"user:1","offset":1}`,
	`{"Type":"ack"}`, `{"type":"ack","type":"ack"}`, `{"type":"ack","offset":1,"offset":2}`,
	`{"type":"ack","offset":-1}`, `{"type":"ack","offset":1.5}`, `{"type":"ack","offset":1e3}`,
	`{"type":"ack","offset":01}`, `{"type":"ack","offset":18446744073709551616}`,
	`{"type":"ack","offset":"1"}`, `{"type":"ack","stream":"user:\u0031"}`,
	`{"type":"ack","stream":"héllo"}`, "{\"type\":\"ack\",\"stream\":\"a\tb\"}",
	`{"type":"ack","stream":null}`, `{"type":"\u0061ck"}`, `{"type":"ack","extra":1}`,
}

// TestParseAckFastMatchesJSON: what the fast path takes it decodes exactly as
// encoding/json does; what it leaves, it leaves untouched.
func TestParseAckFastMatchesJSON(t *testing.T) {
	for _, in := range ackAccepted {
		var got, want clientMsg
		if !parseAckFast([]byte(in), &got) {
			t.Errorf("%q: not taken", in)
			continue
		}
		if err := json.Unmarshal([]byte(in), &want); err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("%q: fast %+v, encoding/json %+v (%v)", in, got, want, err)
		}
	}
	for _, in := range ackRejected {
		m := clientMsg{Type: "untouched"}
		if parseAckFast([]byte(in), &m) || m.Type != "untouched" {
			t.Errorf("%q: taken (%+v), want it left to encoding/json", in, m)
		}
	}
	in := []byte(ackAccepted[0])
	if n := testing.AllocsPerRun(100, func() {
		var m clientMsg
		parseAckFast(in, &m)
	}); n > 2 {
		t.Errorf("%v allocations per ack, want at most its stream and epoch", n)
	}
}

func FuzzParseAckFast(f *testing.F) {
	for _, s := range append(ackAccepted, ackRejected...) {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var got clientMsg
		if !parseAckFast(in, &got) {
			return
		}
		var want clientMsg
		if err := json.Unmarshal(in, &want); err != nil {
			t.Fatalf("%q: taken, but encoding/json refuses it: %v", in, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%q: fast %+v, encoding/json %+v", in, got, want)
		}
	})
}
