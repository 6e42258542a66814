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

	"github.com/valyala/fasthttp"
	"golang.org/x/sys/unix"

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
// can close keep-alive connections that fasthttp's graceful shutdown would leave open.
type apiServer struct {
	srv *fasthttp.Server
	n   *Node
	mux http.Handler

	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

// apiReadBuffer bounds the request line and headers, as http.Server's MaxHeaderBytes did.
const apiReadBuffer = 16 << 10

func newAPIServer(n *Node) *apiServer {
	a := &apiServer{n: n, mux: n.mux(), conns: make(map[net.Conn]struct{})}
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
		ReadTimeout:                  30 * time.Second,
		WriteTimeout:                 30 * time.Second,
		IdleTimeout:                  120 * time.Second,
		MaxRequestBodySize:           int(n.api.MaxBodyBytes()),
		NoDefaultServerHeader:        true,
		NoDefaultContentType:         true,
		DisablePreParseMultipartForm: true,
		CloseOnShutdown:              true,
		Logger:                       slog.NewLogLogger(n.log.Handler(), slog.LevelDebug),
		ConnState:                    a.connState,
	}
	return a
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

func (a *apiServer) serve(ln net.Listener) error {
	return a.srv.Serve(retryListener{Listener: ln, log: a.n.log})
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
