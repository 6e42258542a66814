package main

import (
	"bufio"
	"bytes"
	"compress/flate"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gorilla/websocket"

	"longlink/internal/testutil"
)

// json2K is the shared 2 KB JSON payload (testutil.JSON2K).
func json2K() string { return string(testutil.JSON2K()) }

// TestDeflateThroughBinary: the binary negotiates permessage-deflate with a gorilla
// client by default, delivers a 2 KB JSON push compressed once, and declines every
// offer with --deflate=false.
func TestDeflateThroughBinary(t *testing.T) {
	msg := json2K()
	for _, on := range []bool{true, false} {
		t.Run(fmt.Sprintf("deflate=%v", on), func(t *testing.T) {
			n := startBinary(t, "--deflate="+strconv.FormatBool(on))
			d := websocket.Dialer{EnableCompression: true}
			var conns []*websocket.Conn
			for i := range 3 {
				c, resp, err := d.Dial("ws://"+n.Client+"/ws?token="+testutil.Token(t, n.secret, fmt.Sprintf("z%d", i)), nil)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				ext := resp.Header.Get("Sec-WebSocket-Extensions")
				if on != (ext == "permessage-deflate; server_no_context_takeover; client_no_context_takeover") || !on && ext != "" {
					t.Fatalf("--deflate=%v: answer %q", on, ext)
				}
				conns = append(conns, c)
			}
			testutil.WaitFor(t, 5*time.Second, "3 connections", func() bool { return metric(t, n, "longlink_connections") == 3 })
			n.push(t, `{"to":{"all":true},"data":`+msg+`}`)
			for _, c := range conns {
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				if _, b, err := c.ReadMessage(); err != nil || string(b) != msg {
					t.Fatalf("got %d bytes, %v", len(b), err)
				}
			}
			want := 0.0
			if on {
				want = 1
			}
			if got := metric(t, n, "longlink_deflate_messages_total"); got != want {
				t.Fatalf("longlink_deflate_messages_total = %v, want %v (once for 3 recipients)", got, want)
			}
			if on && metric(t, n, "longlink_deflate_frames_total") != 3 {
				t.Fatal("not 3 compressed frames")
			}
		})
	}
}

// metric scrapes one unlabelled metric of n's /metrics.
func metric(t *testing.T, n *testNode, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + n.API + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return -1
}

// TestDeflateBroadcastMeasure is the measurement of docs/performance.md,
// "Compression": LONGLINK_MEASURE_DEFLATE=N clients (raw, in this process) of the
// real binary, every one offering permessage-deflate or none; ROUNDS (20) broadcasts
// of a 2 KB JSON message through the API; bytes received per recipient per message,
// and the server process's CPU (utime+stime from /proc, 10 ms ticks) per delivery.
func TestDeflateBroadcastMeasure(t *testing.T) {
	nClients, _ := strconv.Atoi(os.Getenv("LONGLINK_MEASURE_DEFLATE"))
	if nClients == 0 {
		t.Skip("set LONGLINK_MEASURE_DEFLATE=<clients> to measure")
	}
	rounds := 20
	if r, _ := strconv.Atoi(os.Getenv("ROUNDS")); r > 0 {
		rounds = r
	}
	msg := json2K()
	for _, on := range []bool{false, true} {
		n := startBinary(t, "--max-conns", "-1", "--log-level", "warn")
		var frames, wire atomic.Int64
		var wg sync.WaitGroup
		var mu sync.Mutex
		var conns []net.Conn
		sem := make(chan struct{}, 64)
		for i := range nClients {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				c, err := net.Dial("tcp", n.Client)
				if err != nil {
					t.Error(err)
					return
				}
				key := make([]byte, 16)
				rand.Read(key)
				req := "GET /ws?token=" + testutil.Token(t, n.secret, fmt.Sprintf("m%d", i)) + " HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
					"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + base64.StdEncoding.EncodeToString(key) + "\r\n"
				if on {
					req += "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
				}
				c.Write([]byte(req + "\r\n"))
				br := bufio.NewReader(c)
				resp, err := http.ReadResponse(br, nil)
				if err != nil || resp.StatusCode != 101 || (resp.Header.Get("Sec-WebSocket-Extensions") != "") != on {
					t.Errorf("upgrade: %v %v", resp, err)
					c.Close()
					return
				}
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
				go func() {
					cr := &countReader{r: br, n: &wire}
					for {
						f, err := ws.ReadFrame(cr)
						if err != nil {
							return
						}
						if f.Header.OpCode == ws.OpText {
							if f.Header.Rsv1() && frames.Load() == 0 {
								p, _ := io.ReadAll(flate.NewReader(io.MultiReader(bytes.NewReader(f.Payload), strings.NewReader("\x00\x00\xff\xff\x01\x00\x00\xff\xff"))))
								if string(p) != msg {
									t.Error("compressed frame does not inflate to the message")
								}
							}
							frames.Add(1)
						}
					}
				}()
			}()
		}
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
		testutil.WaitFor(t, 30*time.Second, "connections", func() bool { return metric(t, n, "longlink_connections") == float64(nClients) })
		pid := n.Cmd.Process.Pid
		wire0, cpu0, t0 := wire.Load(), procCPU(t, pid), time.Now()
		for r := 1; r <= rounds; r++ {
			n.push(t, `{"to":{"all":true},"data":`+msg+`,"history":false}`)
			testutil.WaitFor(t, 30*time.Second, "round", func() bool { return frames.Load() >= int64(r*nClients) })
		}
		cpu, wall := procCPU(t, pid)-cpu0, time.Since(t0)
		deliveries := float64(rounds * nClients)
		t.Logf("deflate=%v: %d clients × %d rounds: %.0f bytes/recipient/message on the wire, server CPU %.2f µs/recipient (%v for %d deliveries, wall %v), compressed %v times",
			on, nClients, rounds, float64(wire.Load()-wire0)/deliveries, cpu.Seconds()*1e6/deliveries, cpu, int(deliveries), wall.Round(time.Millisecond),
			metric(t, n, "longlink_deflate_messages_total"))
		for _, c := range conns {
			c.Close()
		}
		n.Cmd.Process.Kill()
		<-n.Done
	}
}

type countReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c *countReader) Read(p []byte) (int, error) {
	k, err := c.r.Read(p)
	c.n.Add(int64(k))
	return k, err
}

// procCPU is the user+system CPU time of process pid so far.
func procCPU(t *testing.T, pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond // USER_HZ = 100
}
