package stream

import (
	"crypto/rand"
	"encoding/binary"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Entry is one stored message of a stream.
type Entry struct {
	Offset uint64
	ID     string
	Data   []byte
	Binary bool  // a binary WebSocket message
	JSON   bool  // Data is the text of a JSON value (else a string's characters)
	Ack    bool  // asks its stream's subscribers to acknowledge it (Store.Ack)
	Expire int64 // unix nanoseconds
}

// Dropped is an entry that asked for an acknowledgement and left its stream's
// history without one (Store.TakeDropped).
type Dropped struct {
	Stream, ID string
	// Reason is "ttl" (expired) or "evicted" (pushed out by Size or MaxBytes).
	Reason string
}

// maxDropped bounds the drops kept between two TakeDropped calls.
const maxDropped = 1 << 16

func (e *Entry) size() int64 { return int64(len(e.Data)+len(e.ID)) + entryOverhead }

// entryOverhead is what an entry costs beyond its bytes (struct, slice and FIFO slot),
// so a flood of empty messages is bounded by MaxBytes too.
const entryOverhead = 96

// Position is a point in a stream: the epoch of its history and the offset of the last
// message (0: none yet).
type Position struct {
	Epoch  string
	Offset uint64
}

// Config bounds a Store. Zero values take the documented defaults.
type Config struct {
	// Size is how many messages each stream keeps. Zero means 64.
	Size int
	// TTL is how long a message is kept unless it says otherwise. Zero means 2m.
	TTL time.Duration
	// MaxBytes bounds the bytes of every stream together; over it the oldest
	// messages (of any stream) go first. Zero means 256 MiB.
	MaxBytes int64
	// Now is the clock (tests). Nil: time.Now.
	Now func() time.Time
}

// Defaults returns the values zero fields of a Config stand for.
func Defaults() Config {
	return Config{Size: 64, TTL: 2 * time.Minute, MaxBytes: 256 << 20}
}

// Store holds the history of the streams this node owns or replicates. It is safe for
// concurrent use; one mutex guards it (a push touches it once per stream, never per
// recipient).
type Store struct {
	cfg Config

	mu    sync.Mutex
	logs  map[string]*log
	fifo  []fifoItem // every stored entry, oldest first: the node-wide eviction order
	head  int        // fifo[:head] are consumed
	live  int        // entries held by all logs
	bytes int64

	// Evicted counts entries dropped for MaxBytes before their TTL (metrics).
	evicted uint64
	// dropped are unacknowledged Ack entries that left a history since the last
	// TakeDropped; droppedLost counts those past maxDropped.
	dropped     []Dropped
	droppedLost uint64
}

type fifoItem struct {
	l      *log
	offset uint64
	gen    uint32 // l.gen when stored: a replaced history's items are dead
}

// live reports whether the entry it names is still held.
func (it *fifoItem) live() bool {
	l := it.l
	return it.gen == l.gen && it.offset >= l.first && it.offset < l.first+uint64(len(l.entries))
}

// log is one stream's history: entries[i].Offset == first+i, contiguous. next-1 is the
// last offset handed out (stamped), committed the last one readers may see.
type log struct {
	name      string
	epoch     string
	first     uint64 // offset of entries[0]; when entries is empty, the next to be stored
	entries   []Entry
	next      uint64 // next offset to stamp
	committed uint64
	acked     uint64 // acknowledged through this offset (cumulative, this epoch)
	hasAck    bool   // an entry asking for an ack was stored (Sweep looks for expired ones)
	touched   int64  // unix nanoseconds of the last append
	gen       uint32 // bumped whenever entries are dropped other than from the front
	// stale marks a history this node must not extend before asking the stream's
	// other holders what they have (ownership came here from elsewhere).
	stale bool
}

// New returns an empty Store.
func New(cfg Config) *Store {
	d := Defaults()
	if cfg.Size <= 0 {
		cfg.Size = d.Size
	}
	if cfg.TTL <= 0 {
		cfg.TTL = d.TTL
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = d.MaxBytes
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Store{cfg: cfg, logs: map[string]*log{}}
}

// Config returns the store's bounds, defaults applied.
func (s *Store) Config() Config { return s.cfg }

// NewEpoch returns a fresh epoch: the time in milliseconds (base 36, so epochs created
// later sort later when of equal length) and 4 random bytes.
func NewEpoch(now time.Time) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return strconv.FormatInt(now.UnixMilli(), 36) + "-" + strconv.FormatUint(uint64(binary.BigEndian.Uint32(b[:])), 36)
}

// Older reports whether epoch a was created before b (ties broken by the random part).
func Older(a, b string) bool {
	ta, _, _ := strings.Cut(a, "-")
	tb, _, _ := strings.Cut(b, "-")
	if len(ta) != len(tb) {
		return len(ta) < len(tb)
	}
	if ta != tb {
		return ta < tb
	}
	return a < b
}

func (s *Store) logFor(name string, create bool) *log {
	l := s.logs[name]
	if l == nil && create {
		now := s.cfg.Now()
		l = &log{name: name, epoch: NewEpoch(now), first: 1, next: 1, touched: now.UnixNano()}
		s.logs[name] = l
	}
	return l
}

// Stamp gives e the next offset of stream name and stores it, uncommitted: readers do
// not see it until Commit. If e.ID is already in the stream it returns that entry's
// position and dup (nothing stored). stale says the history must be synced first
// (SetStale, Adopt); nothing is stored then.
func (s *Store) Stamp(name string, e Entry) (pos Position, dup, stale bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.logFor(name, true)
	if l.stale {
		return Position{}, false, true
	}
	for i := range l.entries {
		if l.entries[i].ID == e.ID {
			return Position{l.epoch, l.entries[i].Offset}, true, false
		}
	}
	e.Offset = l.next
	l.next++
	s.put(l, e)
	return Position{l.epoch, e.Offset}, false, false
}

// Commit makes offsets up to offset of stream name visible to readers.
func (s *Store) Commit(name string, p Position) {
	s.mu.Lock()
	if l := s.logs[name]; l != nil && l.epoch == p.Epoch && p.Offset > l.committed && p.Offset < l.next {
		l.committed = p.Offset
		for len(l.entries) > s.cfg.Size && l.entries[0].Offset <= l.committed {
			s.trimFront(l, "evicted")
		}
		s.evict()
	}
	s.mu.Unlock()
}

// Rollback forgets the uncommitted entries of stream name from offset p.Offset on (their
// replication was refused) and marks the stream stale.
func (s *Store) Rollback(name string, p Position) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.logs[name]
	if l == nil || l.epoch != p.Epoch || p.Offset <= l.committed || p.Offset >= l.next {
		return
	}
	l.gen++
	for len(l.entries) > 0 && l.entries[len(l.entries)-1].Offset >= p.Offset {
		s.bytes -= l.entries[len(l.entries)-1].size()
		s.live--
		l.entries = l.entries[:len(l.entries)-1]
	}
	l.next = p.Offset
	if len(l.entries) == 0 {
		l.first = l.next
	}
	l.stale = true
}

// Apply stores a replica's copy of an entry the stream's owner stamped at pos. It
// accepts when this node has no newer history of the stream: none, an older epoch, or
// the same epoch up to pos.Offset-1 (or with a gap before it, which it records by
// starting its copy at pos.Offset). Otherwise it refuses and returns what it has, so the
// owner can adopt it. Applying an entry already held is a success.
func (s *Store) Apply(name string, pos Position, e Entry) (ok bool, have Position) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.logs[name]
	if pos.Offset == 0 {
		// The owner announces the epoch of a stream with no messages yet (Create).
		switch {
		case l == nil:
			s.logs[name] = &log{name: name, epoch: pos.Epoch, first: 1, next: 1, touched: s.cfg.Now().UnixNano()}
		case l.epoch == pos.Epoch:
		case l.next > 1:
			return false, Position{l.epoch, l.next - 1}
		default:
			s.reset(l, pos.Epoch)
		}
		return true, Position{}
	}
	switch {
	case l == nil:
		l = &log{name: name, epoch: pos.Epoch, first: 1, next: 1, touched: s.cfg.Now().UnixNano()}
		s.logs[name] = l
	case l.epoch != pos.Epoch:
		// Another history of the stream: the longer one wins (the owner may be a
		// node that came back empty, or this node a holder left behind).
		if l.next-1 >= pos.Offset {
			return false, Position{l.epoch, l.next - 1}
		}
		s.reset(l, pos.Epoch)
	case pos.Offset < l.next:
		if i := pos.Offset - l.first; pos.Offset >= l.first && i < uint64(len(l.entries)) && l.entries[i].ID == e.ID {
			return true, Position{}
		}
		return false, Position{l.epoch, l.next - 1}
	}
	if pos.Offset != l.next {
		s.dropEntries(l)
		l.first, l.next = pos.Offset, pos.Offset
	}
	e.Offset = pos.Offset
	l.next = pos.Offset + 1
	l.committed = pos.Offset
	l.stale = false
	s.put(l, e)
	return true, Position{}
}

func (s *Store) reset(l *log, epoch string) {
	s.dropEntries(l)
	l.epoch, l.first, l.next, l.committed, l.acked = epoch, 1, 1, 0, 0
}

func (s *Store) dropEntries(l *log) {
	for i := range l.entries {
		s.bytes -= l.entries[i].size()
	}
	s.live -= len(l.entries)
	l.entries = nil
	l.first = l.next
	l.gen++
}

// put appends e (e.Offset == l.next-1, contiguous) and enforces Size and MaxBytes.
func (s *Store) put(l *log, e Entry) {
	if len(l.entries) == 0 {
		l.first = e.Offset
	}
	l.entries = append(l.entries, e)
	l.hasAck = l.hasAck || e.Ack
	l.touched = s.cfg.Now().UnixNano()
	s.bytes += e.size()
	s.live++
	s.fifo = append(s.fifo, fifoItem{l, e.Offset, l.gen})
	for len(l.entries) > s.cfg.Size && l.entries[0].Offset <= l.committed {
		s.trimFront(l, "evicted")
	}
	s.evict()
}

// evict drops the oldest entries, of any stream, while the store is over MaxBytes. It
// stops at an uncommitted one (its batch is being replicated): Commit evicts again.
func (s *Store) evict() {
	for s.bytes > s.cfg.MaxBytes && s.head < len(s.fifo) {
		it := &s.fifo[s.head]
		if it.live() {
			if it.offset > it.l.committed {
				break
			}
			for it.l.entries[0].Offset < it.offset {
				s.trimFront(it.l, "evicted") // older entries of the same stream go first
				s.evicted++
			}
			s.trimFront(it.l, "evicted")
			s.evicted++
		}
		s.fifo[s.head] = fifoItem{}
		s.head++
	}
	s.compactFIFO()
}

func (s *Store) trimFront(l *log, reason string) {
	if e := &l.entries[0]; e.Ack && e.Offset > l.acked {
		s.drop(Dropped{Stream: l.name, ID: e.ID, Reason: reason})
	}
	s.live--
	s.bytes -= l.entries[0].size()
	l.entries[0] = Entry{}
	l.entries = l.entries[1:]
	l.first++
	if len(l.entries) == 0 {
		l.entries = nil
	}
}

// compactFIFO drops consumed FIFO slots once they are half of it, and items whose
// entry is already gone from the front (trimmed by Size or TTL), so the FIFO is
// bounded by the entries stored, not by the entries ever stored.
func (s *Store) compactFIFO() {
	for s.head < len(s.fifo) {
		if s.fifo[s.head].live() {
			break
		}
		s.fifo[s.head] = fifoItem{}
		s.head++
	}
	if s.head > 1024 && s.head > len(s.fifo)/2 {
		n := copy(s.fifo, s.fifo[s.head:])
		clear(s.fifo[n:])
		s.fifo = s.fifo[:n]
		s.head = 0
	}
	// Items of entries trimmed behind a long-lived one at the front would otherwise
	// pile up until it expires: past twice the live entries, keep only live items.
	if n := len(s.fifo) - s.head; n > 2*s.live+1024 {
		kept := s.fifo[:0]
		for _, it := range s.fifo[s.head:] {
			if it.live() {
				kept = append(kept, it)
			}
		}
		clear(s.fifo[len(kept):])
		s.fifo, s.head = kept, 0
	}
}

// Head returns the committed position of stream name (ok false: no history here).
func (s *Store) Head(name string) (Position, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.logs[name]
	if l == nil {
		return Position{}, false
	}
	return Position{l.epoch, l.committed}, true
}

// Create makes an empty history of stream name if there is none and returns its
// position. The owner of a stream creates it when a subscriber asks for it, and sends
// the epoch to the replicas (Apply with offset 0): otherwise a replica that takes over
// would make up another epoch for a stream with no messages, and every client would
// be told its (empty) history was lost.
func (s *Store) Create(name string) (pos Position, created bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.logs[name]
	if l != nil {
		return Position{l.epoch, l.committed}, false
	}
	l = s.logFor(name, true)
	return Position{l.epoch, 0}, true
}

// SetStale marks stream name stale.
func (s *Store) SetStale(name string) {
	s.mu.Lock()
	if l := s.logs[name]; l != nil {
		l.stale = true
	}
	s.mu.Unlock()
}

// Has reports whether this node holds a history of stream name.
func (s *Store) Has(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logs[name] != nil
}

// Stale reports whether stream name must be synced before this node extends it.
func (s *Store) Stale(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.logs[name]
	return l != nil && l.stale
}

// Read returns the committed entries of stream name after since, and the head. It
// creates the stream if it does not exist (a subscriber's position starts at its
// head). recovered is false when the history cannot cover (since, head]: another
// epoch, entries trimmed or expired, or since beyond the head. maxBytes bounds the
// entries returned (their data); over it recovered is false too. A zero since.Epoch
// asks for the head only (no entries, recovered true).
func (s *Store) Read(name string, since Position, maxBytes int) (entries []Entry, head Position, recovered bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.logFor(name, true)
	head = Position{l.epoch, l.committed}
	if since.Epoch == "" {
		return nil, head, true
	}
	if since.Epoch != l.epoch || since.Offset > l.committed {
		return nil, head, false
	}
	if since.Offset == l.committed {
		return nil, head, true
	}
	if since.Offset+1 < l.first {
		return nil, head, false
	}
	now := s.cfg.Now().UnixNano()
	total := 0
	for i := since.Offset + 1 - l.first; i < uint64(len(l.entries)); i++ {
		e := l.entries[i]
		if e.Offset > l.committed {
			break
		}
		if e.Expire <= now {
			return nil, head, false
		}
		if total += len(e.Data); total > maxBytes {
			return nil, head, false
		}
		entries = append(entries, e)
	}
	return entries, head, true
}

// Export returns everything this node holds of stream name: its position (the last
// stored offset, committed or not, since a replica commits on Apply) and its entries.
func (s *Store) Export(name string) (pos Position, first uint64, entries []Entry, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.logs[name]
	if l == nil {
		return Position{}, 0, nil, false
	}
	return Position{l.epoch, l.next - 1}, l.first, slices.Clone(l.entries), true
}

// Adopt replaces this node's history of stream name by another holder's (a newer epoch
// or a longer history of the same one) and clears stale. Entries must be contiguous and
// end at pos.Offset. Keeping what is local when it is at least as far is the caller's
// choice (Adopt always takes what it is given).
func (s *Store) Adopt(name string, pos Position, entries []Entry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.logFor(name, true)
	s.dropEntries(l)
	l.touched = s.cfg.Now().UnixNano()
	if l.epoch != pos.Epoch {
		l.acked = 0
	}
	l.epoch = pos.Epoch
	l.next = pos.Offset + 1
	l.committed = pos.Offset
	l.first = l.next
	l.stale = false
	// Only a contiguous run ending exactly at pos.Offset is taken (the entries
	// invariant: first+len(entries) == next); anything else from a peer is kept as
	// the position alone.
	if n := uint64(len(entries)); n == 0 || n > pos.Offset || entries[n-1].Offset != pos.Offset {
		return
	}
	for i := range entries {
		if entries[i].Offset != entries[0].Offset+uint64(i) {
			return
		}
	}
	l.first = entries[0].Offset
	for _, e := range entries {
		s.put(l, e)
	}
	l.next = pos.Offset + 1
}

// Fresh clears stale without changing the history: the sync found nothing newer.
func (s *Store) Fresh(name string) {
	s.mu.Lock()
	if l := s.logs[name]; l != nil {
		l.stale = false
	}
	s.mu.Unlock()
}

// MarkStale marks the listed streams stale; it returns how many it marked. Streams not
// held here need no mark: Stamp treats a stream it creates as new, and the owner's
// replication finds out if a replica holds more (Apply refuses).
func (s *Store) MarkStale(names []string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, name := range names {
		if l := s.logs[name]; l != nil && !l.stale {
			l.stale = true
			n++
		}
	}
	return n
}

// Names calls fn with the name of every stream held, under no lock (a snapshot).
func (s *Store) Names() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.logs))
	for name := range s.logs {
		out = append(out, name)
	}
	return out
}

// Sweep drops expired entries, and streams idle for longer than twice the TTL with
// nothing left (their epoch and offset are forgotten: a client resuming one later is
// told it was not recovered). It returns how many entries expired.
func (s *Store) Sweep() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.Now().UnixNano()
	n := 0
	for name, l := range s.logs {
		for len(l.entries) > 0 && l.entries[0].Expire <= now && l.entries[0].Offset <= l.committed {
			s.trimFront(l, "ttl")
			n++
		}
		if l.hasAck {
			// An entry with a short ttl behind a longer-lived one stays until that
			// one goes, but its ack is over when its own ttl is: report it now, once.
			l.hasAck = false
			for i := range l.entries {
				e := &l.entries[i]
				if !e.Ack || e.Offset <= l.acked {
					continue
				}
				if e.Expire <= now && e.Offset <= l.committed {
					e.Ack = false
					s.drop(Dropped{Stream: l.name, ID: e.ID, Reason: "ttl"})
					continue
				}
				l.hasAck = true
			}
		}
		if len(l.entries) == 0 && l.next == l.committed+1 && now-l.touched > 2*int64(s.cfg.TTL) {
			delete(s.logs, name)
		}
	}
	s.compactFIFO()
	return n
}

// Ack records that stream name is acknowledged through p.Offset (cumulative; an ack
// of another epoch, or of what is not committed here, counts for what is). It returns
// the ids of the entries asking for an ack that this newly covers.
func (s *Store) Ack(name string, p Position) (ids []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.logs[name]
	if l == nil || l.epoch != p.Epoch {
		return nil
	}
	to := min(p.Offset, l.committed)
	if to <= l.acked {
		return nil
	}
	for i := range l.entries {
		if e := &l.entries[i]; e.Offset > l.acked && e.Offset <= to && e.Ack {
			ids = append(ids, e.ID)
		}
	}
	l.acked = to
	return ids
}

// Acked returns how far stream name is acknowledged (ok false: no history here).
func (s *Store) Acked(name string) (Position, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.logs[name]
	if l == nil {
		return Position{}, false
	}
	return Position{l.epoch, l.acked}, true
}

// Unacked returns the committed, unexpired entries of stream name up to offset upTo
// that ask for an ack and are not acknowledged: what a subscriber gets again however
// far it says it has read (its earlier copy may never have been handled). maxBytes
// bounds the data returned; the oldest come first and the rest are left out.
func (s *Store) Unacked(name string, upTo uint64, maxBytes int) []Entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := s.logs[name]
	if l == nil {
		return nil
	}
	now := s.cfg.Now().UnixNano()
	var out []Entry
	total := 0
	for i := range l.entries {
		e := l.entries[i]
		if e.Offset > upTo || e.Offset > l.committed {
			break
		}
		if !e.Ack || e.Offset <= l.acked || e.Expire <= now {
			continue
		}
		if total += len(e.Data); total > maxBytes {
			break
		}
		out = append(out, e)
	}
	return out
}

func (s *Store) drop(d Dropped) {
	if len(s.dropped) < maxDropped {
		s.dropped = append(s.dropped, d)
	} else {
		s.droppedLost++
	}
}

// TakeDropped returns the unacknowledged entries that left their histories since
// the last call, and how many more did but were not kept (over maxDropped).
func (s *Store) TakeDropped() ([]Dropped, uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, lost := s.dropped, s.droppedLost
	s.dropped, s.droppedLost = nil, 0
	return d, lost
}

// Stats is what the store holds, for metrics.
type Stats struct {
	Streams int
	Entries int
	Bytes   int64
	Evicted uint64
}

// Stats returns the store's figures.
func (s *Store) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{Streams: len(s.logs), Entries: s.live, Bytes: s.bytes, Evicted: s.evicted}
}
