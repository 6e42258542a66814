package cluster

import (
	"encoding/binary"
	"errors"
	"math"
)

// metaVersion is the first byte of an encoded meta; bump it on layout change.
const metaVersion = 1

const metaFlagDraining = 1

// nodeMeta is NodeMeta plus the forwarding address, as carried by memberlist.
type nodeMeta struct {
	NodeMeta
	ForwardAddr string
}

// appendMeta encodes m as: version, flags, uvarint connections, then
// uvarint-length-prefixed forward, client and API addresses. If the result
// would exceed limit, the client and API addresses are left out: the forward
// address is what the cluster itself cannot work without.
func appendMeta(dst []byte, m nodeMeta, limit int) []byte {
	start := len(dst)
	enc := func(withAddrs bool) []byte {
		b := dst[:start]
		var flags byte
		if m.Draining {
			flags |= metaFlagDraining
		}
		b = append(b, metaVersion, flags)
		conns := m.Connections
		if conns < 0 {
			conns = 0
		}
		b = binary.AppendUvarint(b, uint64(conns))
		b = appendString(b, m.ForwardAddr)
		if withAddrs {
			b = appendString(b, m.ClientAddr)
			b = appendString(b, m.APIAddr)
		} else {
			b = appendString(b, "")
			b = appendString(b, "")
		}
		return b
	}
	b := enc(true)
	if len(b)-start > limit {
		b = enc(false)
	}
	return b
}

var errBadMeta = errors.New("cluster: malformed node meta")

func decodeMeta(b []byte) (nodeMeta, error) {
	var m nodeMeta
	if len(b) == 0 {
		return m, nil // a node without meta (not a longlink node or not yet set)
	}
	if len(b) < 2 || b[0] != metaVersion {
		return m, errBadMeta
	}
	m.Draining = b[1]&metaFlagDraining != 0
	b = b[2:]
	conns, n := binary.Uvarint(b)
	// A count past MaxInt32 would wrap negative and make the node look the least
	// loaded to /v1/endpoint forever (found by FuzzDecodeMeta).
	if n <= 0 || conns > math.MaxInt32 {
		return m, errBadMeta
	}
	m.Connections = int(conns)
	b = b[n:]
	var ok bool
	if m.ForwardAddr, b, ok = readString(b); !ok {
		return m, errBadMeta
	}
	if m.ClientAddr, b, ok = readString(b); !ok {
		return m, errBadMeta
	}
	if m.APIAddr, _, ok = readString(b); !ok {
		return m, errBadMeta
	}
	return m, nil
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func readString(b []byte) (string, []byte, bool) {
	l, n := binary.Uvarint(b)
	if n <= 0 || uint64(len(b)-n) < l {
		return "", nil, false
	}
	return string(b[n : n+int(l)]), b[n+int(l):], true
}
