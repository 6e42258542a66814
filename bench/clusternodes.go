package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The local cluster `bench cluster` runs: N `longlink serve` child processes on
// loopback, node i on ports base+10i (client), +1 (API), +2 (gossip), +3
// (forwarding). The node set is owned by the coordinator goroutine; its methods
// that read /metrics or /v1/cluster may run from the samplers too, and take mu
// only to read the node list.

// clusterNode is one node process the bench started.
type clusterNode struct {
	Index   int    `json:"index"`
	Name    string `json:"name"`
	Pid     int    `json:"pid"`
	Client  string `json:"client_addr"`
	API     string `json:"api_addr"`
	Gossip  string `json:"gossip_addr"`
	Forward string `json:"forward_addr"`
	Log     string `json:"log"`
	Killed  bool   `json:"killed,omitempty"`

	cmd  *exec.Cmd
	done chan struct{} // closed once Wait returned
}

func (n *clusterNode) alive() bool {
	select {
	case <-n.done:
		return false
	default:
		return true
	}
}

// nodeSet starts and stops the nodes, always by pid.
type nodeSet struct {
	bin      string
	dir      string // logs
	basePort int
	secret   string
	apiKey   string
	extra    []string // --node-arg

	mu    sync.Mutex
	nodes []*clusterNode
}

func (s *nodeSet) ports(i int) (client, api, gossip, forward string) {
	p := s.basePort + 10*i
	a := func(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }
	return a(p), a(p + 1), a(p + 2), a(p + 3)
}

// checkPorts fails if a port the nodes 0..n-1 need is taken now (TCP, and UDP
// for gossip).
func (s *nodeSet) checkPorts(n int) error {
	for i := 0; i < n; i++ {
		c, a, g, f := s.ports(i)
		for _, addr := range []string{c, a, g, f} {
			l, err := net.Listen("tcp", addr)
			if err != nil {
				return fmt.Errorf("ports: %s is not free (%v): choose another --base-port", addr, err)
			}
			l.Close()
		}
		u, err := net.ListenPacket("udp", g)
		if err != nil {
			return fmt.Errorf("ports: UDP %s is not free (%v): choose another --base-port", g, err)
		}
		u.Close()
	}
	return nil
}

// start runs node i, joining join ("" for the first node).
func (s *nodeSet) start(i int, join string) (*clusterNode, error) {
	n := &clusterNode{Index: i, Name: fmt.Sprintf("n%02d", i), done: make(chan struct{})}
	n.Client, n.API, n.Gossip, n.Forward = s.ports(i)
	n.Log = filepath.Join(s.dir, n.Name+".log")
	args := []string{"serve", "--node-name", n.Name, "--client-addr", n.Client, "--api-addr", n.API,
		"--gossip-addr", n.Gossip, "--forward-addr", n.Forward, "--demo=false", "--log-level", "warn"}
	if join != "" {
		args = append(args, "--join", join)
	}
	if err := s.exec(n, args); err != nil {
		return nil, err
	}
	return n, nil
}

// exec starts n's process with args and --node-arg, its output to n.Log.
func (s *nodeSet) exec(n *clusterNode, args []string) error {
	logf, err := os.Create(n.Log)
	if err != nil {
		return fmt.Errorf("node %s: %w", n.Name, err)
	}
	c := exec.Command(s.bin, append(args, s.extra...)...)
	// Secrets go through the environment, not the command line that ps shows.
	c.Env = append(os.Environ(), "LONGLINK_TOKEN_SECRET="+s.secret, "LONGLINK_API_KEY="+s.apiKey)
	c.Stdout, c.Stderr = logf, logf
	// A node must not outlive the bench and keep its ports and clients.
	c.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := c.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("cannot start node %s (%s serve): %w", n.Name, s.bin, err)
	}
	n.cmd, n.Pid = c, c.Process.Pid
	go func() { _ = c.Wait(); logf.Close(); close(n.done) }()
	s.mu.Lock()
	s.nodes = append(s.nodes, n)
	s.mu.Unlock()
	return nil
}

// live is the nodes not killed, in index order.
func (s *nodeSet) live() []*clusterNode {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*clusterNode
	for _, n := range s.nodes {
		if !n.Killed {
			out = append(out, n)
		}
	}
	return out
}

func (s *nodeSet) all() []*clusterNode {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*clusterNode(nil), s.nodes...)
}

// kill ends n with SIGKILL, by its pid.
func (s *nodeSet) kill(n *clusterNode) error {
	s.mu.Lock()
	n.Killed = true
	s.mu.Unlock()
	if err := syscall.Kill(n.Pid, syscall.SIGKILL); err != nil {
		return fmt.Errorf("kill -9 %d (%s): %w", n.Pid, n.Name, err)
	}
	return nil
}

// stopAll ends every node it started: SIGTERM by pid, then SIGKILL for any still
// running after grace. It returns the pids that could not be confirmed gone.
func (s *nodeSet) stopAll(grace time.Duration) []int {
	nodes := s.all()
	for _, n := range nodes {
		if n.alive() {
			_ = syscall.Kill(n.Pid, syscall.SIGTERM)
		}
	}
	deadline := time.After(grace)
	for _, n := range nodes {
		select {
		case <-n.done:
		case <-deadline:
		}
	}
	var left []int
	for _, n := range nodes {
		if n.alive() {
			_ = syscall.Kill(n.Pid, syscall.SIGKILL)
			select {
			case <-n.done:
			case <-time.After(5 * time.Second):
				left = append(left, n.Pid)
			}
		}
	}
	return left
}

// apiGet GETs path on api with the key, decoding JSON into out.
func (s *nodeSet) apiGet(ctx context.Context, api, path string, out any) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+api+path, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+s.apiKey)
	resp, err := metricsClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return resp.StatusCode, err
	}
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s%s: %w", api, path, err)
		}
	}
	return resp.StatusCode, nil
}

type clusterView struct {
	Node    string `json:"node"`
	Members []struct {
		Name  string `json:"name"`
		State string `json:"state"`
	} `json:"members"`
}

// states is node api's view: member name to state.
func (s *nodeSet) states(ctx context.Context, api string) (map[string]string, error) {
	var v clusterView
	code, err := s.apiGet(ctx, api, "/v1/cluster", &v)
	if err != nil {
		return nil, err
	}
	if code != 200 {
		return nil, fmt.Errorf("%s/v1/cluster answered %d", api, code)
	}
	out := make(map[string]string, len(v.Members))
	for _, m := range v.Members {
		out[m.Name] = m.State
	}
	return out, nil
}

// converged reports whether every node in nodes is ready and sees all of them
// alive; when not, why (for the error after the wait).
func (s *nodeSet) converged(ctx context.Context, nodes []*clusterNode) (bool, string) {
	for _, n := range nodes {
		if !n.alive() {
			return false, fmt.Sprintf("node %s (pid %d) exited; see %s", n.Name, n.Pid, n.Log)
		}
		code, err := s.apiGet(ctx, n.API, "/readyz", nil)
		if err != nil || code != 200 {
			return false, fmt.Sprintf("node %s not ready (%d %v)", n.Name, code, err)
		}
		st, err := s.states(ctx, n.API)
		if err != nil {
			return false, err.Error()
		}
		for _, m := range nodes {
			if st[m.Name] != "alive" {
				return false, fmt.Sprintf("node %s sees %s as %q", n.Name, m.Name, st[m.Name])
			}
		}
	}
	return true, ""
}

// procIO is /proc/PID/io: bytes and read/write system calls of a process,
// sockets included.
type procIO struct {
	RChar, WChar, SyscR, SyscW int64
}

func readProcIO(pid int) (procIO, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/io")
	if err != nil {
		return procIO{}, err
	}
	var p procIO
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		switch k {
		case "rchar":
			p.RChar = n
		case "wchar":
			p.WChar = n
		case "syscr":
			p.SyscR = n
		case "syscw":
			p.SyscW = n
		}
	}
	return p, nil
}

// procStat is a process's CPU time (user+system, ns) and RSS (bytes) from /proc.
func procStat(pid int) (cpuNs, rss int64, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, err
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, 0, errors.New("bad /proc stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 22 {
		return 0, 0, errors.New("short /proc stat")
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64) // utime, field 14
	st, _ := strconv.ParseInt(f[12], 10, 64) // stime, field 15
	rp, _ := strconv.ParseInt(f[21], 10, 64) // rss pages, field 24
	const hz = 100                           // USER_HZ
	return (ut + st) * (1e9 / hz), rp * int64(os.Getpagesize()), nil
}

// kernelSample is the machine's memory and sockets at one moment.
type kernelSample struct {
	MemAvailableBytes int64 `json:"mem_available_bytes"`
	SlabBytes         int64 `json:"slab_bytes"`
	SUnreclaimBytes   int64 `json:"sunreclaim_bytes"`
	SocketsUsed       int64 `json:"sockets_used"`  // /proc/net/sockstat "sockets: used"
	TCPInUse          int64 `json:"tcp_inuse"`     // "TCP: inuse"
	TCPMemPages       int64 `json:"tcp_mem_pages"` // "TCP: ... mem" (buffer pages)
}

func readKernel() kernelSample {
	var k kernelSample
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			v, _ := strconv.ParseInt(f[1], 10, 64)
			switch f[0] {
			case "MemAvailable:":
				k.MemAvailableBytes = v << 10
			case "Slab:":
				k.SlabBytes = v << 10
			case "SUnreclaim:":
				k.SUnreclaimBytes = v << 10
			}
		}
	}
	if b, err := os.ReadFile("/proc/net/sockstat"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) == 0 {
				continue
			}
			get := func(key string) int64 {
				for i := 1; i+1 < len(f); i++ {
					if f[i] == key {
						v, _ := strconv.ParseInt(f[i+1], 10, 64)
						return v
					}
				}
				return 0
			}
			switch f[0] {
			case "sockets:":
				k.SocketsUsed = get("used")
			case "TCP:":
				k.TCPInUse, k.TCPMemPages = get("inuse"), get("mem")
			}
		}
	}
	return k
}

// loadAvg is /proc/loadavg's first three fields.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
