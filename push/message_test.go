package push

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func sampleMessages() []Message {
	return []Message{
		{ID: "n1-0000000000000001", Data: []byte("hello"), To: Target{Users: []string{"42"}}, Accepted: 1700000000123456789},
		{ID: "x", Binary: true, Data: []byte{0, 1, 2, 255}, To: Target{All: true}, Accepted: -5},
		{ID: "n2-ff", Data: []byte{}, To: Target{Users: []string{"a", "bb"}, Connections: []string{"c1"}, Rooms: []string{"r", strings.Repeat("z", 300)}}},
		{ID: "", Data: bytes.Repeat([]byte("p"), 70000), To: Target{Rooms: []string{"big"}, All: true}, Binary: true},
		{ID: "n3-1", Data: []byte(`{"a":1}`), JSON: true, NoHistory: true, To: Target{Rooms: []string{"pusher/1/private-x"}},
			Pusher: &PusherEvent{Event: "client-typing", ExcludeSocket: "123.45", UserID: "u7", Raw: true}},
		{ID: "n3-2", Data: []byte("hi"), To: Target{Rooms: []string{"pusher/1/a", "pusher/1/b"}}, Pusher: &PusherEvent{Event: "ev"}},
	}
}

func TestMessageRoundTrip(t *testing.T) {
	for i, m := range sampleMessages() {
		b, err := m.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if len(b) != m.EncodedSize() {
			t.Errorf("%d: encoded %d bytes, EncodedSize says %d", i, len(b), m.EncodedSize())
		}
		// AppendBinary appends after existing bytes.
		if got := m.AppendBinary([]byte("prefix")); !bytes.Equal(got[6:], b) || string(got[:6]) != "prefix" {
			t.Errorf("%d: AppendBinary does not append", i)
		}
		var got Message
		if err := got.UnmarshalBinary(b); err != nil {
			t.Fatalf("%d: %v", i, err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Errorf("%d: round trip\n got %+v\nwant %+v", i, got, m)
		}
		// The decoded message must not alias the input.
		for j := range b {
			b[j] = 0xee
		}
		if !reflect.DeepEqual(got, m) {
			t.Errorf("%d: decoded message changed when the input was overwritten", i)
		}
	}
}

func TestMessageListsDoNotOverlap(t *testing.T) {
	m := Message{ID: "i", To: Target{Users: []string{"u"}, Connections: []string{"c"}, Rooms: []string{"r"}}}
	var got Message
	if err := got.UnmarshalBinary(m.AppendBinary(nil)); err != nil {
		t.Fatal(err)
	}
	got.To.Users = append(got.To.Users, "extra")
	if got.To.Connections[0] != "c" {
		t.Fatalf("appending to Users overwrote Connections: %q", got.To.Connections)
	}
}

// TestDurationsRoundTrip: a ttl or wait is not a length, so it is not bounded by the
// message's size (a forwarded push with "ttl": "10s" was refused by its owner).
func TestDurationsRoundTrip(t *testing.T) {
	m := Message{ID: "a-1", Data: []byte("x"), TTL: 24 * time.Hour, Wait: 30 * time.Second, Ack: true, Receipt: true,
		To: Target{Users: []string{"u"}}}
	var got Message
	if err := got.UnmarshalBinary(m.AppendBinary(nil)); err != nil {
		t.Fatal(err)
	}
	if got.TTL != m.TTL || got.Wait != m.Wait || !got.Ack || !got.Receipt {
		t.Fatalf("decoded %+v, want %+v", got, m)
	}
}

func TestUnmarshalBinaryErrors(t *testing.T) {
	valid := (&Message{ID: "id", Data: []byte("data"), To: Target{Users: []string{"u1", "u2"}}}).AppendBinary(nil)
	f := func(name string, b []byte, want string) {
		t.Helper()
		m := Message{ID: "untouched"}
		err := m.UnmarshalBinary(b)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want it to contain %q", name, err, want)
		}
		if m.ID != "untouched" {
			t.Errorf("%s: message modified on error", name)
		}
	}
	f("empty", nil, "the header alone is 10")
	f("version", append([]byte{1}, valid[1:]...), "version 1")
	f("flags", append([]byte{wireVersion, 0x80}, valid[2:]...), "raw flag without the Pusher flag")
	f("trailing", append(append([]byte{}, valid...), 0), "1 unexpected bytes after the rooms")
	f("huge count", append(append([]byte{}, valid[:len(valid)-2]...), 0xff, 0x01), "impossible connections count")
	for cut := 10; cut < len(valid); cut++ {
		m := Message{}
		err := m.UnmarshalBinary(valid[:cut])
		if !errors.Is(err, ErrShortMessage) {
			t.Errorf("cut at %d: error %v, want ErrShortMessage", cut, err)
		}
	}
}

func TestAppendBinaryAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector changes allocation counts")
	}
	m := sampleMessages()[2]
	buf := make([]byte, 0, m.EncodedSize())
	if n := testing.AllocsPerRun(100, func() { buf = m.AppendBinary(buf[:0]) }); n != 0 {
		t.Fatalf("AppendBinary into a large enough buffer allocates %v times", n)
	}
	if n := testing.AllocsPerRun(100, func() { _ = m.AppendBinary(nil) }); n != 1 {
		t.Fatalf("AppendBinary(nil) allocates %v times, want 1", n)
	}
	b := m.AppendBinary(nil)
	var out Message
	if n := testing.AllocsPerRun(100, func() { _ = out.UnmarshalBinary(b) }); n > 4 {
		t.Fatalf("UnmarshalBinary allocates %v times, want <= 4", n)
	}
	if n := testing.AllocsPerRun(100, func() { _ = out.UnmarshalBinaryAlias(b) }); n > 3 {
		t.Fatalf("UnmarshalBinaryAlias allocates %v times, want <= 3", n)
	}
}

// UnmarshalBinaryAlias decodes what UnmarshalBinary does, with Data pointing into
// its input.
func TestUnmarshalBinaryAlias(t *testing.T) {
	for _, m := range sampleMessages() {
		b := m.AppendBinary(nil)
		var copied, aliased Message
		if err := copied.UnmarshalBinary(b); err != nil {
			t.Fatal(err)
		}
		if err := aliased.UnmarshalBinaryAlias(b); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(copied, aliased) {
			t.Fatalf("alias decode differs:\n got %+v\nwant %+v", aliased, copied)
		}
		if len(aliased.Data) > 0 {
			b[bytesIndex(b, aliased.Data)] ^= 0xff
			if reflect.DeepEqual(copied.Data, aliased.Data) {
				t.Fatal("Data does not alias the input")
			}
		}
		if cap(aliased.Data) != len(aliased.Data) {
			t.Fatal("appending to Data could overwrite the input")
		}
	}
}

// bytesIndex is where sub starts inside b (sub is a subslice of b).
func bytesIndex(b, sub []byte) int {
	for i := range b {
		if &b[i] == &sub[0] {
			return i
		}
	}
	return -1
}

func FuzzUnmarshalBinary(f *testing.F) {
	for _, m := range sampleMessages() {
		f.Add(m.AppendBinary(nil))
	}
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		var m Message
		if err := m.UnmarshalBinary(b); err != nil {
			return
		}
		// Whatever decodes must survive a round trip (not byte-identical:
		// non-minimal varints decode but re-encode shorter).
		var again Message
		if err := again.UnmarshalBinary(m.AppendBinary(nil)); err != nil {
			t.Fatalf("re-encoded message does not decode: %v", err)
		}
		if !reflect.DeepEqual(again, m) {
			t.Fatalf("round trip differs:\n got %+v\nwant %+v", again, m)
		}
	})
}
