package push

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// Config configures the API. The zero value of every optional field works.
type Config struct {
	// NodeID prefixes message ids. Empty means 6 random hex digits.
	NodeID string
	// APIKeys are the accepted bearer tokens; more than one allows rotation.
	// Required: New fails when it is empty or a key is empty.
	APIKeys []string
	// MaxBodyBytes limits every request body, batches included. Larger
	// bodies are answered with 413. Zero means 1 MiB.
	MaxBodyBytes int64
	// MaxBatch is how many messages one POST /v1/push/batch may carry.
	// Zero means 1000.
	MaxBatch int
	// MaxTargets is how many users, connections and rooms together one
	// message, or one room join/leave, may name. Zero means 10,000.
	MaxTargets int
	// MaxTTL is the longest "ttl" a push may ask its history to keep it. Zero means
	// 24h.
	MaxTTL time.Duration
	// Hub delivers and answers presence queries. Required.
	Hub Hub
	// Metrics receives the API's metrics. Nil means the default set. Only
	// one API may use a given set: names are registered once, in New.
	Metrics *metrics.Set
	// Logger receives 5xx errors. Nil means slog.Default().
	Logger *slog.Logger
}

// Defaults returns the values zero fields of a Config stand for. New fills zero
// fields from it, and flags show it.
func Defaults() Config {
	return Config{MaxBodyBytes: defaultMaxBody, MaxBatch: defaultMaxBatch, MaxTargets: defaultMaxTargets, MaxTTL: defaultMaxTTL}
}

const (
	defaultMaxBody    = 1 << 20
	defaultMaxBatch   = 1000
	defaultMaxTargets = 10000
	defaultMaxTTL     = 24 * time.Hour
	// maxIDLen bounds every user id, connection id and room name so one
	// request cannot make the hub index megabyte-long keys.
	maxIDLen = 256
	// maxReasonLen is what fits in a WebSocket close frame after the code.
	maxReasonLen = 123
)

// API serves /v1/ on the internal API port. It is immutable after New except
// for atomic counters, so Handler may serve any number of requests at once.
type API struct {
	hub        Hub
	log        *slog.Logger
	maxBody    int64
	maxBatch   int
	maxTargets int
	maxTTL     time.Duration
	idPrefix   string        // NodeID + "-"
	seq        atomic.Uint64 // last message sequence; see nextID
	keys       [][sha256.Size]byte
	mux        *http.ServeMux
	pushRoute  *routeMetrics // POST /v1/push, also counted by ServePush
	m          apiMetrics
}

// New validates cfg and builds the API, registering its metrics.
func New(cfg Config) (*API, error) {
	if cfg.Hub == nil {
		return nil, errors.New("push: Config.Hub is required")
	}
	if len(cfg.APIKeys) == 0 {
		return nil, errors.New("push: Config.APIKeys must hold at least one key")
	}
	a := &API{
		hub:        cfg.Hub,
		log:        cfg.Logger,
		maxBody:    cfg.MaxBodyBytes,
		maxBatch:   cfg.MaxBatch,
		maxTargets: cfg.MaxTargets,
		maxTTL:     cfg.MaxTTL,
	}
	if a.maxTTL <= 0 {
		a.maxTTL = defaultMaxTTL
	}
	for i, k := range cfg.APIKeys {
		if k == "" {
			return nil, fmt.Errorf("push: Config.APIKeys[%d] is empty", i)
		}
		if strings.TrimSpace(k) != k {
			return nil, fmt.Errorf("push: Config.APIKeys[%d] has leading or trailing whitespace, which a Bearer header cannot carry", i)
		}
		// Comparing SHA-256 digests keeps the comparison constant-time in
		// the key length too: subtle.ConstantTimeCompare returns early on a
		// length mismatch.
		a.keys = append(a.keys, sha256.Sum256([]byte(k)))
	}
	switch {
	case a.maxBody < 0:
		return nil, fmt.Errorf("push: Config.MaxBodyBytes is %d, want >= 0", a.maxBody)
	case a.maxBody == 0:
		a.maxBody = defaultMaxBody
	}
	switch {
	case a.maxBatch < 0:
		return nil, fmt.Errorf("push: Config.MaxBatch is %d, want >= 0", a.maxBatch)
	case a.maxBatch == 0:
		a.maxBatch = defaultMaxBatch
	}
	switch {
	case a.maxTargets < 0:
		return nil, fmt.Errorf("push: Config.MaxTargets is %d, want >= 0", a.maxTargets)
	case a.maxTargets == 0:
		a.maxTargets = defaultMaxTargets
	}
	if a.log == nil {
		a.log = slog.Default()
	}
	node := cfg.NodeID
	if node == "" {
		var b [3]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, fmt.Errorf("push: cannot generate Config.NodeID: %w", err)
		}
		node = hex.EncodeToString(b[:])
	}
	a.idPrefix = node + "-"
	// Starting the sequence at the wall clock keeps ids unique and
	// increasing across restarts of the same node (as long as it pushes
	// fewer than a billion messages a second on average).
	a.seq.Store(uint64(time.Now().UnixNano()))

	set := cfg.Metrics
	if set == nil {
		set = metrics.GetDefaultSet()
	}
	a.m.init(set)
	a.mux = a.routes(set)
	return a, nil
}

// Handler returns the handler for /v1/ routes. Every route requires an API
// key; every error is JSON. The node mounts it on its own mux next to
// /metrics and the health checks.
func (a *API) Handler() http.Handler { return a.mux }

// NewID returns a new message id from the API's sequence, for the node's other
// publishers (the Pusher HTTP API, client events) so every id stays unique.
func (a *API) NewID() string { return a.nextID() }

// nextID returns a new message id: the node prefix and 16 hex digits of a
// per-node monotonic counter, so ids of one node sort by acceptance order.
func (a *API) nextID() string {
	const digits = "0123456789abcdef"
	n := a.seq.Add(1)
	var sb strings.Builder
	sb.Grow(len(a.idPrefix) + 16)
	sb.WriteString(a.idPrefix)
	var hexBuf [16]byte
	for i := 15; i >= 0; i-- {
		hexBuf[i] = digits[n&0xf]
		n >>= 4
	}
	sb.Write(hexBuf[:])
	return sb.String()
}

// RequireKey guards h with the API keys, answering as every /v1/ route does (a
// JSON 401 with WWW-Authenticate), so the node's own routes (/v1/cluster,
// /debug/pprof/) share this one key check.
func (a *API) RequireKey(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.authenticate(w, r) != 0 {
			return
		}
		h.ServeHTTP(w, r)
	})
}

// authenticate checks the bearer token and returns 0, or the status of the
// error response it wrote.
func (a *API) authenticate(w http.ResponseWriter, r *http.Request) int {
	if e, www := a.authError(r.Header.Get("Authorization")); e != nil {
		w.Header()["Www-Authenticate"] = www
		return a.failErr(w, e)
	}
	return 0
}

// authError checks an Authorization header value. On failure it returns the
// error and the WWW-Authenticate value to answer with.
func (a *API) authError(h string) (*apiError, []string) {
	if h == "" {
		return &apiError{status: http.StatusUnauthorized, reason: reasonUnauthorized,
			msg: "missing Authorization header; send \"Authorization: Bearer <api key>\""}, wwwAuthMissing
	}
	const scheme = "Bearer "
	if len(h) < len(scheme) || !strings.EqualFold(h[:len(scheme)], scheme) {
		return &apiError{status: http.StatusUnauthorized, reason: reasonUnauthorized,
			msg: "Authorization header must use the Bearer scheme: \"Authorization: Bearer <api key>\""}, wwwAuthMissing
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(h[len(scheme):])))
	ok := 0
	for i := range a.keys {
		// No early exit: the time taken must not reveal which key matched.
		ok |= subtle.ConstantTimeCompare(sum[:], a.keys[i][:])
	}
	if ok != 1 {
		return &apiError{status: http.StatusUnauthorized, reason: reasonUnauthorized, msg: "invalid API key"}, wwwAuthInvalid
	}
	return nil, nil
}

// Header values are shared, never mutated slices, so setting them costs no
// allocation on the hot path (http.Header.Set would allocate a new slice).
var (
	jsonContentType = []string{"application/json"}
	wwwAuthMissing  = []string{`Bearer realm="longlink"`}
	wwwAuthInvalid  = []string{`Bearer realm="longlink", error="invalid_token"`}
)

// checkContentType accepts an absent Content-Type and application/json with
// any parameters (charset=utf-8), and returns 0 or the status it wrote. It also
// accepts application/x-www-form-urlencoded, which is what `curl -d` sends when no
// type is given: the body is still parsed as JSON, so a pasted curl line works and a
// real form body gets a 400 that says the JSON is invalid.
func (a *API) checkContentType(w http.ResponseWriter, r *http.Request) int {
	if e := contentTypeError(r.Header.Get("Content-Type")); e != nil {
		return a.failErr(w, e)
	}
	return 0
}

func contentTypeError(header string) *apiError {
	ct := header
	if ct == "" {
		return nil
	}
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	ct = strings.TrimSpace(ct)
	if strings.EqualFold(ct, "application/json") || strings.EqualFold(ct, "application/x-www-form-urlencoded") {
		return nil
	}
	return &apiError{status: http.StatusUnsupportedMediaType, reason: reasonBadRequest,
		msg: "Content-Type " + strconv.Quote(header) + " is not supported; send application/json"}
}

// bufPool holds response buffers; responses are small JSON documents.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// WriteJSON answers with v encoded as JSON, as every route of the API port does
// (the node's /healthz, /readyz and /v1/cluster use it too).
func WriteJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		panic("BUG: push: cannot encode an answer: " + err.Error())
	}
	writeRaw(w, status, append(b, '\n'))
}

// writeRaw writes body as a JSON response with status and returns status.
func writeRaw(w http.ResponseWriter, status int, body []byte) int {
	w.Header()["Content-Type"] = jsonContentType
	w.WriteHeader(status)
	w.Write(body) // a failed write means the client left; nothing to do
	return status
}
