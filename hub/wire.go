package hub

import (
	"encoding/binary"
	"errors"
	"math"

	"longlink/loop"
	"longlink/push"
	"longlink/stream"
)

// The stream protocol between nodes: requests (Remote.Request) whose first byte is
// the op, and one data kind (wireStamped) for fan-out. Integers are uvarints, strings
// a uvarint length and bytes. A decoder checks every length against what is left.
const (
	opAppend    byte = 'A' // {keys, message}            -> appendAnswer
	opReplicate byte = 'R' // {entries}                  -> {ok or nack+position per entry}
	opSync      byte = 'Y' // {streams}                  -> {position, entries per stream}
	opSubscribe byte = 'U' // {flags, streams with since} -> {head, recovered, entries per stream}
	opHandoff   byte = 'H' // {histories}                -> {}
	opReceipt   byte = 'E' // {message id}               -> {expire, targets with states}

	// wireStamped is a fan-out copy: {keys with positions, conns, flags, message}.
	wireStamped byte = 'S'
	// Receipts (receipts.go), all one-way data:
	wireDelivered byte = 'D' // {id, users with connections written}: to the owner
	wireAck       byte = 'K' // {acks: stream, epoch, offset, conn, at}: to the owner
	wireAckCopy   byte = 'C' // {streams with acked positions}: owner to replicas
	wireReceipt   byte = 'T' // {id, target, state}: to the origin waiting
)

// subscribeBarrier in opSubscribe's flags: the asker only needs the owner to have
// applied its route change (a plain client, a room join), not the heads.
const subscribeBarrier byte = 1

// Answer status of an append.
const (
	statusOK       byte = 0
	statusNotOwner byte = 1 // ask the owner in your ring; it may have moved
	statusRetry    byte = 2 // try again at once (history resynced, replica refused)
	statusBusy     byte = 3 // overloaded or stopping: try elsewhere later
)

var errWire = errors.New("hub: malformed stream message")

type wbuf []byte

func (b wbuf) uv(v uint64) wbuf           { return binary.AppendUvarint(b, v) }
func (b wbuf) str(s string) wbuf          { return append(b.uv(uint64(len(s))), s...) }
func (b wbuf) bytes(p []byte) wbuf        { return append(b.uv(uint64(len(p))), p...) }
func (b wbuf) byte1(c byte) wbuf          { return append(b, c) }
func (b wbuf) pos(p stream.Position) wbuf { return b.str(p.Epoch).uv(p.Offset) }

type rbuf struct {
	b   []byte
	err error
}

func (r *rbuf) uv() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = errWire
		return 0
	}
	r.b = r.b[n:]
	return v
}

// count reads a list length, each item at least min bytes long.
func (r *rbuf) count(min int) int {
	n := r.uv()
	if r.err == nil && (n > math.MaxInt32 || int(n)*min > len(r.b)) {
		r.err = errWire
		return 0
	}
	return int(n)
}

func (r *rbuf) raw() []byte {
	n := r.uv()
	if r.err != nil || n > uint64(len(r.b)) {
		r.err = errWire
		return nil
	}
	p := r.b[:n:n]
	r.b = r.b[n:]
	return p
}

func (r *rbuf) str() string { return string(r.raw()) }

func (r *rbuf) byte1() byte {
	if r.err != nil || len(r.b) == 0 {
		r.err = errWire
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *rbuf) pos() stream.Position { return stream.Position{Epoch: r.str(), Offset: r.uv()} }

// skey is one stream of a message: its kind, the user or room name, and its name.
type skey struct {
	kind loop.KeyKind
	name string
}

func (k skey) stream() string {
	switch k.kind {
	case loop.KeyUser:
		return "user:" + k.name
	case loop.KeyRoom:
		return "room:" + k.name
	}
	return "all"
}

func (b wbuf) key(k skey) wbuf { return b.byte1(byte(k.kind)).str(k.name) }

func (r *rbuf) key() skey {
	kind := loop.KeyKind(r.byte1())
	if kind > loop.KeyAll {
		r.err = errWire
	}
	return skey{kind: kind, name: r.str()}
}

// keysOf lists the streams of a message's targets, in the order a connection takes a
// message from: users, rooms as listed, all. Connection ids have no stream.
func keysOf(t push.Target) []skey {
	keys := make([]skey, 0, len(t.Users)+len(t.Rooms)+1)
	for _, u := range t.Users {
		keys = append(keys, skey{loop.KeyUser, u})
	}
	for _, r := range t.Rooms {
		keys = append(keys, skey{loop.KeyRoom, r})
	}
	if t.All {
		keys = append(keys, skey{kind: loop.KeyAll})
	}
	return dedupKeys(keys)
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// dedupKeys drops repeated keys (a user listed twice), keeping the first.
func dedupKeys(keys []skey) []skey {
	if len(keys) < 2 {
		return keys
	}
	seen := make(map[skey]struct{}, len(keys))
	out := keys[:0]
	for _, k := range keys {
		if _, dup := seen[k]; !dup {
			seen[k] = struct{}{}
			out = append(out, k)
		}
	}
	return out
}

// entryOf is the stored form of m.
func entryOf(m *push.Message, ttl int64) stream.Entry {
	return stream.Entry{ID: m.ID, Data: m.Data, Binary: m.Binary, JSON: m.JSON, Ack: m.Ack, Expire: ttl}
}

func (b wbuf) entry(e *stream.Entry) wbuf {
	var flags byte
	if e.Binary {
		flags |= 1
	}
	if e.JSON {
		flags |= 2
	}
	if e.Ack {
		flags |= 4
	}
	return b.uv(e.Offset).str(e.ID).bytes(e.Data).byte1(flags).uv(uint64(e.Expire))
}

func (r *rbuf) entry() stream.Entry {
	e := stream.Entry{Offset: r.uv(), ID: r.str()}
	e.Data = append([]byte(nil), r.raw()...)
	flags := r.byte1()
	e.Binary, e.JSON, e.Ack = flags&1 != 0, flags&2 != 0, flags&4 != 0
	e.Expire = int64(r.uv())
	return e
}
