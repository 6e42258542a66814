package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Main runs `longlink bench ...`; args exclude "bench". It returns the exit
// code: 0 on success, 1 when the run failed, 2 on a usage error.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "backend" {
		return backendMain(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "cluster" {
		return clusterMain(args[1:], stdout, stderr)
	}
	if len(args) > 0 && args[0] == "worker" {
		if err := RunWorker(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintf(stderr, "bench worker: %v\n", err)
			return 1
		}
		return 0
	}
	o, err := parseOptions(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "longlink bench: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := Run(ctx, o, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "longlink bench: %v\n", err)
		return 1
	}
	return 0
}

// Run executes one scenario. Cancelling ctx ends the hold or push phase
// early; the report is still written.
func Run(ctx context.Context, o Options, stdout, stderr io.Writer) error {
	if _, err := raiseNoFile(); err != nil {
		fmt.Fprintf(stderr, "warning: %v\n", err)
	}
	if o.Scenario == "upstream" {
		return runUpstream(ctx, o, stdout, stderr)
	}
	if o.Scenario == "pusher" {
		return runPusher(ctx, o, stdout, stderr)
	}
	if len(o.FloorTargets) > 0 {
		return runWithFloor(ctx, o, stdout, stderr)
	}
	_, err := run(ctx, o, stdout, stderr)
	return err
}

// runWithFloor runs the scenario against the gateway, then the same scenario with the
// same clients and callers against the floor server (--floor-target, --floor-api:
// bench/floor -role push), and reports both, with the ratios gateway / floor, in one
// report (its "floor" field, and the text summary's last block).
func runWithFloor(ctx context.Context, o Options, stdout, stderr io.Writer) error {
	gw := o
	gw.JSONPath, gw.HTMLPath = "", ""
	fmt.Fprintln(stdout, "== gateway")
	rep, err := run(ctx, gw, stdout, stderr)
	if err != nil {
		return err
	}
	fl := gw
	fl.Targets, fl.APIs = o.FloorTargets, o.FloorAPIs
	fmt.Fprintln(stdout, "\n== floor (bench/floor -role push: the upgrade parsed, one write(2) of a frame encoded once per recipient, from the API request's goroutine)")
	frep, err := run(ctx, fl, stdout, stderr)
	if err != nil {
		return fmt.Errorf("floor: %w", err)
	}
	rep.Floor = frep
	fmt.Fprintln(stdout)
	printFloorRatios(stdout, rep)
	var errs []error
	if o.JSONPath != "" {
		errs = append(errs, writeJSON(o.JSONPath, rep))
	}
	if o.HTMLPath != "" {
		errs = append(errs, writeHTML(o.HTMLPath, rep))
	}
	return errors.Join(errs...)
}

// run is one scenario against o.Targets; it writes the reports o names and returns
// the report.
func run(ctx context.Context, o Options, stdout, stderr io.Writer) (*Report, error) {
	// Worker processes' stderr is copied by exec's goroutines while this
	// goroutine also writes: serialise them for writers that are not files.
	if _, ok := stderr.(*os.File); !ok {
		stderr = &syncWriter{w: stderr}
	}
	r := &runner{o: o, stdout: stdout, stderr: stderr, tty: isTerminal(stdout), t0: time.Now(), ctx: ctx}
	env := collectEnv()
	if o.BatchWait > 0 {
		env.ClockSource += fmt.Sprintf("; receipt may be stamped up to %v late (--batch-wait)", o.BatchWait)
	}
	r.rep = &Report{Tool: "longlink bench", Scenario: o.Scenario, StartedAt: r.t0.UTC(), Options: o,
		Env: env, Hists: map[string][]HistBin{}, Limits: []string{}, Notes: []string{}}
	w, err := r.planWorkers()
	if err != nil {
		return nil, err
	}
	r.rep.Workers = w
	fmt.Fprintf(stdout, "longlink bench %s: %s %s connections to %v from %d source address(es), %d worker(s)\n",
		o.Scenario, commas(int64(o.Conns)), o.Protocol, o.Targets, max(1, len(o.SourceIPs)), w)
	if len(o.APIs) > 0 {
		r.rep.Server.Before = scrape(ctx, o.APIs)
		for _, e := range r.rep.Server.Before.Errors {
			r.note("before: " + e)
		}
	}
	r.p, err = startPool(w, o.InProcess, stderr)
	if err != nil {
		return nil, err
	}
	r.startSampler()
	cpuStart, tStart := readCPUTimes(), time.Now()
	if err := r.openAll(); err != nil {
		r.stopSampling()
		r.p.kill()
		return nil, err
	}
	st, err := r.p.stats(true, true)
	if err != nil {
		r.stopSampling()
		r.p.kill()
		return nil, err
	}
	r.fillConnect(st)
	r.progress(st, time.Now(), true)
	r.measureServer(r.rep.Connect.OpenAtEnd)
	if r.rep.Connect.Opened == 0 {
		r.note("no connection could be opened")
	}

	var runErr error
	switch o.Scenario {
	case "connect":
		r.hold(o.Duration)
	case "broadcast":
		if r.rep.Connect.OpenAtEnd > 0 {
			r.broadcast()
		}
		r.hold(o.Duration)
	case "push":
		if r.rep.Connect.OpenAtEnd > 0 {
			r.push()
		}
	case "reconnect":
		if r.rep.Connect.OpenAtEnd > 0 {
			runErr = r.reconnect()
		} else {
			runErr = errors.New("reconnect: no connection could be opened")
		}
	}
	r.rep.HostCPU = hostCPU(cpuStart, readCPUTimes(), time.Since(tStart))
	last, err := r.p.stats(true, false)
	if err != nil {
		r.note(fmt.Sprintf("final statistics: %v", err))
	} else if o.Scenario != "reconnect" {
		// (reconnect's workers count the reconnect phase by now; the
		// connect figures are the first phase's, filled in above.)
		r.fillConnect(last)
		if o.Protocol == "v2" {
			r.rep.V2 = &V2Checks{
				Duplicates:   sum(last, func(w *WorkerStats) int64 { return w.V2Dups }),
				Gaps:         sum(last, func(w *WorkerStats) int64 { return w.V2Gaps }),
				EpochChanges: sum(last, func(w *WorkerStats) int64 { return w.EpochChanges }),
				NoPosition:   sum(last, func(w *WorkerStats) int64 { return w.V2NoPos }),
				Other:        sum(last, func(w *WorkerStats) int64 { return w.V2Other }),
			}
		}
	}
	if len(o.APIs) > 0 {
		r.rep.Server.End = scrape(ctx, o.APIs)
	}
	if err := r.finish(last); err != nil {
		return r.rep, errors.Join(err, runErr)
	}
	return r.rep, runErr
}

// hold keeps the connections open for d, or until ctx is cancelled.
func (r *runner) hold(d time.Duration) {
	if d <= 0 {
		return
	}
	r.setPhase("hold")
	select {
	case <-time.After(d):
	case <-r.ctx.Done():
		r.note("interrupted during hold")
	}
}

func workerCPU(st []WorkerStats) int64 { return sum(st, func(w *WorkerStats) int64 { return w.CPUNs }) }

// clientCPU is the CPU the receiving side used: the workers' own, or the
// whole process when workers run in-process.
func (r *runner) clientCPU(st []WorkerStats) int64 {
	if r.p.inProcess {
		c, _ := selfUsage()
		return c
	}
	return workerCPU(st)
}

// appendBody builds {"to":{...},"data":"<stamp>:<seq>[pad]<tail>; user < 0
// means all. tail closes the data string and the object and carries the push's
// options (bodyTail).
func appendBody(b []byte, user int, stamp int64, seq uint64, size int, tail string) []byte {
	return appendBodyTo(b, "", user, stamp, seq, size, tail)
}

// appendBodyTo is appendBody to room when it is not "" (push --room).
func appendBodyTo(b []byte, room string, user int, stamp int64, seq uint64, size int, tail string) []byte {
	if room != "" {
		b = append(b, `{"to":{"rooms":[`...)
		b = strconv.AppendQuote(b, room)
		b = append(b, `]},"data":"`...)
	} else if user < 0 {
		b = append(b, `{"to":{"all":true},"data":"`...)
	} else {
		b = append(b, `{"to":{"users":["bench-`...)
		b = strconv.AppendInt(b, int64(user), 10)
		b = append(b, `"]},"data":"`...)
	}
	start := len(b)
	b = appendPayload(b, stamp, seq)
	for len(b)-start < size {
		b = append(b, 'x')
	}
	return append(b, tail...)
}

// bodyTail is the end of every push body for o: "history":false without
// history, "ack":true with --ack, "wait":"<d>" with --wait.
func bodyTail(history, ack bool, wait time.Duration) string {
	t := `"`
	if !history {
		t += `,"history":false`
	}
	if ack {
		t += `,"ack":true`
	}
	if wait > 0 {
		t += `,"wait":"` + wait.String() + `"`
	}
	return t + "}"
}

// broadcast pushes one message to everyone per round and waits until every
// open connection has it (or the round times out).
func (r *runner) broadcast() {
	res := &BroadcastResult{}
	r.rep.Broadcast = res
	conns := make([]*apiConn, len(r.o.APIs))
	for i, a := range r.o.APIs {
		conns[i] = newAPIConn(a, r.o.APIKey)
		defer conns[i].close()
	}
	var all Histogram
	var body []byte
	for round := 1; round <= r.o.Rounds && r.ctx.Err() == nil; round++ {
		r.setPhase(fmt.Sprintf("round %d", round))
		before, err := r.p.stats(true, true) // clears the latency histograms
		if err != nil {
			r.note(fmt.Sprintf("round %d: %v", round, err))
			return
		}
		base := sum(before, func(w *WorkerStats) int64 { return w.Received })
		expected := sum(before, func(w *WorkerStats) int64 { return w.Open })
		cpu0 := r.clientCPU(before)
		srv0 := scrape(r.ctx, r.o.APIs).CPUSeconds
		stamp := time.Now().UnixNano()
		body = appendBody(body[:0], -1, stamp, uint64(round), r.o.Size, bodyTail(r.o.History, false, 0))
		ac := conns[(round-1)%len(conns)]
		api := ac.addr
		delivered, reason := ac.push(r.ctx, body)
		br := BroadcastRound{Round: round, Expected: expected, Delivered: delivered, API: api}
		if reason != "" {
			br.Error = reason
			res.Rounds = append(res.Rounds, br)
			if ac.lastErr != nil {
				reason += ": " + ac.lastErr.Error()
			}
			r.note(fmt.Sprintf("round %d: push to %s failed: %s", round, api, reason))
			continue
		}
		var st []WorkerStats
		ok := poll(r.o.RoundTimeout, 10*time.Millisecond, func() bool {
			st, err = r.p.stats(false, false)
			return err != nil || sum(st, func(w *WorkerStats) int64 { return w.Received })-base >= expected
		})
		srv1 := scrape(r.ctx, r.o.APIs).CPUSeconds
		full, err := r.p.stats(true, true)
		if err != nil {
			r.note(fmt.Sprintf("round %d: %v", round, err))
			return
		}
		var h Histogram
		for i := range full {
			h.Merge(full[i].Latency)
		}
		all.Merge(&h)
		br.Received = sum(full, func(w *WorkerStats) int64 { return w.Received }) - base
		br.TimedOut = !ok
		br.FirstMs, br.P50Ms, br.P99Ms, br.LastMs = ms(h.Min()), ms(h.Quantile(0.5)), ms(h.Quantile(0.99)), ms(h.Max())
		if h.Max() > 0 {
			br.RecipientsPerS = float64(br.Received) / h.Max().Seconds()
		}
		if br.Received > 0 {
			br.ClientCPUPerMsgUs = float64(r.clientCPU(full)-cpu0) / 1e3 / float64(br.Received)
			br.ServerCPUPerRecipientUs = (srv1 - srv0) * 1e6 / float64(br.Received)
		}
		res.Rounds = append(res.Rounds, br)
		r.logf("round %d: %s/%s received, first %.1f ms, p50 %.1f ms, p99 %.1f ms, last %.1f ms, %s recipients/s",
			round, commas(br.Received), commas(expected), br.FirstMs, br.P50Ms, br.P99Ms, br.LastMs, commas(int64(br.RecipientsPerS)))
		// Let the loops settle so rounds do not overlap.
		time.Sleep(200 * time.Millisecond)
	}
	res.Latency = all.Summary()
	r.rep.Hists["delivery"] = all.Bins()
}

// push runs the iQIYI scenario: callers push to random users for the
// duration, closed loop, or open loop at --push-rate.
func (r *runner) push() {
	o := r.o
	res := &PushResult{Mode: "closed", Users: o.Users, ConnsPerUser: o.ConnsPerUser, Callers: o.Callers,
		PushRate: o.PushRate, Errors: map[string]int64{}, Ack: o.Ack, WaitS: o.Wait.Seconds()}
	if o.PushRate > 0 {
		res.Mode = "open"
	}
	r.rep.Push = res
	r.setPhase("push")
	before, err := r.p.stats(true, true)
	if err != nil {
		r.note(fmt.Sprintf("push: %v", err))
		return
	}
	base := sum(before, func(w *WorkerStats) int64 { return w.Received })
	acks0 := sum(before, func(w *WorkerStats) int64 { return w.AcksSent })
	cpu0 := r.clientCPU(before)
	coord0, _ := selfUsage()
	s0 := scrape(r.ctx, o.APIs)
	srv0 := s0.CPUSeconds
	ctx, cancel := context.WithTimeout(r.ctx, o.Duration)
	defer cancel()

	// Open loop: the scheduler stamps each push with its scheduled time and
	// queues it; a push that finds the queue full is counted, not sent, so
	// a slow gateway shows as backlog instead of silently lowering the rate.
	sched, backlog := openLoop(ctx, o.PushRate)
	type callerResult struct {
		api        Histogram
		wait       Histogram // --wait: round trips answered complete
		pushes     int64
		deliv      int64
		complete   int64
		incomplete int64
		errs       map[string]int64
	}
	tail := bodyTail(o.History, o.Ack, o.Wait)
	results := make([]callerResult, o.Callers)
	var wg sync.WaitGroup
	t0 := time.Now()
	for i := 0; i < o.Callers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res := &results[i]
			res.errs = map[string]int64{}
			rng := rand.New(rand.NewPCG(uint64(t0.UnixNano()), uint64(i)))
			conns := make([]*apiConn, len(o.APIs))
			for k, a := range o.APIs {
				conns[k] = newAPIConn(a, o.APIKey)
				defer conns[k].close()
			}
			var body []byte
			seq := uint64(i) << 40
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
				seq++
				body = appendBodyTo(body[:0], o.Room, rng.IntN(o.Users), stamp, seq, o.Size, tail)
				ac := conns[rng.IntN(len(conns))]
				t := time.Now()
				// The request runs under the run's context, not the phase
				// deadline: a push already sent is allowed to finish so its
				// deliveries are counted on both sides.
				d, complete, reason := ac.pushWait(r.ctx, body)
				if reason == "cancelled" {
					return
				}
				rt := time.Since(t).Nanoseconds()
				res.api.Record(rt)
				if reason != "" {
					res.errs[reason]++
					continue
				}
				if o.Wait > 0 {
					if complete {
						res.complete++
						res.wait.Record(rt)
					} else {
						res.incomplete++
					}
				}
				res.pushes++
				res.deliv += d
				r.pushes.Add(1)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(t0)
	res.ServerCPUS = scrape(r.ctx, o.APIs).CPUSeconds - srv0
	var apiH, waitH Histogram
	for i := range results {
		apiH.Merge(&results[i].api)
		waitH.Merge(&results[i].wait)
		res.Complete += results[i].complete
		res.Incomplete += results[i].incomplete
		res.Pushes += results[i].pushes
		res.ExpectedDeliveries += results[i].deliv
		for k, v := range results[i].errs {
			res.Errors[k] += v
		}
	}
	res.APIDelivered = res.ExpectedDeliveries
	// In a cluster the API's "delivered" counts only the answering node's
	// connections, so the expectation comes from what bench itself holds:
	// every user has ConnsPerUser connections when all are open.
	if c := r.rep.Connect; c.Failed == 0 && c.Dropped == 0 && c.OpenAtEnd == int64(o.Conns) {
		res.ExpectedDeliveries = res.Pushes * int64(o.ConnsPerUser)
		if o.Room != "" {
			res.ExpectedDeliveries = res.Pushes * int64(o.Conns) // every connection is in the room
		}
	} else {
		r.note("some connections are not open: expected deliveries are the API's node-local \"delivered\" sum")
	}
	res.BacklogSkipped = backlog.Load()
	coord1, _ := selfUsage()

	// Wait for deliveries still in flight.
	r.setPhase("drain")
	var st []WorkerStats
	poll(o.RoundTimeout, 20*time.Millisecond, func() bool {
		st, err = r.p.stats(false, false)
		return err != nil || sum(st, func(w *WorkerStats) int64 { return w.Received })-base >= res.ExpectedDeliveries
	})
	full, err := r.p.stats(true, true)
	if err != nil {
		r.note(fmt.Sprintf("push: %v", err))
		return
	}
	if o.Ack {
		res.AcksSent = sum(full, func(w *WorkerStats) int64 { return w.AcksSent }) - acks0
		res.AckWriteFails = sum(full, func(w *WorkerStats) int64 { return w.AckFails })
		res.ServerAcks = r.settledAcks() - s0.Acks
	}
	var lat Histogram
	for i := range full {
		lat.Merge(full[i].Latency)
	}
	res.DurationS = elapsed.Seconds()
	res.Received = sum(full, func(w *WorkerStats) int64 { return w.Received }) - base
	res.Missing = max(0, res.ExpectedDeliveries-res.Received)
	res.PushesPerS = float64(res.Pushes) / res.DurationS
	if res.Pushes > 0 {
		res.ServerCPUPerPushUs = res.ServerCPUS * 1e6 / float64(res.Pushes)
	}
	res.DeliveriesPerS = float64(res.Received) / res.DurationS
	res.Latency = lat.Summary()
	res.APILatency = apiH.Summary()
	if res.Received > 0 {
		res.ClientCPUPerMsgUs = float64(r.clientCPU(full)-cpu0) / 1e3 / float64(res.Received)
	}
	if res.Pushes > 0 {
		res.CallerCPUPerPushUs = float64(coord1-coord0) / 1e3 / float64(res.Pushes)
	}
	r.rep.Hists["delivery"] = lat.Bins()
	r.rep.Hists["api"] = apiH.Bins()
	if o.Wait > 0 {
		w := waitH.Summary()
		res.WaitRoundTrip = &w
		r.rep.Hists["wait"] = waitH.Bins()
	}
	r.logf("push: %s pushes (%s/s), %s deliveries (%s/s), e2e p50 %.1f ms p99 %.1f ms max %.1f ms",
		commas(res.Pushes), commas(int64(res.PushesPerS)), commas(res.Received), commas(int64(res.DeliveriesPerS)),
		res.Latency.P50Ms, res.Latency.P99Ms, res.Latency.MaxMs)
}

// settledAcks is the nodes' longlink_acks_total once it stops moving: acks
// written by the last deliveries wait up to 5 ms to be coalesced on the
// client's node, then travel to the stream's owner, which counts them. It
// waits at most 2 s for two equal scrapes 100 ms apart.
func (r *runner) settledAcks() float64 {
	last := scrape(r.ctx, r.o.APIs).Acks
	poll(2*time.Second, 100*time.Millisecond, func() bool {
		now := scrape(r.ctx, r.o.APIs).Acks
		same := now == last
		last = now
		return same
	})
	return last
}

// schedule emits scheduled push times at rate per second until ctx ends.
// It wakes every millisecond and emits everything due, so the rate holds
// even when the timer is late.
// openLoop starts schedule at rate (pushes a second) until ctx ends, returning its
// queue and its count of skipped slots; a nil queue (rate 0) means closed loop.
func openLoop(ctx context.Context, rate float64) (chan int64, *atomic.Int64) {
	backlog := &atomic.Int64{}
	if rate <= 0 {
		return nil, backlog
	}
	sched := make(chan int64, max(1024, int(rate)))
	go schedule(ctx, rate, sched, backlog)
	return sched, backlog
}

func schedule(ctx context.Context, rate float64, out chan<- int64, skipped *atomic.Int64) {
	start := time.Now()
	interval := float64(time.Second) / rate
	var k int64
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			due := int64(float64(now.Sub(start)) / interval)
			for ; k <= due; k++ {
				at := start.UnixNano() + int64(float64(k)*interval)
				select {
				case out <- at:
				default:
					skipped.Add(1)
				}
			}
		}
	}
}

// syncWriter serialises writes to w.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
