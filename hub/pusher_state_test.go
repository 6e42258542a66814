package hub

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"longlink/loop"
	"longlink/pusher"
	"longlink/stream"
)

// pnet is a cluster of hubs in one process for the Pusher tests: requests call the
// peer's OnRequest. A hidden node is one the others declared dead (frozen or cut
// off) while it still runs and still sees them; a down node is on everyone's ring
// but reaches no one and answers nothing.
type pnet struct {
	mu     sync.Mutex
	hubs   map[string]*Hub
	rec    map[string]*hookRec
	sets   map[string]*metrics.Set
	hidden map[string]bool
	down   map[string]bool
}

func newPnet() *pnet {
	return &pnet{hubs: map[string]*Hub{}, rec: map[string]*hookRec{}, sets: map[string]*metrics.Set{},
		hidden: map[string]bool{}, down: map[string]bool{}}
}

type pRemote struct {
	net  *pnet
	self string
}

func (r *pRemote) AliveNodes() []string {
	r.net.mu.Lock()
	defer r.net.mu.Unlock()
	var out []string
	for n := range r.net.hubs {
		if n != r.self && (!r.net.hidden[n] || r.net.hidden[r.self]) {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

func (r *pRemote) Request(_ context.Context, node string, body []byte) ([]byte, error) {
	r.net.mu.Lock()
	h, down := r.net.hubs[node], r.net.down[node] || r.net.down[r.self]
	r.net.mu.Unlock()
	if h == nil || down || node == r.self {
		return nil, context.DeadlineExceeded
	}
	if out := h.OnRequest(r.self, slices.Clone(body)); out != nil {
		return out, nil
	}
	return nil, context.DeadlineExceeded
}

func (r *pRemote) Ask(ctx context.Context, nodes []string, body []byte) (map[string][]byte, []string) {
	answers := map[string][]byte{}
	var missing []string
	for _, n := range nodes {
		if out, err := r.Request(ctx, n, body); err == nil {
			answers[n] = out
		} else {
			missing = append(missing, n)
		}
	}
	return answers, missing
}

func (r *pRemote) Send(string, []byte) error       { return errors.New("not in these tests") }
func (r *pRemote) NodesForUsers([]string) []string { return nil }
func (r *pRemote) NodesForRooms([]string) []string { return nil }
func (r *pRemote) FlushRoutes()                    {}
func (r *pRemote) SetLocalUser(string, bool)       {}
func (r *pRemote) SetLocalRoom(string, bool)       {}
func (n *pnet) alive(name string) []string         { return (&pRemote{net: n, self: name}).AliveNodes() }
func (n *pnet) hub(name string) *Hub               { n.mu.Lock(); defer n.mu.Unlock(); return n.hubs[name] }
func (n *pnet) hooks(name string) *hookRec         { n.mu.Lock(); defer n.mu.Unlock(); return n.rec[name] }
func (n *pnet) set(name, what string, v bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.flag(what)[name] = v
}
func (n *pnet) flag(what string) map[string]bool {
	if what == "hidden" {
		return n.hidden
	}
	return n.down
}

// hookRec records a hub's Pusher callbacks as "+app/channel/user" and
// "-app/channel/user" (Member) and "name app/channel/user" (Webhook).
type hookRec struct {
	mu      sync.Mutex
	members []string
	hooks   []string
	infos   map[string]string
}

func (r *hookRec) member(app, channel string, m pusher.Member, added bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := "-"
	if added {
		s = "+"
		r.infos[app+"/"+channel+"/"+m.ID] = string(m.Info)
	}
	r.members = append(r.members, s+app+"/"+channel+"/"+m.ID)
}

func (r *hookRec) webhook(app, name, channel, user string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.hooks = append(r.hooks, name+" "+app+"/"+channel+"/"+user)
}

func (r *hookRec) count(list *[]string, s string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, v := range *list {
		if v == s {
			n++
		}
	}
	return n
}

func (r *hookRec) memberEvents(s string) int { return r.count(&r.members, s) }
func (r *hookRec) hookEvents(s string) int   { return r.count(&r.hooks, s) }

func (r *hookRec) allHooks() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.hooks)
}

const testGrace = 300 * time.Millisecond

// add starts a hub with Pusher on; every hub sees the new member at its next tick.
func (n *pnet) add(t *testing.T, name string) *Hub {
	t.Helper()
	rec := &hookRec{infos: map[string]string{}}
	set := metrics.NewSet()
	h, err := New(Config{NodeName: name, Local: newFakeLocal(), Remote: &pRemote{net: n, self: name}, Metrics: set,
		Logger: quiet, Settle: time.Nanosecond,
		Pusher: &PusherHooks{Member: rec.member, Webhook: rec.webhook, Grace: testGrace}})
	if err != nil {
		t.Fatal(err)
	}
	n.mu.Lock()
	n.hubs[name], n.rec[name], n.sets[name] = h, rec, set
	n.mu.Unlock()
	t.Cleanup(h.Close)
	return h
}

// kill removes a hub from the cluster and stops it (kill -9: nothing is said).
func (n *pnet) kill(name string) {
	n.mu.Lock()
	h := n.hubs[name]
	delete(n.hubs, name)
	n.mu.Unlock()
	h.Close()
}

func (n *pnet) counter(name, metric string) uint64 {
	n.mu.Lock()
	set := n.sets[name]
	n.mu.Unlock()
	return set.GetOrCreateCounter(metric).Get()
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting for: " + what)
		}
	}
}

func memberIDs(ms []pusher.Member) string {
	ids := make([]string, len(ms))
	for i, m := range ms {
		ids[i] = m.ID
	}
	return strings.Join(ids, ",")
}

func member(id, info string) *pusher.Member { return &pusher.Member{ID: id, Info: []byte(info)} }

// channelOwnedBy returns a presence channel name whose room stream node owns on
// the ring of nodes.
func channelOwnedBy(t *testing.T, node string, nodes []string, prefix string) string {
	ring := stream.NewRing(nodes)
	for i := 0; i < 10000; i++ {
		ch := fmt.Sprintf("%s%d", prefix, i)
		if ring.Owner(RoomStream(loop.PusherRoom("app", ch))) == node {
			return ch
		}
	}
	t.Fatal("no channel owned by " + node)
	return ""
}

// waitRing waits until every hub of the net has the given members on its ring
// (as the Pusher goroutine sees it).
func (n *pnet) waitRing(t *testing.T, names ...string) {
	t.Helper()
	for _, name := range names {
		h := n.hub(name)
		want := append(n.alive(name), name)
		slices.Sort(want)
		waitFor(t, name+" sees "+strings.Join(want, ","), func() bool {
			h.ps.cmu.RLock()
			defer h.ps.cmu.RUnlock()
			return slices.Equal(h.ps.alive, want)
		})
	}
}

// TestPusherMembersAcrossNodes: a member's first connection anywhere and its last
// are the only transitions every node calls Member for; a user on two nodes leaving
// one is nothing; PusherMembers, PusherMemberCount and PusherOccupied agree.
func TestPusherMembersAcrossNodes(t *testing.T) {
	net := newPnet()
	a, b := net.add(t, "a"), net.add(t, "b")
	net.waitRing(t, "a", "b")
	ch := "presence-room"
	both := func(what string, cond func(h *Hub, r *hookRec) bool) {
		t.Helper()
		for _, n := range []string{"a", "b"} {
			waitFor(t, n+": "+what, func() bool { return cond(net.hub(n), net.hooks(n)) })
		}
	}
	a.PusherJoin("app", ch, "1.1", member("u1", `{"name":"one"}`))
	a.PusherJoin("app", "public-x", "1.1", nil)
	both("+u1", func(h *Hub, r *hookRec) bool {
		return r.memberEvents("+app/"+ch+"/u1") == 1 && memberIDs(h.PusherMembers("app", ch)) == "u1"
	})
	if got := b.PusherMembers("app", ch)[0].Info; string(got) != `{"name":"one"}` {
		t.Fatalf("b sees u1's info %q", got)
	}
	both("occupied", func(h *Hub, _ *hookRec) bool {
		return slices.Equal(h.PusherOccupied("app", ""), []string{ch, "public-x"}) &&
			slices.Equal(h.PusherOccupied("app", "pub"), []string{"public-x"}) &&
			h.PusherChannelOccupied("app", "public-x") && !h.PusherChannelOccupied("app", "public") &&
			!h.PusherChannelOccupied("other", "public-x")
	})
	b.PusherJoin("app", ch, "2.1", member("u2", `{}`))
	both("+u2", func(h *Hub, r *hookRec) bool {
		return r.memberEvents("+app/"+ch+"/u2") == 1 && h.PusherMemberCount("app", ch) == 2
	})
	// u1 on b too, with another info: no transition; the info stays the first.
	b.PusherJoin("app", ch, "2.2", member("u1", `{"name":"other"}`))
	both("b holds u1", func(h *Hub, _ *hookRec) bool { return h.ps.holds("b", "app", ch, "u1") })
	a.PusherLeave("app", ch, "1.1", "u1")
	// u3 on a is a marker: when every node has it, it has seen the two changes above.
	a.PusherJoin("app", ch, "1.3", member("u3", `{}`))
	both("+u3", func(h *Hub, r *hookRec) bool { return r.memberEvents("+app/"+ch+"/u3") == 1 })
	for _, n := range []string{"a", "b"} {
		r := net.hooks(n)
		if r.memberEvents("-app/"+ch+"/u1") != 0 || r.memberEvents("+app/"+ch+"/u1") != 1 {
			t.Fatalf("%s: u1 still on b changed membership: %v", n, r.members)
		}
		got := net.hub(n).PusherMembers("app", ch)
		if memberIDs(got) != "u1,u2,u3" || string(got[0].Info) != `{"name":"one"}` {
			t.Fatalf("%s: members %v", n, got)
		}
	}
	b.PusherLeave("app", ch, "2.2", "u1")
	both("-u1", func(h *Hub, r *hookRec) bool {
		return r.memberEvents("-app/"+ch+"/u1") == 1 && memberIDs(h.PusherMembers("app", ch)) == "u2,u3"
	})
	a.PusherLeave("app", "public-x", "1.1", "")
	both("public-x vacated", func(h *Hub, _ *hookRec) bool {
		return slices.Equal(h.PusherOccupied("app", ""), []string{ch}) && !h.PusherChannelOccupied("app", "public-x")
	})
	// Duplicate joins and unknown leaves change nothing.
	a.PusherJoin("app", ch, "1.3", member("u3", `{}`))
	a.PusherLeave("app", ch, "9.9", "u3")
	a.PusherLeave("app", ch, "1.3", "u3")
	both("-u3", func(h *Hub, r *hookRec) bool { return r.memberEvents("-app/"+ch+"/u3") == 1 })
	if n := a.PusherMemberCount("app", ch); n != 1 {
		t.Fatalf("count %d after u3 left, want 1 (u2)", n)
	}
}

// TestPusherNodeDeath: a node that dies takes its holdings with it: every other
// node calls Member(removed), and the owner sends member_removed and
// channel_vacated after the grace, once.
func TestPusherNodeDeath(t *testing.T) {
	net := newPnet()
	net.add(t, "a")
	b, c := net.add(t, "b"), net.add(t, "c")
	net.waitRing(t, "a", "b", "c")
	// b owns it on {a,b,c}, so also on {b,c} (rendezvous hashing).
	ch := channelOwnedBy(t, "b", []string{"a", "b", "c"}, "presence-d")
	net.hub("a").PusherJoin("app", ch, "1.1", member("u1", `{}`))
	c.PusherJoin("app", ch, "3.1", member("u2", `{}`))
	for _, n := range []string{"b", "c"} {
		waitFor(t, n+" +u1", func() bool { return net.hooks(n).memberEvents("+app/"+ch+"/u1") == 1 })
	}
	net.kill("a")
	for _, n := range []string{"b", "c"} {
		waitFor(t, n+" -u1", func() bool {
			return net.hooks(n).memberEvents("-app/"+ch+"/u1") == 1 && memberIDs(net.hub(n).PusherMembers("app", ch)) == "u2"
		})
	}
	waitFor(t, "member_removed from the owner", func() bool {
		return net.hooks("b").hookEvents("member_removed app/"+ch+"/u1") == 1
	})
	c.PusherLeave("app", ch, "3.1", "u2")
	waitFor(t, "vacated", func() bool { return net.hooks("b").hookEvents("channel_vacated app/"+ch+"/") == 1 })
	if len(b.PusherOccupied("app", "")) != 0 || len(c.PusherOccupied("app", "")) != 0 {
		t.Fatal("channel still occupied")
	}
	if hs := net.hooks("c").allHooks(); len(hs) != 0 {
		t.Fatalf("c owns nothing but sent %v", hs)
	}
}

// TestPusherNodeReturns: a node declared dead that was only frozen (same epoch)
// re-adds its members when it is back: removed, then added again.
func TestPusherNodeReturns(t *testing.T) {
	net := newPnet()
	a, b := net.add(t, "a"), net.add(t, "b")
	net.waitRing(t, "a", "b")
	ch := "presence-back"
	a.PusherJoin("app", ch, "1.1", member("u1", `{"v":1}`))
	waitFor(t, "b +u1", func() bool { return net.hooks("b").memberEvents("+app/"+ch+"/u1") == 1 })
	net.set("a", "hidden", true)
	waitFor(t, "b -u1", func() bool { return net.hooks("b").memberEvents("-app/"+ch+"/u1") == 1 })
	if b.PusherMemberCount("app", ch) != 0 {
		t.Fatal("b still counts a's member")
	}
	net.set("a", "hidden", false)
	waitFor(t, "b +u1 again", func() bool {
		return net.hooks("b").memberEvents("+app/"+ch+"/u1") == 2 && memberIDs(b.PusherMembers("app", ch)) == "u1"
	})
	r := net.hooks("b")
	r.mu.Lock()
	info := r.infos["app/"+ch+"/u1"]
	r.mu.Unlock()
	if info != `{"v":1}` {
		t.Fatalf("info %q after the return", info)
	}
	if net.counter("a", `longlink_pusher_state_feed_resyncs_total`) == 0 {
		t.Fatal("a's feed to b was refused while hidden: counted as resyncs")
	}
}

// TestPusherWebhooksDebounced: only the owner sends webhooks, once each; a member
// and a channel back within the grace (on another node) produce neither
// member_removed nor channel_vacated; gone for good, both come after the grace.
func TestPusherWebhooksDebounced(t *testing.T) {
	net := newPnet()
	nodes := []string{"a", "b", "c"}
	for _, n := range nodes {
		net.add(t, n)
	}
	net.waitRing(t, nodes...)
	ch := channelOwnedBy(t, "c", nodes, "presence-w")
	marker := channelOwnedBy(t, "c", nodes, "presence-m")
	a, b := net.hub("a"), net.hub("b")
	a.PusherJoin("app", ch, "1.1", member("u1", `{}`))
	a.PusherJoin("app", marker, "1.1", member("u9", `{}`))
	owner := net.hooks("c")
	waitFor(t, "occupied and added on the owner", func() bool {
		return owner.hookEvents("channel_occupied app/"+ch+"/") == 1 && owner.hookEvents("member_added app/"+ch+"/u1") == 1 &&
			owner.hookEvents("member_added app/"+marker+"/u9") == 1
	})
	// Gone from a, back on b within the grace.
	a.PusherLeave("app", ch, "1.1", "u1")
	waitFor(t, "c -u1", func() bool { return owner.memberEvents("-app/"+ch+"/u1") == 1 })
	b.PusherJoin("app", ch, "2.1", member("u1", `{}`))
	waitFor(t, "c +u1 again", func() bool { return owner.memberEvents("+app/"+ch+"/u1") == 2 })
	// The marker leaves after that: once its member_removed is out, u1's grace
	// (which started before) is over too.
	a.PusherLeave("app", marker, "1.1", "u9")
	waitFor(t, "marker removed", func() bool { return owner.hookEvents("member_removed app/"+marker+"/u9") == 1 })
	if owner.hookEvents("member_removed app/"+ch+"/u1") != 0 || owner.hookEvents("channel_vacated app/"+ch+"/") != 0 ||
		owner.hookEvents("member_added app/"+ch+"/u1") != 1 || owner.hookEvents("channel_occupied app/"+ch+"/") != 1 {
		t.Fatalf("a return within the grace made webhooks: %v", owner.allHooks())
	}
	// Gone for good.
	b.PusherLeave("app", ch, "2.1", "u1")
	waitFor(t, "removed and vacated", func() bool {
		return owner.hookEvents("member_removed app/"+ch+"/u1") == 1 && owner.hookEvents("channel_vacated app/"+ch+"/") == 1
	})
	for _, n := range []string{"a", "b"} {
		if hs := net.hooks(n).allHooks(); len(hs) != 0 {
			t.Fatalf("%s is not the owner but sent %v", n, hs)
		}
	}
	hs := owner.allHooks()
	if i, j := slices.Index(hs, "channel_occupied app/"+ch+"/"), slices.Index(hs, "member_added app/"+ch+"/u1"); i > j {
		t.Fatalf("member_added before channel_occupied: %v", hs)
	}
	if i, j := slices.Index(hs, "member_removed app/"+ch+"/u1"), slices.Index(hs, "channel_vacated app/"+ch+"/"); i > j {
		t.Fatalf("channel_vacated before member_removed: %v", hs)
	}
	if got := net.counter("c", `longlink_pusher_state_webhooks_total{event="member_removed"}`); got != 2 {
		t.Fatalf("member_removed counted %d, want 2", got)
	}
}

// TestPusherOwnerDiesInGrace: when the owner dies while a debounce runs, the new
// owner sends the webhook, once.
func TestPusherOwnerDiesInGrace(t *testing.T) {
	net := newPnet()
	nodes := []string{"a", "b", "c"}
	for _, n := range nodes {
		net.add(t, n)
	}
	net.waitRing(t, nodes...)
	ch := channelOwnedBy(t, "c", nodes, "presence-o")
	next := stream.NewRing([]string{"a", "b"}).Owner(RoomStream(loop.PusherRoom("app", ch)))
	a := net.hub("a")
	a.PusherJoin("app", ch, "1.1", member("u1", `{}`))
	waitFor(t, "added on c", func() bool { return net.hooks("c").hookEvents("member_added app/"+ch+"/u1") == 1 })
	waitFor(t, "b +u1", func() bool { return net.hooks("b").memberEvents("+app/"+ch+"/u1") == 1 })
	a.PusherLeave("app", ch, "1.1", "u1")
	waitFor(t, "b -u1", func() bool { return net.hooks("b").memberEvents("-app/"+ch+"/u1") == 1 })
	net.kill("c")
	waitFor(t, "the new owner sends them", func() bool {
		return net.hooks(next).hookEvents("member_removed app/"+ch+"/u1") == 1 && net.hooks(next).hookEvents("channel_vacated app/"+ch+"/") == 1
	})
	for _, n := range []string{"a", "b"} {
		if n != next {
			if hs := net.hooks(n).allHooks(); len(hs) != 0 {
				t.Fatalf("%s sent %v", n, hs)
			}
		}
	}
	if hs := net.hooks(next).allHooks(); len(hs) != 2 {
		t.Fatalf("new owner sent %v, want exactly the two", hs)
	}
}

// TestPusherNewcomerSilent: a node that joins a running cluster takes what the
// others already hold as announced: owning the channel, it sends no
// channel_occupied or member_added for it, but does send the vacated and removed
// ones when they go.
func TestPusherNewcomerSilent(t *testing.T) {
	net := newPnet()
	a := net.add(t, "a")
	net.waitRing(t, "a")
	ch := channelOwnedBy(t, "b", []string{"a", "b"}, "presence-n")
	a.PusherJoin("app", ch, "1.1", member("u1", `{}`))
	waitFor(t, "a alone announces", func() bool { return net.hooks("a").hookEvents("member_added app/"+ch+"/u1") == 1 })
	b := net.add(t, "b")
	net.waitRing(t, "a", "b")
	// Until b's next tick has settled it, a leave could cancel the join unseen (a
	// change shorter than a tick has no callbacks): wait for b's Member call too.
	waitFor(t, "b learns u1", func() bool {
		return memberIDs(b.PusherMembers("app", ch)) == "u1" && net.hooks("b").memberEvents("+app/"+ch+"/u1") == 1
	})
	a.PusherLeave("app", ch, "1.1", "u1")
	waitFor(t, "b sends removed and vacated", func() bool {
		return net.hooks("b").hookEvents("member_removed app/"+ch+"/u1") == 1 && net.hooks("b").hookEvents("channel_vacated app/"+ch+"/") == 1
	})
	if hs := net.hooks("b").allHooks(); len(hs) != 2 {
		t.Fatalf("b sent %v: it announced what a had announced", hs)
	}
	if net.hooks("b").memberEvents("+app/"+ch+"/u1") != 1 {
		t.Fatal("b did not call Member for the member it learned")
	}
	if got := net.hooks("a").hookEvents("member_removed app/" + ch + "/u1"); got != 0 {
		t.Fatal("a no longer owns the channel but sent member_removed")
	}
}

// TestPusherSubscriptionCounts: counts are every node's connections summed; a node
// that does not answer is an error.
func TestPusherSubscriptionCounts(t *testing.T) {
	net := newPnet()
	a, b := net.add(t, "a"), net.add(t, "b")
	a.PusherJoin("app", "chat-1", "1.1", nil)
	a.PusherJoin("app", "chat-1", "1.2", nil)
	a.PusherJoin("other", "chat-1", "1.2", nil)
	b.PusherJoin("app", "chat-1", "2.1", nil)
	b.PusherJoin("app", "chat-2", "2.1", nil)
	b.PusherJoin("app", "news", "2.1", nil)
	if !strings.Contains(metricsText(net.sets["a"]), "longlink_pusher_state_local_subscriptions 3\n") {
		t.Fatal("a's gauge does not count its 3 subscriptions")
	}
	got, err := a.PusherSubscriptionCounts("app", "chat-", false)
	if err != nil || len(got) != 2 || got["chat-1"] != 3 || got["chat-2"] != 1 {
		t.Fatalf("counts %v, %v", got, err)
	}
	got, err = b.PusherSubscriptionCounts("app", "chat-1", true)
	if err != nil || len(got) != 1 || got["chat-1"] != 3 {
		t.Fatalf("exact %v, %v", got, err)
	}
	got, err = b.PusherSubscriptionCounts("app", "", false)
	if err != nil || len(got) != 3 || got["news"] != 1 {
		t.Fatalf("all %v, %v", got, err)
	}
	net.set("b", "down", true)
	if _, err := a.PusherSubscriptionCounts("app", "chat-", false); err == nil || !strings.Contains(err.Error(), "b did not answer") {
		t.Fatalf("b down: %v", err)
	}
	// Over the answer's bound: an error, not a short count.
	net.set("b", "down", false)
	b.ps.lmu.Lock()
	b.ps.lim.countsBytes = 40
	b.ps.lmu.Unlock()
	if _, err := a.PusherSubscriptionCounts("app", "", false); err == nil || !strings.Contains(err.Error(), "too many") {
		t.Fatalf("over the bound: %v", err)
	}
}

// TestPusherStandaloneAndOff: a node alone owns every channel and calls its hooks
// itself; a hub without Config.Pusher answers empty and acknowledges feeds.
func TestPusherStandaloneAndOff(t *testing.T) {
	rec := &hookRec{infos: map[string]string{}}
	h, err := New(Config{NodeName: "solo", Local: newFakeLocal(), Logger: quiet,
		Pusher: &PusherHooks{Member: rec.member, Webhook: rec.webhook, Grace: 50 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	h.PusherJoin("app", "presence-s", "1.1", member("u", `{}`))
	waitFor(t, "added", func() bool {
		return rec.hookEvents("channel_occupied app/presence-s/") == 1 && rec.hookEvents("member_added app/presence-s/u") == 1 &&
			rec.memberEvents("+app/presence-s/u") == 1
	})
	h.PusherLeave("app", "presence-s", "1.1", "u")
	waitFor(t, "removed", func() bool {
		return rec.hookEvents("member_removed app/presence-s/u") == 1 && rec.hookEvents("channel_vacated app/presence-s/") == 1
	})
	if got := rec.allHooks(); got[2] != "member_removed app/presence-s/u" {
		t.Fatalf("order %v", got)
	}
	waitFor(t, "records forgotten", func() bool { return h.ps.records(false) == 0 && h.ps.records(true) == 0 })
	counts, err := h.PusherSubscriptionCounts("app", "", false)
	if err != nil || len(counts) != 0 {
		t.Fatalf("counts %v %v", counts, err)
	}

	off, err := New(Config{NodeName: "off", Local: newFakeLocal(), Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer off.Close()
	off.PusherJoin("app", "presence-s", "1.1", member("u", `{}`))
	off.PusherLeave("app", "presence-s", "1.1", "u")
	if off.PusherMembers("app", "presence-s") != nil || off.PusherMemberCount("app", "x") != 0 || off.PusherOccupied("app", "") != nil {
		t.Fatal("Pusher off answered something")
	}
	if c, err := off.PusherSubscriptionCounts("app", "", false); err != nil || len(c) != 0 {
		t.Fatalf("off counts %v %v", c, err)
	}
	if a := off.OnRequest("x", wbuf{opPusherFeed}.uv(1).uv(0).byte1(pfReset|pfLast)); len(a) != 1 || a[0] != feedOK {
		t.Fatalf("off answers a feed %v", a)
	}
	if _, err := New(Config{NodeName: "neg", Local: newFakeLocal(), Pusher: &PusherHooks{Grace: -1}}); err == nil {
		t.Fatal("a negative grace was accepted")
	}
}

// TestPusherBounds: what a peer or a client sends is bounded: a source's holdings,
// the table's records, the local subscriptions, info sizes and names; each drop is
// counted, and a malformed feed is answered resync without losing what the source
// held.
func TestPusherBounds(t *testing.T) {
	net := newPnet()
	a, _ := net.add(t, "a"), net.add(t, "b")
	net.waitRing(t, "a", "b")
	// b is cut off: its own feeds do not reach a, so this test speaks for it.
	net.set("b", "down", true)
	p := a.ps
	p.cmu.Lock()
	p.lim.srcChannels, p.lim.srcMembers, p.lim.channels, p.lim.members = 3, 2, 4, 3
	p.cmu.Unlock()
	p.lmu.Lock()
	p.lim.subs, p.lim.dirty = 2, 0 // every local change found by a full comparison
	p.lmu.Unlock()
	drops := func(reason string) uint64 {
		return net.counter("a", `longlink_pusher_state_dropped_total{reason="`+reason+`"}`)
	}
	feedReq := func(flags byte, base uint64, ops ...wbuf) byte {
		t.Helper()
		req := wbuf(nil).uv(7).uv(base).byte1(flags)
		for _, op := range ops {
			req = append(req, op...)
		}
		ans := p.onFeed("b", req)
		if len(ans) != 1 {
			t.Fatalf("answer %v", ans)
		}
		return ans[0]
	}
	occ := func(ch string) wbuf { return wbuf(nil).byte1(pOccupy).str("app").str(ch) }
	join := func(ch, u string, info []byte) wbuf {
		return wbuf(nil).byte1(pJoin).str("app").str("presence-" + ch).str(u).bytes(info)
	}
	big := []byte(`"` + strings.Repeat("x", pusher.MaxUserInfo) + `"`)
	if ans := feedReq(pfReset|pfLast, 0, occ("c1"), occ("c2"), occ("c3"), occ("c4"),
		join("p", "u1", []byte(`{}`)), join("p", "u2", big), join("p", "u3", nil),
		wbuf(nil).byte1(pOccupy).str("app").str(strings.Repeat("c", pusher.MaxChannelName+1))); ans != feedOK {
		t.Fatalf("snapshot: %d", ans)
	}
	// c4 is over the source's 3 channels; u3 over its 2 members; the presence
	// channel's record is the table's 4th: the members' records fit.
	if got := a.PusherOccupied("app", ""); !slices.Equal(got, []string{"c1", "c2", "c3"}) {
		t.Fatalf("occupied %v", got)
	}
	if got := a.PusherMembers("app", "presence-p"); memberIDs(got) != "u1,u2" || got[1].Info != nil {
		t.Fatalf("members %v", got)
	}
	if drops("limit") != 2 || drops("info_too_large") != 1 || drops("invalid") != 1 {
		t.Fatalf("drops limit %d info %d invalid %d", drops("limit"), drops("info_too_large"), drops("invalid"))
	}
	// The table is full (4 channel records): another source's channels are refused.
	p.cmu.Lock()
	for i := range 10 {
		p.hold(newSrc(1), "zz", pmKey{"app", fmt.Sprint("t", i), ""}, nil, false)
	}
	nch := p.nch
	p.cmu.Unlock()
	if drops("limit") != 12 || nch != 4 {
		t.Fatalf("table cap: %d records, %d limit drops", nch, drops("limit"))
	}
	// A malformed op: resync, and what b held stays until its next snapshot.
	if ans := feedReq(0, 1, wbuf{99}); ans != feedResync {
		t.Fatalf("malformed: %d", ans)
	}
	if ans := feedReq(0, 2); ans != feedResync {
		t.Fatal("a delta after a malformed request must be refused until a snapshot")
	}
	if got := a.PusherOccupied("app", ""); len(got) != 3 {
		t.Fatalf("a malformed feed dropped b's holdings: %v", got)
	}
	// A snapshot that states less removes the rest, at its last chunk only.
	if ans := feedReq(pfReset, 0, occ("c1")); ans != feedOK {
		t.Fatal("snapshot chunk 1")
	}
	if got := a.PusherOccupied("app", ""); len(got) != 3 {
		t.Fatalf("holdings swept before the snapshot's end: %v", got)
	}
	if ans := feedReq(pfLast, 1, occ("c2")); ans != feedOK {
		t.Fatal("snapshot chunk 2")
	}
	if got := a.PusherOccupied("app", ""); !slices.Equal(got, []string{"c1", "c2"}) {
		t.Fatalf("after the snapshot %v", got)
	}
	waitFor(t, "b's members gone", func() bool { return a.PusherMemberCount("app", "presence-p") == 0 })
	if err := a.ps.checkTable(); err != nil {
		t.Fatal(err)
	}
	// a's own feed to b meanwhile (its keepalive) fails, and is counted.
	waitFor(t, "a feed failure counted", func() bool {
		return net.counter("a", `longlink_pusher_state_feed_failures_total`) > 0
	})
	net.set("b", "down", false)

	// Local: two subscriptions at most; the third is dropped, and its leave ignored.
	a.PusherJoin("app", "l1", "1.1", nil)
	a.PusherJoin("app", "l1", "1.2", nil)
	a.PusherJoin("app", "l2", "1.3", nil)
	a.PusherLeave("app", "l2", "1.3", "")
	if drops("local_limit") != 1 {
		t.Fatalf("local_limit %d", drops("local_limit"))
	}
	a.PusherJoin("", "l1", "1.1", nil)
	a.PusherJoin("app", "l1", "1.1", &pusher.Member{ID: strings.Repeat("u", pusher.MaxUserID+1)})
	if drops("invalid") != 4 {
		t.Fatalf("invalid %d", drops("invalid"))
	}
	waitFor(t, "l1 published after a rescan", func() bool {
		got, _ := net.hub("b").PusherSubscriptionCounts("app", "l", false)
		return slices.Contains(net.hub("b").PusherOccupied("app", "l"), "l1") && got["l1"] == 2
	})
	a.PusherLeave("app", "l1", "1.1", "")
	a.PusherLeave("app", "l1", "1.2", "")
	a.PusherJoin("app", "l3", "1.4", nil)
	waitFor(t, "b sees l3 only", func() bool {
		return slices.Equal(net.hub("b").PusherOccupied("app", "l"), []string{"l3"})
	})
	if net.counter("a", `longlink_pusher_state_local_rescans_total`) == 0 {
		t.Fatal("no rescan counted")
	}
	if err := a.ps.checkTable(); err != nil {
		t.Fatal(err)
	}
}

// checkTable verifies the table's invariants (tests only).
func (p *pusherState) checkTable() error {
	p.cmu.RLock()
	defer p.cmu.RUnlock()
	nch, nm := 0, 0
	for app, chs := range p.apps {
		for name, c := range chs {
			nch++
			live := 0
			for _, m := range c.members {
				nm++
				if len(m.holders) > 0 {
					live++
				}
			}
			if live != c.nlive {
				return fmt.Errorf("%s/%s: nlive %d, %d members live", app, name, c.nlive, live)
			}
		}
	}
	if nch != p.nch || nm != p.nm {
		return fmt.Errorf("records %d/%d counted %d/%d", nch, nm, p.nch, p.nm)
	}
	for node, s := range p.srcs {
		for ck := range s.chans {
			c := p.apps[ck.app][ck.channel]
			if c == nil || !slices.ContainsFunc(c.holders, func(h pholder) bool { return h.node == node }) {
				return fmt.Errorf("%s holds %v without a record", node, ck)
			}
		}
	}
	return nil
}

// holds reports whether this node's table has node holding the member (tests).
func (p *pusherState) holds(node, app, channel, user string) bool {
	p.cmu.RLock()
	defer p.cmu.RUnlock()
	return p.heldInfo(pmKey{app, channel, user}, node) != nil
}
