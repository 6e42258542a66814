package bench

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
)

// The v2 protocol as bench speaks it (--protocol v2, and the reconnect
// scenario). The server's first message is a welcome listing the
// connection's streams and their positions; every push then arrives in an
// envelope
//
//	{"type":"push","id":"n1-…","stream":"user:bench-7","epoch":"…","offset":18,"data":"<stamp>:<seq>"}
//
// A welcome comes once per connection and is decoded with encoding/json; a
// push is read by a hand-written scanner that knows the envelope's shape
// (the fields in the order the server writes them, "data" last) so the hot
// path allocates nothing.

// streamPos is a connection's position in one of its streams.
type streamPos struct {
	name   string
	epoch  string
	offset uint64
}

// v2rec is what bench remembers of one v2 client (a connection index): its
// positions, which survive a reconnect, and the accounting of a resume.
type v2rec struct {
	streams []streamPos
	// Resume accounting (reconnect scenario): got counts distinct pushes
	// received since the reconnect started; done is set when got reaches the
	// expected count; lost when the welcome said recovered:false.
	got     uint32
	done    bool
	lost    bool
	resumed bool // connected again with since (welcome received)
}

func (r *v2rec) find(name []byte) *streamPos {
	for i := range r.streams {
		if r.streams[i].name == string(name) {
			return &r.streams[i]
		}
	}
	return nil
}

// envelope is one decoded v2 push; the slices alias the frame.
type envelope struct {
	stream []byte // nil for a push to connection ids
	epoch  []byte // nil when the push was sent with history off
	offset uint64
	data   []byte // the "data" value's JSON text (a string keeps its quotes)
	ack    bool   // "ack":true: the pushing service asked for an acknowledgement
}

var (
	pushPrefix    = []byte(`{"type":"push"`)
	welcomePrefix = []byte(`{"type":"welcome"`)
	keyData       = []byte(`,"data":`)
	keyData64     = []byte(`,"data_base64":`)
	keyStream     = []byte(`"stream":"`)
	keyEpoch      = []byte(`"epoch":"`)
	keyOffset     = []byte(`"offset":`)
	keyAck        = []byte(`,"ack":true`)
)

// parseEnvelope reads a v2 push. ok is false for anything else (a welcome,
// another message type, or a push of an unexpected shape). Keys are looked
// up before the data field only: a JSON string cannot hold an unescaped
// quote, so `"stream":"` cannot occur inside the id, and nothing in the data
// value is mistaken for a key.
func parseEnvelope(p []byte) (e envelope, ok bool) {
	if !bytes.HasPrefix(p, pushPrefix) {
		return e, false
	}
	rest := p[len(pushPrefix):]
	i := bytes.Index(rest, keyData)
	if i >= 0 {
		e.data = rest[i+len(keyData):]
	} else if i = bytes.Index(rest, keyData64); i >= 0 {
		e.data = rest[i+len(keyData64):]
	} else {
		return e, false
	}
	if n := len(e.data); n > 0 && e.data[n-1] == '}' {
		e.data = e.data[:n-1]
	}
	head := rest[:i]
	e.ack = bytes.Contains(head, keyAck)
	if s, found := stringField(head, keyStream); found {
		e.stream = s
	}
	if s, found := stringField(head, keyEpoch); found {
		e.epoch = s
		j := bytes.Index(head, keyOffset)
		if j < 0 {
			return e, false
		}
		d := head[j+len(keyOffset):]
		k := 0
		for ; k < len(d) && d[k] >= '0' && d[k] <= '9'; k++ {
			e.offset = e.offset*10 + uint64(d[k]-'0')
		}
		if k == 0 {
			return e, false
		}
	}
	return e, true
}

// appendAck appends the v2 client's cumulative ack of stream up to offset:
// {"type":"ack","stream":"user:bench-7","epoch":"e","offset":18}. Bench's stream
// names and the server's epochs need no escapes (those read from an envelope are
// kept as written, escapes included, so they are valid JSON string contents).
func appendAck(b []byte, stream, epoch string, offset uint64) []byte {
	b = append(b, `{"type":"ack","stream":"`...)
	b = append(b, stream...)
	b = append(b, `","epoch":"`...)
	b = append(b, epoch...)
	b = append(b, `","offset":`...)
	b = strconv.AppendUint(b, offset, 10)
	return append(b, '}')
}

// stringField returns the raw contents of the JSON string after key (which
// ends with the opening quote). Bench's stream names and the server's epochs
// need no escapes; a value with a backslash is returned as written.
func stringField(b, key []byte) ([]byte, bool) {
	i := bytes.Index(b, key)
	if i < 0 {
		return nil, false
	}
	v := b[i+len(key):]
	for j := 0; j < len(v); j++ {
		switch v[j] {
		case '\\':
			j++
		case '"':
			return v[:j], true
		}
	}
	return nil, false
}

// stampOf reads the bench stamp from an envelope's data: the data of a bench
// push is the JSON string "<unix nanos>:<seq>…".
func (e *envelope) stampOf() (int64, bool) {
	if len(e.data) < 2 || e.data[0] != '"' {
		return 0, false
	}
	return parseStamp(e.data[1:])
}

// welcomeMsg is the server's first v2 message.
type welcomeMsg struct {
	Type       string `json:"type"`
	Connection string `json:"connection"`
	Node       string `json:"node"`
	Streams    map[string]struct {
		Epoch     string `json:"epoch"`
		Offset    uint64 `json:"offset"`
		Recovered *bool  `json:"recovered"`
	} `json:"streams"`
}

var errNotWelcome = errors.New("first v2 message is not a welcome")

func parseWelcome(p []byte) (*welcomeMsg, error) {
	if !bytes.HasPrefix(p, welcomePrefix) {
		return nil, errNotWelcome
	}
	var w welcomeMsg
	if err := json.Unmarshal(p, &w); err != nil {
		return nil, err
	}
	if w.Type != "welcome" || len(w.Streams) == 0 {
		return nil, errNotWelcome
	}
	return &w, nil
}

// appendSince appends the URL-encoded ?since= value for the positions in
// streams: {"user:42":{"epoch":"e","offset":18},...}.
func appendSince(b []byte, streams []streamPos) []byte {
	var js []byte
	js = append(js, '{')
	for i, s := range streams {
		if i > 0 {
			js = append(js, ',')
		}
		js = strconv.AppendQuote(js, s.name)
		js = append(js, `:{"epoch":`...)
		js = strconv.AppendQuote(js, s.epoch)
		js = append(js, `,"offset":`...)
		js = strconv.AppendUint(js, s.offset, 10)
		js = append(js, '}')
	}
	js = append(js, '}')
	return appendQueryEscape(b, js)
}

// appendQueryEscape percent-encodes everything but RFC 3986's unreserved
// characters.
func appendQueryEscape(b, s []byte) []byte {
	const hex = "0123456789ABCDEF"
	for _, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '.', c == '_', c == '~':
			b = append(b, c)
		default:
			b = append(b, '%', hex[c>>4], hex[c&15])
		}
	}
	return b
}
