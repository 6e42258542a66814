package node

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/pprof"
	"sort"
	"strings"

	"github.com/VictoriaMetrics/metrics"

	"longlink/cluster"
	"longlink/push"
	"longlink/web"
)

// mux serves the API port: /v1/ (push), /metrics, /healthz, /readyz, GET /v1/cluster
// and the demo page when Config.Demo asks for it.
func (n *Node) mux() http.Handler {
	m := http.NewServeMux()
	m.Handle("/v1/", n.api.Handler())
	m.Handle("GET /v1/cluster", n.api.RequireKey(http.HandlerFunc(n.serveCluster)))
	m.HandleFunc("GET /metrics", n.serveMetrics)
	m.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		push.WriteJSON(w, 200, map[string]any{"status": "ok", "node": n.cfg.NodeName})
	})
	m.HandleFunc("GET /readyz", n.serveReady)
	if n.pusherAPI != nil {
		// Signed per app (pusher/sign.go), not by API key; the signed path is the
		// whole request path, so no prefix is stripped.
		m.Handle("/apps/", n.pusherAPI)
	}
	if n.cfg.API.Pprof {
		m.Handle("GET /debug/pprof/", n.api.RequireKey(http.HandlerFunc(pprof.Index)))
		m.Handle("GET /debug/pprof/profile", n.api.RequireKey(http.HandlerFunc(pprof.Profile)))
		m.Handle("GET /debug/pprof/trace", n.api.RequireKey(http.HandlerFunc(pprof.Trace)))
	}
	if h := n.demo(); h != nil {
		m.Handle(web.Prefix, h)
	}
	return m
}

// demo builds the demo page's handler once the addresses are bound.
func (n *Node) demo() http.Handler {
	d := n.cfg.Demo
	if d == nil {
		return nil
	}
	client := Dialable(n.ClientAddrs()[0])
	wc := web.Config{ClientURL: "ws://" + client + "/ws", EndpointURL: "http://" + client + "/v1/endpoint", DevToken: d.DevToken}
	if d.Push {
		wc.Push = web.PushTo("http://"+Dialable(n.APIAddr())+"/v1/push", n.cfg.Push.APIKeys[0])
	}
	h, err := web.NewHandler(wc)
	if err != nil {
		panic("BUG: node: demo page config: " + err.Error()) // built from our own addresses
	}
	return h
}

// Dialable turns a listen address into one a client on this host can dial: an
// unspecified host (":8080", "0.0.0.0", "[::]") becomes 127.0.0.1.
func Dialable(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

func (n *Node) serveMetrics(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	n.set.WritePrometheus(w)
	metrics.WriteProcessMetrics(w)
	// WriteProcessMetrics leaves out the descriptor counts; fdmetrics.go writes them.
	writeFDMetrics(w)
}

// serveReady is 200 only while the node listens, has joined its cluster (when given
// peers) and is not draining, so load balancers send clients only where pushes reach
// them and stop before the drain closes them.
func (n *Node) serveReady(w http.ResponseWriter, r *http.Request) {
	status, code := "ready", 200
	switch {
	case n.draining.Load():
		status, code = "draining", 503
	case !n.ready.Load():
		status, code = "starting", 503
	case !n.Cluster().Joined():
		// --join named peers and none has answered yet: clients sent here now would
		// miss pushes posted elsewhere.
		status, code = "joining", 503
	}
	push.WriteJSON(w, code, map[string]any{"status": status, "node": n.cfg.NodeName})
}

type memberJSON struct {
	Name        string `json:"name"`
	State       string `json:"state"`
	GossipAddr  string `json:"gossip_addr"`
	ClientAddr  string `json:"client_addr"`
	APIAddr     string `json:"api_addr"`
	Connections int    `json:"connections"`
	Draining    bool   `json:"draining"`
	Self        bool   `json:"self"`
}

func (n *Node) serveCluster(w http.ResponseWriter, r *http.Request) {
	ms := n.Cluster().Members()
	if !n.Clustered() {
		ms = []cluster.Member{{Name: n.cfg.NodeName, State: "alive", ClientAddr: n.clientAdvertise(), APIAddr: n.APIAddr(), Self: true}}
	}
	out := make([]memberJSON, 0, len(ms))
	for _, m := range ms {
		if m.Self {
			m.Connections = n.loop.Connections()
		}
		out = append(out, memberJSON{Name: m.Name, State: m.State, GossipAddr: m.GossipAddr, ClientAddr: m.ClientAddr,
			APIAddr: m.APIAddr, Connections: m.Connections, Draining: m.Draining, Self: m.Self})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	push.WriteJSON(w, 200, map[string]any{"node": n.cfg.NodeName, "members": out})
}

// endpoint answers GET /v1/endpoint on the client port: the least-loaded live node
// that is not draining, so SDKs spread themselves over the cluster.
func (n *Node) endpoint() []byte {
	best, bestConns := n.clientAdvertise(), n.loop.Connections()
	bestName := n.cfg.NodeName
	if n.draining.Load() {
		bestConns = int(^uint(0) >> 1)
	}
	if n.Cluster() != nil {
		for _, m := range n.Cluster().Members() {
			if m.Self || m.State != "alive" || m.Draining || m.ClientAddr == "" {
				continue
			}
			if m.Connections < bestConns {
				best, bestConns, bestName = m.ClientAddr, m.Connections, m.Name
			}
		}
	}
	b, _ := json.Marshal(map[string]string{"endpoint": endpointURL(best), "node": bestName})
	return b
}

// endpointURL turns an advertised client address into a URL. A full URL (wss://... behind
// a TLS terminator) is used as it is.
func endpointURL(addr string) string {
	if strings.Contains(addr, "://") {
		return addr
	}
	return "ws://" + addr + "/ws"
}
