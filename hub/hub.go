package hub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"longlink/loop"
	"longlink/push"
	"longlink/stream"
	"longlink/webhook"
)

// Local is what the hub needs of this node's event loops (*loop.Server, through
// LoopLocal). Every method is safe for concurrent use and does not block on a
// client socket.
type Local interface {
	Submit(frame []byte, t loop.Targets, accepted int64) (Pending, error)
	Enqueue(frame []byte, t loop.Targets, accepted int64) error
	SubmitStamped(st *loop.Stamped, accepted int64) (Pending, error)
	EnqueueStamped(st *loop.Stamped, accepted int64) error
	ResumeV2(kind loop.KeyKind, name, reason string)
	UserConnections(user string) []loop.ConnInfo
	LocalUsers() []string
	RoomMembers(room string) loop.RoomInfo
	Offline(users []string) []string
	KickConnection(ctx context.Context, id, reason string) (int, error)
	KickUser(ctx context.Context, user, reason string) (int, error)
	JoinRoom(ctx context.Context, room string, users []string) (int, []string, error)
	LeaveRoom(ctx context.Context, room string, users []string) (int, []string, error)
	Connections() int
	Users() int
	Rooms() int
}

// Pending is a local delivery queued by Local.Submit (*loop.Pending).
type Pending interface {
	Wait(ctx context.Context) (int, error)
	// WaitFor is Wait with a timeout, without a context (the per-push path).
	WaitFor(timeout time.Duration) (int, error)
	Offline() []string
	// Missing is, for SubmitStamped, the targeted connection ids not open here.
	Missing() []string
}

// LoopLocal adapts a *loop.Server to Local (Submit returns the Pending interface).
func LoopLocal(s *loop.Server) Local { return loopLocal{s} }

type loopLocal struct{ *loop.Server }

func (l loopLocal) Submit(frame []byte, t loop.Targets, accepted int64) (Pending, error) {
	p, err := l.Server.Submit(frame, t, accepted)
	if err != nil {
		return nil, err
	}
	return p, nil
}

func (l loopLocal) SubmitStamped(st *loop.Stamped, accepted int64) (Pending, error) {
	p, err := l.Server.SubmitStamped(st, accepted)
	if err != nil {
		return nil, err
	}
	return p, nil
}

// Remote is what the hub needs of the cluster: *cluster.Cluster satisfies it, and
// a nil *cluster.Cluster (a standalone node) is a valid Remote that reaches no one.
// Every method is safe for concurrent use; only Ask blocks (bounded by its ctx and
// the cluster's request timeout).
type Remote interface {
	Send(node string, payload []byte) error
	AliveNodes() []string
	NodesForUsers(users []string) []string
	NodesForRooms(rooms []string) []string
	Ask(ctx context.Context, nodes []string, body []byte) (answers map[string][]byte, missing []string)
	Request(ctx context.Context, node string, body []byte) ([]byte, error)
	// FlushRoutes sends the pending routing delta to every peer now.
	FlushRoutes()
	SetLocalUser(user string, present bool)
	SetLocalRoom(room string, present bool)
}

// Config configures a Hub. Zero values take the documented defaults.
type Config struct {
	// NodeName is this node's cluster name: connection ids start with it, and the
	// per-node figures of Stats and Room carry it. Required.
	NodeName string
	// Local is this node's event loops. Required.
	Local Local
	// Remote is the cluster. Nil: none (a standalone node); a nil *cluster.Cluster
	// works too, its methods answer as a cluster of one.
	Remote Remote
	// QueryTimeout bounds a query to peers and the local part of a kick or room
	// change. Zero means 2s.
	QueryTimeout time.Duration
	// Draining reports whether the node is shutting down: Deliver then refuses
	// with 503 and Stats says so. Nil means never.
	Draining func() bool
	// History bounds the streams' history on this node (stream.Defaults()).
	History stream.Config
	// Replicas is how many nodes store each stream (owner included). Zero means 2.
	Replicas int
	// StoreTimeout bounds how long Deliver keeps trying to store a message on its
	// streams' owners (they may be failing over). Zero means 5s.
	StoreTimeout time.Duration
	// Settle is how long after a membership change the node waits before it extends
	// a stream it may have just taken over (see streams.go). Zero means 500ms.
	Settle time.Duration
	// Events receives the webhook events the hub decides (message.expired, and
	// presence). Nil: none are made. When it has a Wants(type) method
	// (*webhook.Sender), the presence machinery runs only for the types it wants.
	Events webhook.Sink
	// MaxReceipts bounds the receipt targets this node keeps (receipts.go: one per
	// user or connection a receipted push names); the oldest receipts go first
	// beyond it. Zero means 262144.
	MaxReceipts int
	// PresenceGrace is how long a user must have no connection anywhere before
	// user.offline is sent (a reconnect within it is no offline). Zero means 3s.
	PresenceGrace time.Duration
	// PusherTerminate closes this node's Pusher connections of app signed in as
	// user and returns how many (PusherTerminate asks every node). It must not
	// block for long. Nil: none.
	PusherTerminate func(app, user string) int
	// Pusher turns on the cluster-wide Pusher channel state (pusher_state.go) and
	// gives its callbacks. Nil: off; the Pusher* methods are no-ops or answer empty.
	Pusher *PusherHooks
	// Metrics receives the hub's metrics. Nil: a new private set.
	Metrics *metrics.Set
	// Logger receives warnings about malformed peer messages. Nil: slog.Default().
	Logger *slog.Logger
}

// Defaults returns the values zero fields of a Config stand for.
func Defaults() Config {
	return Config{QueryTimeout: defaultQueryTimeout, History: stream.Defaults(), Replicas: defaultReplicas, StoreTimeout: defaultStoreTimeout,
		MaxReceipts: defaultMaxReceipts, PresenceGrace: defaultPresenceGrace}
}

const (
	defaultQueryTimeout = 2 * time.Second
	defaultStoreTimeout = 5 * time.Second
	// deliverTimeout bounds how long Deliver waits for the local writes.
	deliverTimeout = 10 * time.Second
)

// Hub implements push.Hub by combining local delivery (Local) with the cluster
// (Remote); its OnMessage, OnRequest and OnPresence are the cluster's and loop's
// callbacks. See doc.go for who calls what on which goroutine.
type Hub struct {
	cfg          Config
	local        Local
	remote       Remote // set in New, never changed
	draining     func() bool
	log          *slog.Logger
	forwardDrops *metrics.Counter
	st           *streams
	rc           *receipts
	pr           *presence    // nil: no connection or user events
	ps           *pusherState // nil: Config.Pusher is nil
	m            hubMetrics
}

var _ push.Hub = (*Hub)(nil)

// New validates cfg and returns a Hub.
func New(cfg Config) (*Hub, error) {
	if cfg.NodeName == "" {
		return nil, errors.New("hub: Config.NodeName is required")
	}
	if cfg.Local == nil {
		return nil, errors.New("hub: Config.Local is required")
	}
	if cfg.QueryTimeout < 0 {
		return nil, fmt.Errorf("hub: Config.QueryTimeout %v must not be negative", cfg.QueryTimeout)
	}
	if cfg.QueryTimeout == 0 {
		cfg.QueryTimeout = defaultQueryTimeout
	}
	if cfg.Replicas < 0 {
		return nil, fmt.Errorf("hub: Config.Replicas %d must not be negative", cfg.Replicas)
	}
	if cfg.Replicas == 0 {
		cfg.Replicas = defaultReplicas
	}
	if cfg.StoreTimeout <= 0 {
		cfg.StoreTimeout = defaultStoreTimeout
	}
	if cfg.Settle <= 0 {
		cfg.Settle = defaultSettle
	}
	if cfg.PresenceGrace < 0 {
		return nil, fmt.Errorf("hub: Config.PresenceGrace %v must not be negative", cfg.PresenceGrace)
	}
	if cfg.PresenceGrace == 0 {
		cfg.PresenceGrace = defaultPresenceGrace
	}
	if cfg.Pusher != nil && cfg.Pusher.Grace < 0 {
		return nil, fmt.Errorf("hub: Config.Pusher.Grace %v must not be negative", cfg.Pusher.Grace)
	}
	if cfg.Draining == nil {
		cfg.Draining = func() bool { return false }
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.NewSet()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	h := &Hub{
		cfg:          cfg,
		local:        cfg.Local,
		draining:     cfg.Draining,
		log:          cfg.Logger,
		forwardDrops: cfg.Metrics.NewCounter(`longlink_push_errors_total{reason="forward_overloaded"}`),
	}
	if h.remote = cfg.Remote; h.remote == nil {
		h.remote = standalone{}
	}
	h.m = newHubMetrics(cfg.Metrics)
	h.rc = newReceipts(h, cfg.MaxReceipts)
	newStreams(h, cfg) // sets h.st before its goroutines start
	h.m.register(cfg.Metrics, h.st.store, h.rc)
	h.pr = newPresence(h, cfg)
	h.ps = newPusherState(h, cfg)
	return h, nil
}

// Close stops the hub's goroutines; appends still queued are refused.
func (h *Hub) Close() {
	h.ps.close()
	h.pr.close()
	h.st.close()
}

// OnMembers is the cluster's membership callback: alive are the live peers.
func (h *Hub) OnMembers(alive []string) { h.st.onMembers(alive) }

// standalone is the Remote of a node without a cluster.
type standalone struct{}

func (standalone) Send(string, []byte) error       { return errors.New("hub: no cluster") }
func (standalone) AliveNodes() []string            { return nil }
func (standalone) NodesForUsers([]string) []string { return nil }
func (standalone) NodesForRooms([]string) []string { return nil }
func (standalone) SetLocalUser(string, bool)       {}
func (standalone) SetLocalRoom(string, bool)       {}
func (standalone) FlushRoutes()                    {}
func (standalone) Request(context.Context, string, []byte) ([]byte, error) {
	return nil, errors.New("hub: no cluster")
}
func (standalone) Ask(_ context.Context, nodes []string, _ []byte) (map[string][]byte, []string) {
	return map[string][]byte{}, slices.Clone(nodes)
}

// statusError carries an HTTP status to the push API.
type statusError struct {
	status int
	msg    string
}

func (e *statusError) Error() string   { return e.msg }
func (e *statusError) HTTPStatus() int { return e.status }

var errDraining = &statusError{503, "node is shutting down; retry on another node"}

func hubErr(err error) error {
	switch {
	case errors.Is(err, loop.ErrOverloaded):
		return &statusError{503, "gateway overloaded: delivery queue full, retry later"}
	case errors.Is(err, loop.ErrStopped):
		return errDraining
	case errors.Is(err, context.DeadlineExceeded):
		return &statusError{504, "delivery did not finish in time"}
	}
	return err
}

// OnPresence is loop's OnPresence: it keeps the cluster's routing table current
// (the cluster exists before the loops start, so nothing needs announcing later).
func (h *Hub) OnPresence(kind loop.PresenceKind, name string, present bool) {
	if kind == loop.PresenceUser {
		h.remote.SetLocalUser(name, present)
		h.pr.onUser(name, present)
		if present {
			h.st.forgetSeen("user:" + name)
		}
	} else {
		h.remote.SetLocalRoom(name, present)
		if present {
			h.st.forgetSeen("room:" + name)
		}
	}
}

func toTargets(t push.Target) loop.Targets {
	return loop.Targets{All: t.All, Users: t.Users, Connections: t.Connections, Rooms: t.Rooms}
}

// Deliver appends m to its streams on their owners, which store, replicate and fan it
// out (streams.go), and sends its connection-id targets directly. It returns once
// every stream has it stored, or fails (503) when some could not be within
// StoreTimeout.
func (h *Hub) Deliver(m *push.Message) (push.Result, error) {
	var res push.Result
	if h.draining() {
		return res, errDraining
	}
	return h.st.deliver(m)
}

// peersFor returns the peers a message must be forwarded to: all for broadcasts, the
// nodes named by connection ids, and the nodes the routing table says (or cannot rule
// out) hold the users and rooms.
func (h *Hub) peersFor(r Remote, t push.Target) []string {
	if t.All {
		return r.AliveNodes()
	}
	var peers []string
	if len(t.Users) > 0 {
		peers = append(peers, r.NodesForUsers(t.Users)...)
	}
	if len(t.Rooms) > 0 {
		peers = append(peers, r.NodesForRooms(t.Rooms)...)
	}
	if len(t.Connections) > 0 {
		alive := r.AliveNodes()
		for _, id := range t.Connections {
			if node := nodeOfConn(id); node != "" && node != h.cfg.NodeName && slices.Contains(alive, node) {
				peers = append(peers, node)
			}
		}
	}
	slices.Sort(peers)
	return slices.Compact(peers)
}

// nodeOfConn returns the node prefix of a connection id ("<node>.<incarnation>-<seq>").
func nodeOfConn(id string) string {
	i := strings.LastIndexByte(id, '.')
	if i <= 0 {
		return ""
	}
	return id[:i]
}

// OnMessage is the cluster's OnMessage: a stream owner's fan-out copy (or an origin's
// copy for connection ids). It runs on the peer's link reader, so one peer's copies
// are handled in order; payload is valid only during the call.
func (h *Hub) OnMessage(from string, payload []byte) {
	if len(payload) == 0 {
		return
	}
	switch payload[0] {
	case wireStamped:
		h.st.onStamped(from, payload[1:])
	case wireDelivered:
		h.rc.onDelivered(from, payload[1:])
	case wireAck:
		h.rc.onAcks(payload[1:])
	case wireAckCopy:
		h.rc.onAckCopy(payload[1:])
	case wireReceipt:
		h.rc.onReceiptNote(payload[1:])
	}
	// A newer peer's kind is skipped.
}

// emit hands an event to the webhook sink, if any, stamped with this node.
func (h *Hub) emit(e webhook.Event) {
	if h.cfg.Events == nil {
		return
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	if e.Node == "" {
		e.Node = h.cfg.NodeName
	}
	h.cfg.Events.Emit(e)
}
