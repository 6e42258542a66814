package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// `longlink bench cluster` starts N local nodes as child processes (each with its
// own open-files budget), spreads --conns v2 connections over them so that every
// user's connections sit on several nodes, and runs, in order: idle gossip cost,
// open + hold, broadcast to all, the iQIYI push mix, a node joining at scale, and
// a node killed with SIGKILL whose clients reconnect to the others and recover
// their positions; then a single-node baseline of the same build. It stops every
// process it started by pid, also on error and Ctrl-C, and writes one report.
//
// The coordinator goroutine owns the node set, the worker pool and the report; the
// kill phase's samplers (API prober, survivors' CPU and memory) are goroutines of
// their own that only write their own result structs, read after they stop.

// ClusterOptions is one `bench cluster` run, as parsed from the command line.
type ClusterOptions struct {
	Nodes         int           `json:"nodes"`
	Conns         int           `json:"conns"`
	ConnsPerUser  int           `json:"conns_per_user"`
	Rate          float64       `json:"rate"`
	Hold          time.Duration `json:"hold_ns"`
	OpenTime      time.Duration `json:"open_time_ns,omitempty"`
	Rounds        int           `json:"rounds"`
	PushRate      float64       `json:"push_rate"`
	Duration      time.Duration `json:"duration_ns"`
	Callers       int           `json:"callers"`
	Messages      int           `json:"messages"`
	GossipWindow  time.Duration `json:"gossip_window_ns"`
	Join          bool          `json:"join"`
	Kill          bool          `json:"kill"`
	BaselineConns int           `json:"baseline_conns"` // -1: conns/nodes; 0: no baseline
	Binary        string        `json:"binary"`
	BasePort      int           `json:"base_port"`
	Workers       int           `json:"workers"`
	SourceSpec    string        `json:"source_spec,omitempty"`
	Dir           string        `json:"dir"`
	JSONPath      string        `json:"json_path,omitempty"`
	HTMLPath      string        `json:"html_path,omitempty"`
	TextPath      string        `json:"text_path,omitempty"`
	MaxTime       time.Duration `json:"max_time_ns"`
	RoundTimeout  time.Duration `json:"round_timeout_ns"`
	NodeArgs      []string      `json:"node_args,omitempty"`
}

// ClusterResult is what `bench cluster` measured beyond the scenario results the
// report shares with the other scenarios (connect, server, broadcast, push,
// reconnect for the kill).
type ClusterResult struct {
	Nodes          []*clusterNode `json:"nodes"`
	ConnsPerNode   int            `json:"conns_per_node"`
	WorkersPerNode int            `json:"workers_per_node"`
	NodeCap        int            `json:"node_cap"` // clients a node accepts (its --max-conns default)
	LoadBefore     string         `json:"load_before"`
	LoadAfter      string         `json:"load_after"`
	StartS         float64        `json:"start_s"` // all nodes started, ready and seeing each other alive
	Phases         []PhaseTime    `json:"phases"`

	Gossip   *GossipResult   `json:"gossip,omitempty"`
	Memory   []NodeMemory    `json:"memory"`
	Kernel   *KernelResult   `json:"kernel,omitempty"`
	Hold     *HoldResult     `json:"hold,omitempty"`
	Join     *JoinResult     `json:"join,omitempty"`
	Kill     *KillResult     `json:"kill,omitempty"`
	Baseline *BaselineResult `json:"baseline,omitempty"`
	// BroadcastCPUPerRecipientUs is the cluster's CPU per broadcast recipient, the
	// mean over the rounds (all nodes' process_cpu_seconds_total).
	BroadcastCPUPerRecipientUs float64 `json:"broadcast_cpu_per_recipient_us"`
	BroadcastLastMs            float64 `json:"broadcast_last_ms"` // median round's last recipient

	StoppedPids []int  `json:"stopped_pids"`
	WorkerPids  []int  `json:"worker_pids"` // the client workers, closed (or killed) before the nodes
	LeftPids    []int  `json:"left_pids"`   // processes that could not be confirmed gone
	Refused     string `json:"refused,omitempty"`
}

// PhaseTime is how long one phase took.
type PhaseTime struct {
	Name  string  `json:"name"`
	S     float64 `json:"s"`
	Error string  `json:"error,omitempty"`
}

// GossipResult is the cluster's own traffic while idle (no clients): memberlist's
// packets and stream bytes from each node's longlink_cluster_gossip_* counters
// (scraped at the start and the end of the window only), and every read(2) and
// write(2) of each node process from /proc/PID/io, which then is the TCP side:
// push-pull syncs and the forwarding links (UDP's sendto/recvfrom are not in it).
type GossipResult struct {
	WindowS float64 `json:"window_s"`
	// From the gossip counters, per node (mean) and the busiest node.
	PacketsInPs      float64 `json:"packets_in_ps"`
	PacketsOutPs     float64 `json:"packets_out_ps"`
	PacketBytesInPs  float64 `json:"packet_bytes_in_ps"`
	PacketBytesOutPs float64 `json:"packet_bytes_out_ps"`
	StreamBytesInPs  float64 `json:"stream_bytes_in_ps"`
	StreamBytesOutPs float64 `json:"stream_bytes_out_ps"`
	MaxNodeBytesPs   float64 `json:"max_node_bytes_ps"` // in + out, packets and streams
	// IdleCPUPct is a node's CPU while idle (process_cpu_seconds_total), % of a
	// core, the mean and the busiest: what every node costs doing nothing.
	IdleCPUPct    float64 `json:"idle_cpu_pct"`
	MaxIdleCPUPct float64 `json:"max_idle_cpu_pct"`
	Counted       bool    `json:"counted"` // the nodes had the gossip counters
	// From /proc/PID/io.
	PerNode      []NodeIORate `json:"per_node"`
	MeanReadBps  float64      `json:"mean_read_bps"`
	MeanWriteBps float64      `json:"mean_write_bps"`
	MeanReadsPs  float64      `json:"mean_reads_ps"`
	MeanWritesPs float64      `json:"mean_writes_ps"`
	MaxTotalBps  float64      `json:"max_total_bps"`
}

// NodeIORate is one node's I/O rates.
type NodeIORate struct {
	Name     string  `json:"name"`
	ReadBps  float64 `json:"read_bps"`
	WriteBps float64 `json:"write_bps"`
	ReadsPs  float64 `json:"reads_ps"`
	WritesPs float64 `json:"writes_ps"`
}

// NodeMemory is one node's memory before and after the connections opened.
type NodeMemory struct {
	Name         string  `json:"name"`
	Conns        float64 `json:"conns"`
	RSSBefore    float64 `json:"rss_before"`
	RSSAfter     float64 `json:"rss_after"`
	HeapBefore   float64 `json:"heap_before"`
	HeapAfter    float64 `json:"heap_after"`
	RSSPerConn   float64 `json:"rss_per_conn"`
	HeapPerConn  float64 `json:"heap_per_conn"`
	RouteEntries float64 `json:"route_entries"` // longlink_cluster_route_updates_total after open
}

// KernelResult is the machine's kernel memory for the sockets, from /proc/meminfo
// and /proc/net/sockstat before and after the connections opened. The box is
// shared: other processes' sockets move these figures too.
type KernelResult struct {
	Before  kernelSample `json:"before"`
	After   kernelSample `json:"after"`
	Sockets int64        `json:"sockets"` // TCP sockets added (client and server side)
	// SlabPerSocket is the slab growth per socket; TCPBufPerSocket the TCP buffer
	// pages'; KernelPerSocket the machine's memory in use (MemTotal-MemAvailable)
	// growth less the bench's and nodes' RSS growth, per socket.
	SlabPerSocket float64 `json:"slab_per_socket"`
	// SUnreclaimPerSocket is the unreclaimable slab's growth per socket; reclaimable
	// slab (socket inodes, dentries) counts as available in MemAvailable, so
	// KernelPerSocket is a lower bound and SlabPerSocket the figure to plan with.
	SUnreclaimPerSocket float64 `json:"sunreclaim_per_socket"`
	TCPBufPerSocket     float64 `json:"tcp_buf_per_socket"`
	KernelPerSocket     float64 `json:"kernel_per_socket"`
	ProcessRSSDelta     float64 `json:"process_rss_delta"`
}

// HoldResult is the hold: every connection must stay open.
type HoldResult struct {
	S           float64 `json:"s"`
	OpenBefore  int64   `json:"open_before"`
	OpenAfter   int64   `json:"open_after"`
	Dropped     int64   `json:"dropped"`
	ServerConns float64 `json:"server_conns"` // sum of the nodes' longlink_connections after
	Held        bool    `json:"held"`
}

// JoinResult is a node joining the loaded cluster.
type JoinResult struct {
	Node            string  `json:"node"`
	MembersS        float64 `json:"members_s"` // every node sees it alive and it sees every node
	ReadyS          float64 `json:"ready_s"`   // its /readyz answered 200
	RoutesS         float64 `json:"routes_s"`  // its route tables hold every peer's entries
	StreamsS        float64 `json:"streams_s"` // histories stopped moving (handoff done)
	RouteEntries    float64 `json:"route_entries"`
	ExpectedEntries int64   `json:"expected_entries"`
	HistoryStreams  float64 `json:"history_streams"` // streams the joiner holds at the end
	HistoryBytes    float64 `json:"history_bytes"`
	HandoffStreams  float64 `json:"handoff_streams"` // histories copied cluster-wide after the join
	HandoffFailures float64 `json:"handoff_failures"`
	ReadBytes       int64   `json:"read_bytes"`    // the joiner's, until its tables were complete
	WrittenBytes    int64   `json:"written_bytes"` // likewise
	ReadBytesEnd    int64   `json:"read_bytes_end"`
	WrittenBytesEnd int64   `json:"written_bytes_end"`
	HeapBytes       float64 `json:"heap_bytes"`
	RSSBytes        float64 `json:"rss_bytes"`
	// RouteHeapPerEntry is (the joiner's heap, which holds no client, less the
	// idle nodes' mean heap before any client) per route entry it holds.
	RouteHeapPerEntry float64 `json:"route_heap_per_entry"`
	TimedOut          bool    `json:"timed_out"`
}

// KillResult is one node killed under load (SIGKILL), its clients reconnecting to
// the others; the reconnect's figures are in the report's "reconnect".
type KillResult struct {
	Node    string `json:"node"`
	Pid     int    `json:"pid"`
	Clients int64  `json:"clients"`
	Users   int    `json:"users"`
	// Failure detection, from the SIGKILL: the first survivor to call it suspect
	// and dead, and when every survivor called it dead.
	SuspectFirstS float64 `json:"suspect_first_s"`
	DeadFirstS    float64 `json:"dead_first_s"`
	DeadAllS      float64 `json:"dead_all_s"`
	// ReconnectStartS is when the clients started coming back (after the pushes
	// they missed), AllRecoveredS when the last had recovered, both from the kill.
	ReconnectStartS float64 `json:"reconnect_start_s"`
	AllRecoveredS   float64 `json:"all_recovered_s"`
	Lost            int64   `json:"lost"` // missed pushes never received
	// The survivors during the phase, sampled every 250 ms from /proc.
	PeakCPUPct     float64     `json:"peak_cpu_pct"`      // all survivors together, % of one core
	PeakNodeCPUPct float64     `json:"peak_node_cpu_pct"` // the busiest survivor
	RSSBefore      float64     `json:"rss_before"`        // survivors together, at the kill
	PeakRSS        float64     `json:"peak_rss"`          // survivors together
	PeakNodeRSS    float64     `json:"peak_node_rss"`     // the largest survivor
	API            ProbeResult `json:"api"`
	OtherDropped   int64       `json:"other_dropped"` // connections on the other nodes dropped meanwhile
}

// ProbeResult is what the API answered during the kill phase: one push started
// every 20 ms to one of 16 users nobody holds, through the survivors in turn.
type ProbeResult struct {
	Requests int64            `json:"requests"`
	Status   map[string]int64 `json:"status"`
	Latency  LatencySummary   `json:"latency"`
	// FirstBadS and LastBadS bound the answers that were not 2xx, from the kill.
	FirstBadS float64 `json:"first_bad_s,omitempty"`
	LastBadS  float64 `json:"last_bad_s,omitempty"`
}

// BaselineResult is the same build as one standalone node, broadcast to as many
// connections as each cluster node held.
type BaselineResult struct {
	Conns             int64   `json:"conns"`
	LastMs            float64 `json:"last_ms"` // median round
	FirstMs           float64 `json:"first_ms"`
	CPUPerRecipientUs float64 `json:"cpu_per_recipient_us"`
	RSSPerConnBytes   float64 `json:"rss_per_conn_bytes"`
	HeapPerConnBytes  float64 `json:"heap_per_conn_bytes"`
	Error             string  `json:"error,omitempty"`
}

const clusterUsage = `longlink bench cluster - a local cluster of N nodes under load

Starts --nodes longlink serve processes on 127.0.0.1 (node i: client port
base+10i, API +1, gossip +2, forwarding +3), waits until they see each other,
then runs: idle gossip cost; --conns v2 connections (connection i on node i mod N,
user i / conns-per-user, so a user's connections sit on several nodes) held
--hold with no drop; a broadcast to all (--rounds); the push mix (--push-rate for
--duration, users pushed at random through every node's API); a node joining at
this scale; a node killed (SIGKILL) whose clients reconnect to the others with
their positions; a single-node baseline. Every process it started is stopped by
pid at the end, also on error and Ctrl-C. One report: text (stdout and --out),
--json, --html. It refuses a run that cannot fit (open files, ports, memory, time)
and says which limit stopped a run that did not finish.

Example (this box: 24 GiB, ulimit -n 20000):
  longlink bench cluster --nodes 27 --conns 500000 --hold 60s --push-rate 5000 \
      --duration 30s --json c27.json --out c27.txt

Flags:
`

func parseClusterOptions(args []string, stderr io.Writer) (ClusterOptions, error) {
	var o ClusterOptions
	fs := flag.NewFlagSet("longlink bench cluster", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, clusterUsage); fs.PrintDefaults() }
	fs.IntVar(&o.Nodes, "nodes", 27, "nodes to start (a 28th joins in the join phase)")
	fs.IntVar(&o.Conns, "conns", 500000, "client connections, spread over the nodes (each under its open-files budget)")
	fs.IntVar(&o.ConnsPerUser, "conns-per-user", 10, "connections per user (consecutive connections, so on different nodes)")
	fs.Float64Var(&o.Rate, "rate", 10000, "connections opened per second, all workers together (0: as fast as possible)")
	fs.DurationVar(&o.Hold, "hold", 60*time.Second, "hold every connection this long; any drop fails the run")
	fs.DurationVar(&o.OpenTime, "open-time", 0, "stop opening after this long and run the phases with the connections open by then; the report names the time limit and the count (0: open all)")
	fs.IntVar(&o.Rounds, "rounds", 3, "broadcasts to all (0: no broadcast phase)")
	fs.Float64Var(&o.PushRate, "push-rate", 5000, "push mix: pushes a second, open loop (0: closed loop)")
	fs.DurationVar(&o.Duration, "duration", 30*time.Second, "push mix: how long (0: no push phase)")
	fs.IntVar(&o.Callers, "callers", 64, "push mix: concurrent API callers")
	fs.IntVar(&o.Messages, "messages", 3, "kill: pushes to each of the killed node's users while its clients are away")
	fs.DurationVar(&o.GossipWindow, "gossip-window", 20*time.Second, "idle gossip measurement window, before any client (0: skip)")
	fs.BoolVar(&o.Join, "join", true, "run the join phase")
	fs.BoolVar(&o.Kill, "kill", true, "run the kill phase")
	fs.IntVar(&o.BaselineConns, "baseline-conns", -1, "single-node baseline: connections (-1: conns/nodes; 0: none)")
	fs.StringVar(&o.Binary, "binary", "", "longlink `binary` the nodes run (default: this executable)")
	fs.IntVar(&o.BasePort, "base-port", 21000, "first port; node i uses base+10i..base+10i+3 (must stay below the ephemeral range)")
	fs.IntVar(&o.Workers, "workers", 0, "client worker processes (default: enough for the open-files limit; rounded up to a multiple of --nodes)")
	fs.StringVar(&o.SourceSpec, "source-ips", "", "client source addresses, as for the other scenarios (default: one per 30,000 connections from 127.0.0.2)")
	fs.StringVar(&o.Dir, "dir", "", "directory for the nodes' logs (default: a new one under $TMPDIR)")
	fs.StringVar(&o.JSONPath, "json", "", "write the JSON report to `FILE`")
	fs.StringVar(&o.HTMLPath, "html", "", "write the HTML report to `FILE`")
	fs.StringVar(&o.TextPath, "out", "", "write the text report to `FILE` too")
	fs.DurationVar(&o.MaxTime, "max-time", 19*time.Minute, "the whole run's bound: refused if the plan needs more, stopped (and reported) when it passes")
	fs.DurationVar(&o.RoundTimeout, "round-timeout", 60*time.Second, "wait at most this long for a broadcast round, the push mix's last deliveries, the join or the recovery")
	fs.Var(multiFlag{&o.NodeArgs}, "node-arg", "extra `FLAG` for every node, e.g. --node-arg=--replicas=2 (repeatable)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	switch {
	case o.Nodes < 2 || o.Nodes > 99:
		return o, errors.New("--nodes must be between 2 and 99")
	case o.Conns < o.Nodes:
		return o, errors.New("--conns must be at least --nodes")
	case o.ConnsPerUser < 1:
		return o, errors.New("--conns-per-user must be at least 1")
	case o.Rate < 0 || o.PushRate < 0 || o.Hold < 0 || o.Duration < 0 || o.GossipWindow < 0 || o.OpenTime < 0:
		return o, errors.New("--rate, --push-rate, --hold, --duration, --open-time and --gossip-window must not be negative")
	case o.Rounds < 0 || o.Rounds > 100:
		return o, errors.New("--rounds must be between 0 and 100")
	case o.Callers < 1 || o.Callers > 10000:
		return o, errors.New("--callers must be between 1 and 10000")
	case o.Messages < 1 || o.Messages > 1000:
		return o, errors.New("--messages must be between 1 and 1000 (the kill phase checks every client recovers them)")
	case o.BasePort < 1024 || o.BasePort > 65000:
		return o, errors.New("--base-port must be between 1024 and 65000")
	case o.MaxTime <= 0 || o.RoundTimeout <= 0:
		return o, errors.New("--max-time and --round-timeout must be positive")
	}
	if o.BaselineConns < 0 {
		o.BaselineConns = (o.Conns + o.Nodes - 1) / o.Nodes
	}
	if o.Binary == "" {
		exe, err := os.Executable()
		if err != nil {
			return o, fmt.Errorf("cannot find this executable for the nodes: %w (give --binary)", err)
		}
		o.Binary = exe
	}
	return o, nil
}

// clusterMain is `longlink bench cluster`.
func clusterMain(args []string, stdout, stderr io.Writer) int {
	o, err := parseClusterOptions(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "longlink bench cluster: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := RunCluster(ctx, o, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "longlink bench cluster: %v\n", err)
		return 1
	}
	return 0
}

// clusterPlan is what the run needs, worked out before anything starts.
type clusterPlan struct {
	perNode, perProc, workersPerNode, nodeCap, afterKill int
	sourceIPs                                            []string
	memNeed, memAvail                                    int64
	estimate                                             time.Duration
	// cpuOpenS is how long the open takes with every core busy on it alone
	// (planConnectCPU); openCapped says --open-time will stop it first.
	cpuOpenS   float64
	openCapped bool
}

// planConnectCPU is the CPU one v2 connect costs the whole cluster of n nodes:
// the node's own accept, upgrade and token check, and, because a connection's
// route is flushed to every peer before its 101 (hub/subscribe.go), a wake-up,
// read and apply on each of the n-1 others. Measured on this box (2 shared
// cores): 1.8-2.0 ms at 27 nodes, ~25 µs standalone (docs/performance.md).
func planConnectCPU(n int) time.Duration {
	if n <= 1 {
		return 25 * time.Microsecond
	}
	return 25*time.Microsecond + time.Duration(n)*68*time.Microsecond
}

// Cost figures the plan uses to refuse a run that cannot fit, measured on this
// build (docs/performance.md "27 nodes"): kernel slab per socket, the gateway's
// memory per connection (2.2 KB of its own and 86 B of route table on each other
// node), the bench client's, and a node's and a worker's base.
const (
	planKernelPerSocket = 5500
	planNodePerConn     = 2300
	planRoutePerNode    = 90
	planClientPerConn   = 3600
	planNodeBase        = 60 << 20
	planWorkerBase      = 20 << 20
)

func planCluster(o ClusterOptions, env Env) (clusterPlan, error) {
	var p clusterPlan
	p.perNode = (o.Conns + o.Nodes - 1) / o.Nodes
	// Ports: the nodes' ports must stay below the kernel's ephemeral range, or a
	// node's own outgoing connection may hold one first.
	top := o.BasePort + 10*o.Nodes + 3
	if lo := ephemeralLow(); top >= lo {
		return p, fmt.Errorf("ports: nodes need ports %d-%d, which reach the ephemeral range starting at %d (ip_local_port_range): lower --base-port", o.BasePort, top, lo)
	}
	if top > 65535 {
		return p, fmt.Errorf("ports: nodes need ports up to %d: lower --base-port or --nodes", top)
	}
	// Open files: each node is its own process with the hard limit as its budget.
	hard := env.NoFileHard
	if hard > math.MaxInt32 {
		hard = math.MaxInt32
	}
	reserve := min(max(hard/20, 64), 700)
	if hard <= reserve {
		return p, fmt.Errorf("open files: the hard RLIMIT_NOFILE is %d", env.NoFileHard)
	}
	p.nodeCap = int(hard - reserve)
	survivors := o.Nodes - 1
	if o.Join {
		survivors++
	}
	p.afterKill = p.perNode
	if o.Kill {
		p.afterKill = p.perNode + (p.perNode+survivors-1)/survivors
	}
	if p.afterKill > p.nodeCap {
		fits := p.nodeCap * o.Nodes
		if o.Kill {
			fits = p.nodeCap * o.Nodes * survivors / (survivors + 1)
		}
		return p, fmt.Errorf("open files: %s connections over %d nodes are %s per node, %s after the kill, but a node takes at most %s (hard RLIMIT_NOFILE %d less its reserve of %d): at most --conns %s with --nodes %d, or more nodes",
			commas(int64(o.Conns)), o.Nodes, commas(int64(p.perNode)), commas(int64(p.afterKill)), commas(int64(p.nodeCap)), env.NoFileHard, reserve, commas(int64(fits)), o.Nodes)
	}
	p.perProc = int(hard) - 128
	p.workersPerNode = max(1, (p.perNode+p.perProc-1)/p.perProc, (o.Workers+o.Nodes-1)/o.Nodes)
	// System-wide files: both ends of every connection.
	if fm, err := strconv.ParseInt(readSysctl("fs.file-max"), 10, 64); err == nil {
		used := int64(0)
		if f := strings.Fields(readFileString("/proc/sys/fs/file-nr")); len(f) > 0 {
			used, _ = strconv.ParseInt(f[0], 10, 64)
		}
		if need := 2*int64(o.Conns) + 10000; used+need > fm {
			return p, fmt.Errorf("open files: %s connections need %s descriptors, fs.file-max is %s with %s in use", commas(int64(o.Conns)), commas(need), commas(fm), commas(used))
		}
	}
	// Client source addresses: bench picks source ports itself, one per
	// (address, connection), from the unprivileged ports outside the kernel's
	// ephemeral range (sourcePort).
	ips, err := parseSourceIPs(o.SourceSpec, o.Conns, []string{"127.0.0.1:1"})
	if err != nil {
		return p, err
	}
	p.sourceIPs = ips
	if o.Conns > portSpan*len(ips) {
		return p, fmt.Errorf("ephemeral ports: %s connections from %d source address(es) of %d ports each: give --source-ips %d",
			commas(int64(o.Conns)), len(ips), portSpan, (o.Conns+portSpan-1)/portSpan)
	}
	// Memory.
	k := readKernel()
	p.memAvail = k.MemAvailableBytes
	nodes := int64(o.Nodes + 2)
	per := int64(2*planKernelPerSocket + planNodePerConn + planRoutePerNode*o.Nodes + planClientPerConn)
	p.memNeed = int64(o.Conns)*per + nodes*planNodeBase + int64(p.workersPerNode*o.Nodes)*planWorkerBase
	if p.memAvail > 0 && p.memNeed > p.memAvail*9/10 {
		fits := (p.memAvail*9/10 - nodes*planNodeBase - int64(p.workersPerNode*o.Nodes)*planWorkerBase) / per
		return p, fmt.Errorf("memory: %s connections need about %s (%d B a connection for both sockets, the node and the client, plus the processes), %s available: at most --conns %s",
			commas(int64(o.Conns)), mib(float64(p.memNeed)), per, mib(float64(p.memAvail)), commas(max(0, fits)))
	}
	// Time: starting, opening at the rate (or as fast as the CPU allows: every
	// connect costs every node work, see planConnectCPU), and the phases.
	openS := float64(o.Conns) / 20000
	if o.Rate > 0 {
		openS = float64(o.Conns) / o.Rate
	}
	p.cpuOpenS = float64(o.Conns) * planConnectCPU(o.Nodes).Seconds() / float64(max(1, env.Cores))
	openS = max(openS, p.cpuOpenS)
	if o.OpenTime > 0 && openS > o.OpenTime.Seconds() {
		p.openCapped = true
		openS = o.OpenTime.Seconds()
	}
	est := time.Duration(o.Nodes)*500*time.Millisecond + time.Duration(openS*float64(time.Second)) + o.Hold +
		o.GossipWindow + time.Duration(o.Rounds)*5*time.Second + o.Duration + 30*time.Second
	if o.Join {
		est += 20 * time.Second
	}
	if o.Kill {
		est += 30 * time.Second
	}
	if o.BaselineConns > 0 {
		est += 30 * time.Second
	}
	p.estimate = est
	if est > o.MaxTime {
		return p, fmt.Errorf("time: the plan needs about %v (open %.0fs: %s connections at --rate %.0f/s, or at %v of cluster CPU each over %d cores; --hold %v, --duration %v, phases), over --max-time %v; give --open-time to open what fits",
			est.Round(time.Second), openS, commas(int64(o.Conns)), o.Rate, planConnectCPU(o.Nodes), env.Cores, o.Hold, o.Duration, o.MaxTime)
	}
	return p, nil
}

func ephemeralLow() int {
	f := strings.Fields(readSysctl("net.ipv4.ip_local_port_range"))
	if len(f) == 2 {
		if lo, err := strconv.Atoi(f[0]); err == nil {
			return lo
		}
	}
	return 32768
}

func readFileString(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

// clusterRun is one `bench cluster`: the runner that the shared phases
// (broadcast, push) run on, the nodes and the plan.
type clusterRun struct {
	*runner
	co   ClusterOptions
	plan clusterPlan
	ns   *nodeSet
	cr   *ClusterResult
	// nodeOf is the node index of each worker, in pool order; attempted is how
	// many of its connections each worker attempted in the open (all of them
	// unless --open-time stopped it).
	nodeOf    []int
	attempted []int64
}

// opened says whether connection idx was attempted in the open (and so, when no
// connection failed, is open).
func (c *clusterRun) opened(idx int) bool {
	N, k := c.co.Nodes, c.plan.workersPerNode
	j := idx % N
	m := (idx / N) % k
	w := j*k + m
	local := (idx - (j + N*m)) / (N * k)
	return w < len(c.attempted) && int64(local) < c.attempted[w]
}

// RunCluster executes `bench cluster`. The report is written whatever happens; the
// error says why the run failed (a refused plan, a phase that failed, a limit).
func RunCluster(ctx context.Context, co ClusterOptions, stdout, stderr io.Writer) (err error) {
	if _, err := raiseNoFile(); err != nil {
		fmt.Fprintf(stderr, "warning: %v\n", err)
	}
	if _, ok := stderr.(*os.File); !ok {
		stderr = &syncWriter{w: stderr}
	}
	env := collectEnv()
	cr := &ClusterResult{LoadBefore: loadAvg(), Memory: []NodeMemory{}, StoppedPids: []int{}, LeftPids: []int{}, WorkerPids: []int{}}
	plan, perr := planCluster(co, env)
	secret, key := randomHex(24), randomHex(16)
	o := Options{Scenario: "cluster", TokenSecret: secret, APIKey: key, Conns: co.Conns, ConnsPerUser: co.ConnsPerUser,
		Users: max(1, co.Conns/co.ConnsPerUser), Callers: co.Callers, Rounds: max(1, co.Rounds), Rate: co.Rate, PushRate: co.PushRate,
		Duration: co.Duration, Workers: plan.workersPerNode * co.Nodes, SourceSpec: co.SourceSpec, SourceIPs: plan.sourceIPs,
		HandshakeTimeout: 10 * time.Second, PingInterval: 30 * time.Second, RoundTimeout: co.RoundTimeout,
		BatchWait: 100 * time.Microsecond, Protocol: "v2", History: true, Messages: co.Messages,
		JSONPath: co.JSONPath, HTMLPath: co.HTMLPath}
	t0 := time.Now()
	r := &runner{o: o, stdout: stdout, stderr: stderr, tty: isTerminal(stdout), t0: t0, ctx: ctx}
	r.rep = &Report{Tool: "longlink bench", Scenario: "cluster", StartedAt: t0.UTC(), Options: o, Env: env,
		Hists: map[string][]HistBin{}, Limits: []string{}, Notes: []string{}, Cluster: cr}
	c := &clusterRun{runner: r, co: co, plan: plan, cr: cr}
	cr.ConnsPerNode, cr.WorkersPerNode, cr.NodeCap = plan.perNode, plan.workersPerNode, plan.nodeCap
	if perr != nil {
		cr.Refused = perr.Error()
		r.limit(strings.SplitN(perr.Error(), ":", 2)[0])
		fmt.Fprintf(stdout, "longlink bench cluster: refused: %v\n", perr)
		_ = c.writeReport()
		return fmt.Errorf("refused: %w", perr)
	}
	dir := co.Dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "longlink-cluster-"); err != nil {
			return err
		}
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	c.ns = &nodeSet{bin: co.Binary, dir: dir, basePort: co.BasePort, secret: secret, apiKey: key, extra: co.NodeArgs}
	if err := c.ns.checkPorts(co.Nodes + 1); err != nil {
		cr.Refused = err.Error()
		r.limit("ports")
		_ = c.writeReport()
		return fmt.Errorf("refused: %w", err)
	}
	fmt.Fprintf(stdout, "longlink bench cluster: %d nodes (ports %d-%d, logs in %s), %s v2 connections (%s a node, cap %s), %d workers, %d source address(es); load %s; plan ~%v\n",
		co.Nodes, co.BasePort, co.BasePort+10*co.Nodes+3, dir, commas(int64(co.Conns)), commas(int64(plan.perNode)),
		commas(int64(plan.nodeCap)), o.Workers, len(plan.sourceIPs), cr.LoadBefore, plan.estimate.Round(time.Second))

	runCtx, cancel := context.WithTimeout(ctx, co.MaxTime)
	defer cancel()
	r.ctx = runCtx
	defer func() {
		// Whatever happened: workers first (they close their connections), then
		// every node by pid.
		r.stopSampling()
		if r.p != nil {
			last, _ := r.p.stats(true, false)
			if ferr := c.finishWorkers(last); ferr != nil {
				r.note(fmt.Sprintf("closing workers: %v", ferr))
			}
		}
		for _, n := range c.ns.all() {
			cr.StoppedPids = append(cr.StoppedPids, n.Pid)
		}
		cr.LeftPids = append(cr.LeftPids, c.ns.stopAll(15*time.Second)...)
		if len(cr.LeftPids) > 0 {
			r.note(fmt.Sprintf("processes not confirmed gone: %v", cr.LeftPids))
		}
		// The baseline runs after the cluster is gone, on its own ports.
		if co.BaselineConns > 0 && ctx.Err() == nil && runCtx.Err() == nil && c.rep.Connect.Opened > 0 {
			c.baseline()
		}
		cr.Nodes = c.ns.all()
		cr.LoadAfter = loadAvg()
		if runCtx.Err() == context.DeadlineExceeded {
			r.limit(fmt.Sprintf("time: --max-time %v passed", co.MaxTime))
		}
		r.rep.ElapsedS = time.Since(t0).Seconds()
		if werr := c.writeReport(); werr != nil {
			err = errors.Join(err, werr)
		}
	}()
	return c.phases()
}

// phases runs the phases in order. A failed start, gossip or open ends the run; a
// later phase that fails (a drop in the hold, a missing delivery, an incomplete
// join or recovery) is reported and the next phases still run on the connections
// left, so one run at scale yields every figure; the run then fails.
func (c *clusterRun) phases() error {
	steps := []struct {
		name string
		on   bool
		f    func() error
		hard bool
	}{
		{"start", true, c.start, true},
		{"gossip", c.co.GossipWindow > 0, c.gossip, true},
		{"open", true, c.open, true},
		{"hold", true, c.holdPhase, false},
		{"broadcast", c.co.Rounds > 0, c.broadcastPhase, false},
		{"push", c.co.Duration > 0, c.pushPhase, false},
		{"join", c.co.Join, c.join, false},
		{"kill", c.co.Kill, c.kill, false},
	}
	var failed []error
	for _, s := range steps {
		if !s.on {
			continue
		}
		if err := c.ctx.Err(); err != nil {
			c.cr.Phases = append(c.cr.Phases, PhaseTime{Name: s.name, Error: "not run: " + err.Error()})
			return fmt.Errorf("%s: not run: %w", s.name, err)
		}
		c.setPhase(s.name)
		t := time.Now()
		err := s.f()
		pt := PhaseTime{Name: s.name, S: time.Since(t).Seconds()}
		if err != nil {
			pt.Error = err.Error()
			c.note(fmt.Sprintf("%s: %v", s.name, err))
		}
		c.cr.Phases = append(c.cr.Phases, pt)
		c.logf("phase %s: %.1fs", s.name, pt.S)
		if err != nil {
			failed = append(failed, fmt.Errorf("%s: %w", s.name, err))
			if s.hard {
				break
			}
		}
	}
	return errors.Join(failed...)
}

func (c *clusterRun) apis() []string {
	var out []string
	for _, n := range c.ns.live() {
		out = append(out, n.API)
	}
	return out
}

// start runs the nodes, the first as the seed, the others joining it a few at a
// time, and waits until every node is ready and sees all the others alive.
func (c *clusterRun) start() error {
	t := time.Now()
	seed, err := c.ns.start(0, "")
	if err != nil {
		return err
	}
	if !poll(30*time.Second, 20*time.Millisecond, func() bool {
		code, err := c.ns.apiGet(c.ctx, seed.API, "/readyz", nil)
		return (err == nil && code == 200) || !seed.alive()
	}) || !seed.alive() {
		return fmt.Errorf("the seed node did not become ready; see %s", seed.Log)
	}
	for i := 1; i < c.co.Nodes; i++ {
		if _, err := c.ns.start(i, seed.Gossip); err != nil {
			return err
		}
		if i%4 == 0 { // joins in small groups: memberlist's join is a push-pull each
			time.Sleep(100 * time.Millisecond)
		}
	}
	var why string
	if !poll(60*time.Second, 200*time.Millisecond, func() bool {
		var ok bool
		ok, why = c.ns.converged(c.ctx, c.ns.live())
		return ok || c.ctx.Err() != nil
	}) {
		return fmt.Errorf("the cluster did not converge within 60 s: %s", why)
	}
	c.cr.StartS = time.Since(t).Seconds()
	c.o.Targets, c.o.APIs = nil, nil
	for _, n := range c.ns.live() {
		c.o.Targets = append(c.o.Targets, n.Client)
		c.o.APIs = append(c.o.APIs, n.API)
	}
	c.rep.Options.Targets, c.rep.Options.APIs = c.o.Targets, c.o.APIs
	c.logf("%d nodes up and converged in %.1fs", c.co.Nodes, c.cr.StartS)
	return nil
}

// gossip measures the idle cluster's own traffic: no client, no scrape.
func (c *clusterRun) gossip() error {
	nodes := c.ns.live()
	before := make([]procIO, len(nodes))
	for i, n := range nodes {
		var err error
		if before[i], err = readProcIO(n.Pid); err != nil {
			return fmt.Errorf("cannot read /proc/%d/io: %w", n.Pid, err)
		}
	}
	m0 := c.scrapeNodes(nodes)
	t := time.Now()
	select {
	case <-time.After(c.co.GossipWindow):
	case <-c.ctx.Done():
		return c.ctx.Err()
	}
	m1 := c.scrapeNodes(nodes)
	span := time.Since(t).Seconds()
	g := &GossipResult{WindowS: span}
	nn := float64(len(nodes))
	for i := range nodes {
		if _, ok := m1[i][metricGossipPacketsOut]; !ok {
			continue
		}
		g.Counted = true
		d := func(k string) float64 { return (m1[i][k] - m0[i][k]) / span }
		cpu := d("process_cpu_seconds_total") * 100
		g.IdleCPUPct += cpu / nn
		g.MaxIdleCPUPct = max(g.MaxIdleCPUPct, cpu)
		g.PacketsInPs += d(metricGossipPacketsIn) / nn
		g.PacketsOutPs += d(metricGossipPacketsOut) / nn
		g.PacketBytesInPs += d(metricGossipPacketBytesIn) / nn
		g.PacketBytesOutPs += d(metricGossipPacketBytesOut) / nn
		g.StreamBytesInPs += d(metricGossipStreamBytesIn) / nn
		g.StreamBytesOutPs += d(metricGossipStreamBytesOut) / nn
		g.MaxNodeBytesPs = max(g.MaxNodeBytesPs, d(metricGossipPacketBytesIn)+d(metricGossipPacketBytesOut)+
			d(metricGossipStreamBytesIn)+d(metricGossipStreamBytesOut))
	}
	if !g.Counted {
		c.note("gossip: the nodes have no longlink_cluster_gossip_* counters (an older binary): only /proc/PID/io, which misses UDP")
	}
	for i, n := range nodes {
		a, err := readProcIO(n.Pid)
		if err != nil {
			return fmt.Errorf("cannot read /proc/%d/io: %w", n.Pid, err)
		}
		nr := NodeIORate{Name: n.Name, ReadBps: float64(a.RChar-before[i].RChar) / span, WriteBps: float64(a.WChar-before[i].WChar) / span,
			ReadsPs: float64(a.SyscR-before[i].SyscR) / span, WritesPs: float64(a.SyscW-before[i].SyscW) / span}
		g.PerNode = append(g.PerNode, nr)
		g.MeanReadBps += nr.ReadBps / float64(len(nodes))
		g.MeanWriteBps += nr.WriteBps / float64(len(nodes))
		g.MeanReadsPs += nr.ReadsPs / float64(len(nodes))
		g.MeanWritesPs += nr.WritesPs / float64(len(nodes))
		g.MaxTotalBps = max(g.MaxTotalBps, nr.ReadBps+nr.WriteBps)
	}
	c.cr.Gossip = g
	c.logf("idle gossip over %.0fs, per node (mean): %.1f packets/s in, %.1f out, %.0f B/s in, %.0f B/s out (packets), %.0f / %.0f B/s (streams); read(2)/write(2): %.0f / %.0f B/s",
		span, g.PacketsInPs, g.PacketsOutPs, g.PacketBytesInPs, g.PacketBytesOutPs, g.StreamBytesInPs, g.StreamBytesOutPs, g.MeanReadBps, g.MeanWriteBps)
	return nil
}

// scrapeNodes reads every live node's /metrics, in node order.
func (c *clusterRun) scrapeNodes(nodes []*clusterNode) []map[string]float64 {
	out := make([]map[string]float64, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m, err := scrapeOne(c.ctx, n.API)
			if err != nil {
				m = map[string]float64{}
			}
			out[i] = m
		}()
	}
	wg.Wait()
	return out
}

// open starts the workers and opens every connection: worker m of node j holds
// the connections j+N*m, j+N*(m+k), ... (k workers a node), all to node j.
func (c *clusterRun) open() error {
	nodes := c.ns.live()
	N, k := len(nodes), c.plan.workersPerNode
	before := c.scrapeNodes(nodes)
	c.rep.Server.Before = scrape(c.ctx, c.o.APIs)
	c.rep.Workers = N * k
	kb := readKernel()
	rss0 := c.ourRSS()
	var err error
	c.p, err = startPool(N*k, false, c.stderr)
	if err != nil {
		return err
	}
	c.nodeOf = make([]int, N*k)
	for _, w := range c.p.workers {
		if w.cmd != nil && w.cmd.Process != nil {
			c.cr.WorkerPids = append(c.cr.WorkerPids, w.cmd.Process.Pid)
		}
	}
	c.startSampler()
	portBase := mrand.IntN(portSpan)
	t, cpu0 := time.Now(), readCPUTimes()
	_, err = c.p.each(func(i int) workerCmd {
		j, m := i/k, i%k
		c.nodeOf[i] = j
		first, stride := j+N*m, N*k
		count := 0
		if first < c.co.Conns {
			count = (c.co.Conns-1-first)/stride + 1
		}
		return workerCmd{Op: "open", Open: &OpenSpec{
			Targets: []string{nodes[j].Client}, SourceIPs: c.o.SourceIPs, First: first, Count: count, Stride: stride,
			ConnsPerUser: c.co.ConnsPerUser, UserPrefix: "bench-", TokenSecret: c.o.TokenSecret,
			Rate: c.co.Rate / float64(N*k), PortBase: portBase, BatchWait: c.o.BatchWait,
			HandshakeTimeout: c.o.HandshakeTimeout, PingInterval: c.o.PingInterval, V2: true,
		}}
	})
	if err != nil {
		return fmt.Errorf("cannot start opening connections: %w", err)
	}
	rate := c.co.Rate
	if rate <= 0 {
		rate = 5000
	}
	limit := time.Duration(float64(c.co.Conns)/rate*float64(time.Second)) + c.o.HandshakeTimeout + 60*time.Second
	capped := false
	if c.co.OpenTime > 0 && c.co.OpenTime < limit {
		limit, capped = c.co.OpenTime, true
	}
	st, ok, err := waitOpened(limit, func() ([]WorkerStats, error) {
		if err := c.ctx.Err(); err != nil {
			return nil, err
		}
		return c.p.stats(false, false)
	})
	if err != nil {
		return err
	}
	if !ok {
		// Stop opening; what is under way finishes (at most the handshake timeout).
		if _, err := c.p.each(func(int) workerCmd { return workerCmd{Op: "halt"} }); err != nil {
			return err
		}
		poll(c.o.HandshakeTimeout+5*time.Second, 100*time.Millisecond, func() bool {
			st, err = c.p.stats(false, false)
			if err != nil {
				return true
			}
			for i := range st {
				if !st[i].Done {
					return false
				}
			}
			return true
		})
	}
	cn := &c.rep.Connect
	cn.DurationS = time.Since(t).Seconds()
	full, err := c.p.stats(true, true)
	if err != nil {
		return err
	}
	c.attempted = make([]int64, len(full))
	for i := range full {
		c.attempted[i] = full[i].Attempted
	}
	c.fillConnect(full)
	if cn.DurationS > 0 {
		cn.RatePerS = float64(cn.Opened) / cn.DurationS
	}
	c.progress(full, time.Now(), true)
	c.measureServer(cn.OpenAtEnd)
	after := c.scrapeNodes(nodes)
	for i, n := range nodes {
		nm := NodeMemory{Name: n.Name, Conns: after[i]["longlink_connections"],
			RSSBefore: before[i]["process_resident_memory_bytes"], RSSAfter: after[i]["process_resident_memory_bytes"],
			HeapBefore: before[i]["go_memstats_heap_inuse_bytes"], HeapAfter: after[i]["go_memstats_heap_inuse_bytes"],
			RouteEntries: after[i][metricRouteUpdates]}
		if nm.Conns > 0 {
			nm.RSSPerConn = (nm.RSSAfter - nm.RSSBefore) / nm.Conns
			nm.HeapPerConn = (nm.HeapAfter - nm.HeapBefore) / nm.Conns
		}
		c.cr.Memory = append(c.cr.Memory, nm)
	}
	ka := readKernel()
	kr := &KernelResult{Before: kb, After: ka, Sockets: ka.TCPInUse - kb.TCPInUse, ProcessRSSDelta: float64(c.ourRSS() - rss0)}
	if kr.Sockets > 0 {
		s := float64(kr.Sockets)
		kr.SlabPerSocket = float64(ka.SlabBytes-kb.SlabBytes) / s
		kr.SUnreclaimPerSocket = float64(ka.SUnreclaimBytes-kb.SUnreclaimBytes) / s
		kr.TCPBufPerSocket = float64(ka.TCPMemPages-kb.TCPMemPages) * float64(os.Getpagesize()) / s
		kr.KernelPerSocket = (float64(kb.MemAvailableBytes-ka.MemAvailableBytes) - kr.ProcessRSSDelta) / s
	}
	c.cr.Kernel = kr
	c.logf("opened %s of %s in %.1fs (%s/s); kernel %.0f B a socket (slab %.0f B), nodes %s RSS a connection",
		commas(cn.Opened), commas(int64(c.co.Conns)), cn.DurationS, commas(int64(cn.RatePerS)), kr.KernelPerSocket, kr.SlabPerSocket,
		perConn(c.rep.Server.RSSPerConnBytes))
	if cn.OpenAtEnd < int64(c.co.Conns) {
		cpu := (c.rep.Server.AfterOpen.CPUSeconds - c.rep.Server.Before.CPUSeconds) * 1e6 / float64(max(1, cn.Opened))
		if !ok && capped {
			c.limit(fmt.Sprintf("time: --open-time %v passed with %s of %s connections open (%s/s; the nodes spent %.0f µs of CPU a connection, machine busy %s)",
				c.co.OpenTime, commas(cn.OpenAtEnd), commas(int64(c.co.Conns)), commas(int64(cn.RatePerS)), cpu, busy(hostCPU(cpu0, readCPUTimes(), time.Since(t)))))
		} else if !ok {
			c.limit(fmt.Sprintf("time: the open phase did not finish within %v", limit))
		}
		if cn.Failed > 0 {
			c.limit(fmt.Sprintf("connections: %s failed (%s)", commas(cn.Failed), reasons(cn.Failures)))
		}
		if cn.OpenAtEnd == 0 {
			return errors.New("no connection could be opened")
		}
		c.note(fmt.Sprintf("the phases run with the %s connections open (of %s requested)", commas(cn.OpenAtEnd), commas(int64(c.co.Conns))))
		// The push mix goes to the users whose every connection is open (the first
		// ones: every worker opens its share in order), so that what each push must
		// reach is known.
		if cn.Failed == 0 {
			u := 0
			for ; (u+1)*c.co.ConnsPerUser <= c.co.Conns; u++ {
				all := true
				for i := u * c.co.ConnsPerUser; i < (u+1)*c.co.ConnsPerUser && all; i++ {
					all = c.opened(i)
				}
				if !all {
					break
				}
			}
			c.o.Users, c.o.Conns = max(1, u), int(cn.OpenAtEnd)
			c.rep.Options.Users, c.rep.Options.Conns = c.o.Users, c.o.Conns
			c.note(fmt.Sprintf("the push mix goes to users 0-%d, whose %d connections each are all open", c.o.Users-1, c.co.ConnsPerUser))
		}
	}
	return nil
}

func busy(h HostCPU) string {
	if !h.Available {
		return "?"
	}
	return fmt.Sprintf("%.0f%%", h.BusyPct)
}

// ourRSS is the resident memory of every process of this run: the nodes, the
// workers and the coordinator.
func (c *clusterRun) ourRSS() int64 {
	_, total := selfUsage()
	for _, n := range c.ns.live() {
		if _, rss, err := procStat(n.Pid); err == nil {
			total += rss
		}
	}
	if c.p != nil {
		for _, w := range c.p.workers {
			if w.cmd != nil && w.cmd.Process != nil {
				if _, rss, err := procStat(w.cmd.Process.Pid); err == nil {
					total += rss
				}
			}
		}
	}
	return total
}

// holdPhase keeps every connection open for --hold; one drop fails the run.
func (c *clusterRun) holdPhase() error {
	st, err := c.p.stats(false, false)
	if err != nil {
		return err
	}
	h := &HoldResult{OpenBefore: sum(st, func(w *WorkerStats) int64 { return w.Open })}
	d0 := sum(st, func(w *WorkerStats) int64 { return w.Dropped })
	t := time.Now()
	c.hold(c.co.Hold)
	h.S = time.Since(t).Seconds()
	if st, err = c.p.stats(false, false); err != nil {
		return err
	}
	h.OpenAfter = sum(st, func(w *WorkerStats) int64 { return w.Open })
	h.Dropped = sum(st, func(w *WorkerStats) int64 { return w.Dropped }) - d0
	h.ServerConns = scrape(c.ctx, c.o.APIs).Connections
	h.Held = h.Dropped == 0 && h.OpenAfter == h.OpenBefore && h.OpenAfter == c.rep.Connect.OpenAtEnd
	c.cr.Hold = h
	if h.Dropped > 0 || h.OpenAfter < h.OpenBefore {
		// The push mix cannot expect every user's connections any more.
		c.rep.Connect.Dropped += h.Dropped
		c.rep.Connect.OpenAtEnd = h.OpenAfter
	}
	c.logf("hold %.0fs: %s open before, %s after, %s dropped; nodes count %s", h.S, commas(h.OpenBefore), commas(h.OpenAfter),
		commas(h.Dropped), commas(int64(h.ServerConns)))
	if !h.Held {
		return fmt.Errorf("not every connection held: %s open before, %s after, %s dropped", commas(h.OpenBefore), commas(h.OpenAfter), commas(h.Dropped))
	}
	return c.ctx.Err()
}

func (c *clusterRun) broadcastPhase() error {
	c.o.Rounds = c.co.Rounds
	c.broadcast()
	b := c.rep.Broadcast
	if b == nil || len(b.Rounds) == 0 {
		return errors.New("no round ran")
	}
	var cpu float64
	var lasts []float64
	for _, r := range b.Rounds {
		if r.Error != "" || r.TimedOut || r.Received < r.Expected {
			return fmt.Errorf("round %d: %s of %s received (%s)", r.Round, commas(r.Received), commas(r.Expected), r.Error)
		}
		cpu += r.ServerCPUPerRecipientUs / float64(len(b.Rounds))
		lasts = append(lasts, r.LastMs)
	}
	sort.Float64s(lasts)
	c.cr.BroadcastCPUPerRecipientUs, c.cr.BroadcastLastMs = cpu, lasts[len(lasts)/2]
	return nil
}

func (c *clusterRun) pushPhase() error {
	c.push()
	p := c.rep.Push
	if p == nil {
		return errors.New("the push phase did not run")
	}
	if p.Missing > 0 || sum64(p.Errors) > 0 {
		return fmt.Errorf("%s deliveries missing, %s pushes refused (%s)", commas(p.Missing), commas(sum64(p.Errors)), reasons(p.Errors))
	}
	if v := c.v2Checks(); v.Duplicates > 0 || v.Gaps > 0 {
		return fmt.Errorf("v2 sequence: %s duplicates, %s gaps", commas(v.Duplicates), commas(v.Gaps))
	}
	return nil
}

func (c *clusterRun) v2Checks() V2Checks {
	st, err := c.p.stats(false, false)
	if err != nil {
		return V2Checks{}
	}
	v := V2Checks{
		Duplicates:   sum(st, func(w *WorkerStats) int64 { return w.V2Dups }),
		Gaps:         sum(st, func(w *WorkerStats) int64 { return w.V2Gaps }),
		EpochChanges: sum(st, func(w *WorkerStats) int64 { return w.EpochChanges }),
		NoPosition:   sum(st, func(w *WorkerStats) int64 { return w.V2NoPos }),
		Other:        sum(st, func(w *WorkerStats) int64 { return w.V2Other }),
	}
	c.rep.V2 = &v
	return v
}

// routePairs is how many (node, user) route entries the cluster holds: each node
// advertises the users it holds, once each.
func (c *clusterRun) routePairs(nodes int) int64 {
	var n int64
	seen := make(map[int]bool, nodes)
	for u := 0; u*c.co.ConnsPerUser < c.co.Conns; u++ {
		clear(seen)
		for i := u * c.co.ConnsPerUser; i < min(c.co.Conns, (u+1)*c.co.ConnsPerUser); i++ {
			seen[i%nodes] = true
		}
		n += int64(len(seen))
	}
	return n
}

// join starts one more node and measures how long until it is a full member:
// memberlist, its route tables (every peer's snapshot), and the histories handed
// to it.
func (c *clusterRun) join() error {
	c.stopSampling() // its scrapes would cross the joiner's figures
	defer c.startSampler()
	others := c.ns.live()
	idleHeap := 0.0
	for _, m := range c.cr.Memory {
		idleHeap += m.HeapBefore / float64(len(c.cr.Memory))
	}
	before := c.scrapeNodes(others)
	handoff0 := 0.0
	for _, m := range before {
		handoff0 += m[metricHandoffStreams]
	}
	jr := &JoinResult{ExpectedEntries: c.routePairs(len(others))}
	if open := c.rep.Connect.OpenAtEnd; open < int64(c.co.Conns) {
		// Part of the connections: with a user's connections on distinct nodes each
		// is one entry; otherwise in proportion (an estimate).
		if c.co.ConnsPerUser <= len(others) {
			jr.ExpectedEntries = open
		} else {
			jr.ExpectedEntries = jr.ExpectedEntries * open / int64(c.co.Conns)
		}
	}
	c.cr.Join = jr
	t := time.Now()
	j, err := c.ns.start(len(others), others[0].Gossip)
	if err != nil {
		return err
	}
	jr.Node = j.Name
	io0, _ := readProcIO(j.Pid)
	var lastHist, lastHand float64 = -1, -1
	lastChange := time.Now()
	all := append(append([]*clusterNode(nil), others...), j)
	done := poll(c.co.RoundTimeout, 100*time.Millisecond, func() bool {
		if !j.alive() || c.ctx.Err() != nil {
			return true
		}
		since := time.Since(t).Seconds()
		if jr.ReadyS == 0 {
			if code, err := c.ns.apiGet(c.ctx, j.API, "/readyz", nil); err == nil && code == 200 {
				jr.ReadyS = since
			}
		}
		if jr.MembersS == 0 {
			if ok, _ := c.ns.converged(c.ctx, all); ok {
				jr.MembersS = since
			}
		}
		m, err := scrapeOne(c.ctx, j.API)
		if err != nil {
			return false
		}
		jr.RouteEntries = m[metricRouteUpdates]
		if jr.RoutesS == 0 && jr.RouteEntries >= float64(jr.ExpectedEntries) {
			jr.RoutesS = time.Since(t).Seconds()
			if a, err := readProcIO(j.Pid); err == nil {
				jr.ReadBytes, jr.WrittenBytes = a.RChar-io0.RChar, a.WChar-io0.WChar
			}
		}
		hand := 0.0
		for _, mm := range c.scrapeNodes(all) {
			hand += mm[metricHandoffStreams]
		}
		hist := m[metricHistoryStreams]
		if hist != lastHist || hand != lastHand {
			lastHist, lastHand, lastChange = hist, hand, time.Now()
		}
		jr.HistoryStreams, jr.HistoryBytes, jr.HandoffStreams = hist, m[metricHistoryBytes], hand-handoff0
		jr.HandoffFailures = m[metricHandoffFailures]
		jr.HeapBytes, jr.RSSBytes = m["go_memstats_heap_inuse_bytes"], m["process_resident_memory_bytes"]
		// Streams are complete when the histories stopped moving for 2 s after the
		// joiner became a member.
		if jr.MembersS > 0 && jr.RoutesS > 0 && time.Since(lastChange) >= 2*time.Second {
			jr.StreamsS = lastChange.Sub(t).Seconds()
			return true
		}
		return false
	})
	if a, err := readProcIO(j.Pid); err == nil {
		jr.ReadBytesEnd, jr.WrittenBytesEnd = a.RChar-io0.RChar, a.WChar-io0.WChar
	}
	if jr.RouteEntries > 0 {
		jr.RouteHeapPerEntry = (jr.HeapBytes - idleHeap) / jr.RouteEntries
	}
	c.o.APIs = c.apis()
	c.logf("join: %s a member after %.2fs, ready %.2fs, route tables (%s entries) %.2fs, histories settled %.2fs (%s streams, %s handed off); read %s, wrote %s",
		j.Name, jr.MembersS, jr.ReadyS, commas(int64(jr.RouteEntries)), jr.RoutesS, jr.StreamsS, commas(int64(jr.HistoryStreams)),
		commas(int64(jr.HandoffStreams)), mib(float64(jr.ReadBytes)), mib(float64(jr.WrittenBytes)))
	if !j.alive() {
		return fmt.Errorf("the joining node exited; see %s", j.Log)
	}
	if !done || jr.RoutesS == 0 || jr.MembersS == 0 {
		jr.TimedOut = true
		return fmt.Errorf("the joining node was not complete within %v (member %.2fs, routes %s of %s)", c.co.RoundTimeout,
			jr.MembersS, commas(int64(jr.RouteEntries)), commas(jr.ExpectedEntries))
	}
	return nil
}

// some sends mk(i) to the workers ids, in parallel.
func (c *clusterRun) some(ids []int, mk func(i int) workerCmd) ([]WorkerStats, error) {
	out := make([]WorkerStats, len(ids))
	errs := make([]error, len(ids))
	var wg sync.WaitGroup
	for k, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[k], errs[k] = c.p.workers[id].do(mk(id))
		}()
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

// kill drops one node's clients (RST) and kills it (SIGKILL); once the survivors
// call it dead, each of its users gets --messages pushes, and its clients
// reconnect to the survivors, resuming with ?since=. Every client must recover
// every missed push, once.
func (c *clusterRun) kill() error {
	c.stopSampling()
	live := c.ns.live()
	victim := live[c.co.Nodes-1] // the last original node: not the seed, not the joiner
	var survivors []*clusterNode
	for _, n := range live {
		if n != victim {
			survivors = append(survivors, n)
		}
	}
	var vw, ow []int
	for i, j := range c.nodeOf {
		if j == victim.Index {
			vw = append(vw, i)
		} else {
			ow = append(ow, i)
		}
	}
	// The victim's users: every connection i on it is user i/conns-per-user.
	var users []int
	last := -1
	for i := victim.Index; i < c.co.Conns; i += c.co.Nodes {
		if !c.opened(i) {
			continue
		}
		if u := i / c.co.ConnsPerUser; u != last {
			users, last = append(users, u), u
		}
	}
	kr := &KillResult{Node: victim.Name, Pid: victim.Pid, Users: len(users), SuspectFirstS: -1, DeadFirstS: -1, DeadAllS: -1}
	c.cr.Kill = kr
	res := &ReconnectResult{Users: len(users), ConnsPerUser: c.co.ConnsPerUser, Messages: c.co.Messages,
		PushErrors: map[string]int64{}, DeadlineS: c.co.RoundTimeout.Seconds()}
	c.rep.Reconnect = res
	var sapis, stargets []string
	for _, n := range survivors {
		sapis, stargets = append(sapis, n.API), append(stargets, n.Client)
	}

	// 1. One live push per user, so positions come from pushes.
	st, err := c.some(vw, func(int) workerCmd { return workerCmd{Op: "stats"} })
	if err != nil {
		return err
	}
	base, open := sum(st, func(w *WorkerStats) int64 { return w.Received }), sum(st, func(w *WorkerStats) int64 { return w.Open })
	ost, err := c.some(ow, func(int) workerCmd { return workerCmd{Op: "stats"} })
	if err != nil {
		return err
	}
	otherDropped0 := sum(ost, func(w *WorkerStats) int64 { return w.Dropped })
	acc, _, errs := c.pushToUserList(users, sapis, 1, 0)
	res.WarmupPushes = acc
	for k, v := range errs {
		res.PushErrors["warmup_"+k] += v
	}
	poll(c.co.RoundTimeout, 10*time.Millisecond, func() bool {
		st, err = c.some(vw, func(int) workerCmd { return workerCmd{Op: "stats"} })
		return err != nil || sum(st, func(w *WorkerStats) int64 { return w.Received })-base >= open
	})
	res.WarmupReceived = sum(st, func(w *WorkerStats) int64 { return w.Received }) - base

	// 2. The samplers: API answers and the survivors' CPU and memory.
	pctx, stopProbes := context.WithCancel(c.ctx)
	var wg sync.WaitGroup
	var tKill time.Time
	var probe ProbeResult
	var peak struct{ cpu, nodeCPU, rss, nodeRSS, rss0 float64 }
	killed := make(chan struct{})
	wg.Add(2)
	go func() { defer wg.Done(); probe = c.probeAPI(pctx, sapis, killed, &tKill) }()
	go func() {
		defer wg.Done()
		prev := map[int]int64{}
		prevT := time.Now()
		for first := true; ; first = false {
			now := time.Now()
			var cpu, rss float64
			for _, n := range survivors {
				ns, r, err := procStat(n.Pid)
				if err != nil {
					continue
				}
				if !first {
					pct := float64(ns-prev[n.Pid]) / float64(now.Sub(prevT)) * 100
					cpu += pct
					peak.nodeCPU = max(peak.nodeCPU, pct)
				}
				prev[n.Pid] = ns
				rss += float64(r)
				peak.nodeRSS = max(peak.nodeRSS, float64(r))
			}
			if first {
				peak.rss0 = rss
			}
			peak.cpu, peak.rss = max(peak.cpu, cpu), max(peak.rss, rss)
			prevT = now
			select {
			case <-pctx.Done():
				return
			case <-time.After(250 * time.Millisecond):
			}
		}
	}()
	defer func() { stopProbes(); wg.Wait() }()

	// 3. The drop and the kill.
	tDrop := time.Now()
	st, err = c.some(vw, func(int) workerCmd { return workerCmd{Op: "drop"} })
	if err != nil {
		return fmt.Errorf("dropping the connections: %w", err)
	}
	res.DropS = time.Since(tDrop).Seconds()
	res.Killed = sum(st, func(w *WorkerStats) int64 { return w.Killed })
	if err := c.ns.kill(victim); err != nil {
		return err
	}
	tKill = time.Now()
	close(killed)
	c.logf("dropped %s connections of %s (RST) and killed it (pid %d)", commas(res.Killed), victim.Name, victim.Pid)
	c.o.APIs, c.rep.Options.APIs = sapis, sapis
	c.startSampler()
	// Failure detection: poll every survivor's view.
	deadSeen := map[string]bool{}
	poll(30*time.Second, 50*time.Millisecond, func() bool {
		for _, n := range survivors {
			if deadSeen[n.Name] {
				continue
			}
			s, err := c.ns.states(c.ctx, n.API)
			if err != nil {
				continue
			}
			el := time.Since(tKill).Seconds()
			switch s[victim.Name] {
			case "suspect":
				if kr.SuspectFirstS < 0 {
					kr.SuspectFirstS = el
				}
			case "dead", "left", "":
				if kr.DeadFirstS < 0 {
					kr.DeadFirstS = el
				}
				deadSeen[n.Name] = true
			}
		}
		if len(deadSeen) == len(survivors) {
			kr.DeadAllS = time.Since(tKill).Seconds()
			return true
		}
		return c.ctx.Err() != nil
	})
	res.ServerSawDropS = time.Since(tDrop).Seconds()
	if kr.DeadAllS < 0 {
		c.note(fmt.Sprintf("kill: %d of %d survivors called %s dead within 30 s", len(deadSeen), len(survivors), victim.Name))
	}

	// 4. The pushes its clients miss.
	t := time.Now()
	acc, stored, errs := c.pushToUserList(users, sapis, c.co.Messages, 1)
	res.PushS = time.Since(t).Seconds()
	res.Pushed, res.Stored = acc, stored
	for k, v := range errs {
		res.PushErrors[k] += v
	}
	c.logf("pushed %s messages (%d per user of %s) in %.2fs, %s stored", commas(acc), c.co.Messages, victim.Name, res.PushS, commas(stored))

	// 5. Its clients come back, spread over the survivors.
	c.setPhase("reconnect")
	m0, _ := scrapeStreams(c.ctx, sapis)
	start := time.Now()
	kr.ReconnectStartS = start.Sub(tKill).Seconds()
	portBase := (mrand.IntN(portSpan) + c.co.Conns) % portSpan
	st, err = c.some(vw, func(int) workerCmd {
		return workerCmd{Op: "reopen", Reopen: &ReopenSpec{PortBase: portBase, StartNs: start.UnixNano(),
			Expect: c.co.Messages, MaxInflight: reconnectInflight, Targets: stargets}}
	})
	if err != nil {
		return err
	}
	expected := sum(st, func(w *WorkerStats) int64 { return w.Resuming })
	res.Clients, kr.Clients = int(expected), expected
	st, ok, err := waitRecovered(c.co.RoundTimeout, expected, func() ([]WorkerStats, error) {
		if err := c.ctx.Err(); err != nil {
			return nil, err
		}
		return c.some(vw, func(int) workerCmd { return workerCmd{Op: "stats"} })
	})
	if err != nil {
		return err
	}
	full, err := c.some(vw, func(int) workerCmd { return workerCmd{Op: "stats", Hists: true} })
	if err != nil {
		return err
	}
	m1, _ := scrapeStreams(c.ctx, sapis)
	res.ServerRecoveredMessages = m1[metricRecoveredMessages] - m0[metricRecoveredMessages]
	res.ServerNotRecovered = m1[metricNotRecovered] - m0[metricNotRecovered]
	rec, _ := res.fromWorkers(full, expected, ok)
	if res.Recovered >= expected {
		kr.AllRecoveredS = kr.ReconnectStartS + res.AllRecoveredS
	}
	kr.Lost = res.Missing
	c.rep.Hists["recovery"] = rec.Bins()
	stopProbes()
	wg.Wait()
	kr.API = probe
	kr.PeakCPUPct, kr.PeakNodeCPUPct, kr.RSSBefore, kr.PeakRSS, kr.PeakNodeRSS = peak.cpu, peak.nodeCPU, peak.rss0, peak.rss, peak.nodeRSS
	if ost, err = c.some(ow, func(int) workerCmd { return workerCmd{Op: "stats"} }); err == nil {
		kr.OtherDropped = sum(ost, func(w *WorkerStats) int64 { return w.Dropped }) - otherDropped0
	}
	c.logf("kill: %s suspect %.2fs, dead first %.2fs, all %.2fs; %s/%s clients recovered all %d missed pushes %.2fs after the kill; lost %s, duplicates %s; API: %s",
		victim.Name, kr.SuspectFirstS, kr.DeadFirstS, kr.DeadAllS, commas(res.Recovered), commas(expected), c.co.Messages,
		kr.AllRecoveredS, commas(res.Missing), commas(res.Duplicates), statusList(probe.Status))

	var problems []string
	if n := sum64(res.PushErrors); n > 0 {
		problems = append(problems, fmt.Sprintf("%s pushes refused (%s)", commas(n), reasons(res.PushErrors)))
	}
	if res.Recovered < expected {
		problems = append(problems, fmt.Sprintf("only %s of %s clients recovered all %d missed pushes", commas(res.Recovered), commas(expected), c.co.Messages))
	}
	if res.Missing > 0 || res.Duplicates > 0 || res.Gaps > 0 || res.NotRecoveredFlag > 0 {
		problems = append(problems, fmt.Sprintf("%s missed pushes never arrived, %s twice, %s gaps, %s recovered:false",
			commas(res.Missing), commas(res.Duplicates), commas(res.Gaps), commas(res.NotRecoveredFlag)))
	}
	if kr.OtherDropped > 0 {
		problems = append(problems, fmt.Sprintf("%s connections on the other nodes dropped", commas(kr.OtherDropped)))
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

// probeAPI starts a push every 20 ms to one of 16 users nobody holds (so their
// streams have owners all over the cluster), through apis in turn, each in its own
// goroutine (at most 512 at once) so that a push that waits for a stream's owner
// does not hold up the next; it counts the answers until ctx ends. Times of bad
// answers are from the kill.
func (c *clusterRun) probeAPI(ctx context.Context, apis []string, killed <-chan struct{}, tKill *time.Time) ProbeResult {
	pr := ProbeResult{Status: map[string]int64{}}
	var mu sync.Mutex
	var h Histogram
	var wg sync.WaitGroup
	sem := make(chan struct{}, 512)
	pool := make(chan *apiConn, 512) // idle connections, reused
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	record := func(key string, bad bool, d time.Duration) {
		mu.Lock()
		defer mu.Unlock()
		h.Record(d.Nanoseconds())
		pr.Requests++
		pr.Status[key]++
		if !bad {
			return
		}
		select {
		case <-killed:
			el := time.Since(*tKill).Seconds()
			if pr.FirstBadS == 0 || el < pr.FirstBadS {
				pr.FirstBadS = el
			}
			pr.LastBadS = max(pr.LastBadS, el)
		default:
		}
	}
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			wg.Wait()
			close(pool)
			for ac := range pool {
				ac.close()
			}
			mu.Lock()
			pr.Latency = h.Summary()
			mu.Unlock()
			return pr
		case <-tick.C:
		}
		select {
		case sem <- struct{}{}:
		default:
			record("not_sent_512_waiting", true, 0)
			continue
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			var ac *apiConn
			select {
			case ac = <-pool:
			default:
				ac = newAPIConn(apis[i%len(apis)], c.o.APIKey)
			}
			body := []byte(`{"to":{"users":["bench-cluster-probe-` + strconv.Itoa(i%16) + `"]},"data":"probe"}`)
			t := time.Now()
			// Not under ctx: a push under way is let finish, so its answer counts.
			status, _, reason := ac.post(context.Background(), "/v1/push", body)
			key := reason
			if key == "" {
				key = strconv.Itoa(status)
			}
			record(key, reason != "" || status < 200 || status > 299, time.Since(t))
			select {
			case pool <- ac:
			default:
				ac.close()
			}
		}()
	}
}

func statusList(m map[string]int64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s x%s", k, commas(m[k]))
	}
	if b.Len() == 0 {
		return "none"
	}
	return b.String()
}

// baseline runs one standalone node of the same binary and the broadcast scenario
// against it with as many connections as each cluster node held.
func (c *clusterRun) baseline() {
	b := &BaselineResult{Conns: int64(c.co.BaselineConns)}
	c.cr.Baseline = b
	ns := &nodeSet{bin: c.co.Binary, dir: c.ns.dir, basePort: c.co.BasePort, secret: c.ns.secret, apiKey: c.ns.apiKey, extra: c.co.NodeArgs}
	defer func() {
		for _, n := range ns.all() {
			c.cr.StoppedPids = append(c.cr.StoppedPids, n.Pid)
		}
		c.cr.LeftPids = append(c.cr.LeftPids, ns.stopAll(15*time.Second)...)
	}()
	// A standalone node: no --gossip-addr, no --join.
	n := &clusterNode{Index: 0, Name: "single", done: make(chan struct{})}
	n.Client, n.API, _, _ = ns.ports(0)
	fail := func(err error) { b.Error = err.Error(); c.note("baseline: " + err.Error()) }
	if err := ns.checkPorts(1); err != nil {
		fail(err)
		return
	}
	if err := ns.startStandalone(n); err != nil {
		fail(err)
		return
	}
	if !poll(30*time.Second, 20*time.Millisecond, func() bool {
		code, err := ns.apiGet(c.ctx, n.API, "/readyz", nil)
		return (err == nil && code == 200) || !n.alive()
	}) || !n.alive() {
		fail(fmt.Errorf("the single node did not become ready; see %s", n.Log))
		return
	}
	o := Options{Scenario: "broadcast", Targets: []string{n.Client}, APIs: []string{n.API}, TokenSecret: c.o.TokenSecret,
		APIKey: c.o.APIKey, Conns: c.co.BaselineConns, ConnsPerUser: 1, Rounds: max(1, c.co.Rounds), Rate: c.co.Rate,
		Workers: 1, SourceIPs: c.o.SourceIPs, HandshakeTimeout: c.o.HandshakeTimeout, PingInterval: c.o.PingInterval,
		RoundTimeout: c.o.RoundTimeout, BatchWait: c.o.BatchWait, Protocol: "v2", History: true}
	fmt.Fprintln(c.stdout, "\n== single-node baseline (the same binary, standalone)")
	rep, err := run(c.ctx, o, io.Discard, c.stderr)
	if err != nil {
		fail(err)
		return
	}
	var lasts, firsts []float64
	for _, r := range rep.Broadcast.Rounds {
		lasts, firsts = append(lasts, r.LastMs), append(firsts, r.FirstMs)
		b.CPUPerRecipientUs += r.ServerCPUPerRecipientUs / float64(len(rep.Broadcast.Rounds))
	}
	if len(lasts) > 0 {
		sort.Float64s(lasts)
		sort.Float64s(firsts)
		b.LastMs, b.FirstMs = lasts[len(lasts)/2], firsts[len(firsts)/2]
	}
	b.RSSPerConnBytes, b.HeapPerConnBytes = rep.Server.RSSPerConnBytes, rep.Server.HeapPerConnBytes
	fmt.Fprintf(c.stdout, "baseline: %s connections, broadcast last %.1f ms (median round), %.2f µs CPU a recipient\n",
		commas(b.Conns), b.LastMs, b.CPUPerRecipientUs)
}

// startStandalone runs n as a node without clustering (no --gossip-addr).
func (s *nodeSet) startStandalone(n *clusterNode) error {
	n.Log = filepath.Join(s.dir, n.Name+".log")
	return s.exec(n, []string{"serve", "--node-name", n.Name, "--client-addr", n.Client, "--api-addr", n.API,
		"--demo=false", "--log-level", "warn"})
}

func (c *clusterRun) finishWorkers(lastFull []WorkerStats) error {
	final, err := c.p.close()
	selfCPU, selfRSS := selfUsage()
	cl := &c.rep.Client
	cl.CoordinatorCPUS, cl.CoordinatorRSSBytes = float64(selfCPU)/1e9, selfRSS
	cl.WorkersCPUS = float64(sum(final, func(w *WorkerStats) int64 { return w.CPUNs })) / 1e9
	cl.WorkersRSSBytes = sum(lastFull, func(w *WorkerStats) int64 { return w.RSSBytes })
	cl.CPUS = cl.CoordinatorCPUS + cl.WorkersCPUS
	c.p = nil
	return err
}

// writeReport writes the text report (stdout and --out), --json and --html.
func (c *clusterRun) writeReport() error {
	if len(c.rep.Limits) > 0 {
		c.rep.Advice = limitAdvice()
	}
	sort.Strings(c.rep.Limits)
	var errs []error
	if c.co.JSONPath != "" {
		errs = append(errs, writeJSON(c.co.JSONPath, c.rep))
	}
	if c.co.HTMLPath != "" {
		errs = append(errs, writeHTML(c.co.HTMLPath, c.rep))
	}
	w := c.stdout
	var f *os.File
	if c.co.TextPath != "" {
		var err error
		if f, err = os.Create(c.co.TextPath); err != nil {
			errs = append(errs, err)
		} else {
			w = io.MultiWriter(c.stdout, f)
		}
	}
	printSummary(w, c.rep)
	if len(c.rep.Limits) > 0 {
		fmt.Fprintf(w, "\nStopped by a limit: %s\n", strings.Join(c.rep.Limits, "; "))
	}
	if f != nil {
		errs = append(errs, f.Close())
	}
	return errors.Join(errs...)
}

// secs formats a time in seconds; negative means it was not seen.
func secs(s float64) string {
	if s < 0 {
		return "not seen"
	}
	return fmt.Sprintf("%.2fs", s)
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand: " + err.Error())
	}
	return hex.EncodeToString(b)
}

// Metric names bench cluster reads (wantMetrics keeps them).
const (
	metricRouteUpdates    = "longlink_cluster_route_updates_total"
	metricForwardFailures = "longlink_cluster_forward_failures_total"
	metricForwardMessages = "longlink_cluster_forward_messages_total"
	metricHistoryStreams  = "longlink_history_streams"
	metricHistoryBytes    = "longlink_history_bytes"
	metricHandoffStreams  = "longlink_stream_handoff_streams_total"
	metricHandoffFailures = "longlink_stream_handoff_failures_total"

	metricGossipPacketsIn      = `longlink_cluster_gossip_packets_total{dir="in"}`
	metricGossipPacketsOut     = `longlink_cluster_gossip_packets_total{dir="out"}`
	metricGossipPacketBytesIn  = `longlink_cluster_gossip_bytes_total{dir="in",kind="packet"}`
	metricGossipPacketBytesOut = `longlink_cluster_gossip_bytes_total{dir="out",kind="packet"}`
	metricGossipStreamBytesIn  = `longlink_cluster_gossip_bytes_total{dir="in",kind="stream"}`
	metricGossipStreamBytesOut = `longlink_cluster_gossip_bytes_total{dir="out",kind="stream"}`
)

// clusterRows is the text summary's cluster part.
func clusterRows(row func(k, v string), rep *Report) {
	c := rep.Cluster
	if c.Refused != "" {
		row("refused", c.Refused)
		return
	}
	joining := ""
	if c.Join != nil {
		joining = " (+1 joining)"
	}
	row("cluster", fmt.Sprintf("%d nodes%s, %s connections a node (cap %s), %d worker(s) a node; started and converged in %.1fs; load %s -> %s",
		len(c.Memory), joining, commas(int64(c.ConnsPerNode)), commas(int64(c.NodeCap)), c.WorkersPerNode, c.StartS, c.LoadBefore, c.LoadAfter))
	for _, p := range c.Phases {
		v := fmt.Sprintf("%.1fs", p.S)
		if p.Error != "" {
			v += "  FAILED: " + p.Error
		}
		row("phase "+p.Name, v)
	}
	if g := c.Gossip; g != nil {
		if g.Counted {
			row("idle gossip", fmt.Sprintf("per node over %.0fs (mean): %.1f packets/s in, %.1f out; %.0f B/s in, %.0f B/s out as packets; %.0f B/s in, %.0f B/s out on streams (push-pull); busiest node %.0f B/s; idle CPU %.2f%% of a core a node (busiest %.2f%%)",
				g.WindowS, g.PacketsInPs, g.PacketsOutPs, g.PacketBytesInPs, g.PacketBytesOutPs, g.StreamBytesInPs, g.StreamBytesOutPs, g.MaxNodeBytesPs,
				g.IdleCPUPct, g.MaxIdleCPUPct))
		}
		row("idle read/write", fmt.Sprintf("per node over %.0fs (/proc/PID/io, TCP only): read %.0f B/s, written %.0f B/s, %.1f reads/s, %.1f writes/s (mean); busiest %.0f B/s",
			g.WindowS, g.MeanReadBps, g.MeanWriteBps, g.MeanReadsPs, g.MeanWritesPs, g.MaxTotalBps))
	}
	if len(c.Memory) > 0 {
		var rss, heap, minR, maxR float64
		minR = math.MaxFloat64
		for _, m := range c.Memory {
			rss += m.RSSPerConn / float64(len(c.Memory))
			heap += m.HeapPerConn / float64(len(c.Memory))
			minR, maxR = min(minR, m.RSSPerConn), max(maxR, m.RSSPerConn)
		}
		row("node memory", fmt.Sprintf("RSS %.0f B a connection (nodes %.0f-%.0f), heap %.0f B (mean of the nodes)", rss, minR, maxR, heap))
	}
	if k := c.Kernel; k != nil {
		row("kernel memory", fmt.Sprintf("%s TCP sockets added: slab %.0f B a socket (%.0f B unreclaimable), TCP buffers %.0f B; MemAvailable less the processes' RSS %.0f B (a lower bound: reclaimable slab counts as available)",
			commas(k.Sockets), k.SlabPerSocket, k.SUnreclaimPerSocket, k.TCPBufPerSocket, k.KernelPerSocket))
	}
	if h := c.Hold; h != nil {
		row("hold", fmt.Sprintf("%.0fs: %s open before, %s after, %s dropped; the nodes count %s; held: %v",
			h.S, commas(h.OpenBefore), commas(h.OpenAfter), commas(h.Dropped), commas(int64(h.ServerConns)), h.Held))
	}
	if c.BroadcastLastMs > 0 {
		row("broadcast (cluster)", fmt.Sprintf("last recipient %.1f ms (median round), %.2f µs cluster CPU a recipient", c.BroadcastLastMs, c.BroadcastCPUPerRecipientUs))
	}
	if b := c.Baseline; b != nil {
		if b.Error != "" {
			row("baseline", "failed: "+b.Error)
		} else {
			row("baseline (1 node)", fmt.Sprintf("%s connections: broadcast last %.1f ms, first %.1f ms, %.2f µs CPU a recipient; RSS %.0f B, heap %.0f B a connection",
				commas(b.Conns), b.LastMs, b.FirstMs, b.CPUPerRecipientUs, b.RSSPerConnBytes, b.HeapPerConnBytes))
		}
	}
	if j := c.Join; j != nil {
		row("join", fmt.Sprintf("%s: member of all %.2fs, ready %.2fs, route tables %.2fs (%s of %s entries), histories settled %.2fs (%s streams held, %s handed off cluster-wide, %.0f failed)",
			j.Node, j.MembersS, j.ReadyS, j.RoutesS, commas(int64(j.RouteEntries)), commas(j.ExpectedEntries), j.StreamsS,
			commas(int64(j.HistoryStreams)), commas(int64(j.HandoffStreams)), j.HandoffFailures))
		row("join bytes", fmt.Sprintf("the joiner read %s and wrote %s until its tables were complete (%s / %s by the end); heap %s, %.0f B a route entry",
			mib(float64(j.ReadBytes)), mib(float64(j.WrittenBytes)), mib(float64(j.ReadBytesEnd)), mib(float64(j.WrittenBytesEnd)), mib(j.HeapBytes), j.RouteHeapPerEntry))
	}
	if k := c.Kill; k != nil {
		row("kill", fmt.Sprintf("%s (pid %d), %s clients of %s users: suspect after %s, dead at the first survivor %s, at all %s (polled every 50 ms)",
			k.Node, k.Pid, commas(k.Clients), commas(int64(k.Users)), secs(k.SuspectFirstS), secs(k.DeadFirstS), secs(k.DeadAllS)))
		row("kill recovery", fmt.Sprintf("reconnect started %.2fs after the kill; all recovered %.2fs after the kill; lost %s; other nodes' connections dropped %s",
			k.ReconnectStartS, k.AllRecoveredS, commas(k.Lost), commas(k.OtherDropped)))
		row("kill survivors", fmt.Sprintf("peak CPU %.0f%% of a core together (busiest node %.0f%%); RSS %s at the kill, peak %s (largest node %s)",
			k.PeakCPUPct, k.PeakNodeCPUPct, mib(k.RSSBefore), mib(k.PeakRSS), mib(k.PeakNodeRSS)))
		row("kill API", fmt.Sprintf("%s probe pushes: %s; latency %s; non-2xx from %.2fs to %.2fs after the kill",
			commas(k.API.Requests), statusList(k.API.Status), latRow(k.API.Latency), k.API.FirstBadS, k.API.LastBadS))
	}
	row("processes", fmt.Sprintf("%d node processes started and stopped by pid; not confirmed gone: %v", len(c.StoppedPids), c.LeftPids))
}
