package pusher

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/VictoriaMetrics/metrics"
)

// The Pusher HTTP API on the API port ("HTTP API reference"): what the official
// server SDKs call to publish and to query. HTTPAPI only parses, verifies, validates
// and answers; what an event does (rooms, users, the cluster) is the Backend's.
//
// Goroutines: ServeHTTP runs on net/http's request goroutines, many at once; HTTPAPI
// holds no mutable state of its own (its metrics are atomic), and the Backend must be
// safe for concurrent use.

// Spec limits that are not configurable: they are what clients and SDKs assume.
const (
	// maxNameLen bounds event and channel names (Pusher: 200 characters).
	maxNameLen = 200
	// maxUserIDLen bounds the user IDs of the /users/{id}/... routes.
	maxUserIDLen = 200
	// userChannelPrefix is how the SDKs' sendToUser addresses a user through
	// POST /events: the channel "#server-to-user-{user_id}".
	userChannelPrefix = "#server-to-user-"
	presencePrefix    = "presence-"
)

// Defaults of HTTPAPIConfig and App.MaxEventBytes, in one place.
const (
	// DefaultMaxEventBytes is Pusher's cap on one event's data (10 KB).
	DefaultMaxEventBytes = 10 << 10
	// DefaultMaxBodyBytes bounds a request body: room for a full batch of
	// DefaultMaxBatchEvents events at DefaultMaxEventBytes each, JSON-escaped.
	DefaultMaxBodyBytes = 1 << 20
	// DefaultMaxBatchEvents is Pusher's cap on the events of one batch_events call.
	DefaultMaxBatchEvents = 10
	// DefaultMaxChannelsPerEvent is Pusher's cap on the channels of one event.
	DefaultMaxChannelsPerEvent = 100
)

// Info selects the optional channel attributes a call asks for (the "info"
// parameter): the Backend need not count what is not asked for.
type Info uint8

const (
	// InfoUserCount is user_count: distinct users of a presence channel.
	InfoUserCount Info = 1 << iota
	// InfoSubscriptionCount is subscription_count: connections subscribed.
	InfoSubscriptionCount
)

// ChannelInfo is what the Backend knows of one channel of an app, cluster-wide.
// UserCount and SubscriptionCount need be filled only when asked for.
type ChannelInfo struct {
	Occupied          bool
	UserCount         int
	SubscriptionCount int
}

// Backend is what the node implements for the HTTP API. Every method is called
// with a verified, validated request (channel names valid, at most the configured
// number of channels, data within the app's limit) and must be safe for concurrent
// use. An error that is an *APIError is answered as is; ErrForbidden (or an error
// wrapping it) is answered 403; any other error 500 with its text.
type Backend interface {
	// Trigger publishes event with data on channels (1 or more, distinct), to
	// every subscriber but the connection with excludeSocketID ("" for none).
	Trigger(app *App, channels []string, event, data, excludeSocketID string) error
	// Channels returns the app's occupied channels whose names start with prefix.
	Channels(app *App, prefix string, info Info) (map[string]ChannelInfo, error)
	// Channel returns one channel's state (Occupied false if nobody is subscribed).
	Channel(app *App, name string, info Info) (ChannelInfo, error)
	// Users returns the IDs of the users subscribed to a presence channel.
	Users(app *App, channel string) ([]string, error)
	// TerminateUser closes every connection signed in as userID, on every node.
	TerminateUser(app *App, userID string) error
	// SendToUser delivers event to every connection signed in as userID.
	SendToUser(app *App, userID, event, data string) error
}

// ErrForbidden is what a Backend returns for an app that is disabled or over its
// quota: the request is answered 403, as Pusher does.
var ErrForbidden = errors.New("pusher: app disabled or over quota")

// HTTPAPIConfig configures the HTTP API. Zero fields take the defaults above.
type HTTPAPIConfig struct {
	// Apps finds an app by its app_id (nil: unknown, answered 404). Required.
	Apps func(id string) *App
	// Backend carries out the requests. Required.
	Backend Backend
	// ClockSkew is how far auth_timestamp may be from now (DefaultClockSkew).
	ClockSkew time.Duration
	// MaxBodyBytes bounds a request body; over it the answer is 413
	// (DefaultMaxBodyBytes). It must leave room for a batch at the apps' event size.
	MaxBodyBytes int64
	// MaxBatchEvents caps the events of one batch_events (DefaultMaxBatchEvents).
	MaxBatchEvents int
	// MaxChannelsPerEvent caps the channels of one event (DefaultMaxChannelsPerEvent).
	MaxChannelsPerEvent int
	// Metrics receives the API's series (nil: a set of its own, see Metrics()).
	Metrics *metrics.Set
	// Now is the clock signatures are checked against (time.Now).
	Now func() time.Time
}

func (c *HTTPAPIConfig) setDefaults() {
	if c.ClockSkew <= 0 {
		c.ClockSkew = DefaultClockSkew
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.MaxBatchEvents <= 0 {
		c.MaxBatchEvents = DefaultMaxBatchEvents
	}
	if c.MaxChannelsPerEvent <= 0 {
		c.MaxChannelsPerEvent = DefaultMaxChannelsPerEvent
	}
	if c.Metrics == nil {
		c.Metrics = metrics.NewSet()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// errReason labels longlink_pusher_api_errors_total.
type errReason uint8

const (
	reasonBackend   errReason = iota // a Backend error (an *APIError of its own too)
	reasonNotFound                   // unknown route or app
	reasonMalformed                  // query or body that cannot be read
	reasonAuth                       // missing auth parameter, wrong key
	reasonTimestamp                  // auth_timestamp outside the clock-skew window
	reasonSignature                  // auth_signature or body_md5 that does not verify
	reasonTooLarge                   // body or event data over its limit
	reasonInvalid                    // well-formed but against the spec's rules
	reasonForbidden                  // the Backend said ErrForbidden
	numReasons
)

var reasonNames = [numReasons]string{"backend", "not_found", "malformed", "auth", "timestamp",
	"signature", "too_large", "invalid", "forbidden"}

// Routes, for longlink_pusher_api_requests_total.
const (
	routeEvents = iota
	routeBatch
	routeChannels
	routeChannel
	routeUsers
	routeTerminate
	routeUserEvents
	numRoutes
)

var routeNames = [numRoutes]string{"events", "batch_events", "channels", "channel", "users",
	"terminate_connections", "user_events"}

// HTTPAPI is the http.Handler the node mounts at /apps/ on the API port, without
// stripping the prefix: the signed path is the whole request path.
type HTTPAPI struct {
	cfg      HTTPAPIConfig
	requests [numRoutes]*metrics.Counter
	errors   [numReasons]*metrics.Counter
	events   *metrics.Counter
}

// NewHTTPAPI returns the HTTP API, its metrics created in cfg.Metrics.
func NewHTTPAPI(cfg HTTPAPIConfig) (*HTTPAPI, error) {
	if cfg.Apps == nil || cfg.Backend == nil {
		return nil, errors.New("pusher: HTTPAPIConfig needs Apps and Backend")
	}
	cfg.setDefaults()
	h := &HTTPAPI{cfg: cfg}
	for i, name := range routeNames {
		h.requests[i] = cfg.Metrics.NewCounter(`longlink_pusher_api_requests_total{route="` + name + `"}`)
	}
	for i, name := range reasonNames {
		h.errors[i] = cfg.Metrics.NewCounter(`longlink_pusher_api_errors_total{reason="` + name + `"}`)
	}
	h.events = cfg.Metrics.NewCounter(`longlink_pusher_api_events_total`)
	return h, nil
}

// MaxBodyBytes is the largest request body the API reads (HTTPAPIConfig).
func (h *HTTPAPI) MaxBodyBytes() int64 { return h.cfg.MaxBodyBytes }

// Metrics is the set the API's series are in.
func (h *HTTPAPI) Metrics() *metrics.Set { return h.cfg.Metrics }

// request is one verified call: the app, its query and its body.
type request struct {
	app  *App
	r    *http.Request
	body []byte
}

func (h *HTTPAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	resp, err := h.serve(r)
	if err != nil {
		var ae *APIError
		if !errors.As(err, &ae) {
			ae = &APIError{Status: http.StatusInternalServerError, Msg: err.Error(), reason: reasonBackend}
		}
		h.errors[ae.reason].Inc()
		if ae.Status == http.StatusMethodNotAllowed {
			w.Header().Set("Allow", allowFor(r.URL.Path))
		}
		// Pusher answers errors in text; the SDKs report the status and this text.
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.WriteHeader(ae.Status)
		io.WriteString(w, ae.Msg+"\n")
		return
	}
	b, err := json.Marshal(resp)
	if err != nil { // only maps and structs of strings and ints: cannot happen
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(b)
}

// route splits /apps/{id}/rest into the app ID, the route and its path
// parameters, or fails with 404 (unknown path) or 405 (known path, other method).
func route(method, path string) (appID string, rt int, arg string, err error) {
	rest, ok := strings.CutPrefix(path, "/apps/")
	if !ok {
		return "", 0, "", apiErrorf(http.StatusNotFound, reasonNotFound, "not found: %s", path)
	}
	p := strings.Split(rest, "/")
	want := http.MethodPost
	switch {
	case len(p) == 2 && p[1] == "events":
		rt = routeEvents
	case len(p) == 2 && p[1] == "batch_events":
		rt = routeBatch
	case len(p) == 2 && p[1] == "channels":
		rt, want = routeChannels, http.MethodGet
	case len(p) == 3 && p[1] == "channels":
		rt, arg, want = routeChannel, p[2], http.MethodGet
	case len(p) == 4 && p[1] == "channels" && p[3] == "users":
		rt, arg, want = routeUsers, p[2], http.MethodGet
	case len(p) == 4 && p[1] == "users" && p[3] == "terminate_connections":
		rt, arg = routeTerminate, p[2]
	case len(p) == 4 && p[1] == "users" && p[3] == "events":
		rt, arg = routeUserEvents, p[2]
	default:
		return "", 0, "", apiErrorf(http.StatusNotFound, reasonNotFound, "not found: %s", path)
	}
	if p[0] == "" {
		return "", 0, "", apiErrorf(http.StatusNotFound, reasonNotFound, "not found: %s (no app_id)", path)
	}
	if method != want {
		return "", 0, "", apiErrorf(http.StatusMethodNotAllowed, reasonInvalid, "%s %s: use %s", method, path, want)
	}
	return p[0], rt, arg, nil
}

func allowFor(path string) string {
	if _, _, _, err := route(http.MethodGet, path); err == nil {
		return http.MethodGet
	}
	return http.MethodPost
}

func (h *HTTPAPI) serve(r *http.Request) (any, error) {
	appID, rt, arg, err := route(r.Method, r.URL.Path)
	if err != nil {
		return nil, err
	}
	app := h.cfg.Apps(appID)
	if app == nil {
		return nil, apiErrorf(http.StatusNotFound, reasonNotFound, "unknown app %q", appID)
	}
	body, err := h.readBody(r)
	if err != nil {
		return nil, err
	}
	if err := VerifyRequest(app, r.Method, r.URL.Path, r.URL.RawQuery, body, h.cfg.Now(), h.cfg.ClockSkew); err != nil {
		return nil, err
	}
	req := &request{app: app, r: r, body: body}
	var resp any
	switch rt {
	case routeEvents:
		resp, err = h.trigger(req)
	case routeBatch:
		resp, err = h.batch(req)
	case routeChannels:
		resp, err = h.channels(req)
	case routeChannel:
		resp, err = h.channel(req, arg)
	case routeUsers:
		resp, err = h.users(req, arg)
	case routeTerminate:
		resp, err = h.terminate(req, arg)
	case routeUserEvents:
		resp, err = h.userEvent(req, arg)
	}
	if err != nil {
		return nil, backendError(err)
	}
	h.requests[rt].Inc()
	return resp, nil
}

// backendError maps ErrForbidden to 403 and leaves *APIError and others alone.
func backendError(err error) error {
	var ae *APIError
	if errors.As(err, &ae) {
		return err
	}
	if errors.Is(err, ErrForbidden) {
		return apiErrorf(http.StatusForbidden, reasonForbidden, "%v", err)
	}
	return err
}

// readBody reads the whole body, at most MaxBodyBytes (413 beyond).
func (h *HTTPAPI) readBody(r *http.Request) ([]byte, error) {
	max := h.cfg.MaxBodyBytes
	if r.ContentLength > max {
		return nil, apiErrorf(http.StatusRequestEntityTooLarge, reasonTooLarge, "body of %d bytes over the limit of %d", r.ContentLength, max)
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, max+1))
	if err != nil {
		return nil, apiErrorf(http.StatusBadRequest, reasonMalformed, "reading the body: %v", err)
	}
	if int64(len(body)) > max {
		return nil, apiErrorf(http.StatusRequestEntityTooLarge, reasonTooLarge, "body over the limit of %d bytes", max)
	}
	return body, nil
}

// event is the body of POST /events and one element of a batch.
type event struct {
	Name     string          `json:"name"`
	Data     json.RawMessage `json:"data"`
	Channels []string        `json:"channels"`
	Channel  string          `json:"channel"`
	SocketID string          `json:"socket_id"`
	Info     string          `json:"info"`
}

// checked is an event once validated: data decoded, channels split into the
// channels proper and the users of #server-to-user- channels.
type checked struct {
	name, data, socketID string
	channels, users      []string
	info                 Info
}

// attrs is a channel's attributes in an answer: only those asked for.
type attrs struct {
	Occupied          *bool `json:"occupied,omitempty"`
	UserCount         *int  `json:"user_count,omitempty"`
	SubscriptionCount *int  `json:"subscription_count,omitempty"`
}

func makeAttrs(ci ChannelInfo, info Info, presence bool) attrs {
	var a attrs
	if info&InfoUserCount != 0 && presence {
		n := ci.UserCount
		a.UserCount = &n
	}
	if info&InfoSubscriptionCount != 0 {
		n := ci.SubscriptionCount
		a.SubscriptionCount = &n
	}
	return a
}

func decodeJSON(body []byte, v any) error {
	if len(body) == 0 {
		return apiErrorf(http.StatusBadRequest, reasonMalformed, "empty body: a JSON object is expected")
	}
	if err := json.Unmarshal(body, v); err != nil {
		return apiErrorf(http.StatusBadRequest, reasonMalformed, "body is not the JSON expected: %v", err)
	}
	return nil
}

// check validates one event: batch says it came in batch_events (one "channel").
func (h *HTTPAPI) check(app *App, e *event, batch bool) (*checked, error) {
	c := &checked{name: e.Name, socketID: e.SocketID}
	if err := validEventName(e.Name); err != nil {
		return nil, err
	}
	if len(e.Data) == 0 || e.Data[0] != '"' {
		return nil, apiErrorf(http.StatusBadRequest, reasonInvalid, "event %q: data is required and must be a JSON string", e.Name)
	}
	if err := json.Unmarshal(e.Data, &c.data); err != nil {
		return nil, apiErrorf(http.StatusBadRequest, reasonMalformed, "event %q: data: %v", e.Name, err)
	}
	if limit := maxEventBytes(app); len(c.data) > limit {
		return nil, apiErrorf(http.StatusRequestEntityTooLarge, reasonTooLarge,
			"event %q: data of %d bytes over the app's limit of %d", e.Name, len(c.data), limit)
	}
	if e.SocketID != "" && !validSocketID(e.SocketID) {
		return nil, apiErrorf(http.StatusBadRequest, reasonInvalid, "invalid socket_id %q (want digits.digits)", e.SocketID)
	}
	names := e.Channels
	switch {
	case batch && len(e.Channels) > 0:
		return nil, apiErrorf(http.StatusBadRequest, reasonInvalid, "event %q: a batch event names one \"channel\", not \"channels\"", e.Name)
	case e.Channel != "" && len(e.Channels) > 0:
		return nil, apiErrorf(http.StatusBadRequest, reasonInvalid, "event %q: give \"channels\" or \"channel\", not both", e.Name)
	case e.Channel != "":
		names = []string{e.Channel}
	}
	if len(names) == 0 {
		return nil, apiErrorf(http.StatusBadRequest, reasonInvalid, "event %q: no channel", e.Name)
	}
	if len(names) > h.cfg.MaxChannelsPerEvent {
		return nil, apiErrorf(http.StatusBadRequest, reasonInvalid, "event %q: %d channels, over the limit of %d", e.Name, len(names), h.cfg.MaxChannelsPerEvent)
	}
	seen := make(map[string]struct{}, len(names))
	for _, ch := range names {
		if _, dup := seen[ch]; dup {
			continue // a channel named twice gets the event once
		}
		seen[ch] = struct{}{}
		if user, ok := strings.CutPrefix(ch, userChannelPrefix); ok {
			if err := validUserID(user); err != nil {
				return nil, err
			}
			c.users = append(c.users, user)
			continue
		}
		if !validChannelName(ch) {
			return nil, invalidChannel(ch)
		}
		c.channels = append(c.channels, ch)
	}
	info, err := parseInfo(e.Info)
	if err != nil {
		return nil, err
	}
	c.info = info
	return c, nil
}

// publish hands one checked event to the Backend.
func (h *HTTPAPI) publish(app *App, c *checked) error {
	if len(c.channels) > 0 {
		if err := h.cfg.Backend.Trigger(app, c.channels, c.name, c.data, c.socketID); err != nil {
			return err
		}
	}
	for _, u := range c.users {
		if err := h.cfg.Backend.SendToUser(app, u, c.name, c.data); err != nil {
			return err
		}
	}
	h.events.Inc()
	return nil
}

// infoOf returns the attributes asked for of each of c's channels.
func (h *HTTPAPI) infoOf(app *App, c *checked) (map[string]attrs, error) {
	out := make(map[string]attrs, len(c.channels))
	for _, ch := range c.channels {
		presence := strings.HasPrefix(ch, presencePrefix)
		info := c.info
		if !presence {
			info &^= InfoUserCount
		}
		ci, err := h.cfg.Backend.Channel(app, ch, info)
		if err != nil {
			return nil, err
		}
		out[ch] = makeAttrs(ci, info, presence)
	}
	return out, nil
}

// trigger is POST /apps/{id}/events: {} or, with info, {"channels": {...}}.
func (h *HTTPAPI) trigger(req *request) (any, error) {
	var e event
	if err := decodeJSON(req.body, &e); err != nil {
		return nil, err
	}
	c, err := h.check(req.app, &e, false)
	if err != nil {
		return nil, err
	}
	if err := h.publish(req.app, c); err != nil {
		return nil, err
	}
	if c.info == 0 {
		return struct{}{}, nil
	}
	chans, err := h.infoOf(req.app, c)
	if err != nil {
		return nil, err
	}
	return map[string]any{"channels": chans}, nil
}

// batch is POST /apps/{id}/batch_events: every event is validated before any is
// published, so a bad one fails the call with nothing sent. The answer is {} or,
// when any event asks for info, {"batch": [attrs of each event's channel, ...]}.
func (h *HTTPAPI) batch(req *request) (any, error) {
	var b struct {
		Batch []event `json:"batch"`
	}
	if err := decodeJSON(req.body, &b); err != nil {
		return nil, err
	}
	if len(b.Batch) == 0 {
		return nil, apiErrorf(http.StatusBadRequest, reasonInvalid, "batch is empty")
	}
	if len(b.Batch) > h.cfg.MaxBatchEvents {
		return nil, apiErrorf(http.StatusBadRequest, reasonInvalid, "batch of %d events, over the limit of %d", len(b.Batch), h.cfg.MaxBatchEvents)
	}
	cs := make([]*checked, len(b.Batch))
	anyInfo := false
	for i := range b.Batch {
		c, err := h.check(req.app, &b.Batch[i], true)
		if err != nil {
			var ae *APIError
			if errors.As(err, &ae) {
				ae.Msg = fmt.Sprintf("batch[%d]: %s", i, ae.Msg)
			}
			return nil, err
		}
		cs[i] = c
		anyInfo = anyInfo || c.info != 0
	}
	for _, c := range cs {
		if err := h.publish(req.app, c); err != nil {
			return nil, err
		}
	}
	if !anyInfo {
		return struct{}{}, nil
	}
	out := make([]attrs, len(cs))
	for i, c := range cs {
		if c.info == 0 || len(c.channels) == 0 {
			continue
		}
		m, err := h.infoOf(req.app, c)
		if err != nil {
			return nil, err
		}
		out[i] = m[c.channels[0]]
	}
	return map[string]any{"batch": out}, nil
}

// channels is GET /apps/{id}/channels: {"channels": {name: {attrs}}}, occupied
// channels only. user_count needs filter_by_prefix=presence-... (the spec's rule:
// only presence channels have users).
func (h *HTTPAPI) channels(req *request) (any, error) {
	q := req.r.URL.Query()
	prefix := q.Get("filter_by_prefix")
	info, err := parseInfo(q.Get("info"))
	if err != nil {
		return nil, err
	}
	if len(prefix) > maxNameLen {
		return nil, apiErrorf(http.StatusBadRequest, reasonInvalid, "filter_by_prefix longer than %d", maxNameLen)
	}
	presence := strings.HasPrefix(prefix, presencePrefix)
	if info&InfoUserCount != 0 && !presence {
		return nil, apiErrorf(http.StatusBadRequest, reasonInvalid, "info=user_count needs filter_by_prefix=presence-")
	}
	m, err := h.cfg.Backend.Channels(req.app, prefix, info)
	if err != nil {
		return nil, err
	}
	out := make(map[string]attrs, len(m))
	for name, ci := range m {
		out[name] = makeAttrs(ci, info, presence)
	}
	return map[string]any{"channels": out}, nil
}

// channel is GET /apps/{id}/channels/{name}: {"occupied": b, and what info asks}.
func (h *HTTPAPI) channel(req *request, name string) (any, error) {
	if !validChannelName(name) {
		return nil, invalidChannel(name)
	}
	info, err := parseInfo(req.r.URL.Query().Get("info"))
	if err != nil {
		return nil, err
	}
	presence := strings.HasPrefix(name, presencePrefix)
	if info&InfoUserCount != 0 && !presence {
		return nil, apiErrorf(http.StatusBadRequest, reasonInvalid, "info=user_count is only for presence channels, not %q", name)
	}
	ci, err := h.cfg.Backend.Channel(req.app, name, info)
	if err != nil {
		return nil, err
	}
	a := makeAttrs(ci, info, presence)
	occupied := ci.Occupied
	a.Occupied = &occupied // a pointer, so omitempty keeps a false
	return a, nil
}

// users is GET /apps/{id}/channels/{name}/users: {"users": [{"id": ...}, ...]}.
func (h *HTTPAPI) users(req *request, name string) (any, error) {
	if !validChannelName(name) {
		return nil, invalidChannel(name)
	}
	if !strings.HasPrefix(name, presencePrefix) {
		return nil, apiErrorf(http.StatusBadRequest, reasonInvalid, "users are only listed for presence channels, not %q", name)
	}
	ids, err := h.cfg.Backend.Users(req.app, name)
	if err != nil {
		return nil, err
	}
	type user struct {
		ID string `json:"id"`
	}
	out := make([]user, len(ids))
	for i, id := range ids {
		out[i].ID = id
	}
	return map[string]any{"users": out}, nil
}

// terminate is POST /apps/{id}/users/{user}/terminate_connections: {}.
func (h *HTTPAPI) terminate(req *request, user string) (any, error) {
	if err := validUserID(user); err != nil {
		return nil, err
	}
	if err := h.cfg.Backend.TerminateUser(req.app, user); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

// userEvent is POST /apps/{id}/users/{user}/events with {"name", "data"}: {}.
func (h *HTTPAPI) userEvent(req *request, user string) (any, error) {
	if err := validUserID(user); err != nil {
		return nil, err
	}
	var e event
	if err := decodeJSON(req.body, &e); err != nil {
		return nil, err
	}
	if len(e.Channels) > 0 || e.Channel != "" || e.SocketID != "" || e.Info != "" {
		return nil, apiErrorf(http.StatusBadRequest, reasonInvalid, "a user event has only \"name\" and \"data\"")
	}
	e.Channel = userChannelPrefix + user
	c, err := h.check(req.app, &e, false)
	if err != nil {
		return nil, err
	}
	if err := h.publish(req.app, c); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

// parseInfo reads an info parameter: attribute names separated by commas.
func parseInfo(s string) (Info, error) {
	var info Info
	for s != "" {
		var a string
		a, s, _ = strings.Cut(s, ",")
		switch strings.TrimSpace(a) {
		case "user_count":
			info |= InfoUserCount
		case "subscription_count":
			info |= InfoSubscriptionCount
		case "":
		default:
			return 0, apiErrorf(http.StatusBadRequest, reasonInvalid, "unknown info attribute %q (user_count, subscription_count)", a)
		}
	}
	return info, nil
}

func maxEventBytes(app *App) int {
	if app.MaxEventBytes > 0 {
		return app.MaxEventBytes
	}
	return DefaultMaxEventBytes
}

func validEventName(name string) error {
	switch {
	case name == "":
		return apiErrorf(http.StatusBadRequest, reasonInvalid, "event name is required")
	case utf8.RuneCountInString(name) > maxNameLen:
		return apiErrorf(http.StatusBadRequest, reasonInvalid, "event name longer than %d characters", maxNameLen)
	case !utf8.ValidString(name):
		return apiErrorf(http.StatusBadRequest, reasonInvalid, "event name is not valid UTF-8")
	case strings.HasPrefix(name, "pusher:"), strings.HasPrefix(name, "pusher_internal:"):
		// The protocol's own events: a publisher must not forge them to clients.
		return apiErrorf(http.StatusBadRequest, reasonInvalid, "event name %q is reserved (pusher: and pusher_internal: prefixes)", name)
	}
	return nil
}

func validUserID(id string) error {
	switch {
	case id == "":
		return apiErrorf(http.StatusBadRequest, reasonInvalid, "user id is required")
	case len(id) > maxUserIDLen:
		return apiErrorf(http.StatusBadRequest, reasonInvalid, "user id longer than %d bytes", maxUserIDLen)
	case !utf8.ValidString(id):
		return apiErrorf(http.StatusBadRequest, reasonInvalid, "user id is not valid UTF-8")
	}
	return nil
}

// validSocketID is the SDKs' rule for socket IDs: digits, a dot, digits.
func validSocketID(s string) bool {
	dot := strings.IndexByte(s, '.')
	return dot > 0 && dot < len(s)-1 && allDigits(s[:dot]) && allDigits(s[dot+1:])
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return len(s) > 0
}

// validChannelName is ValidChannelName for a channel named by the HTTP API's routes
// and events, where the reserved #server-to-user- names are handled before it
// (SendToUser) and refused otherwise.
func validChannelName(name string) bool {
	return name != "" && name[0] != '#' && ValidChannelName(name) == nil
}

func invalidChannel(name string) error {
	if len(name) > maxNameLen {
		return apiErrorf(http.StatusBadRequest, reasonInvalid, "channel name longer than %d characters", maxNameLen)
	}
	return apiErrorf(http.StatusBadRequest, reasonInvalid, "invalid channel name %q (1-%d of A-Z a-z 0-9 _ - = @ , . ;)", name, maxNameLen)
}
