package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is everything one run measured; it is written as JSON (--json),
// rendered as HTML (--html) and summarised on stdout.
type Report struct {
	Tool      string    `json:"tool"`
	Scenario  string    `json:"scenario"`
	StartedAt time.Time `json:"started_at"`
	ElapsedS  float64   `json:"elapsed_s"`
	Options   Options   `json:"options"`
	Env       Env       `json:"env"`
	Workers   int       `json:"workers"`
	HostCPU   HostCPU   `json:"host_cpu"`

	Connect   ConnectResult    `json:"connect"`
	Server    ServerResult     `json:"server"`
	Broadcast *BroadcastResult `json:"broadcast,omitempty"`
	Push      *PushResult      `json:"push,omitempty"`
	Reconnect *ReconnectResult `json:"reconnect,omitempty"`
	Upstream  *UpstreamResult  `json:"upstream,omitempty"`
	Pusher    *PusherResult    `json:"pusher,omitempty"`
	// Cluster is `bench cluster`'s own figures (bench/cluster.go).
	Cluster *ClusterResult `json:"cluster,omitempty"`
	// Floor is the same scenario run against the floor server (--floor-target,
	// bench/floor -role push) in the same run, when one was given.
	Floor *Report `json:"floor,omitempty"`
	// V2 is what the v2 clients checked on every push (--protocol v2).
	V2     *V2Checks      `json:"v2,omitempty"`
	Client ClientOverhead `json:"client"`

	Limits   []string             `json:"limits_hit"`
	Advice   string               `json:"advice,omitempty"`
	Notes    []string             `json:"notes"`
	Timeline []Sample             `json:"timeline"`
	Hists    map[string][]HistBin `json:"histograms"`
}

// ConnectResult covers the connection phase and what happened to the
// connections afterwards.
type ConnectResult struct {
	Requested  int64            `json:"requested"`
	Attempted  int64            `json:"attempted"`
	Opened     int64            `json:"opened"`
	Failed     int64            `json:"failed"`
	Dropped    int64            `json:"dropped"` // closed after the upgrade
	OpenAtEnd  int64            `json:"open_at_end"`
	DurationS  float64          `json:"duration_s"`
	RatePerS   float64          `json:"rate_per_s"`
	Handshake  LatencySummary   `json:"handshake"`   // connect() to 101
	TCPConnect LatencySummary   `json:"tcp_connect"` // connect() to established
	Failures   map[string]int64 `json:"failures"`
	Drops      map[string]int64 `json:"drops"`
}

// ServerResult is the nodes' memory before and after the connections.
type ServerResult struct {
	Available        bool         `json:"available"`
	Before           ServerSample `json:"before"`
	AfterOpen        ServerSample `json:"after_open"`
	End              ServerSample `json:"end"`
	RSSPerConnBytes  float64      `json:"rss_per_conn_bytes"`
	HeapPerConnBytes float64      `json:"heap_per_conn_bytes"`
	// CPUPerConnUs is the nodes' CPU (process_cpu_seconds_total) spent while the
	// connections opened, per connection: accept, handshake, token check.
	CPUPerConnUs float64 `json:"cpu_per_conn_us"`
}

// BroadcastRound is one push to everyone. Times are from the API call.
type BroadcastRound struct {
	Round             int     `json:"round"`
	API               string  `json:"api"`
	Expected          int64   `json:"expected"`  // connections open when pushed
	Delivered         int64   `json:"delivered"` // what the API answered
	Received          int64   `json:"received"`
	FirstMs           float64 `json:"first_ms"`
	P50Ms             float64 `json:"p50_ms"`
	P99Ms             float64 `json:"p99_ms"`
	LastMs            float64 `json:"last_ms"`
	RecipientsPerS    float64 `json:"recipients_per_s"`
	ClientCPUPerMsgUs float64 `json:"client_cpu_per_msg_us"`
	// ServerCPUPerRecipientUs is the nodes' CPU during the round per recipient.
	ServerCPUPerRecipientUs float64 `json:"server_cpu_per_recipient_us"`
	TimedOut                bool    `json:"timed_out"`
	Error                   string  `json:"error,omitempty"`
}

// BroadcastResult lists the rounds and the latency over all of them.
type BroadcastResult struct {
	Rounds  []BroadcastRound `json:"rounds"`
	Latency LatencySummary   `json:"latency"`
}

// PushResult is the push scenario.
type PushResult struct {
	Mode               string           `json:"mode"` // closed or open
	Users              int              `json:"users"`
	ConnsPerUser       int              `json:"conns_per_user"`
	Callers            int              `json:"callers"`
	PushRate           float64          `json:"push_rate"`
	DurationS          float64          `json:"duration_s"`
	Pushes             int64            `json:"pushes"` // accepted by the API
	Errors             map[string]int64 `json:"errors"`
	BacklogSkipped     int64            `json:"backlog_skipped"` // open loop: schedule slots no caller could take
	APIDelivered       int64            `json:"api_delivered"`   // sum of the API's node-local "delivered"
	ExpectedDeliveries int64            `json:"expected_deliveries"`
	Received           int64            `json:"received"`
	Missing            int64            `json:"missing"`
	PushesPerS         float64          `json:"pushes_per_s"`
	DeliveriesPerS     float64          `json:"deliveries_per_s"`
	Latency            LatencySummary   `json:"latency"`     // end to end
	APILatency         LatencySummary   `json:"api_latency"` // HTTP round trip
	ClientCPUPerMsgUs  float64          `json:"client_cpu_per_msg_us"`
	CallerCPUPerPushUs float64          `json:"caller_cpu_per_push_us"`
	// ServerCPUS is the nodes' CPU during the push phase; per push it includes the
	// API request and every delivery of that push.
	ServerCPUS         float64 `json:"server_cpu_s"`
	ServerCPUPerPushUs float64 `json:"server_cpu_per_push_us"`

	// Ack (--ack): pushes carried "ack":true and the clients acknowledged.
	// AcksSent counts the clients' ack messages (one per read that held
	// pushes with ack, per connection); ServerAcks is the nodes'
	// longlink_acks_total over the phase, acks applied by the streams' owners
	// after each node coalesced its clients' acks per stream (5 ms), so it is
	// at most AcksSent (a user's connections ack the same offset).
	Ack           bool    `json:"ack,omitempty"`
	AcksSent      int64   `json:"acks_sent,omitempty"`
	AckWriteFails int64   `json:"ack_write_fails,omitempty"`
	ServerAcks    float64 `json:"server_acks,omitempty"`
	// WaitS (--wait) is the wait each push carried. Complete counts answers
	// 200 "complete":true (every target acked, or written without --ack),
	// Incomplete the others (202: the wait ended first); WaitRoundTrip is
	// push to answer of the complete ones.
	WaitS         float64         `json:"wait_s,omitempty"`
	Complete      int64           `json:"complete,omitempty"`
	Incomplete    int64           `json:"incomplete,omitempty"`
	WaitRoundTrip *LatencySummary `json:"wait_round_trip,omitempty"`
}

// waitLabel names the round trip of a push with wait: acked with --ack, else
// written to a connection.
func (p *PushResult) waitLabel() string {
	if p.Ack {
		return "acked round trip"
	}
	return "delivered round trip"
}

// V2Checks counts, over every v2 connection, pushes that broke their stream's
// sequence: each push of a stored stream should carry the offset after the
// last one the connection saw.
type V2Checks struct {
	Duplicates   int64 `json:"duplicates"`    // offset at or below the position reached
	Gaps         int64 `json:"gaps"`          // offsets skipped (pushes that never came)
	EpochChanges int64 `json:"epoch_changes"` // a push in an epoch other than the welcome's
	NoPosition   int64 `json:"no_position"`   // pushes without epoch/offset (history off)
	Other        int64 `json:"other"`         // messages that were not push envelopes
}

// ClientOverhead is what bench itself cost.
type ClientOverhead struct {
	InProcess           bool    `json:"in_process"`
	CPUS                float64 `json:"cpu_s"`
	CoordinatorCPUS     float64 `json:"coordinator_cpu_s"`
	WorkersCPUS         float64 `json:"workers_cpu_s"`
	CoordinatorRSSBytes int64   `json:"coordinator_rss_bytes"`
	WorkersRSSBytes     int64   `json:"workers_rss_bytes"`
}

// Sample is one point of the timeline, once a second.
type Sample struct {
	T           float64 `json:"t"`
	Opened      int64   `json:"opened"`
	Open        int64   `json:"open"`
	Failed      int64   `json:"failed"`
	Received    int64   `json:"received"`
	Pushes      int64   `json:"pushes"`
	ClientRSS   float64 `json:"client_rss"`
	ServerConns float64 `json:"server_conns"`
	ServerRSS   float64 `json:"server_rss"`
	ServerHeap  float64 `json:"server_heap"`
}

func writeJSON(path string, rep *Report) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return fmt.Errorf("cannot encode report: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("cannot write JSON report: %w", err)
	}
	return nil
}

// commas formats 1234567 as 1,234,567.
func commas(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}

func mib(b float64) string { return fmt.Sprintf("%.1f MiB", b/(1<<20)) }

func reasons(m map[string]int64) string {
	if len(m) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return m[keys[i]] > m[keys[j]] })
	var parts []string
	for _, k := range keys {
		parts = append(parts, k+"="+commas(m[k]))
	}
	return strings.Join(parts, " ")
}

func latRow(l LatencySummary) string {
	return fmt.Sprintf("p50 %.2f  p90 %.2f  p99 %.2f  p99.9 %.2f  max %.2f ms  (n=%s)",
		l.P50Ms, l.P90Ms, l.P99Ms, l.P999Ms, l.MaxMs, commas(int64(l.Count)))
}

// printSummary writes the end-of-run table.
func printSummary(w io.Writer, rep *Report) {
	fmt.Fprintf(w, "\n== longlink bench %s — %s ==\n", rep.Scenario, rep.StartedAt.Format(time.RFC3339))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "%s\t%s\n", k, v) }
	e := rep.Env
	row("machine", fmt.Sprintf("%s, %d cores, %s, %s, ulimit -n %d/%d", e.CPUModel, e.Cores, mib(float64(e.MemoryBytes)), e.Kernel, e.NoFileSoft, e.NoFileHard))
	if h := rep.HostCPU; h.Available {
		row("host CPU", fmt.Sprintf("host steal %.1f%% of CPU time during the run (%.1fs over %.1fs), machine busy %.0f%%",
			h.StealPct, h.StealS, h.SpanS, h.BusyPct))
	}
	row("clients", fmt.Sprintf("%d worker(s), %d source address(es), targets %s", rep.Workers, max(1, len(rep.Options.SourceIPs)), strings.Join(rep.Options.Targets, " ")))
	c := rep.Connect
	row("connections", fmt.Sprintf("%s requested, %s opened, %s failed, %s dropped later, %s open at end",
		commas(c.Requested), commas(c.Opened), commas(c.Failed), commas(c.Dropped), commas(c.OpenAtEnd)))
	row("connect rate", fmt.Sprintf("%s/s over %.1fs", commas(int64(c.RatePerS)), c.DurationS))
	proto := rep.Options.Protocol
	if proto == "" {
		proto = "plain"
	}
	if proto == "pusher" {
		row("protocol", "Pusher Channels 7 (/app/{key}?protocol=7; connected = subscription_succeeded received); the rows up to server CPU are the Pusher phase's")
		row("handshake", latRow(c.Handshake)+"  connect() to pusher:connection_established")
	} else if proto == "v2" {
		row("protocol", "v2 (Sec-WebSocket-Protocol: longlink.v2; connected = welcome received; latency from the envelope's data)")
		row("handshake", latRow(c.Handshake)+"  connect() to welcome")
	} else {
		row("protocol", "plain (each push is one message of the pushed bytes)")
		row("handshake", latRow(c.Handshake))
	}
	row("failures", reasons(c.Failures))
	row("drops", reasons(c.Drops))
	if s := rep.Server; s.Available {
		row("server memory", fmt.Sprintf("RSS %s -> %s (%s); heap %s -> %s (%s); %d node(s)",
			mib(s.Before.RSSBytes), mib(s.AfterOpen.RSSBytes), perConn(s.RSSPerConnBytes),
			mib(s.Before.HeapBytes), mib(s.AfterOpen.HeapBytes), perConn(s.HeapPerConnBytes), s.AfterOpen.Nodes))
		what := "accept, handshake, token"
		if proto == "pusher" {
			what = "accept, handshake, subscribe"
		}
		row("server CPU", fmt.Sprintf("%s per connection opened (%s)", cpuPerUs(s.CPUPerConnUs, rep.Connect.OpenAtEnd, s.AfterOpen.Nodes), what))
	} else {
		row("server memory", "not measured (no --api answered /metrics)")
	}
	if b := rep.Broadcast; b != nil {
		for _, r := range b.Rounds {
			if r.Error != "" {
				row(fmt.Sprintf("round %d", r.Round), "push failed: "+r.Error)
				continue
			}
			row(fmt.Sprintf("round %d", r.Round), fmt.Sprintf("%s/%s received  first %.1f  p50 %.1f  p99 %.1f  last %.1f ms  %s recipients/s  server %s CPU/recipient  bench %.2f µs CPU/msg",
				commas(r.Received), commas(r.Expected), r.FirstMs, r.P50Ms, r.P99Ms, r.LastMs, commas(int64(r.RecipientsPerS)),
				cpuPerUs(r.ServerCPUPerRecipientUs, r.Received, rep.Server.AfterOpen.Nodes), r.ClientCPUPerMsgUs))
		}
		row("delivery (all)", latRow(b.Latency))
	}
	if p := rep.Push; p != nil {
		mode := "closed loop"
		if p.Mode == "open" {
			mode = fmt.Sprintf("open loop at %s/s (latency from scheduled time)", commas(int64(p.PushRate)))
		}
		if room := rep.Options.Room; room != "" {
			row("push", fmt.Sprintf("room %q of %s connections, %d callers, %.1fs, %s", room, commas(int64(rep.Options.Conns)), p.Callers, p.DurationS, mode))
		} else {
			row("push", fmt.Sprintf("%d users x %d conns, %d callers, %.1fs, %s", p.Users, p.ConnsPerUser, p.Callers, p.DurationS, mode))
		}
		row("pushes", fmt.Sprintf("%s (%s/s), errors: %s, backlog skipped %s", commas(p.Pushes), commas(int64(p.PushesPerS)), reasons(p.Errors), commas(p.BacklogSkipped)))
		row("deliveries", fmt.Sprintf("%s of %s expected (%s/s), missing %s", commas(p.Received), commas(p.ExpectedDeliveries), commas(int64(p.DeliveriesPerS)), commas(p.Missing)))
		row("end-to-end", latRow(p.Latency))
		row("API call", latRow(p.APILatency))
		if p.Ack {
			row("server CPU", fmt.Sprintf("%.2fs, %s per push (API request, %s and their acks)", p.ServerCPUS, cpuPer(p.ServerCPUS, p.Pushes, rep.Server.AfterOpen.Nodes), plural(p.ConnsPerUser, "delivery", "deliveries")))
			row("acks", fmt.Sprintf("%s sent by the clients (%s deliveries), %s not written whole; server longlink_acks_total +%s (applied by the owners, coalesced per stream)",
				commas(p.AcksSent), commas(p.Received), commas(p.AckWriteFails), commas(int64(p.ServerAcks))))
		} else if room := rep.Options.Room; room != "" {
			row("server CPU", fmt.Sprintf("%.2fs, %s per push (API request and a delivery to each of the room's members); %s per delivered message",
				p.ServerCPUS, cpuPer(p.ServerCPUS, p.Pushes, rep.Server.AfterOpen.Nodes), cpuPer(p.ServerCPUS, p.Received, rep.Server.AfterOpen.Nodes)))
		} else {
			row("server CPU", fmt.Sprintf("%.2fs, %s per push (API request and %s)", p.ServerCPUS, cpuPer(p.ServerCPUS, p.Pushes, rep.Server.AfterOpen.Nodes), plural(p.ConnsPerUser, "delivery", "deliveries")))
		}
		if w := p.WaitRoundTrip; w != nil {
			row("wait answers", fmt.Sprintf("\"wait\":\"%s\": %s complete (200), %s incomplete (202)",
				time.Duration(p.WaitS*float64(time.Second)), commas(p.Complete), commas(p.Incomplete)))
			row(p.waitLabel(), latRow(*w)+"  push to complete answer")
		}
		row("bench CPU", fmt.Sprintf("%.2f µs per message received, %.1f µs per push sent", p.ClientCPUPerMsgUs, p.CallerCPUPerPushUs))
	}
	if rep.Scenario == "push" || rep.Scenario == "broadcast" {
		h := "history on (stored)"
		if !rep.Options.History {
			h = `history off ("history":false)`
		}
		row("pushes sent", h)
	}
	if u := rep.Upstream; u != nil {
		upstreamRows(row, u)
	}
	if p := rep.Pusher; p != nil {
		pusherRows(row, p)
	}
	if v := rep.V2; v != nil {
		row("v2 sequence", fmt.Sprintf("duplicates %s, gaps %s, epoch changes %s, pushes without position %s, other messages %s",
			commas(v.Duplicates), commas(v.Gaps), commas(v.EpochChanges), commas(v.NoPosition), commas(v.Other)))
	}
	if x := rep.Reconnect; x != nil {
		row("reconnect", fmt.Sprintf("%s clients (%d users x %d), %d pushes per user while away",
			commas(int64(x.Clients)), x.Users, x.ConnsPerUser, x.Messages))
		row("drop", fmt.Sprintf("%s connections reset at once in %.3fs; nodes counted them gone %.3fs after the drop started", commas(x.Killed), x.DropS, x.ServerSawDropS))
		row("pushes away", fmt.Sprintf("%s accepted, %s stored, in %.2fs; errors: %s (warm-up: %s pushed, %s received)",
			commas(x.Pushed), commas(x.Stored), x.PushS, reasons(x.PushErrors), commas(x.WarmupPushes), commas(x.WarmupReceived)))
		row("reconnected", fmt.Sprintf("%s welcomed, %s failed (%s), %s without welcome", commas(x.Reconnected),
			commas(x.Failed), reasons(x.Failures), commas(x.NoWelcome)))
		row("reconnect handshake", latRow(x.Handshake)+"  connect() to welcome")
		row("recovered", fmt.Sprintf("%s of %s clients got all %d; recovered:false %s; missing %s; duplicates %s; gaps %s",
			commas(x.Recovered), commas(int64(x.Clients)), x.Messages, commas(x.NotRecoveredFlag), commas(x.Missing),
			commas(x.Duplicates), commas(x.Gaps)))
		row("recovery time", latRow(x.Recovery)+"  from the reconnect start")
		if x.Recovered >= int64(x.Clients) {
			row("all recovered", fmt.Sprintf("%.3fs after the reconnect started", x.AllRecoveredS))
		} else {
			row("all recovered", fmt.Sprintf("no: not within %.0fs (--round-timeout)", x.DeadlineS))
		}
		row("server", fmt.Sprintf("%.0f messages replayed, %.0f recoveries refused (its /metrics); %.2fs CPU during the reconnect",
			x.ServerRecoveredMessages, x.ServerNotRecovered, x.ServerCPUS))
	}
	if rep.Cluster != nil {
		clusterRows(row, rep)
	}
	cl := rep.Client
	row("bench overhead", fmt.Sprintf("CPU %.2fs (coordinator %.2fs, workers %.2fs); RSS coordinator %s, workers %s",
		cl.CPUS, cl.CoordinatorCPUS, cl.WorkersCPUS, mib(float64(cl.CoordinatorRSSBytes)), mib(float64(cl.WorkersRSSBytes))))
	row("clock", rep.Env.ClockSource)
	if len(rep.Limits) > 0 {
		row("limits hit", strings.Join(rep.Limits, "; "))
	}
	for _, n := range rep.Notes {
		row("note", n)
	}
	tw.Flush()
}
