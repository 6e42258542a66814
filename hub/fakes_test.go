package hub

import (
	"context"
	"io"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"longlink/internal/testutil"
	"longlink/loop"
)

func TestMain(m *testing.M) { os.Exit(testutil.Main(m, 0)) }

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// fakeLocal is a node's loops as a map of users to connections. It records what
// was submitted and enqueued.
type fakeLocal struct {
	mu         sync.Mutex
	conns      map[string][]loop.ConnInfo // user -> connections
	rooms      map[string]loop.RoomInfo
	submitted  [][]byte
	enqueued   [][]byte
	targets    []loop.Targets
	kicked     []string
	joined     []string
	resumed    []resumeCall // ResumeV2 calls
	submitErr  error        // Submit and the room/kick calls fail with it
	enqueueErr error
}

func newFakeLocal() *fakeLocal {
	return &fakeLocal{conns: map[string][]loop.ConnInfo{}, rooms: map[string]loop.RoomInfo{}}
}

type fakePending struct {
	n       int
	offline []string
	missing []string
}

func (p fakePending) Wait(context.Context) (int, error)  { return p.n, nil }
func (p fakePending) WaitFor(time.Duration) (int, error) { return p.n, nil }
func (p fakePending) Offline() []string                  { return p.offline }
func (p fakePending) Missing() []string                  { return p.missing }

func (l *fakeLocal) Submit(frame []byte, t loop.Targets, _ int64) (Pending, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.submitErr != nil {
		return nil, l.submitErr
	}
	l.submitted = append(l.submitted, frame)
	l.targets = append(l.targets, t)
	n := 0
	var offline []string
	for _, u := range t.Users {
		if len(l.conns[u]) == 0 {
			offline = append(offline, u)
		}
		n += len(l.conns[u])
	}
	var missing []string
	for _, id := range t.Connections {
		found := false
		for _, cs := range l.conns {
			found = found || slices.ContainsFunc(cs, func(c loop.ConnInfo) bool { return c.ID == id })
		}
		if !found {
			missing = append(missing, id)
		}
	}
	return fakePending{n: n, offline: offline, missing: missing}, nil
}

func (l *fakeLocal) Enqueue(frame []byte, t loop.Targets, _ int64) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.enqueueErr != nil {
		l.enqueued = append(l.enqueued, nil) // an attempt
		return l.enqueueErr
	}
	l.enqueued = append(l.enqueued, frame)
	l.targets = append(l.targets, t)
	return nil
}

func (l *fakeLocal) UserConnections(user string) []loop.ConnInfo {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.conns[user])
}

func (l *fakeLocal) LocalUsers() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for u, cs := range l.conns {
		if len(cs) > 0 {
			out = append(out, u)
		}
	}
	return out
}

func (l *fakeLocal) RoomMembers(room string) loop.RoomInfo {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.rooms[room]
}

func (l *fakeLocal) Offline(users []string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, u := range users {
		if len(l.conns[u]) == 0 {
			out = append(out, u)
		}
	}
	return out
}

func (l *fakeLocal) KickConnection(_ context.Context, id, _ string) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.submitErr != nil {
		return 0, l.submitErr
	}
	for u, cs := range l.conns {
		for i, c := range cs {
			if c.ID == id {
				l.conns[u] = slices.Delete(cs, i, i+1)
				l.kicked = append(l.kicked, id)
				return 1, nil
			}
		}
	}
	return 0, nil
}

func (l *fakeLocal) KickUser(_ context.Context, user, _ string) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.submitErr != nil {
		return 0, l.submitErr
	}
	n := len(l.conns[user])
	delete(l.conns, user)
	if n > 0 {
		l.kicked = append(l.kicked, user)
	}
	return n, nil
}

func (l *fakeLocal) JoinRoom(_ context.Context, room string, users []string) (int, []string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.submitErr != nil {
		return 0, nil, l.submitErr
	}
	n := 0
	for _, u := range users {
		n += len(l.conns[u])
	}
	l.joined = append(l.joined, room)
	return n, nil, nil
}

func (l *fakeLocal) LeaveRoom(ctx context.Context, room string, users []string) (int, []string, error) {
	return l.JoinRoom(ctx, room, users)
}

func (l *fakeLocal) Connections() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, cs := range l.conns {
		n += len(cs)
	}
	return n
}

func (l *fakeLocal) Users() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.conns)
}

func (l *fakeLocal) Rooms() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.rooms)
}

func (l *fakeLocal) addConn(user, id string, since int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.conns[user] = append(l.conns[user], loop.ConnInfo{ID: id, User: user, Since: since})
}

// fakeNet connects hubs in one process: Send calls the peer's OnMessage, Ask its
// OnRequest, as the cluster would on the peer's goroutines. The routing table is
// exact: a node holds a user when its fakeLocal has connections for it.
type fakeNet struct {
	mu    sync.Mutex
	hubs  map[string]*Hub
	local map[string]*fakeLocal
	down  map[string]bool          // alive but never answers
	hold  map[string]chan struct{} // frozen: requests to it wait until the channel closes
	held  atomic.Int32             // requests waiting on a hold
	sends map[string]int           // node -> payloads received
	drop  map[string]int           // node -> payloads still to lose (a full link queue)
}

func newFakeNet() *fakeNet {
	return &fakeNet{hubs: map[string]*Hub{}, local: map[string]*fakeLocal{}, down: map[string]bool{}, hold: map[string]chan struct{}{}, sends: map[string]int{}, drop: map[string]int{}}
}

// add makes a hub named name on the net.
func (n *fakeNet) add(t testing.TB, name string, mod func(*Config)) (*Hub, *fakeLocal) {
	t.Helper()
	l := newFakeLocal()
	cfg := Config{NodeName: name, Local: l, Remote: &fakeRemote{net: n, self: name}, Metrics: metrics.NewSet(), Logger: quiet, Settle: time.Nanosecond}
	if mod != nil {
		mod(&cfg)
	}
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	n.mu.Lock()
	n.hubs[name], n.local[name] = h, l
	n.mu.Unlock()
	t.Cleanup(h.Close)
	n.members()
	return h, l
}

type fakeRemote struct {
	net      *fakeNet
	self     string
	mu       sync.Mutex
	presence []string
}

func (r *fakeRemote) others() []string {
	r.net.mu.Lock()
	defer r.net.mu.Unlock()
	var out []string
	for name := range r.net.hubs {
		if name != r.self {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

func (r *fakeRemote) Send(node string, payload []byte) error {
	r.net.mu.Lock()
	h := r.net.hubs[node]
	r.net.sends[node]++
	lost := r.net.drop[node] > 0
	if lost {
		r.net.drop[node]--
	}
	r.net.mu.Unlock()
	if h == nil || node == r.self || lost {
		return context.Canceled // any error: not sent
	}
	buf := slices.Clone(payload)
	h.OnMessage(r.self, buf)
	clear(buf) // the cluster reuses its read buffer
	return nil
}

func (r *fakeRemote) AliveNodes() []string { return r.others() }

func (r *fakeRemote) nodesFor(has func(l *fakeLocal, name string) bool, names []string) []string {
	var out []string
	for _, node := range r.others() {
		r.net.mu.Lock()
		l := r.net.local[node]
		r.net.mu.Unlock()
		for _, name := range names {
			if has(l, name) {
				out = append(out, node)
				break
			}
		}
	}
	return out
}

func (r *fakeRemote) NodesForUsers(users []string) []string {
	return r.nodesFor(func(l *fakeLocal, u string) bool { return len(l.UserConnections(u)) > 0 }, users)
}

func (r *fakeRemote) NodesForRooms(rooms []string) []string {
	return r.nodesFor(func(l *fakeLocal, room string) bool { return l.RoomMembers(room).Connections > 0 }, rooms)
}

func (r *fakeRemote) Ask(_ context.Context, nodes []string, body []byte) (map[string][]byte, []string) {
	answers := map[string][]byte{}
	var missing []string
	for _, node := range nodes {
		r.net.mu.Lock()
		h, down, hold := r.net.hubs[node], r.net.down[node], r.net.hold[node]
		r.net.mu.Unlock()
		if hold != nil {
			r.net.held.Add(1)
			<-hold
			r.net.held.Add(-1)
		}
		if h == nil || down {
			missing = append(missing, node)
			continue
		}
		if out := h.OnRequest(r.self, slices.Clone(body)); out != nil {
			answers[node] = out
		} else {
			missing = append(missing, node)
		}
	}
	return answers, missing
}

func (r *fakeRemote) SetLocalUser(user string, present bool) { r.note("u", user, present) }
func (r *fakeRemote) SetLocalRoom(room string, present bool) { r.note("r", room, present) }

func (r *fakeRemote) note(kind, name string, present bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := "-"
	if present {
		s = "+"
	}
	r.presence = append(r.presence, kind+s+name)
}

func stampedTargets(st *loop.Stamped) loop.Targets {
	var t loop.Targets
	for i := range st.Keys {
		k := &st.Keys[i]
		switch k.Kind {
		case loop.KeyUser:
			t.Users = append(t.Users, k.Name)
		case loop.KeyRoom:
			t.Rooms = append(t.Rooms, k.Name)
		case loop.KeyAll:
			t.All = true
		}
	}
	t.Connections = st.Conns
	return t
}

func (l *fakeLocal) SubmitStamped(st *loop.Stamped, accepted int64) (Pending, error) {
	return l.Submit(st.Plain, stampedTargets(st), accepted)
}

func (l *fakeLocal) EnqueueStamped(st *loop.Stamped, accepted int64) error {
	return l.Enqueue(st.Plain, stampedTargets(st), accepted)
}

func (r *fakeRemote) FlushRoutes() {}

func (r *fakeRemote) Request(_ context.Context, node string, body []byte) ([]byte, error) {
	r.net.mu.Lock()
	h, down, hold := r.net.hubs[node], r.net.down[node], r.net.hold[node]
	r.net.mu.Unlock()
	if hold != nil {
		r.net.held.Add(1)
		<-hold
		r.net.held.Add(-1)
	}
	if h == nil || down || node == r.self {
		return nil, context.DeadlineExceeded
	}
	out := h.OnRequest(r.self, slices.Clone(body))
	if out == nil {
		return nil, context.DeadlineExceeded
	}
	return out, nil
}

// members tells every hub on the net who is alive (the cluster's OnMembers).
func (n *fakeNet) members() {
	n.mu.Lock()
	hubs := make(map[string]*Hub, len(n.hubs))
	for k, v := range n.hubs {
		hubs[k] = v
	}
	n.mu.Unlock()
	for name, h := range hubs {
		var others []string
		for o := range hubs {
			if o != name {
				others = append(others, o)
			}
		}
		h.OnMembers(others)
	}
}

type resumeCall struct {
	kind loop.KeyKind
	name string
}

func (l *fakeLocal) ResumeV2(kind loop.KeyKind, name, _ string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.resumed = append(l.resumed, resumeCall{kind, name})
}

func (l *fakeLocal) resumes() []resumeCall {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.resumed)
}
