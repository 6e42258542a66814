package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Env is the machine a report was measured on.
type Env struct {
	Host        string            `json:"host"`
	CPUModel    string            `json:"cpu_model"`
	Cores       int               `json:"cores"`
	MemoryBytes int64             `json:"memory_bytes"`
	Kernel      string            `json:"kernel"`
	GoVersion   string            `json:"go_version"`
	NoFileSoft  uint64            `json:"nofile_soft"`
	NoFileHard  uint64            `json:"nofile_hard"`
	Sysctls     map[string]string `json:"sysctls"`
	ClockSource string            `json:"clock_source"`
}

// sysctlAdvice is what a real million-connection run needs; bench/README.md
// carries the same list.
var sysctlAdvice = []struct{ Key, Want, Why string }{
	{"fs.nr_open", "1100000", "per-process open files ceiling (ulimit -n cannot exceed it)"},
	{"fs.file-max", "2200000", "system-wide open files (client + server sockets)"},
	{"net.ipv4.ip_local_port_range", "1024 65535", "ephemeral ports per (source IP, target) pair"},
	{"net.core.somaxconn", "65535", "accept queue length"},
	{"net.ipv4.tcp_max_syn_backlog", "65535", "half-open connections queue"},
	{"net.ipv4.tcp_mem", "786432 2097152 3145728", "TCP memory pages (low pressure high)"},
	{"net.ipv4.tcp_rmem", "4096 4096 16777216", "small default receive buffer per socket"},
	{"net.ipv4.tcp_wmem", "4096 4096 16777216", "small default send buffer per socket"},
}

// limitAdvice is the text printed when a limit is in the way.
func limitAdvice() string {
	var b strings.Builder
	b.WriteString("For a real 1M-connection run set (as root):\n")
	for _, s := range sysctlAdvice {
		cur := readSysctl(s.Key)
		fmt.Fprintf(&b, "  sysctl -w %s=%q   # now %q: %s\n", s.Key, s.Want, cur, s.Why)
	}
	b.WriteString("  ulimit -n 1100000                      # in the shell running longlink and longlink bench\n")
	b.WriteString("  systemd: LimitNOFILE=1100000 in the [Service] section of the unit\n")
	b.WriteString("  and spread clients over source addresses: --source-ips 127.0.0.2-127.0.0.60\n")
	return b.String()
}

func readSysctl(key string) string {
	b, err := os.ReadFile("/proc/sys/" + strings.ReplaceAll(key, ".", "/"))
	if err != nil {
		return "?"
	}
	return strings.Join(strings.Fields(string(b)), " ")
}

// ephemeralPorts is the size of net.ipv4.ip_local_port_range.
func ephemeralPorts() int {
	f := strings.Fields(readSysctl("net.ipv4.ip_local_port_range"))
	if len(f) != 2 {
		return 28232 // the kernel default 32768-60999
	}
	lo, _ := strconv.Atoi(f[0])
	hi, _ := strconv.Atoi(f[1])
	return max(1, hi-lo+1)
}

func collectEnv() Env {
	e := Env{Cores: runtime.NumCPU(), GoVersion: runtime.Version(), Sysctls: map[string]string{},
		ClockSource: "CLOCK_REALTIME (time.Now().UnixNano()); clients and API callers share one machine and one clock"}
	e.Host, _ = os.Hostname()
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				e.CPUModel = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
				kb, _ := strconv.ParseInt(f[1], 10, 64)
				e.MemoryBytes = kb * 1024
			}
		}
	}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		e.Kernel = unix.ByteSliceToString(u.Sysname[:]) + " " + unix.ByteSliceToString(u.Release[:])
	}
	var rl unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &rl) == nil {
		e.NoFileSoft, e.NoFileHard = rl.Cur, rl.Max
	}
	for _, s := range sysctlAdvice {
		e.Sysctls[s.Key] = readSysctl(s.Key)
	}
	return e
}

// cpuTimes is the machine-wide "cpu" line of /proc/stat: all cores summed,
// in USER_HZ ticks (1/100 s on Linux).
type cpuTimes struct {
	ok                         bool
	total, idle, iowait, steal uint64
}

// readCPUTimes reads /proc/stat. Steal is time the hypervisor ran something
// else while this machine's vCPUs wanted to run: it lowers every rate bench
// measures without showing in any process's CPU.
func readCPUTimes() cpuTimes {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTimes{}
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return parseCPULine(line)
}

// parseCPULine parses "cpu user nice system idle iowait irq softirq steal
// guest guest_nice". Guest time is already inside user and nice, so the
// total is the first eight values.
func parseCPULine(line string) cpuTimes {
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return cpuTimes{}
	}
	var v [8]uint64
	for i := range v {
		n, err := strconv.ParseUint(f[i+1], 10, 64)
		if err != nil {
			return cpuTimes{}
		}
		v[i] = n
	}
	t := cpuTimes{ok: true, idle: v[3], iowait: v[4], steal: v[7]}
	for _, n := range v {
		t.total += n
	}
	return t
}

// HostCPU is how the whole machine's CPU time was spent while bench
// measured (from the connection phase to the end of the scenario).
type HostCPU struct {
	Available bool    `json:"available"`
	SpanS     float64 `json:"span_s"`
	StealS    float64 `json:"steal_s"`   // summed over cores
	StealPct  float64 `json:"steal_pct"` // of all CPU time in the span
	BusyPct   float64 `json:"busy_pct"`  // not idle, iowait or steal
}

// hostCPU compares two readings taken span apart.
func hostCPU(a, b cpuTimes, span time.Duration) HostCPU {
	if !a.ok || !b.ok || b.total <= a.total {
		return HostCPU{}
	}
	total := float64(b.total - a.total)
	steal := float64(b.steal - a.steal)
	idle := float64(b.idle-a.idle) + float64(b.iowait-a.iowait)
	return HostCPU{Available: true, SpanS: span.Seconds(), StealS: steal / 100,
		StealPct: steal * 100 / total, BusyPct: (total - idle - steal) * 100 / total}
}

// limitFor names the limit a failure reason points to, or "".
func limitFor(reason string) string {
	r := strings.TrimPrefix(reason, "bind_")
	switch r {
	case "EMFILE", "ENFILE":
		return "open files (RLIMIT_NOFILE / fs.file-max)"
	case "EADDRNOTAVAIL", "EADDRINUSE":
		return "ephemeral ports (ip_local_port_range x source addresses x targets)"
	case "ENOMEM", "ENOBUFS":
		return "memory (kernel socket memory, tcp_mem)"
	case "http_503":
		return "server capacity (node refused: over capacity)"
	case "ECONNREFUSED", "ETIMEDOUT", "handshake_timeout":
		return "server accept queue (somaxconn / tcp_max_syn_backlog) or server not reachable"
	}
	return ""
}

// ServerSample is what the nodes' /metrics said at one moment, summed over
// every --api address.
type ServerSample struct {
	Nodes       int     `json:"nodes"` // nodes that answered
	Connections float64 `json:"connections"`
	RSSBytes    float64 `json:"rss_bytes"`
	HeapBytes   float64 `json:"heap_bytes"`
	CPUSeconds  float64 `json:"cpu_seconds"`
	// Acks is longlink_acks_total: stream acks applied by the nodes as their
	// streams' owners (after coalescing per stream, 5 ms on each node).
	Acks   float64  `json:"acks,omitempty"`
	Errors []string `json:"errors,omitempty"`
}

const metricAcks = "longlink_acks_total"

var metricsClient = &http.Client{Timeout: 5 * time.Second}

// scrape reads /metrics from every api address.
func scrape(ctx context.Context, apis []string) ServerSample {
	var s ServerSample
	for _, a := range apis {
		m, err := scrapeOne(ctx, a)
		if err != nil {
			s.Errors = append(s.Errors, err.Error())
			continue
		}
		s.Nodes++
		s.Connections += m["longlink_connections"]
		s.RSSBytes += m["process_resident_memory_bytes"]
		heap, ok := m["go_memstats_heap_inuse_bytes"]
		if !ok {
			heap = m["go_memstats_alloc_bytes"]
		}
		s.HeapBytes += heap
		s.CPUSeconds += m["process_cpu_seconds_total"]
		s.Acks += m[metricAcks]
	}
	return s
}

var wantMetrics = map[string]bool{
	"longlink_connections": true, "process_resident_memory_bytes": true,
	"go_memstats_heap_inuse_bytes": true, "go_memstats_alloc_bytes": true,
	"process_cpu_seconds_total": true, metricAcks: true,
	// reconnect: the nodes' own recovery counts
	metricRecoveredMessages: true, metricNotRecovered: true,
	// cluster (bench cluster): route tables, streams taken over, forwarding
	metricRouteUpdates: true, metricHistoryStreams: true, metricHistoryBytes: true,
	metricHandoffStreams: true, metricHandoffFailures: true, metricForwardFailures: true,
	metricForwardMessages: true, `longlink_cluster_members{state="alive"}`: true,
	metricGossipPacketsIn: true, metricGossipPacketsOut: true, metricGossipPacketBytesIn: true,
	metricGossipPacketBytesOut: true, metricGossipStreamBytesIn: true, metricGossipStreamBytesOut: true,
}

func scrapeOne(ctx context.Context, api string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+api+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := metricsClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot scrape %s: %w", api, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("cannot read %s/metrics: %w", api, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s/metrics answered %d", api, resp.StatusCode)
	}
	return parseMetrics(body), nil
}

// parseMetrics keeps the unlabelled samples bench reads from Prometheus text.
func parseMetrics(body []byte) map[string]float64 {
	out := map[string]float64{}
	for _, line := range bytes.Split(body, []byte("\n")) {
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		f := strings.Fields(string(line))
		if len(f) < 2 || !wantMetrics[f[0]] {
			continue
		}
		if v, err := strconv.ParseFloat(f[1], 64); err == nil {
			out[f[0]] = v
		}
	}
	return out
}
