package stream

import (
	"slices"

	"github.com/stathat/consistent"
)

// Ring maps streams to the nodes that hold them: consistent hashing over the alive
// members (stathat/consistent, 160 points per node, CRC-32). The first node of a
// stream's list is its owner, the next Replicas-1 hold copies. Consistent hashing
// moves only the streams of a node that joins or leaves, and a node that joins at the
// head of a stream's list pushes the old owner to second place, so the old owner is
// among the nodes the new one asks for the history (see hub/streams.go).
//
// A Ring is immutable once built: a membership change builds a new one.
type Ring struct {
	c       *consistent.Consistent
	members []string
}

// ringPoints is the virtual nodes per member: enough that 3 to 30 nodes get shares
// within a few percent of each other.
const ringPoints = 160

// NewRing builds the ring of members (order does not matter).
func NewRing(members []string) *Ring {
	c := consistent.New()
	c.NumberOfReplicas = ringPoints
	m := slices.Clone(members)
	slices.Sort(m)
	m = slices.Compact(m)
	c.Set(m)
	return &Ring{c: c, members: m}
}

// Members returns the ring's nodes, sorted. The slice must not be modified.
func (r *Ring) Members() []string { return r.members }

// Owner returns the node that owns stream (empty for an empty ring).
func (r *Ring) Owner(stream string) string {
	o, _ := r.c.Get(stream)
	return o
}

// Holders returns the first n nodes of stream's list (fewer when the ring is smaller).
func (r *Ring) Holders(stream string, n int) []string {
	h, _ := r.c.GetN(stream, n)
	return h
}
