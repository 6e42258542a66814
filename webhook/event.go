package webhook

import "time"

// Event is one webhook event (docs/api.md, "Webhooks"). Fields that do not apply to
// a type are empty and left out of the JSON.
type Event struct {
	// Type is connection.opened, connection.closed, user.online, user.offline or
	// message.expired.
	Type string `json:"type"`
	// ID is unique per event, so a receiver can drop one delivered twice (a retry
	// after a timeout that the receiver had in fact processed).
	ID string `json:"id"`
	// Time is when the event happened, RFC 3339 with nanoseconds.
	Time time.Time `json:"time"`
	// Node is the node the connection was on (for a dead node's connections, the
	// dead node; Reporter then names the survivor that sent it).
	Node     string `json:"node,omitempty"`
	Reporter string `json:"reporter,omitempty"`

	User       string `json:"user,omitempty"`
	Connection string `json:"connection,omitempty"`
	Remote     string `json:"remote,omitempty"`
	// Code and Reason of connection.closed: the close code sent or received (1006
	// when the TCP connection ended without one, or its node died).
	Code   int    `json:"code,omitempty"`
	Reason string `json:"reason,omitempty"`

	// Message and Target of message.expired: the message id and the target
	// ("user:42", "connection:<id>") that did not acknowledge it within its ttl.
	Message string `json:"message,omitempty"`
	Target  string `json:"target,omitempty"`
}

// Sink takes events. Emit never blocks: a full queue drops the event and counts it.
type Sink interface {
	Emit(e Event)
}
