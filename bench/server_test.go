package bench

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"
)

// fakeNode is a small test-only gateway speaking the longlink wire contract:
// /ws?token=JWT, POST /v1/push fan-out and /metrics. It uses a goroutine per
// connection, which is fine for the hundreds of connections unit tests use.
type fakeNode struct {
	secret, key string
	ws, api     *http.Server
	wsAddr      string
	apiAddr     string

	mu    sync.Mutex // guards conns
	conns map[*websocket.Conn]string

	pushes atomic.Int64
	pings  atomic.Int64 // pings clients sent
	pongs  atomic.Int64 // pongs clients answered
}

func startFakeNode(t *testing.T, secret, key string) *fakeNode {
	t.Helper()
	n := &fakeNode{secret: secret, key: key, conns: map[*websocket.Conn]string{}}
	wsL, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	apiL, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n.wsAddr, n.apiAddr = wsL.Addr().String(), apiL.Addr().String()
	wsMux := http.NewServeMux()
	wsMux.HandleFunc("/ws", n.serveWS)
	apiMux := http.NewServeMux()
	apiMux.HandleFunc("/v1/push", n.servePush)
	apiMux.HandleFunc("/metrics", n.serveMetrics)
	n.ws = &http.Server{Handler: wsMux}
	n.api = &http.Server{Handler: apiMux}
	go n.ws.Serve(wsL)
	go n.api.Serve(apiL)
	t.Cleanup(func() {
		n.ws.Close()
		n.api.Close()
		n.mu.Lock()
		for c := range n.conns {
			c.Close()
		}
		n.mu.Unlock()
	})
	return n
}

var upgrader = websocket.Upgrader{}

func (n *fakeNode) serveWS(w http.ResponseWriter, r *http.Request) {
	tok, err := jwt.Parse(r.URL.Query().Get("token"), func(*jwt.Token) (any, error) { return []byte(n.secret), nil },
		jwt.WithValidMethods([]string{"HS256"}))
	if err != nil {
		http.Error(w, "bad token", http.StatusUnauthorized)
		return
	}
	sub, _ := tok.Claims.GetSubject()
	c, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	n.mu.Lock()
	n.conns[c] = sub
	n.mu.Unlock()
	c.SetPingHandler(func(data string) error {
		n.pings.Add(1)
		return c.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(time.Second))
	})
	c.SetPongHandler(func(data string) error {
		if data == "hi" {
			n.pongs.Add(1)
		}
		return nil
	})
	// Ping right away so the test sees the client answer with a pong.
	_ = c.WriteControl(websocket.PingMessage, []byte("hi"), time.Now().Add(time.Second))
	for {
		if _, _, err := c.ReadMessage(); err != nil {
			break
		}
	}
	n.mu.Lock()
	delete(n.conns, c)
	n.mu.Unlock()
	c.Close()
}

type pushReq struct {
	To struct {
		Users []string `json:"users"`
		All   bool     `json:"all"`
	} `json:"to"`
	Data string `json:"data"`
}

func (n *fakeNode) servePush(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+n.key {
		http.Error(w, `{"error":"unauthorized"}`, http.StatusUnauthorized)
		return
	}
	var p pushReq
	if err := json.NewDecoder(r.Body).Decode(&p); err != nil {
		http.Error(w, `{"error":"bad json"}`, http.StatusBadRequest)
		return
	}
	want := map[string]bool{}
	for _, u := range p.To.Users {
		want[u] = true
	}
	n.mu.Lock()
	var targets []*websocket.Conn
	for c, sub := range n.conns {
		if p.To.All || want[sub] {
			targets = append(targets, c)
		}
	}
	n.mu.Unlock()
	delivered := 0
	for _, c := range targets {
		// gorilla allows one concurrent writer; the reader goroutine only
		// writes control frames through its own locked path.
		n.mu.Lock()
		err := c.WriteMessage(websocket.TextMessage, []byte(p.Data))
		n.mu.Unlock()
		if err == nil {
			delivered++
		}
	}
	n.pushes.Add(1)
	w.WriteHeader(http.StatusAccepted)
	fmt.Fprintf(w, `{"id":"%d","delivered":%d}`, n.pushes.Load(), delivered)
}

func (n *fakeNode) serveMetrics(w http.ResponseWriter, r *http.Request) {
	n.mu.Lock()
	c := len(n.conns)
	n.mu.Unlock()
	fmt.Fprintf(w, "# TYPE longlink_connections gauge\nlonglink_connections %d\n", c)
	fmt.Fprintf(w, "process_resident_memory_bytes %d\n", 50<<20+c*10000)
	fmt.Fprintf(w, "go_memstats_heap_inuse_bytes %d\n", 10<<20+c*4000)
	fmt.Fprintf(w, "process_cpu_seconds_total 1.5\n")
	fmt.Fprintf(w, "longlink_pushes_total{target=\"user\"} %s\n", strconv.FormatInt(n.pushes.Load(), 10))
}
