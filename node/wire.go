package node

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Messages between nodes travel as opaque cluster payloads. The first byte says what
// follows:
//
//	'P' push.Message binary encoding          deliver locally, never re-forward
//	'Q' id uvarint, op byte, json body        a request another node answers
//	'R' id uvarint, json body                 the answer to a 'Q'
const (
	wirePush     byte = 'P'
	wireQuery    byte = 'Q'
	wireResponse byte = 'R'
)

// Query operations.
const (
	opUser     byte = 'u' // body: user id            -> []push.ConnInfo
	opRoom     byte = 'r' // body: room               -> roomAnswer
	opStats    byte = 's' // body: empty              -> nodeStats
	opKickConn byte = 'k' // body: kickBody           -> int
	opKickUser byte = 'K' // body: kickBody           -> int
	opOnline   byte = 'o' // body: []string users     -> []string offline here
	opJoin     byte = 'j' // body: roomBody           -> int
	opLeave    byte = 'l' // body: roomBody           -> int
)

func appendQuery(dst []byte, id uint64, op byte, body []byte) []byte {
	dst = append(dst, wireQuery)
	dst = binary.AppendUvarint(dst, id)
	dst = append(dst, op)
	return append(dst, body...)
}

func appendResponse(dst []byte, id uint64, body []byte) []byte {
	dst = append(dst, wireResponse)
	dst = binary.AppendUvarint(dst, id)
	return append(dst, body...)
}

var errShort = errors.New("node: cluster message truncated")

func parseQuery(b []byte) (id uint64, op byte, body []byte, err error) {
	id, n := binary.Uvarint(b)
	if n <= 0 || len(b) < n+1 {
		return 0, 0, nil, errShort
	}
	return id, b[n], b[n+1:], nil
}

func parseResponse(b []byte) (id uint64, body []byte, err error) {
	id, n := binary.Uvarint(b)
	if n <= 0 {
		return 0, nil, fmt.Errorf("node: bad response id: %w", errShort)
	}
	return id, b[n:], nil
}

type kickBody struct {
	ID     string `json:"id"`
	Reason string `json:"reason"`
}

type roomBody struct {
	Room  string   `json:"room"`
	Users []string `json:"users"`
}

type roomAnswer struct {
	Members     []string `json:"members"`
	Connections int      `json:"connections"`
}
