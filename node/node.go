// Package node composes one gateway node: the client event loops (loop), the HTTP API
// (push), membership and forwarding (cluster), the delivery logic that combines
// them (hub), metrics and the demo page. main.go
// builds a Config from flags; integration tests start Nodes directly.
//
// Start order: loops (so the client port is bound), cluster (so presence can be
// announced), API. Shutdown is the reverse with a drain: readiness goes false, the
// node leaves the cluster (peers stop routing to it), clients get close 1001 and the
// API closes last so pushes accepted before the drain still finish.
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
	"longlink/hub"
	"longlink/loop"
	"longlink/push"
)

// Config is everything one node needs. Zero values take the documented defaults.
type Config struct {
	// NodeName names the node in the cluster and prefixes connection ids. Default:
	// hostname-<4 hex>.
	NodeName string
	// ClientAddrs are the WebSocket listen addresses. Default ":8080".
	ClientAddrs []string
	// ClientAdvertise is the host:port clients are told to use (GET /v1/endpoint).
	// Default: the first client address, with the gossip advertise host if it has none.
	ClientAdvertise string
	// APIAddr is the internal API listen address. Default ":8081".
	APIAddr string
	// APIMaxConns caps the connections open on the API port; over it a new connection
	// gets a JSON 503 and is closed. Zero: APIConnBudget of the open-files limit, a
	// share of the descriptors MaxConns leaves free. Negative: no cap.
	APIMaxConns int
	// APIIdleTimeout closes a keep-alive API connection that sends no request for
	// this long. Zero: 60s.
	APIIdleTimeout time.Duration
	// APIReadTimeout bounds the wait for a new connection's first byte and the
	// reading of each request (headers and body) once its first byte arrived, so
	// silent and slow connections go. Zero: 30s.
	APIReadTimeout time.Duration

	TokenSecret []byte   // HS256 secret for client tokens (>= 16 bytes). Required.
	APIKeys     []string // bearer keys for the API. Required.

	Loops            int
	MaxConns         int
	MaxConnsPerUser  int
	MaxMessage       int
	MaxOutbound      int
	MaxPendingBytes  int64 // all clients' unfinished messages together; see loop.Config
	MaxBodyBytes     int64
	AllowedOrigins   []string
	HandshakeTimeout time.Duration
	PingInterval     time.Duration
	IdleTimeout      time.Duration
	// DrainTimeout bounds how long Shutdown waits for clients to close. Default 10s.
	DrainTimeout time.Duration
	Echo         bool

	// Cluster. With neither Join nor GossipAddr the node runs standalone and opens
	// no cluster port. GossipAddr defaults to ":7946" when Join is given; a node
	// that listens for peers beyond loopback needs ClusterKey (cluster.KeyRequired).
	Join            []string
	GossipAddr      string
	GossipAdvertise string
	ForwardAddr     string
	ClusterName     string
	ClusterKey      string
	// ClusterMaxRoutes bounds one peer's route table (cluster.Config.MaxPeerRoutes).
	ClusterMaxRoutes int
	// Probe and SyncInterval tune failure detection and full-state sync (tests).
	Probe        time.Duration
	SyncInterval time.Duration
	// QueryTimeout bounds cluster-wide presence queries. Default 2s.
	QueryTimeout time.Duration

	// Pprof serves Go's profiler at /debug/pprof/ on the API port (API key required).
	Pprof bool

	// Demo, when non-nil, serves the demo page at /demo/ on the API port. Its
	// URLs are the node's bound addresses, filled in by Start.
	Demo *Demo

	// Metrics receives every metric of this node. Nil: a new set, registered globally
	// so /metrics of this process shows it.
	Metrics *metrics.Set
	Logger  *slog.Logger
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
	cfg    Config
	log    *slog.Logger
	set    *metrics.Set
	verify *auth.Verifier
	loop   *loop.Server
	// cluster is set once in Start, after the loops run: loops read it (presence,
	// endpoint) concurrently, hence the atomic pointer.
	clusterP atomic.Pointer[cluster.Cluster]
	api      *push.API
	http     *apiServer
	apiLn    net.Listener
	hub      *hub.Hub

	ready    atomic.Bool
	draining atomic.Bool
	stopOnce sync.Once
	stopErr  error
	done     chan struct{}
	bg       sync.WaitGroup
}

// New validates cfg and builds the node without binding anything.
func New(cfg Config) (*Node, error) {
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
	if len(cfg.ClientAddrs) == 0 {
		cfg.ClientAddrs = []string{":8080"}
	}
	if cfg.APIAddr == "" {
		cfg.APIAddr = ":8081"
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = 10 * time.Second
	}
	if cfg.QueryTimeout <= 0 {
		cfg.QueryTimeout = 2 * time.Second
	}
	if len(cfg.Join) > 0 && cfg.GossipAddr == "" {
		cfg.GossipAddr = ":7946"
	}
	cfg.apiDefaults()
	v, err := auth.NewVerifier(cfg.TokenSecret)
	if err != nil {
		return nil, fmt.Errorf("node: token secret: %w", err)
	}
	n := &Node{cfg: cfg, log: cfg.Logger, verify: v, done: make(chan struct{})}
	n.set = cfg.Metrics
	if n.set == nil {
		n.set = metrics.NewSet()
	}
	// The loops report presence to the hub, which needs the loops: the closure
	// reads n.hub, set below, before Start lets any presence happen.
	n.loop, err = loop.New(loop.Config{
		Addrs:            cfg.ClientAddrs,
		Loops:            cfg.Loops,
		NodeID:           cfg.NodeName,
		Authenticate:     n.authenticate,
		AllowedOrigins:   cfg.AllowedOrigins,
		Endpoint:         n.endpoint,
		MaxConns:         cfg.MaxConns,
		MaxConnsPerUser:  cfg.MaxConnsPerUser,
		MaxMessage:       cfg.MaxMessage,
		MaxOutbound:      cfg.MaxOutbound,
		MaxPendingBytes:  cfg.MaxPendingBytes,
		HandshakeTimeout: cfg.HandshakeTimeout,
		PingInterval:     cfg.PingInterval,
		IdleTimeout:      cfg.IdleTimeout,
		Echo:             cfg.Echo,
		OnPresence:       func(k loop.PresenceKind, name string, present bool) { n.hub.OnPresence(k, name, present) },
		Metrics:          n.set,
		Logger:           cfg.Logger,
	})
	if err != nil {
		return nil, err
	}
	n.hub, err = hub.New(hub.Config{
		NodeName:     cfg.NodeName,
		Local:        hub.LoopLocal(n.loop),
		QueryTimeout: cfg.QueryTimeout,
		Draining:     n.draining.Load,
		Metrics:      n.set,
		Logger:       cfg.Logger,
	})
	if err != nil {
		return nil, err
	}
	n.api, err = push.New(push.Config{
		NodeID:       cfg.NodeName,
		APIKeys:      cfg.APIKeys,
		MaxBodyBytes: cfg.MaxBodyBytes,
		Hub:          n.hub,
		Metrics:      n.set,
		Logger:       cfg.Logger,
	})
	if err != nil {
		return nil, err
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
	return loop.Identity{User: c.User, Rooms: c.Rooms, Expires: c.Expires}, nil
}

// Start binds the client port, joins the cluster and serves the API.
func (n *Node) Start() error {
	if err := n.loop.Start(); err != nil {
		if errors.Is(err, syscall.EADDRINUSE) || errors.Is(err, syscall.EACCES) || errors.Is(err, syscall.EADDRNOTAVAIL) {
			return &ListenError{Field: "ClientAddrs", Addr: strings.Join(n.cfg.ClientAddrs, ","), Err: err}
		}
		return err
	}
	ln, err := net.Listen("tcp", n.cfg.APIAddr)
	if err != nil {
		n.loop.Stop(context.Background())
		return &ListenError{Field: "APIAddr", Addr: n.cfg.APIAddr, Err: err}
	}
	n.apiLn = ln
	if !n.Clustered() {
		n.startAPI(ln)
		return nil
	}
	cl, err := cluster.New(cluster.Config{
		NodeName:        n.cfg.NodeName,
		GossipAddr:      n.cfg.GossipAddr,
		GossipAdvertise: n.cfg.GossipAdvertise,
		ForwardAddr:     n.cfg.ForwardAddr,
		Join:            n.cfg.Join,
		ClusterName:     n.cfg.ClusterName,
		ClusterKey:      n.cfg.ClusterKey,
		MaxPeerRoutes:   n.cfg.ClusterMaxRoutes,
		// A forwarded push is the API body plus a small header.
		MaxFrame:  max(8<<20, int(min(n.cfg.MaxBodyBytes, 1<<29))+64<<10),
		Meta:      n.meta,
		OnMessage: n.hub.OnMessage,
		OnRequest: n.hub.OnRequest,
		// Answering a query may wait for the loops up to QueryTimeout.
		RequestTimeout: n.cfg.QueryTimeout,
		Probe:          n.cfg.Probe,
		SyncInterval:   n.cfg.SyncInterval,
		Logger:         n.log,
		Metrics:        n.set,
	})
	if err != nil {
		ln.Close()
		n.loop.Stop(context.Background())
		if le, ok := errors.AsType[*cluster.ListenError](err); ok {
			return &ListenError{Field: le.Field, Addr: le.Addr, Err: le.Err}
		}
		return fmt.Errorf("cannot start cluster: %w", err)
	}
	n.clusterP.Store(cl)
	n.hub.SetRemote(cl)
	// Clients may connect between the loops starting and the cluster existing; their
	// presence was not announced, so announce what is here now. A user who leaves in
	// between may be announced present a moment too long: peers then forward to this
	// node for nothing, which is the safe side (send rather than drop).
	for _, u := range n.loop.LocalUsers() {
		n.Cluster().SetLocalUser(u, true)
	}
	for _, r := range n.loop.LocalRooms() {
		n.Cluster().SetLocalRoom(r, true)
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
func (n *Node) Clustered() bool { return n.cfg.GossipAddr != "" }

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
		return n.cfg.APIAddr
	}
	return n.apiLn.Addr().String()
}

// GossipAddr is the bound gossip address.
func (n *Node) GossipAddr() string { return n.Cluster().GossipAddr() }

// Loop exposes the client server (tests, stats).
func (n *Node) Loop() *loop.Server { return n.loop }

// Cluster exposes membership (nil before Start).
func (n *Node) Cluster() *cluster.Cluster { return n.clusterP.Load() }

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
		n.bg.Wait()
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
		n.bg.Wait()
	})
}
