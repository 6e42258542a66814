package cluster

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-sockaddr"
	"github.com/hashicorp/memberlist"
)

const (
	// flushInterval is how often pending route deltas are shipped; it is
	// the main term of the propagation window.
	flushInterval = 25 * time.Millisecond
	// metaMinInterval rate-limits UpdateMeta re-gossip.
	metaMinInterval = time.Second
	acceptBackoff   = 100 * time.Millisecond
	maxJoinBackoff  = 30 * time.Second
)

// Cluster is one node's membership, routing table and forwarding links.
type Cluster struct {
	cfg          Config
	log          *slog.Logger
	ml           *memberlist.Memberlist
	ln           net.Listener
	fwdKey       []byte
	gossipKey    []byte       // memberlist's SecretKey, nil without a cluster key
	started      bool         // Start bound the listeners (set once, before any goroutine)
	fwdAdvertise atomic.Value // string: forward address put in the meta
	joined       atomic.Bool  // the initial or a background join reached a peer (or none was asked)
	epoch        uint64       // random per process: route history identity
	m            *clusterMetrics
	local        *localRoutes
	remote       *remoteRoutes

	stop      chan struct{} // closed by shutdown
	metaDirty chan struct{} // capacity 1
	closeOnce sync.Once
	wg        sync.WaitGroup

	alive atomic.Pointer[[]string] // sorted peer names with a link

	membersChanged  chan struct{} // signalled when alive changes; see membersLoop
	gossipAdvertise string        // set in Start, before anything reads it
	flushMu         sync.Mutex    // one route flush at a time, so deltas stay in order
	flushBuf        []byte        // guarded by flushMu

	memMu   sync.RWMutex
	members map[string]*memberInfo
	peers   map[string]*peer
	closing bool

	lastRefusedLog atomic.Int64 // unix nanos of the last refused-link log line
	lastReclaim    atomic.Int64 // unix nanos of the last releaseRoutes

	req *requests // Request/Ask waiters and the answering slots

	inMu         sync.Mutex
	inbound      map[uint64]inboundConn
	unauthed     int            // inbound connections still in the handshake
	unauthedByIP map[string]int // the same, per remote address
	inClosed     bool
	nextConnID   uint64
}

// New validates cfg and builds the member without binding anything: the
// routing table takes SetLocalUser/SetLocalRoom from now on, and Start ships it
// to the peers. Call Start to listen and join.
func New(cfg Config) (*Cluster, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if len(cfg.NodeName) > 255 {
		return nil, fmt.Errorf("cluster: NodeName is %d bytes; at most 255 allowed", len(cfg.NodeName))
	}
	var eb [8]byte
	if _, err := rand.Read(eb[:]); err != nil {
		return nil, fmt.Errorf("cluster: cannot generate epoch: %w", err)
	}
	gossipKey, _ := ParseKey(cfg.ClusterKey) // validated by withDefaults
	if cfg.ClusterKey == "" {
		cfg.Logger.Warn("cluster: no cluster key: gossip is not encrypted and any process on this host can join; loopback development only")
	}
	c := &Cluster{
		cfg:            cfg,
		log:            cfg.Logger,
		fwdKey:         forwardKey(cfg.ClusterName, gossipKey),
		epoch:          binary.BigEndian.Uint64(eb[:]),
		local:          newLocalRoutes(),
		remote:         newRemoteRoutes(),
		stop:           make(chan struct{}),
		membersChanged: make(chan struct{}, 1),
		metaDirty:      make(chan struct{}, 1),
		members:        map[string]*memberInfo{},
		peers:          map[string]*peer{},
		inbound:        map[uint64]inboundConn{},
		req:            newRequests(cfg.MaxAnswering),

		unauthedByIP: map[string]int{},
	}
	c.alive.Store(&[]string{})
	c.fwdAdvertise.Store("")
	c.gossipKey = gossipKey
	c.m = newClusterMetrics(cfg.Metrics, c)
	return c, nil
}

// Start starts the forwarding listener and memberlist and joins Config.Join.
// Unreachable peers are not an error: joining is retried in the background with
// backoff until it succeeds or the cluster stops. A Cluster starts once; after a
// failed Start only Kill is left to call (it does nothing).
func (c *Cluster) Start() error {
	cfg := c.cfg
	if c.started {
		return errors.New("cluster: Start called twice")
	}
	var err error
	c.ln, err = net.Listen("tcp", cfg.ForwardAddr)
	if err != nil {
		return &ListenError{Field: "ForwardAddr", Addr: cfg.ForwardAddr, Err: err}
	}
	mlc, err := c.memberlistConfig(c.gossipKey)
	if err != nil {
		_ = c.ln.Close()
		return err
	}
	// Our own transport (memberlist's, counted): gossip's cost is a metric.
	tr, err := newCountingTransport(mlc, c.m)
	if err != nil {
		_ = c.ln.Close()
		return &ListenError{Field: "GossipAddr", Addr: cfg.GossipAddr, Err: err}
	}
	mlc.Transport = tr
	c.ml, err = memberlist.Create(mlc)
	if err != nil {
		_ = tr.Shutdown()
		_ = c.ln.Close()
		return &ListenError{Field: "GossipAddr", Addr: cfg.GossipAddr, Err: err}
	}
	c.started = true
	// The forward host defaults to the gossip advertise IP, which memberlist
	// may only know now (it picks a private IP for an unspecified bind).
	fHost, _, _ := net.SplitHostPort(cfg.ForwardAddr)
	if ip := net.ParseIP(fHost); fHost == "" || (ip != nil && ip.IsUnspecified()) {
		fHost = c.ml.LocalNode().Addr.String()
	}
	c.gossipAdvertise = c.ml.LocalNode().Address()
	fPort := c.ln.Addr().(*net.TCPAddr).Port
	c.fwdAdvertise.Store(net.JoinHostPort(fHost, strconv.Itoa(fPort)))
	if err := c.ml.UpdateNode(0); err != nil {
		c.closeOnce.Do(c.shutdown)
		return fmt.Errorf("cluster: cannot publish node meta: %w", err)
	}

	c.wg.Add(4)
	go c.acceptLoop()
	go c.flushLoop()
	go c.metaLoop()
	go c.membersLoop()
	if len(cfg.Join) > 0 {
		if n, err := c.ml.Join(cfg.Join); n == 0 {
			c.log.Warn("cluster: no peer reachable, retrying in background", "join", cfg.Join, "err", err)
			c.wg.Add(1)
			go c.joinLoop()
		} else {
			c.joined.Store(true)
		}
	} else {
		c.joined.Store(true)
	}
	return nil
}

// Joined reports whether the node is part of a cluster: it was given no peers, or it
// reached at least one of them, or a peer has joined it since.
func (c *Cluster) Joined() bool {
	if c == nil {
		return true
	}
	return c.joined.Load() || len(c.AliveNodes()) > 0
}

func (c *Cluster) memberlistConfig(gossipKey []byte) (*memberlist.Config, error) {
	cfg := c.cfg
	mlc := memberlist.DefaultLANConfig()
	mlc.Name = cfg.NodeName
	host, port, _ := splitHostPort(cfg.GossipAddr)
	if host == "" {
		host = "0.0.0.0"
	}
	mlc.BindAddr, mlc.BindPort = host, port
	mlc.AdvertisePort = port
	if cfg.GossipAdvertise != "" {
		ahost, aport, _ := splitHostPort(cfg.GossipAdvertise)
		ip := net.ParseIP(ahost)
		if ip == nil {
			ips, err := net.LookupIP(ahost)
			if err != nil || len(ips) == 0 {
				return nil, fmt.Errorf("cluster: cannot resolve GossipAdvertise %q: %v", cfg.GossipAdvertise, err)
			}
			ip = ips[0]
		}
		mlc.AdvertiseAddr, mlc.AdvertisePort = ip.String(), aport
	} else if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		// memberlist advertises a private IP for an unspecified bind and
		// fails on a host that has none (a laptop on loopback only, some
		// containers). Pick the address here so such a host still works.
		addr, err := advertiseIP()
		if err != nil {
			return nil, err
		}
		mlc.AdvertiseAddr = addr
	}
	// The label keeps clusters apart: memberlist drops packets and streams
	// whose label differs, so two clusters never merge.
	mlc.Label = "longlink/" + cfg.ClusterName
	mlc.SecretKey = gossipKey
	mlc.Delegate = (*delegate)(c)
	mlc.Events = (*delegate)(c)
	mlc.Ping = (*delegate)(c)
	mlc.Logger = slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelDebug)
	mlc.ProbeInterval = cfg.Probe
	if cfg.Probe < time.Second {
		// Faster failure detection (tests, small LANs): memberlist needs
		// the probe timeout below the interval.
		mlc.ProbeTimeout = cfg.Probe / 2
		mlc.GossipInterval = min(mlc.GossipInterval, cfg.Probe/2)
	}
	// Suspicion: SuspicionMult probe intervals (scaled by log10 of the cluster size,
	// so 0.8 s up to 10 nodes), at most twice that unconfirmed, instead of
	// memberlist's 4 and 6x: a node that stops answering is dead in 1.4-2.2 s here,
	// which is what the streams' failover waits for (docs/cluster.md).
	mlc.SuspicionMult = 2
	mlc.SuspicionMaxTimeoutMult = 2
	mlc.PushPullInterval = cfg.SyncInterval
	// Let a node that died come back under the same name from a new
	// address (restarted pod) without waiting for memberlist's default.
	mlc.DeadNodeReclaimTime = cfg.Probe
	return mlc, nil
}

// Name is this node's name.
func (c *Cluster) Name() string { return c.cfg.NodeName }

// GossipAddr is the advertised gossip host:port (the real port if bound to 0).
func (c *Cluster) GossipAddr() string {
	if c == nil || !c.started {
		return ""
	}
	// Read once at Start: memberlist rewrites its local node on every meta update,
	// without a lock a reader could take (found by a -race build of the binary).
	return c.gossipAdvertise
}

// ForwardAddr is the advertised forwarding host:port.
func (c *Cluster) ForwardAddr() string { return c.fwdAdvertise.Load().(string) }

// Members lists known nodes sorted by name, this one included. Dead and left
// nodes are listed for forgetAfter.
func (c *Cluster) Members() []Member {
	if c == nil {
		return nil
	}
	now := time.Now()
	c.memMu.RLock()
	out := make([]Member, 0, len(c.members))
	for _, mi := range c.members {
		out = append(out, Member{
			Name:        mi.name,
			GossipAddr:  mi.gossipAddr,
			ClientAddr:  mi.meta.ClientAddr,
			APIAddr:     mi.meta.APIAddr,
			State:       c.stateOfLocked(mi, now),
			Connections: mi.meta.Connections,
			Draining:    mi.meta.Draining,
			Self:        mi.name == c.cfg.NodeName,
		})
	}
	c.memMu.RUnlock()
	slices.SortFunc(out, func(a, b Member) int {
		if a.Name < b.Name {
			return -1
		}
		if a.Name > b.Name {
			return 1
		}
		return 0
	})
	return out
}

// AliveNodes returns the sorted names of live peers (alive or suspect),
// excluding this node. The slice must not be modified.
func (c *Cluster) AliveNodes() []string {
	if c == nil {
		return nil
	}
	return *c.alive.Load()
}

// Send queues a copy of payload for node. It never blocks; it fails if node
// is not a live peer, the payload is too large, or node's queue is full.
// Every failure is counted in longlink_cluster_forward_failures_total.
func (c *Cluster) Send(node string, payload []byte) error {
	if c == nil {
		return ErrUnknownNode
	}
	return c.send(node, kindData, nil, payload)
}

// send queues one frame of kind with body prefix+payload for node.
func (c *Cluster) send(node string, kind byte, prefix, payload []byte) error {
	if len(prefix)+len(payload)+frameHeader > min(c.cfg.QueueBytes, c.cfg.MaxFrame) {
		c.m.forwardFailures.Inc()
		return ErrTooLarge
	}
	c.memMu.RLock()
	p := c.peers[node]
	c.memMu.RUnlock()
	if p == nil {
		c.m.forwardFailures.Inc()
		return ErrUnknownNode
	}
	return p.enqueue(kind, prefix, payload)
}

// Broadcast queues payload once for every live peer and returns how many
// peers accepted it.
func (c *Cluster) Broadcast(payload []byte) int {
	if c == nil {
		return 0
	}
	if len(payload)+frameHeader > min(c.cfg.QueueBytes, c.cfg.MaxFrame) {
		c.m.forwardFailures.Inc()
		return 0
	}
	n := 0
	c.memMu.RLock()
	defer c.memMu.RUnlock()
	for _, p := range c.peers {
		if p.enqueueData(payload) == nil {
			n++
		}
	}
	return n
}

// SetLocalUser records that user got its first (present) or lost its last
// connection on this node. Cheap and non-blocking: peers learn it within
// about flushInterval plus one network hop.
func (c *Cluster) SetLocalUser(user string, present bool) {
	if c != nil {
		c.local.set(false, user, present)
	}
}

// SetLocalRoom records that this node got its first member of room or lost
// its last one.
func (c *Cluster) SetLocalRoom(room string, present bool) {
	if c != nil {
		c.local.set(true, room, present)
	}
}

// NodesForUsers returns the live peers (not self) holding any of users, plus
// every live peer whose table is not known yet: send to all of them.
func (c *Cluster) NodesForUsers(users []string) []string {
	if c == nil {
		return nil
	}
	return c.remote.nodesFor(false, users, *c.alive.Load())
}

// NodesForRooms is NodesForUsers for rooms.
func (c *Cluster) NodesForRooms(rooms []string) []string {
	if c == nil {
		return nil
	}
	return c.remote.nodesFor(true, rooms, *c.alive.Load())
}

// UpdateMeta re-gossips this node's meta (Config.Meta) at most once per
// metaMinInterval; calls in between are merged.
func (c *Cluster) UpdateMeta() {
	if c == nil {
		return
	}
	select {
	case c.metaDirty <- struct{}{}:
	default:
	}
}

// Leave tells the peers this node is leaving, flushes the forwarding queues
// and shuts down, all within about timeout.
func (c *Cluster) Leave(timeout time.Duration) error {
	if c == nil {
		return nil
	}
	err := ErrClosed
	c.closeOnce.Do(func() {
		if !c.started {
			c.shutdown()
			err = nil
			return
		}
		deadline := time.Now().Add(timeout)
		// First tell the peers on our links (so they report "left", not
		// "dead") and flush what is queued for them, using up to half the
		// time; then the memberlist leave broadcast.
		c.drainPeers(time.Now().Add(timeout / 2))
		err = c.ml.Leave(time.Until(deadline))
		if err != nil {
			err = fmt.Errorf("cluster: leave broadcast: %w", err)
		}
		c.shutdown()
	})
	return err
}

// Kill stops without telling anyone, like a crash (tests).
func (c *Cluster) Kill() {
	if c == nil {
		return
	}
	c.closeOnce.Do(c.shutdown)
}

// drainPeers sends kindLeaving to every peer, lets the writers flush their
// queues and exit, and waits for them until deadline. Send fails from now on.
func (c *Cluster) drainPeers(deadline time.Time) {
	leaving := appendFrame(nil, kindLeaving, nil)
	c.memMu.RLock()
	peers := make([]*peer, 0, len(c.peers))
	for _, p := range c.peers {
		p.enqueueFrame(leaving)
		p.drain()
		peers = append(peers, p)
	}
	c.memMu.RUnlock()
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	for _, p := range peers {
		select {
		case <-p.done:
		case <-t.C:
			return
		}
	}
}

func (c *Cluster) shutdown() {
	if !c.started {
		c.m.close() // nothing bound, nothing running
		return
	}
	close(c.stop)
	c.memMu.Lock()
	c.closing = true
	peers := c.peers
	c.peers = map[string]*peer{}
	c.rebuildAliveLocked()
	c.memMu.Unlock()
	for _, p := range peers {
		p.close()
	}
	if err := c.ml.Shutdown(); err != nil {
		c.log.Warn("cluster: memberlist shutdown", "err", err)
	}
	_ = c.ln.Close()
	c.closeAllInbound()
	c.wg.Wait()
	c.m.close()
}

// membersLoop reports membership changes to Config.OnMembers.
func (c *Cluster) membersLoop() {
	defer c.wg.Done()
	if c.cfg.OnMembers == nil {
		return
	}
	c.cfg.OnMembers(c.AliveNodes())
	for {
		select {
		case <-c.stop:
			return
		case <-c.membersChanged:
			c.cfg.OnMembers(c.AliveNodes())
		}
	}
}

// FlushRoutes ships the pending route delta to every peer now, instead of at the
// next flush tick: a caller that then sends a request to a peer knows the peer
// applies the delta first (one link, in order).
func (c *Cluster) FlushRoutes() {
	if c == nil || !c.started {
		return
	}
	c.flushMu.Lock()
	defer c.flushMu.Unlock()
	var ops int
	var overflow bool
	c.flushBuf, ops, overflow = c.local.takeDelta(c.flushBuf[:0], c.epoch)
	if ops > 0 || overflow {
		c.memMu.RLock()
		for _, p := range c.peers {
			if overflow {
				p.requestSnapshot()
			} else {
				p.enqueueFrame(c.flushBuf)
			}
		}
		c.memMu.RUnlock()
	}
	if cap(c.flushBuf) > retainBytes {
		c.flushBuf = nil
	}
}

// flushLoop ships pending route deltas to every peer and does housekeeping.
func (c *Cluster) flushLoop() {
	defer c.wg.Done()
	t := time.NewTicker(flushInterval)
	defer t.Stop()
	lastPrune := time.Now()
	for {
		select {
		case <-c.stop:
			return
		case now := <-t.C:
			c.FlushRoutes()
			if now.Sub(lastPrune) > time.Second {
				lastPrune = now
				c.pruneMembers(now)
			}
		}
	}
}

// metaLoop applies UpdateMeta requests, at most one per metaMinInterval.
func (c *Cluster) metaLoop() {
	defer c.wg.Done()
	for {
		select {
		case <-c.stop:
			return
		case <-c.metaDirty:
		}
		if err := c.ml.UpdateNode(metaMinInterval); err != nil {
			c.log.Debug("cluster: meta update not acknowledged", "err", err)
		}
		select {
		case <-c.stop:
			return
		case <-time.After(metaMinInterval):
		}
	}
}

// joinLoop retries joining with exponential backoff until one peer answers.
func (c *Cluster) joinLoop() {
	defer c.wg.Done()
	backoff := time.Second
	for {
		select {
		case <-c.stop:
			return
		case <-time.After(backoff):
		}
		n, err := c.ml.Join(c.cfg.Join)
		if n > 0 {
			c.joined.Store(true)
			c.log.Info("cluster: joined", "peers", n)
			return
		}
		c.log.Debug("cluster: join retry failed", "join", c.cfg.Join, "err", err)
		backoff = min(2*backoff, maxJoinBackoff)
	}
}

// dialPeer opens and authenticates a forwarding link.
func (c *Cluster) dialPeer(addr string) (net.Conn, error) {
	conn, err := net.DialTimeout("tcp", addr, dialTimeout)
	if err != nil {
		return nil, fmt.Errorf("cannot dial forward address %q: %w", addr, err)
	}
	if err := clientHandshake(conn, c.fwdKey, c.cfg.NodeName); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("handshake with %q: %w", addr, err)
	}
	return conn, nil
}

func (c *Cluster) sleep(d time.Duration) <-chan time.Time { return time.After(d) }

// advertiseIP picks the address to advertise for an unspecified bind: a
// private IP as memberlist would, else any global unicast address, else
// loopback (only peers on this host can reach it, which is all a host with
// only a loopback interface can have).
func advertiseIP() (string, error) {
	if ip, err := sockaddr.GetPrivateIP(); err == nil && ip != "" {
		return ip, nil
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return "", fmt.Errorf("cluster: cannot list interface addresses to advertise (set GossipAdvertise): %w", err)
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.IsGlobalUnicast() {
			return ipn.IP.String(), nil
		}
	}
	return "127.0.0.1", nil
}

// ListenError is a failure to bind one of the cluster's addresses; Field
// names the Config field to change.
type ListenError struct {
	Field string // GossipAddr or ForwardAddr
	Addr  string
	Err   error
}

func (e *ListenError) Error() string {
	return fmt.Sprintf("cluster: cannot listen on %s %q: %v", e.Field, e.Addr, e.Err)
}

func (e *ListenError) Unwrap() error { return e.Err }
