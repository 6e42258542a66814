package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/md5"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"html/template"
	"io"
	"math/bits"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The pusher scenario: --conns Pusher Channels clients (protocol 7) connect to
// /app/{key}, each subscribes to one of --channels channels (connection i to
// channel i mod N), and callers publish events through the signed Pusher HTTP API
// (POST /apps/{id}/events) for --duration, closed loop (--callers) or open loop
// (--push-rate). Every event's data is "<unix nanos>:<seq>" padded to
// --event-bytes, seq counting per channel from 1, so each client checks its
// channel's events for duplicates and, against what the API accepted, for missing
// ones.
//
// In the same run, before or after (--floor), the native comparison: the same
// number of plain clients, each with a token whose rooms claim holds one room of as
// many rooms as channels (the same membership), and the same callers pushing the
// same data at the same rate through POST /v1/push to those rooms with "ttl":"10s"
// (a trigger is a push to the channel's room kept 10 s, push.PusherEventTTL). Only the
// protocol differs: the Pusher HTTP API (signature, MD5, event checks) against
// /v1/push, the Pusher event envelope against the raw bytes, a subscribe round trip
// against rooms in the token, a Pusher connection's state against a plain one's. The
// ratios are Pusher over native.
//
// Clients run in this process, one goroutine each, not in worker processes: the
// worker's event loop speaks the native protocols only. So one process holds every
// client socket, and --conns is bounded by this process's RLIMIT_NOFILE (20,000 on
// the development box); the report says so when that limit is in the way. Both
// phases use the same client code, so their latencies compare.
//
// Who owns what: a pconn is owned by its goroutine until the phase's wait group is
// done; the coordinator reads only the phase's atomics until then. A channel's
// accepted set is written by the callers under its mutex.

const (
	pusherEvent  = "bench" // the event name every trigger uses
	warmupData   = "w:"    // data prefix of the warm-up events (not stamped)
	nativeRoomPf = "bench-ch-"
	// pusherInflight bounds handshakes in progress, as the reconnect storm's
	// workers do, so the kernel's SYN and accept queues take them without drops.
	pusherInflight = 1024
	// pusherFDReserve is the files this process needs besides client sockets
	// (std files, metrics scrapes, the callers' connections are added).
	pusherFDReserve = 64
	// maxSeenBits bounds one client's record of its channel's events (1 MiB).
	maxSeenBits = 1 << 23
)

// PusherResult is the pusher scenario: the Pusher phase, the native comparison and
// their ratios.
type PusherResult struct {
	AppID       string  `json:"app_id"`
	Channels    int     `json:"channels"`
	ChannelKind string  `json:"channel_kind"`
	EventBytes  int     `json:"event_bytes"`
	Mode        string  `json:"mode"` // closed or open
	Callers     int     `json:"callers"`
	PushRate    float64 `json:"push_rate"`
	// Pusher is the Pusher phase; Native the comparison (nil with --floor off),
	// run NativeOrder ("before" or "after") the Pusher phase.
	Pusher      PusherPhase   `json:"pusher"`
	Native      *PusherPhase  `json:"native,omitempty"`
	NativeOrder string        `json:"native_order,omitempty"`
	Ratios      *PusherRatios `json:"pusher_over_native,omitempty"`
	// Comparison says what the native phase is, for readers of the JSON alone.
	Comparison string `json:"comparison"`
}

// PusherPhase is one phase: its connections, then its events.
type PusherPhase struct {
	Protocol    string  `json:"protocol"` // "pusher" or "native"
	Conns       int     `json:"conns"`
	Attempted   int64   `json:"attempted"`
	Opened      int64   `json:"opened"` // subscribed (pusher) or upgraded (native)
	Failed      int64   `json:"failed"`
	Dropped     int64   `json:"dropped"` // closed by the server or the network after opening
	OpenAtEnd   int64   `json:"open_at_end"`
	ConnectS    float64 `json:"connect_s"`
	ConnectPerS float64 `json:"connect_per_s"`
	// TCP is connect() to TCP established; Handshake connect() to
	// pusher:connection_established (pusher) or to the 101 (native); Subscribe,
	// pusher only, is the subscribe written to subscription_succeeded read.
	TCP       LatencySummary   `json:"tcp"`
	Handshake LatencySummary   `json:"handshake"`
	Subscribe *LatencySummary  `json:"subscribe,omitempty"`
	Failures  map[string]int64 `json:"failures"`
	Drops     map[string]int64 `json:"drops"`
	// Server memory and CPU over the connection phase (summed over every --api):
	// after minus before, per connection open; ForcedGC says both samples were
	// taken right after a GC on every node (/debug/pprof/heap?gc=1, --pprof).
	ServerBefore     ServerSample `json:"server_before"`
	ServerAfterOpen  ServerSample `json:"server_after_open"`
	RSSPerConnBytes  float64      `json:"rss_per_conn_bytes"`
	HeapPerConnBytes float64      `json:"heap_per_conn_bytes"`
	CPUPerConnUs     float64      `json:"cpu_per_conn_us"`
	ForcedGC         bool         `json:"forced_gc"`
	// Warm-up: one unstamped event per channel (resent every 2 s) until every
	// open connection had one; publishing starts after it.
	WarmedUp int64   `json:"warmed_up"`
	WarmupS  float64 `json:"warmup_s"`

	DurationS      float64          `json:"duration_s"`
	Events         int64            `json:"events"` // accepted by the API (200; native 200/202)
	EventsPerS     float64          `json:"events_per_s"`
	APIErrors      map[string]int64 `json:"api_errors"` // by status (http_<code>) or transport
	BacklogSkipped int64            `json:"backlog_skipped"`
	APILatency     LatencySummary   `json:"api_latency"`
	// Expected is the accepted events times the open subscribers of their channel;
	// Delivered counts distinct events received by connections open at the end.
	Expected   int64 `json:"expected"`
	Delivered  int64 `json:"delivered"`
	Missing    int64 `json:"missing"`
	Duplicates int64 `json:"duplicates"`
	// Unaccepted are events received whose API call did not answer 200 (a
	// transport error after the server took it); WrongChannel events carrying
	// another channel's name; Unknown data bench did not send; Other server
	// messages that were not events (pusher:error, say), by event.
	Unaccepted     int64            `json:"unaccepted"`
	WrongChannel   int64            `json:"wrong_channel"`
	Unknown        int64            `json:"unknown"`
	Other          map[string]int64 `json:"other"`
	DeliveriesPerS float64          `json:"deliveries_per_s"`
	// Latency is the event's stamp (send time, or scheduled time open loop) to
	// the client's read, over first receipts.
	Latency LatencySummary `json:"latency"`
	// ServerCPUS is the nodes' CPU from the first event to the last delivery.
	ServerCPUS             float64 `json:"server_cpu_s"`
	ServerCPUPerDeliveryUs float64 `json:"server_cpu_per_delivery_us"`
	ServerCPUPerEventUs    float64 `json:"server_cpu_per_event_us"`
	BenchCPUPerDeliveryUs  float64 `json:"bench_cpu_per_delivery_us"` // this process: clients and callers
	DrainTimedOut          bool    `json:"drain_timed_out"`
}

// PusherRatios are the Pusher phase's figures over the native phase's.
type PusherRatios struct {
	ConnectPerS          float64 `json:"connect_per_s"`
	HandshakeP50         float64 `json:"handshake_p50"`
	HeapPerConn          float64 `json:"heap_per_conn"`
	CPUPerConn           float64 `json:"cpu_per_conn"`
	DeliveriesPerS       float64 `json:"deliveries_per_s"`
	P50                  float64 `json:"p50"`
	P99                  float64 `json:"p99"`
	P999                 float64 `json:"p999"`
	Max                  float64 `json:"max"`
	APIP50               float64 `json:"api_p50"`
	ServerCPUPerDelivery float64 `json:"server_cpu_per_delivery"`
	ServerCPUPerEvent    float64 `json:"server_cpu_per_event"`
}

const pusherComparison = "native: the same number of plain clients, each with a token whose rooms claim holds one of as many rooms as channels " +
	"(the same membership), and the same callers pushing the same data at the same rate through POST /v1/push to those rooms with " +
	"\"ttl\":\"10s\" (a Pusher trigger is a push to the channel's room kept 10 s for gap detection, push.PusherEventTTL); only the protocol differs"

// finishPusher validates the pusher scenario's options (Options.finish).
func (o *Options) finishPusher(set map[string]bool) error {
	if len(o.Targets) == 0 {
		return errors.New("at least one --target HOST:PORT is required")
	}
	if len(o.APIs) == 0 {
		return errors.New("pusher needs at least one --api HOST:PORT: the Pusher HTTP API and /metrics are on the API port")
	}
	for _, t := range append(append([]string{}, o.Targets...), o.APIs...) {
		if _, _, err := net.SplitHostPort(t); err != nil {
			return fmt.Errorf("bad address %q: %w", t, err)
		}
	}
	id, key, _, err := parsePusherApp(o.PusherApp)
	if err != nil {
		return err
	}
	o.PusherAppID, o.PusherKey = id, key
	for _, f := range []string{"size", "workers", "users", "conns-per-user", "rounds", "ack", "wait", "messages", "protocol", "history", "in-process"} {
		if set[f] {
			hint := ""
			if f == "size" {
				hint = " (use --event-bytes)"
			}
			return fmt.Errorf("--%s is not a pusher option%s", f, hint)
		}
	}
	switch o.ChannelKind {
	case "public", "private":
	default:
		return fmt.Errorf("--channel-kind %q: want public or private", o.ChannelKind)
	}
	if o.Conns < 1 {
		return errors.New("--conns must be at least 1")
	}
	if !set["channels"] {
		o.Channels = min(o.Channels, o.Conns)
	}
	if o.Channels < 1 || o.Channels > o.Conns || o.Channels > 100000 {
		return fmt.Errorf("--channels must be between 1 and --conns (%d), at most 100000: every channel needs a subscriber", o.Conns)
	}
	if o.EventBytes < 0 || o.EventBytes > 10000 {
		return errors.New("--event-bytes must be between 0 and 10000 (the Pusher API's limit on event data)")
	}
	if o.Callers < 1 || o.Callers > 10000 {
		return errors.New("--callers must be between 1 and 10000")
	}
	if o.Rate < 0 || o.PushRate < 0 || o.Duration < 0 {
		return errors.New("--rate, --push-rate, --duration must not be negative")
	}
	if !set["duration"] {
		o.Duration = 10 * time.Second
	}
	switch o.Floor {
	case "after", "before", "off":
	default:
		return fmt.Errorf("--floor %q: want after, before or off", o.Floor)
	}
	if o.Floor != "off" && (o.TokenSecret == "" || o.APIKey == "") {
		return errors.New("the native comparison needs --token-secret (its clients' tokens) and --api-key (POST /v1/push): give both, or --floor off")
	}
	o.Protocol, o.History, o.Users, o.ConnsPerUser, o.Messages, o.Size = "pusher", false, 0, 1, 0, 0
	ips, err := parseSourceIPs(o.SourceSpec, o.Conns, o.Targets)
	if err != nil {
		return err
	}
	o.SourceIPs = ips
	return nil
}

// parsePusherApp splits "id:key:secret[,options]" (the node's --pusher-app; the
// secret may hold ':' but not ',', and the options are the node's business).
func parsePusherApp(spec string) (id, key, secret string, err error) {
	if spec == "" {
		return "", "", "", errors.New("pusher needs --pusher-app id:key:secret (the app's credentials, as the node's --pusher-app)")
	}
	creds, _, _ := strings.Cut(spec, ",")
	id, rest, ok1 := strings.Cut(creds, ":")
	key, secret, ok2 := strings.Cut(rest, ":")
	if !ok1 || !ok2 || id == "" || key == "" || secret == "" {
		return "", "", "", errors.New("--pusher-app: want id:key:secret, each part non-empty")
	}
	if strings.ContainsAny(id, "/?#% \t") || strings.ContainsAny(key, "/?#% \t") {
		return "", "", "", errors.New("--pusher-app: the app id and key may not hold / ? # % or spaces")
	}
	return id, key, secret, nil
}

// pusherSigner signs Pusher HTTP API requests of one app as the spec says
// (auth_version 1.0): HMAC-SHA256 under the secret of "POST\n<path>\n<query>", the
// query's keys sorted (auth_key, auth_timestamp, auth_version, body_md5). One per
// caller: not safe for concurrent use.
type pusherSigner struct {
	key, path string
	mac       hash.Hash
	sum, tmp  []byte
}

func newPusherSigner(appID, key, secret string) *pusherSigner {
	return &pusherSigner{key: key, path: "/apps/" + appID + "/events", mac: hmac.New(sha256.New, []byte(secret))}
}

// appendQuery appends the signed query string of a POST of body at unix second ts.
func (s *pusherSigner) appendQuery(dst, body []byte, ts int64) []byte {
	m := md5.Sum(body)
	q := append(s.tmp[:0], "auth_key="...)
	q = append(q, s.key...)
	q = append(q, "&auth_timestamp="...)
	q = strconv.AppendInt(q, ts, 10)
	q = append(q, "&auth_version=1.0&body_md5="...)
	q = hex.AppendEncode(q, m[:])
	s.tmp = q
	s.mac.Reset()
	s.mac.Write([]byte("POST\n"))
	s.mac.Write([]byte(s.path))
	s.mac.Write([]byte{'\n'})
	s.mac.Write(q)
	s.sum = s.mac.Sum(s.sum[:0])
	dst = append(dst, q...) // key and values are URL-safe (checked by parsePusherApp)
	dst = append(dst, "&auth_signature="...)
	return hex.AppendEncode(dst, s.sum)
}

// channelAuth is what a Pusher app's auth endpoint answers for a private channel:
// "key:" + hex HMAC-SHA256 of "socket_id:channel".
func channelAuth(key, secret, socketID, channel string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(socketID + ":" + channel))
	return key + ":" + hex.EncodeToString(m.Sum(nil))
}

// roomToken is an HS256 JWT for user bench-<user> whose rooms claim is [room].
func roomToken(secret []byte, user int, room string, iat, exp int64) []byte {
	c := `{"sub":"bench-` + strconv.Itoa(user) + `","iat":` + strconv.FormatInt(iat, 10) + `,"exp":` + strconv.FormatInt(exp, 10) +
		`,"rooms":["` + room + `"]}`
	enc := base64.RawURLEncoding
	t := append([]byte(jwtHeader), '.')
	t = enc.AppendEncode(t, []byte(c))
	m := hmac.New(sha256.New, secret)
	m.Write(t)
	t = append(t, '.')
	return enc.AppendEncode(t, m.Sum(nil))
}

// appendMaskedText appends one masked, final text frame of any length.
func appendMaskedText(b, payload []byte, key [4]byte) []byte {
	b = append(b, 0x80|opText)
	switch n := len(payload); {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n < 65536:
		b = append(b, 0x80|126, byte(n>>8), byte(n))
	default:
		b = append(b, 0x80|127, 0, 0, 0, 0, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	b = append(b, key[:]...)
	for i, x := range payload {
		b = append(b, x^key[i&3])
	}
	return b
}

// jsonStr returns the raw (still escaped) value of the string field key in a flat
// JSON object, as `"key":"`; ok false when absent.
func jsonStr(p []byte, key string) ([]byte, bool) {
	i := bytes.Index(p, []byte(key))
	if i < 0 {
		return nil, false
	}
	v := p[i+len(key):]
	for j := 0; j < len(v); j++ {
		switch v[j] {
		case '\\':
			j++
		case '"':
			return v[:j], true
		}
	}
	return nil, false
}

// socketIDOf reads the socket id from connection_established's data, a JSON
// string holding {"socket_id":"<digits>.<digits>",...} (so its quotes are escaped).
func socketIDOf(p []byte) (string, bool) {
	i := bytes.Index(p, []byte("socket_id"))
	if i < 0 {
		return "", false
	}
	v := p[i+len("socket_id"):]
	j := 0
	for j < len(v) && (v[j] < '0' || v[j] > '9') {
		if j > 8 {
			return "", false
		}
		j++
	}
	k, dot := j, false
	for ; k < len(v) && (v[k] >= '0' && v[k] <= '9' || v[k] == '.' && !dot); k++ {
		if v[k] == '.' {
			dot = true
		}
	}
	s := string(v[j:k])
	if !dot || strings.HasPrefix(s, ".") || strings.HasSuffix(s, ".") {
		return "", false
	}
	return s, true
}

// parseSeq reads the seq of "<nanos>:<seq>..." data.
func parseSeq(d []byte) (uint64, bool) {
	i := bytes.IndexByte(d, ':')
	if i < 0 {
		return 0, false
	}
	var n uint64
	j := i + 1
	for ; j < len(d) && j < i+21 && d[j] >= '0' && d[j] <= '9'; j++ {
		n = n*10 + uint64(d[j]-'0')
	}
	return n, j > i+1
}

// pusherRun is one run of the scenario.
type pusherRun struct {
	*runner
	secret string
	res    *PusherResult
	cur    atomic.Pointer[pphase] // the phase the sampler reports
	events atomic.Int64           // accepted events of the current phase, for progress
}

// pchan is one channel (pusher) or room (native) of a phase.
type pchan struct {
	name     string // channel or room
	issued   atomic.Uint64
	openSubs atomic.Int64 // subscribers open
	mu       sync.Mutex
	accepted []uint64 // bitset of seqs the API accepted
	nAcc     int64
}

func (c *pchan) accept(seq uint64) {
	c.mu.Lock()
	w := int(seq / 64)
	for len(c.accepted) <= w {
		c.accepted = append(c.accepted, 0)
	}
	if c.accepted[w]&(1<<(seq%64)) == 0 {
		c.accepted[w] |= 1 << (seq % 64)
		c.nAcc++
	}
	c.mu.Unlock()
}

type histShard struct {
	mu sync.Mutex
	h  Histogram
}

// pphase is one phase in progress.
type pphase struct {
	r        *pusherRun
	native   bool
	chans    []pchan
	conns    []*pconn
	portBase int
	srcs     []net.IP
	shards   [32]histShard

	attempted, opened, open, failed, dropped atomic.Int64
	fresh, warmed                            atomic.Int64
	stopping                                 atomic.Bool
	wg                                       sync.WaitGroup

	mu       sync.Mutex // guards what follows
	failures map[string]int64
	drops    map[string]int64
	other    map[string]int64
	tcpH     Histogram
	estH     Histogram
	subH     Histogram
}

func (ph *pphase) count(m map[string]int64, reason string) {
	ph.mu.Lock()
	m[reason]++
	ph.mu.Unlock()
}

// pconn is one client, owned by its goroutine.
type pconn struct {
	ph      *pphase
	idx, ch int
	chName  []byte
	nc      net.Conn
	buf     []byte
	r, w    int
	out     []byte
	key     [4]byte
	seen    []uint64
	warm    bool
	dropped bool
	dups    int64
	unknown int64
	wrongCh int64
}

func (c *pconn) mask() [4]byte {
	x := rand.Uint32()
	return [4]byte{byte(x), byte(x >> 8), byte(x >> 16), byte(x >> 24)}
}

func (c *pconn) writeText(p []byte) error {
	c.out = appendMaskedText(c.out[:0], p, c.mask())
	_, err := c.nc.Write(c.out)
	return err
}

func (c *pconn) writeControl(op byte, p []byte) error {
	c.out = appendClientFrame(c.out[:0], op, p, c.mask())
	_, err := c.nc.Write(c.out)
	return err
}

// fill reads more into buf, growing it when a frame does not fit.
func (c *pconn) fill() error {
	if c.r > 0 {
		copy(c.buf, c.buf[c.r:c.w])
		c.w -= c.r
		c.r = 0
	}
	if c.w == len(c.buf) {
		if len(c.buf) >= maxFrame+14 {
			return errFrameTooLarge
		}
		nb := make([]byte, min(2*len(c.buf), maxFrame+14))
		copy(nb, c.buf[:c.w])
		c.buf = nb
	}
	n, err := c.nc.Read(c.buf[c.w:])
	c.w += n
	if n > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// next returns the next frame; its payload is valid until the next call.
func (c *pconn) next() (frame, error) {
	for {
		if c.r < c.w {
			f, n, err := nextFrame(c.buf[c.r:c.w])
			if err == nil {
				c.r += n
				return f, nil
			}
			if !errors.Is(err, errIncomplete) {
				return frame{}, err
			}
		}
		if err := c.fill(); err != nil {
			return frame{}, err
		}
	}
}

// message returns the next text message, answering pings; a close frame is an
// error naming its code.
func (c *pconn) message() ([]byte, error) {
	for {
		f, err := c.next()
		if err != nil {
			return nil, err
		}
		switch f.op {
		case opText:
			return f.payload, nil
		case opPing:
			if err := c.writeControl(opPong, f.payload); err != nil {
				return nil, err
			}
		case opClose:
			code := "none"
			if len(f.payload) >= 2 {
				code = strconv.Itoa(int(f.payload[0])<<8 | int(f.payload[1]))
			}
			_ = c.writeControl(opClose, f.payload)
			return nil, errClosed{code}
		case opBinary, opCont:
			return nil, errors.New("binary frame")
		}
	}
}

type errClosed struct{ code string }

func (e errClosed) Error() string { return "close_" + e.code }

// connReason names a connection error for the failure and drop counts.
func connReason(err error) string {
	var ce errClosed
	var ne net.Error
	switch {
	case errors.As(err, &ce):
		return ce.Error()
	case errors.Is(err, io.EOF):
		return "eof"
	case errors.As(err, &ne) && ne.Timeout():
		return "handshake_timeout"
	case errors.Is(err, errFrameTooLarge):
		return "frame_too_large"
	}
	var en unix.Errno
	if errors.As(err, &en) {
		return errnoReason(en)
	}
	return shortReason(err)
}

// dial connects connection idx from its source address and port (as the workers
// choose them: unique per source address, retried far away when taken).
func (ph *pphase) dial(idx int, deadline time.Time) (net.Conn, error) {
	o := &ph.r.o
	t := o.Targets[idx%len(o.Targets)]
	if len(ph.srcs) == 0 {
		d := net.Dialer{Deadline: deadline}
		return d.Dial("tcp", t)
	}
	src := ph.srcs[idx%len(ph.srcs)]
	base := ph.portBase + idx/len(ph.srcs)
	var err error
	for try := 0; try < 4; try++ {
		port := sourcePort(base + try*16411)
		d := net.Dialer{Deadline: deadline, LocalAddr: &net.TCPAddr{IP: src, Port: port},
			Control: func(_, _ string, rc syscall.RawConn) error {
				return rc.Control(func(fd uintptr) { _ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1) })
			}}
		var nc net.Conn
		if nc, err = d.Dial("tcp", t); err == nil {
			return nc, nil
		}
		if !errors.Is(err, unix.EADDRINUSE) && !errors.Is(err, unix.EADDRNOTAVAIL) {
			return nil, err
		}
	}
	return nil, err
}

// connect opens connection idx and, for Pusher, subscribes it; then it reads until
// the phase stops. release is called once the handshake is over either way.
func (ph *pphase) connect(idx int, release func()) {
	defer ph.wg.Done()
	o := &ph.r.o
	c := &pconn{ph: ph, idx: idx, ch: idx % len(ph.chans), buf: make([]byte, 2048)}
	c.chName = []byte(ph.chans[c.ch].name)
	ph.attempted.Add(1)
	start := time.Now()
	fail := func(reason string) {
		ph.failed.Add(1)
		ph.count(ph.failures, reason)
		if c.nc != nil {
			c.nc.Close()
		}
		release() // last: the coordinator reads the failures once every handshake released
	}
	deadline := start.Add(o.HandshakeTimeout)
	nc, err := ph.dial(idx, deadline)
	if err != nil {
		fail(connReason(err))
		return
	}
	c.nc = nc
	tcpAt := time.Now()
	_ = nc.SetDeadline(deadline)
	target := o.Targets[idx%len(o.Targets)]
	var req []byte
	if ph.native {
		now := time.Now().Unix()
		tok := roomToken([]byte(o.TokenSecret), idx, ph.chans[c.ch].name, now, now+int64(o.Duration/time.Second)+3600)
		req = appendUpgrade(nil, target, tok)
	} else {
		req = append(req, "GET /app/"+o.PusherKey+"?protocol=7&client=longlink-bench&version=1.0 HTTP/1.1\r\nHost: "+target+
			"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: "+wsKey+"\r\nSec-WebSocket-Version: 13\r\n\r\n"...)
	}
	if _, err := nc.Write(req); err != nil {
		fail(connReason(err))
		return
	}
	for {
		hl, reason, err := parseUpgradeResponse(c.buf[:c.w])
		if err == nil {
			c.r = hl
			break
		}
		if !errors.Is(err, errIncomplete) {
			fail(reason)
			return
		}
		if c.w >= 16<<10 {
			fail("bad_response")
			return
		}
		if err := c.fill(); err != nil {
			fail(connReason(err))
			return
		}
	}
	var est, sub time.Duration
	if ph.native {
		est = time.Since(start)
	} else {
		p, err := c.message()
		if err != nil {
			fail(connReason(err))
			return
		}
		ev, _ := jsonStr(p, `"event":"`)
		if string(ev) != "pusher:connection_established" {
			fail(pusherRefusal(ev, p))
			return
		}
		socket, ok := socketIDOf(p)
		if !ok {
			fail("bad_connection_established")
			return
		}
		est = time.Since(start)
		msg := `{"event":"pusher:subscribe","data":{"channel":"` + string(c.chName) + `"`
		if o.ChannelKind == "private" {
			msg += `,"auth":"` + channelAuth(o.PusherKey, ph.r.secret, socket, string(c.chName)) + `"`
		}
		msg += `}}`
		subAt := time.Now()
		if err := c.writeText([]byte(msg)); err != nil {
			fail(connReason(err))
			return
		}
		for {
			p, err := c.message()
			if err != nil {
				fail(connReason(err))
				return
			}
			ev, _ := jsonStr(p, `"event":"`)
			if string(ev) == "pusher_internal:subscription_succeeded" {
				if ch, _ := jsonStr(p, `"channel":"`); !bytes.Equal(ch, c.chName) {
					fail("subscribed_wrong_channel")
					return
				}
				break
			}
			if string(ev) == "pusher:subscription_error" || string(ev) == "pusher:error" {
				fail(pusherRefusal(ev, p))
				return
			}
			// Anything else before the answer (a pusher:ping) is not for bench.
		}
		sub = time.Since(subAt)
	}
	_ = nc.SetDeadline(time.Time{})
	ph.mu.Lock()
	ph.tcpH.Record(tcpAt.Sub(start).Nanoseconds())
	ph.estH.Record(est.Nanoseconds())
	if !ph.native {
		ph.subH.Record(sub.Nanoseconds())
	}
	ph.mu.Unlock()
	ph.conns[idx] = c
	ph.chans[c.ch].openSubs.Add(1)
	ph.opened.Add(1)
	ph.open.Add(1)
	release()
	c.serve()
}

// pusherRefusal names what the server said instead of the expected message.
func pusherRefusal(ev, p []byte) string {
	switch string(ev) {
	case "pusher:error":
		if code, ok := jsonInt(p, `"code":`); ok {
			return "pusher_error_" + strconv.FormatInt(code, 10)
		}
		return "pusher_error"
	case "pusher:subscription_error":
		if st, ok := jsonInt(p, `"status":`); ok {
			return "subscription_error_" + strconv.FormatInt(st, 10)
		}
		return "subscription_error"
	}
	return "unexpected_message"
}

// serve reads events until the phase stops or the connection fails; keep-alives go
// every --ping-interval (pusher:ping for Pusher, a WebSocket ping for native).
func (c *pconn) serve() {
	ph := c.ph
	every := ph.r.o.PingInterval
	_ = c.nc.SetReadDeadline(time.Now().Add(every))
	for {
		p, err := c.message()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && !ph.stopping.Load() {
				if ph.native {
					err = c.writeControl(opPing, nil)
				} else {
					err = c.writeText([]byte(`{"event":"pusher:ping","data":{}}`))
				}
				if err == nil {
					_ = c.nc.SetReadDeadline(time.Now().Add(every))
					continue
				}
			}
			if !ph.stopping.Load() {
				c.dropped = true
				ph.dropped.Add(1)
				ph.open.Add(-1)
				ph.chans[c.ch].openSubs.Add(-1)
				ph.count(ph.drops, connReason(err))
			}
			c.nc.Close()
			return
		}
		now := time.Now().UnixNano()
		if ph.native {
			c.data(p, now)
			continue
		}
		ev, _ := jsonStr(p, `"event":"`)
		if bytes.HasPrefix(ev, []byte("pusher:")) || bytes.HasPrefix(ev, []byte("pusher_internal:")) {
			switch string(ev) {
			case "pusher:ping":
				if err := c.writeText([]byte(`{"event":"pusher:pong","data":{}}`)); err != nil {
					continue // the read fails next and counts the drop
				}
			case "pusher:pong":
			default:
				ph.count(ph.other, pusherRefusal(ev, p))
			}
			continue
		}
		if ch, _ := jsonStr(p, `"channel":"`); !bytes.Equal(ch, c.chName) {
			c.wrongCh++
			continue
		}
		d, ok := jsonStr(p, `"data":"`)
		if !ok {
			c.unknown++
			continue
		}
		c.data(d, now)
	}
}

// data handles one event's data: the warm-up, or "<stamp>:<seq>".
func (c *pconn) data(d []byte, now int64) {
	ph := c.ph
	if bytes.HasPrefix(d, []byte(warmupData)) {
		if !c.warm {
			c.warm = true
			ph.warmed.Add(1)
		}
		return
	}
	ts, ok1 := parseStamp(d)
	seq, ok2 := parseSeq(d)
	if !ok1 || !ok2 || seq == 0 || seq > ph.chans[c.ch].issued.Load() || seq >= maxSeenBits {
		c.unknown++
		return
	}
	w := int(seq / 64)
	for len(c.seen) <= w {
		c.seen = append(c.seen, 0)
	}
	if c.seen[w]&(1<<(seq%64)) != 0 {
		c.dups++
		return
	}
	c.seen[w] |= 1 << (seq % 64)
	ph.fresh.Add(1)
	s := &ph.shards[c.idx%len(ph.shards)]
	s.mu.Lock()
	s.h.Record(now - ts)
	s.mu.Unlock()
}

// callerConn is one caller's keep-alive connection to one API: the Pusher HTTP
// API (signed) or /v1/push.
type callerConn struct {
	apiConn
	sg *pusherSigner // nil: native
}

// post sends body and returns the answer's status.
func (a *callerConn) post(ctx context.Context, body []byte) (int, error) {
	if a.sg == nil {
		st, _, err := a.apiConn.roundTrip(ctx, "/v1/push", body)
		return st, err
	}
	if a.conn == nil {
		d := net.Dialer{Timeout: 5 * time.Second}
		c, err := d.DialContext(ctx, "tcp", a.addr)
		if err != nil {
			return 0, err
		}
		a.conn, a.br, a.armed = c, bufio.NewReaderSize(c, 4096), 0
	}
	now := time.Now()
	a.arm(ctx, now)
	r := append(a.req[:0], "POST "...)
	r = append(r, a.sg.path...)
	r = append(r, '?')
	r = a.sg.appendQuery(r, body, now.Unix())
	r = append(r, " HTTP/1.1\r\nHost: "...)
	r = append(r, a.addr...)
	r = append(r, "\r\nContent-Type: application/json\r\nContent-Length: "...)
	r = strconv.AppendInt(r, int64(len(body)), 10)
	r = append(r, "\r\n\r\n"...)
	r = append(r, body...)
	a.req = r
	if _, err := a.conn.Write(r); err != nil {
		return 0, err
	}
	status, resp, closeAfter, err := readResponse(a.br, a.body[:0])
	if err != nil {
		return 0, err
	}
	if cap(resp) <= 1<<20 {
		a.body = resp
	}
	if closeAfter {
		a.close()
	}
	return status, nil
}

// appendEventBody appends the request body publishing data on channel k.
func (ph *pphase) appendEventBody(b []byte, k int, data []byte) []byte {
	if ph.native {
		b = append(b, `{"to":{"rooms":["`...)
		b = append(b, ph.chans[k].name...)
		b = append(b, `"]},"data":"`...)
		b = append(b, data...)
		return append(b, `","ttl":"10s"}`...)
	}
	b = append(b, `{"name":"`+pusherEvent+`","channel":"`...)
	b = append(b, ph.chans[k].name...)
	b = append(b, `","data":"`...)
	b = append(b, data...)
	return append(b, `"}`...)
}

func (ph *pphase) accepted(status int) bool {
	if ph.native {
		return status == 200 || status == 202
	}
	return status == 200
}

func (ph *pphase) newCaller(api string) *callerConn {
	o := &ph.r.o
	if ph.native {
		return &callerConn{apiConn: apiConn{addr: api, key: o.APIKey}}
	}
	return &callerConn{apiConn: apiConn{addr: api}, sg: newPusherSigner(o.PusherAppID, o.PusherKey, ph.r.secret)}
}

// runPusher runs the scenario and writes its reports.
func runPusher(ctx context.Context, o Options, stdout, stderr io.Writer) error {
	_, _, secret, err := parsePusherApp(o.PusherApp)
	if err != nil {
		return err
	}
	r := &pusherRun{runner: &runner{o: o, stdout: stdout, stderr: stderr, tty: isTerminal(stdout), t0: time.Now(), ctx: ctx}, secret: secret}
	r.rep = &Report{Tool: "longlink bench", Scenario: o.Scenario, StartedAt: r.t0.UTC(), Options: o,
		Env: collectEnv(), Hists: map[string][]HistBin{}, Limits: []string{}, Notes: []string{}, Workers: 1}
	mode := "closed"
	if o.PushRate > 0 {
		mode = "open"
	}
	r.res = &PusherResult{AppID: o.PusherAppID, Channels: o.Channels, ChannelKind: o.ChannelKind, EventBytes: o.EventBytes,
		Mode: mode, Callers: o.Callers, PushRate: o.PushRate, Comparison: pusherComparison}
	r.rep.Pusher = r.res
	r.checkFiles()
	fmt.Fprintf(stdout, "longlink bench pusher: %s Pusher connections to %v over %d %s channels of app %q, in this process\n",
		commas(int64(o.Conns)), o.Targets, o.Channels, o.ChannelKind, o.PusherAppID)

	stopSampler := r.sampler()
	cpuStart, tStart := readCPUTimes(), time.Now()
	var runErr error
	native := func() {
		if ctx.Err() != nil {
			return
		}
		fmt.Fprintf(stdout, "native comparison: %s plain connections over %d rooms, /v1/push with \"ttl\":\"10s\"\n", commas(int64(o.Conns)), o.Channels)
		r.res.Native, r.res.NativeOrder = r.runPhase(true), o.Floor
	}
	if o.Floor == "before" {
		native()
	}
	r.res.Pusher = *r.runPhase(false)
	if o.Floor == "after" {
		native()
	}
	stopSampler()
	r.rep.HostCPU = hostCPU(cpuStart, readCPUTimes(), time.Since(tStart))
	if o.Floor == "off" {
		r.note("native comparison not run (--floor off)")
	}
	r.fillReport()
	for _, p := range []*PusherPhase{&r.res.Pusher, r.res.Native} {
		if p == nil {
			continue
		}
		if p.Missing > 0 || p.Duplicates > 0 || p.WrongChannel > 0 || p.Unknown > 0 {
			runErr = errors.Join(runErr, fmt.Errorf("%s phase: %d events missing, %d duplicated, %d on a wrong channel, %d unknown",
				p.Protocol, p.Missing, p.Duplicates, p.WrongChannel, p.Unknown))
		}
	}
	if r.res.Pusher.Opened == 0 {
		runErr = errors.Join(runErr, errors.New("no Pusher connection could be opened"))
	}
	if err := r.writeReports(); err != nil {
		return errors.Join(err, runErr)
	}
	return runErr
}

// checkFiles says up front when this process cannot hold --conns sockets.
func (r *pusherRun) checkFiles() {
	nofile, err := raiseNoFile()
	if err != nil {
		r.note(err.Error())
	}
	o := &r.o
	budget := int(min(nofile, 1<<30)) - pusherFDReserve - o.Callers*len(o.APIs)
	if o.Conns > budget {
		r.limit(fmt.Sprintf("open files: the pusher scenario runs every client in this one process, which may hold %s sockets "+
			"(RLIMIT_NOFILE %s less %d for callers and its own files); the connections over that fail with EMFILE. Raise ulimit -n "+
			"or run several bench processes", commas(int64(max(0, budget))), commas(int64(nofile)), int(nofile)-budget))
	}
}

// sampler records a timeline sample every second and prints progress every 2 s.
func (r *pusherRun) sampler() (stop func()) {
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for n := 0; ; n++ {
			select {
			case <-done:
				return
			case now := <-tick.C:
				ph := r.cur.Load()
				if ph == nil {
					continue
				}
				s := Sample{T: now.Sub(r.t0).Seconds(), Opened: ph.opened.Load(), Open: ph.open.Load(), Failed: ph.failed.Load(),
					Received: ph.fresh.Load(), Pushes: r.events.Load()}
				_, rss := selfUsage()
				s.ClientRSS = float64(rss)
				sctx, cancel := context.WithTimeout(r.ctx, 2*time.Second)
				if sv := scrape(sctx, r.o.APIs); sv.Nodes > 0 {
					s.ServerConns, s.ServerRSS, s.ServerHeap = sv.Connections, sv.RSSBytes, sv.HeapBytes
				}
				cancel()
				r.mu.Lock()
				r.rep.Timeline = append(r.rep.Timeline, s)
				phase := r.phase
				r.mu.Unlock()
				if n%2 == 0 {
					r.logf("%-16s opened %s/%s  open %s  failed %s  events %s  received %s  elapsed %.1fs", phase,
						commas(s.Opened), commas(int64(r.o.Conns)), commas(s.Open), commas(s.Failed), commas(s.Pushes), commas(s.Received), s.T)
				}
			}
		}
	}()
	return func() { close(done); <-finished }
}

// forceGC asks every node for a heap profile with gc=1, which runs a GC first
// (the node needs --pprof; the API key is sent). It reports whether all did.
func (r *pusherRun) forceGC() bool {
	ok := true
	for _, a := range r.o.APIs {
		req, err := http.NewRequestWithContext(r.ctx, http.MethodGet, "http://"+a+"/debug/pprof/heap?gc=1", nil)
		if err != nil {
			return false
		}
		if r.o.APIKey != "" {
			req.Header.Set("Authorization", "Bearer "+r.o.APIKey)
		}
		resp, err := metricsClient.Do(req)
		if err != nil {
			return false
		}
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<20))
		resp.Body.Close()
		ok = ok && resp.StatusCode == http.StatusOK
	}
	return ok
}

// phase runs one phase: connect, warm up, publish, drain, close.
func (r *pusherRun) runPhase(native bool) *PusherPhase {
	o := &r.o
	name := "pusher"
	if native {
		name = "native"
	}
	ph := &pphase{r: r, native: native, chans: make([]pchan, o.Channels), conns: make([]*pconn, o.Conns),
		portBase: rand.IntN(portSpan), failures: map[string]int64{}, drops: map[string]int64{}, other: map[string]int64{}}
	for _, s := range o.SourceIPs {
		ph.srcs = append(ph.srcs, net.ParseIP(s))
	}
	for k := range ph.chans {
		switch {
		case native:
			ph.chans[k].name = nativeRoomPf + strconv.Itoa(k)
		case o.ChannelKind == "private":
			ph.chans[k].name = "private-bench-" + strconv.Itoa(k)
		default:
			ph.chans[k].name = "bench-" + strconv.Itoa(k)
		}
	}
	res := &PusherPhase{Protocol: name, Conns: o.Conns, APIErrors: map[string]int64{}}
	r.events.Store(0)
	r.cur.Store(ph)

	// Connect.
	r.setPhase(name + " connect")
	res.ForcedGC = r.forceGC()
	res.ServerBefore = scrape(r.ctx, o.APIs)
	sem := make(chan struct{}, pusherInflight)
	t0 := time.Now()
	for i := 0; i < o.Conns && r.ctx.Err() == nil; {
		due := o.Conns
		if o.Rate > 0 {
			due = min(o.Conns, int(time.Since(t0).Seconds()*o.Rate)+1)
		}
		for ; i < due && r.ctx.Err() == nil; i++ {
			sem <- struct{}{}
			var once sync.Once
			ph.wg.Add(1)
			go ph.connect(i, func() { once.Do(func() { <-sem }) })
		}
		if i < o.Conns {
			time.Sleep(time.Millisecond)
		}
	}
	for k := 0; k < pusherInflight; k++ { // every handshake finished
		sem <- struct{}{}
	}
	res.ConnectS = time.Since(t0).Seconds()
	res.Opened = ph.opened.Load()
	if res.ConnectS > 0 {
		res.ConnectPerS = float64(res.Opened) / res.ConnectS
	}
	open := ph.open.Load()
	var after ServerSample
	poll(5*time.Second, 100*time.Millisecond, func() bool {
		after = scrape(r.ctx, o.APIs)
		return after.Nodes == len(o.APIs) && after.Connections >= res.ServerBefore.Connections+float64(open)
	})
	if res.ForcedGC = res.ForcedGC && r.forceGC(); res.ForcedGC {
		after = scrape(r.ctx, o.APIs)
	}
	res.ServerAfterOpen = after
	if open > 0 && after.Nodes > 0 && res.ServerBefore.Nodes > 0 {
		res.RSSPerConnBytes = (after.RSSBytes - res.ServerBefore.RSSBytes) / float64(open)
		res.HeapPerConnBytes = (after.HeapBytes - res.ServerBefore.HeapBytes) / float64(open)
		res.CPUPerConnUs = (after.CPUSeconds - res.ServerBefore.CPUSeconds) * 1e6 / float64(open)
	}
	r.logf("%s: %s/%s open in %.1fs (%s/s), failures: %s", name, commas(open), commas(int64(o.Conns)), res.ConnectS,
		commas(int64(res.ConnectPerS)), reasons(ph.failures))

	if open > 0 && r.ctx.Err() == nil {
		r.setPhase(name + " warm-up")
		r.warmup(ph, res)
		r.setPhase(name + " events")
		r.publish(ph, res)
	}

	// Close, then count what each connection got against what was accepted.
	r.setPhase(name + " close")
	ph.stopping.Store(true)
	for _, c := range ph.conns {
		if c != nil {
			c.nc.Close() // its goroutine owns it otherwise; Close is safe concurrently
		}
	}
	ph.wg.Wait()
	r.tally(ph, res)
	// Let the nodes count the closes before the next phase's baseline.
	poll(10*time.Second, 100*time.Millisecond, func() bool {
		return scrape(r.ctx, o.APIs).Connections <= res.ServerBefore.Connections
	})
	r.cur.Store(nil)
	return res
}

// warmup publishes one unstamped event per channel until every open connection has
// had one (resent every 2 s, for at most 10 s): then every subscription and room
// membership is in place on every node before the first stamped event.
func (r *pusherRun) warmup(ph *pphase, res *PusherPhase) {
	t0 := time.Now()
	callers := min(16, len(ph.chans))
	conns := make([]*callerConn, callers)
	for i := range conns {
		conns[i] = ph.newCaller(r.o.APIs[i%len(r.o.APIs)])
		defer conns[i].close()
	}
	for round := 1; round <= 5 && r.ctx.Err() == nil; round++ {
		var wg sync.WaitGroup
		var next atomic.Int64
		for i := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var body []byte
				data := []byte(warmupData + strconv.Itoa(round))
				for k := int(next.Add(1)) - 1; k < len(ph.chans); k = int(next.Add(1)) - 1 {
					body = ph.appendEventBody(body[:0], k, data)
					if _, err := conns[i].post(r.ctx, body); err != nil {
						conns[i].close()
					}
				}
			}()
		}
		wg.Wait()
		if poll(2*time.Second, 10*time.Millisecond, func() bool { return ph.warmed.Load() >= ph.open.Load() }) {
			break
		}
	}
	res.WarmedUp, res.WarmupS = ph.warmed.Load(), time.Since(t0).Seconds()
	if res.WarmedUp < ph.open.Load() {
		r.note(fmt.Sprintf("%s: %d of %d connections had no warm-up event within 10 s", res.Protocol, ph.open.Load()-res.WarmedUp, ph.open.Load()))
	}
}

// publish runs the callers for the duration and waits for the deliveries.
func (r *pusherRun) publish(ph *pphase, res *PusherPhase) {
	o := &r.o
	ctx, cancel := context.WithTimeout(r.ctx, o.Duration)
	defer cancel()
	sched, backlog := openLoop(ctx, o.PushRate)
	type callerResult struct {
		api    Histogram
		events int64
		errs   map[string]int64
	}
	results := make([]callerResult, o.Callers)
	self0, _ := selfUsage()
	srv0 := scrape(r.ctx, o.APIs).CPUSeconds
	var wg sync.WaitGroup
	t0 := time.Now()
	for i := range o.Callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cr := &results[i]
			cr.errs = map[string]int64{}
			rng := rand.New(rand.NewPCG(uint64(t0.UnixNano()), uint64(i)))
			conns := make([]*callerConn, len(o.APIs))
			for k, a := range o.APIs {
				conns[k] = ph.newCaller(a)
				defer conns[k].close()
			}
			var body, data []byte
			for ctx.Err() == nil {
				var stamp int64
				if sched != nil {
					select {
					case stamp = <-sched:
					case <-ctx.Done():
						return
					}
				} else {
					stamp = time.Now().UnixNano()
				}
				k := rng.IntN(len(ph.chans))
				ch := &ph.chans[k]
				ac := conns[rng.IntN(len(conns))]
				for attempt := 0; ; attempt++ {
					// A fresh seq per attempt: an attempt that failed after the
					// server took it is then "unaccepted", never a duplicate.
					seq := ch.issued.Add(1)
					data = appendPayload(data[:0], stamp, seq)
					for len(data) < o.EventBytes {
						data = append(data, 'x')
					}
					body = ph.appendEventBody(body[:0], k, data)
					reused := ac.conn != nil
					t := time.Now()
					// Under the run's context, not the phase's: a request already
					// sent finishes, so its deliveries count on both sides.
					status, err := ac.post(r.ctx, body)
					if err != nil {
						ac.close()
						if r.ctx.Err() != nil {
							return
						}
						if reused && attempt == 0 {
							continue // the server may have closed an idle connection
						}
						cr.errs["transport"]++
						break
					}
					cr.api.Record(time.Since(t).Nanoseconds())
					if ph.accepted(status) {
						ch.accept(seq)
						cr.events++
						r.events.Add(1)
					} else {
						cr.errs["http_"+strconv.Itoa(status)]++
					}
					break
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(t0)
	var apiH Histogram
	for i := range results {
		apiH.Merge(&results[i].api)
		res.Events += results[i].events
		for k, v := range results[i].errs {
			res.APIErrors[k] += v
		}
	}
	res.BacklogSkipped = backlog.Load()
	res.DurationS = elapsed.Seconds()
	res.EventsPerS = float64(res.Events) / res.DurationS
	res.APILatency = apiH.Summary()
	r.rep.Hists[histKey(ph.native, "api")] = apiH.Bins()

	r.setPhase(res.Protocol + " drain")
	expected := func() int64 {
		var n int64
		for k := range ph.chans {
			c := &ph.chans[k]
			c.mu.Lock()
			n += c.nAcc * c.openSubs.Load()
			c.mu.Unlock()
		}
		return n
	}
	res.DrainTimedOut = !poll(o.RoundTimeout, 20*time.Millisecond, func() bool { return ph.fresh.Load() >= expected() })
	drained := time.Since(t0)
	res.ServerCPUS = scrape(r.ctx, o.APIs).CPUSeconds - srv0
	self1, _ := selfUsage()
	fresh := ph.fresh.Load()
	res.DeliveriesPerS = float64(fresh) / res.DurationS
	if fresh > 0 {
		res.ServerCPUPerDeliveryUs = res.ServerCPUS * 1e6 / float64(fresh)
		res.BenchCPUPerDeliveryUs = float64(self1-self0) / 1e3 / float64(fresh)
	}
	if res.Events > 0 {
		res.ServerCPUPerEventUs = res.ServerCPUS * 1e6 / float64(res.Events)
	}
	r.logf("%s: %s events (%s/s), %s deliveries (%s/s) in %.1fs + %.2fs drain", res.Protocol, commas(res.Events), commas(int64(res.EventsPerS)),
		commas(fresh), commas(int64(res.DeliveriesPerS)), res.DurationS, (drained - elapsed).Seconds())
}

func histKey(native bool, k string) string {
	if native {
		return "native_" + k
	}
	return k
}

// tally fills the phase's connection and delivery figures once every client
// goroutine has ended.
func (r *pusherRun) tally(ph *pphase, res *PusherPhase) {
	res.Attempted, res.Failed, res.Dropped = ph.attempted.Load(), ph.failed.Load(), ph.dropped.Load()
	res.OpenAtEnd = res.Opened - res.Dropped
	res.Failures, res.Drops, res.Other = ph.failures, ph.drops, ph.other
	res.TCP, res.Handshake = ph.tcpH.Summary(), ph.estH.Summary()
	if !ph.native {
		s := ph.subH.Summary()
		res.Subscribe = &s
		r.rep.Hists["pusher_subscribe"] = ph.subH.Bins()
	}
	r.rep.Hists[histKey(ph.native, "handshake")] = ph.estH.Bins()
	var lat Histogram
	for i := range ph.shards {
		lat.Merge(&ph.shards[i].h)
	}
	res.Latency = lat.Summary()
	r.rep.Hists[histKey(ph.native, "delivery")] = lat.Bins()
	for _, c := range ph.conns {
		if c == nil {
			continue
		}
		res.Duplicates += c.dups
		res.WrongChannel += c.wrongCh
		res.Unknown += c.unknown
		if c.dropped {
			continue
		}
		ch := &ph.chans[c.ch]
		res.Expected += ch.nAcc
		for w, acc := range ch.accepted {
			var seen uint64
			if w < len(c.seen) {
				seen = c.seen[w]
			}
			res.Missing += int64(bits.OnesCount64(acc &^ seen))
			res.Delivered += int64(bits.OnesCount64(acc & seen))
		}
		for w := len(ch.accepted); w < len(c.seen); w++ {
			res.Unaccepted += int64(bits.OnesCount64(c.seen[w]))
		}
		for w := 0; w < min(len(ch.accepted), len(c.seen)); w++ {
			res.Unaccepted += int64(bits.OnesCount64(c.seen[w] &^ ch.accepted[w]))
		}
	}
	for reason, n := range res.Failures {
		if l := pusherLimitFor(reason); l != "" && (n*100 >= int64(res.Conns) || n >= 1000) {
			r.limit(l)
		}
	}
}

// pusherLimitFor is limitFor with the Pusher refusals that name a limit.
func pusherLimitFor(reason string) string {
	switch reason {
	case "close_4100", "pusher_error_4100":
		return "server capacity (node refused: over capacity, Pusher 4100; --max-conns or the app's max-connections)"
	case "close_4004", "pusher_error_4004":
		return "the app's connection quota (Pusher 4004)"
	}
	return limitFor(reason)
}

func ratio(a, b float64) float64 {
	if b <= 0 {
		return 0
	}
	return a / b
}

// fillReport puts the Pusher phase into the generic rows and computes the ratios.
func (r *pusherRun) fillReport() {
	p := &r.res.Pusher
	c := &r.rep.Connect
	c.Requested, c.Attempted, c.Opened, c.Failed, c.Dropped, c.OpenAtEnd = int64(p.Conns), p.Attempted, p.Opened, p.Failed, p.Dropped, p.OpenAtEnd
	c.DurationS, c.RatePerS, c.Handshake, c.TCPConnect, c.Failures, c.Drops = p.ConnectS, p.ConnectPerS, p.Handshake, p.TCP, p.Failures, p.Drops
	sv := &r.rep.Server
	sv.Before, sv.AfterOpen, sv.End = p.ServerBefore, p.ServerAfterOpen, scrape(r.ctx, r.o.APIs)
	sv.Available = p.ServerBefore.Nodes > 0 && p.ServerAfterOpen.Nodes > 0
	sv.RSSPerConnBytes, sv.HeapPerConnBytes, sv.CPUPerConnUs = p.RSSPerConnBytes, p.HeapPerConnBytes, p.CPUPerConnUs
	if n := r.res.Native; n != nil {
		r.res.Ratios = &PusherRatios{
			ConnectPerS: ratio(p.ConnectPerS, n.ConnectPerS), HandshakeP50: ratio(p.Handshake.P50Ms, n.Handshake.P50Ms),
			HeapPerConn:    ratio(p.HeapPerConnBytes, n.HeapPerConnBytes),
			CPUPerConn:     ratio(p.CPUPerConnUs, n.CPUPerConnUs),
			DeliveriesPerS: ratio(p.DeliveriesPerS, n.DeliveriesPerS),
			P50:            ratio(p.Latency.P50Ms, n.Latency.P50Ms), P99: ratio(p.Latency.P99Ms, n.Latency.P99Ms),
			P999: ratio(p.Latency.P999Ms, n.Latency.P999Ms), Max: ratio(p.Latency.MaxMs, n.Latency.MaxMs),
			APIP50:               ratio(p.APILatency.P50Ms, n.APILatency.P50Ms),
			ServerCPUPerDelivery: ratio(p.ServerCPUPerDeliveryUs, n.ServerCPUPerDeliveryUs),
			ServerCPUPerEvent:    ratio(p.ServerCPUPerEventUs, n.ServerCPUPerEventUs),
		}
		r.note("native comparison: " + strings.TrimPrefix(pusherComparison, "native: "))
		first := "Pusher"
		if r.res.NativeOrder == "before" {
			first = "native"
		}
		r.note("heap per connection ratio: the first phase (" + first + ") also pays the node's one-time growth of its connection " +
			"tables (about 350 B per connection measured here), the second reuses them: compare phases run in the same position " +
			"(one run with --floor after, one with --floor before)")
	}
	if !p.ForcedGC {
		r.note("server heap per connection without a forced GC (start the nodes with --pprof and give --api-key to force one before each sample): " +
			"a phase's baseline may hold the previous phase's garbage; RSS per connection is meaningful only for the first phase on a fresh node")
	} else {
		r.note("server heap per connection: live heap, each sample right after a forced GC on every node (/debug/pprof/heap?gc=1); " +
			"RSS per connection is meaningful only for the first phase on a fresh node (Go rarely returns memory)")
	}
	r.note("clients run in this process, one goroutine each (bench CPU covers clients and callers); both phases use the same client code")
	cpu, rss := selfUsage()
	r.rep.Client = ClientOverhead{InProcess: true, CPUS: float64(cpu) / 1e9, CoordinatorCPUS: float64(cpu) / 1e9, CoordinatorRSSBytes: rss}
	r.rep.ElapsedS = time.Since(r.t0).Seconds()
	if len(r.rep.Limits) > 0 {
		r.rep.Advice = limitAdvice()
	}
}

// pusherRows adds the scenario's rows to the summary.
func pusherRows(row func(k, v string), x *PusherResult) {
	mode := "closed loop"
	if x.Mode == "open" {
		mode = fmt.Sprintf("open loop at %s events/s (latency from scheduled time)", commas(int64(x.PushRate)))
	}
	size := "the stamp alone (~25 bytes)"
	if x.EventBytes > 0 {
		size = fmt.Sprintf("%d bytes", x.EventBytes)
	}
	row("pusher", fmt.Sprintf("app %q, %d %s channels, %d callers, %s, event data %s", x.AppID, x.Channels, x.ChannelKind, x.Callers, mode, size))
	phaseRows(row, &x.Pusher, "pusher")
	if n := x.Native; n != nil {
		row("native", fmt.Sprintf("comparison run %s the Pusher phase: plain clients, rooms in their tokens, POST /v1/push to a room with \"ttl\":\"10s\"", x.NativeOrder))
		phaseRows(row, n, "native")
	}
	if q := x.Ratios; q != nil {
		row("pusher / native", fmt.Sprintf("deliveries/s x%.2f  latency p50 x%.2f  p99 x%.2f  p99.9 x%.2f  max x%.2f  API call p50 x%.2f",
			q.DeliveriesPerS, q.P50, q.P99, q.P999, q.Max, q.APIP50))
		row("pusher / native", fmt.Sprintf("server CPU per delivery x%.2f  per event x%.2f  heap per conn x%.2f (order-biased, see notes)  CPU per conn x%.2f  connect rate x%.2f  (no RSS ratio: only a fresh node's first phase has a meaningful RSS figure)",
			q.ServerCPUPerDelivery, q.ServerCPUPerEvent, q.HeapPerConn, q.CPUPerConn, q.ConnectPerS))
	}
}

func phaseRows(row func(k, v string), p *PusherPhase, k string) {
	row(k+" connections", fmt.Sprintf("%s of %s open (%s/s over %.1fs), %s failed (%s), %s dropped later (%s)",
		commas(p.Opened), commas(int64(p.Conns)), commas(int64(p.ConnectPerS)), p.ConnectS, commas(p.Failed), reasons(p.Failures),
		commas(p.Dropped), reasons(p.Drops)))
	if p.Subscribe != nil {
		row(k+" established", latRow(p.Handshake)+"  connect() to pusher:connection_established")
		row(k+" subscribed", latRow(*p.Subscribe)+"  pusher:subscribe to subscription_succeeded")
	} else {
		row(k+" handshake", latRow(p.Handshake)+"  connect() to 101")
	}
	gc := "no forced GC"
	if p.ForcedGC {
		gc = "after a forced GC"
	}
	row(k+" server", fmt.Sprintf("heap %+.0f B/conn (%s), RSS %+.0f B/conn, CPU %.1f µs per connection opened", p.HeapPerConnBytes, gc, p.RSSPerConnBytes, p.CPUPerConnUs))
	row(k+" events", fmt.Sprintf("%s accepted (%s/s) over %.1fs; API errors: %s; backlog skipped %s; warm-up %s/%s in %.2fs",
		commas(p.Events), commas(int64(p.EventsPerS)), p.DurationS, reasons(p.APIErrors), commas(p.BacklogSkipped),
		commas(p.WarmedUp), commas(p.OpenAtEnd), p.WarmupS))
	row(k+" API call", latRow(p.APILatency))
	row(k+" deliveries", fmt.Sprintf("%s of %s expected (%s/s); missing %s, duplicates %s, wrong channel %s, unknown %s, delivered without a 2xx %s; other messages: %s",
		commas(p.Delivered), commas(p.Expected), commas(int64(p.DeliveriesPerS)), commas(p.Missing), commas(p.Duplicates),
		commas(p.WrongChannel), commas(p.Unknown), commas(p.Unaccepted), reasons(p.Other)))
	row(k+" API → client", latRow(p.Latency))
	row(k+" server CPU", fmt.Sprintf("%.2fs, %.2f µs per delivery, %.1f µs per event; bench %.2f µs per delivery", p.ServerCPUS,
		p.ServerCPUPerDeliveryUs, p.ServerCPUPerEventUs, p.BenchCPUPerDeliveryUs))
	if p.DrainTimedOut {
		row(k+" drain", "timed out (--round-timeout) before every expected delivery arrived")
	}
}

// pusherCharts are the scenario's charts beyond the generic ones.
func pusherCharts(rep *Report) []template.HTML {
	if rep.Pusher == nil {
		return nil
	}
	var out []template.HTML
	for _, c := range []struct{ key, title string }{
		{"pusher_subscribe", "Pusher subscribe (pusher:subscribe to subscription_succeeded)"},
		{"native_handshake", "Native handshake (connect() to 101)"},
		{"native_delivery", "Native delivery latency (/v1/push call to client receipt)"},
	} {
		if bins, ok := rep.Hists[c.key]; ok {
			out = append(out, template.HTML(histChart(c.title, bins)))
		}
	}
	return out
}

func pusherCards(rep *Report) []kv {
	x := rep.Pusher
	if x == nil {
		return nil
	}
	p := x.Pusher
	cards := []kv{{"Pusher events/s", commas(int64(p.EventsPerS))}, {"Pusher deliveries/s", commas(int64(p.DeliveriesPerS))},
		{"API → client p99", fmt.Sprintf("%.1f ms", p.Latency.P99Ms)}, {"missing", commas(p.Missing)}}
	if q := x.Ratios; q != nil {
		cards = append(cards, kv{"server CPU per delivery, Pusher / native", fmt.Sprintf("%.2f", q.ServerCPUPerDelivery)})
	}
	return cards
}
