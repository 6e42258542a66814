package wsproto

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"testing"
)

// genStream builds a random client stream from seed: mostly valid traffic
// (messages, fragmented messages with interleaved control frames, 16/64-bit
// lengths, text that is sometimes invalid UTF-8 split across fragments), with an
// occasional protocol violation.
func genStream(seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	payload := func(n int, text bool) []byte {
		b := make([]byte, n)
		alphabet := []byte("ab\xce\xba\xe1\xbd\xb9\xf0\x9f\x98\x80\xed\xa0\xff")
		for i := range b {
			if text {
				b[i] = alphabet[rng.IntN(len(alphabet))]
			} else {
				b[i] = byte(rng.Uint32())
			}
		}
		if text && rng.IntN(4) > 0 {
			b = bytes.ToValidUTF8(b, []byte("?"))
		}
		return b
	}
	key := func() (k [4]byte) {
		for i := range k {
			k[i] = byte(rng.Uint32())
		}
		return k
	}
	size := func() int {
		switch rng.IntN(10) {
		case 0:
			return 126 + rng.IntN(400)
		case 1:
			return 0
		}
		return rng.IntN(40)
	}
	lenMode := func() int { return []int{0, 0, 0, 16, 64}[rng.IntN(5)] }
	control := func() []byte {
		op := byte(9 + rng.IntN(2))
		if rng.IntN(8) == 0 {
			op = 8
			return clientFrame(frameSpec{op: op, fin: true, key: key(), payload: []byte(closeBody(uint16(1000+rng.IntN(20)), "r"))})
		}
		return clientFrame(frameSpec{op: op, fin: true, key: key(), lenMode: lenMode() % 32, payload: payload(rng.IntN(10), false)})
	}
	var out []byte
	for range 1 + rng.IntN(12) {
		switch rng.IntN(10) {
		case 0, 1, 2:
			text := rng.IntN(2) == 0
			op := byte(2)
			if text {
				op = 1
			}
			out = append(out, clientFrame(frameSpec{op: op, fin: true, key: key(), lenMode: lenMode(), payload: payload(size(), text)})...)
		case 3, 4, 5:
			text := rng.IntN(2) == 0
			whole := payload(size()*2, text)
			op := byte(2)
			if text {
				op = 1
			}
			parts := 1 + rng.IntN(4)
			for i := range parts {
				lo, hi := len(whole)*i/parts, len(whole)*(i+1)/parts
				out = append(out, clientFrame(frameSpec{op: op, fin: i == parts-1, key: key(), lenMode: lenMode(), payload: whole[lo:hi]})...)
				op = 0
				if rng.IntN(3) == 0 && i < parts-1 {
					out = append(out, control()...)
				}
			}
		case 6, 7, 8:
			out = append(out, control()...)
		default: // a violation somewhere
			out = append(out, clientFrame(frameSpec{op: byte(rng.IntN(16)), fin: rng.IntN(2) == 0, rsv: byte(rng.IntN(2)) << 6,
				unmasked: rng.IntN(4) == 0, key: key(), payload: payload(rng.IntN(130), true)})...)
		}
	}
	return out
}

// FuzzParserSplit checks that feeding a stream in arbitrary pieces decodes exactly
// what a one-shot feed decodes: same events, same error, and without an error the
// same bytes consumed. The
// stream is either generated from seed or taken raw from the fuzzer; cuts gives
// the piece sizes (empty: byte by byte).
func FuzzParserSplit(f *testing.F) {
	for seed := range uint64(40) {
		f.Add(seed, []byte(nil), []byte(nil))
		f.Add(seed, []byte(nil), []byte{3, 7, 1, 200, 13})
	}
	f.Add(uint64(0), frame(1, true, "hello"), []byte{1})
	f.Add(uint64(0), cat(frame(1, false, "\xce"), frame(9, true, ""), frame(0, true, "\xba")), []byte{2, 5})
	f.Fuzz(func(t *testing.T, seed uint64, raw, cuts []byte) {
		stream := raw
		if len(stream) == 0 {
			stream = genStream(seed)
		}
		chunks := make([]int, len(cuts))
		for i, c := range cuts {
			chunks[i] = int(c)%64 + 1
		}
		const maxMsg = 700
		one := Parser{MaxMessage: maxMsg}
		wantEvs, wantCode, wantUsed := feedAll(&one, bytes.Clone(stream))
		for _, copyPerAttempt := range []bool{false, true} {
			p := Parser{MaxMessage: maxMsg}
			evs, code, used := feedSplit(&p, bytes.Clone(stream), chunks, copyPerAttempt)
			// On error the bytes consumed may differ: a split feed takes a partial
			// frame's header (and what arrived of it) before failing inside it. The
			// connection is closed either way.
			if code != wantCode || (code == 0 && used != wantUsed) || !slices.Equal(evs, wantEvs) {
				t.Fatalf("copy=%v split feed differs:\n got %v code %d used %d\nwant %v code %d used %d",
					copyPerAttempt, evs, code, used, wantEvs, wantCode, wantUsed)
			}
			p.Reset()
			if p.asm != nil {
				t.Fatal("buffer kept after Reset")
			}
		}
	})
}

// The generator must exercise more than errors: most seeds decode several events,
// some end in each kind of failure.
func TestGenStreamCoverage(t *testing.T) {
	kinds := map[Kind]int{}
	codes := map[uint16]int{}
	for seed := range uint64(200) {
		p := Parser{MaxMessage: 700}
		evs, code, _ := feedAll(&p, genStream(seed))
		for _, e := range evs {
			kinds[e.kind]++
		}
		codes[code]++
	}
	for _, k := range []Kind{KindText, KindBinary, KindPing, KindPong, KindClose} {
		if kinds[k] == 0 {
			t.Errorf("generator never produced %v", k)
		}
	}
	for _, c := range []uint16{0, 1002, 1007, 1009} {
		if codes[c] == 0 {
			t.Errorf("generator never ended with code %d", c)
		}
	}
	t.Logf("kinds %v codes %v", kinds, codes)
}
