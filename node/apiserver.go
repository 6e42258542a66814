package node

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"
	"unsafe"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fasthttp"
	"golang.org/x/sys/unix"

	"longlink/loop"
	"longlink/push"
)

// apiServer serves the API port. POST /v1/push, the call services make thousands of
// times a second, goes from fasthttp's buffer straight into push.API.ServePush; every
// other route goes through the net/http mux (the request copied by serveMux), where
// per-request cost does not matter. net/http's per-request machinery (a goroutine and
// a background read per request, header maps, deadline resets) cost ~19 µs of CPU per
// push on a 2-core box, as much as two deliveries.
//
// conns is guarded by mu and tracks open connections so Kill and a timed-out Shutdown
// can close keep-alive connections that fasthttp's graceful shutdown would leave open,
// and so the accept loop can enforce Config.APIMaxConns.
type apiServer struct {
	srv *fasthttp.Server
	n   *Node
	mux http.Handler

	// busy is the whole HTTP answer a connection over the cap gets.
	busy     []byte
	rejected *metrics.Counter

	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

// apiReadBuffer bounds the request line and headers, as http.Server's MaxHeaderBytes did.
const apiReadBuffer = 16 << 10

// APIConnBudget is the default cap on API connections for a process allowed limit
// open files. The client cap (loop.FDBudget) leaves a reserve of the limit for API
// callers, cluster links, listeners and logs; the API may use that reserve less 64
// descriptors kept for the rest, or half of it if the reserve is under 128, and at
// most 1024: 636 at 14,000 files or more (room for the 600 callers of the push
// benchmark), 32 at 1,280 or fewer.
func APIConnBudget(limit uint64) int {
	reserve := int(min(limit-min(uint64(loop.FDBudget(limit)), limit), 1<<20))
	return min(max(reserve-64, reserve/2, 1), 1024)
}

// defaults fills the API port's zero settings from d (Defaults().API); New calls it.
func (c *APIConfig) defaults(d APIConfig) {
	if c.Addr == "" {
		c.Addr = d.Addr
	}
	switch {
	case c.MaxConns == 0:
		if limit, ok := loop.OpenFilesLimit(); ok {
			c.MaxConns = APIConnBudget(limit)
		}
	case c.MaxConns < 0:
		c.MaxConns = 0 // no cap
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = d.IdleTimeout
	}
	if c.ReadTimeout <= 0 {
		c.ReadTimeout = d.ReadTimeout
	}
}

func newAPIServer(n *Node) *apiServer {
	a := &apiServer{n: n, mux: n.mux(), conns: make(map[net.Conn]struct{})}
	a.busy = busyAnswer(n.cfg.API.MaxConns)
	a.rejected = n.set.NewCounter(`longlink_api_rejected_total{reason="max_conns"}`)
	n.set.NewGauge(`longlink_api_connections`, func() float64 { return float64(a.open()) })
	a.srv = &fasthttp.Server{
		Handler: func(ctx *fasthttp.RequestCtx) {
			if ctx.IsPost() && string(ctx.Request.URI().PathOriginal()) == "/v1/push" {
				a.push(ctx)
				return
			}
			a.serveMux(ctx)
		},
		ErrorHandler:                 a.requestError,
		ReadBufferSize:               apiReadBuffer,
		ReadTimeout:                  n.cfg.API.ReadTimeout,
		WriteTimeout:                 30 * time.Second,
		IdleTimeout:                  n.cfg.API.IdleTimeout,
		MaxRequestBodySize:           int(n.maxBodyBytes()),
		NoDefaultServerHeader:        true,
		NoDefaultContentType:         true,
		DisablePreParseMultipartForm: true,
		CloseOnShutdown:              true,
		Logger:                       slog.NewLogLogger(n.log.Handler(), slog.LevelDebug),
		ConnState:                    a.connState,
	}
	return a
}

// maxBodyBytes is the largest body the API port reads: each API checks its own
// limit below it.
func (n *Node) maxBodyBytes() int64 {
	m := n.api.MaxBodyBytes()
	if n.pusherAPI != nil {
		m = max(m, n.pusherAPI.MaxBodyBytes())
	}
	return m
}

func (a *apiServer) push(ctx *fasthttp.RequestCtx) {
	h := &ctx.Request.Header
	bp := answerPool.Get().(*[]byte)
	status, www, answer := a.n.api.ServePush(b2s(h.Peek("Authorization")), b2s(h.ContentType()),
		ctx.PostBody(), (*bp)[:0])
	writeAnswer(ctx, status, answer) // copied: the answer buffer goes back to the pool now
	if www != "" {
		ctx.Response.Header.Set("WWW-Authenticate", www)
	}
	*bp = answer
	answerPool.Put(bp)
}

var answerPool = sync.Pool{New: func() any { b := make([]byte, 0, 256); return &b }}

// serveMux runs a request through the net/http mux. Everything the request carries is
// copied: handlers may keep strings (a room name from the path, say) long after
// fasthttp has reused its buffers for the next request, which rules out
// fasthttpadaptor's zero-copy conversion.
func (a *apiServer) serveMux(ctx *fasthttp.RequestCtx) {
	uri := string(ctx.RequestURI())
	u, err := url.ParseRequestURI(uri)
	if err != nil {
		writeAnswer(ctx, http.StatusBadRequest, push.AppendError(nil, http.StatusBadRequest, "malformed request target: "+err.Error()))
		return
	}
	body := bytes.Clone(ctx.PostBody())
	rctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := (&http.Request{
		Method:        string(ctx.Method()),
		URL:           u,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        make(http.Header),
		Body:          io.NopCloser(bytes.NewReader(body)),
		ContentLength: int64(len(body)),
		Host:          string(ctx.Host()),
		RemoteAddr:    ctx.RemoteAddr().String(),
		RequestURI:    uri,
	}).WithContext(rctx)
	if !ctx.Request.Header.IsHTTP11() {
		r.Proto, r.ProtoMinor = "HTTP/1.0", 0
	}
	for k, v := range ctx.Request.Header.All() {
		r.Header.Add(string(k), string(v))
	}
	w := &bufferedResponse{header: make(http.Header)}
	a.mux.ServeHTTP(w, r)
	if w.code == 0 {
		w.code = http.StatusOK
	}
	ctx.SetStatusCode(w.code)
	for k, vs := range w.header {
		if k == "Content-Length" || k == "Transfer-Encoding" || k == "Connection" {
			continue // fasthttp frames the body itself
		}
		for _, v := range vs {
			ctx.Response.Header.Add(k, v)
		}
	}
	if w.header.Get("Content-Type") == "" && w.body.Len() > 0 {
		ctx.Response.Header.SetContentType(http.DetectContentType(w.body.Bytes()))
	}
	ctx.Response.SetBodyRaw(w.body.Bytes())
}

// bufferedResponse collects a handler's answer; no handler on the API port streams.
type bufferedResponse struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (b *bufferedResponse) Header() http.Header { return b.header }

func (b *bufferedResponse) WriteHeader(code int) {
	if b.code == 0 {
		b.code = code
	}
}

func (b *bufferedResponse) Write(p []byte) (int, error) {
	if b.code == 0 {
		b.code = http.StatusOK
	}
	return b.body.Write(p)
}

// b2s views header bytes as a string without copying, for the duration of one call:
// ServePush does not keep its string arguments.
func b2s(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// requestError answers requests fasthttp could not read, in the API's JSON error shape.
func (a *apiServer) requestError(ctx *fasthttp.RequestCtx, err error) {
	status, msg := http.StatusBadRequest, "malformed HTTP request: "+err.Error()
	var small *fasthttp.ErrSmallBuffer
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		status, body := a.n.api.TooLarge(nil)
		writeAnswer(ctx, status, body)
		return
	case errors.As(err, &small) || errors.Is(err, fasthttp.ErrSmallReadBuffer):
		status, msg = http.StatusRequestHeaderFieldsTooLarge,
			"request line and headers are larger than "+strconv.Itoa(apiReadBuffer)+" bytes"
	case isTimeout(err):
		status, msg = http.StatusRequestTimeout, "request not received in time"
	}
	writeAnswer(ctx, status, push.AppendError(nil, status, msg))
}

// writeAnswer sets a JSON answer; body is copied, so it may be a pooled buffer.
func writeAnswer(ctx *fasthttp.RequestCtx, status int, body []byte) {
	ctx.SetStatusCode(status)
	ctx.Response.Header.SetContentType("application/json")
	ctx.SetBody(body)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func (a *apiServer) connState(c net.Conn, s fasthttp.ConnState) {
	switch s {
	case fasthttp.StateNew:
		a.mu.Lock()
		a.conns[c] = struct{}{}
		a.mu.Unlock()
	case fasthttp.StateClosed, fasthttp.StateHijacked:
		a.mu.Lock()
		delete(a.conns, c)
		a.mu.Unlock()
	}
}

// APIMaxConns is the API port's connection cap in effect; 0 means none.
func (n *Node) APIMaxConns() int { return n.cfg.API.MaxConns }

// open is the number of API connections accepted and not yet closed.
func (a *apiServer) open() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.conns)
}

func (a *apiServer) serve(ln net.Listener) error {
	return a.srv.Serve(&capListener{Listener: retryListener{Listener: ln, log: a.n.log}, a: a})
}

// busyAnswer is the HTTP answer for a connection over the cap: a JSON 503 like every
// other API error. fasthttp's own Concurrency limit answers in text/plain and cannot
// be changed, so the cap is enforced at accept instead.
func busyAnswer(limit int) []byte {
	body := push.AppendError(nil, http.StatusServiceUnavailable, "the API port has "+strconv.Itoa(limit)+
		" connections open, its cap; reuse keep-alive connections or retry later")
	b := []byte("HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Type: application/json\r\n" +
		"Retry-After: 1\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n")
	return append(b, body...)
}

// capListener turns away connections over Config.APIMaxConns as they are accepted.
// fasthttp calls Accept from one goroutine and registers each connection (connState,
// StateNew) before it calls Accept again, so the count seen here includes every
// connection accepted before. A refused connection costs its descriptor only while
// the answer is written, which never waits: a new socket's send buffer is empty.
type capListener struct {
	net.Listener
	a       *apiServer
	lastLog time.Time // accept goroutine only
}

func (l *capListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil || l.a.n.cfg.API.MaxConns <= 0 || l.a.open() < l.a.n.cfg.API.MaxConns {
			return c, err
		}
		c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		c.Write(l.a.busy)
		c.Close()
		l.a.rejected.Inc()
		if time.Since(l.lastLog) > time.Minute {
			l.lastLog = time.Now()
			l.a.n.log.Warn("API port at its connection cap; refusing new connections with 503 (counted in longlink_api_rejected_total)",
				"max_conns", l.a.n.cfg.API.MaxConns)
		}
	}
}

// shutdown stops accepting, lets requests in flight finish until ctx ends, then
// closes whatever connections are left.
func (a *apiServer) shutdown(ctx context.Context) {
	a.srv.ShutdownWithContext(ctx)
	a.closeAll()
}

// kill closes the listener and every connection at once: a crash, for tests.
func (a *apiServer) kill() {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	a.srv.ShutdownWithContext(ctx)
	a.closeAll()
}

func (a *apiServer) closeAll() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for c := range a.conns {
		c.Close()
	}
}

// retryListener keeps the API port alive through accept errors that pass: out of file
// descriptors (a node near its open-files limit with all its clients), kernel memory,
// a connection aborted in the queue. fasthttp treats every error other than a timeout
// as fatal and stops serving for good; net/http, and this wrapper, back off and retry.
type retryListener struct {
	net.Listener
	log *slog.Logger
}

func (l retryListener) Accept() (net.Conn, error) {
	var delay time.Duration
	for {
		c, err := l.Listener.Accept()
		if err == nil || !retryable(err) {
			return c, err
		}
		delay = min(max(2*delay, 5*time.Millisecond), time.Second)
		if delay == time.Second || delay == 5*time.Millisecond {
			l.log.Warn("API port cannot accept; retrying", "err", err, "in", delay)
		}
		time.Sleep(delay)
	}
}

func retryable(err error) bool {
	if errors.Is(err, net.ErrClosed) {
		return false
	}
	for _, e := range []error{unix.EMFILE, unix.ENFILE, unix.ENOBUFS, unix.ENOMEM, unix.ECONNABORTED, unix.EINTR} {
		if errors.Is(err, e) {
			return true
		}
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
