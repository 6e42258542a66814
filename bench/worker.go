package bench

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// WorkerEnv, set to "1" in a process's environment, marks it as a bench
// worker. The coordinator sets it when it re-executes os.Executable(); a test
// binary's TestMain checks it and calls RunWorker, because under `go test`
// the executable is the test binary, not longlink.
const WorkerEnv = "LONGLINK_BENCH_WORKER"

// workerCmd is one request from the coordinator, one JSON line on stdin.
type workerCmd struct {
	Op     string      `json:"op"` // "open", "stats", "halt", "drop", "reopen", "floor" or "close"
	Open   *OpenSpec   `json:"open,omitempty"`
	Reopen *ReopenSpec `json:"reopen,omitempty"`
	Floor  *FloorSpec  `json:"floor,omitempty"`
	Hists  bool        `json:"hists,omitempty"` // include histograms and reason maps
	Reset  bool        `json:"reset,omitempty"` // clear the latency histogram after reading it
}

// WorkerStats is a worker's answer, one JSON line on stdout.
type WorkerStats struct {
	Pid       int   `json:"pid"`
	Attempted int64 `json:"attempted"`
	Opened    int64 `json:"opened"`
	Open      int64 `json:"open"`
	Failed    int64 `json:"failed"`
	Dropped   int64 `json:"dropped"`
	Inflight  int64 `json:"inflight"`
	Received  int64 `json:"received"`
	Unstamped int64 `json:"unstamped"`
	Pings     int64 `json:"pings"`
	Done      bool  `json:"done"` // every assigned connection attempted

	// v2 (see eloop): sequence checks on every push, and the reconnect.
	V2Dups       int64 `json:"v2_dups,omitempty"`
	V2Gaps       int64 `json:"v2_gaps,omitempty"`
	V2Other      int64 `json:"v2_other,omitempty"`
	V2NoPos      int64 `json:"v2_no_pos,omitempty"`
	EpochChanges int64 `json:"epoch_changes,omitempty"`
	Killed       int64 `json:"killed,omitempty"`
	Recovered    int64 `json:"recovered,omitempty"`
	NotRecovered int64 `json:"not_recovered,omitempty"`
	Resuming     int64 `json:"resuming,omitempty"` // clients a reopen brings back
	AcksSent     int64 `json:"acks_sent,omitempty"`
	AckFails     int64 `json:"ack_fails,omitempty"`
	// With hists, after a reopen: expected pushes not (yet) received, and
	// clients with no welcome yet.
	Missing   int64      `json:"missing,omitempty"`
	NoWelcome int64      `json:"no_welcome,omitempty"`
	Recovery  *Histogram `json:"recovery,omitempty"`

	Failures  map[string]int64 `json:"failures,omitempty"`
	Drops     map[string]int64 `json:"drops,omitempty"`
	Handshake *Histogram       `json:"handshake,omitempty"`
	TCP       *Histogram       `json:"tcp,omitempty"`
	Latency   *Histogram       `json:"latency,omitempty"`
	// Floor is what a "floor" request measured (upstream's floor phase).
	Floor *FloorStats `json:"floor,omitempty"`

	CPUNs     int64  `json:"cpu_ns"` // user+system CPU of this process so far
	RSSBytes  int64  `json:"rss_bytes"`
	HeapInuse uint64 `json:"heap_inuse"`
	NoFile    uint64 `json:"nofile"` // soft RLIMIT_NOFILE in force
	Err       string `json:"err,omitempty"`
}

// RunWorker serves coordinator requests read from in, answering on out, until
// a "close" request or in reaches EOF (the coordinator went away). It owns one
// epoll event loop. The longlink binary runs it for `longlink bench worker`.
func RunWorker(in io.Reader, out io.Writer) error {
	nofile, _ := raiseNoFile()
	l, err := newLoop()
	if err != nil {
		return err
	}
	stop := make(chan struct{})
	loopDone := make(chan struct{})
	go func() { l.run(stop); close(loopDone) }()
	shutdown := func() {
		close(stop)
		select {
		case <-loopDone:
		case <-time.After(10 * time.Second):
		}
	}

	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	enc := json.NewEncoder(out)
	for sc.Scan() {
		var cmd workerCmd
		var st WorkerStats
		if err := json.Unmarshal(sc.Bytes(), &cmd); err != nil {
			st.Err = fmt.Sprintf("bad request: %v", err)
			if err := enc.Encode(&st); err != nil {
				shutdown()
				return err
			}
			continue
		}
		switch cmd.Op {
		case "open":
			var serr error
			if cmd.Open == nil {
				serr = errors.New("open without spec")
			} else if err := l.call(func() { serr = l.setSpec(*cmd.Open) }); err != nil {
				serr = err
			}
			st = l.snapshot(false, false)
			if serr != nil {
				st.Err = serr.Error()
			}
		case "stats":
			if cmd.Hists {
				if err := l.call(func() { st = l.snapshot(true, cmd.Reset) }); err != nil {
					st.Err = err.Error()
				}
			} else {
				st = l.snapshot(false, false)
			}
		case "halt":
			// Stop opening (bench cluster's --open-time): connections already
			// attempted finish; the rest are never attempted.
			if err := l.call(l.halt); err != nil {
				st.Err = err.Error()
			} else {
				st = l.snapshot(false, false)
			}
		case "drop":
			if err := l.call(l.dropAll); err != nil {
				st.Err = err.Error()
			} else {
				st = l.snapshot(false, false)
			}
		case "reopen":
			var serr error
			if cmd.Reopen == nil {
				serr = errors.New("reopen without spec")
			} else if err := l.call(func() { serr = l.reopen(*cmd.Reopen) }); err != nil {
				serr = err
			}
			st = l.snapshot(false, false)
			if serr != nil {
				st.Err = serr.Error()
			}
		case "floor":
			// Runs the whole phase before answering: the coordinator waits for it
			// with a timeout of the phase's length.
			if cmd.Floor == nil {
				st.Err = "floor without spec"
			} else {
				fs := runFloor(*cmd.Floor)
				st = l.snapshot(false, false)
				st.Floor = &fs
			}
		case "close":
			shutdown()
			st = l.snapshot(true, false)
			st.NoFile = nofile
			return enc.Encode(&st)
		default:
			st.Err = fmt.Sprintf("unknown op %q", cmd.Op)
		}
		st.NoFile = nofile
		if err := enc.Encode(&st); err != nil {
			shutdown()
			return fmt.Errorf("cannot answer coordinator: %w", err)
		}
	}
	shutdown()
	return sc.Err()
}

// snapshot reads the counters; with full it also copies the histograms and
// reason maps, which only the loop may touch (call it on the loop then).
func (l *eloop) snapshot(full, reset bool) WorkerStats {
	st := WorkerStats{
		Pid:       os.Getpid(),
		Attempted: l.attempted.Load(), Opened: l.opened.Load(), Open: l.open.Load(),
		Failed: l.failed.Load(), Dropped: l.dropped.Load(), Inflight: l.inflight.Load(),
		Received: l.received.Load(), Unstamped: l.unstamped.Load(), Pings: l.pings.Load(),
		Done:   l.done.Load() && l.inflight.Load() == 0,
		V2Dups: l.v2Dups.Load(), V2Gaps: l.v2Gaps.Load(), V2Other: l.v2Other.Load(), V2NoPos: l.v2NoPos.Load(),
		EpochChanges: l.epochChanges.Load(), Killed: l.killed.Load(),
		Recovered: l.recovered.Load(), NotRecovered: l.notRecovered.Load(), Resuming: l.resuming.Load(),
		AcksSent: l.acksSent.Load(), AckFails: l.ackFails.Load(),
	}
	st.CPUNs, st.RSSBytes = selfUsage()
	var ms runtime.MemStats
	if full {
		runtime.ReadMemStats(&ms)
		st.HeapInuse = ms.HeapInuse
		st.Failures = copyMap(l.failures)
		st.Drops = copyMap(l.drops)
		hs, tcp, lat := l.hsHist, l.tcpHist, l.latHist
		st.Handshake, st.TCP, st.Latency = &hs, &tcp, &lat
		if l.resume {
			rh := l.recHist
			st.Recovery = &rh
			st.Missing, st.NoWelcome = l.resumeLeft()
		}
		if reset {
			l.latHist.Reset()
		}
	}
	return st
}

func copyMap(m map[string]int64) map[string]int64 {
	out := make(map[string]int64, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// selfUsage is this process's CPU time (user+system) and current RSS.
func selfUsage() (cpuNs, rss int64) {
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_SELF, &ru) == nil {
		cpuNs = ru.Utime.Nano() + ru.Stime.Nano()
	}
	// /proc/self/statm field 2 is resident pages; ru.Maxrss is only the peak.
	if b, err := os.ReadFile("/proc/self/statm"); err == nil {
		var size, res int64
		if _, err := fmt.Sscan(string(b), &size, &res); err == nil {
			rss = res * int64(os.Getpagesize())
		}
	}
	return cpuNs, rss
}

// raiseNoFile lifts the soft open-files limit to the hard limit and returns
// the limit now in force.
func raiseNoFile() (uint64, error) {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return 0, fmt.Errorf("cannot read RLIMIT_NOFILE: %w", err)
	}
	if rl.Cur < rl.Max {
		rl.Cur = rl.Max
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
			return rl.Cur, fmt.Errorf("cannot raise RLIMIT_NOFILE to %d: %w", rl.Max, err)
		}
	}
	return rl.Cur, nil
}
