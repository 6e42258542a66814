package push

// parsePushFast decodes the common shape of a POST /v1/push body without
// encoding/json, which costs about 7 µs and 20 allocations per push. It is a
// fast path only: it returns true when body is an object it fully
// understands, and then *req is exactly what json.Decoder with
// DisallowUnknownFields would decode into a zero pushRequest, with nothing
// but JSON whitespace after the object. For anything else it returns false
// and leaves *req untouched, and the caller falls back to encoding/json, so
// every error message stays encoding/json's. It never panics.
//
// Understood shape (anything else returns false):
//
//   - top-level keys "to", "data", "data_base64" and the optional ones
//     (pushOpts: "ack", "receipt", "history", "ttl", "wait", "id"), each at most
//     once, spelled exactly so, without escapes. encoding/json matches keys
//     case-insensitively and lets a repeated key overwrite or merge, so a
//     differently spelled or repeated key is left to it;
//   - "to" is an object (not null) with keys "users", "connections", "rooms"
//     (an array of strings, or null) and "all" (true, false or null), each at
//     most once. The strings hold only printable ASCII without backslashes,
//     so they are their own value (encoding/json would unescape them and
//     replace invalid UTF-8 with U+FFFD);
//   - "data" and "data_base64" are null or a string. The string may hold
//     well-formed escapes and any byte >= 0x20, including non-ASCII and
//     invalid UTF-8: encoding/json's scanner checks only that much, and a
//     json.RawMessage keeps the raw bytes (the caller checks UTF-8 itself).
//     Numbers, objects, arrays and booleans are left to encoding/json.
//
// Ownership: Data and DataBase64 alias body, as a RawMessage would otherwise
// be a copy the caller makes anyway. The ids never alias body (the caller
// reuses body buffers): they are substrings of one string copy of the "to"
// object, and the three lists share one []string, so a body costs at most
// two allocations however many ids it names.
func parsePushFast(body []byte, req *pushRequest) bool {
	s := fastScanner{b: body}
	var (
		to       toSpan
		haveTo   bool
		data     []byte
		data64   []byte
		haveData bool
		have64   bool
		opts     pushOpts
	)
	s.skipWS()
	if !s.consume('{') {
		return false
	}
	s.skipWS()
	if !s.consume('}') {
		for {
			key, ok := s.key()
			if !ok {
				return false
			}
			s.skipWS()
			if !s.consume(':') {
				return false
			}
			s.skipWS()
			switch string(key) { // the compiler does not allocate for this conversion
			case "to":
				if haveTo {
					return false
				}
				haveTo = true
				if to, ok = s.target(nil); !ok {
					return false
				}
			case "data":
				if haveData {
					return false
				}
				haveData = true
				if data, ok = s.rawStringOrNull(); !ok {
					return false
				}
			case "data_base64":
				if have64 {
					return false
				}
				have64 = true
				if data64, ok = s.rawStringOrNull(); !ok {
					return false
				}
			default:
				if !opts.field(&s, key) {
					return false
				}
			}
			s.skipWS()
			if s.consume('}') {
				break
			}
			if !s.consume(',') {
				return false
			}
			s.skipWS()
		}
	}
	s.skipWS()
	if s.i != len(s.b) {
		return false
	}

	var t Target
	if haveTo {
		t = fillTarget(body, &to)
	}
	*req = pushRequest{To: t, Data: data, DataBase64: data64,
		Ack: opts.ack, Receipt: opts.receipt, History: opts.history, TTL: opts.ttl, Wait: opts.wait, ID: opts.id}
	return true
}

// pushOpts are the push's optional fields the fast path takes: "ack", "receipt"
// and "history" as true, false or null; "ttl", "wait" and "id" as null or a string
// of printable ASCII without escapes (its own value). Each at most once.
type pushOpts struct {
	seen          uint8
	ack, receipt  bool
	history       *bool
	ttl, wait, id string
}

var historyTrue, historyFalse = true, false

// field reads the value of key, one of the optional fields; false: not one the
// fast path takes (unknown key, repeated, or a value for encoding/json).
func (o *pushOpts) field(s *fastScanner, key []byte) bool {
	var bit uint8
	switch string(key) {
	case "ack":
		bit = 1
	case "receipt":
		bit = 2
	case "history":
		bit = 4
	case "ttl":
		bit = 8
	case "wait":
		bit = 16
	case "id":
		bit = 32
	default:
		return false
	}
	if o.seen&bit != 0 {
		return false
	}
	o.seen |= bit
	if bit <= 4 {
		var v, null bool
		switch {
		case s.literal("true"):
			v = true
		case s.literal("false"):
		case s.literal("null"):
			null = true
		default:
			return false
		}
		switch bit {
		case 1:
			o.ack = v
		case 2:
			o.receipt = v
		case 4:
			// A *bool: null leaves it nil, as encoding/json does.
			if !null {
				o.history = &historyFalse
				if v {
					o.history = &historyTrue
				}
			}
		}
		return true
	}
	str, ok := s.plainStringOrNull()
	if !ok {
		return false
	}
	switch bit {
	case 8:
		o.ttl = str
	case 16:
		o.wait = str
	case 32:
		o.id = str
	}
	return true
}

// plainStringOrNull reads null ("") or a string of plain ASCII bytes (0x20..0x7f,
// no quote, no backslash), which is its own value; anything else is left to
// encoding/json.
func (s *fastScanner) plainStringOrNull() (string, bool) {
	if s.literal("null") {
		return "", true
	}
	if !s.consume('"') {
		return "", false
	}
	b, lo := s.b, s.i
	for i := lo; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			s.i = i + 1
			return string(b[lo:i]), true
		case byteClass[c] != plainASCII:
			return "", false
		}
	}
	return "", false
}

// toSpan is what the first pass learns about the "to" object: where it is,
// and how each list was given, so the second pass allocates exactly once.
type toSpan struct {
	lo, hi int // body[lo:hi] is the object, braces included
	// n counts the strings of users, connections and rooms; isArray says
	// whether each was an array (possibly empty) rather than absent or null.
	n       [3]int
	isArray [3]bool
	all     bool
}

// idFill receives the ids in the second pass over an already validated "to"
// object: ids is the string copy of body[base:], strs the shared backing
// array, k the next free slot.
type idFill struct {
	ids   string
	base  int
	strs  []string
	k     int
	lists [3][]string
}

// fillTarget builds the Target from the validated object at body[to.lo:to.hi].
func fillTarget(body []byte, to *toSpan) Target {
	total := to.n[0] + to.n[1] + to.n[2]
	f := idFill{base: to.lo}
	if total > 0 {
		f.ids = string(body[to.lo:to.hi])
	}
	// make with length zero does not allocate, yet gives the non-nil empty
	// slice encoding/json produces for [].
	f.strs = make([]string, total)
	s := fastScanner{b: body, i: to.lo}
	if _, ok := s.target(&f); !ok {
		panic("BUG: push: second pass rejected a \"to\" object the first pass accepted")
	}
	return Target{Users: f.lists[0], Connections: f.lists[1], Rooms: f.lists[2], All: to.all}
}

// fastScanner walks body; every method checks bounds, so no input panics.
type fastScanner struct {
	b []byte
	i int
}

func (s *fastScanner) skipWS() {
	b, i := s.b, s.i
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	s.i = i
}

// consume advances past c if it is the next byte.
func (s *fastScanner) consume(c byte) bool {
	if s.i < len(s.b) && s.b[s.i] == c {
		s.i++
		return true
	}
	return false
}

// literal advances past lit if body continues with it. What follows is
// checked by the caller, which expects a delimiter.
func (s *fastScanner) literal(lit string) bool {
	if len(s.b)-s.i < len(lit) || string(s.b[s.i:s.i+len(lit)]) != lit {
		return false
	}
	s.i += len(lit)
	return true
}

// key reads a quoted key and returns its bytes. A key with an escape
// returns false: it could spell one of ours, and encoding/json decides that.
// Other odd bytes need no check, as such a key matches none of ours anyway.
func (s *fastScanner) key() ([]byte, bool) {
	if !s.consume('"') {
		return nil, false
	}
	b, lo := s.b, s.i
	for i := lo; i < len(b); i++ {
		switch b[i] {
		case '"':
			s.i = i + 1
			return b[lo:i], true
		case '\\':
			return nil, false
		}
	}
	return nil, false
}

// target reads the "to" object. With f nil it validates and counts; with f
// set (second pass, input known valid) it also stores the ids.
func (s *fastScanner) target(f *idFill) (toSpan, bool) {
	var to toSpan
	to.lo = s.i
	if !s.consume('{') {
		return to, false // null included: unusual, and encoding/json's result is just a zero Target
	}
	var seen [4]bool
	s.skipWS()
	if !s.consume('}') {
		for {
			key, ok := s.key()
			if !ok {
				return to, false
			}
			s.skipWS()
			if !s.consume(':') {
				return to, false
			}
			s.skipWS()
			var field int
			switch string(key) {
			case "users":
				field = 0
			case "connections":
				field = 1
			case "rooms":
				field = 2
			case "all":
				field = 3
			default:
				return to, false
			}
			if seen[field] {
				return to, false
			}
			seen[field] = true
			if field == 3 {
				switch {
				case s.literal("true"):
					to.all = true
				case s.literal("false"), s.literal("null"):
				default:
					return to, false
				}
			} else if to.n[field], to.isArray[field], ok = s.idList(f, field); !ok {
				return to, false
			}
			s.skipWS()
			if s.consume('}') {
				break
			}
			if !s.consume(',') {
				return to, false
			}
			s.skipWS()
		}
	}
	to.hi = s.i
	return to, true
}

// idList reads null or an array of plain ASCII strings, returning how many
// strings it held and whether it was an array. With f set it stores them as
// f.lists[field].
func (s *fastScanner) idList(f *idFill, field int) (n int, isArray bool, ok bool) {
	if s.literal("null") {
		return 0, false, true
	}
	if !s.consume('[') {
		return 0, false, false
	}
	start := 0
	if f != nil {
		start = f.k
	}
	s.skipWS()
	if !s.consume(']') {
		for {
			if !s.consume('"') {
				return 0, false, false
			}
			lo := s.i
			b, i := s.b, s.i
			for i < len(b) && byteClass[b[i]] == plainASCII {
				i++
			}
			s.i = i
			if s.i == len(s.b) || s.b[s.i] != '"' {
				return 0, false, false
			}
			if f != nil {
				f.strs[f.k] = f.ids[lo-f.base : s.i-f.base]
				f.k++
			}
			s.i++ // closing quote
			n++
			s.skipWS()
			if s.consume(']') {
				break
			}
			if !s.consume(',') {
				return 0, false, false
			}
			s.skipWS()
		}
	}
	if f != nil {
		// Full slice expression: appending to one list must not overwrite the next.
		f.lists[field] = f.strs[start:f.k:f.k]
	}
	return n, true, true
}

// rawStringOrNull reads null or a well-formed JSON string and returns its
// raw bytes, quotes included, as json.RawMessage would hold them.
func (s *fastScanner) rawStringOrNull() ([]byte, bool) {
	lo := s.i
	if s.literal("null") {
		return s.b[lo:s.i], true
	}
	if !s.consume('"') {
		return nil, false
	}
	for {
		// The tight loop skips the ordinary bytes; the switch runs once per
		// escape and at the end.
		// Locals, not fields, so the loop runs in registers.
		b, i := s.b, s.i
		for i < len(b) && byteClass[b[i]] >= plainASCII {
			i++
		}
		s.i = i
		if s.i == len(s.b) {
			return nil, false
		}
		switch s.b[s.i] {
		case '"':
			s.i++
			return s.b[lo:s.i], true
		case '\\':
			if !s.escape() {
				return nil, false
			}
		default: // control byte
			return nil, false
		}
	}
}

// Byte classes inside a JSON string, ordered so that one comparison tells
// an id byte (plainASCII) or a data byte (>= plainASCII) from one that
// needs a closer look.
const (
	special    = iota // '"', '\\' or a control byte < 0x20
	plainASCII        // 0x20..0x7f apart from '"' and '\\'
	nonASCII          // 0x80..0xff
)

var byteClass = func() (t [256]uint8) {
	for c := range t {
		switch {
		case c < 0x20 || c == '"' || c == '\\':
			t[c] = special
		case c < 0x80:
			t[c] = plainASCII
		default:
			t[c] = nonASCII
		}
	}
	return t
}()

// escape checks the escape at s.i (a backslash) exactly as encoding/json's
// scanner does and advances past it. \u needs four hex digits; lone
// surrogates are fine, the scanner does not pair them.
func (s *fastScanner) escape() bool {
	s.i++ // backslash
	if s.i >= len(s.b) {
		return false
	}
	switch s.b[s.i] {
	case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
		s.i++
		return true
	case 'u':
		s.i++
		if len(s.b)-s.i < 4 {
			return false
		}
		for _, c := range s.b[s.i : s.i+4] {
			if !isHex(c) {
				return false
			}
		}
		s.i += 4
		return true
	}
	return false
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}
