package pusher

import "testing"

func BenchmarkParseFrame(b *testing.B) {
	frame := []byte(`{"event":"client-typing","data":{"who":"me","n":[1,2,3],"text":"hello there"},"channel":"presence-room"}`)
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		if _, err := ParseFrame(frame); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendEvent(b *testing.B) {
	data := []byte(`{"message":"hello \"world\"","n":42,"list":[1,2,3]}`)
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		buf = AppendEvent(buf[:0], "my-event", "presence-room", data)
	}
}

func BenchmarkAppendPresenceSucceeded(b *testing.B) {
	members := make([]Member, 100)
	for i := range members {
		members[i] = Member{ID: string(AppendSocketID(nil, uint64(i), 7)), Info: []byte(`{"name":"someone"}`)}
	}
	buf := make([]byte, 0, 8192)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendPresenceSucceeded(buf[:0], "presence-room", members)
	}
}
