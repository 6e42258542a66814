package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	role := flag.String("role", "writer", "writer, reader (started by the writer), or push (the floor under longlink bench push: see push.go)")
	n := flag.Int("n", 1000, "sockets (each process must stay under its open-files limit)")
	rounds := flag.Int("rounds", 10, "rounds; each writes once to every socket")
	gap := flag.Duration("gap", 50*time.Millisecond, "sleep between rounds")
	mode := flag.String("mode", "blocking", "reader mode: blocking, busy, nap or none")
	addr := flag.String("addr", "", "writer address (reader role only)")
	clientAddr := flag.String("client-addr", "127.0.0.1:28080", "push role: WebSocket listen address")
	apiAddr := flag.String("api-addr", "127.0.0.1:28081", "push role: HTTP API listen address")
	pprofAddr := flag.String("pprof-addr", "", "push role: serve net/http/pprof here (off when empty)")
	flag.Parse()
	raiseNoFile()
	var err error
	switch *role {
	case "writer":
		err = writer(*n, *rounds, *gap, *mode)
	case "reader":
		err = reader(*n, *mode, *addr)
	case "push":
		err = pushFloor(*clientAddr, *apiAddr, *pprofAddr)
	default:
		err = fmt.Errorf("unknown -role %q", *role)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
}

func raiseNoFile() {
	var r unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &r) == nil {
		r.Cur = r.Max
		_ = unix.Setrlimit(unix.RLIMIT_NOFILE, &r)
	}
}

func writer(n, rounds int, gap time.Duration, mode string) error {
	if n < 1 || rounds < 1 {
		return errors.New("-n and -rounds must be at least 1")
	}
	runtime.LockOSThread()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	child := exec.Command(self, "-role", "reader", "-n", strconv.Itoa(n), "-mode", mode, "-addr", ln.Addr().String())
	child.Stderr = os.Stderr
	if err := child.Start(); err != nil {
		return err
	}
	defer func() { child.Process.Kill(); child.Wait() }()

	fds := make([]int, 0, n)
	files := make([]*os.File, 0, n) // keep the duplicated descriptors open
	ln.(*net.TCPListener).SetDeadline(time.Now().Add(60 * time.Second))
	for len(fds) < n {
		c, err := ln.Accept()
		if err != nil {
			return fmt.Errorf("accepted %d of %d: %w", len(fds), n, err)
		}
		f, err := c.(*net.TCPConn).File()
		c.Close()
		if err != nil {
			return err
		}
		files = append(files, f)
		fds = append(fds, int(f.Fd()))
	}
	ln.Close()
	frame := make([]byte, 40)
	frame[0], frame[1] = 0x81, 38 // FIN text frame, 38-byte payload
	for i := 2; i < len(frame); i++ {
		frame[i] = 'a' + byte(i%26)
	}
	write := func() error {
		for _, fd := range fds {
			if _, err := unix.Write(fd, frame); err != nil {
				return err
			}
		}
		return nil
	}
	if err := write(); err != nil { // warm-up, not measured
		return err
	}
	time.Sleep(300 * time.Millisecond)

	segs0 := segments(fds)
	steal0, total0 := hostCPU()
	ru0 := rusage()
	var inLoop time.Duration
	for r := 0; r < rounds; r++ {
		c0 := threadCPU()
		if err := write(); err != nil {
			return err
		}
		inLoop += threadCPU() - c0
		if gap > 0 {
			time.Sleep(gap)
		}
	}
	ru1 := rusage()
	steal1, total1 := hostCPU()
	segs1 := segments(fds)
	writes := float64(n * rounds)
	fmt.Printf("sockets %d, rounds %d, gap %v, reader %s: %d writes of %d bytes\n", n, rounds, gap, mode, n*rounds, len(frame))
	fmt.Printf("CPU per write   %.2f µs in the write loop (thread clock); %.2f µs process getrusage incl. sleeps\n",
		float64(inLoop)/1e3/writes, float64(ru1-ru0)/1e3/writes)
	fmt.Printf("TCP segments    %.2f data segments sent per write\n", float64(segs1-segs0)/writes)
	fmt.Printf("host steal      %.1f%% of CPU time\n", 100*float64(steal1-steal0)/float64(max(1, total1-total0)))
	runtime.KeepAlive(files)
	return nil
}

func reader(n int, mode, addr string) error {
	runtime.LockOSThread()
	ap, err := net.ResolveTCPAddr("tcp4", addr)
	if err != nil {
		return err
	}
	sa := &unix.SockaddrInet4{Port: ap.Port}
	copy(sa.Addr[:], ap.IP.To4())
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return err
	}
	for i := 0; i < n; i++ {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("socket %d: %w", i, err)
		}
		if err := unix.Connect(fd, sa); err != nil {
			return fmt.Errorf("connect %d: %w", i, err)
		}
		unix.SetNonblock(fd, true)
		if mode != "none" {
			if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}); err != nil {
				return err
			}
		}
	}
	if mode == "none" {
		time.Sleep(time.Hour) // the writer kills this process when it is done
		return nil
	}
	timeout := 0
	switch mode {
	case "blocking":
		timeout = -1
	case "busy", "nap":
	default:
		return fmt.Errorf("unknown -mode %q", mode)
	}
	evs := make([]unix.EpollEvent, 256)
	buf := make([]byte, 4096)
	nap := unix.NsecToTimespec(100_000)
	for {
		k, err := unix.EpollWait(ep, evs, timeout)
		if err != nil && err != unix.EINTR {
			return err
		}
		for i := 0; i < k; i++ {
			for {
				m, err := unix.Read(int(evs[i].Fd), buf)
				if m == 0 && err == nil {
					return nil // the writer is gone
				}
				if m < len(buf) {
					break
				}
			}
		}
		if mode == "nap" && k < 16 {
			unix.Nanosleep(&nap, nil)
		}
	}
}

// threadCPU is this thread's CPU time from the scheduler's precise clock.
func threadCPU() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		panic(err)
	}
	return time.Duration(ts.Nano())
}

func rusage() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func segments(fds []int) (dataOut uint64) {
	for _, fd := range fds {
		if ti, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO); err == nil {
			dataOut += uint64(ti.Data_segs_out)
		}
	}
	return dataOut
}

// hostCPU returns the steal and total jiffies from the first line of /proc/stat.
func hostCPU() (steal, total uint64) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	line, _ := bufio.NewReader(f).ReadString('\n')
	for i, s := range strings.Fields(line)[1:] {
		v, _ := strconv.ParseUint(s, 10, 64)
		if i < 8 {
			total += v
		}
		if i == 7 {
			steal = v
		}
	}
	return steal, total
}
