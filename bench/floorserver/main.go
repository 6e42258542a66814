// Command floorserver is the floor under the gateway's push path: a server that only
// parses the WebSocket upgrade and, for each push, write(2)s one frame encoded once to
// each of the user's connections from the API request's own goroutine, then answers.
// No token check, no streams, no history, no cluster, no event loop: what is left is
// the cost no WebSocket push server can avoid on this host. `longlink bench push` and
// `broadcast` drive it exactly as they drive a node (same flags, same clients), so the
// two reports compare one to one (bench/scripts/floorab.sh runs both in one series).
//
//	go run ./bench/floorserver -client-addr 127.0.0.1:29080 -api-addr 127.0.0.1:29081
//
// It speaks what the bench's plain clients need: GET /ws?token=<JWT> (the user is the
// token's "sub", read without verifying), frames from clients are read and dropped
// (a close is answered by closing), POST /v1/push with {"to":{"users":[...]} or
// {"all":true},"data":"<string>"} answered {"delivered":N}, and GET /metrics with
// longlink_connections and the process metrics bench reads.
//
// Who owns what: one goroutine per client connection reads it; the users map is
// guarded by mu; each connection's writes are serialised by its own mutex (pushes to
// one user from several API goroutines).
package main

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/VictoriaMetrics/metrics"
	"github.com/gobwas/ws"
)

type conn struct {
	mu sync.Mutex
	c  net.Conn
}

type server struct {
	mu    sync.Mutex
	users map[string]map[*conn]struct{}
	open  atomic.Int64
	seq   atomic.Int64
}

func main() {
	clientAddr := flag.String("client-addr", "127.0.0.1:29080", "WebSocket listen address")
	apiAddr := flag.String("api-addr", "127.0.0.1:29081", "push API listen address")
	flag.Parse()
	s := &server{users: map[string]map[*conn]struct{}{}}
	ln, err := net.Listen("tcp", *clientAddr)
	if err != nil {
		log.Fatal(err)
	}
	set := metrics.NewSet()
	set.NewGauge("longlink_connections", func() float64 { return float64(s.open.Load()) })
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/push", s.push)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, `{"status":"ok"}`) })
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		set.WritePrometheus(w)
		metrics.WriteProcessMetrics(w)
	})
	go func() { log.Fatal(http.ListenAndServe(*apiAddr, mux)) }()
	fmt.Printf("floorserver: clients ws://%s/ws, api http://%s\n", ln.Addr(), *apiAddr)
	for {
		c, err := ln.Accept()
		if err != nil {
			log.Print(err)
			continue
		}
		go s.serve(c)
	}
}

// serve upgrades c and reads it until it closes.
func (s *server) serve(nc net.Conn) {
	defer nc.Close()
	br := bufio.NewReaderSize(nc, 4096)
	line, err := br.ReadString('\n')
	if err != nil {
		return
	}
	var key string
	for {
		h, err := br.ReadString('\n')
		if err != nil {
			return
		}
		h = strings.TrimSpace(h)
		if h == "" {
			break
		}
		if k, v, ok := strings.Cut(h, ":"); ok && strings.EqualFold(k, "Sec-WebSocket-Key") {
			key = strings.TrimSpace(v)
		}
	}
	f := strings.Fields(line)
	if len(f) < 2 || key == "" {
		io.WriteString(nc, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
		return
	}
	u, _ := url.Parse(f[1])
	user := subject(u.Query().Get("token"))
	sum := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	if _, err := io.WriteString(nc, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "+
		base64.StdEncoding.EncodeToString(sum[:])+"\r\n\r\n"); err != nil {
		return
	}
	c := &conn{c: nc}
	s.mu.Lock()
	set := s.users[user]
	if set == nil {
		set = map[*conn]struct{}{}
		s.users[user] = set
	}
	set[c] = struct{}{}
	s.mu.Unlock()
	s.open.Add(1)
	defer func() {
		s.open.Add(-1)
		s.mu.Lock()
		delete(s.users[user], c)
		if len(s.users[user]) == 0 {
			delete(s.users, user)
		}
		s.mu.Unlock()
	}()
	for {
		h, err := ws.ReadHeader(br)
		if err != nil {
			return
		}
		if _, err := io.CopyN(io.Discard, br, h.Length); err != nil {
			return
		}
		if h.OpCode == ws.OpClose {
			return
		}
	}
}

// subject is the "sub" of a JWT, unverified ("" when it has none).
func subject(token string) string {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return ""
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return ""
	}
	var claims struct {
		Sub string `json:"sub"`
	}
	json.Unmarshal(b, &claims)
	return claims.Sub
}

type pushBody struct {
	To struct {
		Users []string `json:"users"`
		All   bool     `json:"all"`
	} `json:"to"`
	Data string `json:"data"`
}

// push writes the frame, encoded once, to every connection of the named users (or of
// everyone) from this goroutine, then answers with how many it was written to.
func (s *server) push(w http.ResponseWriter, r *http.Request) {
	var b pushBody
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&b); err != nil {
		http.Error(w, `{"error":"bad body"}`, 400)
		return
	}
	frame := make([]byte, 0, len(b.Data)+10)
	var hdr [ws.MaxHeaderSize]byte
	n := putHeader(hdr[:], len(b.Data))
	frame = append(append(frame, hdr[:n]...), b.Data...)
	var targets []*conn
	s.mu.Lock()
	if b.To.All {
		for _, set := range s.users {
			for c := range set {
				targets = append(targets, c)
			}
		}
	} else {
		for _, u := range b.To.Users {
			for c := range s.users[u] {
				targets = append(targets, c)
			}
		}
	}
	s.mu.Unlock()
	delivered := 0
	for _, c := range targets {
		c.mu.Lock()
		_, err := c.c.Write(frame)
		c.mu.Unlock()
		if err == nil {
			delivered++
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(202)
	fmt.Fprintf(w, `{"id":"floor-%d","stored":0,"delivered":%d,"forwarded":0}`, s.seq.Add(1), delivered)
}

// putHeader writes an unmasked final text frame header for a payload of n bytes.
func putHeader(b []byte, n int) int {
	b[0] = 0x81
	switch {
	case n < 126:
		b[1] = byte(n)
		return 2
	case n < 1<<16:
		b[1] = 126
		b[2], b[3] = byte(n>>8), byte(n)
		return 4
	}
	b[1] = 127
	for i := 0; i < 8; i++ {
		b[2+i] = byte(uint64(n) >> (56 - 8*i))
	}
	return 10
}
