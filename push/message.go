package push

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"
)

// Target names who receives a message. Any mix is allowed; a connection
// reached through several targets receives the message once (the Hub's
// contract, see Hub.Deliver).
type Target struct {
	Users       []string `json:"users,omitempty"`
	Connections []string `json:"connections,omitempty"`
	Rooms       []string `json:"rooms,omitempty"`
	All         bool     `json:"all,omitempty"`
}

// Message is one push as accepted by the API and as forwarded between nodes.
type Message struct {
	// ID is unique and sortable per node: Config.NodeID, "-", 16 hex digits.
	ID string
	// Binary selects a binary WebSocket message (data_base64) instead of text.
	Binary bool
	// Data is exactly the bytes the client receives as one message. For text
	// messages it is valid UTF-8.
	Data []byte
	To   Target
	// Accepted is when the API accepted the message, in Unix nanoseconds; the
	// node uses it for the delivery latency histogram.
	Accepted int64
	// JSON says Data is the text of a JSON value as pushed (object, number, ...);
	// false for a JSON string's characters. v2 clients get the value back as is.
	JSON bool
	// NoHistory skips storing the message in its streams ("history": false).
	NoHistory bool
	// TTL is how long the message is kept for recovery; 0 means the node's default.
	TTL time.Duration
	// Ack asks the users and connections it targets to acknowledge it; until they
	// do (or its TTL passes) it is delivered again when they reconnect.
	Ack bool
	// Receipt keeps a receipt of the message (GET /v1/messages/{id}): which nodes
	// wrote it to how many connections of each target, and who acknowledged it.
	// Ack and Wait imply it.
	Receipt bool
	// Wait is how long the origin waits for its targets before answering (at most
	// 30s); 0: it answers once the message is stored.
	Wait time.Duration
	// Pusher is set on a Pusher Channels event (docs/pusher.md): only Pusher
	// connections receive it, through the rooms of their channels. Nil for every
	// native push.
	Pusher *PusherEvent
}

// PusherEvent is what a Pusher Channels event carries beyond a native push: its
// name, the socket id it skips (a trigger's socket_id, a client event's sender) and,
// for a client event on a presence channel, the sender's user id.
type PusherEvent struct {
	Event         string
	ExcludeSocket string
	UserID        string
	// Raw relays Data (a JSON value) as the event's data as is: a client event as
	// its sender wrote it. Otherwise data is sent as a JSON string, as the HTTP
	// API's events are.
	Raw bool
}

// PusherEventTTL is how long a Pusher event stays in its streams' histories.
// Pusher has no replay, so nothing reads it back; it is stored, briefly, only so
// that it has a position in each channel's stream: a node that misses a copy sees
// the gap at the channel's next event and closes the channel's clients with 4200
// (docs/pusher.md, "Delivery"), and an append retried after a lost answer is
// recognised instead of delivered twice. A few seconds covers those retries
// (the hub's store timeout is 5s by default).
const PusherEventTTL = 10 * time.Second

// NewPusherMessage is the push a Pusher Channels event travels as, to the rooms of
// its channels (loop.PusherRoom): only Pusher connections take it.
func NewPusherMessage(id string, rooms []string, data []byte, ev PusherEvent) *Message {
	return &Message{ID: id, Data: data, JSON: ev.Raw, TTL: PusherEventTTL, To: Target{Rooms: rooms}, Pusher: &ev}
}

// Binary encoding, version 1 (all integers are unsigned varints unless said):
//
//	version   1 byte, wireVersion
//	flags     1 byte, bit 0 Binary, bit 1 To.All, bit 2 JSON, bit 3 NoHistory,
//	          bit 4 Ack, bit 5 Receipt, bit 6 Pusher, bit 7 Pusher.Raw; other bits must be zero
//	accepted  8 bytes, big-endian int64
//	ttl       milliseconds
//	wait      milliseconds
//	pusher    with bit 6 only: event, exclude socket, user id, each length, bytes
//	id        length, bytes
//	data      length, bytes
//	users     count, then per item: length, bytes
//	conns     count, then per item: length, bytes
//	rooms     count, then per item: length, bytes
//
// Nothing may follow. The version byte lets a newer node refuse, with an
// error naming the version, what an older node cannot read during a rolling
// upgrade, instead of misreading it. (The Pusher flag was added without a new
// version: an older node refuses only Pusher events, by their unknown flag.)
const wireVersion = 3

const (
	flagBinary    = 1 << 0
	flagAll       = 1 << 1
	flagJSON      = 1 << 2
	flagNoHistory = 1 << 3
	flagAck       = 1 << 4
	flagReceipt   = 1 << 5
	flagPusher    = 1 << 6
	flagPusherRaw = 1 << 7
	knownFlags    = flagBinary | flagAll | flagJSON | flagNoHistory | flagAck | flagReceipt | flagPusher | flagPusherRaw
)

// ErrShortMessage is returned (wrapped, naming the field) by UnmarshalBinary
// when the input ends before the encoding does.
var ErrShortMessage = errors.New("push: encoded message is truncated")

// EncodedSize returns len(m.AppendBinary(nil)).
func (m *Message) EncodedSize() int {
	n := 2 + 8 + uvarintLen(int(m.TTL.Milliseconds())) + uvarintLen(int(m.Wait.Milliseconds())) + uvarintLen(len(m.ID)) + len(m.ID) + uvarintLen(len(m.Data)) + len(m.Data)
	if p := m.Pusher; p != nil {
		for _, s := range [...]string{p.Event, p.ExcludeSocket, p.UserID} {
			n += uvarintLen(len(s)) + len(s)
		}
	}
	for _, list := range [...][]string{m.To.Users, m.To.Connections, m.To.Rooms} {
		n += uvarintLen(len(list))
		for _, s := range list {
			n += uvarintLen(len(s)) + len(s)
		}
	}
	return n
}

// AppendBinary appends the encoding of m to dst and returns the extended
// slice. It grows dst at most once, so it does not allocate when dst has
// EncodedSize() spare capacity.
func (m *Message) AppendBinary(dst []byte) []byte {
	dst = slices.Grow(dst, m.EncodedSize())
	var flags byte
	if m.Binary {
		flags |= flagBinary
	}
	if m.To.All {
		flags |= flagAll
	}
	if m.JSON {
		flags |= flagJSON
	}
	if m.NoHistory {
		flags |= flagNoHistory
	}
	if m.Ack {
		flags |= flagAck
	}
	if m.Receipt {
		flags |= flagReceipt
	}
	if m.Pusher != nil {
		flags |= flagPusher
		if m.Pusher.Raw {
			flags |= flagPusherRaw
		}
	}
	dst = append(dst, wireVersion, flags)
	dst = binary.BigEndian.AppendUint64(dst, uint64(m.Accepted))
	dst = binary.AppendUvarint(dst, uint64(m.TTL.Milliseconds()))
	dst = binary.AppendUvarint(dst, uint64(m.Wait.Milliseconds()))
	if p := m.Pusher; p != nil {
		for _, s := range [...]string{p.Event, p.ExcludeSocket, p.UserID} {
			dst = binary.AppendUvarint(dst, uint64(len(s)))
			dst = append(dst, s...)
		}
	}
	dst = binary.AppendUvarint(dst, uint64(len(m.ID)))
	dst = append(dst, m.ID...)
	dst = binary.AppendUvarint(dst, uint64(len(m.Data)))
	dst = append(dst, m.Data...)
	for _, list := range [...][]string{m.To.Users, m.To.Connections, m.To.Rooms} {
		dst = binary.AppendUvarint(dst, uint64(len(list)))
		for _, s := range list {
			dst = binary.AppendUvarint(dst, uint64(len(s)))
			dst = append(dst, s...)
		}
	}
	return dst
}

// MarshalBinary implements encoding.BinaryMarshaler with one allocation.
func (m *Message) MarshalBinary() ([]byte, error) {
	return m.AppendBinary(make([]byte, 0, m.EncodedSize())), nil
}

// UnmarshalBinary implements encoding.BinaryUnmarshaler. It validates the
// whole input before touching m, so m is unchanged on error, and it does not
// retain b: ID and Data are copies and every target shares one string copy
// of the target section, so decoding costs at most four allocations however
// many targets there are.
func (m *Message) UnmarshalBinary(b []byte) error { return m.unmarshal(b, true) }

// UnmarshalBinaryAlias is UnmarshalBinary except that m.Data aliases b instead of
// being copied: it is valid only as long as b is. For a receiver that copies the
// data into something else at once (a forwarded push becomes a WebSocket frame), so
// a large payload is copied once, not twice. The other fields are copies as in
// UnmarshalBinary.
func (m *Message) UnmarshalBinaryAlias(b []byte) error { return m.unmarshal(b, false) }

func (m *Message) unmarshal(b []byte, copyData bool) error {
	if len(b) < 10 {
		return fmt.Errorf("%w: %d bytes, the header alone is 10", ErrShortMessage, len(b))
	}
	if b[0] != wireVersion {
		return fmt.Errorf("push: encoded message has version %d, this node reads version %d", b[0], wireVersion)
	}
	flags := b[1]
	if flags&^knownFlags != 0 {
		return fmt.Errorf("push: encoded message has unknown flag bits %#x", flags&^knownFlags)
	}
	// First pass: validate and count so the second pass allocates exactly.
	r := reader{b: b, off: 10}
	ttl, err := r.millis("ttl")
	if err != nil {
		return err
	}
	wait, err := r.millis("wait")
	if err != nil {
		return err
	}
	var pspan [3][2]int
	if flags&flagPusherRaw != 0 && flags&flagPusher == 0 {
		return errors.New("push: encoded message has the Pusher raw flag without the Pusher flag")
	}
	if flags&flagPusher != 0 {
		for i, field := range [...]string{"pusher event", "pusher exclude socket", "pusher user id"} {
			if pspan[i][0], pspan[i][1], err = r.span(field); err != nil {
				return err
			}
		}
	}
	idLo, idHi, err := r.span("id")
	if err != nil {
		return err
	}
	dataLo, dataHi, err := r.span("data")
	if err != nil {
		return err
	}
	listStart := r.off
	total := 0
	for _, field := range [...]string{"users", "connections", "rooms"} {
		n, err := r.count(field)
		if err != nil {
			return err
		}
		total += n
		for j := 0; j < n; j++ {
			if _, _, err := r.span(field); err != nil {
				return fmt.Errorf("%w (item %d of %d)", err, j, n)
			}
		}
	}
	if r.off != len(b) {
		return fmt.Errorf("push: encoded message has %d unexpected bytes after the rooms", len(b)-r.off)
	}

	// Second pass: cannot fail, the first pass checked every length.
	// The targets get one shared copy; the data is not part of it, so large
	// payloads are copied once.
	all := string(b[listStart:])
	strs := make([]string, total)
	var lists [3][]string
	r.off = listStart
	k := 0
	for i := range lists {
		n, _ := r.count("")
		start := k
		for j := 0; j < n; j++ {
			lo, hi, _ := r.span("")
			strs[k] = all[lo-listStart : hi-listStart]
			k++
		}
		if n > 0 {
			lists[i] = strs[start:k:k] // full slice expression: appending to one list must not overwrite the next
		}
	}
	data := b[dataLo:dataHi:dataHi]
	if copyData {
		data = append([]byte(nil), data...)
	}
	*m = Message{
		ID:        string(b[idLo:idHi]),
		Binary:    flags&flagBinary != 0,
		Data:      data,
		Accepted:  int64(binary.BigEndian.Uint64(b[2:10])),
		To:        Target{Users: lists[0], Connections: lists[1], Rooms: lists[2], All: flags&flagAll != 0},
		JSON:      flags&flagJSON != 0,
		NoHistory: flags&flagNoHistory != 0,
		TTL:       time.Duration(ttl) * time.Millisecond,
		Ack:       flags&flagAck != 0,
		Receipt:   flags&flagReceipt != 0,
		Wait:      time.Duration(wait) * time.Millisecond,
	}
	if flags&flagPusher != 0 {
		m.Pusher = &PusherEvent{
			Event:         string(b[pspan[0][0]:pspan[0][1]]),
			ExcludeSocket: string(b[pspan[1][0]:pspan[1][1]]),
			UserID:        string(b[pspan[2][0]:pspan[2][1]]),
			Raw:           flags&flagPusherRaw != 0,
		}
	}
	if m.Data == nil {
		m.Data = []byte{}
	}
	return nil
}

// reader walks an encoded message, checking every length against what is left.
type reader struct {
	b   []byte
	off int
}

// uvarint reads a length (what = "length") or a list count (what = "count").
// what is a separate argument so the happy path concatenates nothing.
func (r *reader) uvarint(field, what string) (int, error) {
	v, n := binary.Uvarint(r.b[r.off:])
	if n == 0 {
		return 0, fmt.Errorf("%w: %s %s is missing at byte %d", ErrShortMessage, field, what, r.off)
	}
	if n < 0 || v > uint64(len(r.b)) {
		return 0, fmt.Errorf("push: encoded message has an impossible %s %s at byte %d", field, what, r.off)
	}
	r.off += n
	return int(v), nil
}

// millis reads a duration in milliseconds. Unlike a length it is not bounded by
// the bytes left, only by what a time.Duration holds.
func (r *reader) millis(field string) (int64, error) {
	v, n := binary.Uvarint(r.b[r.off:])
	if n == 0 {
		return 0, fmt.Errorf("%w: %s is missing at byte %d", ErrShortMessage, field, r.off)
	}
	if n < 0 || v > uint64(math.MaxInt64/int64(time.Millisecond)) {
		return 0, fmt.Errorf("push: encoded message has an impossible %s at byte %d", field, r.off)
	}
	r.off += n
	return int64(v), nil
}

// span reads a length-prefixed byte string and returns its bounds in r.b.
func (r *reader) span(field string) (lo, hi int, err error) {
	n, err := r.uvarint(field, "length")
	if err != nil {
		return 0, 0, err
	}
	if n > len(r.b)-r.off {
		return 0, 0, fmt.Errorf("%w: %s needs %d bytes at byte %d, %d remain", ErrShortMessage, field, n, r.off, len(r.b)-r.off)
	}
	lo, hi = r.off, r.off+n
	r.off = hi
	return lo, hi, nil
}

// count reads a list length; each item takes at least one byte, so a count
// beyond the remaining bytes is rejected before anything is allocated for it.
func (r *reader) count(field string) (int, error) {
	n, err := r.uvarint(field, "count")
	if err != nil {
		return 0, err
	}
	if n > len(r.b)-r.off {
		return 0, fmt.Errorf("%w: %s count %d exceeds the %d remaining bytes", ErrShortMessage, field, n, len(r.b)-r.off)
	}
	return n, nil
}

func uvarintLen(n int) int {
	l := 1
	for n >= 0x80 {
		n >>= 7
		l++
	}
	return l
}
