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
	// ClusterKey enables gossip encryption and authenticates forwarding
	// links. Base64 of 16/24/32 bytes, or a raw string of 16/24/32 bytes, or
	// any other passphrase (then SHA-256 of it is the 32-byte key). Empty
	// means no encryption, and forwarding links are authenticated with a key
	// derived from the cluster name only, which is NOT a security boundary.
	ClusterKey string
	// Meta returns what this node advertises. Called by memberlist; must be
	// cheap and must not call Cluster methods. Nil advertises nothing.
	Meta func() NodeMeta
	// OnMessage receives payloads sent by peers. It runs on the reader
	// goroutine of one peer connection; payload is valid only during the
	// call; it must not block for long (it stalls that peer's stream).
	OnMessage func(from string, payload []byte)
	// OnNodeLeft is called (on its own goroutine) when a peer left or died.
	OnNodeLeft func(name string)
	// Probe is the memberlist probe interval. Zero means 1s. Failure
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
	defaultGossipPort   = 7946
	defaultClusterName  = "longlink"
	defaultProbe        = time.Second
	defaultSyncInterval = 10 * time.Second
	defaultQueueBytes   = 16 << 20
	// maxFrame bounds one frame on a forwarding link (the receiver allocates
	// up to this much for one message).
	maxFrame = 64 << 20
)

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

// GossipKey turns a --cluster-key value into a memberlist SecretKey:
// base64 of 16/24/32 bytes is decoded; a raw string of 16/24/32 bytes is
// used as is; anything else is a passphrase hashed with SHA-256 (32 bytes).
// Empty returns nil (no encryption).
func GossipKey(s string) []byte {
	if s == "" {
		return nil
	}
	if b, err := base64.StdEncoding.DecodeString(s); err == nil && validAESLen(len(b)) {
		return b
	}
	if validAESLen(len(s)) {
		return []byte(s)
	}
	sum := sha256.Sum256([]byte(s))
	return sum[:]
}

func validAESLen(n int) bool { return n == 16 || n == 24 || n == 32 }

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

// Sentinel errors returned by Send and New.
var (
	ErrUnknownNode = errors.New("cluster: unknown or dead node")
	ErrQueueFull   = errors.New("cluster: peer queue full")
	ErrTooLarge    = errors.New("cluster: message too large")
	ErrClosed      = errors.New("cluster: closed")
)
