package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The upstream scenario: v2 clients send requests to a business through the
// gateway ({"type":"send","id":N,"business":B,"data":...}) and wait for each
// reply, closed loop, one request outstanding per connection; the business's
// back-end is the bundled one below (started by the scenario on --backend-addr,
// or separately as `longlink bench backend`). The gateway must be started with
// --business B=http://<backend-addr>/ .
//
// Unlike the other scenarios the clients are one goroutine each in the
// coordinator (a request-reply benchmark holds tens to a few thousand
// connections, not hundreds of thousands): the round trip is timed from the
// write of the request to the read of its reply.

// UpstreamResult is what the upstream scenario measured.
type UpstreamResult struct {
	Business     string           `json:"business"`
	Conns        int              `json:"conns"`
	DurationS    float64          `json:"duration_s"`
	Requests     int64            `json:"requests"` // replies received
	OK           int64            `json:"ok"`       // replies with status 200
	Statuses     map[string]int64 `json:"statuses"` // every other status
	Errors       map[string]int64 `json:"errors"`   // connection failures
	RequestsPerS float64          `json:"requests_per_s"`
	Latency      LatencySummary   `json:"round_trip"`
	// BackendRequests is what the bundled back-end answered (0 when external).
	BackendRequests int64   `json:"backend_requests"`
	ServerCPUS      float64 `json:"server_cpu_s"`
	// ServerCPUPerRequestUs is the nodes' CPU (process_cpu_seconds_total) over
	// the phase divided by the replies: reading the client frame, the HTTP
	// request to the back-end and its answer, writing the reply.
	ServerCPUPerRequestUs float64 `json:"server_cpu_per_request_us"`
	BenchCPUPerRequestUs  float64 `json:"bench_cpu_per_request_us"` // coordinator: clients and back-end
	// Floor is the same loop straight to the back-end (nil: --floor off).
	Floor *UpstreamFloor `json:"floor,omitempty"`
}

// Backend is the bundled test back-end: it answers every POST with
// {"ok":true,"echo":<the request's data>} after Delay, checking the signature
// when Secret is set (401 when it does not verify).
type Backend struct {
	Delay  time.Duration
	Secret string
	n      atomic.Int64
}

// Requests is how many requests it answered.
func (b *Backend) Requests() int64 { return b.n.Load() }

func (b *Backend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil || r.Method != http.MethodPost {
		http.Error(w, `{"reason":"POST a JSON body"}`, http.StatusBadRequest)
		return
	}
	if b.Secret != "" {
		m := hmac.New(sha256.New, []byte(b.Secret))
		m.Write([]byte(r.Header.Get("X-Longlink-Timestamp")))
		m.Write([]byte{'.'})
		m.Write(body)
		if !hmac.Equal([]byte(r.Header.Get("X-Longlink-Signature")), []byte("sha256="+hex.EncodeToString(m.Sum(nil)))) {
			http.Error(w, `{"reason":"bad signature"}`, http.StatusUnauthorized)
			return
		}
	}
	if b.Delay > 0 {
		time.Sleep(b.Delay)
	}
	data := []byte("null")
	if i := bytes.LastIndex(body, []byte(`,"data":`)); i >= 0 && len(body) > i+9 {
		data = body[i+8 : len(body)-1] // the gateway writes "data" last
	}
	b.n.Add(1)
	w.Header().Set("Content-Type", "application/json")
	out := append(append([]byte(`{"ok":true,"echo":`), data...), '}')
	w.Write(out)
}

// serveBackend starts b on addr and returns its server.
func serveBackend(addr string, b *Backend) (*http.Server, net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("bundled back-end: %w", err)
	}
	srv := &http.Server{Handler: b, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	go srv.Serve(ln)
	return srv, ln, nil
}

// backendMain runs `longlink bench backend`.
func backendMain(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("longlink bench backend", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:9000", "listen `HOST:PORT`")
	delay := fs.Duration("delay", 0, "wait this long before each answer (a slow back-end)")
	secret := fs.String("secret", "", "check X-Longlink-Signature with this business secret (401 when it does not verify)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	b := &Backend{Delay: *delay, Secret: *secret}
	srv, ln, err := serveBackend(*addr, b)
	if err != nil {
		fmt.Fprintf(stderr, "longlink bench backend: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "bench back-end on http://%s/ (start the gateway with --business bench=http://%s/)\n", ln.Addr(), ln.Addr())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	srv.Close()
	fmt.Fprintf(stdout, "answered %d requests\n", b.Requests())
	return 0
}

// upstreamClient is one v2 connection in the upstream scenario.
type upstreamClient struct {
	nc  net.Conn
	br  *bufio.Reader
	buf []byte
	out []byte
	key [4]byte
}

func dialUpstream(ctx context.Context, target string, token []byte, timeout time.Duration) (*upstreamClient, error) {
	d := net.Dialer{Timeout: timeout}
	nc, err := d.DialContext(ctx, "tcp", target)
	if err != nil {
		return nil, err
	}
	c := &upstreamClient{nc: nc, br: bufio.NewReaderSize(nc, 16<<10)}
	binaryKey := rand.Uint32()
	c.key = [4]byte{byte(binaryKey), byte(binaryKey >> 8), byte(binaryKey >> 16), byte(binaryKey >> 24)}
	nc.SetDeadline(time.Now().Add(timeout))
	if _, err := nc.Write(appendUpgradeV(nil, target, token, true, nil)); err != nil {
		nc.Close()
		return nil, err
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("upgrade: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		nc.Close()
		return nil, fmt.Errorf("upgrade: %s", resp.Status)
	}
	if _, err := c.read(); err != nil { // the welcome
		nc.Close()
		return nil, err
	}
	nc.SetDeadline(time.Time{})
	return c, nil
}

// read returns the next text message's payload (valid until the next read),
// answering pings.
func (c *upstreamClient) read() ([]byte, error) {
	for {
		var hdr [10]byte
		if _, err := io.ReadFull(c.br, hdr[:2]); err != nil {
			return nil, err
		}
		n := int(hdr[1] & 0x7F)
		switch n {
		case 126:
			if _, err := io.ReadFull(c.br, hdr[2:4]); err != nil {
				return nil, err
			}
			n = int(hdr[2])<<8 | int(hdr[3])
		case 127:
			if _, err := io.ReadFull(c.br, hdr[2:10]); err != nil {
				return nil, err
			}
			n = 0
			for _, b := range hdr[2:10] {
				n = n<<8 | int(b)
			}
		}
		if n > maxFrame {
			return nil, errFrameTooLarge
		}
		if cap(c.buf) < n {
			c.buf = make([]byte, n)
		}
		p := c.buf[:n]
		if _, err := io.ReadFull(c.br, p); err != nil {
			return nil, err
		}
		switch hdr[0] & 0x0F {
		case opText:
			return p, nil
		case opPing:
			c.out = appendClientFrame(c.out[:0], opPong, p, c.key)
			if _, err := c.nc.Write(c.out); err != nil {
				return nil, err
			}
		case opClose:
			return nil, fmt.Errorf("server closed the connection: %q", p)
		}
	}
}

// write sends payload as one masked text frame.
func (c *upstreamClient) write(payload []byte) error {
	b := append(c.out[:0], 0x80|opText)
	switch n := len(payload); {
	case n < 126:
		b = append(b, 0x80|byte(n))
	case n < 65536:
		b = append(b, 0x80|126, byte(n>>8), byte(n))
	default:
		b = append(b, 0x80|127, 0, 0, 0, 0, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	b = append(b, c.key[:]...)
	for i, x := range payload {
		b = append(b, x^c.key[i&3])
	}
	c.out = b
	_, err := c.nc.Write(b)
	return err
}

var replyPrefix = []byte(`{"type":"reply","id":`)

// replyStatus reads the id and status of a reply, or ok=false for anything else.
func replyStatus(p []byte) (id int64, status int, ok bool) {
	if !bytes.HasPrefix(p, replyPrefix) {
		return 0, 0, false
	}
	rest := p[len(replyPrefix):]
	i := bytes.IndexByte(rest, ',')
	if i < 0 {
		return 0, 0, false
	}
	id, err := strconv.ParseInt(string(rest[:i]), 10, 64)
	if err != nil {
		return 0, 0, false
	}
	st, ok := jsonInt(rest[i:], `"status":`)
	return id, int(st), ok
}

// runUpstream runs the upstream scenario and writes its reports.
func runUpstream(ctx context.Context, o Options, stdout, stderr io.Writer) error {
	r := &runner{o: o, stdout: stdout, stderr: stderr, tty: isTerminal(stdout), t0: time.Now(), ctx: ctx}
	r.rep = &Report{Tool: "longlink bench", Scenario: o.Scenario, StartedAt: r.t0.UTC(), Options: o,
		Env: collectEnv(), Hists: map[string][]HistBin{}, Limits: []string{}, Notes: []string{}}
	res := &UpstreamResult{Business: o.Business, Conns: o.Conns, Statuses: map[string]int64{}, Errors: map[string]int64{}}
	r.rep.Upstream = res
	var be *Backend
	var backendURL string
	if o.BackendAddr != "" {
		be = &Backend{Delay: o.BackendDelay}
		srv, ln, err := serveBackend(o.BackendAddr, be)
		if err != nil {
			return err
		}
		defer srv.Close()
		backendURL = "http://" + ln.Addr().String() + "/"
		fmt.Fprintf(stdout, "bundled back-end on %s (the gateway needs --business %s=%s)\n", backendURL, o.Business, backendURL)
	} else {
		r.note("back-end: external (--backend-addr \"\"): no floor")
	}
	var floorHist *Histogram
	floor := func() error {
		fmt.Fprintf(stdout, "floor: %d workers POST straight to %s for %v\n", o.Conns, backendURL, o.Duration)
		f, h, err := runUpstreamFloor(o, backendURL, be, stderr)
		if err != nil {
			return err
		}
		res.Floor, floorHist = f, h
		return nil
	}
	if o.Floor == "before" {
		if err := floor(); err != nil {
			return err
		}
	}
	fmt.Fprintf(stdout, "longlink bench upstream: %d v2 connections to %v, business %q, %v\n", o.Conns, o.Targets, o.Business, o.Duration)
	r.rep.Server.Before = scrape(ctx, o.APIs)

	// Connect every client (token per user bench-<i>).
	clients := make([]*upstreamClient, 0, o.Conns)
	defer func() {
		for _, c := range clients {
			c.nc.Close()
		}
	}()
	t0 := time.Now()
	minter := newJWTMinter([]byte(o.TokenSecret), "bench-")
	for i := range o.Conns {
		now := time.Now().Unix()
		tok := minter.mint(i, now, now+int64(o.Duration/time.Second)+3600)
		c, err := dialUpstream(ctx, o.Targets[i%len(o.Targets)], tok, o.HandshakeTimeout)
		r.rep.Connect.Attempted++
		if err != nil {
			r.rep.Connect.Failed++
			res.Errors["connect: "+shortReason(err)]++
			continue
		}
		clients = append(clients, c)
	}
	r.rep.Connect.Requested = int64(o.Conns)
	r.rep.Connect.Opened = int64(len(clients))
	r.rep.Connect.OpenAtEnd = int64(len(clients))
	r.rep.Connect.DurationS = time.Since(t0).Seconds()
	if len(clients) == 0 {
		return errors.New("upstream: no connection could be opened")
	}

	// Closed loop for the duration.
	type result struct {
		h        Histogram
		ok, all  int64
		statuses map[string]int64
		err      string
	}
	results := make([]result, len(clients))
	srv0 := scrape(ctx, o.APIs).CPUSeconds
	self0, _ := selfUsage()
	be0 := int64(0)
	if be != nil {
		be0 = be.Requests()
	}
	cpuStart := readCPUTimes()
	phase, cancel := context.WithTimeout(ctx, o.Duration)
	defer cancel()
	var wg sync.WaitGroup
	start := time.Now()
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res := &results[i]
			res.statuses = map[string]int64{}
			var msg []byte
			pad := bytes.Repeat([]byte("x"), max(0, o.Size))
			for id := int64(1); phase.Err() == nil; id++ {
				msg = append(msg[:0], `{"type":"send","id":`...)
				msg = strconv.AppendInt(msg, id, 10)
				msg = append(msg, `,"business":"`...)
				msg = append(msg, o.Business...)
				msg = append(msg, `","data":{"n":`...)
				msg = strconv.AppendInt(msg, id, 10)
				if len(pad) > 0 {
					msg = append(msg, `,"pad":"`...)
					msg = append(msg, pad...)
					msg = append(msg, '"')
				}
				msg = append(msg, '}', '}')
				sent := time.Now()
				c.nc.SetDeadline(sent.Add(o.RoundTimeout))
				if err := c.write(msg); err != nil {
					res.err = shortReason(err)
					return
				}
				for {
					p, err := c.read()
					if err != nil {
						res.err = shortReason(err)
						return
					}
					got, st, ok := replyStatus(p)
					if !ok || got != id {
						continue // a push or a stale reply
					}
					res.h.Record(time.Since(sent).Nanoseconds())
					res.all++
					if st == 200 {
						res.ok++
					} else {
						res.statuses[strconv.Itoa(st)]++
					}
					break
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	r.rep.HostCPU = hostCPU(cpuStart, readCPUTimes(), elapsed)
	srv1 := scrape(ctx, o.APIs).CPUSeconds
	self1, _ := selfUsage()
	var all Histogram
	for i := range results {
		x := &results[i]
		all.Merge(&x.h)
		res.Requests += x.all
		res.OK += x.ok
		for k, v := range x.statuses {
			res.Statuses[k] += v
		}
		if x.err != "" {
			res.Errors[x.err]++
		}
	}
	res.DurationS = elapsed.Seconds()
	res.RequestsPerS = float64(res.Requests) / res.DurationS
	res.Latency = all.Summary()
	res.ServerCPUS = srv1 - srv0
	if be != nil {
		res.BackendRequests = be.Requests() - be0
	}
	if res.Requests > 0 {
		res.ServerCPUPerRequestUs = res.ServerCPUS * 1e6 / float64(res.Requests)
		res.BenchCPUPerRequestUs = float64(self1-self0) / 1e3 / float64(res.Requests)
	}
	r.rep.Hists["round_trip"] = all.Bins()
	r.rep.Server.End = scrape(ctx, o.APIs)
	if o.Floor == "after" && ctx.Err() == nil {
		if err := floor(); err != nil {
			return err
		}
	}
	if res.Floor != nil {
		floorRatios(res.Floor, res)
		r.rep.Hists["floor_round_trip"] = floorHist.Bins()
	}
	cpu, rss := selfUsage()
	r.rep.Client = ClientOverhead{CPUS: float64(cpu) / 1e9, CoordinatorCPUS: float64(cpu) / 1e9, CoordinatorRSSBytes: rss, InProcess: true}
	r.rep.ElapsedS = time.Since(r.t0).Seconds()
	if res.OK < res.Requests {
		r.note(fmt.Sprintf("%d replies were not 200: %s", res.Requests-res.OK, reasons(res.Statuses)))
	}
	return r.writeReports()
}

// shortReason is an error's text for a failure count.
func shortReason(err error) string {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	s := err.Error()
	if len(s) > 80 {
		s = s[:80]
	}
	return s
}

// upstreamRows adds the upstream scenario's rows to the summary.
func upstreamRows(row func(k, v string), u *UpstreamResult) {
	row("upstream", fmt.Sprintf("business %q, %d connections, closed loop (one request outstanding each), %.1fs", u.Business, u.Conns, u.DurationS))
	row("requests", fmt.Sprintf("%s replies (%s/s), %s with status 200, others: %s; connection errors: %s; back-end answered %s",
		commas(u.Requests), commas(int64(u.RequestsPerS)), commas(u.OK), reasons(u.Statuses), reasons(u.Errors), commas(u.BackendRequests)))
	row("round trip", latRow(u.Latency)+"  client write to reply read")
	row("server CPU", fmt.Sprintf("%.2fs, %.1f µs per request (client frame, back-end HTTP round trip, reply)", u.ServerCPUS, u.ServerCPUPerRequestUs))
	row("bench CPU", fmt.Sprintf("%.1f µs per request (clients and bundled back-end)", u.BenchCPUPerRequestUs))
	floorRows(row, u)
}
