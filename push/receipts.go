package push

import (
	"net/http"
	"strconv"
	"time"
)

// Receipts (docs/api.md, "Receipts and acknowledgements").
//
// A push with "ack", "wait" or "receipt" keeps a receipt per target (users and
// connection ids: rooms and all name no one in particular) for as long as the
// message's ttl. The hub keeps them where the facts are: a user target's on the
// owner of its stream, which its peers tell how many connections they wrote it to
// and to which acks go; a connection target's on the node that holds the connection.

// MaxWait bounds "wait".
const MaxWait = 30 * time.Second

// Target states, from the least to the most final.
const (
	StatusPending   = "pending"   // stored; written to no connection yet
	StatusDelivered = "delivered" // written to at least one connection
	StatusAcked     = "acked"     // acknowledged by a connection of the target
	StatusExpired   = "expired"   // its ttl passed (or it was evicted) unacknowledged
)

// TargetStatus is what is known of one target of a message.
type TargetStatus struct {
	Status string `json:"status"`
	// Ack says the message asked this target to acknowledge it.
	Ack bool `json:"ack"`
	// Delivered is how many connections each node wrote the message to.
	Delivered map[string]int `json:"delivered"`
	// AckedBy and AckedAt: the connection that acknowledged it, and when.
	AckedBy string     `json:"acked_by,omitempty"`
	AckedAt *time.Time `json:"acked_at,omitempty"`
	// Reason says why an expired target expired: "ttl" or "evicted" (pushed out of
	// its stream's history by newer messages, or by the node's memory bound).
	Reason string `json:"reason,omitempty"`
}

// Final reports whether a wait for this target is over: acknowledged (or expired)
// when it asked for an ack, written to a connection (or expired) when it did not.
func (t *TargetStatus) Final() bool {
	switch t.Status {
	case StatusAcked, StatusExpired:
		return true
	case StatusDelivered:
		return !t.Ack
	}
	return false
}

// Receipt is GET /v1/messages/{id}.
type Receipt struct {
	ID      string                  `json:"id"`
	Expires time.Time               `json:"expires"`
	Targets map[string]TargetStatus `json:"targets"` // "user:42", "connection:<id>"
}

func (a *API) handleMessage(w http.ResponseWriter, r *http.Request) int {
	id := r.PathValue("id")
	if e := checkID("message id", -1, id); e != nil {
		return a.failErr(w, e)
	}
	rc, err := a.hub.Receipt(id)
	if err != nil {
		return a.failErr(w, a.hubError("receipt of "+strconv.Quote(id), err))
	}
	if rc == nil {
		return a.fail(w, http.StatusNotFound, reasonNotFound, "no receipt of message "+strconv.Quote(id)+
			": receipts are kept for pushes with ack, wait or receipt, for their ttl, on the nodes that hold their targets")
	}
	return a.writeJSON(w, http.StatusOK, rc)
}
