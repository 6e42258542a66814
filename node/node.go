package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"longlink/auth"
	"longlink/cluster"
	"longlink/connhook"
	"longlink/hub"
	"longlink/loop"
	"longlink/push"
	"longlink/pusher"
	"longlink/upstream"
	"longlink/webhook"
)

// Config is everything one node needs: the packages' own configs, composed, plus what
// only the node knows. Zero values take the documented defaults (Defaults shows them);
// fields the node wires itself (callbacks, NodeID, Metrics, Logger of the parts) are
// set by New and need not be filled.
type Config struct {
	// NodeName names the node in the cluster and prefixes connection and message ids.
	// Default: hostname-<4 hex>.
	NodeName string
	// TokenSecret is the HS256 secret client tokens are signed with (>= 16 bytes).
	// Required.
	TokenSecret []byte
	// ClientAdvertise is the host:port (or URL) clients are told to use
	// (GET /v1/endpoint). Default: the first client address, with the gossip
	// advertise host if it has none.
	ClientAdvertise string
	// DrainTimeout bounds how long Shutdown waits for clients to close. Default 10s.
	DrainTimeout time.Duration

	// Loop is the client port: addresses, connection caps, timeouts. New sets its
	// NodeID, Authenticate, Endpoint, OnPresence, Metrics and Logger.
	Loop loop.Config
	// Push is the push API: API keys (required), body and batch limits. New sets
	// its NodeID, Hub, Metrics and Logger.
	Push push.Config
	// API is the API port's HTTP server.
	API APIConfig
	// Cluster is membership and forwarding. With neither Join nor GossipAddr the
	// node runs standalone and opens no cluster port; GossipAddr defaults to
	// ":7946" when Join is given, and a node that listens for peers beyond
	// loopback needs ClusterKey (cluster.KeyRequired). New sets its NodeName,
	// Meta, OnMessage, OnRequest, Metrics and Logger, and defaults MaxFrame from
	// Push.MaxBodyBytes and RequestTimeout from Hub.QueryTimeout.
	Cluster cluster.Config
	// Hub combines local delivery with the cluster: QueryTimeout. New sets the rest.
	Hub hub.Config
	// Upstream is the businesses client requests go to, and the limits of client
	// requests. New sets its NodeName, Metrics and Logger.
	Upstream upstream.Config
	// ConnectHook, with a URL, is asked about every connection before its 101
	// (node/connhook.go). Its Timeout must be shorter than Loop.HandshakeTimeout.
	// New sets its NodeName, Metrics and Logger.
	ConnectHook connhook.Config
	// Webhook is where events go (docs/api.md, "Webhooks"): URLs, events, secret,
	// queue and retry bounds. No URLs: no webhooks, and no presence work at all. New
	// sets its NodeName, Metrics and Logger and passes the sender as Hub.Events.
	Webhook webhook.Config
	// Pusher is the Pusher Channels apps this node serves (docs/pusher.md). No
	// apps: the node does not speak Pusher.
	Pusher PusherConfig

	// Demo, when non-nil, serves the demo page at /demo/ on the API port. Its
	// URLs are the node's bound addresses, filled in by Start.
	Demo *Demo

	// Metrics receives every metric of this node. Nil: a new set.
	Metrics *metrics.Set
	Logger  *slog.Logger
}

// APIConfig configures the API port's server.
type APIConfig struct {
	// Addr is the listen address. Default ":8081".
	Addr string
	// MaxConns caps the connections open on the API port; over it a new connection
	// gets a JSON 503 and is closed. Zero: APIConnBudget of the open-files limit, a
	// share of the descriptors the client cap leaves free. Negative: no cap.
	MaxConns int
	// IdleTimeout closes a keep-alive connection that sends no request for this
	// long. Default 60s.
	IdleTimeout time.Duration
	// ReadTimeout bounds the wait for a new connection's first byte and the reading
	// of each request once its first byte arrived. Default 30s.
	ReadTimeout time.Duration
	// Pprof serves Go's profiler at /debug/pprof/ (API key required).
	Pprof bool
}

// Defaults returns the configuration a zero Config stands for, as far as it is
// known before the node runs (connection caps that follow the open-files limit
// stay 0 = automatic): what flags show as their defaults.
func Defaults() Config {
	return Config{
		DrainTimeout: 10 * time.Second,
		Loop:         loop.Defaults(),
		Push:         push.Defaults(),
		API:          APIConfig{Addr: ":8081", IdleTimeout: 60 * time.Second, ReadTimeout: 30 * time.Second},
		Cluster:      cluster.Defaults(),
		Hub:          hub.Defaults(),
		Upstream:     upstream.Defaults(),
		ConnectHook:  connhook.Defaults(),
		Webhook:      webhook.Defaults(),
	}
}

// Demo configures the demo page (package web).
type Demo struct {
	// DevToken mints tokens for the page (development secrets only); nil makes the
	// page ask for a token.
	DevToken func(user string) (string, error)
	// Push lets the page send pushes: it posts them to this node's public
	// POST /v1/push over HTTP with the first API key, which the browser never sees.
	// Anyone who can load the page can then push: development only.
	Push bool
}

// Node is one running gateway.
type Node struct {
	cfg         Config
	log         *slog.Logger
	set         *metrics.Set
	verify      *auth.Verifier
	loop        *loop.Server
	cluster     *cluster.Cluster // nil for a standalone node (its methods allow that)
	api         *push.API
	hook        *connhook.Hook  // nil without a connect hook
	events      *webhook.Sender // nil: webhooks off
	http        *apiServer
	apiLn       net.Listener
	hub         *hub.Hub
	up          *upstream.Upstream
	acksLimited *metrics.Counter      // acks over a connection's ack rate (acks.go)
	px          *pusherNode           // nil: no Pusher apps
	pusherAPI   *pusher.HTTPAPI       // nil: no Pusher apps
	pusherHooks *pusher.WebhookSender // nil: no Pusher app has webhooks

	ready    atomic.Bool
	draining atomic.Bool
	stopOnce sync.Once
	stopErr  error
	done     chan struct{}
	bg       sync.WaitGroup
}

// New validates cfg and builds every part of the node, the cluster included,
// without binding anything.
func New(cfg Config) (*Node, error) {
	d := Defaults()
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.NodeName == "" {
		host, _ := os.Hostname()
		if host == "" {
			host = "longlink"
		}
		cfg.NodeName = host + "-" + randHex(2)
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = d.DrainTimeout
	}
	if cfg.Hub.QueryTimeout <= 0 {
		cfg.Hub.QueryTimeout = d.Hub.QueryTimeout
	}
	if len(cfg.Cluster.Join) > 0 && cfg.Cluster.GossipAddr == "" {
		cfg.Cluster.GossipAddr = ":7946"
	}
	if len(cfg.Loop.Addrs) == 0 {
		cfg.Loop.Addrs = d.Loop.Addrs
	}
	cfg.API.defaults(d.API)
	v, err := auth.NewVerifier(cfg.TokenSecret)
	if err != nil {
		return nil, fmt.Errorf("node: token secret: %w", err)
	}
	n := &Node{cfg: cfg, log: cfg.Logger, verify: v, done: make(chan struct{})}
	n.set = cfg.Metrics
	if n.set == nil {
		n.set = metrics.NewSet()
	}
	lc := cfg.Loop
	lc.NodeID, lc.Authenticate, lc.Endpoint = cfg.NodeName, n.authenticate, n.endpoint
	// The loops report presence to the hub, which needs the loops: the closure
	// reads n.hub, set below, before Start lets any presence happen.
	lc.OnPresence = func(k loop.PresenceKind, name string, present bool) { n.hub.OnPresence(k, name, present) }
	lc.OnUpgrade = func(u *loop.Upgrade) { n.hub.OnUpgrade(u) }
	lc.OnMessage = n.onClientMessage
	wc := cfg.Webhook
	wc.NodeName, wc.Metrics, wc.Logger = cfg.NodeName, n.set, cfg.Logger
	if n.events, err = webhook.New(wc); err != nil {
		return nil, err
	}
	if n.px, err = newPusherNode(n, cfg.Pusher); err != nil {
		return nil, err
	}
	if n.px != nil {
		// The apps' webhooks share the --webhook-* delivery bounds (URLs and secrets
		// are each app's own).
		d := cfg.Webhook
		d.Metrics, d.Logger = n.set, cfg.Logger
		if n.pusherHooks, err = pusher.NewWebhookSender(pusher.WebhookConfig{Apps: cfg.Pusher.Apps, Delivery: d}); err != nil {
			return nil, err
		}
	}
	switch {
	case n.events != nil && n.px != nil:
		lc.OnOpen = func(c *loop.Conn) { n.px.onOpen(c); n.hub.OnConnOpen(c) }
		lc.OnClose = func(c *loop.Conn, code uint16, reason string) { n.px.onClose(c); n.hub.OnConnClose(c, code, reason) }
	case n.events != nil:
		lc.OnOpen = func(c *loop.Conn) { n.hub.OnConnOpen(c) }
		lc.OnClose = func(c *loop.Conn, code uint16, reason string) { n.hub.OnConnClose(c, code, reason) }
	case n.px != nil:
		lc.OnOpen = n.px.onOpen
		lc.OnClose = func(c *loop.Conn, _ uint16, _ string) { n.px.onClose(c) }
	}
	if n.px != nil {
		lc.PusherApp, lc.OnPusherMessage = n.px.appOfKey, n.px.onMessage
		if lc.PusherActivityTimeout, err = activityTimeout(cfg.Pusher.Apps); err != nil {
			return nil, err
		}
	}
	lc.Metrics, lc.Logger = n.set, cfg.Logger
	cfg.ConnectHook.Metrics, cfg.ConnectHook.Logger = n.set, cfg.Logger
	if n.hook, err = newConnectHook(&cfg); err != nil {
		return nil, err
	}
	if n.hook != nil {
		lc.Admit = n.admit
	}
	if n.loop, err = loop.New(lc); err != nil {
		return nil, err
	}
	hc := cfg.Hub
	hc.NodeName, hc.Local, hc.Draining, hc.Metrics, hc.Logger = cfg.NodeName, hub.LoopLocal(n.loop), n.draining.Load, n.set, cfg.Logger
	if n.events != nil {
		hc.Events = n.events
	}
	if n.px != nil {
		hc.PusherTerminate = n.px.terminate
		hc.Pusher = &hub.PusherHooks{Member: n.px.onMember, Webhook: n.px.onWebhook}
	}
	if n.Clustered() {
		cc := cfg.Cluster
		cc.NodeName, cc.Meta, cc.Logger, cc.Metrics = cfg.NodeName, n.meta, cfg.Logger, n.set
		cc.OnMessage = func(from string, p []byte) { n.hub.OnMessage(from, p) }
		cc.OnRequest = func(from string, b []byte) []byte { return n.hub.OnRequest(from, b) }
		cc.OnMembers = func(alive []string) { n.hub.OnMembers(alive) }
		cc.OnNodeLeft = n.onNodeLeft
		if cc.MaxFrame == 0 {
			// A forwarded push is the API body plus a small header.
			cc.MaxFrame = max(d.Cluster.MaxFrame, int(min(max(cfg.Push.MaxBodyBytes, d.Push.MaxBodyBytes), 1<<29))+64<<10)
		}
		if cc.RequestTimeout == 0 {
			// Answering a query may wait for the loops up to QueryTimeout.
			cc.RequestTimeout = cfg.Hub.QueryTimeout
		}
		if n.cluster, err = cluster.New(cc); err != nil {
			return nil, err
		}
		hc.Remote = n.cluster
	}
	if n.hub, err = hub.New(hc); err != nil {
		return nil, err
	}
	uc := cfg.Upstream
	uc.NodeName, uc.Metrics, uc.Logger = cfg.NodeName, n.set, cfg.Logger
	if n.up, err = upstream.New(uc); err != nil {
		return nil, err
	}
	n.acksLimited = n.set.NewCounter(`longlink_client_rate_limited_total{type="ack"}`)
	pc := cfg.Push
	pc.NodeID, pc.Hub, pc.Metrics, pc.Logger = cfg.NodeName, n.hub, n.set, cfg.Logger
	if n.api, err = push.New(pc); err != nil {
		return nil, err
	}
	if n.px != nil {
		if n.pusherAPI, err = pusher.NewHTTPAPI(pusher.HTTPAPIConfig{Apps: n.px.appByID, Backend: pusherBackend{n.px}, Metrics: n.set}); err != nil {
			return nil, err
		}
	}
	return n, nil
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// authenticate runs on an event loop for every handshake.
func (n *Node) authenticate(token string) (loop.Identity, *loop.AuthError) {
	c, err := n.verify.Verify(token)
	if err != nil {
		return loop.Identity{}, &loop.AuthError{Status: 401, Reason: auth.Reason(err)}
	}
	// The rooms a client may subscribe itself to: the subscribe claim's, and its
	// rooms claim's again after it left one (node/subscribe.go).
	sub := c.Subscribe
	switch {
	case len(sub) == 0:
		sub = c.Rooms
	case len(c.Rooms) > 0:
		sub = append(sub[:len(sub):len(sub)], c.Rooms...)
	}
	return loop.Identity{User: c.User, Rooms: c.Rooms, Expires: c.Expires, Subscribe: sub}, nil
}

// Start binds the client port, joins the cluster and serves the API.
func (n *Node) Start() error {
	if err := n.loop.Start(); err != nil {
		if errors.Is(err, syscall.EADDRINUSE) || errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EADDRNOTAVAIL) {
			return &ListenError{Field: "ClientAddrs", Addr: strings.Join(n.cfg.Loop.Addrs, ","), Err: err}
		}
		return err
	}
	ln, err := net.Listen("tcp", n.cfg.API.Addr)
	if err != nil {
		n.loop.Stop(context.Background())
		return &ListenError{Field: "APIAddr", Addr: n.cfg.API.Addr, Err: err}
	}
	n.apiLn = ln
	if !n.Clustered() {
		n.startAPI(ln)
		return nil
	}
	if err := n.cluster.Start(); err != nil {
		ln.Close()
		n.loop.Stop(context.Background())
		n.cluster.Kill()
		if le, ok := errors.AsType[*cluster.ListenError](err); ok {
			return &ListenError{Field: le.Field, Addr: le.Addr, Err: le.Err}
		}
		return fmt.Errorf("cannot start cluster: %w", err)
	}
	n.bg.Add(1)
	go func() {
		defer n.bg.Done()
		n.metaLoop()
	}()
	n.startAPI(ln)
	return nil
}

// ListenError is a failure to bind one of the node's addresses. Field names the
// Config field to change: ClientAddrs, APIAddr, GossipAddr or ForwardAddr.
type ListenError struct {
	Field string
	Addr  string
	Err   error
}

func (e *ListenError) Error() string {
	return fmt.Sprintf("cannot listen on %s %q: %v", e.Field, e.Addr, e.Err)
}

func (e *ListenError) Unwrap() error { return e.Err }

// Clustered reports whether the node was asked to join or accept peers.
func (n *Node) Clustered() bool { return n.cfg.Cluster.GossipAddr != "" }

func (n *Node) startAPI(ln net.Listener) {
	n.http = newAPIServer(n)
	n.bg.Add(1)
	go func() {
		defer n.bg.Done()
		if err := n.http.serve(ln); err != nil {
			n.log.Error("API server stopped", "err", err)
		}
	}()
	n.ready.Store(true)
}

// metaLoop re-gossips the connection count so /v1/endpoint picks the least loaded.
func (n *Node) metaLoop() {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	last := -1
	for {
		select {
		case <-n.done:
			return
		case <-t.C:
			if c := n.loop.Connections(); c != last {
				last = c
				n.Cluster().UpdateMeta()
			}
		}
	}
}

func (n *Node) meta() cluster.NodeMeta {
	return cluster.NodeMeta{
		ClientAddr:  n.clientAdvertise(),
		APIAddr:     n.APIAddr(),
		Connections: n.loop.Connections(),
		Draining:    n.draining.Load(),
	}
}

// Name is the node's cluster name.
func (n *Node) Name() string { return n.cfg.NodeName }

// ClientAddrs are the bound client addresses.
func (n *Node) ClientAddrs() []string { return n.loop.Addrs() }

// APIAddr is the bound API address.
func (n *Node) APIAddr() string {
	if n.apiLn == nil {
		return n.cfg.API.Addr
	}
	return n.apiLn.Addr().String()
}

// GossipAddr is the bound gossip address.
func (n *Node) GossipAddr() string { return n.Cluster().GossipAddr() }

// Loop exposes the client server (tests, stats).
func (n *Node) Loop() *loop.Server { return n.loop }

// Cluster exposes membership (nil for a standalone node).
func (n *Node) Cluster() *cluster.Cluster { return n.cluster }

func (n *Node) clientAdvertise() string {
	if n.cfg.ClientAdvertise != "" {
		return n.cfg.ClientAdvertise
	}
	addrs := n.loop.Addrs()
	if len(addrs) == 0 {
		return ""
	}
	host, port, err := net.SplitHostPort(addrs[0])
	if err != nil {
		return addrs[0]
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
		if n.Cluster() != nil {
			if h, _, err := net.SplitHostPort(n.Cluster().GossipAddr()); err == nil && h != "" {
				host = h
			}
		}
	}
	return net.JoinHostPort(host, port)
}

// Shutdown drains and stops the node: not ready, leave the cluster, close clients
// with 1001 (waiting up to DrainTimeout), stop the loops, then the API. It returns
// the number of clients that had to be dropped because the drain timed out.
func (n *Node) Shutdown(ctx context.Context) (dropped int, err error) {
	n.stopOnce.Do(func() {
		n.ready.Store(false)
		n.draining.Store(true)
		if n.Cluster() != nil {
			n.Cluster().UpdateMeta()
			if err := n.Cluster().Leave(2 * time.Second); err != nil {
				n.log.Warn("leaving the cluster", "err", err)
			}
		}
		dctx, cancel := context.WithTimeout(ctx, n.cfg.DrainTimeout)
		dropped = n.loop.Drain(dctx)
		cancel()
		sctx, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
		n.stopErr = n.loop.Stop(sctx)
		cancel2()
		close(n.done)
		if n.http != nil {
			hctx, cancel3 := context.WithTimeout(context.Background(), 5*time.Second)
			n.http.shutdown(hctx)
			cancel3()
		}
		n.hub.Close()
		n.up.Close()
		n.hook.Close()
		n.bg.Wait()
		// Last: the drain's connection.closed events are queued by now.
		n.events.Close()
		n.pusherHooks.Close()
	})
	return dropped, n.stopErr
}

// Kill stops the node without draining or leaving: a crash, for cluster tests.
func (n *Node) Kill() {
	n.stopOnce.Do(func() {
		n.ready.Store(false)
		if n.Cluster() != nil {
			n.Cluster().Kill()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		n.loop.Stop(ctx)
		cancel()
		close(n.done)
		if n.http != nil {
			n.http.kill()
		}
		n.hub.Close()
		n.up.Close()
		n.hook.Close()
		n.bg.Wait()
		n.events.Shutdown(0) // a crash sends nothing more
		n.pusherHooks.Shutdown(0)
	})
}

// onNodeLeft is the cluster's OnNodeLeft: the hub settles a peer's connections and
// users, reporting them closed only when it died (one that left closed them itself).
func (n *Node) onNodeLeft(name string) {
	dead := true
	for _, m := range n.cluster.Members() {
		if m.Name == name {
			dead = m.State != "left"
		}
	}
	n.hub.OnNodeLeft(name, dead)
}
