package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// runner is one bench run: the worker pool, the sampler that feeds the
// progress line and the timeline, and the report being filled in.
type runner struct {
	o      Options
	stdout io.Writer
	stderr io.Writer
	tty    bool
	p      *pool
	rep    *Report
	t0     time.Time
	ctx    context.Context

	pushes atomic.Int64 // pushes accepted so far, for the progress line

	mu       sync.Mutex // guards phase and the report's timeline
	phase    string
	lastProg time.Time
	lastOpen int64
	lastAt   time.Time

	stopSampler chan struct{}
	samplerDone chan struct{}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

func (r *runner) setPhase(p string) {
	r.mu.Lock()
	r.phase = p
	r.mu.Unlock()
}

func sum(st []WorkerStats, f func(*WorkerStats) int64) int64 {
	var n int64
	for i := range st {
		n += f(&st[i])
	}
	return n
}

// startSampler polls the workers every 250 ms for the progress line and
// records a timeline sample (with the servers' /metrics) every second.
func (r *runner) startSampler() {
	r.stopSampler = make(chan struct{})
	r.samplerDone = make(chan struct{})
	go func() {
		defer close(r.samplerDone)
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		lastSample := time.Time{}
		for {
			select {
			case <-r.stopSampler:
				return
			case now := <-tick.C:
				st, err := r.p.stats(false, false)
				if err != nil {
					continue
				}
				r.progress(st, now, false)
				if now.Sub(lastSample) >= time.Second {
					lastSample = now
					r.sample(st, now)
				}
			}
		}
	}()
}

func (r *runner) stopSampling() {
	if r.stopSampler != nil {
		close(r.stopSampler)
		<-r.samplerDone
		r.stopSampler = nil
	}
}

func (r *runner) sample(st []WorkerStats, now time.Time) {
	s := Sample{
		T:        now.Sub(r.t0).Seconds(),
		Opened:   sum(st, func(w *WorkerStats) int64 { return w.Opened }),
		Open:     sum(st, func(w *WorkerStats) int64 { return w.Open }),
		Failed:   sum(st, func(w *WorkerStats) int64 { return w.Failed }),
		Received: sum(st, func(w *WorkerStats) int64 { return w.Received }),
		Pushes:   r.pushes.Load(),
	}
	s.ClientRSS = float64(sum(st, func(w *WorkerStats) int64 { return w.RSSBytes }))
	if len(r.o.APIs) > 0 {
		ctx, cancel := context.WithTimeout(r.ctx, 2*time.Second)
		sv := scrape(ctx, r.o.APIs)
		cancel()
		if sv.Nodes > 0 {
			s.ServerConns, s.ServerRSS, s.ServerHeap = sv.Connections, sv.RSSBytes, sv.HeapBytes
		}
	}
	r.mu.Lock()
	r.rep.Timeline = append(r.rep.Timeline, s)
	r.mu.Unlock()
}

// progress prints the live line: rewritten with \r on a terminal, a plain
// line every 2 s otherwise.
func (r *runner) progress(st []WorkerStats, now time.Time, final bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.tty && !final && now.Sub(r.lastProg) < 2*time.Second {
		return
	}
	opened := sum(st, func(w *WorkerStats) int64 { return w.Opened })
	rate := 0.0
	if opened < r.lastOpen { // counters start again (reconnect)
		r.lastOpen = 0
	}
	if !r.lastAt.IsZero() {
		rate = float64(opened-r.lastOpen) / now.Sub(r.lastAt).Seconds()
	}
	r.lastOpen, r.lastAt, r.lastProg = opened, now, now
	line := fmt.Sprintf("%-9s opened %s/%s  open %s  failed %s  rate %s/s  recv %s",
		r.phase, commas(opened), commas(int64(r.o.Conns)),
		commas(sum(st, func(w *WorkerStats) int64 { return w.Open })),
		commas(sum(st, func(w *WorkerStats) int64 { return w.Failed })),
		commas(int64(rate)),
		commas(sum(st, func(w *WorkerStats) int64 { return w.Received })))
	if r.o.Scenario == "push" || r.o.Scenario == "reconnect" {
		line += "  pushes " + commas(r.pushes.Load())
	}
	if r.o.Scenario == "reconnect" {
		line += "  recovered " + commas(sum(st, func(w *WorkerStats) int64 { return w.Recovered }))
	}
	line += fmt.Sprintf("  elapsed %.1fs", now.Sub(r.t0).Seconds())
	if r.tty {
		fmt.Fprintf(r.stdout, "\r%-110s", line)
		if final {
			fmt.Fprintln(r.stdout)
		}
	} else {
		fmt.Fprintln(r.stdout, line)
	}
}

func (r *runner) logf(format string, a ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.tty {
		fmt.Fprint(r.stdout, "\r\033[K")
	}
	fmt.Fprintf(r.stdout, format+"\n", a...)
}

// planWorkers decides how many worker processes are needed so that none
// exceeds its open-files limit, and checks the ephemeral port budget.
func (r *runner) planWorkers() (int, error) {
	env := &r.rep.Env
	perProc := int(min(env.NoFileHard, 1<<30)) - 128 // pipes, epoll, std files
	if perProc < 64 {
		return 0, fmt.Errorf("open files limit: RLIMIT_NOFILE hard limit is %d per process, too low to hold connections", env.NoFileHard)
	}
	need := (r.o.Conns + perProc - 1) / perProc
	w := max(r.o.Workers, need, 1)
	if r.o.Workers > 0 && r.o.Workers < need {
		r.note(fmt.Sprintf("raised --workers from %d to %d: each process may hold at most %d connections (RLIMIT_NOFILE hard limit %d)",
			r.o.Workers, need, perProc, env.NoFileHard))
	}
	if w > 4096 {
		return 0, fmt.Errorf("open files limit: %d connections need %d worker processes at %d files each; raise the hard RLIMIT_NOFILE (ulimit -n)\n%s",
			r.o.Conns, w, perProc, limitAdvice())
	}
	// With source addresses bench assigns ports itself from the whole
	// unprivileged range; without, the kernel's ephemeral range per target.
	budget, what := ephemeralPorts()*len(uniq(r.o.Targets)), "ephemeral ports x targets"
	if n := len(r.o.SourceIPs); n > 0 {
		budget, what = portSpan*n, fmt.Sprintf("%d ports x %d source addresses", portSpan, n)
	}
	if r.o.Conns > budget {
		r.limit(fmt.Sprintf("ephemeral ports: %s connections but only %s = %s; add --source-ips",
			commas(int64(r.o.Conns)), what, commas(int64(budget))))
	}
	if int64(r.o.Conns) > 2*int64(w)*int64(perProc) {
		r.limit("open files")
	}
	return w, nil
}

func uniq(s []string) []string {
	m := map[string]bool{}
	var out []string
	for _, v := range s {
		if !m[v] {
			m[v] = true
			out = append(out, v)
		}
	}
	return out
}

func (r *runner) note(s string) {
	r.rep.Notes = append(r.rep.Notes, s)
	r.logf("note: %s", s)
}

func (r *runner) limit(s string) {
	for _, l := range r.rep.Limits {
		if l == s {
			return
		}
	}
	r.rep.Limits = append(r.rep.Limits, s)
}

// openAll hands every worker its slice of connections and waits until each
// connection is open or has failed.
func (r *runner) openAll() error {
	r.setPhase("connect")
	n, w := r.o.Conns, len(r.p.workers)
	chunk := (n + w - 1) / w
	startOpen := time.Now()
	// A random port offset per run keeps ports an earlier run left in
	// TIME_WAIT out of the way.
	portBase := rand.IntN(portSpan)
	_, err := r.p.each(func(i int) workerCmd {
		first := min(i*chunk, n)
		return workerCmd{Op: "open", Open: &OpenSpec{
			Targets: r.o.Targets, SourceIPs: r.o.SourceIPs,
			First: first, Count: min(chunk, n-first),
			ConnsPerUser: r.o.ConnsPerUser, UserPrefix: "bench-", Room: r.o.Room, TokenSecret: r.o.TokenSecret,
			Rate: r.o.Rate / float64(w), PortBase: portBase, BatchWait: r.o.BatchWait, HandshakeTimeout: r.o.HandshakeTimeout, PingInterval: r.o.PingInterval,
			V2: r.o.Protocol == "v2", Ack: r.o.Ack,
		}}
	})
	if err != nil {
		return fmt.Errorf("cannot start opening connections: %w", err)
	}
	rate := r.o.Rate
	if rate <= 0 {
		rate = 2000
	}
	limit := time.Duration(float64(n)/rate*float64(time.Second)) + r.o.HandshakeTimeout + 30*time.Second
	st, ok, err := waitOpened(limit, func() ([]WorkerStats, error) { return r.p.stats(false, false) })
	if err != nil {
		return err
	}
	c := &r.rep.Connect
	c.DurationS = time.Since(startOpen).Seconds()
	if !ok {
		r.note(fmt.Sprintf("connection phase did not finish within %v", limit))
	}
	c.Opened = sum(st, func(w *WorkerStats) int64 { return w.Opened })
	if c.DurationS > 0 {
		c.RatePerS = float64(c.Opened) / c.DurationS
	}
	return nil
}

// poll calls cond every step until it is true or limit passes.
// waitOpened polls the workers' stats until every worker has finished opening, or
// limit passes (ok false).
func waitOpened(limit time.Duration, stats func() ([]WorkerStats, error)) (st []WorkerStats, ok bool, err error) {
	ok = poll(limit, 100*time.Millisecond, func() bool {
		if st, err = stats(); err != nil {
			return true
		}
		for i := range st {
			if !st[i].Done {
				return false
			}
		}
		return true
	})
	return st, ok, err
}

// waitRecovered polls the workers' stats until expected resumed clients have
// recovered, or nothing is in flight and nothing has arrived for 2 s (what is
// missing will not come), or limit passes (ok false).
func waitRecovered(limit time.Duration, expected int64, stats func() ([]WorkerStats, error)) (st []WorkerStats, ok bool, err error) {
	var lastRecv int64 = -1
	lastMove := time.Now()
	ok = poll(limit, 10*time.Millisecond, func() bool {
		if st, err = stats(); err != nil {
			return true
		}
		if sum(st, func(w *WorkerStats) int64 { return w.Recovered }) >= expected {
			return true
		}
		recv := sum(st, func(w *WorkerStats) int64 { return w.Received + w.Opened + w.Failed })
		if recv != lastRecv {
			lastRecv, lastMove = recv, time.Now()
		}
		allDone := true
		for i := range st {
			allDone = allDone && st[i].Done
		}
		return allDone && time.Since(lastMove) > 2*time.Second
	})
	return st, ok, err
}

func poll(limit, step time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(limit)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(step)
	}
}

// measureServer records server memory after the connections are open; it
// waits up to 5 s for the nodes to report them all.
func (r *runner) measureServer(open int64) {
	if len(r.o.APIs) == 0 {
		r.rep.Notes = append(r.rep.Notes, "no --api given: server memory not measured")
		return
	}
	var s ServerSample
	poll(5*time.Second, 100*time.Millisecond, func() bool {
		s = scrape(r.ctx, r.o.APIs)
		return s.Nodes == len(r.o.APIs) && s.Connections >= float64(open)
	})
	sv := &r.rep.Server
	sv.AfterOpen = s
	sv.Available = s.Nodes > 0 && sv.Before.Nodes > 0
	if sv.Available && open > 0 {
		sv.RSSPerConnBytes = (s.RSSBytes - sv.Before.RSSBytes) / float64(open)
		sv.HeapPerConnBytes = (s.HeapBytes - sv.Before.HeapBytes) / float64(open)
		sv.CPUPerConnUs = (s.CPUSeconds - sv.Before.CPUSeconds) * 1e6 / float64(open)
	}
}

// fillConnect merges the workers' full statistics into the report.
func (r *runner) fillConnect(st []WorkerStats) {
	c := &r.rep.Connect
	c.Requested = int64(r.o.Conns)
	c.Attempted = sum(st, func(w *WorkerStats) int64 { return w.Attempted })
	c.Opened = sum(st, func(w *WorkerStats) int64 { return w.Opened })
	c.Failed = sum(st, func(w *WorkerStats) int64 { return w.Failed })
	c.Dropped = sum(st, func(w *WorkerStats) int64 { return w.Dropped })
	c.OpenAtEnd = sum(st, func(w *WorkerStats) int64 { return w.Open })
	c.Failures, c.Drops = map[string]int64{}, map[string]int64{}
	var hs, tcp Histogram
	for i := range st {
		for k, v := range st[i].Failures {
			c.Failures[k] += v
		}
		for k, v := range st[i].Drops {
			c.Drops[k] += v
		}
		hs.Merge(st[i].Handshake)
		tcp.Merge(st[i].TCP)
	}
	c.Handshake, c.TCPConnect = hs.Summary(), tcp.Summary()
	r.rep.Hists["handshake"] = hs.Bins()
	for reason, n := range c.Failures {
		// A stray failure is reported by reason but only a pattern (1% of
		// the connections, or 1,000) is called a limit in the way.
		if l := limitFor(reason); l != "" && (n*100 >= c.Requested || n >= 1000) {
			r.limit(l)
		}
	}
}

// finish closes the workers, fills in client overhead and limits, and
// writes the reports.
func (r *runner) finish(lastFull []WorkerStats) error {
	r.stopSampling()
	r.setPhase("close")
	final, err := r.p.close()
	if err != nil {
		r.note(fmt.Sprintf("closing workers: %v", err))
	}
	selfCPU, selfRSS := selfUsage()
	cl := &r.rep.Client
	cl.InProcess = r.p.inProcess
	cl.CoordinatorCPUS = float64(selfCPU) / 1e9
	cl.CoordinatorRSSBytes = selfRSS
	if !r.p.inProcess {
		cl.WorkersCPUS = float64(sum(final, func(w *WorkerStats) int64 { return w.CPUNs })) / 1e9
		cl.WorkersRSSBytes = sum(lastFull, func(w *WorkerStats) int64 { return w.RSSBytes })
	}
	cl.CPUS = cl.CoordinatorCPUS + cl.WorkersCPUS
	if len(r.rep.Limits) > 0 {
		r.rep.Advice = limitAdvice()
	}
	r.rep.ElapsedS = time.Since(r.t0).Seconds()
	sort.Strings(r.rep.Limits)
	return r.writeReports()
}

func (r *runner) writeReports() error {
	var errs []error
	if r.o.JSONPath != "" {
		if err := writeJSON(r.o.JSONPath, r.rep); err != nil {
			errs = append(errs, err)
		}
	}
	if r.o.HTMLPath != "" {
		if err := writeHTML(r.o.HTMLPath, r.rep); err != nil {
			errs = append(errs, err)
		}
	}
	printSummary(r.stdout, r.rep)
	if r.rep.Advice != "" {
		fmt.Fprintf(r.stdout, "\nA limit was in the way: %s\n%s", strings.Join(r.rep.Limits, "; "), r.rep.Advice)
	}
	return errors.Join(errs...)
}
