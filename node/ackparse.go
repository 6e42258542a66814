package node

// parseAckFast decodes the common shape of a v2 ack without encoding/json, which
// costs a few microseconds and several allocations for every acknowledged message:
// an object with "type":"ack" and any of "stream", "epoch", "message" (strings of
// printable ASCII without escapes) and "offset" (an unsigned integer of at most 19
// digits), each key at most once, spelled exactly so, with JSON whitespace anywhere
// between tokens and nothing after the object. For anything else it returns false
// and leaves m alone, and the caller uses encoding/json: the result is always what
// json.Unmarshal gives (TestParseAckFastMatchesJSON, FuzzParseAckFast).
func parseAckFast(b []byte, m *clientMsg) bool {
	p := ackScanner{b: b}
	var out clientMsg
	var seen uint8
	p.ws()
	if !p.byte('{') {
		return false
	}
	for first := true; ; first = false {
		p.ws()
		if p.byte('}') {
			if first {
				return false
			}
			break
		}
		if !first {
			if !p.byte(',') {
				return false
			}
			p.ws()
		}
		key, ok := p.raw()
		if !ok {
			return false
		}
		p.ws()
		if !p.byte(':') {
			return false
		}
		p.ws()
		var bit uint8
		switch string(key) { // no allocation for this conversion
		case "type":
			bit = 1
		case "stream":
			bit = 2
		case "epoch":
			bit = 4
		case "message":
			bit = 8
		case "offset":
			bit = 16
		default:
			return false
		}
		if seen&bit != 0 {
			return false
		}
		seen |= bit
		if bit == 16 {
			if out.Offset, ok = p.uint(); !ok {
				return false
			}
			continue
		}
		v, ok := p.raw()
		if !ok {
			return false
		}
		switch bit {
		case 1:
			if string(v) != "ack" {
				return false
			}
			out.Type = "ack"
		case 2:
			out.Stream = string(v)
		case 4:
			out.Epoch = string(v)
		case 8:
			out.Message = string(v)
		}
	}
	p.ws()
	if p.i != len(p.b) || out.Type != "ack" {
		return false
	}
	*m = out
	return true
}

type ackScanner struct {
	b []byte
	i int
}

func (p *ackScanner) ws() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *ackScanner) byte(c byte) bool {
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

// raw reads a string of bytes 0x20..0x7f other than '"' and '\\', which is its own
// value, and returns its bytes (valid until b changes).
func (p *ackScanner) raw() ([]byte, bool) {
	if !p.byte('"') {
		return nil, false
	}
	for j := p.i; j < len(p.b); j++ {
		c := p.b[j]
		if c == '"' {
			v := p.b[p.i:j]
			p.i = j + 1
			return v, true
		}
		if c < 0x20 || c > 0x7f || c == '\\' {
			return nil, false
		}
	}
	return nil, false
}

// uint reads 0 or a digit 1-9 followed by at most 18 digits (no overflow).
func (p *ackScanner) uint() (uint64, bool) {
	start := p.i
	var v uint64
	for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
		v = v*10 + uint64(p.b[p.i]-'0')
		p.i++
	}
	n := p.i - start
	if n == 0 || n > 19 || (n > 1 && p.b[start] == '0') {
		return 0, false
	}
	// JSON has no fraction or exponent here: encoding/json would refuse one for a
	// uint64, and the caller checks what follows is a delimiter.
	if p.i < len(p.b) && (p.b[p.i] == '.' || p.b[p.i] == 'e' || p.b[p.i] == 'E') {
		return 0, false
	}
	return v, true
}
