package bench

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// Options is one bench run, as parsed from the command line.
type Options struct {
	Scenario    string        `json:"scenario"`
	Targets     []string      `json:"targets"`
	APIs        []string      `json:"apis"`
	TokenSecret string        `json:"-"`
	APIKey      string        `json:"-"`
	Conns       int           `json:"conns"`
	Duration    time.Duration `json:"duration_ns"`
	JSONPath    string        `json:"json_path,omitempty"`
	HTMLPath    string        `json:"html_path,omitempty"`

	Users        int      `json:"users,omitempty"`
	ConnsPerUser int      `json:"conns_per_user"`
	Callers      int      `json:"callers,omitempty"`
	Rounds       int      `json:"rounds,omitempty"`
	Rate         float64  `json:"rate"`      // connections per second, 0 = unlimited
	PushRate     float64  `json:"push_rate"` // pushes per second, 0 = closed loop
	Size         int      `json:"size"`      // payload bytes
	Workers      int      `json:"workers"`
	SourceSpec   string   `json:"source_spec,omitempty"`
	SourceIPs    []string `json:"source_ips"`

	HandshakeTimeout time.Duration `json:"handshake_timeout_ns"`
	PingInterval     time.Duration `json:"ping_interval_ns"`
	RoundTimeout     time.Duration `json:"round_timeout_ns"`
	BatchWait        time.Duration `json:"batch_wait_ns"`
	// Protocol is "plain" (every push is one message of the pushed bytes) or
	// "v2" (welcome, then JSON envelopes with stream positions).
	Protocol string `json:"protocol"`
	// History false adds "history":false to every push (not stored).
	History bool `json:"history"`
	// Ack (push, --protocol v2) adds "ack":true to every push, and every v2
	// client acknowledges each push it receives, cumulatively per stream.
	Ack bool `json:"ack,omitempty"`
	// Wait (push) adds "wait":"<Wait>" to every push: the API answers once every
	// target acknowledged (with Ack) or was written to a connection (without),
	// or when Wait passed.
	Wait time.Duration `json:"wait_ns,omitempty"`
	// Messages is, for reconnect, how many pushes each user gets while its
	// clients are away.
	Messages int `json:"messages,omitempty"`
	// ReconnectTargets, for reconnect, are where the clients come back (default:
	// where they were): another node, as after their node died.
	ReconnectTargets []string `json:"reconnect_targets,omitempty"`
	// KillPID, for reconnect, is a node process the bench kills (SIGKILL) right after
	// the drop: the clients' node really dies, and the streams it owned fail over.
	KillPID int `json:"kill_pid,omitempty"`
	// Business is, for upstream, the business the clients send to.
	Business string `json:"business,omitempty"`
	// BackendAddr is, for upstream, where the scenario runs the bundled back-end
	// ("": an external one, such as `longlink bench backend`).
	BackendAddr string `json:"backend_addr,omitempty"`
	// BackendDelay is how long the bundled back-end waits before each answer.
	BackendDelay time.Duration `json:"backend_delay_ns,omitempty"`
	// Floor is, for upstream, when the floor phase runs: "after" the gateway
	// phase, "before" it, or "off". The floor is the same closed loop POSTing the
	// same body straight to the bundled back-end (bench/upstreamfloor.go).
	Floor string `json:"floor,omitempty"`
	// FloorTargets and FloorAPIs, for connect, broadcast and push, are the floor
	// server's client and API addresses (bench/floor -role push): the scenario runs again
	// against it after the gateway, and the report holds both, with the ratios.
	FloorTargets []string `json:"floor_targets,omitempty"`
	FloorAPIs    []string `json:"floor_apis,omitempty"`
	// Room, for push, puts every connection in this room (its token's rooms claim)
	// and pushes to the room instead of to random users: a room of --conns members.
	Room string `json:"room,omitempty"`
	// InProcess runs workers as goroutines instead of child processes (for
	// tests and for embedding; CPU figures then cover the whole process).
	InProcess bool `json:"in_process"`

	// The pusher scenario (bench/pusher.go). PusherApp is --pusher-app
	// id:key:secret[,options] as the node was given it; PusherAppID and
	// PusherKey are its first two parts (the secret stays out of reports).
	PusherApp   string `json:"-"`
	PusherAppID string `json:"pusher_app_id,omitempty"`
	PusherKey   string `json:"pusher_key,omitempty"`
	// Channels is how many channels the connections subscribe to: connection i
	// to channel i mod Channels.
	Channels int `json:"channels,omitempty"`
	// ChannelKind is "public" or "private" (auth signed locally with the secret).
	ChannelKind string `json:"channel_kind,omitempty"`
	// EventBytes is each event's data length (at least its stamp).
	EventBytes int `json:"event_bytes,omitempty"`
}

type multiFlag struct{ v *[]string }

func (m multiFlag) String() string {
	if m.v == nil {
		return ""
	}
	return strings.Join(*m.v, ",")
}

func (m multiFlag) Set(s string) error {
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*m.v = append(*m.v, p)
		}
	}
	return nil
}

const usageText = `longlink bench - load generator for longlink nodes and clusters

Usage:
  longlink bench connect   [flags]   open N connections at --rate, hold them for --duration
  longlink bench broadcast [flags]   open N, push one message to all --rounds times
  longlink bench push      [flags]   U users x C conns; R API callers push to random users for --duration
  longlink bench reconnect [flags]   N v2 clients drop at once, M pushes each while away, all resume with ?since=
  longlink bench upstream  [flags]   N v2 clients send requests to a business through the gateway, closed loop
  longlink bench pusher    [flags]   N Pusher clients subscribe to --channels; events through the signed Pusher HTTP API
  longlink bench backend   [flags]   run the bundled test back-end alone (--addr, --delay, --secret)
  longlink bench cluster   [flags]   start N local nodes and run every scenario across them (longlink bench cluster --help)

Examples:
  # 19,000 idle connections against one node, server memory per connection
  longlink bench connect --target 127.0.0.1:8080 --api 127.0.0.1:8081 \
      --token-secret s3cret --conns 19000 --rate 5000 --duration 30s --html connect.html

  # a local 6-node cluster: 100,000 connections spread over 6 ports and 10 source IPs
  longlink bench connect --target 127.0.0.1:8080 --target 127.0.0.1:8090 ... \
      --api 127.0.0.1:8081 --api 127.0.0.1:8091 ... --conns 100000 --source-ips 10

  # time to reach everyone, 5 rounds
  longlink bench broadcast --target 127.0.0.1:8080 --api 127.0.0.1:8081 \
      --token-secret s3cret --api-key k --conns 19000 --rounds 5 --json bc.json

  # the iQIYI scenario: 10 conns per user, 600 callers, 120 s (closed loop)
  longlink bench push --target 127.0.0.1:8080 --api 127.0.0.1:8081 --token-secret s3cret \
      --api-key k --users 1900 --conns-per-user 10 --callers 600 --duration 120s
  # open loop at 5,000 pushes/s, latency from each push's scheduled time
  longlink bench push ... --push-rate 5000
  # the same over the v2 protocol (welcome + JSON envelopes), pushes not stored
  longlink bench push ... --push-rate 5000 --protocol v2 --history=false
  # acknowledged pushes: every client acks, the API answers once acked (the QR-code case)
  longlink bench push ... --push-rate 5000 --protocol v2 --ack --wait 5s

  # reconnect storm: 19,000 v2 clients drop at once (RST, as if their node died),
  # 10 pushes per user while away, all reconnect at once with ?since=
  longlink bench reconnect --target 127.0.0.1:8080 --api 127.0.0.1:8081 --token-secret s3cret \
      --api-key k --conns 19000 --messages 10 --workers 2

  # upstream: the bundled back-end on 127.0.0.1:9000, 64 clients for 20 s
  longlink serve --business bench=http://127.0.0.1:9000/ ... &
  longlink bench upstream --target 127.0.0.1:8080 --api 127.0.0.1:8081 --token-secret s3cret \
      --conns 64 --duration 20s
  # then the floor: the same 64 workers POST the same body straight to the back-end
  # for another 20 s (--floor before|after|off), reported side by side with ratios

  # Pusher: 10,000 clients over 100 channels, 1,000 events/s through the Pusher
  # HTTP API for 30 s; then the native comparison (the same fan-out through
  # /v1/push to rooms, plain clients) and the ratios
  longlink serve --pusher-app 1:key:secret ... &
  longlink bench pusher --target 127.0.0.1:8080 --api 127.0.0.1:8081 --pusher-app 1:key:secret \
      --token-secret s3cret --api-key k --conns 10000 --channels 100 --push-rate 1000 --duration 30s

Flags:
`

func parseOptions(args []string, stderr io.Writer) (Options, error) {
	var o Options
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
			printUsage(stderr)
			return o, flag.ErrHelp
		}
		printUsage(stderr)
		return o, errors.New("missing scenario: connect, broadcast, push, reconnect, upstream or pusher")
	}
	o.Scenario = args[0]
	switch o.Scenario {
	case "connect", "broadcast", "push", "reconnect", "upstream", "pusher":
	case "help":
		printUsage(stderr)
		return o, flag.ErrHelp
	default:
		printUsage(stderr)
		return o, fmt.Errorf("unknown scenario %q: want connect, broadcast, push, reconnect, upstream or pusher", o.Scenario)
	}
	fs := newFlagSet(&o, stderr)
	if err := fs.Parse(args[1:]); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	return o, o.finish(set)
}

func printUsage(w io.Writer) {
	fmt.Fprint(w, usageText)
	var o Options
	fs := newFlagSet(&o, w)
	fs.SetOutput(w)
	fs.PrintDefaults()
}

func newFlagSet(o *Options, out io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("longlink bench", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() { printUsage(out) }
	fs.Var(multiFlag{&o.Targets}, "target", "client `HOST:PORT` of a node (repeatable; connections are spread over targets)")
	fs.Var(multiFlag{&o.APIs}, "api", "API `HOST:PORT` of a node for pushes and /metrics (repeatable)")
	fs.StringVar(&o.Room, "room", "", "push: every connection joins room `NAME` (its token's rooms claim) and each push goes to the room, reaching every connection: a busy room of --conns members (with --push-rate: messages a second)")
	fs.Var(multiFlag{&o.FloorTargets}, "floor-target", "connect, broadcast, push: client `HOST:PORT` of the floor server (go run ./bench/floor -role push); the scenario then runs again against it and the report puts both side by side (repeatable)")
	fs.Var(multiFlag{&o.FloorAPIs}, "floor-api", "the floor server's API `HOST:PORT`, with --floor-target (repeatable)")
	fs.StringVar(&o.TokenSecret, "token-secret", os.Getenv("LONGLINK_TOKEN_SECRET"), "HS256 `secret` for client JWTs (env LONGLINK_TOKEN_SECRET)")
	fs.StringVar(&o.APIKey, "api-key", os.Getenv("LONGLINK_API_KEY"), "push API `key` (env LONGLINK_API_KEY)")
	fs.IntVar(&o.Conns, "conns", 1000, "connections to open (push, reconnect: users x conns-per-user)")
	fs.DurationVar(&o.Duration, "duration", 0, "connect: hold time (default 10s); push: push time (default 10s); broadcast: hold after rounds")
	fs.StringVar(&o.JSONPath, "json", "", "write the JSON report to `FILE`")
	fs.StringVar(&o.HTMLPath, "html", "", "write the self-contained HTML report to `FILE`")
	fs.IntVar(&o.Users, "users", 0, "push, reconnect: distinct users (default conns / conns-per-user)")
	fs.IntVar(&o.ConnsPerUser, "conns-per-user", 1, "connections per user id (bench-<n>)")
	fs.IntVar(&o.Callers, "callers", 64, "push: concurrent API callers; reconnect: concurrent batch requests (default 8)")
	fs.IntVar(&o.Rounds, "rounds", 3, "broadcast: messages pushed to everyone")
	fs.Float64Var(&o.Rate, "rate", 5000, "connections opened per second (0 = as fast as possible)")
	fs.Float64Var(&o.PushRate, "push-rate", 0, "push: open loop at this many pushes/s (0 = closed loop)")
	fs.IntVar(&o.Size, "size", 0, "payload bytes (at least the timestamp, ~30 bytes)")
	fs.IntVar(&o.Workers, "workers", 0, "client worker processes (default: enough for the open-files limit)")
	fs.StringVar(&o.SourceSpec, "source-ips", "", "client source addresses: `RANGE` 127.0.0.2-127.0.0.50, a list, or a count from 127.0.0.2 (default: one per 30,000 conns when targets are loopback)")
	fs.DurationVar(&o.HandshakeTimeout, "handshake-timeout", 10*time.Second, "give up on a connection not upgraded after this long")
	fs.DurationVar(&o.PingInterval, "ping-interval", 30*time.Second, "each client pings this often to stay alive")
	fs.DurationVar(&o.RoundTimeout, "round-timeout", 30*time.Second, "broadcast: wait at most this long for a round; push: for the last deliveries; reconnect: for every client to recover (else the run fails)")
	fs.DurationVar(&o.BatchWait, "batch-wait", 100*time.Microsecond, "after a wake-up with few events, clients wait this long to read more per wake-up (less CPU; receipt times may be late by up to this; 0 disables)")
	fs.StringVar(&o.Protocol, "protocol", "plain", "client protocol: plain (each push is one message of the pushed bytes) or v2 (offer longlink.v2: welcome, then JSON envelopes with stream positions); reconnect always speaks v2")
	fs.BoolVar(&o.History, "history", true, "push, broadcast: store pushes in the streams' history; --history=false sends \"history\":false")
	fs.BoolVar(&o.Ack, "ack", false, "push (with --protocol v2): pushes carry \"ack\":true and every client acknowledges each push it receives (cumulative per stream, once per read batch)")
	fs.DurationVar(&o.Wait, "wait", 0, "push: pushes carry \"wait\" of this `DURATION` (at most 30s): the API answers when every target acked (--ack) or was written to a connection, and bench reports that round trip")
	fs.IntVar(&o.Messages, "messages", 10, "reconnect: pushes to each user while its clients are away")
	fs.Var(multiFlag{&o.ReconnectTargets}, "reconnect-target", "reconnect: client `HOST:PORT` the clients come back to (repeatable; default: --target)")
	fs.IntVar(&o.KillPID, "kill-pid", 0, "reconnect: `PID` of the node to kill -9 right after the drop (a node on this host; give --api and --reconnect-target of the others)")
	fs.StringVar(&o.Business, "business", "bench", "upstream: the `NAME` of the business clients send to (the gateway's --business NAME=URL)")
	fs.StringVar(&o.BackendAddr, "backend-addr", "127.0.0.1:9000", "upstream: run the bundled back-end on `HOST:PORT` (\"\": use an external one, e.g. longlink bench backend)")
	fs.DurationVar(&o.BackendDelay, "backend-delay", 0, "upstream: the bundled back-end waits this long before each answer")
	fs.StringVar(&o.Floor, "floor", "after", "upstream: `WHEN` to run the floor (the same loop POSTing straight to the bundled back-end over HTTP/1.1 keep-alive, --duration long): after, before or off; pusher: when to run the native comparison (the same fan-out through /v1/push to rooms)")
	fs.StringVar(&o.PusherApp, "pusher-app", os.Getenv("LONGLINK_PUSHER_APP"), "pusher: the app's credentials `id:key:secret` as the node's --pusher-app gives them (options after a comma are ignored; env LONGLINK_PUSHER_APP)")
	fs.IntVar(&o.Channels, "channels", 100, "pusher: channels the connections subscribe to (connection i to channel i mod N; at most --conns)")
	fs.StringVar(&o.ChannelKind, "channel-kind", "public", "pusher: `KIND` of channel: public (bench-<n>) or private (private-bench-<n>, auth signed by bench with the app secret as an auth endpoint would)")
	fs.IntVar(&o.EventBytes, "event-bytes", 0, "pusher: bytes of each event's data (at least the stamp, ~30 bytes; at most 10,000, the API's limit)")
	fs.BoolVar(&o.InProcess, "in-process", os.Getenv("LONGLINK_BENCH_INPROCESS") == "1", "run workers as goroutines (testing; CPU figures cover the whole process)")
	return fs
}

// finish applies scenario defaults and validates; set names explicit flags.
func (o *Options) finish(set map[string]bool) error {
	if o.Scenario == "pusher" {
		return o.finishPusher(set)
	}
	o.Channels, o.ChannelKind, o.EventBytes = 0, "", 0 // pusher's alone
	if len(o.Targets) == 0 {
		return errors.New("at least one --target HOST:PORT is required")
	}
	for _, t := range append(append(append(append([]string{}, o.Targets...), o.APIs...), o.FloorTargets...), o.FloorAPIs...) {
		if _, _, err := net.SplitHostPort(t); err != nil {
			return fmt.Errorf("bad address %q: %w", t, err)
		}
	}
	if o.Room != "" && o.Scenario != "push" {
		return fmt.Errorf("--room is for push, not %s", o.Scenario)
	}
	if o.Room != "" && len(o.FloorTargets) > 0 {
		return errors.New("--room: the floor server has no rooms; run the floor with to-all broadcasts instead")
	}
	if len(o.FloorTargets) > 0 || len(o.FloorAPIs) > 0 {
		switch {
		case o.Scenario != "connect" && o.Scenario != "broadcast" && o.Scenario != "push":
			return fmt.Errorf("--floor-target is for connect, broadcast and push, not %s (upstream and pusher have --floor)", o.Scenario)
		case len(o.FloorTargets) == 0 || len(o.FloorAPIs) == 0:
			return errors.New("--floor-target and --floor-api go together: the floor server's client and API addresses")
		case o.Protocol != "plain":
			return errors.New("--floor-target: the floor server speaks the plain protocol only")
		}
	}
	if o.TokenSecret == "" {
		return errors.New("--token-secret is required (the server's HS256 secret)")
	}
	if o.ConnsPerUser < 1 {
		return errors.New("--conns-per-user must be at least 1")
	}
	switch o.Protocol {
	case "plain", "v2":
	default:
		return fmt.Errorf("--protocol %q: want plain or v2", o.Protocol)
	}
	if o.Scenario == "reconnect" {
		if set["protocol"] && o.Protocol != "v2" {
			return errors.New("reconnect speaks v2 (resuming with ?since= needs it): drop --protocol plain")
		}
		o.Protocol = "v2"
		if !o.History {
			return errors.New("reconnect needs pushes stored in history: drop --history=false")
		}
		if o.Messages < 0 || o.Messages > 10000 {
			return errors.New("--messages must be between 0 and 10000")
		}
		if !set["callers"] {
			o.Callers = 8
		}
	} else {
		o.Messages = 0
	}
	if (o.Ack || o.Wait != 0) && o.Scenario != "push" {
		return fmt.Errorf("--ack and --wait are for push, not %s", o.Scenario)
	}
	if o.Ack && o.Protocol != "v2" {
		return errors.New("--ack needs --protocol v2: plain clients cannot acknowledge")
	}
	if o.Ack && !o.History {
		return errors.New("--ack needs pushes stored until acknowledged: drop --history=false")
	}
	if o.Wait < 0 || o.Wait > 30*time.Second || (set["wait"] && o.Wait == 0) {
		return errors.New("--wait must be more than 0 and at most 30s (the API's bound)")
	}
	if o.Scenario == "push" || o.Scenario == "reconnect" {
		if o.Users == 0 {
			o.Users = max(1, o.Conns/o.ConnsPerUser)
		}
		o.Conns = o.Users * o.ConnsPerUser
		if o.Callers < 1 || o.Callers > 10000 {
			return errors.New("--callers must be between 1 and 10000")
		}
	}
	if o.Scenario == "broadcast" && (o.Rounds < 1 || o.Rounds > 1000) {
		return errors.New("--rounds must be between 1 and 1000")
	}
	if o.Conns < 1 {
		return errors.New("--conns must be at least 1")
	}
	if o.Scenario != "connect" {
		if len(o.APIs) == 0 {
			return fmt.Errorf("%s needs at least one --api HOST:PORT", o.Scenario)
		}
		if o.APIKey == "" && o.Scenario != "upstream" {
			return fmt.Errorf("%s needs --api-key", o.Scenario)
		}
	}
	if o.Scenario == "upstream" {
		if o.Business == "" {
			return errors.New("upstream needs --business NAME")
		}
		if !set["conns"] {
			o.Conns = 64
		}
		if o.Conns > 10000 {
			return errors.New("upstream: --conns at most 10000 (one goroutine each)")
		}
		switch o.Floor {
		case "after", "before", "off":
		default:
			return fmt.Errorf("--floor %q: want after, before or off", o.Floor)
		}
		if o.Floor != "off" && o.BackendAddr == "" {
			if set["floor"] {
				return errors.New("upstream: the floor POSTs to the bundled back-end: give --backend-addr or --floor off")
			}
			o.Floor = "off" // an external back-end: the report says there is no floor
		}
		o.Protocol = "v2"
		if !set["round-timeout"] {
			o.RoundTimeout = 10 * time.Second
		}
	}
	if o.Scenario != "upstream" {
		o.Floor = ""
	}
	if !set["duration"] && o.Scenario != "broadcast" {
		o.Duration = 10 * time.Second
	}
	if o.BatchWait < 0 || o.BatchWait > 10*time.Millisecond {
		return errors.New("--batch-wait must be between 0 and 10ms")
	}
	if o.Rate < 0 || o.PushRate < 0 || o.Duration < 0 || o.Size < 0 || o.Size > 1<<20 {
		return errors.New("--rate, --push-rate, --duration must not be negative; --size at most 1 MiB")
	}
	ips, err := parseSourceIPs(o.SourceSpec, o.Conns, o.Targets)
	if err != nil {
		return err
	}
	o.SourceIPs = ips
	return nil
}

// parseSourceIPs expands "A-B", "a,b,c" or a count N (127.0.0.2 onwards).
// With no spec and loopback targets it picks one address per 30,000
// connections (bench assigns up to portSpan source ports per address, 36,280 with
// the default ephemeral range, and a few are taken by TIME_WAIT or listeners).
func parseSourceIPs(spec string, conns int, targets []string) ([]string, error) {
	if spec == "" {
		if !allLoopback4(targets) {
			return nil, nil
		}
		return ipRange(net.IPv4(127, 0, 0, 2), (conns+29999)/30000), nil
	}
	if n, err := strconv.Atoi(spec); err == nil {
		if n < 1 || n > 65000 {
			return nil, fmt.Errorf("--source-ips count %d out of range 1..65000", n)
		}
		return ipRange(net.IPv4(127, 0, 0, 2), n), nil
	}
	if a, b, ok := strings.Cut(spec, "-"); ok && !strings.Contains(spec, ",") {
		lo, hi := net.ParseIP(strings.TrimSpace(a)).To4(), net.ParseIP(strings.TrimSpace(b)).To4()
		if lo == nil || hi == nil {
			return nil, fmt.Errorf("bad --source-ips range %q: want A.B.C.D-A.B.C.D", spec)
		}
		n := int(ip4u(hi)) - int(ip4u(lo)) + 1
		if n < 1 || n > 65000 {
			return nil, fmt.Errorf("bad --source-ips range %q: %d addresses", spec, n)
		}
		return ipRange(lo, n), nil
	}
	var out []string
	for _, p := range strings.Split(spec, ",") {
		ip := net.ParseIP(strings.TrimSpace(p))
		if ip == nil {
			return nil, fmt.Errorf("bad --source-ips address %q", p)
		}
		out = append(out, ip.String())
	}
	return out, nil
}

func ip4u(ip net.IP) uint32 {
	v := ip.To4()
	return uint32(v[0])<<24 | uint32(v[1])<<16 | uint32(v[2])<<8 | uint32(v[3])
}

func ipRange(first net.IP, n int) []string {
	base := ip4u(first)
	out := make([]string, n)
	for i := range out {
		v := base + uint32(i)
		out[i] = net.IPv4(byte(v>>24), byte(v>>16), byte(v>>8), byte(v)).String()
	}
	return out
}

func allLoopback4(addrs []string) bool {
	for _, a := range addrs {
		h, _, err := net.SplitHostPort(a)
		if err != nil {
			return false
		}
		if h == "localhost" {
			continue
		}
		ip := net.ParseIP(h)
		if ip == nil || ip.To4() == nil || !ip.IsLoopback() {
			return false
		}
	}
	return true
}
