package cluster

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// Config configures one cluster member. The zero value runs a single node
// named after the host, gossiping on :7946 and forwarding on :7947.
type Config struct {
	// NodeName must be unique in the cluster. Empty means hostname + "-" +
	// 4 random hex digits. Reusing a name after the node left or died is
	// allowed (rejoin).
	NodeName string
	// GossipAddr is the memberlist bind address host:port. Empty means
	// ":7946". Port 0 picks a free port; Cluster.GossipAddr reports it.
	GossipAddr string
	// GossipAdvertise is the host:port other nodes use to reach us. Empty
	// derives it from the bind address; if the bind host is unspecified,
	// memberlist picks a private IP of this machine.
	GossipAdvertise string
	// ForwardAddr is the bind host:port of the forwarding listener. Empty
	// means the gossip host with the gossip port + 1 (port 0 if the gossip
	// port is 0). The advertised address travels in the node meta.
	ForwardAddr string
	// Join lists peers as host:port or DNS names (a name with several A
	// records joins all of them; without a port the gossip port is used).
	// If none is reachable at start, joining is retried in the background.
	Join []string
	// ClusterName separates clusters: it is the memberlist label (packets and
	// streams with another label are dropped) and it is mixed into the
	// forwarding key. Empty means "longlink".
	ClusterName string
	// ClusterKey is the cluster's shared secret, base64 (standard encoding)
	// of 16, 24 or 32 random bytes (`longlink keygen` prints one). It
	// encrypts and authenticates gossip (memberlist's AES-GCM keyring) and
	// authenticates forwarding links. Required unless every listener is on
	// loopback (see KeyRequired): a node reachable from other hosts never
	// runs without one. Empty (loopback only) means no gossip encryption and
	// a forwarding key derived from the cluster name, which anyone on this
	// host can compute: a development setup, not a security boundary.
	ClusterKey string
	// MaxFrame bounds one frame on an inbound forwarding link in bytes; a
	// peer that announces a longer one is disconnected. The buffer for a
	// frame grows with the bytes that arrive, never by what a header
	// announces. Zero means 8 MiB; it must exceed the largest message the
	// node forwards (the node sets it from its API body limit).
	MaxFrame int
	// MaxPeerRoutes bounds the route table one peer may advertise (users
	// plus rooms it holds). A snapshot or delta that would exceed it closes
	// the link and is counted; the peer then counts as holding everything
	// ("unsure": messages are sent to it rather than dropped). Names are at
	// most maxRouteName bytes. Zero means 1,048,576: a node rarely holds
	// more than one user per connection, and a full table costs 60 MiB with
	// 10-byte names, 330 MiB at the longest.
	MaxPeerRoutes int
	// MaxInbound bounds the inbound forwarding connections that have not
	// yet proved the cluster key; more are closed at once and counted.
	// Authenticated links are bounded by the members (one per peer). Zero
	// means 64.
	MaxInbound int
	// Meta returns what this node advertises. Called by memberlist; must be
	// cheap and must not call Cluster methods. Nil advertises nothing.
	Meta func() NodeMeta
	// OnMessage receives payloads sent by peers. It runs on the reader
	// goroutine of one peer connection; payload is valid only during the
	// call; it must not block for long (it stalls that peer's stream).
	OnMessage func(from string, payload []byte)
	// OnRequest answers a peer's Request or Ask (see request.go). It runs on one
	// of at most MaxAnswering goroutines, never on the link's reader, so it may
	// wait (for this node's event loops, say), but each call holds one of those
	// slots until it returns. body is the callback's own copy. The returned bytes
	// are sent back to from; nil sends nothing and the asker times out. Nil
	// OnRequest drops every request (counted, like a request over MaxAnswering).
	OnRequest func(from string, body []byte) []byte
	// OnMembers, if set, is called with AliveNodes after the set of live peers
	// changed (and once at Start), on one goroutine of the cluster's, so calls
	// never overlap; changes in quick succession may be reported once.
	OnMembers func(alive []string)
	// RequestTimeout bounds how long Request and Ask wait for answers when their
	// context has no earlier deadline. Zero means 2s.
	RequestTimeout time.Duration
	// MaxAnswering bounds the requests from peers being answered at once; one
	// over it is dropped at once and counted in
	// longlink_cluster_query_drops_total, and its asker times out. Zero means 256.
	MaxAnswering int
	// OnNodeLeft is called (on its own goroutine) when a peer left or died.
	OnNodeLeft func(name string)
	// Probe is the memberlist probe interval. Zero means 400ms. Failure
	// detection takes a few probe intervals.
	Probe time.Duration
	// SyncInterval is the memberlist push-pull (full membership sync)
	// interval. Zero means 10s.
	SyncInterval time.Duration
	// QueueBytes bounds the bytes waiting for one peer. When a message does
	// not fit it is dropped and counted as a failure. Zero means 16 MiB.
	QueueBytes int
	// Logger receives cluster logs; memberlist's own log lines go to it at
	// debug level. Nil means slog.Default().
	Logger *slog.Logger
	// Metrics is the set the cluster's metrics are created in. Nil means a
	// new set registered globally with metrics.RegisterSet (so it shows up
	// in metrics.WritePrometheus) and unregistered on Leave/Kill.
	Metrics *metrics.Set
}

// NodeMeta is what a node advertises to the others through memberlist.
// Encoded compactly: it must fit memberlist's 512-byte meta limit together
// with the forwarding address.
type NodeMeta struct {
	ClientAddr  string
	APIAddr     string
	Connections int
	Draining    bool
}

// Member describes one known node, including this one (Self).
type Member struct {
	Name        string
	GossipAddr  string
	ClientAddr  string
	APIAddr     string
	State       string // alive, suspect, dead, left
	Connections int
	Draining    bool
	Self        bool
}

const (
	defaultGossipPort  = 7946
	defaultClusterName = "longlink"
	// defaultProbe with the suspicion settings in memberlistConfig marks a dead or
	// frozen node dead in about 1.5-2 s on a LAN (docs/cluster.md, "Failure detection").
	defaultProbe        = 400 * time.Millisecond
	defaultSyncInterval = 10 * time.Second
	defaultQueueBytes   = 16 << 20
	defaultMaxFrame     = 8 << 20
	defaultMaxRoutes    = 1 << 20
	defaultMaxInbound   = 64
	defaultReqTimeout   = 2 * time.Second
	defaultMaxAnswering = 256
	// maxFrameLimit is the largest MaxFrame accepted: the length field is 32
	// bits and no message of ours comes near it.
	maxFrameLimit = 1 << 30
)

// Defaults returns the values zero fields of a Config stand for, where they are
// fixed (NodeName is random; GossipAddr is the node's choice to make, ":7946" here).
// withDefaults fills zero fields with these, and flags show them.
func Defaults() Config {
	return Config{
		ClusterName:    defaultClusterName,
		Probe:          defaultProbe,
		SyncInterval:   defaultSyncInterval,
		QueueBytes:     defaultQueueBytes,
		MaxFrame:       defaultMaxFrame,
		MaxPeerRoutes:  defaultMaxRoutes,
		MaxInbound:     defaultMaxInbound,
		RequestTimeout: defaultReqTimeout,
		MaxAnswering:   defaultMaxAnswering,
	}
}

// withDefaults validates cfg and fills in defaults. Errors name the field.
func (cfg Config) withDefaults() (Config, error) {
	if cfg.NodeName == "" {
		host, err := os.Hostname()
		if err != nil || host == "" {
			host = "node"
		}
		var b [2]byte
		if _, err := rand.Read(b[:]); err != nil {
			return cfg, fmt.Errorf("cluster: cannot generate NodeName: %w", err)
		}
		cfg.NodeName = host + "-" + hex.EncodeToString(b[:])
	}
	if cfg.GossipAddr == "" {
		cfg.GossipAddr = ":" + strconv.Itoa(defaultGossipPort)
	}
	gHost, gPort, err := splitHostPort(cfg.GossipAddr)
	if err != nil {
		return cfg, fmt.Errorf("cluster: invalid GossipAddr %q: %w", cfg.GossipAddr, err)
	}
	if cfg.GossipAdvertise != "" {
		if _, _, err := splitHostPort(cfg.GossipAdvertise); err != nil {
			return cfg, fmt.Errorf("cluster: invalid GossipAdvertise %q: %w", cfg.GossipAdvertise, err)
		}
	}
	if cfg.ForwardAddr == "" {
		fPort := 0
		if gPort != 0 {
			fPort = gPort + 1
		}
		cfg.ForwardAddr = net.JoinHostPort(gHost, strconv.Itoa(fPort))
	}
	if _, _, err := splitHostPort(cfg.ForwardAddr); err != nil {
		return cfg, fmt.Errorf("cluster: invalid ForwardAddr %q: %w", cfg.ForwardAddr, err)
	}
	if cfg.ClusterName == "" {
		cfg.ClusterName = defaultClusterName
	}
	// memberlist labels are at most 255 bytes; keep room for our prefix.
	if len(cfg.ClusterName) > 200 {
		return cfg, fmt.Errorf("cluster: ClusterName is %d bytes; at most 200 allowed", len(cfg.ClusterName))
	}
	if cfg.Probe < 0 || (cfg.Probe > 0 && cfg.Probe < 10*time.Millisecond) {
		return cfg, fmt.Errorf("cluster: Probe %s must be 0 or at least 10ms", cfg.Probe)
	}
	if cfg.Probe == 0 {
		cfg.Probe = defaultProbe
	}
	if cfg.SyncInterval < 0 {
		return cfg, fmt.Errorf("cluster: SyncInterval %s must not be negative", cfg.SyncInterval)
	}
	if cfg.SyncInterval == 0 {
		cfg.SyncInterval = defaultSyncInterval
	}
	if cfg.QueueBytes < 0 {
		return cfg, fmt.Errorf("cluster: QueueBytes %d must not be negative", cfg.QueueBytes)
	}
	if cfg.QueueBytes == 0 {
		cfg.QueueBytes = defaultQueueBytes
	}
	if cfg.MaxFrame < 0 || cfg.MaxFrame > maxFrameLimit || (cfg.MaxFrame > 0 && cfg.MaxFrame < 64<<10) {
		return cfg, fmt.Errorf("cluster: MaxFrame %d must be 0 or between 64 KiB and 1 GiB", cfg.MaxFrame)
	}
	if cfg.MaxFrame == 0 {
		cfg.MaxFrame = defaultMaxFrame
	}
	if cfg.MaxPeerRoutes < 0 {
		return cfg, fmt.Errorf("cluster: MaxPeerRoutes %d must not be negative", cfg.MaxPeerRoutes)
	}
	if cfg.MaxPeerRoutes == 0 {
		cfg.MaxPeerRoutes = defaultMaxRoutes
	}
	if cfg.MaxInbound < 0 {
		return cfg, fmt.Errorf("cluster: MaxInbound %d must not be negative", cfg.MaxInbound)
	}
	if cfg.MaxInbound == 0 {
		cfg.MaxInbound = defaultMaxInbound
	}
	if cfg.RequestTimeout < 0 {
		return cfg, fmt.Errorf("cluster: RequestTimeout %v must not be negative", cfg.RequestTimeout)
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = defaultReqTimeout
	}
	if cfg.MaxAnswering < 0 {
		return cfg, fmt.Errorf("cluster: MaxAnswering %d must not be negative", cfg.MaxAnswering)
	}
	if cfg.MaxAnswering == 0 {
		cfg.MaxAnswering = defaultMaxAnswering
	}
	if _, err := ParseKey(cfg.ClusterKey); err != nil {
		return cfg, fmt.Errorf("cluster: ClusterKey: %w", err)
	}
	if cfg.ClusterKey == "" && KeyRequired(cfg.GossipAddr, cfg.ForwardAddr) {
		return cfg, fmt.Errorf("cluster: %w (GossipAddr %q, ForwardAddr %q)", ErrKeyRequired, cfg.GossipAddr, cfg.ForwardAddr)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return cfg, nil
}

func splitHostPort(addr string) (string, int, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("bad port %q", portStr)
	}
	return host, port, nil
}

// ParseKey decodes a ClusterKey: standard base64 of exactly 16, 24 or 32
// bytes (AES-128, -192 or -256). Empty returns nil (no key). Passphrases and
// short keys are refused: a key is only as strong as its randomness, and a
// typed word is not random.
func ParseKey(s string) ([]byte, error) {
	if s == "" {
		return nil, nil
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: not base64 (generate one with `longlink keygen`)", ErrBadKey)
	}
	if !validAESLen(len(b)) {
		return nil, fmt.Errorf("%w: %d bytes, want 16, 24 or 32 (generate one with `longlink keygen`)", ErrBadKey, len(b))
	}
	return b, nil
}

// NewKey returns a fresh random 32-byte key in the form ParseKey takes.
func NewKey() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("cluster: cannot read random bytes: %w", err)
	}
	return base64.StdEncoding.EncodeToString(b), nil
}

func validAESLen(n int) bool { return n == 16 || n == 24 || n == 32 }

// KeyRequired reports whether a node listening on these addresses must have
// a cluster key: true unless both bind hosts are loopback addresses (or
// "localhost"). An empty or unspecified host listens on every interface.
func KeyRequired(gossipAddr, forwardAddr string) bool {
	return !loopbackBind(gossipAddr) || !loopbackBind(forwardAddr)
}

func loopbackBind(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// forwardKey is the HMAC key that authenticates forwarding links. It mixes the
// cluster name with the gossip key so two clusters sharing a key still refuse
// each other. Without a cluster key it depends on the name only, which any
// party that knows the name can compute: that prevents accidents, not attacks.
func forwardKey(clusterName string, gossipKey []byte) []byte {
	mac := hmac.New(sha256.New, []byte("longlink-cluster-forward-v1"))
	mac.Write([]byte(clusterName))
	mac.Write([]byte{0})
	mac.Write(gossipKey)
	return mac.Sum(nil)
}

// Sentinel errors returned by Send, Request and New.
var (
	ErrUnknownNode = errors.New("cluster: unknown or dead node")
	ErrQueueFull   = errors.New("cluster: peer queue full")
	ErrTooLarge    = errors.New("cluster: message too large")
	ErrClosed      = errors.New("cluster: closed")
	ErrTimeout     = errors.New("cluster: no answer within RequestTimeout")
	ErrBadKey      = errors.New("cluster: invalid cluster key")
	ErrKeyRequired = errors.New("a cluster key is required to listen for peers beyond loopback")
)
