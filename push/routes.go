package push

import (
	"net/http"
	"strings"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// route is one endpoint. Handlers return the status they wrote so the
// wrapper can count it without wrapping the ResponseWriter (an allocation
// per request).
type route struct {
	method string
	path   string // template, also the metrics route label
	ok     int    // success status, pre-created in metrics
	body   bool   // reads a JSON body, so Content-Type is checked
	h      func(a *API, w http.ResponseWriter, r *http.Request) int
}

var apiRoutes = []route{
	// POST /v1/push is served by ServePush, which authenticates, checks and counts
	// itself (the API server calls it directly); servePushHTTP only adapts net/http.
	{http.MethodPost, "/v1/push", http.StatusAccepted, true, nil},
	{http.MethodPost, "/v1/push/batch", http.StatusOK, true, (*API).handleBatch},
	{http.MethodPost, "/v1/rooms/{room}/join", http.StatusOK, true, (*API).handleJoin},
	{http.MethodPost, "/v1/rooms/{room}/leave", http.StatusOK, true, (*API).handleLeave},
	{http.MethodGet, "/v1/rooms/{room}", http.StatusOK, false, (*API).handleRoom},
	{http.MethodGet, "/v1/users/{id}", http.StatusOK, false, (*API).handleUser},
	{http.MethodDelete, "/v1/users/{id}", http.StatusOK, true, (*API).handleKickUser},
	{http.MethodDelete, "/v1/connections/{id}", http.StatusOK, true, (*API).handleKickConnection},
	{http.MethodGet, "/v1/stats", http.StatusOK, false, (*API).handleStats},
	{http.MethodGet, "/v1/messages/{id}", http.StatusOK, false, (*API).handleMessage},
}

// unmatchedRoute labels requests that match no route.
const unmatchedRoute = "unmatched"

// routes builds the mux: each "METHOD path" pattern, a method-less pattern
// per path that answers 405 with Allow, and a catch-all that answers 404,
// so every error is JSON (ServeMux's own 404 and 405 are plain text).
func (a *API) routes(set *metrics.Set) *http.ServeMux {
	mux := http.NewServeMux()
	byPath := map[string]*routeMetrics{}
	allow := map[string][]string{}
	var paths []string
	for _, rt := range apiRoutes {
		rm := byPath[rt.path]
		if rm == nil {
			rm = newRouteMetrics(set, rt.path, rt.ok, http.StatusBadRequest, http.StatusUnauthorized)
			byPath[rt.path] = rm
			paths = append(paths, rt.path)
		}
		allow[rt.path] = append(allow[rt.path], rt.method)
		if rt.h == nil {
			mux.HandleFunc(rt.method+" "+rt.path, a.servePushHTTP)
			continue
		}
		mux.Handle(rt.method+" "+rt.path, a.wrap(rm, rt.body, rt.h))
	}
	for _, p := range paths {
		allowed := strings.Join(allow[p], ", ")
		if strings.Contains(allowed, http.MethodGet) {
			allowed += ", " + http.MethodHead // ServeMux serves HEAD with the GET handler
		}
		allowHeader := []string{allowed}
		msg := "method %s is not allowed on " + p + "; allowed: " + allowed
		mux.Handle(p, a.wrap(byPath[p], false, func(a *API, w http.ResponseWriter, r *http.Request) int {
			w.Header()["Allow"] = allowHeader
			return a.fail(w, http.StatusMethodNotAllowed, reasonBadRequest, strings.Replace(msg, "%s", r.Method, 1))
		}))
	}
	a.pushRoute = byPath["/v1/push"]
	unmatched := newRouteMetrics(set, unmatchedRoute, http.StatusNotFound, http.StatusUnauthorized)
	mux.Handle("/", a.wrap(unmatched, false, func(a *API, w http.ResponseWriter, r *http.Request) int {
		return a.fail(w, http.StatusNotFound, reasonNotFound, "no route for "+r.Method+" "+r.URL.Path)
	}))
	return mux
}

// wrap authenticates, checks the content type, runs h and records metrics.
// Authentication comes first on every route, unknown ones included, so an
// unauthenticated caller learns nothing about which routes exist.
func (a *API) wrap(rm *routeMetrics, body bool, h func(a *API, w http.ResponseWriter, r *http.Request) int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		status := a.authenticate(w, r)
		if status == 0 && body {
			status = a.checkContentType(w, r)
		}
		if status == 0 {
			status = h(a, w, r)
		}
		rm.counter(status).Inc()
		rm.hist.UpdateDuration(start)
	})
}
