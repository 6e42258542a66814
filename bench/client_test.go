package bench

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"
)

// rawServer accepts one connection, answers the upgrade, then runs send.
func rawServer(t *testing.T, send func(c net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		for i := 0; i < 100; i++ { // request head, bounded
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			if line == "\r\n" {
				break
			}
		}
		resp := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
			string(wsAccept) + "\r\n\r\n"
		if _, err := c.Write([]byte(resp)); err != nil {
			return
		}
		send(c)
	}()
	return ln.Addr().String()
}

// startLoop runs an event loop opening one connection to addr, reading
// with a buffer of rbuf bytes.
func startLoop(t *testing.T, addr string, rbuf int) *eloop {
	t.Helper()
	l, err := newLoop()
	if err != nil {
		t.Fatal(err)
	}
	if err := l.setSpec(OpenSpec{Targets: []string{addr}, Count: 1, UserPrefix: "u", TokenSecret: testSecret}); err != nil {
		t.Fatal(err)
	}
	l.rbuf = make([]byte, rbuf)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { l.run(stop); close(done) }()
	t.Cleanup(func() { close(stop); <-done })
	return l
}

func textFrames(n, size int) []byte {
	payload := strings.Repeat("x", size)
	var b []byte
	for i := 0; i < n; i++ {
		b = append(b, 0x81, 126, byte(size>>8), byte(size))
		b = append(b, payload...)
	}
	return b
}

func waitDrop(t *testing.T, l *eloop, reason string, want int64) {
	t.Helper()
	var got int64
	ok := poll(10*time.Second, 5*time.Millisecond, func() bool {
		if err := l.call(func() { got = l.drops[reason] }); err != nil {
			t.Fatal(err)
		}
		return got == 1
	})
	if !ok || l.received.Load() != want {
		t.Fatalf("drops[%s]=%d, received %d of %d", reason, got, l.received.Load(), want)
	}
}

// With edge-triggered epoll every byte must be read on the edge that
// announced it: a burst far larger than the read buffer and than one
// event's read budget (maxReadsPerEvent reads; a 512-byte buffer makes
// that 32 KiB) must all arrive, then the close frame.
func TestLoopReadsWholeBurst(t *testing.T) {
	const n, size = 20000, 300 // about 6 MiB
	addr := rawServer(t, func(c net.Conn) {
		b := textFrames(n, size)
		b = append(b, 0x88, 2, 0x03, 0xE8) // close 1000
		_, _ = c.Write(b)
		// Wait for the client's close reply so our FIN does not race it.
		_, _ = c.Read(make([]byte, 64))
	})
	l := startLoop(t, addr, 512)
	waitDrop(t, l, "close_1000", n)
	if l.opened.Load() != 1 || l.failed.Load() != 0 {
		t.Fatalf("opened %d failed %d", l.opened.Load(), l.failed.Load())
	}
}

// Data followed at once by the peer's FIN arrive on one edge; a short read
// must not end reading there, or the FIN would never be seen.
func TestLoopSeesFINAfterData(t *testing.T) {
	for round := 0; round < 20; round++ {
		addr := rawServer(t, func(c net.Conn) {
			_, _ = c.Write(textFrames(3, 10))
			// returning closes c: FIN right behind the frames
		})
		l := startLoop(t, addr, 64<<10)
		waitDrop(t, l, "eof", 3)
	}
}
