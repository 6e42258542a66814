package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"sort"
	"strings"

	"longlink/cluster"
	"longlink/connhook"
	"longlink/node"
	"longlink/pusher"
	"longlink/upstream"
	"longlink/webhook"
)

// listFlag is a repeatable flag; from the environment or a config file it takes a
// comma-separated list. The first value given replaces the default.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error {
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*l = append(*l, p)
		}
	}
	return nil
}

// setList wraps a listFlag so the first Set replaces the default instead of appending.
type setList struct {
	l   *listFlag
	set bool
}

func (s *setList) String() string {
	if s.l == nil {
		return ""
	}
	return s.l.String()
}
func (s *setList) Set(v string) error {
	if !s.set {
		*s.l = nil
		s.set = true
	}
	return s.l.Set(v)
}

// businessFlag is the repeatable --business NAME=URL[,key=value...]; from the
// environment or a config file line it takes several specs separated by ';' (a spec
// holds commas). Each Set appends; a spec that does not parse is refused, naming
// the part that is wrong. String masks the secrets (--print-config).
type businessFlag struct {
	l   *[]upstream.Business
	set bool
}

func (b *businessFlag) String() string {
	if b.l == nil {
		return ""
	}
	specs := make([]string, len(*b.l))
	for i, x := range *b.l {
		specs[i] = x.String()
	}
	return strings.Join(specs, ";")
}

func (b *businessFlag) Set(v string) error {
	if !b.set {
		*b.l = nil
		b.set = true
	}
	for _, spec := range strings.Split(v, ";") {
		if spec = strings.TrimSpace(spec); spec == "" {
			continue
		}
		x, err := upstream.ParseBusiness(spec)
		if err != nil {
			return err
		}
		for _, y := range *b.l {
			if y.Name == x.Name {
				return fmt.Errorf("business %q is given twice", x.Name)
			}
		}
		*b.l = append(*b.l, x)
	}
	return nil
}

// pusherAppFlag is the repeatable --pusher-app id:key:secret[,option...]; from the
// environment or a config file line it takes several specs separated by ';'. Each
// spec is checked when given (pusher.ParseApp), and two apps may not share an id or
// a key. String masks the secrets (--print-config).
type pusherAppFlag struct {
	l     *[]pusher.App
	specs []string // as given, for String
	set   bool
}

func (p *pusherAppFlag) String() string {
	masked := make([]string, len(p.specs))
	for i, spec := range p.specs {
		creds, opts, hasOpts := strings.Cut(spec, ",")
		parts := strings.SplitN(creds, ":", 3)
		masked[i] = parts[0] + ":" + parts[1] + ":****"
		if hasOpts {
			masked[i] += "," + opts
		}
	}
	return strings.Join(masked, ";")
}

func (p *pusherAppFlag) Set(v string) error {
	if !p.set {
		*p.l, p.specs, p.set = nil, nil, true
	}
	for _, spec := range strings.Split(v, ";") {
		if spec = strings.TrimSpace(spec); spec == "" {
			continue
		}
		app, err := pusher.ParseApp(spec)
		if err != nil {
			return err
		}
		if err := pusher.CheckApps(append(slices.Clone(*p.l), app)); err != nil {
			return err
		}
		*p.l = append(*p.l, app)
		p.specs = append(p.specs, spec)
	}
	return nil
}

// serveOptions is what `longlink serve` parses: the node's Config, which flags fill
// directly, and the few settings that only the command has.
type serveOptions struct {
	cfg node.Config

	configFile  string
	printConfig bool
	demo        bool
	demoPush    bool
	logFormat   string
	logLevel    string
}

// bytesFlag is a []byte flag (the token secret) set from a string.
type bytesFlag []byte

func (b *bytesFlag) String() string     { return string(*b) }
func (b *bytesFlag) Set(v string) error { *b = []byte(v); return nil }

// secretFlags are masked by --print-config.
var secretFlags = map[string]bool{"token-secret": true, "api-key": true, "cluster-key": true, "webhook-secret": true, "connect-hook-secret": true}

// eventsFlag is --webhook-events: a comma list of event types, each checked when
// given, so an unknown one stops the start with its name.
type eventsFlag struct{ l *[]string }

func (e eventsFlag) String() string {
	if e.l == nil {
		return ""
	}
	return strings.Join(*e.l, ",")
}
func (e eventsFlag) Set(v string) error {
	ev, err := webhook.ParseEvents(v)
	if err != nil {
		return err
	}
	*e.l = ev
	return nil
}

// serveFlags binds every flag to its field in node.Config, with the packages' own
// defaults (node.Defaults), so no default is written here and no field is copied.
func serveFlags() (*serveOptions, *flag.FlagSet) {
	d := node.Defaults()
	o := &serveOptions{cfg: d}
	c := &o.cfg
	list := func(l *[]string) flag.Value { return &setList{l: (*listFlag)(l)} }
	fs := flag.NewFlagSet("longlink serve", flag.ContinueOnError)
	fs.StringVar(&o.configFile, "config", "", "optional config file, lowest precedence: .toml, .yaml/.yml or .json by its extension, else one \"name = value\" per line; keys are the flag names (docs/deploy.md, Config file)")
	fs.BoolVar(&o.printConfig, "print-config", false, "print the effective configuration (secrets masked) and exit")

	fs.Var(list(&c.Loop.Addrs), "client-addr", "WebSocket listen address; repeat (or comma-separate) to listen on several ports")
	fs.StringVar(&c.ClientAdvertise, "client-advertise", "", "client host:port (or a full URL such as wss://ws.example.com/ws behind TLS) that GET /v1/endpoint hands to clients (default: the first --client-addr)")
	fs.StringVar(&c.API.Addr, "api-addr", d.API.Addr, "internal HTTP API address (/v1/push, /metrics, /healthz, /readyz, /demo/)")
	fs.IntVar(&c.API.MaxConns, "api-max-conns", 0, "connection cap for the API port; over it a new connection gets a JSON 503 and is closed (0: the reserve --max-conns leaves, less 64, 32 to 1024; -1: no cap)")
	fs.DurationVar(&c.API.IdleTimeout, "api-idle-timeout", d.API.IdleTimeout, "close an API keep-alive connection that sends no request for this long")
	fs.DurationVar(&c.API.ReadTimeout, "api-read-timeout", d.API.ReadTimeout, "close an API connection whose first byte, or a whole request once it began, takes longer than this (408)")
	fs.Var((*bytesFlag)(&c.TokenSecret), "token-secret", "HS256 secret that client tokens are signed with, at least 16 bytes (default: a random development secret, printed)")
	fs.Var(list(&c.Push.APIKeys), "api-key", "API key services send as \"Authorization: Bearer KEY\"; repeat for several (default: a random development key, printed)")
	fs.StringVar(&c.NodeName, "node-name", "", "unique node name in the cluster; prefixes connection ids (default: hostname-xxxx)")

	fs.IntVar(&c.Loop.Loops, "loops", 0, "event loops (default: one per CPU)")
	fs.IntVar(&c.Loop.MaxConns, "max-conns", 0, "connection cap for this node; over it clients get 503 with a hint where to go (0: the open-files limit less a reserve of 5%, 64 to 700, for API, cluster and logs; -1: no cap)")
	fs.IntVar(&c.Loop.MaxConnsPerUser, "max-conns-per-user", d.Loop.MaxConnsPerUser, "connections one user may hold on a node; the oldest is closed with 4000")
	fs.IntVar(&c.Loop.MaxMessage, "max-message", d.Loop.MaxMessage, "largest client message in bytes, fragments reassembled (over it: close 1009)")
	fs.IntVar(&c.Loop.MaxOutbound, "max-outbound", d.Loop.MaxOutbound, "bytes that may wait for one slow client before it is closed as a slow consumer")
	fs.BoolVar(&c.Loop.Deflate, "deflate", d.Loop.Deflate, "accept permessage-deflate offers (RFC 7692, as browsers make them): each pushed message is compressed once for all the clients that negotiated it; false declines every offer")
	fs.DurationVar(&c.Loop.RoomLinger, "room-linger", d.Loop.RoomLinger, "gather each loop's messages to a room for up to this long and write them to each member as one write: fewer writes for a busy room, each message up to this much later (0: off; at most 1s)")
	fs.IntVar(&c.Loop.DeflateMinBytes, "deflate-min-bytes", d.Loop.DeflateMinBytes, "smallest message payload, in bytes, sent compressed to clients that negotiated permessage-deflate; smaller ones go as they are")
	fs.Int64Var(&c.Loop.MaxPendingBytes, "max-pending-bytes", d.Loop.MaxPendingBytes, "bytes all clients together may hold in messages they have not finished sending; a client that would go over is closed with 1013")
	fs.Int64Var(&c.Push.MaxBodyBytes, "max-body", d.Push.MaxBodyBytes, "largest API request body in bytes (over it: 413)")
	fs.Var(list(&c.Loop.AllowedOrigins), "allowed-origins", "Origin values allowed to connect, comma-separated (default: any)")
	fs.DurationVar(&c.Loop.HandshakeTimeout, "handshake-timeout", d.Loop.HandshakeTimeout, "drop clients that have not finished the WebSocket handshake within this")
	fs.DurationVar(&c.Loop.PingInterval, "ping-interval", d.Loop.PingInterval, "ping a client that has been silent this long")
	fs.DurationVar(&c.Loop.IdleTimeout, "idle-timeout", d.Loop.IdleTimeout, "close a client silent this long (pongs count)")
	fs.DurationVar(&c.DrainTimeout, "drain-timeout", d.DrainTimeout, "on SIGTERM, how long to wait for clients to close after close 1001")
	fs.BoolVar(&c.Loop.Echo, "echo", false, "send every client data message back to its connection (conformance tests)")
	fs.BoolVar(&o.demo, "demo", true, "serve the demo page at /demo/ on the API address")
	fs.BoolVar(&o.demoPush, "demo-push", false, "let the demo page send pushes with the node's API key (always on when the key is a generated development key)")

	fs.Var(list(&c.Cluster.Join), "join", "peers to join: host:port list or a DNS name resolving to several peers (starts clustering)")
	fs.StringVar(&c.Cluster.GossipAddr, "gossip-addr", "", "gossip bind address, memberlist TCP and UDP (starts clustering; default :7946 with --join, none without: a standalone node opens no cluster port)")
	fs.StringVar(&c.Cluster.GossipAdvertise, "gossip-advertise", "", "gossip address peers should use (default: derived from --gossip-addr)")
	fs.StringVar(&c.Cluster.ForwardAddr, "forward-addr", "", "address for push forwarding between nodes (default: gossip port + 1)")
	fs.StringVar(&c.Cluster.ClusterName, "cluster-name", d.Cluster.ClusterName, "cluster name; nodes with another name never merge")
	fs.StringVar(&c.Cluster.ClusterKey, "cluster-key", "", "cluster secret: base64 of 16, 24 or 32 random bytes (longlink keygen prints one); encrypts gossip and authenticates forwarding; required unless the cluster listens on loopback only")
	fs.IntVar(&c.Cluster.MaxPeerRoutes, "cluster-max-routes", d.Cluster.MaxPeerRoutes, "users plus rooms one peer may advertise; a peer over it is disconnected and treated as holding everyone")

	fs.IntVar(&c.Hub.Replicas, "replicas", d.Hub.Replicas, "nodes that store each stream's history, its owner included; a push is answered once stored on that many (fewer when fewer are alive)")
	fs.IntVar(&c.Hub.History.Size, "history-size", d.Hub.History.Size, "messages kept per stream (user, room, all) for clients that reconnect")
	fs.DurationVar(&c.Hub.History.TTL, "history-ttl", d.Hub.History.TTL, "how long a message is kept for recovery unless its push says \"ttl\"")
	fs.Int64Var(&c.Hub.History.MaxBytes, "history-max-bytes", d.Hub.History.MaxBytes, "bytes of history this node keeps for all streams together; over it the oldest messages go first")
	fs.IntVar(&c.Hub.MaxReceipts, "max-receipts", d.Hub.MaxReceipts, "receipt targets (each user or connection a push with ack, wait or receipt names) this node keeps, each for its message's ttl; the oldest receipts go first beyond it (about 220 bytes a target)")
	fs.DurationVar(&c.Hub.StoreTimeout, "store-timeout", d.Hub.StoreTimeout, "how long a push keeps trying to store its message on its streams' owners (failover) before it is answered 503")

	fs.Var(&pusherAppFlag{l: &c.Pusher.Apps}, "pusher-app", "a Pusher Channels app this node serves to pusher-js, Laravel Echo and the Pusher server SDKs: ID:KEY:SECRET[,client-events][,max-connections=N][,client-event-rate=10][,activity-timeout=120s][,max-channels=100][,max-presence-members=100]; repeat for several (';' separates them in the environment and config file); see docs/pusher.md")
	fs.Var(&businessFlag{l: &c.Upstream.Businesses}, "business", "a business client requests go to: NAME=URL[,timeout=5s][,inflight=256][,pool=64][,secret=S][,subscribe=HOOK_URL][,rate=R][,burst=B][,rooms=32][,max-reply=65536]; repeat for several (';' separates them in the environment and config file); see docs/api.md")
	fs.Float64Var(&c.Upstream.ClientRate, "client-rate", d.Upstream.ClientRate, "requests a second one connection may make (send, subscribe, unsubscribe; not acks); over it: a reply with status 429 (-1: no limit)")
	fs.IntVar(&c.Upstream.ClientBurst, "client-burst", d.Upstream.ClientBurst, "how many of --client-rate's requests may come at once")
	fs.IntVar(&c.Upstream.SubscribeInFlight, "subscribe-inflight", d.Upstream.SubscribeInFlight, "client subscribes that may wait at once for their room stream's owner (cluster); over it: a reply with status 503")
	fs.StringVar(&c.ConnectHook.URL, "connect-hook-url", "", "URL the node POSTs every new connection to before accepting it (token claims, address, headers); the answer may refuse it or add rooms and metadata (docs/api.md, Connect hook). Default: none")
	fs.DurationVar(&c.ConnectHook.Timeout, "connect-hook-timeout", d.ConnectHook.Timeout, "how long the connect hook may take to answer; must be shorter than --handshake-timeout")
	fs.StringVar(&c.ConnectHook.Fail, "connect-hook-fail", d.ConnectHook.Fail, "what a connect hook that times out, cannot be reached, answers 5xx or malformed, or has --connect-hook-max-inflight calls waiting means: open (connect without it) or closed (503 with Retry-After)")
	fs.Var((*bytesFlag)(&c.ConnectHook.Secret), "connect-hook-secret", "secret the connect hook's requests are signed with (X-Longlink-Signature: sha256=HMAC-SHA256 of the body); default: not signed")
	fs.IntVar(&c.ConnectHook.MaxInFlight, "connect-hook-max-inflight", d.ConnectHook.MaxInFlight, "connect hook calls that may wait for an answer at once; over it a new connection gets the --connect-hook-fail policy at once")
	fs.IntVar(&c.ConnectHook.MaxMeta, "connect-hook-max-meta", d.ConnectHook.MaxMeta, "largest metadata object (compact JSON bytes) a connect hook answer may give a connection; a larger one is a malformed answer")
	fs.Var(list(&c.Webhook.URLs), "webhook-url", "URL that receives webhook events as signed JSON batches (POST); repeat for several, each with its own queue")
	if len(c.Webhook.Events) == 0 {
		c.Webhook.Events = append([]string(nil), webhook.Types...)
	}
	fs.Var(eventsFlag{&c.Webhook.Events}, "webhook-events", "webhook events to send, comma-separated: "+strings.Join(webhook.Types, ", ")+" (or all)")
	fs.Var((*bytesFlag)(&c.Webhook.Secret), "webhook-secret", "HMAC-SHA256 key every webhook body is signed with (header "+webhook.HeaderSignature+"); required with --webhook-url")
	fs.IntVar(&c.Webhook.QueueSize, "webhook-queue", d.Webhook.QueueSize, "events that may wait for one webhook URL; more are dropped and counted (longlink_webhook_events_total{outcome=\"dropped_overflow\"})")
	fs.IntVar(&c.Webhook.BatchSize, "webhook-batch", d.Webhook.BatchSize, "most events in one webhook POST")
	fs.DurationVar(&c.Webhook.BatchDelay, "webhook-batch-delay", d.Webhook.BatchDelay, "how long a webhook batch waits for more events after its first")
	fs.DurationVar(&c.Webhook.Timeout, "webhook-timeout", d.Webhook.Timeout, "bound of one webhook POST; a slower answer counts as a failure and is retried")
	fs.DurationVar(&c.Webhook.RetryWindow, "webhook-retry-window", d.Webhook.RetryWindow, "how long a webhook batch is retried (exponential backoff with jitter) before it is dropped and counted; at least 5m")
	fs.DurationVar(&c.Webhook.MaxBackoff, "webhook-max-backoff", d.Webhook.MaxBackoff, "longest wait between two attempts of a webhook batch")
	fs.DurationVar(&c.Hub.PresenceGrace, "presence-grace", d.Hub.PresenceGrace, "how long a user must have no connection on any node before user.offline is sent; a reconnect within it is not an offline")

	fs.BoolVar(&c.API.Pprof, "pprof", false, "serve Go's profiler at /debug/pprof/ on the API address (API key required)")
	fs.StringVar(&o.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn, error")

	fs.Usage = func() {
		w := fs.Output()
		fmt.Fprint(w, `Usage: longlink serve [flags]

Runs one gateway node. Every flag also reads LONGLINK_<NAME> from the environment
(--client-addr: LONGLINK_CLIENT_ADDR) and its name from --config FILE (.toml, .yaml,
.yml or .json by the extension, else "name = value" lines).
Precedence: flag, then environment, then config file, then the default.

Flags:
`)
		fs.PrintDefaults()
	}
	return o, fs
}

func envName(flagName string) string {
	return "LONGLINK_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parseLayered parses args, then fills every flag not given from the environment and
// then from the config file.
func parseLayered(fs *flag.FlagSet, args []string, lookup func(string) (string, bool)) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (flags start with --)", fs.Arg(0))
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] {
			return
		}
		if v, ok := lookup(envName(f.Name)); ok {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", envName(f.Name), v, err))
			}
			given[f.Name] = true
		}
	})
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	file := fs.Lookup("config").Value.String()
	if file == "" {
		return nil
	}
	return applyConfig(fs, file, given)
}

func printConfig(w io.Writer, fs *flag.FlagSet, devSecret, devKey bool) {
	var names []string
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name != "print-config" {
			names = append(names, f.Name)
		}
	})
	sort.Strings(names)
	for _, name := range names {
		v := fs.Lookup(name).Value.String()
		switch {
		case name == "token-secret" && devSecret, name == "api-key" && devKey:
			v = "(random development value)"
		case secretFlags[name] && v != "":
			v = "****"
		}
		fmt.Fprintf(w, "%s = %s\n", name, v)
	}
}

func (o *serveOptions) nodeConfig(log *slog.Logger) (node.Config, error) {
	if len(o.cfg.Loop.Addrs) == 0 {
		return node.Config{}, errors.New("--client-addr: at least one address is required")
	}
	if err := o.checkSecrets(); err != nil {
		return node.Config{}, err
	}
	if l := o.cfg.Loop; l.MaxPendingBytes > 0 && l.MaxMessage > 0 && l.MaxPendingBytes < int64(l.MaxMessage) {
		return node.Config{}, fmt.Errorf("--max-pending-bytes %d is smaller than --max-message %d: one honest client sending a full-size message would be closed with 1013; raise --max-pending-bytes or lower --max-message",
			l.MaxPendingBytes, l.MaxMessage)
	}
	if err := o.checkCluster(log); err != nil {
		return node.Config{}, err
	}
	if err := o.checkConnectHook(); err != nil {
		return node.Config{}, err
	}
	if err := o.checkWebhook(); err != nil {
		return node.Config{}, err
	}
	cfg := o.cfg
	cfg.Logger = log
	return cfg, nil
}

// checkCluster validates the cluster flags with errors that name them. A node
// clusters only when asked (--join or --gossip-addr), and one that listens for
// peers beyond loopback must have a real key: gossip and forwarding are then
// authenticated, and no process that lacks the key can join, push or kick.
func (o *serveOptions) checkCluster(log *slog.Logger) error {
	if _, err := cluster.ParseKey(o.cfg.Cluster.ClusterKey); err != nil {
		return fmt.Errorf("--cluster-key: %w", err)
	}
	if o.cfg.Cluster.MaxPeerRoutes < 1 {
		return fmt.Errorf("--cluster-max-routes %d: must be at least 1", o.cfg.Cluster.MaxPeerRoutes)
	}
	gossip := o.cfg.Cluster.GossipAddr
	if gossip == "" && len(o.cfg.Cluster.Join) > 0 {
		gossip = ":7946"
	}
	if gossip == "" {
		const off = "%s %q: clustering is off (give --join or --gossip-addr to start it)"
		switch {
		case o.cfg.Cluster.ForwardAddr != "":
			return fmt.Errorf(off, "--forward-addr", o.cfg.Cluster.ForwardAddr)
		case o.cfg.Cluster.GossipAdvertise != "":
			return fmt.Errorf(off, "--gossip-advertise", o.cfg.Cluster.GossipAdvertise)
		}
		return nil
	}
	forward := o.cfg.Cluster.ForwardAddr
	if forward == "" {
		host, _, _ := net.SplitHostPort(gossip)
		forward = net.JoinHostPort(host, "0") // only the host matters here
	}
	if o.cfg.Cluster.ClusterKey == "" {
		if cluster.KeyRequired(gossip, forward) {
			return fmt.Errorf("--cluster-key is required: the node would listen for peers on gossip %q and forwarding %q, "+
				"reachable from other hosts; set --cluster-key \"$(longlink keygen)\" (the same on every node), "+
				"or use loopback addresses (--gossip-addr 127.0.0.1:7946) for a development cluster on one host", gossip, forward)
		}
		log.Warn("no --cluster-key: a loopback development cluster; any process on this host can join it")
	}
	return nil
}

// checkConnectHook validates the connect hook's flags with errors that name them.
func (o *serveOptions) checkConnectHook() error {
	h, hs := o.cfg.ConnectHook, o.cfg.Loop.HandshakeTimeout
	switch {
	case h.Fail != connhook.FailOpen && h.Fail != connhook.FailClosed:
		return fmt.Errorf("--connect-hook-fail %q: want open or closed", h.Fail)
	case h.Timeout <= 0:
		return fmt.Errorf("--connect-hook-timeout %v: must be positive", h.Timeout)
	case h.URL != "" && hs > 0 && h.Timeout >= hs:
		return fmt.Errorf("--connect-hook-timeout %v must be shorter than --handshake-timeout %v: a client would be dropped before the hook's answer counts", h.Timeout, hs)
	case h.MaxInFlight < 1:
		return fmt.Errorf("--connect-hook-max-inflight %d: must be at least 1", h.MaxInFlight)
	case h.MaxMeta < 2:
		return fmt.Errorf("--connect-hook-max-meta %d: must be at least 2 (\"{}\")", h.MaxMeta)
	case h.URL == "" && len(h.Secret) > 0:
		return errors.New("--connect-hook-secret without --connect-hook-url: there is no hook to sign for")
	}
	if h.URL != "" {
		if u, err := url.Parse(h.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("--connect-hook-url %q: want an http:// or https:// URL", h.URL)
		}
	}
	return nil
}

// checkWebhook validates the webhook flags with errors that name them.
func (o *serveOptions) checkWebhook() error {
	w := o.cfg.Webhook
	if len(w.URLs) == 0 {
		return nil
	}
	if len(w.Secret) == 0 {
		return errors.New("--webhook-secret is required with --webhook-url: receivers check every body's signature; generate one with: openssl rand -hex 32")
	}
	if w.RetryWindow < webhook.MinRetryWindow {
		return fmt.Errorf("--webhook-retry-window %v: must be at least %v, so a receiver may be down that long without losing events", w.RetryWindow, webhook.MinRetryWindow)
	}
	if w.QueueSize < 1 || w.BatchSize < 1 {
		return fmt.Errorf("--webhook-queue %d and --webhook-batch %d must be at least 1", w.QueueSize, w.BatchSize)
	}
	if o.cfg.Hub.PresenceGrace <= 0 {
		return fmt.Errorf("--presence-grace %v must be positive", o.cfg.Hub.PresenceGrace)
	}
	return nil
}

// listenFlags maps node.ListenError fields to the flags that set them.
var listenFlags = map[string]string{
	"ClientAddrs": "--client-addr",
	"APIAddr":     "--api-addr",
	"GossipAddr":  "--gossip-addr",
	"ForwardAddr": "--forward-addr",
}

// startError words a start failure for an operator: which flag to change.
func startError(err error) string {
	le, ok := errors.AsType[*node.ListenError](err)
	if !ok {
		return err.Error()
	}
	return fmt.Sprintf("cannot listen on %s (%s): %v; choose another address with %s "+
		"(several nodes on one host each need their own --client-addr, --api-addr, --gossip-addr and --forward-addr)",
		le.Addr, listenFlags[le.Field], le.Err, listenFlags[le.Field])
}
