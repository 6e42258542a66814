package stream

import (
	"fmt"
	"slices"
	"strconv"
	"testing"
)

func nodes(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = "node-" + strconv.Itoa(i+1)
	}
	return out
}

// streamNames returns n stream names of the three kinds the hub uses.
func streamNames(n int) []string {
	out := make([]string, n)
	for i := range out {
		switch i % 3 {
		case 0:
			out[i] = "user:" + strconv.Itoa(i)
		case 1:
			out[i] = "room:chat-" + strconv.Itoa(i)
		default:
			out[i] = fmt.Sprintf("user:u%08x", i*2654435761)
		}
	}
	out[0] = "all"
	return out
}

func TestRingEmpty(t *testing.T) {
	r := NewRing(nil)
	if o := r.Owner("all"); o != "" {
		t.Errorf("Owner on an empty ring = %q", o)
	}
	if h := r.Holders("all", 2); len(h) != 0 {
		t.Errorf("Holders on an empty ring = %v", h)
	}
	if m := r.Members(); len(m) != 0 {
		t.Errorf("Members = %v", m)
	}
}

func TestRingMembersSortedDistinct(t *testing.T) {
	in := []string{"c", "a", "b", "a", "c"}
	r := NewRing(in)
	if m := r.Members(); !slices.Equal(m, []string{"a", "b", "c"}) {
		t.Errorf("Members() = %v", m)
	}
	if !slices.Equal(in, []string{"c", "a", "b", "a", "c"}) {
		t.Errorf("NewRing changed its argument: %v", in)
	}
	// Order and repeats do not change the mapping.
	r2 := NewRing([]string{"b", "c", "a"})
	for _, name := range streamNames(2000) {
		if !slices.Equal(r.Holders(name, 3), r2.Holders(name, 3)) {
			t.Fatalf("%s: %v vs %v", name, r.Holders(name, 3), r2.Holders(name, 3))
		}
	}
}

func TestRingOwnerIsFirstHolder(t *testing.T) {
	for _, members := range []int{1, 2, 3, 5} {
		r := NewRing(nodes(members))
		for _, name := range streamNames(3000) {
			o := r.Owner(name)
			for n := 1; n <= 4; n++ {
				if h := r.Holders(name, n); len(h) == 0 || h[0] != o {
					t.Fatalf("%d members: Owner(%q) = %q, Holders(%d) = %v", members, name, o, n, h)
				}
			}
		}
	}
}

func TestRingHolders(t *testing.T) {
	for _, members := range []int{1, 2, 3, 5} {
		r := NewRing(nodes(members))
		in := map[string]bool{}
		for _, m := range r.Members() {
			in[m] = true
		}
		for _, name := range streamNames(3000) {
			all := r.Holders(name, members)
			for n := 1; n <= members+2; n++ {
				h := r.Holders(name, n)
				if len(h) != min(n, members) {
					t.Fatalf("%d members: Holders(%q, %d) = %v, want %d nodes", members, name, n, h, min(n, members))
				}
				seen := map[string]bool{}
				for _, x := range h {
					if seen[x] || !in[x] {
						t.Fatalf("%d members: Holders(%q, %d) = %v: repeated or unknown node", members, name, n, h)
					}
					seen[x] = true
				}
				// A longer list extends a shorter one: the replicas of n are the
				// first of n+1.
				if !slices.Equal(h, all[:len(h)]) {
					t.Fatalf("%d members: Holders(%q, %d) = %v is not a prefix of %v", members, name, n, h, all)
				}
			}
		}
	}
}

// Holders(name, 0) and Holders(name, -1) are empty ("the first n nodes").
func TestRingHoldersZero(t *testing.T) {
	r := NewRing(nodes(3))
	if h := r.Holders("all", 0); len(h) != 0 {
		t.Errorf("Holders(all, 0) = %v, want none", h)
	}
}

func TestRingRemoveMovesOnlyItsStreams(t *testing.T) {
	const members = 5
	names := streamNames(10_000)
	before := NewRing(nodes(members))
	for _, gone := range before.Members() {
		t.Run("without "+gone, func(t *testing.T) {
			rest := slices.DeleteFunc(slices.Clone(before.Members()), func(m string) bool { return m == gone })
			after := NewRing(rest)
			moved := 0
			for _, name := range names {
				old, now := before.Owner(name), after.Owner(name)
				if old != gone {
					if now != old {
						t.Fatalf("%s: owner %s -> %s, though %s was not its owner", name, old, now, gone)
					}
					continue
				}
				moved++
				// The new owner is the old second holder: a replica takes over.
				if h := before.Holders(name, 2); now != h[1] {
					t.Fatalf("%s: owner %s -> %s, want its replica %s", name, old, now, h[1])
				}
				// Every list loses only the node that left.
				want := slices.DeleteFunc(before.Holders(name, 3), func(m string) bool { return m == gone })
				if got := after.Holders(name, len(want)); !slices.Equal(got, want) {
					t.Fatalf("%s: holders %v -> %v, want %v", name, before.Holders(name, 3), got, want)
				}
			}
			if moved == 0 {
				t.Fatalf("%s owned none of %d streams", gone, len(names))
			}
		})
	}
}

func TestRingAddPushesOwnerSecond(t *testing.T) {
	names := streamNames(10_000)
	for _, members := range []int{1, 3, 4} {
		before := NewRing(nodes(members))
		newcomer := "node-new"
		after := NewRing(append(slices.Clone(before.Members()), newcomer))
		gained := 0
		for _, name := range names {
			old, now := before.Owner(name), after.Owner(name)
			if now != newcomer {
				if now != old {
					t.Fatalf("%d members: %s: owner %s -> %s, neither is the new node", members, name, old, now)
				}
				continue
			}
			gained++
			if h := after.Holders(name, 2); h[1] != old {
				t.Fatalf("%d members: %s: new owner %s, holders %v: the old owner %s is not second", members, name, now, h, old)
			}
		}
		if want := len(names) / (members + 1); gained < want/2 || gained > want*2 {
			t.Errorf("%d members: the new node owns %d of %d streams, about %d expected", members, gained, len(names), want)
		}
	}
}

func TestRingBalance(t *testing.T) {
	// stathat/consistent's CRC-32 points gave 63%-125% (27 members) and 66%-133% (3
	// default-named members): why the ring is rendezvous hashing now.
	names := streamNames(30_000)
	cases := []struct {
		name    string
		members []string
	}{
		{"3 members node-N", nodes(3)},
		{"27 members node-N", nodes(27)},
		{"3 members hostname-xxxx", []string{"longlink-0-bb0c", "longlink-1-290a", "longlink-2-c64b"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := NewRing(tc.members)
			owned := map[string]int{}
			for _, name := range names {
				owned[r.Owner(name)]++
			}
			if len(owned) != len(tc.members) {
				t.Fatalf("%d of %d members own streams", len(owned), len(tc.members))
			}
			mean := float64(len(names)) / float64(len(tc.members))
			lo, hi := len(names), 0
			for m, n := range owned {
				lo, hi = min(lo, n), max(hi, n)
				if f := float64(n) / mean; f < 0.75 || f > 1.25 {
					t.Errorf("%s owns %d streams, %.0f%% of the mean %.0f", m, n, 100*f, mean)
				}
			}
			t.Logf("mean %.0f, fewest %d (%.0f%%), most %d (%.0f%%)", mean, lo, 100*float64(lo)/mean, hi, 100*float64(hi)/mean)
		})
	}
}
