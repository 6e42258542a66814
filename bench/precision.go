package bench

import (
	"fmt"
	"io"
	"strings"
)

// What a figure can honestly say. The nodes' CPU comes from process_cpu_seconds_total,
// which moves in 10 ms accounting ticks: each of the two samples a figure is the
// difference of may be a tick off on every node, so CPU per item is printed with the
// uncertainty that gives, never with more digits than it has. Memory per connection
// is a difference of two process-wide samples: below zero it says only that other
// allocations moved more than the connections did, so it is printed as noise.

// cpuTick is the resolution of process_cpu_seconds_total.
const cpuTick = 0.01

// cpuPer formats cpuS seconds of the nodes' CPU over n items as microseconds per item,
// with its uncertainty: two samples, each up to one tick off per node.
func cpuPer(cpuS float64, n int64, nodes int) string {
	if n <= 0 {
		return "n/a (nothing counted)"
	}
	v := cpuS * 1e6 / float64(n)
	e := 2 * cpuTick * float64(max(nodes, 1)) * 1e6 / float64(n)
	if v <= e {
		return fmt.Sprintf("under %s µs (within the 10 ms CPU accounting tick: too few items to measure)", trim(e, decimalsFor(e)))
	}
	d := decimalsFor(e)
	return fmt.Sprintf("%s ± %s µs", trim(v, d), trim(e, d))
}

// cpuPerUs is cpuPer for a figure already divided (µs per item over n items).
func cpuPerUs(us float64, n int64, nodes int) string {
	return cpuPer(us*float64(n)/1e6, n, nodes)
}

// decimalsFor is how many decimals a value with uncertainty e deserves: the first
// significant digit of e is the last one printed (at most 2).
func decimalsFor(e float64) int {
	d := 0
	for x := e; x < 1 && d < 2; x *= 10 {
		d++
	}
	return d
}

func trim(v float64, decimals int) string { return fmt.Sprintf("%.*f", decimals, v) }

// perConn formats a memory difference per connection; below zero it is noise.
func perConn(b float64) string {
	if b < 0 {
		return "noise: below zero, other memory moved more than the connections'"
	}
	return fmt.Sprintf("%.0f B/conn", b)
}

// printFloorRatios is the last block of a run with a floor: the gateway's figures next
// to the floor's from the same run, and the ratios gateway / floor.
func printFloorRatios(w io.Writer, rep *Report) {
	f := rep.Floor
	if f == nil {
		return
	}
	nodes, fnodes := rep.Server.AfterOpen.Nodes, f.Server.AfterOpen.Nodes
	var b strings.Builder
	row := func(k, gw, fl, ratio string) { fmt.Fprintf(&b, "%-22s %-34s %-34s %s\n", k, gw, fl, ratio) }
	ratio := func(a, b float64) string {
		if b <= 0 {
			return ""
		}
		return fmt.Sprintf("x%.2f", a/b)
	}
	fmt.Fprintf(&b, "== gateway vs floor, same run (%s)\n", rep.Scenario)
	row("", "gateway", "floor", "gateway / floor")
	if p, fp := rep.Push, f.Push; p != nil && fp != nil {
		row("pushes/s", commas(int64(p.PushesPerS)), commas(int64(fp.PushesPerS)), ratio(p.PushesPerS, fp.PushesPerS))
		for _, q := range []struct {
			k    string
			a, b float64
		}{{"e2e p50 ms", p.Latency.P50Ms, fp.Latency.P50Ms}, {"e2e p99 ms", p.Latency.P99Ms, fp.Latency.P99Ms},
			{"e2e p99.9 ms", p.Latency.P999Ms, fp.Latency.P999Ms}, {"e2e max ms", p.Latency.MaxMs, fp.Latency.MaxMs}} {
			row(q.k, fmt.Sprintf("%.2f", q.a), fmt.Sprintf("%.2f", q.b), ratio(q.a, q.b))
		}
		row("server CPU per push", cpuPer(p.ServerCPUS, p.Pushes, nodes), cpuPer(fp.ServerCPUS, fp.Pushes, fnodes), ratio(p.ServerCPUPerPushUs, fp.ServerCPUPerPushUs))
		row("missing deliveries", commas(p.Missing), commas(fp.Missing), "")
	}
	if bc, fb := rep.Broadcast, f.Broadcast; bc != nil && fb != nil {
		for i := range bc.Rounds {
			if i >= len(fb.Rounds) {
				break
			}
			r, fr := bc.Rounds[i], fb.Rounds[i]
			row(fmt.Sprintf("round %d last ms", r.Round), fmt.Sprintf("%.1f", r.LastMs), fmt.Sprintf("%.1f", fr.LastMs), ratio(r.LastMs, fr.LastMs))
			row(fmt.Sprintf("round %d CPU/recipient", r.Round), cpuPerUs(r.ServerCPUPerRecipientUs, r.Received, nodes),
				cpuPerUs(fr.ServerCPUPerRecipientUs, fr.Received, fnodes), ratio(r.ServerCPUPerRecipientUs, fr.ServerCPUPerRecipientUs))
		}
	}
	if s, fs := rep.Server, f.Server; s.Available && fs.Available {
		row("RSS per connection", perConn(s.RSSPerConnBytes), perConn(fs.RSSPerConnBytes), ratio(s.RSSPerConnBytes, fs.RSSPerConnBytes))
		row("heap per connection", perConn(s.HeapPerConnBytes), perConn(fs.HeapPerConnBytes), "")
	}
	io.WriteString(w, b.String())
}
