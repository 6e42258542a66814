package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// The upstream scenario's floor: what a service pays to reach the same back-end
// without the gateway. The same number of workers run the same closed loop (one
// request outstanding each) and POST the body the gateway would send, with its
// headers, straight to the bundled back-end over HTTP/1.1 keep-alive with a
// net/http client set up like the gateway's (one Transport, a connection per
// worker, no compression, no proxy).
//
// The loop runs in a worker process (a "floor" request to `bench worker`), so
// its CPU is the HTTP client's alone: the coordinator's CPU over the same span
// is the bundled back-end's (and the coordinator's idle ticking), which the
// report also gives per request. With --in-process the loop is a goroutine and
// the CPU is the whole process's.

// FloorSpec is one floor phase, sent to a worker.
type FloorSpec struct {
	URL          string        `json:"url"`
	Business     string        `json:"business"`
	Conns        int           `json:"conns"`
	Size         int           `json:"size"`
	Duration     time.Duration `json:"duration_ns"`
	RoundTimeout time.Duration `json:"round_timeout_ns"`
}

// FloorStats is what a worker measured over a floor phase.
type FloorStats struct {
	Requests int64            `json:"requests"` // answers read
	OK       int64            `json:"ok"`       // answers with status 200
	Statuses map[string]int64 `json:"statuses"`
	Errors   map[string]int64 `json:"errors"`
	Latency  *Histogram       `json:"latency"`
	Elapsed  time.Duration    `json:"elapsed_ns"`
	CPUNs    int64            `json:"cpu_ns"` // this process's CPU over the phase
}

// UpstreamFloor is the floor phase in the report, next to the gateway's figures.
type UpstreamFloor struct {
	Order        string           `json:"order"` // "after" or "before" the gateway phase
	URL          string           `json:"url"`
	Conns        int              `json:"conns"`
	DurationS    float64          `json:"duration_s"`
	Requests     int64            `json:"requests"`
	OK           int64            `json:"ok"`
	Statuses     map[string]int64 `json:"statuses"`
	Errors       map[string]int64 `json:"errors"`
	RequestsPerS float64          `json:"requests_per_s"`
	Latency      LatencySummary   `json:"round_trip"`
	// ClientCPUPerRequestUs is the floor's client CPU per answer: the worker
	// process's (net/http client request and response), or with --in-process the
	// whole bench process's (client and back-end); CPUMeasured says which.
	ClientCPUPerRequestUs float64 `json:"client_cpu_per_request_us"`
	// BackendCPUPerRequestUs is the coordinator's CPU over the phase per answer:
	// the bundled back-end serving the floor's requests (0 with --in-process).
	BackendCPUPerRequestUs float64 `json:"backend_cpu_per_request_us"`
	CPUMeasured            string  `json:"cpu_measured"`
	// Ratios are the gateway phase's figures over the floor's.
	Ratios FloorRatios `json:"gateway_over_floor"`
}

// FloorRatios are gateway / floor: requests/s (below 1: the gateway is slower),
// the round trip's p50 and p99, and CPU per request (the node's over the floor
// client's).
type FloorRatios struct {
	RequestsPerS  float64 `json:"requests_per_s"`
	P50           float64 `json:"p50"`
	P99           float64 `json:"p99"`
	CPUPerRequest float64 `json:"cpu_per_request"`
}

// runFloor runs one floor phase in this process and returns what it measured.
func runFloor(spec FloorSpec) FloorStats {
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        spec.Conns,
		MaxIdleConnsPerHost: spec.Conns,
		MaxConnsPerHost:     spec.Conns,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: spec.RoundTimeout}
	type result struct {
		h        Histogram
		ok, all  int64
		statuses map[string]int64
		err      string
	}
	results := make([]result, spec.Conns)
	cpu0, _ := selfUsage()
	phase, cancel := context.WithTimeout(context.Background(), spec.Duration)
	defer cancel()
	var wg sync.WaitGroup
	start := time.Now()
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res := &results[i]
			res.statuses = map[string]int64{}
			pad := bytes.Repeat([]byte("x"), max(0, spec.Size))
			conn := "bench-floor-" + strconv.Itoa(i)
			user := "bench-" + strconv.Itoa(i)
			var body, answer []byte
			// The last request of the phase finishes (bounded by RoundTimeout), as the
			// gateway phase's does: the phase's end is not an error.
			for id := int64(1); phase.Err() == nil; id++ {
				body = appendFloorBody(body[:0], spec.Business, user, conn, id, pad)
				req, err := http.NewRequest(http.MethodPost, spec.URL, bytes.NewReader(body))
				if err != nil {
					res.err = shortReason(err)
					return
				}
				h := req.Header
				h["Content-Type"] = []string{"application/json"}
				h["User-Agent"] = []string{"longlink-bench-floor"}
				h["X-Longlink-Business"] = []string{spec.Business}
				h["X-Longlink-Node"] = []string{"bench-floor"}
				sent := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					res.err = shortReason(err)
					return
				}
				answer, err = readAllInto(answer[:0], resp.Body, 1<<20)
				resp.Body.Close()
				if err != nil {
					res.err = shortReason(err)
					return
				}
				res.h.Record(time.Since(sent).Nanoseconds())
				res.all++
				if resp.StatusCode == 200 {
					res.ok++
				} else {
					res.statuses[strconv.Itoa(resp.StatusCode)]++
				}
			}
		}()
	}
	wg.Wait()
	st := FloorStats{Statuses: map[string]int64{}, Errors: map[string]int64{}, Latency: &Histogram{}, Elapsed: time.Since(start)}
	cpu1, _ := selfUsage()
	st.CPUNs = cpu1 - cpu0
	for i := range results {
		x := &results[i]
		st.Latency.Merge(&x.h)
		st.Requests += x.all
		st.OK += x.ok
		for k, v := range x.statuses {
			st.Statuses[k] += v
		}
		if x.err != "" {
			st.Errors[x.err]++
		}
	}
	return st
}

// appendFloorBody appends the body the gateway POSTs for a client's send
// (upstream.Biz.send): the caller's fields, then "data" last.
func appendFloorBody(b []byte, business, user, conn string, id int64, pad []byte) []byte {
	b = append(b, `{"business":"`...)
	b = append(b, business...)
	b = append(b, `","id":`...)
	b = strconv.AppendInt(b, id, 10)
	b = append(b, `,"user":"`...)
	b = append(b, user...)
	b = append(b, `","connection":"`...)
	b = append(b, conn...)
	b = append(b, `","node":"bench-floor","meta":null,"data":{"n":`...)
	b = strconv.AppendInt(b, id, 10)
	if len(pad) > 0 {
		b = append(b, `,"pad":"`...)
		b = append(b, pad...)
		b = append(b, '"')
	}
	return append(b, '}', '}')
}

// readAllInto reads r to its end into b, at most limit bytes.
func readAllInto(b []byte, r io.Reader, limit int) ([]byte, error) {
	for {
		if cap(b)-len(b) < 512 {
			b = append(b, make([]byte, 512)...)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
		if len(b) > limit {
			return b, fmt.Errorf("answer larger than %d bytes", limit)
		}
	}
}

// runUpstreamFloor runs the floor phase in a worker and fills res.Floor; the
// gateway phase's figures must be in res already when order is "after" (the
// ratios are computed by floorRatios once both are).
func runUpstreamFloor(o Options, backendURL string, be *Backend, stderr io.Writer) (*UpstreamFloor, *Histogram, error) {
	f := &UpstreamFloor{Order: o.Floor, URL: backendURL, Conns: o.Conns, Statuses: map[string]int64{}, Errors: map[string]int64{}}
	p, err := startPool(1, o.InProcess, stderr)
	if err != nil {
		return nil, nil, fmt.Errorf("floor: %w", err)
	}
	spec := FloorSpec{URL: backendURL, Business: o.Business, Conns: o.Conns, Size: o.Size, Duration: o.Duration, RoundTimeout: o.RoundTimeout}
	self0, _ := selfUsage()
	be0 := be.Requests()
	st, err := p.workers[0].doWithin(workerCmd{Op: "floor", Floor: &spec}, o.Duration+o.RoundTimeout+workerTimeout)
	self1, _ := selfUsage()
	if _, cerr := p.close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return nil, nil, fmt.Errorf("floor: %w", err)
	}
	fs := st.Floor
	if fs == nil || fs.Latency == nil {
		return nil, nil, fmt.Errorf("floor: the worker's answer has no floor figures")
	}
	f.DurationS = fs.Elapsed.Seconds()
	f.Requests, f.OK, f.Statuses, f.Errors = fs.Requests, fs.OK, fs.Statuses, fs.Errors
	if f.DurationS > 0 {
		f.RequestsPerS = float64(f.Requests) / f.DurationS
	}
	f.Latency = fs.Latency.Summary()
	if answered := be.Requests() - be0; answered != f.Requests {
		f.Errors[fmt.Sprintf("back-end answered %d, the floor read %d", answered, f.Requests)]++
	}
	if f.Requests > 0 {
		f.ClientCPUPerRequestUs = float64(fs.CPUNs) / 1e3 / float64(f.Requests)
		if o.InProcess {
			f.CPUMeasured = "whole bench process (client and back-end: --in-process)"
		} else {
			f.CPUMeasured = "client: the floor's worker process; back-end: the coordinator"
			f.BackendCPUPerRequestUs = float64(self1-self0) / 1e3 / float64(f.Requests)
		}
	}
	return f, fs.Latency, nil
}

// floorRatios fills f's ratios from the gateway phase's figures.
func floorRatios(f *UpstreamFloor, u *UpstreamResult) {
	div := func(a, b float64) float64 {
		if b <= 0 {
			return 0
		}
		return a / b
	}
	f.Ratios = FloorRatios{
		RequestsPerS:  div(u.RequestsPerS, f.RequestsPerS),
		P50:           div(u.Latency.P50Ms, f.Latency.P50Ms),
		P99:           div(u.Latency.P99Ms, f.Latency.P99Ms),
		CPUPerRequest: div(u.ServerCPUPerRequestUs, f.ClientCPUPerRequestUs),
	}
}

// floorRows adds the floor's rows to the summary.
func floorRows(row func(k, v string), u *UpstreamResult) {
	f := u.Floor
	if f == nil {
		row("floor", "not run (--floor off)")
		return
	}
	row("floor", fmt.Sprintf("%s the gateway phase: %d workers POST the same body straight to %s (HTTP/1.1 keep-alive, net/http), closed loop, %.1fs",
		f.Order, f.Conns, f.URL, f.DurationS))
	row("floor requests", fmt.Sprintf("%s answers (%s/s), %s with status 200, others: %s; errors: %s",
		commas(f.Requests), commas(int64(f.RequestsPerS)), commas(f.OK), reasons(f.Statuses), reasons(f.Errors)))
	row("floor round trip", latRow(f.Latency)+"  request write to answer read")
	be := "not separated"
	if f.BackendCPUPerRequestUs > 0 {
		be = fmt.Sprintf("%.1f µs", f.BackendCPUPerRequestUs)
	}
	row("floor CPU", fmt.Sprintf("%.1f µs per request (%s); back-end %s per request", f.ClientCPUPerRequestUs, f.CPUMeasured, be))
	r := f.Ratios
	row("gateway / floor", fmt.Sprintf("requests/s x%.2f  p50 x%.2f  p99 x%.2f  CPU per request x%.2f (node's over the floor client's)",
		r.RequestsPerS, r.P50, r.P99, r.CPUPerRequest))
}
