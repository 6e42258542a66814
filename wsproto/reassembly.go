package wsproto

import (
	"sync"
	"sync/atomic"

	"github.com/gobwas/ws"
)

// ChunkSize is the unit in which a Parser stores an unfinished message: the bytes it
// holds for one are what arrived, rounded up to a multiple of ChunkSize. Small enough
// that the rounding is a small constant per connection, large enough that a 1 MiB
// message takes 128 chunk operations.
const ChunkSize = 8 << 10

// chunk is one piece of an unfinished message.
type chunk [ChunkSize]byte

// freeChunks keeps a few chunks for reuse. It is a bounded channel rather than a
// sync.Pool so that what it keeps is known (freeChunkCap*ChunkSize = 4 MiB): after a
// burst of large unfinished messages ends, everything beyond that is garbage at once
// and can go back to the OS, instead of sitting in a pool until two GC cycles pass.
// One channel operation per 8 KiB is nothing next to copying the 8 KiB.
var freeChunks = make(chan *chunk, freeChunkCap)

const freeChunkCap = 512

func getChunk() *chunk {
	select {
	case c := <-freeChunks:
		return c
	default:
		return new(chunk)
	}
}

func putChunk(c *chunk) {
	select {
	case freeChunks <- c:
	default: // full: left to the GC
	}
}

// Budget bounds the bytes that all Parsers sharing it hold for unfinished messages
// (in whole chunks). A Parser that would go over it fails with CloseTryAgainLater.
// Safe for concurrent use; a nil *Budget is no limit.
type Budget struct {
	max      int64
	held     atomic.Int64
	released atomic.Uint64
}

// NewBudget returns a Budget of max bytes.
func NewBudget(max int64) *Budget { return &Budget{max: max} }

// Held is the number of bytes the Parsers hold for unfinished messages now.
func (b *Budget) Held() int64 { return b.held.Load() }

// Released is the total number of bytes ever given back, by finished, failed and
// reset messages alike.
func (b *Budget) Released() uint64 { return b.released.Load() }

// Max is the budget's size in bytes.
func (b *Budget) Max() int64 { return b.max }

// take reserves n bytes, or reports false and reserves nothing when that would go
// over the budget. Add-then-check: two loops racing for the last bytes may both be
// refused, never both admitted.
func (b *Budget) take(n int) bool {
	if b == nil {
		return true
	}
	if b.held.Add(int64(n)) > b.max {
		b.held.Add(-int64(n))
		return false
	}
	return true
}

func (b *Budget) give(n int) {
	if b == nil || n == 0 {
		return
	}
	b.held.Add(-int64(n))
	b.released.Add(uint64(n))
}

// assembly is the state of one unfinished message: its payload so far, in chunks,
// and the frame being received. A Parser has one only while a message is in
// progress or just handed out; assemblies are pooled (they are small once reset).
type assembly struct {
	chunks []*chunk // all full except the last
	n      int      // payload bytes stored

	// The frame being received: its payload arrives in pieces.
	left int     // payload bytes still to come; 0 between frames
	pos  int     // payload bytes of this frame received so far (the mask offset)
	key  [4]byte // masking key
	fin  bool    // the frame ends the message

	out []byte // the finished message made contiguous, when it took more than one chunk
	// inflated is a compressed message's payload after inflation (deflate.go).
	inflated []byte
}

var asmPool = sync.Pool{New: func() any { return new(assembly) }}

// maxKeptOut is the largest contiguous buffer an assembly keeps for reuse: messages
// up to it are reassembled without allocating, larger ones are left to the GC.
const maxKeptOut = 64 << 10

// write appends payload bytes of the current frame, still masked, unmasking them in
// the chunks (never in src, which may be offered again) and, for text, feeding them
// to u as they are stored, so invalid UTF-8 fails at the piece that holds it. ok is
// false when a new chunk would go over b; valid is false on invalid UTF-8.
func (a *assembly) write(src []byte, b *Budget, text bool, u *UTF8) (ok, valid bool) {
	for len(src) > 0 {
		off := a.n % ChunkSize
		if off == 0 {
			if !b.take(ChunkSize) {
				return false, true
			}
			a.chunks = append(a.chunks, getChunk())
		}
		dst := a.chunks[len(a.chunks)-1][off:]
		m := copy(dst, src)
		dst = dst[:m]
		ws.Cipher(dst, a.key, a.pos)
		if text && !u.Feed(dst) {
			return true, false
		}
		a.n += m
		a.pos += m
		src = src[m:]
	}
	return true, true
}

// bytes returns the finished message. A message in one chunk is handed out in
// place; a longer one is copied into one buffer, each chunk given back as soon as
// it is copied, so the peak is the message plus one chunk.
func (a *assembly) bytes(b *Budget) []byte {
	switch len(a.chunks) {
	case 0:
		return a.out[:0]
	case 1:
		return a.chunks[0][:a.n]
	}
	if cap(a.out) < a.n {
		a.out = make([]byte, a.n)
	}
	a.out = a.out[:a.n]
	off := 0
	for i, c := range a.chunks {
		off += copy(a.out[off:], c[:])
		putChunk(c)
		b.give(ChunkSize)
		a.chunks[i] = nil
	}
	a.chunks = a.chunks[:0]
	return a.out
}

// release gives back every chunk and resets a for reuse.
func (a *assembly) release(b *Budget) {
	for i, c := range a.chunks {
		putChunk(c)
		a.chunks[i] = nil
	}
	b.give(len(a.chunks) * ChunkSize)
	chunks := a.chunks[:0]
	if cap(chunks) > 16 {
		chunks = nil // a list grown by a large message is not kept
	}
	out := a.out[:0]
	if cap(out) > maxKeptOut {
		out = nil
	}
	inflated := a.inflated[:0]
	if cap(inflated) > maxKeptOut {
		inflated = nil
	}
	*a = assembly{chunks: chunks, out: out, inflated: inflated}
	asmPool.Put(a)
}
