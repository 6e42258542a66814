package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"longlink/internal/testutil"
)

// benchClusterReport is the part of `bench cluster`'s JSON report the tests read.
type benchClusterReport struct {
	Connect struct {
		OpenAtEnd int64 `json:"open_at_end"`
		Failed    int64 `json:"failed"`
	} `json:"connect"`
	Broadcast struct {
		Rounds []struct {
			Expected, Received int64
			TimedOut           bool `json:"timed_out"`
		} `json:"rounds"`
	} `json:"broadcast"`
	Push struct {
		Pushes             int64            `json:"pushes"`
		ExpectedDeliveries int64            `json:"expected_deliveries"`
		Received           int64            `json:"received"`
		Missing            int64            `json:"missing"`
		Errors             map[string]int64 `json:"errors"`
	} `json:"push"`
	Reconnect struct {
		Clients    int   `json:"clients"`
		Recovered  int64 `json:"recovered"`
		Missing    int64 `json:"missing"`
		Duplicates int64 `json:"duplicates"`
	} `json:"reconnect"`
	Limits  []string `json:"limits_hit"`
	Cluster struct {
		Refused string `json:"refused"`
		Hold    struct {
			Held    bool  `json:"held"`
			Dropped int64 `json:"dropped"`
		} `json:"hold"`
		Gossip struct {
			Counted      bool    `json:"counted"`
			PacketsOutPs float64 `json:"packets_out_ps"`
			PacketsInPs  float64 `json:"packets_in_ps"`
		} `json:"gossip"`
		Join struct {
			RoutesS         float64 `json:"routes_s"`
			RouteEntries    float64 `json:"route_entries"`
			ExpectedEntries int64   `json:"expected_entries"`
		} `json:"join"`
		Kill struct {
			Clients    int64   `json:"clients"`
			Lost       int64   `json:"lost"`
			DeadAllS   float64 `json:"dead_all_s"`
			AllRecover float64 `json:"all_recovered_s"`
			API        struct {
				Requests int64 `json:"requests"`
			} `json:"api"`
		} `json:"kill"`
		Baseline struct {
			Conns int64  `json:"conns"`
			Error string `json:"error"`
		} `json:"baseline"`
		StoppedPids []int `json:"stopped_pids"`
		WorkerPids  []int `json:"worker_pids"`
		LeftPids    []int `json:"left_pids"`
	} `json:"cluster"`
}

// runBenchCluster runs `longlink bench cluster` with args on a random base port
// below the ephemeral range, trying another when the ports are taken, and returns
// its exit error, output and decoded report.
func runBenchCluster(t *testing.T, args ...string) (error, string, benchClusterReport) {
	t.Helper()
	bin := testutil.Binary(t)
	for try := 0; ; try++ {
		dir := t.TempDir()
		js := filepath.Join(dir, "report.json")
		base := 10000 + rand.IntN(2000)*10
		all := append([]string{"bench", "cluster", "--base-port", fmt.Sprint(base), "--dir", dir, "--json", js}, args...)
		cmd := exec.Command(bin, all...)
		out, err := cmd.CombinedOutput()
		var rep benchClusterReport
		if b, rerr := os.ReadFile(js); rerr == nil {
			if jerr := json.Unmarshal(b, &rep); jerr != nil {
				t.Fatalf("bad report: %v\n%s", jerr, out)
			}
		}
		if strings.HasPrefix(rep.Cluster.Refused, "ports:") && try < 3 {
			continue
		}
		return err, string(out), rep
	}
}

// gone reports whether no process has pid any more (or it is a zombie nobody
// reaped: not running).
func gone(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	i := strings.LastIndexByte(string(b), ')')
	return i > 0 && len(b) > i+2 && b[i+2] == 'Z'
}

// TestBenchCluster runs every phase of `bench cluster` through the real binary at
// small scale: 3 nodes (and a fourth joining), 300 connections of 30 users, each
// user's 10 connections spread over the nodes.
func TestBenchCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	err, out, rep := runBenchCluster(t, "--nodes", "3", "--conns", "300", "--rate", "2000", "--hold", "1s",
		"--rounds", "2", "--push-rate", "100", "--duration", "2s", "--gossip-window", "2s", "--messages", "2",
		"--baseline-conns", "100", "--round-timeout", "20s", "--max-time", "3m")
	if err != nil {
		t.Fatalf("bench cluster: %v\n%s", err, out)
	}
	c := rep.Cluster
	if rep.Connect.OpenAtEnd != 300 || rep.Connect.Failed != 0 || !c.Hold.Held || c.Hold.Dropped != 0 {
		t.Errorf("connections: %d open at end, %d failed, held %v, %d dropped", rep.Connect.OpenAtEnd, rep.Connect.Failed, c.Hold.Held, c.Hold.Dropped)
	}
	if len(rep.Broadcast.Rounds) != 2 {
		t.Errorf("broadcast rounds: %+v", rep.Broadcast.Rounds)
	}
	for _, r := range rep.Broadcast.Rounds {
		if r.Expected != 300 || r.Received != 300 || r.TimedOut {
			t.Errorf("broadcast round: %d of %d received, timed out %v", r.Received, r.Expected, r.TimedOut)
		}
	}
	p := rep.Push
	if p.Pushes == 0 || p.Missing != 0 || p.ExpectedDeliveries != p.Pushes*10 || p.Received < p.ExpectedDeliveries || len(p.Errors) != 0 {
		t.Errorf("push: %d pushes, %d of %d deliveries, %d missing, errors %v", p.Pushes, p.Received, p.ExpectedDeliveries, p.Missing, p.Errors)
	}
	if !c.Gossip.Counted || c.Gossip.PacketsOutPs <= 0 || c.Gossip.PacketsInPs <= 0 {
		t.Errorf("idle gossip: counted %v, %v packets/s out, %v in", c.Gossip.Counted, c.Gossip.PacketsOutPs, c.Gossip.PacketsInPs)
	}
	if c.Join.RoutesS <= 0 || c.Join.RouteEntries < float64(c.Join.ExpectedEntries) || c.Join.ExpectedEntries != 90 { // 30 users, each on all 3 nodes
		t.Errorf("join: routes after %vs, %v of %d entries", c.Join.RoutesS, c.Join.RouteEntries, c.Join.ExpectedEntries)
	}
	x := rep.Reconnect
	if c.Kill.Clients != 100 || x.Clients != 100 || x.Recovered != 100 || x.Missing != 0 || x.Duplicates != 0 || c.Kill.Lost != 0 {
		t.Errorf("kill: %d clients, %d recovered, %d missing, %d duplicates, lost %d", x.Clients, x.Recovered, x.Missing, x.Duplicates, c.Kill.Lost)
	}
	if c.Kill.DeadAllS <= 0 || c.Kill.AllRecover <= c.Kill.DeadAllS || c.Kill.API.Requests == 0 {
		t.Errorf("kill: dead at all survivors after %vs, all recovered after %vs, %d API probes", c.Kill.DeadAllS, c.Kill.AllRecover, c.Kill.API.Requests)
	}
	if c.Baseline.Conns != 100 || c.Baseline.Error != "" {
		t.Errorf("baseline: %+v", c.Baseline)
	}
	// 4 cluster nodes (3 and the joiner) and the baseline's, and 3 workers.
	if len(c.StoppedPids) != 5 || len(c.WorkerPids) != 3 || len(c.LeftPids) != 0 {
		t.Errorf("processes: stopped %v, workers %v, left %v", c.StoppedPids, c.WorkerPids, c.LeftPids)
	}
	pids := append(append([]int{}, c.StoppedPids...), c.WorkerPids...)
	testutil.WaitFor(t, 5*time.Second, "every process bench cluster started to be gone", func() bool {
		for _, pid := range pids {
			if !gone(pid) {
				return false
			}
		}
		return true
	})
	if len(rep.Limits) != 0 {
		t.Errorf("limits hit: %v", rep.Limits)
	}
}

// TestBenchClusterRefusesWhatCannotFit: a run over the nodes' open-files budget is
// refused before any process starts, naming the limit and what would fit.
func TestBenchClusterRefusesWhatCannotFit(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Max > 1<<22 {
		t.Skip("open-files limit unknown or too large to exceed here")
	}
	conns := int(rl.Max) * 3 // three nodes cannot hold three limits' worth
	err, out, rep := runBenchCluster(t, "--nodes", "3", "--conns", fmt.Sprint(conns))
	if err == nil {
		t.Fatalf("bench cluster accepted %d connections over 3 nodes:\n%s", conns, out)
	}
	if !strings.HasPrefix(rep.Cluster.Refused, "open files:") || !strings.Contains(rep.Cluster.Refused, "at most --conns") {
		t.Errorf("refusal: %q\n%s", rep.Cluster.Refused, out)
	}
	if len(rep.Cluster.StoppedPids) != 0 {
		t.Errorf("processes started for a refused run: %v", rep.Cluster.StoppedPids)
	}
}
