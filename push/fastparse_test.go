package push

import (
	"bytes"
	"encoding/json"
	"io"
	"reflect"
	"strings"
	"testing"
)

// decodePushJSON is the slow path parsePushFast must agree with: the
// handler's decoder setup, then nothing but whitespace after the value.
func decodePushJSON(body []byte) (pushRequest, bool) {
	var req pushRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return req, false
	}
	if _, err := dec.Token(); err != io.EOF {
		return req, false
	}
	return req, true
}

// fastAccepted are bodies the fast path must take, each checked against
// encoding/json.
var fastAccepted = []string{
	`{"to":{"users":["u123"]},"data":"hello"}`,
	`{}`,
	` { } `,
	`{"to":{}}`,
	"\t\r\n{\n\t\"to\" :\r{ \"users\" : [ \"a\" , \"b\" ] , \"all\" : true } ,\n \"data\" : \"x\" }\n\t \r",
	`{"to":{"users":[],"connections":[],"rooms":[]},"data":"x"}`,
	`{"to":{"users":null,"connections":null,"rooms":null,"all":null},"data":"x"}`,
	`{"to":{"users":["42","7"],"connections":["c9"],"rooms":["r1","r2"],"all":false},"data":"x"}`,
	`{"to":{"rooms":["lobby"],"users":[],"connections":["c"]},"data":"x"}`,
	`{"to":{"all":true},"data":null}`,
	`{"data":null,"data_base64":null}`,
	`{"to":{"all":true},"data_base64":"AAEC/w=="}`,
	`{"to":{"all":true},"data_base64":"AAEC\/w=="}`,
	`{"data":"a\"b\\c\/d\be\ff\ng\rh\ti\u00e9\uD800\uABcd","to":{"users":["x"]}}`,
	`{"data":"héllo wörld ✓"}`,
	"{\"data\":\"bad utf8 \xff\xfe\"}",
	`{"data":""}`,
	`{"to":{"users":["` + "\x7f ~!#$%&'()*+,-./:;<=>?@[]^_`{|}" + `"]},"data":"x"}`,
	`{"data":"x","to":{"users":["a"]},"data_base64":"eA"}`,
	`{"to":{"users":["` + strings.Repeat("u", 300) + `"]},"data":"` + strings.Repeat("d", 5000) + `"}`,
	`{"to":{"users":["u"]},"data":"x","ack":true,"wait":"5s","ttl":"1m","id":"order-17","receipt":false,"history":true}`,
	`{"to":{"users":["u"]},"data":"x","ack":false,"receipt":true,"history":false}`,
	`{"to":{"users":["u"]},"data":"x","ack":null,"receipt":null,"history":null,"ttl":null,"wait":null,"id":null}`,
	`{"id":"","ttl":" 1s ","wait":"` + "" + `"}`,
}

// fastRejected are bodies the fast path must leave to encoding/json, valid
// JSON or not.
var fastRejected = []string{
	``,
	`   `,
	`null`,
	`[]`,
	`"x"`,
	`{`,
	`{"to":{"users":["a"]},"data":"x"`,
	`{"to":{"users":["a"]},"data":"x}`,
	`{"to":{"users":["a"`,
	`{"to":{"users":["a"]},"data":"x"}x`,
	`{"to":{"users":["a"]},"data":"x"} {}`,
	`{"to":{"users":["a"]},"data":"x"}` + "\x00",
	`{"to":{"users":["a"]},"data":"x",}`,
	`{"to":{"users":["a",]},"data":"x"}`,
	`{"to":{"users":["a"],},"data":"x"}`,
	`{,"data":"x"}`,
	`{"data" "x"}`,
	`{"data":"x" "to":{}}`,
	`{"extra":1,"data":"x"}`,
	`{"To":{"all":true},"data":"x"}`,
	`{"DATA":"x"}`,
	`{"to":{"Users":["a"]},"data":"x"}`,
	`{"to":{"ALL":true},"data":"x"}`,
	`{"to":{"users":["a"]},"to":{"users":["b"]},"data":"x"}`,
	`{"data":"x","data":"y"}`,
	`{"data_base64":"eA","data_base64":"eA"}`,
	`{"to":{"users":["a"],"users":["b"]},"data":"x"}`,
	`{"to":{"all":true,"all":false},"data":"x"}`,
	`{"to":{"group":["a"]},"data":"x"}`,
	`{"d\u0061ta":"x"}`,
	`{"to":{"us\u0065rs":["a"]},"data":"x"}`,
	`{"to":{"users":["a\u0062"]},"data":"x"}`,
	`{"to":{"users":["a\"b"]},"data":"x"}`,
	`{"to":{"users":["héllo"]},"data":"x"}`,
	"{\"to\":{\"users\":[\"a\tb\"]},\"data\":\"x\"}",
	`{"to":{"users":[1]},"data":"x"}`,
	`{"to":{"users":"a"},"data":"x"}`,
	`{"to":{"users":[null]},"data":"x"}`,
	`{"to":{"users":[["a"]]},"data":"x"}`,
	`{"to":{"all":"true"},"data":"x"}`,
	`{"to":{"all":1},"data":"x"}`,
	`{"to":{"all":tru},"data":"x"}`,
	`{"to":{"all":truex},"data":"x"}`,
	`{"to":null,"data":"x"}`,
	`{"to":[],"data":"x"}`,
	`{"to":{"users":["a"]},"data":42}`,
	`{"to":{"users":["a"]},"data":{"k":"v"}}`,
	`{"to":{"users":["a"]},"data":["x"]}`,
	`{"to":{"users":["a"]},"data":true}`,
	`{"to":{"users":["a"]},"data":nul}`,
	`{"to":{"users":["a"]},"data":nullx}`,
	"{\"data\":\"a\nb\"}",
	`{"data":"\x"}`,
	`{"data":"\u12"}`,
	`{"data":"\u12G4"}`,
	`{"data":"\`,
	`{"data":"\u`,
	"\xef\xbb\xbf{\"data\":\"x\"}",
	`{"ack":true,"ack":false}`,
	`{"Ack":true}`,
	`{"ack":1}`,
	`{"ack":"true"}`,
	`{"history":tru}`,
	`{"ttl":5}`,
	`{"ttl":"1\u0073"}`,
	`{"id":"héllo"}`,
	"{\"id\":\"a\tb\"}",
	`{"wait":"5s","wait":"6s"}`,
}

func TestParsePushFastMatchesJSON(t *testing.T) {
	for _, body := range fastAccepted {
		want, ok := decodePushJSON([]byte(body))
		if !ok {
			t.Fatalf("encoding/json rejects accepted case %q", body)
		}
		var got pushRequest
		if !parsePushFast([]byte(body), &got) {
			t.Errorf("parsePushFast(%q) = false, want true", body)
			continue
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("parsePushFast(%q)\n got %#v\nwant %#v", body, got, want)
		}
	}
}

// TestParsePushFastNullAndEmpty pins the encoding/json behaviour the fast
// path copies, so a change in encoding/json shows up here by name.
func TestParsePushFastNullAndEmpty(t *testing.T) {
	body := []byte(`{"to":{"users":[],"rooms":null},"data":null}`)
	var req pushRequest
	if !parsePushFast(body, &req) {
		t.Fatal("rejected")
	}
	if req.To.Users == nil || len(req.To.Users) != 0 {
		t.Errorf("users [] gave %#v, want a non-nil empty slice", req.To.Users)
	}
	if req.To.Rooms != nil || req.To.Connections != nil {
		t.Errorf("rooms null / connections absent gave %#v / %#v, want nil", req.To.Rooms, req.To.Connections)
	}
	if string(req.Data) != "null" || req.DataBase64 != nil {
		t.Errorf("data null gave %q, data_base64 absent gave %#v", req.Data, req.DataBase64)
	}
	want, _ := decodePushJSON(body)
	if string(want.Data) != "null" || want.To.Users == nil || want.To.Rooms != nil {
		t.Errorf("encoding/json changed: %#v", want)
	}
}

func TestParsePushFastRejects(t *testing.T) {
	for _, body := range fastRejected {
		sentinel := pushRequest{Data: json.RawMessage(`"untouched"`)}
		req := sentinel
		if parsePushFast([]byte(body), &req) {
			t.Errorf("parsePushFast(%q) = true, want false (got %#v)", body, req)
			continue
		}
		if !reflect.DeepEqual(req, sentinel) {
			t.Errorf("parsePushFast(%q) returned false but changed req to %#v", body, req)
		}
	}
}

// TestParsePushFastIDsDoNotAliasBody: the caller reuses body buffers, so ids
// must survive the body being overwritten; data may alias it.
func TestParsePushFastIDsDoNotAliasBody(t *testing.T) {
	body := []byte(`{"to":{"users":["u1","u2"],"connections":["c1"],"rooms":["r1"]},"data":"hello"}`)
	var req pushRequest
	if !parsePushFast(body, &req) {
		t.Fatal("rejected")
	}
	want := Target{Users: []string{"u1", "u2"}, Connections: []string{"c1"}, Rooms: []string{"r1"}}
	for i := range body {
		body[i] = 'X'
	}
	if !reflect.DeepEqual(req.To, want) {
		t.Fatalf("ids changed with the body: %#v", req.To)
	}
	// Appending to one list must not overwrite the next in the shared array.
	_ = append(req.To.Users, "zz")
	if !reflect.DeepEqual(req.To, want) {
		t.Fatalf("append to users overwrote another list: %#v", req.To)
	}
}

// TestParsePushFastAllocs holds the fast path to its budget: one string copy
// and one shared []string however many ids, nothing without ids.
func TestParsePushFastAllocs(t *testing.T) {
	for _, c := range []struct {
		body string
		max  float64
	}{
		{`{"to":{"all":true},"data":"hello"}`, 0},
		{`{"to":{"users":[]},"data":"hello"}`, 0},
		{`{"to":{"users":["u123"]},"data":"hello"}`, 2},
		{`{"to":{"users":[` + ids(100) + `],"rooms":["r1","r2"]},"data":"hello"}`, 2},
	} {
		body := []byte(c.body)
		var req pushRequest
		n := testing.AllocsPerRun(100, func() {
			if !parsePushFast(body, &req) {
				t.Fatalf("rejected %q", c.body)
			}
		})
		if n > c.max {
			t.Errorf("%.40q...: %v allocs per parse, want <= %v", c.body, n, c.max)
		}
	}
}

func FuzzParsePushFast(f *testing.F) {
	for _, s := range fastAccepted {
		f.Add([]byte(s))
	}
	for _, s := range fastRejected {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		orig := bytes.Clone(body)
		var got pushRequest
		if !parsePushFast(body, &got) {
			return
		}
		want, ok := decodePushJSON(orig)
		if !ok {
			t.Fatalf("parsePushFast accepted %q, encoding/json rejects it", orig)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("parsePushFast(%q)\n got %#v\nwant %#v", orig, got, want)
		}
		if !bytes.Equal(body, orig) {
			t.Fatalf("parsePushFast modified its input")
		}
	})
}

// typicalPushBody is a common push: one user, a 60-byte text message.
var typicalPushBody = []byte(`{"to":{"users":["u123"]},"data":"hello world ` + strings.Repeat("x", 48) + `"}`)

func BenchmarkParsePushFast(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(typicalPushBody)))
	for b.Loop() {
		var req pushRequest
		if !parsePushFast(typicalPushBody, &req) {
			b.Fatal("rejected")
		}
	}
}

func BenchmarkParsePushJSON(b *testing.B) {
	b.ReportAllocs()
	b.SetBytes(int64(len(typicalPushBody)))
	for b.Loop() {
		if _, ok := decodePushJSON(typicalPushBody); !ok {
			b.Fatal("rejected")
		}
	}
}
