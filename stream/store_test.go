package stream

import (
	"fmt"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"
)

// clock is a fake Config.Now: tests move it, nothing sleeps.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)} }

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// newTestStore returns a store on a fake clock; zero fields of cfg take the defaults.
func newTestStore(t testing.TB, cfg Config) (*Store, *clock) {
	t.Helper()
	c := newClock()
	cfg.Now = c.now
	return New(cfg), c
}

// msg is an entry with id and data that expires an hour after now.
func msg(c *clock, id, data string) Entry {
	return Entry{ID: id, Data: []byte(data), Expire: c.now().Add(time.Hour).UnixNano()}
}

func cost(e Entry) int64 { return int64(len(e.Data)+len(e.ID)) + entryOverhead }

// stampCommit stamps e on name and commits it, as the owner does once the replicas
// took it.
func stampCommit(t testing.TB, s *Store, name string, e Entry) Position {
	t.Helper()
	pos, dup, stale := s.Stamp(name, e)
	if dup || stale {
		t.Fatalf("Stamp(%q, %q) = %v dup=%v stale=%v", name, e.ID, pos, dup, stale)
	}
	s.Commit(name, pos)
	return pos
}

// fill stamps and commits n entries "<prefix>1".."<prefix>n" on name.
func fill(t testing.TB, s *Store, c *clock, name, prefix string, n int) Position {
	t.Helper()
	var pos Position
	for i := 1; i <= n; i++ {
		pos = stampCommit(t, s, name, msg(c, prefix+strconv.Itoa(i), "data-"+strconv.Itoa(i)))
	}
	return pos
}

func offsets(es []Entry) []uint64 {
	out := make([]uint64, len(es))
	for i, e := range es {
		out[i] = e.Offset
	}
	return out
}

func span(from, to uint64) []uint64 {
	out := []uint64{}
	for o := from; o <= to; o++ {
		out = append(out, o)
	}
	return out
}

// checkInvariants verifies what every operation must keep: each log's entries are
// contiguous from first and end at next-1, committed < next, and the node-wide live
// and bytes figures are the sums over the logs.
func checkInvariants(t testing.TB, s *Store) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	live, bytes := 0, int64(0)
	for name, l := range s.logs {
		if l.name != name {
			t.Errorf("log %q is named %q", name, l.name)
		}
		if l.first+uint64(len(l.entries)) != l.next {
			t.Errorf("%s: first %d + %d entries != next %d", name, l.first, len(l.entries), l.next)
		}
		if l.committed >= l.next {
			t.Errorf("%s: committed %d >= next %d", name, l.committed, l.next)
		}
		if l.next < 1 || l.first < 1 {
			t.Errorf("%s: first %d next %d: offsets start at 1", name, l.first, l.next)
		}
		for i := range l.entries {
			if l.entries[i].Offset != l.first+uint64(i) {
				t.Errorf("%s: entries[%d].Offset = %d, want %d", name, i, l.entries[i].Offset, l.first+uint64(i))
			}
			bytes += l.entries[i].size()
		}
		live += len(l.entries)
	}
	if live != s.live {
		t.Errorf("live = %d, logs hold %d", s.live, live)
	}
	if bytes != s.bytes {
		t.Errorf("bytes = %d, logs hold %d", s.bytes, bytes)
	}
	if s.head < 0 || s.head > len(s.fifo) {
		t.Errorf("fifo head %d of %d", s.head, len(s.fifo))
	}
}

func TestNewDefaults(t *testing.T) {
	s := New(Config{})
	got := s.Config()
	d := Defaults()
	if got.Size != d.Size || got.TTL != d.TTL || got.MaxBytes != d.MaxBytes || got.Now == nil {
		t.Fatalf("New(Config{}).Config() = %+v, want the defaults %+v and a clock", got, d)
	}
	if d.Size != 64 || d.TTL != 2*time.Minute || d.MaxBytes != 256<<20 {
		t.Fatalf("Defaults() = %+v, documented 64, 2m, 256 MiB", d)
	}
	s = New(Config{Size: -1, TTL: -time.Second, MaxBytes: -5})
	if got := s.Config(); got.Size != d.Size || got.TTL != d.TTL || got.MaxBytes != d.MaxBytes {
		t.Fatalf("negative bounds: Config() = %+v, want the defaults", got)
	}
}

func TestStampOffsetsContiguousFromOne(t *testing.T) {
	s, c := newTestStore(t, Config{Size: 1000})
	names := []string{"user:1", "room:lobby", "all"}
	epochs := map[string]string{}
	for i := 1; i <= 100; i++ {
		for _, name := range names {
			pos := stampCommit(t, s, name, msg(c, fmt.Sprintf("%s-%d", name, i), "x"))
			if pos.Offset != uint64(i) {
				t.Fatalf("%s: message %d stamped at offset %d", name, i, pos.Offset)
			}
			if ep, ok := epochs[name]; ok && ep != pos.Epoch {
				t.Fatalf("%s: epoch changed from %q to %q", name, ep, pos.Epoch)
			}
			epochs[name] = pos.Epoch
		}
	}
	if epochs["user:1"] == epochs["room:lobby"] || epochs["user:1"] == epochs["all"] {
		t.Errorf("streams share an epoch: %v", epochs)
	}
	for _, name := range names {
		es, head, ok := s.Read(name, Position{epochs[name], 0}, 1<<20)
		if !ok || head != (Position{epochs[name], 100}) || !slices.Equal(offsets(es), span(1, 100)) {
			t.Errorf("%s: Read from 0 = %v head %v recovered %v", name, offsets(es), head, ok)
		}
		for i, e := range es {
			if want := fmt.Sprintf("%s-%d", name, i+1); e.ID != want {
				t.Errorf("%s: entry %d has id %q, want %q", name, e.Offset, e.ID, want)
			}
		}
	}
	if st := s.Stats(); st.Streams != 3 || st.Entries != 300 || st.Evicted != 0 {
		t.Errorf("Stats() = %+v, want 3 streams, 300 entries", st)
	}
	checkInvariants(t, s)
}

func TestReadBeforeCommitShowsNothing(t *testing.T) {
	s, c := newTestStore(t, Config{})
	p1, _, _ := s.Stamp("user:1", msg(c, "a", "one"))
	p2, _, _ := s.Stamp("user:1", msg(c, "b", "two"))
	if p1.Offset != 1 || p2.Offset != 2 || p1.Epoch != p2.Epoch {
		t.Fatalf("stamped %v, %v", p1, p2)
	}
	since := Position{p1.Epoch, 0}
	check := func(step string, wantHead uint64, want []uint64) {
		t.Helper()
		es, head, ok := s.Read("user:1", since, 1<<20)
		if !ok || head != (Position{p1.Epoch, wantHead}) || !slices.Equal(offsets(es), want) {
			t.Errorf("%s: Read(since 0) = %v head %v recovered %v, want %v head %d", step, offsets(es), head, ok, want, wantHead)
		}
		if h, ok := s.Head("user:1"); !ok || h.Offset != wantHead {
			t.Errorf("%s: Head = %v %v, want offset %d", step, h, ok, wantHead)
		}
	}
	check("uncommitted", 0, []uint64{})
	if _, head, ok := s.Read("user:1", Position{p1.Epoch, 1}, 1<<20); ok || head.Offset != 0 {
		t.Errorf("since the uncommitted offset 1: head %v recovered %v, want false (beyond the head)", head, ok)
	}
	s.Commit("user:1", Position{"other-epoch", 2})
	check("commit of another epoch", 0, []uint64{})
	s.Commit("user:1", Position{p1.Epoch, 3})
	check("commit beyond the last stamped", 0, []uint64{})
	s.Commit("user:1", p1)
	check("commit 1", 1, []uint64{1})
	s.Commit("user:1", p1) // again: no change
	check("commit 1 again", 1, []uint64{1})
	s.Commit("user:1", p2)
	check("commit 2", 2, []uint64{1, 2})
	s.Commit("user:1", p1) // backwards: ignored
	check("commit 1 after 2", 2, []uint64{1, 2})
	s.Commit("absent", p1) // no stream: nothing created
	if s.Has("absent") {
		t.Errorf("Commit created a stream")
	}
	checkInvariants(t, s)
}

func TestRead(t *testing.T) {
	const size = 8
	s, c := newTestStore(t, Config{Size: size})
	head := fill(t, s, c, "room:a", "m", 20) // offsets 13..20 remain
	ep := head.Epoch
	dataLen := len("data-20") // entries 16..20 are "data-16".."data-20"
	cases := []struct {
		name     string
		since    Position
		maxBytes int
		want     []uint64 // nil: no entries
		ok       bool
	}{
		{"same epoch up to date", Position{ep, 20}, 1 << 20, nil, true},
		{"behind by one", Position{ep, 19}, 1 << 20, []uint64{20}, true},
		{"behind within the window", Position{ep, 15}, 1 << 20, span(16, 20), true},
		{"behind to the window's first", Position{ep, 12}, 1 << 20, span(13, 20), true},
		{"behind beyond the window", Position{ep, 11}, 1 << 20, nil, false},
		{"from the start, trimmed", Position{ep, 0}, 1 << 20, nil, false},
		{"other epoch", Position{"other-1", 20}, 1 << 20, nil, false},
		{"other epoch, lower offset", Position{"other-1", 15}, 1 << 20, nil, false},
		{"since beyond the head", Position{ep, 21}, 1 << 20, nil, false},
		{"zero since", Position{}, 1 << 20, nil, true},
		{"zero epoch with an offset", Position{"", 5}, 1 << 20, nil, true},
		{"maxBytes exactly the data", Position{ep, 15}, 5 * dataLen, span(16, 20), true},
		{"maxBytes one short", Position{ep, 15}, 5*dataLen - 1, nil, false},
		{"maxBytes zero, up to date", Position{ep, 20}, 0, nil, true},
		{"maxBytes zero, behind", Position{ep, 19}, 0, nil, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			es, h, ok := s.Read("room:a", tc.since, tc.maxBytes)
			if h != head {
				t.Errorf("head = %v, want %v", h, head)
			}
			if ok != tc.ok {
				t.Errorf("recovered = %v, want %v", ok, tc.ok)
			}
			if tc.want == nil {
				if es != nil {
					t.Errorf("entries = %v, want none", offsets(es))
				}
				return
			}
			if !slices.Equal(offsets(es), tc.want) {
				t.Errorf("entries = %v, want %v", offsets(es), tc.want)
			}
			for _, e := range es {
				if want := "data-" + strconv.FormatUint(e.Offset, 10); string(e.Data) != want || e.ID != "m"+strconv.FormatUint(e.Offset, 10) {
					t.Errorf("entry %d = %q %q", e.Offset, e.ID, e.Data)
				}
			}
		})
	}
	checkInvariants(t, s)
}

func TestReadAbsentStreamCreatesIt(t *testing.T) {
	s, _ := newTestStore(t, Config{})
	es, head, ok := s.Read("user:new", Position{}, 1<<20)
	if es != nil || !ok || head.Epoch == "" || head.Offset != 0 {
		t.Fatalf("Read(absent, zero) = %v %v %v, want head {epoch 0}, recovered", es, head, ok)
	}
	if !s.Has("user:new") {
		t.Fatalf("Read did not create the stream")
	}
	if _, h2, _ := s.Read("user:new", Position{}, 1<<20); h2 != head {
		t.Errorf("second Read head %v, first %v: the epoch must stay", h2, head)
	}
	if _, _, ok := s.Read("user:new", head, 1<<20); !ok {
		t.Errorf("Read(since its own head) not recovered")
	}
	if _, _, ok := s.Read("user:other", Position{"some-epoch", 3}, 1<<20); ok {
		t.Errorf("Read(absent stream, a position of another history) recovered")
	}
	checkInvariants(t, s)
}

func TestReadExpiredEntryInRange(t *testing.T) {
	s, c := newTestStore(t, Config{Size: 64, TTL: time.Minute})
	now := c.now()
	expire := []time.Duration{time.Hour, time.Hour, 10 * time.Second, time.Hour, time.Hour}
	var head Position
	for i, d := range expire {
		head = stampCommit(t, s, "user:1", Entry{ID: strconv.Itoa(i + 1), Data: []byte("x"), Expire: now.Add(d).UnixNano()})
	}
	ep := head.Epoch
	cases := []struct {
		name  string
		since uint64
		want  []uint64
		ok    bool
	}{
		{"range holds the expired entry", 1, nil, false},
		{"range starts at the expired entry", 2, nil, false},
		{"range after the expired entry", 3, []uint64{4, 5}, true},
		{"up to date", 5, nil, true},
	}
	c.advance(10 * time.Second) // Expire == now counts as expired
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			es, h, ok := s.Read("user:1", Position{ep, tc.since}, 1<<20)
			if ok != tc.ok || h != head || !slices.Equal(offsets(es), tc.want) {
				t.Errorf("Read(since %d) = %v head %v recovered %v, want %v recovered %v", tc.since, offsets(es), h, ok, tc.want, tc.ok)
			}
		})
	}
	// Sweep trims only from the front: entry 3 stays behind 1 and 2 (not expired).
	if n := s.Sweep(); n != 0 {
		t.Errorf("Sweep() = %d, want 0 (the front has not expired)", n)
	}
	if _, _, ok := s.Read("user:1", Position{ep, 1}, 1<<20); ok {
		t.Errorf("after Sweep: the expired entry 3 is still readable")
	}
	checkInvariants(t, s)
}

func TestStampDedupesByID(t *testing.T) {
	s, c := newTestStore(t, Config{})
	pa := stampCommit(t, s, "user:1", msg(c, "a", "first a"))
	pb, _, _ := s.Stamp("user:1", msg(c, "b", "first b")) // uncommitted
	before := s.Stats()
	cases := []struct {
		name string
		id   string
		want Position
	}{
		{"committed", "a", pa},
		{"uncommitted", "b", pb},
		{"committed again", "a", pa},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pos, dup, stale := s.Stamp("user:1", msg(c, tc.id, "retry"))
			if !dup || stale || pos != tc.want {
				t.Errorf("Stamp(retry %q) = %v dup=%v stale=%v, want %v dup", tc.id, pos, dup, stale, tc.want)
			}
			if st := s.Stats(); st != before {
				t.Errorf("a duplicate changed the store: %+v -> %+v", before, st)
			}
		})
	}
	// The same id on another stream is not a duplicate.
	if pos, dup, _ := s.Stamp("room:x", msg(c, "a", "other stream")); dup || pos.Offset != 1 {
		t.Errorf("id a on another stream: %v dup=%v", pos, dup)
	}
	s.Commit("user:1", pb)
	pc := stampCommit(t, s, "user:1", msg(c, "c", "c"))
	if pc.Offset != 3 {
		t.Errorf("after duplicates the next offset is %d, want 3", pc.Offset)
	}
	es, _, _ := s.Read("user:1", Position{pa.Epoch, 0}, 1<<20)
	if len(es) != 3 || string(es[0].Data) != "first a" || string(es[1].Data) != "first b" {
		t.Errorf("the stream keeps the first copies: %v", es)
	}
	checkInvariants(t, s)
}

func TestRollback(t *testing.T) {
	s, c := newTestStore(t, Config{})
	fill(t, s, c, "user:1", "c", 2)
	p3, _, _ := s.Stamp("user:1", msg(c, "u3", "three"))
	p4, _, _ := s.Stamp("user:1", msg(c, "u4", "four"))
	ep := p3.Epoch
	committedBytes := cost(msg(c, "c1", "data-1")) + cost(msg(c, "c2", "data-2"))

	// Positions that are not an uncommitted tail are ignored.
	for _, p := range []Position{{ep, 2}, {ep, 0}, {ep, 5}, {"other-1", 3}} {
		s.Rollback("user:1", p)
		if s.Stale("user:1") {
			t.Fatalf("Rollback(%v) marked the stream stale", p)
		}
		if pos, _, _, _ := s.Export("user:1"); pos != p4 {
			t.Fatalf("Rollback(%v) changed the history: %v", p, pos)
		}
	}
	s.Rollback("absent", p3)
	if s.Has("absent") {
		t.Fatalf("Rollback created a stream")
	}

	s.Rollback("user:1", p3)
	if !s.Stale("user:1") {
		t.Errorf("Rollback did not mark the stream stale")
	}
	pos, first, es, _ := s.Export("user:1")
	if pos != (Position{ep, 2}) || first != 1 || !slices.Equal(offsets(es), []uint64{1, 2}) {
		t.Errorf("after Rollback(3): Export = %v first %d %v, want {ep 2} 1 [1 2]", pos, first, offsets(es))
	}
	if st := s.Stats(); st.Entries != 2 || st.Bytes != committedBytes {
		t.Errorf("after Rollback: %+v, want 2 entries of %d bytes", st, committedBytes)
	}
	if p, dup, stale := s.Stamp("user:1", msg(c, "u5", "five")); !stale || dup || p != (Position{}) {
		t.Errorf("Stamp while stale = %v dup=%v stale=%v, want refused", p, dup, stale)
	}
	if pos, _, _, _ := s.Export("user:1"); pos.Offset != 2 {
		t.Errorf("a refused Stamp stored something: %v", pos)
	}
	s.Commit("user:1", p4) // the owner must not be able to commit what was rolled back
	if h, _ := s.Head("user:1"); h.Offset != 2 {
		t.Errorf("Commit of a rolled-back offset: head %v", h)
	}
	s.Fresh("user:1")
	if p := stampCommit(t, s, "user:1", msg(c, "u5", "five")); p != (Position{ep, 3}) {
		t.Errorf("after Fresh the next stamp is %v, want {ep 3}", p)
	}
	checkInvariants(t, s)

	// Rolling back the only (uncommitted) entry leaves an empty history at offset 0.
	pe, _, _ := s.Stamp("room:r", msg(c, "x", "x"))
	s.Rollback("room:r", pe)
	if pos, first, es, ok := s.Export("room:r"); !ok || pos != (Position{pe.Epoch, 0}) || first != 1 || len(es) != 0 {
		t.Errorf("rolled back to empty: %v %d %v %v", pos, first, es, ok)
	}
	checkInvariants(t, s)
}

// Size trims committed entries only: the uncommitted tail is kept (a Rollback may
// still need it gone, a Commit needs it there), and trimmed once committed.
func TestSizeKeepsUncommitted(t *testing.T) {
	s, c := newTestStore(t, Config{Size: 2})
	fill(t, s, c, "s", "c", 2)
	var last Position
	for i := 3; i <= 5; i++ {
		last, _, _ = s.Stamp("s", msg(c, "u"+strconv.Itoa(i), "x"))
	}
	if _, first, es, _ := s.Export("s"); first != 3 || !slices.Equal(offsets(es), span(3, 5)) {
		t.Errorf("Size 2 with 3 uncommitted: first %d %v, want [3 4 5]", first, offsets(es))
	}
	s.Commit("s", last)
	stampCommit(t, s, "s", msg(c, "u6", "x"))
	if _, first, es, _ := s.Export("s"); first != 5 || !slices.Equal(offsets(es), []uint64{5, 6}) {
		t.Errorf("after commit and one more: first %d %v, want [5 6]", first, offsets(es))
	}
	checkInvariants(t, s)
}

// applied stamps n entries "<id>1".."<id>n" on a replica through Apply at epoch ep.
func applied(t testing.TB, s *Store, c *clock, name, ep string, from, to uint64) {
	t.Helper()
	for o := from; o <= to; o++ {
		if ok, have := s.Apply(name, Position{ep, o}, msg(c, "m"+strconv.FormatUint(o, 10), "d")); !ok {
			t.Fatalf("setup: Apply(%d) refused, have %v", o, have)
		}
	}
}

func TestApply(t *testing.T) {
	const E, F = "E-1", "F-2"
	type want struct {
		ok    bool
		have  Position
		pos   Position // Export after
		first uint64
		offs  []uint64
		stale bool
	}
	cases := []struct {
		name  string
		setup func(t *testing.T, s *Store, c *clock)
		pos   Position
		id    string
		want  want
	}{
		{
			name: "absent stream at 1",
			pos:  Position{E, 1}, id: "m1",
			want: want{ok: true, pos: Position{E, 1}, first: 1, offs: []uint64{1}},
		},
		{
			name: "absent stream at 7 (a replica that came late)",
			pos:  Position{E, 7}, id: "m7",
			want: want{ok: true, pos: Position{E, 7}, first: 7, offs: []uint64{7}},
		},
		{
			name:  "contiguous",
			setup: func(t *testing.T, s *Store, c *clock) { applied(t, s, c, "s", E, 1, 2) },
			pos:   Position{E, 3}, id: "m3",
			want: want{ok: true, pos: Position{E, 3}, first: 1, offs: []uint64{1, 2, 3}},
		},
		{
			name:  "gap: the copy restarts at the new offset",
			setup: func(t *testing.T, s *Store, c *clock) { applied(t, s, c, "s", E, 1, 2) },
			pos:   Position{E, 5}, id: "m5",
			want: want{ok: true, pos: Position{E, 5}, first: 5, offs: []uint64{5}},
		},
		{
			name:  "same offset, same id: already held",
			setup: func(t *testing.T, s *Store, c *clock) { applied(t, s, c, "s", E, 1, 2) },
			pos:   Position{E, 2}, id: "m2",
			want: want{ok: true, pos: Position{E, 2}, first: 1, offs: []uint64{1, 2}},
		},
		{
			name:  "earlier offset, same id: already held",
			setup: func(t *testing.T, s *Store, c *clock) { applied(t, s, c, "s", E, 1, 3) },
			pos:   Position{E, 1}, id: "m1",
			want: want{ok: true, pos: Position{E, 3}, first: 1, offs: []uint64{1, 2, 3}},
		},
		{
			name:  "same offset, other id: refused",
			setup: func(t *testing.T, s *Store, c *clock) { applied(t, s, c, "s", E, 1, 2) },
			pos:   Position{E, 2}, id: "other",
			want: want{ok: false, have: Position{E, 2}, pos: Position{E, 2}, first: 1, offs: []uint64{1, 2}},
		},
		{
			name:  "earlier offset, other id: refused with the last offset",
			setup: func(t *testing.T, s *Store, c *clock) { applied(t, s, c, "s", E, 1, 3) },
			pos:   Position{E, 1}, id: "other",
			want: want{ok: false, have: Position{E, 3}, pos: Position{E, 3}, first: 1, offs: []uint64{1, 2, 3}},
		},
		{
			name:  "other epoch, local history longer: refused",
			setup: func(t *testing.T, s *Store, c *clock) { applied(t, s, c, "s", E, 1, 3) },
			pos:   Position{F, 2}, id: "f2",
			want: want{ok: false, have: Position{E, 3}, pos: Position{E, 3}, first: 1, offs: []uint64{1, 2, 3}},
		},
		{
			name:  "other epoch, local history as long: refused",
			setup: func(t *testing.T, s *Store, c *clock) { applied(t, s, c, "s", E, 1, 3) },
			pos:   Position{F, 3}, id: "f3",
			want: want{ok: false, have: Position{E, 3}, pos: Position{E, 3}, first: 1, offs: []uint64{1, 2, 3}},
		},
		{
			name:  "other epoch, local history shorter: accepted, the old one dropped",
			setup: func(t *testing.T, s *Store, c *clock) { applied(t, s, c, "s", E, 1, 3) },
			pos:   Position{F, 4}, id: "f4",
			want: want{ok: true, pos: Position{F, 4}, first: 4, offs: []uint64{4}},
		},
		{
			name:  "other epoch at 1, local history empty: accepted",
			setup: func(t *testing.T, s *Store, c *clock) { s.Apply("s", Position{E, 0}, Entry{}) },
			pos:   Position{F, 1}, id: "f1",
			want: want{ok: true, pos: Position{F, 1}, first: 1, offs: []uint64{1}},
		},
		{
			name: "clears stale",
			setup: func(t *testing.T, s *Store, c *clock) {
				applied(t, s, c, "s", E, 1, 2)
				s.SetStale("s")
			},
			pos: Position{E, 3}, id: "m3",
			want: want{ok: true, pos: Position{E, 3}, first: 1, offs: []uint64{1, 2, 3}},
		},
		{
			name: "epoch announcement on an absent stream",
			pos:  Position{E, 0},
			want: want{ok: true, pos: Position{E, 0}, first: 1, offs: []uint64{}},
		},
		{
			name:  "epoch announcement, same epoch, no entries",
			setup: func(t *testing.T, s *Store, c *clock) { s.Apply("s", Position{E, 0}, Entry{}) },
			pos:   Position{E, 0},
			want:  want{ok: true, pos: Position{E, 0}, first: 1, offs: []uint64{}},
		},
		{
			name:  "epoch announcement, same epoch, with entries: nothing changes",
			setup: func(t *testing.T, s *Store, c *clock) { applied(t, s, c, "s", E, 1, 2) },
			pos:   Position{E, 0},
			want:  want{ok: true, pos: Position{E, 2}, first: 1, offs: []uint64{1, 2}},
		},
		{
			name:  "epoch announcement, other epoch, no entries: taken",
			setup: func(t *testing.T, s *Store, c *clock) { s.Apply("s", Position{F, 0}, Entry{}) },
			pos:   Position{E, 0},
			want:  want{ok: true, pos: Position{E, 0}, first: 1, offs: []uint64{}},
		},
		{
			name: "epoch announcement, other epoch made here by Create: taken",
			setup: func(t *testing.T, s *Store, c *clock) {
				if _, created := s.Create("s"); !created {
					t.Fatal("Create did not create")
				}
			},
			pos:  Position{E, 0},
			want: want{ok: true, pos: Position{E, 0}, first: 1, offs: []uint64{}},
		},
		{
			name:  "epoch announcement, other epoch with entries: refused",
			setup: func(t *testing.T, s *Store, c *clock) { applied(t, s, c, "s", F, 1, 2) },
			pos:   Position{E, 0},
			want:  want{ok: false, have: Position{F, 2}, pos: Position{F, 2}, first: 1, offs: []uint64{1, 2}},
		},
		{
			name: "epoch announcement, other epoch whose entries expired: refused (offsets are history)",
			setup: func(t *testing.T, s *Store, c *clock) {
				for o := uint64(1); o <= 2; o++ {
					s.Apply("s", Position{F, o}, Entry{ID: "f", Expire: c.now().Add(time.Second).UnixNano()})
				}
				c.advance(time.Second) // expired, not idle for 2×TTL
				if n := s.Sweep(); n != 2 {
					t.Fatalf("setup: Sweep() = %d, want 2", n)
				}
			},
			pos:  Position{E, 0},
			want: want{ok: false, have: Position{F, 2}, pos: Position{F, 2}, first: 3, offs: []uint64{}},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, c := newTestStore(t, Config{})
			if tc.setup != nil {
				tc.setup(t, s, c)
			}
			var e Entry
			if tc.pos.Offset > 0 {
				e = msg(c, tc.id, "payload")
			}
			ok, have := s.Apply("s", tc.pos, e)
			if ok != tc.want.ok || have != tc.want.have {
				t.Errorf("Apply(%v, %q) = %v %v, want %v %v", tc.pos, tc.id, ok, have, tc.want.ok, tc.want.have)
			}
			pos, first, es, held := s.Export("s")
			if !held || pos != tc.want.pos || first != tc.want.first || !slices.Equal(offsets(es), tc.want.offs) {
				t.Errorf("Export = %v first %d %v held=%v, want %v first %d %v", pos, first, offsets(es), held, tc.want.pos, tc.want.first, tc.want.offs)
			}
			if st := s.Stale("s"); st != tc.want.stale {
				t.Errorf("Stale = %v, want %v", st, tc.want.stale)
			}
			// A replica commits what it applies: its head is its last offset.
			if h, _ := s.Head("s"); h != tc.want.pos {
				t.Errorf("Head = %v, want %v", h, tc.want.pos)
			}
			if st := s.Stats(); st.Entries != len(tc.want.offs) {
				t.Errorf("Stats().Entries = %d, want %d", st.Entries, len(tc.want.offs))
			}
			checkInvariants(t, s)
		})
	}
}

func TestApplyAnnouncedEpochServesSubscribers(t *testing.T) {
	s, c := newTestStore(t, Config{})
	if ok, _ := s.Apply("room:a", Position{"E-1", 0}, Entry{}); !ok {
		t.Fatal("announcement refused")
	}
	// A client that was told the owner's empty epoch is up to date here.
	if es, head, ok := s.Read("room:a", Position{"E-1", 0}, 1<<20); !ok || es != nil || head != (Position{"E-1", 0}) {
		t.Errorf("Read(announced epoch) = %v %v %v", es, head, ok)
	}
	// The owner's first message follows the announcement contiguously.
	if ok, _ := s.Apply("room:a", Position{"E-1", 1}, msg(c, "m1", "x")); !ok {
		t.Fatal("Apply(1) after the announcement refused")
	}
	if es, _, ok := s.Read("room:a", Position{"E-1", 0}, 1<<20); !ok || !slices.Equal(offsets(es), []uint64{1}) {
		t.Errorf("Read after Apply(1) = %v %v", offsets(es), ok)
	}
}

func TestApplyRespectsSize(t *testing.T) {
	s, c := newTestStore(t, Config{Size: 4})
	applied(t, s, c, "s", "E-1", 1, 10)
	if _, first, es, _ := s.Export("s"); first != 7 || !slices.Equal(offsets(es), span(7, 10)) {
		t.Errorf("replica of 10 with Size 4: first %d %v", first, offsets(es))
	}
	checkInvariants(t, s)
}

func TestExportAdoptRoundTrip(t *testing.T) {
	cases := []struct {
		name      string
		size      int
		committed int // stamped and committed at the source
		pending   int // stamped after, not committed (Export carries them)
		wantFirst uint64
	}{
		{"short history", 64, 5, 0, 1},
		{"with uncommitted entries", 64, 5, 2, 1},
		{"trimmed history", 4, 10, 0, 7},
		{"empty history", 64, 0, 0, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src, c := newTestStore(t, Config{Size: tc.size})
			src.Create("room:a")
			fill(t, src, c, "room:a", "m", tc.committed)
			for i := 0; i < tc.pending; i++ {
				src.Stamp("room:a", msg(c, "p"+strconv.Itoa(i), "pending"))
			}
			pos, first, es, ok := src.Export("room:a")
			last := uint64(tc.committed + tc.pending)
			if !ok || pos.Offset != last || first != tc.wantFirst || len(es) != int(last-first+1) {
				t.Fatalf("Export = %v first %d %d entries ok=%v", pos, first, len(es), ok)
			}

			// The destination holds another, stale history with more entries.
			dst, dc := newTestStore(t, Config{Size: tc.size})
			fill(t, dst, dc, "room:a", "old", 3)
			dst.MarkStale([]string{"room:a"})
			dst.Adopt("room:a", pos, es)

			if dst.Stale("room:a") {
				t.Errorf("Adopt did not clear stale")
			}
			gpos, gfirst, ges, _ := dst.Export("room:a")
			if gpos != pos || gfirst != first || !slices.EqualFunc(ges, es, func(a, b Entry) bool {
				return a.Offset == b.Offset && a.ID == b.ID && string(a.Data) == string(b.Data) && a.Expire == b.Expire
			}) {
				t.Errorf("after Adopt: Export = %v first %d %v, want %v first %d %v", gpos, gfirst, offsets(ges), pos, first, offsets(es))
			}
			if h, _ := dst.Head("room:a"); h != pos {
				t.Errorf("after Adopt: Head = %v, want %v (adopted entries are committed)", h, pos)
			}
			if n := len(es); n > 0 {
				got, _, ok := dst.Read("room:a", Position{pos.Epoch, first - 1}, 1<<20)
				if !ok || !slices.Equal(offsets(got), offsets(es)) {
					t.Errorf("Read of the adopted history = %v %v", offsets(got), ok)
				}
			}
			if p := stampCommit(t, dst, "room:a", msg(dc, "next", "x")); p != (Position{pos.Epoch, last + 1}) {
				t.Errorf("Stamp after Adopt = %v, want {%s %d}", p, pos.Epoch, last+1)
			}
			var want int64
			_, _, all, _ := dst.Export("room:a")
			for _, e := range all {
				want += cost(e)
			}
			if st := dst.Stats(); st.Entries != len(all) || st.Bytes != want {
				t.Errorf("after Adopt: Stats %+v, want %d entries of %d bytes (the old history's bytes given back)", st, len(all), want)
			}
			checkInvariants(t, dst)
		})
	}
}

func TestAdoptExpiredHistory(t *testing.T) {
	s, _ := newTestStore(t, Config{})
	s.Adopt("user:1", Position{"E-1", 9}, nil)
	pos, first, es, ok := s.Export("user:1")
	if !ok || pos != (Position{"E-1", 9}) || first != 10 || len(es) != 0 {
		t.Errorf("Export = %v %d %v %v", pos, first, es, ok)
	}
	if _, _, ok := s.Read("user:1", Position{"E-1", 9}, 1<<20); !ok {
		t.Errorf("Read(since the adopted head) not recovered")
	}
	if _, _, ok := s.Read("user:1", Position{"E-1", 8}, 1<<20); ok {
		t.Errorf("Read(since before the adopted head, nothing held) recovered")
	}
	checkInvariants(t, s)
}

func TestExportAbsent(t *testing.T) {
	s, _ := newTestStore(t, Config{})
	if pos, first, es, ok := s.Export("nope"); ok || pos != (Position{}) || first != 0 || es != nil {
		t.Errorf("Export(absent) = %v %d %v %v", pos, first, es, ok)
	}
	if s.Has("nope") {
		t.Errorf("Export created a stream")
	}
}

func TestExportIsACopy(t *testing.T) {
	s, c := newTestStore(t, Config{})
	fill(t, s, c, "s", "m", 2)
	_, _, es, _ := s.Export("s")
	es[0].ID = "changed"
	_, _, again, _ := s.Export("s")
	if again[0].ID != "m1" {
		t.Errorf("Export shares its slice with the store")
	}
}

func TestCreate(t *testing.T) {
	s, c := newTestStore(t, Config{})
	p, created := s.Create("room:a")
	if !created || p.Epoch == "" || p.Offset != 0 {
		t.Fatalf("Create(absent) = %v %v", p, created)
	}
	if p2, created := s.Create("room:a"); created || p2 != p {
		t.Errorf("Create again = %v %v, want %v false", p2, created, p)
	}
	stampCommit(t, s, "room:a", msg(c, "a", "x"))
	s.Stamp("room:a", msg(c, "b", "x")) // uncommitted: Create reports the committed head
	if p3, created := s.Create("room:a"); created || p3 != (Position{p.Epoch, 1}) {
		t.Errorf("Create after a message = %v %v, want {%s 1}", p3, created, p.Epoch)
	}
}

func TestStaleFlags(t *testing.T) {
	s, c := newTestStore(t, Config{})
	fill(t, s, c, "a", "m", 1)
	fill(t, s, c, "b", "m", 1)
	if s.Stale("a") || s.Stale("absent") || s.Has("absent") || !s.Has("a") {
		t.Fatalf("fresh store: Stale(a)=%v Stale(absent)=%v Has(absent)=%v Has(a)=%v", s.Stale("a"), s.Stale("absent"), s.Has("absent"), s.Has("a"))
	}
	if n := s.MarkStale([]string{"a", "absent", "a"}); n != 1 {
		t.Errorf("MarkStale(a, absent, a) = %d, want 1", n)
	}
	if s.Has("absent") || s.Stale("absent") {
		t.Errorf("MarkStale created a stream")
	}
	if n := s.MarkStale([]string{"a", "b"}); n != 1 {
		t.Errorf("MarkStale(a already, b) = %d, want 1", n)
	}
	for _, name := range []string{"a", "b"} {
		if _, _, stale := s.Stamp(name, msg(c, "x", "x")); !stale {
			t.Errorf("Stamp(%s) while stale stored", name)
		}
	}
	s.Fresh("a")
	if s.Stale("a") || !s.Stale("b") {
		t.Errorf("Fresh(a): Stale(a)=%v Stale(b)=%v", s.Stale("a"), s.Stale("b"))
	}
	s.SetStale("a")
	if !s.Stale("a") {
		t.Errorf("SetStale(a) did not mark it")
	}
	s.SetStale("absent")
	s.Fresh("absent")
	if s.Has("absent") {
		t.Errorf("SetStale/Fresh created a stream")
	}
	names := s.Names()
	slices.Sort(names)
	if !slices.Equal(names, []string{"a", "b"}) {
		t.Errorf("Names() = %v", names)
	}
	// Stale does not hide the history from readers.
	if es, _, ok := s.Read("a", Position{}, 1<<20); !ok || es != nil {
		t.Errorf("Read(stale) = %v %v", es, ok)
	}
}

func TestMaxBytesEviction(t *testing.T) {
	const streams = 50
	probe := cost(Entry{ID: "g00000", Data: make([]byte, 40)})
	maxBytes := 100 * probe
	s, c := newTestStore(t, Config{Size: 1000, MaxBytes: maxBytes})
	type ref struct {
		name string
		pos  Position
	}
	var stamped []ref
	for g := 0; g < 3000; g++ {
		name := fmt.Sprintf("user:%d", g%streams)
		if g%7 == 0 {
			name = "room:busy" // one stream gets more than its share
		}
		e := Entry{ID: fmt.Sprintf("g%05d", g), Data: make([]byte, 10+g%61), Expire: c.now().Add(time.Hour).UnixNano()}
		pos, _, _ := s.Stamp(name, e)
		if st := s.Stats(); st.Bytes > maxBytes {
			t.Fatalf("after put %d: %d bytes, MaxBytes %d", g, st.Bytes, maxBytes)
		}
		s.Commit(name, pos)
		stamped = append(stamped, ref{name, pos})
	}
	checkInvariants(t, s)

	// What is left is a suffix of what was stamped: the oldest went first.
	held := map[string]bool{}
	var live int
	for _, name := range s.Names() {
		_, _, es, _ := s.Export(name)
		for _, e := range es {
			held[e.ID] = true
		}
		live += len(es)
	}
	oldest := len(stamped) - live
	for g := range stamped {
		if want := g >= oldest; held[fmt.Sprintf("g%05d", g)] != want {
			t.Fatalf("entry g%05d held=%v, want %v: the %d entries kept are not the newest", g, !want, want, live)
		}
	}
	st := s.Stats()
	if st.Evicted != uint64(oldest) || st.Entries != live {
		t.Errorf("Stats() = %+v, want %d evicted, %d entries", st, oldest, live)
	}
	if st.Bytes < maxBytes-2*(probe+61) {
		t.Errorf("Stats().Bytes = %d: evicted more than needed under %d", st.Bytes, maxBytes)
	}
	// A reader behind an evicted entry is told it was not recovered.
	r := stamped[oldest-1]
	if _, _, ok := s.Read(r.name, Position{r.pos.Epoch, r.pos.Offset - 1}, 1<<20); ok {
		t.Errorf("Read from before an evicted entry recovered")
	}
	// One whose range was kept is.
	r = stamped[len(stamped)-1]
	if es, _, ok := s.Read(r.name, Position{r.pos.Epoch, r.pos.Offset - 1}, 1<<20); !ok || len(es) != 1 {
		t.Errorf("Read of the newest entry = %v %v", offsets(es), ok)
	}
}

// Entries a stream must keep (uncommitted) are not evicted: they are skipped, and go
// once they are committed.
func TestMaxBytesKeepsUncommitted(t *testing.T) {
	e := Entry{ID: "u1", Data: make([]byte, 100)}
	s, c := newTestStore(t, Config{MaxBytes: 3 * cost(e)}) // the three new ones fit once "old" goes
	fill(t, s, c, "old", "o", 1)
	p1, _, _ := s.Stamp("user:1", Entry{ID: "u1", Data: make([]byte, 100), Expire: c.now().Add(time.Hour).UnixNano()})
	p2, _, _ := s.Stamp("user:2", Entry{ID: "u2", Data: make([]byte, 100), Expire: c.now().Add(time.Hour).UnixNano()})
	p3, _, _ := s.Stamp("user:3", Entry{ID: "u3", Data: make([]byte, 100), Expire: c.now().Add(time.Hour).UnixNano()})
	for _, p := range []struct {
		name string
		pos  Position
	}{{"user:1", p1}, {"user:2", p2}, {"user:3", p3}} {
		if pos, _, es, _ := s.Export(p.name); pos != p.pos || len(es) != 1 {
			t.Errorf("%s: an uncommitted entry was evicted: %v %v", p.name, pos, es)
		}
		s.Commit(p.name, p.pos)
	}
	if _, _, es, _ := s.Export("old"); len(es) != 0 {
		t.Errorf("the committed oldest entry was kept over uncommitted ones")
	}
	checkInvariants(t, s)
}

// Once the store is over MaxBytes with nothing committed left to evict (one message
// larger than MaxBytes, or a batch of uncommitted stamps larger than it), later
// Stamp+Commit traffic must bring it back under MaxBytes.
func TestMaxBytesRecoversAfterOverflow(t *testing.T) {
	small := func(c *clock, id string) Entry {
		return Entry{ID: id, Data: make([]byte, 100), Expire: c.now().Add(time.Hour).UnixNano()}
	}
	maxBytes := 10 * cost(small(newClock(), "s000"))
	cases := []struct {
		name     string
		overflow func(s *Store, c *clock)
	}{
		{"one message larger than MaxBytes", func(s *Store, c *clock) {
			stampCommit(t, s, "user:big", Entry{ID: "big", Data: make([]byte, maxBytes), Expire: c.now().Add(time.Hour).UnixNano()})
		}},
		{"a batch of uncommitted stamps larger than MaxBytes", func(s *Store, c *clock) {
			var ps []Position
			for i := 0; i < 12; i++ {
				p, _, _ := s.Stamp(fmt.Sprintf("room:%d", i), small(c, fmt.Sprintf("b%03d", i)))
				ps = append(ps, p)
			}
			for i, p := range ps {
				s.Commit(fmt.Sprintf("room:%d", i), p)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, c := newTestStore(t, Config{MaxBytes: maxBytes})
			tc.overflow(s, c)
			for i := 0; i < 100; i++ {
				stampCommit(t, s, fmt.Sprintf("user:%d", i), small(c, fmt.Sprintf("s%03d", i)))
				if st := s.Stats(); st.Bytes > maxBytes {
					t.Fatalf("after %d Stamp+Commit of %d-byte entries: %d bytes, MaxBytes %d (%d entries, %d evicted)",
						i+1, cost(small(c, "s000")), st.Bytes, maxBytes, st.Entries, st.Evicted)
				}
			}
			checkInvariants(t, s)
		})
	}
}

// The FIFO holds an item per stored entry; items of entries trimmed by Size (or
// expired) behind a long-lived entry at its front must not pile up.
func TestFIFOBoundedBehindLongLivedEntry(t *testing.T) {
	cases := []struct {
		name  string
		size  int
		churn func(t *testing.T, s *Store, c *clock, i int)
	}{
		{"Size trims", 4, func(t *testing.T, s *Store, c *clock, i int) {
			stampCommit(t, s, "room:churn", msg(c, strconv.Itoa(i), "x"))
		}},
		{"TTL expiry", 64, func(t *testing.T, s *Store, c *clock, i int) {
			stampCommit(t, s, "room:churn", Entry{ID: strconv.Itoa(i), Data: []byte("x"), Expire: c.now().Add(time.Second).UnixNano()})
			c.advance(time.Second)
			if i%10 == 0 {
				s.Sweep()
			}
		}},
		{"replica gaps", 4, func(t *testing.T, s *Store, c *clock, i int) {
			s.Apply("room:churn", Position{"E-1", uint64(2 * (i + 1))}, msg(c, strconv.Itoa(i), "x"))
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, c := newTestStore(t, Config{Size: tc.size, TTL: time.Hour})
			stampCommit(t, s, "user:pinned", Entry{ID: "pinned", Data: []byte("p"), Expire: c.now().Add(100 * 24 * time.Hour).UnixNano()})
			maxLen := 0
			for i := 0; i < 50_000; i++ {
				tc.churn(t, s, c, i)
				s.mu.Lock()
				n, live := len(s.fifo), s.live
				s.mu.Unlock()
				maxLen = max(maxLen, n)
				if n > 4*live+2048 {
					t.Fatalf("after %d: len(fifo) = %d with %d live entries", i, n, live)
				}
			}
			if _, _, es, _ := s.Export("user:pinned"); len(es) != 1 {
				t.Fatalf("the long-lived entry is gone")
			}
			t.Logf("max len(fifo) %d", maxLen)
			checkInvariants(t, s)
		})
	}
}

// A history replaced at the same offsets (Adopt of another epoch, or of the same one)
// leaves the FIFO items of the dropped entries behind; they must not count as the
// items of the entries stored again at those offsets.
func TestFIFOAcrossHistoryReplacement(t *testing.T) {
	t.Run("fifo bounded", func(t *testing.T) {
		s, c := newTestStore(t, Config{Size: 4, TTL: time.Hour})
		for i := 0; i < 50_000; i++ {
			s.Adopt("room:churn", Position{"E-" + strconv.Itoa(i), 3}, []Entry{
				{Offset: 1, ID: "a", Expire: c.now().Add(time.Hour).UnixNano()},
				{Offset: 2, ID: "b", Expire: c.now().Add(time.Hour).UnixNano()},
				{Offset: 3, ID: "c", Expire: c.now().Add(time.Hour).UnixNano()},
			})
			s.mu.Lock()
			n, live := len(s.fifo), s.live
			s.mu.Unlock()
			if n > 4*live+2048 {
				t.Fatalf("after %d Adopts: len(fifo) = %d with %d live entries", i+1, n, live)
			}
		}
		checkInvariants(t, s)
	})
	t.Run("eviction order after Adopt", func(t *testing.T) {
		e := func(id string) Entry { return Entry{ID: id, Data: make([]byte, 4), Expire: 1 << 62} }
		s, _ := newTestStore(t, Config{MaxBytes: 3 * cost(e("a1"))})
		stampCommit(t, s, "A", e("a1"))
		stampCommit(t, s, "B", e("b1"))
		s.Adopt("A", Position{"F-1", 1}, []Entry{{Offset: 1, ID: "x1", Data: make([]byte, 4), Expire: 1 << 62}}) // drops a1, stores x1
		stampCommit(t, s, "C", e("c1"))
		stampCommit(t, s, "D", e("d1")) // over MaxBytes: b1 is the oldest entry stored
		if _, _, es, _ := s.Export("B"); len(es) != 0 {
			t.Errorf("b1 (stored before x1) kept")
		}
		if _, _, es, _ := s.Export("A"); len(es) != 1 {
			t.Errorf("x1 (stored after b1) evicted first, through the FIFO item of the a1 it replaced")
		}
		checkInvariants(t, s)
	})
}

func TestSweep(t *testing.T) {
	const ttl = time.Minute
	s, c := newTestStore(t, Config{TTL: ttl})
	t0 := c.now()
	exp := t0.Add(ttl).UnixNano() // as the hub sets it: now + TTL
	var head Position
	for i := 1; i <= 3; i++ {
		head = stampCommit(t, s, "user:1", Entry{ID: strconv.Itoa(i), Data: []byte("x"), Expire: exp})
	}
	s.Stamp("room:pending", Entry{ID: "p", Data: []byte("x"), Expire: exp}) // never committed

	c.advance(ttl - 1)
	if n := s.Sweep(); n != 0 {
		t.Fatalf("Sweep before the TTL = %d", n)
	}
	c.advance(1) // now == Expire
	if n := s.Sweep(); n != 3 {
		t.Fatalf("Sweep at the TTL = %d, want 3", n)
	}
	if st := s.Stats(); st.Entries != 1 || st.Bytes != cost(Entry{ID: "p", Data: []byte("x")}) {
		t.Errorf("after Sweep: %+v, want only the uncommitted entry", st)
	}
	if _, _, es, _ := s.Export("room:pending"); len(es) != 1 {
		t.Errorf("Sweep dropped an uncommitted entry")
	}
	// The emptied stream keeps its epoch and offset: a client up to date stays so.
	if _, h, ok := s.Read("user:1", head, 1<<20); !ok || h != head {
		t.Errorf("Read(up to date) after expiry = %v %v", h, ok)
	}
	if _, _, ok := s.Read("user:1", Position{head.Epoch, 2}, 1<<20); ok {
		t.Errorf("Read(behind) after expiry recovered")
	}

	// An empty stream created recently is kept.
	c.advance(time.Minute) // t0 + 2m
	s.Create("room:new")
	if s.Sweep(); !s.Has("user:1") {
		t.Fatalf("user:1 forgotten at exactly 2×TTL idle")
	}
	c.advance(1) // t0 + 2m + 1ns: user:1 idle for longer than 2×TTL
	s.Sweep()
	if s.Has("user:1") {
		t.Errorf("user:1 idle and empty for more than 2×TTL: still held")
	}
	if !s.Has("room:new") {
		t.Errorf("room:new (created now) forgotten")
	}
	if !s.Has("room:pending") {
		t.Errorf("room:pending (an uncommitted entry) forgotten")
	}
	if _, h, ok := s.Read("user:1", head, 1<<20); ok || h.Epoch == head.Epoch {
		t.Errorf("Read of a forgotten stream = %v %v: want a new epoch, not recovered", h, ok)
	}
	c.advance(2 * ttl)
	s.Sweep()
	if s.Has("room:new") {
		t.Errorf("room:new idle for more than 2×TTL: still held")
	}
	checkInvariants(t, s)
}

func TestSweepKeepsStreamsWithEntries(t *testing.T) {
	s, c := newTestStore(t, Config{TTL: time.Minute})
	stampCommit(t, s, "user:1", Entry{ID: "long", Data: []byte("x"), Expire: c.now().Add(time.Hour).UnixNano()})
	c.advance(30 * time.Minute)
	if n := s.Sweep(); n != 0 || !s.Has("user:1") {
		t.Errorf("Sweep = %d, Has = %v: a stream holding an unexpired entry is not idle-empty", n, s.Has("user:1"))
	}
}

func TestOlder(t *testing.T) {
	t0 := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	times := []time.Time{
		time.UnixMilli(0),
		time.UnixMilli(35),
		time.UnixMilli(36), // one more base-36 digit
		t0,
		t0.Add(time.Millisecond),
		t0.Add(time.Second),
		t0.Add(time.Hour),
		t0.AddDate(1, 0, 0),
		time.UnixMilli(2821109907455), // 36^8-1: the last 8-digit time (2059)
		time.UnixMilli(2821109907456), // 36^8: 9 digits
	}
	epochs := make([]string, len(times))
	for i, tm := range times {
		epochs[i] = NewEpoch(tm)
	}
	for i := range epochs {
		for j := range epochs {
			if got, want := Older(epochs[i], epochs[j]), i < j; got != want {
				t.Errorf("Older(%s (%v), %s (%v)) = %v, want %v", epochs[i], times[i], epochs[j], times[j], got, want)
			}
		}
	}
	// The same millisecond: the random part orders them, one way only.
	a, b := NewEpoch(t0), NewEpoch(t0)
	for a == b {
		b = NewEpoch(t0)
	}
	if Older(a, b) == Older(b, a) {
		t.Errorf("Older(%s, %s) = %v both ways", a, b, Older(a, b))
	}
	if Older(a, a) {
		t.Errorf("Older(a, a)")
	}
}

func TestNewEpochUnique(t *testing.T) {
	seen := map[string]bool{}
	now := time.Now()
	for i := 0; i < 1000; i++ {
		e := NewEpoch(now)
		if seen[e] {
			t.Fatalf("NewEpoch repeated %q", e)
		}
		seen[e] = true
	}
}

// The store under concurrent use (run with -race): owners stamp and commit, readers
// read, a sweeper sweeps, a syncer exports and adopts.
func TestConcurrentUse(t *testing.T) {
	s, c := newTestStore(t, Config{Size: 16, MaxBytes: 16 << 10, TTL: time.Second})
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				name := fmt.Sprintf("user:%d", i%20)
				pos, _, stale := s.Stamp(name, Entry{ID: fmt.Sprintf("%d-%d", w, i), Data: make([]byte, 32), Expire: c.now().Add(time.Second).UnixNano()})
				if stale {
					s.Fresh(name)
					continue
				}
				if i%13 == 0 {
					s.Rollback(name, pos)
				} else {
					s.Commit(name, pos)
				}
				s.Read(name, Position{pos.Epoch, pos.Offset - 1}, 1<<20)
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 200; i++ {
			c.advance(10 * time.Millisecond)
			s.Sweep()
			name := fmt.Sprintf("user:%d", i%20)
			if pos, _, es, ok := s.Export(name); ok {
				s.Adopt(name, pos, es)
			}
			s.Stats()
		}
	}()
	wg.Wait()
	checkInvariants(t, s)
	if st := s.Stats(); st.Bytes > 16<<10 {
		t.Errorf("Stats().Bytes = %d over MaxBytes", st.Bytes)
	}
}

func BenchmarkStamp(b *testing.B) {
	const streams = 10_000
	s := New(Config{})
	names := make([]string, streams)
	for i := range names {
		names[i] = "user:" + strconv.Itoa(i)
	}
	// Ids as the API makes them (node prefix, 16 hex digits), distinct over every
	// stream's window (Size 64 × 10,000 streams < 1<<20).
	const nids = 1 << 20
	ids := make([]string, nids)
	for i := range ids {
		ids[i] = fmt.Sprintf("node-1-%016x", i)
	}
	data := make([]byte, 64)
	expire := time.Now().Add(time.Hour).UnixNano()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		name := names[i%streams]
		pos, dup, _ := s.Stamp(name, Entry{ID: ids[i&(nids-1)], Data: data, Expire: expire})
		if dup {
			b.Fatal("dup")
		}
		s.Commit(name, pos)
	}
}

func BenchmarkRead(b *testing.B) {
	const streams = 1000
	s := New(Config{})
	names := make([]string, streams)
	heads := make([]Position, streams)
	data := make([]byte, 64)
	expire := time.Now().Add(time.Hour).UnixNano()
	for i := range names {
		names[i] = "room:" + strconv.Itoa(i)
		for j := 0; j < 64; j++ {
			pos, _, _ := s.Stamp(names[i], Entry{ID: fmt.Sprintf("node-1-%016x", i*64+j), Data: data, Expire: expire})
			s.Commit(names[i], pos)
			heads[i] = pos
		}
	}
	for _, bc := range []struct {
		name   string
		behind uint64
	}{{"uptodate", 0}, {"behind8", 8}, {"behind63", 63}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				h := heads[i%streams]
				es, _, ok := s.Read(names[i%streams], Position{h.Epoch, h.Offset - bc.behind}, 1<<20)
				if !ok || len(es) != int(bc.behind) {
					b.Fatalf("Read = %d entries %v", len(es), ok)
				}
			}
		})
	}
}

// A history a peer hands over that is not one run ending at its position (a
// malicious or broken peer) is not stored: taking it would break the entries
// invariant and a later Apply would index past them.
func TestAdoptRefusesBrokenHistories(t *testing.T) {
	s, c := newTestStore(t, Config{Size: 8, TTL: time.Hour})
	exp := c.now().Add(time.Hour).UnixNano()
	e := func(off uint64) Entry { return Entry{Offset: off, ID: fmt.Sprint("m", off), Expire: exp} }
	for _, tc := range []struct {
		name    string
		entries []Entry
	}{
		{"ends before the position", []Entry{e(8), e(9)}},
		{"not contiguous", []Entry{e(7), e(9), e(10)}},
		{"more entries than offsets", []Entry{e(1), e(1), e(2), e(3), e(4), e(5), e(6), e(7), e(8), e(9), e(10), e(10)}},
	} {
		s.Adopt("user:x", Position{"E", 10}, tc.entries)
		if _, first, got, ok := s.Export("user:x"); !ok || len(got) != 0 || first != 11 {
			t.Errorf("%s: kept %d entries from %d", tc.name, len(got), first)
		}
		// The position is taken; the next entry continues it without a panic.
		if ok, _ := s.Apply("user:x", Position{"E", 10}, e(10)); ok {
			t.Errorf("%s: an entry at the adopted head was taken as new", tc.name)
		}
		if ok, _ := s.Apply("user:x", Position{"E", 11}, e(11)); !ok {
			t.Errorf("%s: the next entry was refused", tc.name)
		}
		s.Adopt("user:x", Position{"E", 0}, nil)
	}
}

// TestAcks: a cumulative ack covers the entries that asked for one up to its offset;
// what is left unacknowledged is read again whatever the reader's position, and is
// reported once when its ttl passes or it is evicted.
func TestAcks(t *testing.T) {
	now := time.Unix(1000, 0)
	s := New(Config{Size: 4, Now: func() time.Time { return now }})
	exp := now.Add(time.Minute).UnixNano()
	var last Position
	for i, ack := range []bool{true, false, true, true} {
		p, _, _ := s.Stamp("user:1", Entry{ID: fmt.Sprint("m", i+1), Ack: ack, Expire: exp})
		s.Commit("user:1", p)
		last = p
	}
	ids := func(es []Entry) (out []string) {
		for _, e := range es {
			out = append(out, e.ID)
		}
		return out
	}
	if got := ids(s.Unacked("user:1", last.Offset, 1<<20)); !slices.Equal(got, []string{"m1", "m3", "m4"}) {
		t.Fatalf("unacked %v", got)
	}
	if got := s.Ack("user:1", Position{last.Epoch, 3}); !slices.Equal(got, []string{"m1", "m3"}) {
		t.Fatalf("ack through 3 covered %v", got)
	}
	if got := s.Ack("user:1", Position{last.Epoch, 2}); got != nil {
		t.Fatalf("an older ack covered %v", got)
	}
	if got := s.Ack("user:1", Position{"other-epoch", 9}); got != nil {
		t.Fatalf("an ack of another epoch covered %v", got)
	}
	if got := ids(s.Unacked("user:1", 3, 1<<20)); got != nil {
		t.Fatalf("unacked up to 3 after the ack: %v", got)
	}
	if a, _ := s.Acked("user:1"); a.Offset != 3 {
		t.Fatalf("acked %v", a)
	}
	// m4 is pushed out by a fifth message (Size 4): reported once as evicted.
	p, _, _ := s.Stamp("user:1", Entry{ID: "m5", Expire: exp})
	s.Commit("user:1", p)
	p, _, _ = s.Stamp("user:1", Entry{ID: "m6", Expire: exp})
	s.Commit("user:1", p)
	p, _, _ = s.Stamp("user:1", Entry{ID: "m7", Expire: now.Add(2 * time.Minute).UnixNano()})
	s.Commit("user:1", p)
	p, _, _ = s.Stamp("user:1", Entry{ID: "m8", Ack: true, Expire: now.Add(10 * time.Second).UnixNano()})
	s.Commit("user:1", p)
	d, lost := s.TakeDropped()
	if lost != 0 || len(d) != 1 || d[0] != (Dropped{"user:1", "m4", "evicted"}) {
		t.Fatalf("dropped %v (%d lost)", d, lost)
	}
	// m8 expires behind longer-lived entries: reported at its own ttl, once.
	now = now.Add(11 * time.Second)
	s.Sweep()
	s.Sweep()
	if d, _ := s.TakeDropped(); len(d) != 1 || d[0] != (Dropped{"user:1", "m8", "ttl"}) {
		t.Fatalf("dropped after m8's ttl: %v", d)
	}
	if got := s.Unacked("user:1", p.Offset, 1<<20); got != nil {
		t.Fatalf("unacked after expiry: %v", ids(got))
	}
}
