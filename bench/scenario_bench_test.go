package bench

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// The issue benchmarks, run through the bundled tool against the real binary in a
// separate process (a server holding ~19,000 sockets and the clients cannot share one
// process under a 20,000 open-files limit). Run them once:
//
//	go test ./bench -run XXX -bench Scenario -benchtime 1x
//
// LONGLINK_BENCH_CONNS overrides the connection count (default 19,000 users x conns).
// Figures are reported as custom metrics; the full report is printed with -v.

func benchConns(def int) int {
	if v, err := strconv.Atoi(os.Getenv("LONGLINK_BENCH_CONNS")); err == nil && v > 0 {
		return v
	}
	return def
}

// BenchmarkScenarioBroadcast: one message to every connection one node can hold here.
func BenchmarkScenarioBroadcast(b *testing.B) {
	conns := benchConns(19000)
	n := startRealNode(b, "")
	jp := filepath.Join(b.TempDir(), "broadcast.json")
	b.ResetTimer()
	out := runBench(b, "broadcast", "--target", n.Client, "--api", n.API, "--token-secret", itSecret, "--api-key", itKey,
		"--conns", strconv.Itoa(conns), "--rate", "20000", "--rounds", strconv.Itoa(max(5, b.N)), "--json", jp)
	b.StopTimer()
	b.Log(out)
	rep := readReport(b, jp)
	var last, cpu float64
	for _, r := range rep.Broadcast.Rounds {
		if r.Received != int64(conns) {
			b.Fatalf("round %d: %d of %d received", r.Round, r.Received, conns)
		}
		last += r.LastMs
		cpu += r.ServerCPUPerRecipientUs
	}
	k := float64(len(rep.Broadcast.Rounds))
	b.ReportMetric(last/k, "ms-to-last-recipient")
	b.ReportMetric(cpu/k*1000, "server-ns/recipient")
	b.ReportMetric(float64(conns)/(last/k/1000), "recipients/s")
}

// BenchmarkScenarioIQIYI: users with 10 connections each and 600 concurrent callers
// (closed loop), then a steady 5,000 pushes/s (open loop) for latency.
func BenchmarkScenarioIQIYI(b *testing.B) {
	users := benchConns(19000) / 10
	for _, mode := range []string{"closed", "open"} {
		b.Run("loop="+mode, func(b *testing.B) {
			n := startRealNode(b, "")
			jp := filepath.Join(b.TempDir(), "push.json")
			args := []string{"push", "--target", n.Client, "--api", n.API, "--token-secret", itSecret, "--api-key", itKey,
				"--users", strconv.Itoa(users), "--conns-per-user", "10", "--duration", "20s", "--json", jp}
			if mode == "closed" {
				args = append(args, "--callers", "600")
			} else {
				args = append(args, "--callers", "64", "--push-rate", "5000")
			}
			b.ResetTimer()
			out := runBench(b, args...)
			b.StopTimer()
			b.Log(out)
			p := readReport(b, jp).Push
			if p.Missing != 0 || len(p.Errors) != 0 {
				b.Fatalf("missing %d, errors %v", p.Missing, p.Errors)
			}
			b.ReportMetric(p.PushesPerS, "pushes/s")
			b.ReportMetric(p.Latency.P50Ms, "p50-ms")
			b.ReportMetric(p.Latency.P99Ms, "p99-ms")
			b.ReportMetric(p.ServerCPUPerPushUs, "server-µs/push")
		})
	}
}
