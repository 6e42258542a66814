package bench

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// ReconnectResult is the reconnect scenario: every v2 client drops at once
// (as if its node had been killed), each user gets --messages pushes while
// away, and every client reconnects at once with ?since=.
type ReconnectResult struct {
	Clients      int `json:"clients"` // connected before the drop: the ones that come back
	Users        int `json:"users"`
	ConnsPerUser int `json:"conns_per_user"`
	Messages     int `json:"messages"` // pushed to each user while away

	// Before the drop: one push per user so that positions come from pushes.
	WarmupPushes   int64 `json:"warmup_pushes"`
	WarmupReceived int64 `json:"warmup_received"`

	Killed int64   `json:"killed"` // connections closed abruptly (RST)
	DropS  float64 `json:"drop_s"` // time to close them all
	// ServerSawDropS is how long the nodes took, from the start of the drop, to
	// count the dropped connections gone (longlink_connections back to where it
	// was before the run, polled every 20 ms); negative when they had not within 10 s.
	ServerSawDropS float64 `json:"server_saw_drop_s"`

	// The pushes while away (POST /v1/push/batch).
	Pushed     int64            `json:"pushed"` // accepted
	Stored     int64            `json:"stored"` // sum of the answers' "stored"
	PushErrors map[string]int64 `json:"push_errors"`
	PushS      float64          `json:"push_s"` // time to send them all

	// The reconnect. Times are from its start (one instant for all workers).
	Reconnected      int64            `json:"reconnected"` // welcome received
	Failed           int64            `json:"failed"`      // reconnect attempts that failed
	Failures         map[string]int64 `json:"failures"`
	NoWelcome        int64            `json:"no_welcome"`
	Handshake        LatencySummary   `json:"handshake"`          // connect() to welcome
	Recovered        int64            `json:"recovered"`          // clients that received all their missed pushes
	NotRecoveredFlag int64            `json:"not_recovered_flag"` // welcomes with "recovered":false
	Missing          int64            `json:"missing"`            // missed pushes never received
	Duplicates       int64            `json:"duplicates"`         // pushes received twice (same stream offset)
	Gaps             int64            `json:"gaps"`               // offsets skipped within a stream
	EpochChanges     int64            `json:"epoch_changes"`
	Recovery         LatencySummary   `json:"recovery"`        // per client: start to its last missed push
	AllRecoveredS    float64          `json:"all_recovered_s"` // start to the last client's last missed push
	TimedOut         bool             `json:"timed_out"`
	DeadlineS        float64          `json:"deadline_s"`

	// The nodes' own counts during the reconnect (from /metrics).
	ServerRecoveredMessages float64 `json:"server_recovered_messages"`
	ServerNotRecovered      float64 `json:"server_not_recovered"`
	ServerCPUS              float64 `json:"server_cpu_s"`
}

// reconnectInflight bounds each worker's handshakes in progress during the
// reconnect: "at once" up to what the kernel's SYN and accept queues (2,048
// and 4,096 here) take without dropping SYNs, whose retransmission would add
// a second to the figures measured.
const reconnectInflight = 1024

// reconnect runs the storm. It returns an error (after filling the report)
// when not every client recovered everything exactly once in time.
func (r *runner) reconnect() error {
	o := r.o
	res := &ReconnectResult{Clients: o.Conns, Users: o.Users, ConnsPerUser: o.ConnsPerUser, Messages: o.Messages,
		PushErrors: map[string]int64{}, DeadlineS: o.RoundTimeout.Seconds()}
	r.rep.Reconnect = res

	// 1. One push per user, live, so every client's position has moved past
	// its welcome's.
	r.setPhase("warmup")
	st, err := r.p.stats(false, false)
	if err != nil {
		return fmt.Errorf("reconnect: %w", err)
	}
	base := sum(st, func(w *WorkerStats) int64 { return w.Received })
	// Every open connection gets its user's one push.
	open := sum(st, func(w *WorkerStats) int64 { return w.Open })
	acc, _, errs := r.pushToUsers(1, 0)
	res.WarmupPushes = acc
	for k, v := range errs {
		res.PushErrors["warmup_"+k] += v
	}
	poll(o.RoundTimeout, 10*time.Millisecond, func() bool {
		st, err = r.p.stats(false, false)
		return err != nil || sum(st, func(w *WorkerStats) int64 { return w.Received })-base >= open
	})
	res.WarmupReceived = sum(st, func(w *WorkerStats) int64 { return w.Received }) - base
	if res.WarmupReceived < open {
		r.note(fmt.Sprintf("warm-up: %s of %s live pushes received within %v", commas(res.WarmupReceived),
			commas(open), o.RoundTimeout))
	}

	// 2. Every client drops at once.
	r.setPhase("drop")
	before := r.rep.Server.Before.Connections
	tDrop := time.Now()
	st, err = r.p.each(func(int) workerCmd { return workerCmd{Op: "drop"} })
	if err != nil {
		return fmt.Errorf("reconnect: dropping the connections: %w", err)
	}
	res.DropS = time.Since(tDrop).Seconds()
	r.sample(st, time.Now()) // the timeline shows the drop even in a short run
	res.Killed = sum(st, func(w *WorkerStats) int64 { return w.Killed })
	r.logf("dropped %s connections (RST)", commas(res.Killed))
	if o.KillPID > 0 {
		// Their node dies too: what it owned must fail over before the pushes below
		// are stored, and the clients come back elsewhere (--reconnect-target).
		if err := syscall.Kill(o.KillPID, syscall.SIGKILL); err != nil {
			return fmt.Errorf("reconnect: kill -9 %d: %w", o.KillPID, err)
		}
		r.logf("killed node process %d (SIGKILL)", o.KillPID)
	}
	res.ServerSawDropS = -1
	if poll(10*time.Second, 20*time.Millisecond, func() bool {
		s := scrape(r.ctx, o.APIs)
		return s.Nodes == len(o.APIs) && s.Connections <= before
	}) {
		res.ServerSawDropS = time.Since(tDrop).Seconds()
	} else {
		r.note("the nodes still counted some dropped connections after 10 s")
	}

	// 3. The pushes they miss.
	r.setPhase("away")
	t0 := time.Now()
	acc, stored, errs := r.pushToUsers(o.Messages, 1)
	res.PushS = time.Since(t0).Seconds()
	res.Pushed, res.Stored = acc, stored
	for k, v := range errs {
		res.PushErrors[k] += v
	}
	r.logf("pushed %s messages (%d per user) in %.2fs, %s stored", commas(acc), o.Messages, res.PushS, commas(stored))

	// 4. Everyone back at once.
	r.setPhase("reconnect")
	srv0 := scrape(r.ctx, o.APIs)
	m0, _ := scrapeStreams(r.ctx, o.APIs)
	start := time.Now()
	// Fresh source ports: the first phase's are past its last index.
	portBase := (rand.IntN(portSpan) + o.Conns) % portSpan
	st, err = r.p.each(func(int) workerCmd {
		return workerCmd{Op: "reopen", Reopen: &ReopenSpec{PortBase: portBase, StartNs: start.UnixNano(),
			Expect: o.Messages, MaxInflight: reconnectInflight, Targets: o.ReconnectTargets}}
	})
	if err != nil {
		return fmt.Errorf("reconnect: %w", err)
	}
	// The clients coming back are those that had a welcome before the drop.
	expected := sum(st, func(w *WorkerStats) int64 { return w.Resuming })
	res.Clients = int(expected)
	if expected < int64(o.Conns) {
		r.note(fmt.Sprintf("reconnect: %s of %s clients had connected before the drop; only they come back",
			commas(expected), commas(int64(o.Conns))))
	}
	st, ok, err := waitRecovered(o.RoundTimeout, expected, func() ([]WorkerStats, error) { return r.p.stats(false, false) })
	wall := time.Since(start)
	if err != nil {
		return fmt.Errorf("reconnect: %w", err)
	}
	full, err := r.p.stats(true, false)
	if err != nil {
		return fmt.Errorf("reconnect: %w", err)
	}
	r.sample(full, time.Now())
	srv1 := scrape(r.ctx, o.APIs)
	m1, _ := scrapeStreams(r.ctx, o.APIs)
	res.ServerCPUS = srv1.CPUSeconds - srv0.CPUSeconds
	res.ServerRecoveredMessages = m1[metricRecoveredMessages] - m0[metricRecoveredMessages]
	res.ServerNotRecovered = m1[metricNotRecovered] - m0[metricNotRecovered]

	rec, hs := res.fromWorkers(full, expected, ok)
	r.rep.Hists["recovery"] = rec.Bins()
	r.rep.Hists["reconnect_handshake"] = hs.Bins()
	r.logf("reconnect: %s/%s recovered all %d missed pushes; p50 %.1f ms p99 %.1f ms, last %.1f ms; recovered:false %s, missing %s, duplicates %s",
		commas(res.Recovered), commas(expected), o.Messages, res.Recovery.P50Ms, res.Recovery.P99Ms, res.Recovery.MaxMs,
		commas(res.NotRecoveredFlag), commas(res.Missing), commas(res.Duplicates))

	var problems []string
	if n := sum64(res.PushErrors); n > 0 {
		problems = append(problems, fmt.Sprintf("%s pushes refused (%s)", commas(n), reasons(res.PushErrors)))
	}
	if res.Recovered < expected {
		why := "gave up waiting: nothing arrived for 2 s"
		if !ok {
			why = fmt.Sprintf("deadline --round-timeout %v passed", o.RoundTimeout)
		}
		problems = append(problems, fmt.Sprintf("only %s of %s clients recovered all %d missed pushes after %.1fs (%s)",
			commas(res.Recovered), commas(expected), o.Messages, wall.Seconds(), why))
	}
	if res.Failed > 0 {
		problems = append(problems, fmt.Sprintf("%s reconnects failed (%s)", commas(res.Failed), reasons(res.Failures)))
	}
	if res.NotRecoveredFlag > 0 {
		problems = append(problems, fmt.Sprintf("%s welcomes said recovered:false", commas(res.NotRecoveredFlag)))
	}
	if res.Missing > 0 || res.Duplicates > 0 || res.Gaps > 0 {
		problems = append(problems, fmt.Sprintf("%s missed pushes never arrived, %s arrived twice, %s offsets skipped",
			commas(res.Missing), commas(res.Duplicates), commas(res.Gaps)))
	}
	if len(problems) > 0 {
		for _, p := range problems {
			r.note("reconnect: " + p)
		}
		return fmt.Errorf("reconnect: %s", problems[0])
	}
	return nil
}

func sum64(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

// pushToUsers sends rounds pushes to every user through POST /v1/push/batch
// (1000 per request, round by round so each user's pushes go out in order),
// from --callers concurrent requests over the --api nodes. It returns the
// pushes accepted, the sum of their "stored", and failures by reason.
func (r *runner) pushToUsers(rounds, seqBase int) (accepted, stored int64, errs map[string]int64) {
	return r.pushToUserList(nil, r.o.APIs, rounds, seqBase)
}

// pushToUserList is pushToUsers for the users numbered in users (nil: every
// user, 0..Users-1), through apis.
func (r *runner) pushToUserList(users []int, apis []string, rounds, seqBase int) (accepted, stored int64, errs map[string]int64) {
	o := r.o
	errs = map[string]int64{}
	nUsers := o.Users
	if users != nil {
		nUsers = len(users)
	}
	total := rounds * nUsers
	if total == 0 {
		return 0, 0, errs
	}
	const perBatch = 1000 // the API's MaxBatch
	type job struct{ first, n int }
	jobs := make(chan job)
	go func() {
		defer close(jobs)
		for i := 0; i < total; i += perBatch {
			select {
			case jobs <- job{i, min(perBatch, total-i)}:
			case <-r.ctx.Done():
				return
			}
		}
	}()
	var mu sync.Mutex
	var wg sync.WaitGroup
	callers := min(o.Callers, (total+perBatch-1)/perBatch)
	for c := 0; c < callers; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conns := make([]*apiConn, len(apis))
			for k, a := range apis {
				conns[k] = newAPIConn(a, o.APIKey)
				defer conns[k].close()
			}
			var body []byte
			for j := range jobs {
				body = append(body[:0], `{"messages":[`...)
				for k := j.first; k < j.first+j.n; k++ {
					if k > j.first {
						body = append(body, ',')
					}
					round, user := k/nUsers, k%nUsers
					if users != nil {
						user = users[user]
					}
					body = appendBody(body, user, time.Now().UnixNano(), uint64(seqBase+round), o.Size, bodyTail(true, false, 0))
				}
				body = append(body, "]}"...)
				ac := conns[(j.first/perBatch)%len(conns)]
				status, resp, reason := ac.post(r.ctx, "/v1/push/batch", body)
				var a, s int64
				var e map[string]int64
				switch {
				case reason != "":
					e = map[string]int64{reason: int64(j.n)}
				case status != 200:
					e = map[string]int64{"http_" + strconv.Itoa(status): int64(j.n)}
				default:
					a, s, e = batchResults(resp, j.n)
				}
				mu.Lock()
				accepted += a
				stored += s
				for k, v := range e {
					errs[k] += v
				}
				mu.Unlock()
				r.pushes.Add(a)
			}
		}()
	}
	wg.Wait()
	return accepted, stored, errs
}

// batchResults reads {"results":[{"id":…,"stored":N,…},{"error":…,"status":N},…]}
// without decoding it into values: each result is an object without nested
// objects (offline_users is an array of strings).
func batchResults(b []byte, n int) (accepted, stored int64, errs map[string]int64) {
	errs = map[string]int64{}
	i := bytes.Index(b, []byte(`"results":[`))
	if i < 0 {
		errs["bad_answer"] = int64(n)
		return
	}
	b = b[i:]
	seen := 0
	for {
		j := bytes.IndexByte(b, '{')
		if j < 0 {
			break
		}
		k := bytes.IndexByte(b[j:], '}')
		if k < 0 {
			break
		}
		obj := b[j : j+k+1]
		b = b[j+k+1:]
		seen++
		if st, ok := jsonInt(obj, `"status":`); ok && bytes.Contains(obj, []byte(`"error":`)) {
			errs["http_"+strconv.FormatInt(st, 10)]++
			continue
		}
		accepted++
		if s, ok := jsonInt(obj, `"stored":`); ok {
			stored += s
		}
	}
	if seen < n {
		errs["bad_answer"] += int64(n - seen)
	}
	return
}

const (
	metricRecoveredMessages = "longlink_stream_recovered_messages_total"
	metricNotRecovered      = `longlink_stream_recoveries_total{result="not_recovered"}`
)

// scrapeStreams sums the nodes' stream recovery counters.
func scrapeStreams(ctx context.Context, apis []string) (map[string]float64, error) {
	out := map[string]float64{}
	var firstErr error
	for _, a := range apis {
		m, err := scrapeOne(ctx, a)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		for _, k := range []string{metricRecoveredMessages, metricNotRecovered} {
			out[k] += m[k]
		}
	}
	return out, firstErr
}

// fromWorkers fills res from the workers' final stats of a reconnect phase (expected
// resuming clients; ok false when the wait for them timed out) and returns the merged
// recovery and handshake histograms.
func (res *ReconnectResult) fromWorkers(full []WorkerStats, expected int64, ok bool) (rec, hs Histogram) {
	res.Failures = map[string]int64{}
	for i := range full {
		f := &full[i]
		rec.Merge(f.Recovery)
		hs.Merge(f.Handshake)
		for k, v := range f.Failures {
			res.Failures[k] += v
		}
	}
	res.Reconnected = sum(full, func(w *WorkerStats) int64 { return w.Opened })
	res.Failed = sum(full, func(w *WorkerStats) int64 { return w.Failed })
	res.NoWelcome = sum(full, func(w *WorkerStats) int64 { return w.NoWelcome })
	res.Recovered = sum(full, func(w *WorkerStats) int64 { return w.Recovered })
	res.NotRecoveredFlag = sum(full, func(w *WorkerStats) int64 { return w.NotRecovered })
	res.Missing = sum(full, func(w *WorkerStats) int64 { return w.Missing })
	res.Duplicates = sum(full, func(w *WorkerStats) int64 { return w.V2Dups })
	res.Gaps = sum(full, func(w *WorkerStats) int64 { return w.V2Gaps })
	res.EpochChanges = sum(full, func(w *WorkerStats) int64 { return w.EpochChanges })
	res.Handshake, res.Recovery, res.TimedOut = hs.Summary(), rec.Summary(), !ok
	if res.Recovered >= expected {
		res.AllRecoveredS = rec.Max().Seconds()
	}
	return rec, hs
}
