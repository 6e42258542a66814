package main

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	_ "net/http/pprof"
	"sync"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fasthttp"
)

// pushFloor is the floor under `longlink bench push` (plain protocol): it parses the
// upgrade, takes the user from the token's "sub" claim without checking the
// signature, and answers POST /v1/push by encoding the data once and writing it to
// each of the users' connections from the request's own goroutine, then answering
// {"delivered":n}. No history, no queue, no loop: what is left is the HTTP request,
// the JSON scan and one write(2) per recipient. /metrics serves the process figures
// bench scrapes (process_cpu_seconds_total, RSS, longlink_connections).
//
// Who owns what: each connection's reader goroutine owns its socket's reads; writes
// to a connection hold its mutex; the user index is guarded by floorHub.mu.
type floorHub struct {
	mu    sync.RWMutex
	users map[string][]*floorConn
	n     int
}

type floorConn struct {
	mu   sync.Mutex
	c    net.Conn
	user string
}

func (fc *floorConn) write(b []byte) bool {
	fc.mu.Lock()
	_, err := fc.c.Write(b)
	fc.mu.Unlock()
	return err == nil
}

// writeOrDrop writes b and drops the connection from the index when that fails.
func (h *floorHub) writeOrDrop(fc *floorConn, b []byte) bool {
	if fc.write(b) {
		return true
	}
	go func() { fc.c.Close(); h.remove(fc) }()
	return false
}

func pushFloor(clientAddr, apiAddr, pprofAddr string) error {
	if pprofAddr != "" {
		go http.ListenAndServe(pprofAddr, nil) // net/http/pprof's handlers
	}
	h := &floorHub{users: map[string][]*floorConn{}}
	metrics.NewGauge("longlink_connections", func() float64 {
		h.mu.RLock()
		defer h.mu.RUnlock()
		return float64(h.n)
	})
	ln, err := net.Listen("tcp", clientAddr)
	if err != nil {
		return err
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go h.serveConn(c)
		}
	}()
	srv := &fasthttp.Server{Handler: h.api, Concurrency: 100000, ReadBufferSize: 8192}
	fmt.Printf("push floor: clients ws://%s/ws, api http://%s (/v1/push, /metrics, /healthz)\n", clientAddr, apiAddr)
	return srv.ListenAndServe(apiAddr)
}

var errBadUpgrade = errors.New("bad upgrade")

func (h *floorHub) serveConn(c net.Conn) {
	keep := false
	defer func() {
		if !keep {
			c.Close()
		}
	}()
	br := bufio.NewReaderSize(c, 4096)
	var token, key []byte
	for first := true; ; first = false {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		if first {
			if i := bytes.Index(line, []byte("token=")); i >= 0 {
				t := line[i+6:]
				if j := bytes.IndexAny(t, "& "); j >= 0 {
					t = t[:j]
				}
				token = append([]byte(nil), t...)
			}
			continue
		}
		if k, v, ok := bytes.Cut(line, []byte(":")); ok && bytes.EqualFold(bytes.TrimSpace(k), []byte("Sec-WebSocket-Key")) {
			key = append([]byte(nil), bytes.TrimSpace(v)...)
		}
	}
	user, err := subOf(token)
	if err != nil || len(key) == 0 {
		io.WriteString(c, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
		return
	}
	sum := sha1.Sum(append(key, "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"...))
	if _, err := io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "+
		base64.StdEncoding.EncodeToString(sum[:])+"\r\n\r\n"); err != nil {
		return
	}
	fc := &floorConn{c: c, user: user}
	h.mu.Lock()
	h.users[user] = append(h.users[user], fc)
	h.n++
	h.mu.Unlock()
	// Nothing is read after the upgrade: the floor keeps no goroutine, buffer or
	// timer per connection (a reader goroutine each costs the floor its tail in
	// GC stack scans at 19,000 connections). A connection the client closes stays
	// in the index until a write to it fails, when it is dropped.
	keep = true
}

func (h *floorHub) remove(fc *floorConn) {
	h.mu.Lock()
	defer h.mu.Unlock()
	cs := h.users[fc.user]
	for i, c := range cs {
		if c == fc {
			cs[i] = cs[len(cs)-1]
			cs = cs[:len(cs)-1]
			h.n--
			break
		}
	}
	if len(cs) == 0 {
		delete(h.users, fc.user)
	} else {
		h.users[fc.user] = cs
	}
}

// subOf returns the "sub" claim of a JWT, unverified.
func subOf(token []byte) (string, error) {
	parts := bytes.Split(token, []byte("."))
	if len(parts) != 3 {
		return "", errBadUpgrade
	}
	claims, err := base64.RawURLEncoding.DecodeString(string(parts[1]))
	if err != nil {
		return "", err
	}
	_, rest, ok := bytes.Cut(claims, []byte(`"sub":"`))
	if !ok {
		return "", errBadUpgrade
	}
	end := bytes.IndexByte(rest, '"')
	if end < 0 {
		return "", errBadUpgrade
	}
	return string(rest[:end]), nil
}

var (
	usersKey = []byte(`"users":[`)
	dataKey  = []byte(`"data":"`)
	allKey   = []byte(`"all":true`)
)

func (h *floorHub) api(ctx *fasthttp.RequestCtx) {
	switch string(ctx.Path()) {
	case "/healthz":
		ctx.SetBodyString("ok")
		return
	case "/metrics":
		metrics.WritePrometheus(ctx, true)
		return
	case "/v1/push":
	default:
		ctx.SetStatusCode(404)
		return
	}
	body := ctx.PostBody()
	_, d, ok := bytes.Cut(body, dataKey)
	end := bytes.IndexByte(d, '"')
	if !ok || end < 0 {
		ctx.SetStatusCode(400)
		ctx.SetBodyString(`{"error":"want \"data\" as a string"}`)
		return
	}
	payload := d[:end]
	frame := make([]byte, 0, 14+len(payload))
	frame = appendTextFrame(frame, payload)
	n := 0
	h.mu.RLock()
	if bytes.Contains(body, allKey) {
		for _, cs := range h.users {
			for _, c := range cs {
				if h.writeOrDrop(c, frame) {
					n++
				}
			}
		}
	} else if _, us, ok := bytes.Cut(body, usersKey); ok {
		if e := bytes.IndexByte(us, ']'); e >= 0 {
			us = us[:e]
		}
		for len(us) > 0 {
			i := bytes.IndexByte(us, '"')
			if i < 0 {
				break
			}
			us = us[i+1:]
			j := bytes.IndexByte(us, '"')
			if j < 0 {
				break
			}
			for _, c := range h.users[string(us[:j])] {
				if h.writeOrDrop(c, frame) {
					n++
				}
			}
			us = us[j+1:]
		}
	}
	h.mu.RUnlock()
	ctx.SetContentType("application/json")
	fmt.Fprintf(ctx, `{"delivered":%d}`, n)
}

func appendTextFrame(b, payload []byte) []byte {
	n := len(payload)
	switch {
	case n < 126:
		b = append(b, 0x81, byte(n))
	case n < 1<<16:
		b = append(b, 0x81, 126, byte(n>>8), byte(n))
	default:
		b = append(b, 0x81, 127, 0, 0, 0, 0, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return append(b, payload...)
}
