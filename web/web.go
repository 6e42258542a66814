package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"
)

// Prefix is the path the handler serves under. Mount the handler at Prefix without
// http.StripPrefix: it routes on the full request path.
const Prefix = "/demo/"

// DefaultPushPath is where the page posts pushes when Config.PushPath is empty.
const DefaultPushPath = Prefix + "push"

// DefaultMaxPushBody is the push body limit when Config.MaxPushBody is zero.
const DefaultMaxPushBody = 1 << 20

// maxUser matches auth.MaxUserID: longer ids would be rejected at the handshake anyway.
const maxUser = 128

// Config says where the page connects and how the handler reaches the rest of the node.
// The zero value serves a page whose user types the WebSocket URL and pastes a token.
type Config struct {
	// ClientURL is the WebSocket URL the page connects to, e.g. ws://127.0.0.1:8080/ws.
	// A host of 0.0.0.0 or [::] is replaced by the page's own host name, so a node that
	// listens on all interfaces still gives a usable URL. Empty means the user types it.
	ClientURL string
	// EndpointURL is the discovery URL (GET /v1/endpoint on a client port). When set, the
	// page asks it before every connection attempt which node to use, with ClientURL as
	// the fallback. Empty disables discovery.
	EndpointURL string
	// DevToken mints a client token for user. It exists for local development only:
	// anyone who can reach the handler can get a token for any user. Nil (production)
	// makes the page ask the user to paste a token. Called concurrently.
	DevToken func(user string) (string, error)
	// PushPath is the path the page posts pushes to and the handler accepts them on.
	// Empty means DefaultPushPath. It must lie under Prefix unless the caller routes it
	// to this handler separately.
	PushPath string
	// Push forwards a push body (the JSON of POST /v1/push) to the push API with the API
	// key, so the browser never holds the key, and returns the HTTP status and body to
	// relay. Nil disables the push form. Called concurrently; may block.
	Push func(body []byte) (status int, resp []byte)
	// MaxPushBody is the largest push body in bytes the handler forwards. Zero means
	// DefaultMaxPushBody.
	MaxPushBody int64
}

//go:embed static
var staticFS embed.FS

type asset struct {
	body        []byte
	contentType string
	etag        string
}

type handler struct {
	cfg    Config
	assets map[string]asset // request path -> file
	config []byte           // /demo/config.json, rendered once
}

// Handler returns the demo handler for cfg. It panics if cfg is invalid, like
// regexp.MustCompile: the configuration comes from the composition root, not from users.
// Use NewHandler to get the error instead.
func Handler(cfg Config) http.Handler {
	h, err := NewHandler(cfg)
	if err != nil {
		panic(err)
	}
	return h
}

// NewHandler validates cfg and returns the demo handler. Mount it at Prefix.
func NewHandler(cfg Config) (http.Handler, error) {
	if cfg.PushPath == "" {
		cfg.PushPath = DefaultPushPath
	}
	if !strings.HasPrefix(cfg.PushPath, "/") {
		return nil, fmt.Errorf("web: Config.PushPath %q must start with /", cfg.PushPath)
	}
	if cfg.MaxPushBody == 0 {
		cfg.MaxPushBody = DefaultMaxPushBody
	}
	if cfg.MaxPushBody < 0 {
		return nil, fmt.Errorf("web: Config.MaxPushBody is %d; want >= 0", cfg.MaxPushBody)
	}
	if err := checkURL(cfg.ClientURL, "ws", "wss"); err != nil {
		return nil, fmt.Errorf("web: Config.ClientURL: %w", err)
	}
	if err := checkURL(cfg.EndpointURL, "http", "https"); err != nil {
		return nil, fmt.Errorf("web: Config.EndpointURL: %w", err)
	}
	h := &handler{cfg: cfg, assets: make(map[string]asset)}
	if err := h.loadAssets(); err != nil {
		return nil, err
	}
	conf, err := json.Marshal(pageConfig{
		ClientURL:   cfg.ClientURL,
		EndpointURL: cfg.EndpointURL,
		DevToken:    cfg.DevToken != nil,
		Push:        cfg.Push != nil,
		PushPath:    cfg.PushPath,
	})
	if err != nil {
		return nil, fmt.Errorf("web: cannot encode page config: %w", err)
	}
	h.config = conf
	return h, nil
}

// pageConfig is what app.js reads from config.json; it never contains secrets.
type pageConfig struct {
	ClientURL   string `json:"clientURL"`
	EndpointURL string `json:"endpointURL"`
	DevToken    bool   `json:"devToken"`
	Push        bool   `json:"push"`
	PushPath    string `json:"pushPath"`
}

func checkURL(raw string, schemes ...string) error {
	if raw == "" {
		return nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	for _, s := range schemes {
		if u.Scheme == s && u.Host != "" {
			return nil
		}
	}
	return fmt.Errorf("%q: want an absolute %s URL", raw, strings.Join(schemes, " or "))
}

var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
}

func (h *handler) loadAssets() error {
	return fs.WalkDir(staticFS, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := staticFS.ReadFile(p)
		if err != nil {
			return fmt.Errorf("web: cannot read embedded %s: %w", p, err)
		}
		ct, ok := contentTypes[path.Ext(p)]
		if !ok {
			return fmt.Errorf("BUG: web: embedded file %s has no content type", p)
		}
		sum := sha256.Sum256(body)
		a := asset{body: body, contentType: ct, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
		name := strings.TrimPrefix(p, "static/")
		if name == "index.html" {
			name = ""
		}
		h.assets[Prefix+name] = a
		return nil
	})
}

// pageCSP lets the page load only its own files and connect anywhere over ws/http:
// the client port is another origin, and the user may type any gateway URL.
const pageCSP = "default-src 'self'; connect-src 'self' ws: wss: http: https:; " +
	"img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	switch p := r.URL.Path; {
	case p == strings.TrimSuffix(Prefix, "/"):
		http.Redirect(w, r, Prefix, http.StatusMovedPermanently)
	case p == h.cfg.PushPath:
		h.servePush(w, r)
	case p == Prefix+"config.json":
		if !allowMethods(w, r, http.MethodGet, http.MethodHead) {
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.Write(h.config)
	case p == Prefix+"token":
		h.serveToken(w, r)
	default:
		a, ok := h.assets[p]
		if !ok {
			writeError(w, http.StatusNotFound, "no such demo file")
			return
		}
		if !allowMethods(w, r, http.MethodGet, http.MethodHead) {
			return
		}
		w.Header().Set("Content-Type", a.contentType)
		w.Header().Set("ETag", a.etag)
		// no-cache still allows the ETag revalidation; the page is tiny and must not run
		// a stale client after an upgrade.
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("Content-Security-Policy", pageCSP)
		w.Header().Set("Referrer-Policy", "no-referrer")
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
	}
}

func (h *handler) serveToken(w http.ResponseWriter, r *http.Request) {
	if !allowMethods(w, r, http.MethodGet) {
		return
	}
	if h.cfg.DevToken == nil {
		writeError(w, http.StatusNotFound, "dev tokens are disabled on this node; paste a token instead")
		return
	}
	user := r.URL.Query().Get("user")
	if user == "" || len(user) > maxUser {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("user must be 1..%d bytes", maxUser))
		return
	}
	tok, err := h.cfg.DevToken(user)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "cannot mint token: "+err.Error())
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, map[string]string{"user": user, "token": tok})
}

func (h *handler) servePush(w http.ResponseWriter, r *http.Request) {
	if !allowMethods(w, r, http.MethodPost) {
		return
	}
	if h.cfg.Push == nil {
		writeError(w, http.StatusNotFound, "the push form is disabled on this node")
		return
	}
	// The proxy spends the API key on behalf of whoever calls it, so refuse cross-site
	// requests: a JSON content type forces a CORS preflight that this handler never
	// answers, and a browser always sends Origin on a cross-origin POST.
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		writeError(w, http.StatusUnsupportedMediaType, "Content-Type must be application/json")
		return
	}
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		if err != nil || u.Host != r.Host {
			writeError(w, http.StatusForbidden, "cross-origin push refused")
			return
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.cfg.MaxPushBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("push body over %d bytes", tooBig.Limit))
			return
		}
		writeError(w, http.StatusBadRequest, "cannot read push body: "+err.Error())
		return
	}
	status, resp := h.cfg.Push(body)
	if status < 100 || status > 999 {
		writeError(w, http.StatusBadGateway, fmt.Sprintf("push callback returned status %d", status))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(resp)
}

func allowMethods(w http.ResponseWriter, r *http.Request, methods ...string) bool {
	for _, m := range methods {
		if r.Method == m {
			return true
		}
	}
	w.Header().Set("Allow", strings.Join(methods, ", "))
	writeError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed")
	return false
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

// writeJSON is this package's own: web stays a leaf that knows nothing of the API's
// packages (see doc.go), and its answers go to its own page.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	// Encoding a map of strings cannot fail; a write error means the client left.
	_ = json.NewEncoder(w).Encode(v)
}

// PushTo returns a Config.Push that posts the page's push bodies to a push API URL
// (a node's POST /v1/push) with apiKey, over HTTP like any service: the page uses the
// public API, and the browser never holds the key.
func PushTo(url, apiKey string) func(body []byte) (int, []byte) {
	client := &http.Client{Timeout: 15 * time.Second}
	return func(body []byte) (int, []byte) {
		req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return http.StatusBadGateway, errorJSON("cannot build the push request: " + err.Error())
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+apiKey)
		resp, err := client.Do(req)
		if err != nil {
			return http.StatusBadGateway, errorJSON("push API unreachable: " + err.Error())
		}
		defer resp.Body.Close()
		answer, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if err != nil {
			return http.StatusBadGateway, errorJSON("cannot read the push API's answer: " + err.Error())
		}
		return resp.StatusCode, answer
	}
}

func errorJSON(msg string) []byte {
	b, _ := json.Marshal(map[string]string{"error": msg})
	return b
}
