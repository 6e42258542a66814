package push

import (
	"encoding/json"
	"time"
)

// Hub is what the API delivers through and asks about connections; the node
// implements it by combining local delivery with cluster forwarding.
//
// All methods are called concurrently from HTTP handler goroutines; they must
// be safe for that and must not block for long (the caller is holding an
// HTTP request open). An error that implements (or wraps one that
// implements) interface{ HTTPStatus() int } is answered with that status
// (4xx or 5xx) and its message; any other error is answered with 500.
type Hub interface {
	// Deliver sends m to every connection its targets name, at most once per
	// connection even when several targets name the same one. m.ID and
	// m.Accepted are already set. m.Data may alias the caller's request buffer,
	// which is reused once Deliver returns: copy what outlives the call (the
	// node encodes the frame and the forwarded message before returning).
	Deliver(m *Message) (Result, error)
	// User lists the user's connections cluster-wide; an empty slice means
	// the user is not connected.
	User(id string) ([]ConnInfo, error)
	// Room describes a room cluster-wide; an unknown room is all zeros.
	Room(room string) (RoomInfo, error)
	// Stats returns a JSON-encodable snapshot for GET /v1/stats.
	Stats() (any, error)
	// KickConnection closes one connection with close code 4001 and reason,
	// and returns how many it closed (0 = not found).
	KickConnection(id, reason string) (int, error)
	// KickUser closes every connection of the user, as KickConnection does.
	KickUser(id, reason string) (int, error)
	// Online returns which of users have no connection anywhere, in the
	// order given; an empty result means all are connected.
	Online(users []string) (offline []string, err error)
	// JoinRoom subscribes every connection of users to room and returns how
	// many connections that touched. users are distinct and were all online
	// when Online was asked just before.
	JoinRoom(room string, users []string) (connections int, err error)
	// LeaveRoom is the reverse of JoinRoom.
	LeaveRoom(room string, users []string) (connections int, err error)
	// Receipt gathers the receipt of message id cluster-wide; nil when no node
	// keeps one.
	Receipt(id string) (*Receipt, error)
}

// Result is what Deliver reports.
type Result struct {
	// Stored is on how many nodes the message is stored for recovery: the fewest of
	// any of its streams (0 with history off or only connection targets).
	Stored int
	// Delivered is how many connections the message was written to on the nodes
	// that own its streams (and on this node for connection targets).
	Delivered int
	// Forwarded is how many copies the owners handed to other nodes' links.
	Forwarded int
	// OfflineUsers are the targeted users with no connection anywhere.
	OfflineUsers []string
	// UnknownConnections are the targeted connection ids open nowhere, as far as the
	// node that took the push can tell: its own ids not open there and ids of nodes
	// that are not alive members. An id on a live peer is never listed.
	UnknownConnections []string
	// Targets is, for a push with "wait", each user and connection target's state
	// when the answer was given; Complete says every one of them was final then.
	Targets  map[string]TargetStatus
	Complete bool
}

// ConnInfo describes one connection for presence queries.
type ConnInfo struct {
	ID     string    `json:"id"`
	User   string    `json:"user"`
	Node   string    `json:"node"`
	Remote string    `json:"remote"`
	Device string    `json:"device"`
	Since  time.Time `json:"since"` // encoded as RFC 3339 with nanoseconds
	Rooms  []string  `json:"rooms"`
	// Meta is the metadata the connect hook gave the connection (absent: none).
	Meta json.RawMessage `json:"meta,omitempty"`
}

// RoomInfo describes one room cluster-wide.
type RoomInfo struct {
	Room        string         `json:"room"`
	Members     int            `json:"members"`     // distinct users
	Connections int            `json:"connections"` // subscribed connections
	Nodes       map[string]int `json:"nodes"`       // node -> connections there
}
