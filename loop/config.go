package loop

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"runtime"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"golang.org/x/sys/unix"

	"longlink/wsproto"
)

// Identity is what Authenticate learns about a client from its token.
type Identity struct {
	User    string
	Rooms   []string
	Expires time.Time // zero: never
	// Subscribe are the rooms, or "prefix*" patterns, the client may subscribe its
	// connection to itself (the receiver of its messages decides; see Ext). Kept in
	// the connection's Ext, allocated only when this is not empty.
	Subscribe []string
}

// AuthError rejects a handshake with an HTTP status and a short reason.
type AuthError struct {
	Status int
	Reason string
}

func (e *AuthError) Error() string { return fmt.Sprintf("loop: %d %s", e.Status, e.Reason) }

// Config configures a Server. The zero value is not enough: Authenticate is required.
type Config struct {
	// Addrs are the client listen addresses ("127.0.0.1:8080"). Port 0 picks a free port;
	// Server.Addrs reports the real ones. Default ":8080".
	Addrs []string
	// Loops is the number of event loops. Zero means runtime.GOMAXPROCS(0).
	Loops int
	// NodeID prefixes every connection id ("<NodeID>.<incarnation>-<n>") so ids are
	// unique across a cluster and name the node that holds them. Required. The
	// incarnation is chosen by New (see Server.Incarnation), so a node restarted under
	// the same NodeID never hands out an id it gave out before.
	NodeID string

	// Authenticate turns a token into an identity. It runs on an event loop, so it must
	// be fast and must not block. token is "" when the client sent none.
	Authenticate func(token string) (Identity, *AuthError)
	// AllowedOrigins, when non-empty, is the list of Origin values allowed to connect
	// (exact match, or "*"). Requests without an Origin (non-browser clients) pass.
	AllowedOrigins []string
	// Endpoint answers a plain GET /v1/endpoint on the client port with a JSON body and
	// is used as the hint in 503 responses when the node is full. Nil: 404.
	Endpoint func() []byte

	// MaxConns caps connections on this node; over it a new client gets 503 with the
	// Endpoint hint. Zero: the open-files limit less a reserve for the API port, cluster
	// links and logs (FDBudget), so a full node answers 503 instead of running out of
	// descriptors. Negative: no cap.
	MaxConns int
	// MaxConnsPerUser is how many connections one user may hold on this node; the
	// oldest is closed with CloseReplaced when a new one arrives. Zero means 10.
	MaxConnsPerUser int
	// MaxMessage is the largest reassembled client message in bytes. Zero means 1 MiB.
	MaxMessage int
	// MaxPendingBytes bounds the bytes all connections together may hold for messages
	// they have not finished sending (fragmented, or a frame whose payload is still
	// arriving). A connection whose unfinished message would go over it is closed with
	// 1013 (Try Again Later). Each connection holds what it sent, rounded up to 8 KiB
	// (wsproto.ChunkSize). Zero means 256 MiB.
	MaxPendingBytes int64
	// MaxOutbound is how many bytes may wait for one connection before it is closed as
	// a slow consumer. Zero means 512 KiB. A frame is always accepted when nothing is
	// waiting, so a single message larger than the bound still goes out.
	MaxOutbound int
	// MaxQueue bounds the jobs waiting in one loop's inbox; Deliver fails with
	// ErrOverloaded beyond it. Zero means 65536.
	MaxQueue int
	// MaxQueueBytes bounds the frame bytes waiting in one loop's inbox (a frame shared
	// by several loops counts in each). Zero means 64 MiB.
	MaxQueueBytes int64
	// MaxRequestBytes caps the HTTP upgrade request head. Zero means 8 KiB.
	MaxRequestBytes int

	// HandshakeTimeout drops a client that has not completed its upgrade. Zero: 10s.
	HandshakeTimeout time.Duration
	// PingInterval is how long a connection may be silent before the server pings it.
	// Zero: 30s.
	PingInterval time.Duration
	// IdleTimeout closes a connection silent for this long (pongs count). Zero: 75s.
	IdleTimeout time.Duration
	// CloseTimeout is how long the server waits for the client's close frame after
	// sending its own before dropping the TCP connection. Zero: 5s.
	CloseTimeout time.Duration

	// Deflate accepts permessage-deflate offers (RFC 7692; deflate.go): pushed
	// messages of at least DeflateMinBytes are compressed once for all the
	// connections that negotiated it. Off (the zero value), offers are declined.
	// Defaults has it on.
	Deflate bool
	// DeflateMinBytes is the smallest message payload sent compressed; smaller ones
	// go as they are (compressing them saves little and costs the client an
	// inflate). Zero: 256.
	DeflateMinBytes int

	// Echo sends every client data message back to its connection (conformance tests).
	Echo bool
	// OnMessage, if set, receives client data messages when Echo is off. It runs on
	// c's loop; payload is valid only during the call; it must not block. c may be
	// kept to answer later (Server.Send) and its accessors read from any goroutine.
	OnMessage func(c *Conn, binary bool, payload []byte)
	// OnPresence is called when a user gets its first connection on this node
	// (present=true) or loses its last one, and likewise for rooms. It runs on a loop or
	// API goroutine while the registry lock that decided the change is held, so events
	// for one name arrive in order; it must be quick, must not block and must not call
	// back into the Server.
	OnPresence func(kind PresenceKind, name string, present bool)
	// Admit, if set, decides every upgrade that passed Authenticate before it is
	// registered (the node's connect hook): it runs on the loop, must not block, and
	// must call a.Done once, there or later from any goroutine; until then the
	// connection waits unregistered under the handshake deadline (admit.go). Set, it
	// also makes the loop keep each request's header lines (Admission.Header).
	Admit func(a *Admission)
	// OnUpgrade, if set, finishes every upgrade: the connection is registered, then
	// OnUpgrade runs on the loop and must call u.Done, there or later from any
	// goroutine, before the handshake timeout (see streams.go). It must not block.
	OnUpgrade func(u *Upgrade)
	// OnOpen, if set, is called on c's loop once its 101 has been written: from then
	// on c is open for its client. It must be quick and must not block.
	OnOpen func(c *Conn)
	// OnClose, if set, is called on c's loop when a connection OnOpen announced has
	// ended, once: code is the close code the server sent or, when the client's close
	// came first, the client's (CloseNoStatus when that frame had none), and
	// CloseAbnormal (1006) when the TCP connection ended without either; reason is
	// that frame's reason, or why the server dropped the connection without one (a
	// slow consumer). It must be quick and must not block; c's accessors stay valid.
	OnClose func(c *Conn, code uint16, reason string)

	// PusherApp, if set, makes the loop accept Pusher Channels clients (protocol 7)
	// on /app/{key} (pusher.go): it returns the app id of a key, false for a key no
	// app has (the client then gets pusher:error 4001 after its 101). It runs on the
	// loop: it must be fast and must not block. Nil: /app/ is 404 like any other path.
	PusherApp func(key string) (appID string, ok bool)
	// OnPusherMessage receives every message of a Pusher connection but pusher:ping,
	// which the loop answers itself: subscribe, unsubscribe, signin, client events.
	// It runs on c's loop; payload is valid only during the call; it must not block.
	OnPusherMessage func(c *Conn, payload []byte)
	// PusherActivityTimeout is the activity_timeout a Pusher client is told, and how
	// long one may be silent before the server sends it pusher:ping. Zero: 120s.
	PusherActivityTimeout time.Duration
	// PusherPongTimeout is how long a Pusher client has to answer the server's
	// pusher:ping (any message counts) before it is closed with 4201. Zero: 30s.
	PusherPongTimeout time.Duration
	// RoomLinger, when positive, gathers each loop's messages to a room for up to
	// this long and writes them to each member in one write (linger.go): fewer
	// writes for a busy room, each message up to RoomLinger later. Zero: off. At
	// most 1s.
	RoomLinger time.Duration

	// Metrics is the set metrics are registered in. Nil: the default set.
	Metrics *metrics.Set
	// Logger receives connection-level warnings (never per message). Nil: slog.Default().
	Logger *slog.Logger
}

// PresenceKind says whether OnPresence is about a user or a room.
type PresenceKind uint8

const (
	PresenceUser PresenceKind = iota
	PresenceRoom
)

// CloseAbnormal (1006) is never sent: Config.OnClose reports it for a connection
// that ended without a close frame either way.
const CloseAbnormal uint16 = 1006

// Close codes the gateway sends besides the RFC 6455 ones. docs/protocol.md lists them.
const (
	// CloseReplaced: the user opened more than MaxConnsPerUser connections; the oldest
	// goes. Clients should not reconnect automatically.
	CloseReplaced uint16 = 4000
	// CloseKicked: an operator or service closed the connection through the API.
	CloseKicked uint16 = 4001
	// CloseTokenExpired: the token's exp passed; reconnect with a fresh token.
	CloseTokenExpired uint16 = 4003
	// CloseSlowConsumer is reserved for a client that did not read fast enough. The
	// gateway drops such a connection without a close frame, since its outbound
	// buffer is already over the bound; clients that see 4008 should reconnect.
	CloseSlowConsumer uint16 = 4008
)

// OpenFilesLimit is this process's open-files limit (the soft RLIMIT_NOFILE), which
// the default connection caps of the client and API ports are shares of; false if
// it cannot be read.
func OpenFilesLimit() (uint64, bool) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return 0, false
	}
	return uint64(lim.Cur), true
}

// FDBudget is the default connection cap for a process allowed limit open files: the
// limit less a reserve for API callers, cluster links, listeners and logs of 5%,
// at least 64 and at most 700 descriptors (20,000 files: 19,300 clients and room for
// 600 API connections). Go raises the soft limit to the hard limit at start.
func FDBudget(limit uint64) int {
	if limit > math.MaxInt32 {
		return math.MaxInt32 // "unlimited": no cap in practice
	}
	reserve := min(max(limit/20, 64), 700)
	if limit <= reserve {
		return 1
	}
	return int(limit - reserve)
}

// Defaults returns the values zero fields of a Config stand for, where they are
// fixed (Loops and MaxConns follow the machine and stay 0 here). New fills zero
// fields from it, and flags show it, so each default is written once.
func Defaults() Config {
	return Config{
		Addrs:            []string{":8080"},
		MaxConnsPerUser:  10,
		MaxMessage:       1 << 20,
		MaxPendingBytes:  256 << 20,
		MaxOutbound:      512 << 10,
		MaxQueue:         65536,
		MaxQueueBytes:    64 << 20,
		MaxRequestBytes:  wsproto.DefaultMaxRequestBytes,
		HandshakeTimeout: 10 * time.Second,
		PingInterval:     30 * time.Second,
		IdleTimeout:      75 * time.Second,
		CloseTimeout:     5 * time.Second,
		Deflate:          true,
		DeflateMinBytes:  256,

		PusherActivityTimeout: 120 * time.Second,
		PusherPongTimeout:     30 * time.Second,
	}
}

func (c *Config) withDefaults() (Config, error) {
	cfg := *c
	d := Defaults()
	if len(cfg.Addrs) == 0 {
		cfg.Addrs = d.Addrs
	}
	if cfg.Loops <= 0 {
		cfg.Loops = runtime.GOMAXPROCS(0)
	}
	if cfg.NodeID == "" {
		return cfg, errors.New("loop: Config.NodeID is required")
	}
	if cfg.Authenticate == nil {
		return cfg, errors.New("loop: Config.Authenticate is required")
	}
	switch {
	case cfg.MaxConns == 0:
		if limit, ok := OpenFilesLimit(); ok {
			cfg.MaxConns = FDBudget(limit)
		}
	case cfg.MaxConns < 0:
		cfg.MaxConns = 0 // no cap
	}
	if cfg.MaxConnsPerUser <= 0 {
		cfg.MaxConnsPerUser = d.MaxConnsPerUser
	}
	if cfg.MaxMessage <= 0 {
		cfg.MaxMessage = d.MaxMessage
	}
	if cfg.MaxPendingBytes <= 0 {
		cfg.MaxPendingBytes = d.MaxPendingBytes
	}
	if cfg.MaxOutbound <= 0 {
		cfg.MaxOutbound = d.MaxOutbound
	}
	if cfg.MaxQueue <= 0 {
		cfg.MaxQueue = d.MaxQueue
	}
	if cfg.MaxQueueBytes <= 0 {
		cfg.MaxQueueBytes = d.MaxQueueBytes
	}
	if cfg.MaxRequestBytes <= 0 {
		cfg.MaxRequestBytes = d.MaxRequestBytes
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = d.HandshakeTimeout
	}
	if cfg.PingInterval <= 0 {
		cfg.PingInterval = d.PingInterval
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = d.IdleTimeout
	}
	if cfg.IdleTimeout <= cfg.PingInterval {
		return cfg, fmt.Errorf("loop: Config.IdleTimeout (%v) must be longer than PingInterval (%v)", cfg.IdleTimeout, cfg.PingInterval)
	}
	if cfg.DeflateMinBytes <= 0 {
		cfg.DeflateMinBytes = d.DeflateMinBytes
	}
	if cfg.CloseTimeout <= 0 {
		cfg.CloseTimeout = d.CloseTimeout
	}
	if cfg.PusherActivityTimeout <= 0 {
		cfg.PusherActivityTimeout = d.PusherActivityTimeout
	}
	if cfg.PusherActivityTimeout < time.Second {
		return cfg, fmt.Errorf("loop: Config.PusherActivityTimeout (%v) must be at least 1s: clients are told it in whole seconds", cfg.PusherActivityTimeout)
	}
	if cfg.PusherPongTimeout <= 0 {
		cfg.PusherPongTimeout = d.PusherPongTimeout
	}
	if cfg.RoomLinger < 0 || cfg.RoomLinger > time.Second {
		return cfg, fmt.Errorf("loop: Config.RoomLinger (%v) must be from 0 (off) to 1s", cfg.RoomLinger)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.GetDefaultSet()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return cfg, nil
}
