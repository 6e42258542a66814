package cluster

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"longlink/internal/testutil"
)

func TestMain(m *testing.M) { os.Exit(testutil.Main(m, 0)) }

// never fails if cond becomes true within d (for "must not happen" checks).
func never(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			t.Fatalf("unexpectedly: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var quietLogger = slog.New(slog.NewTextHandler(io.Discard, nil))

// Cluster keys for tests (base64 of 32 bytes).
const (
	testKey  = "dGVzdC1rZXktdGVzdC1rZXktdGVzdC1rZXktdGVzdCE="
	otherKey = "b3RoZXIta2V5LW90aGVyLWtleS1vdGhlci1rZXktb3Q="
)

// testConfig is a fast-probing loopback node.
func testConfig(name string, join ...string) Config {
	return Config{
		NodeName:     name,
		GossipAddr:   "127.0.0.1:0",
		ForwardAddr:  "127.0.0.1:0",
		Join:         join,
		ClusterName:  "test",
		ClusterKey:   testKey,
		Probe:        200 * time.Millisecond,
		SyncInterval: time.Second,
		Logger:       quietLogger,
		Metrics:      metrics.NewSet(),
	}
}

func startNode(t testing.TB, cfg Config) *Cluster {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatalf("New(%s): %v", cfg.NodeName, err)
	}
	t.Cleanup(c.Kill)
	if err := c.Start(); err != nil {
		t.Fatalf("Start(%s): %v", cfg.NodeName, err)
	}
	return c
}

// startCluster starts n nodes (node0 first, the rest joining it) and waits
// until every node has a link entry for every other.
func startCluster(t testing.TB, n int, mod func(i int, cfg *Config)) []*Cluster {
	t.Helper()
	nodes := make([]*Cluster, n)
	for i := range n {
		var join []string
		if i > 0 {
			join = []string{nodes[0].GossipAddr()}
		}
		cfg := testConfig(fmt.Sprintf("node%d", i), join...)
		if mod != nil {
			mod(i, &cfg)
		}
		nodes[i] = startNode(t, cfg)
	}
	testutil.WaitFor(t, 10*time.Second, "full membership", func() bool {
		for _, c := range nodes {
			if len(c.AliveNodes()) != n-1 {
				return false
			}
		}
		return true
	})
	return nodes
}

// waitSynced waits until every node has received every peer's route table
// (no peer is "unsure" any more).
func waitSynced(t testing.TB, nodes []*Cluster) {
	t.Helper()
	testutil.WaitFor(t, 10*time.Second, "route tables synced", func() bool {
		for _, c := range nodes {
			if len(c.NodesForUsers([]string{"\x00nobody"})) != 0 {
				return false
			}
		}
		return true
	})
}

// recorder collects payloads per sender, each carrying a big-endian seq.
type recorder struct {
	mu     sync.Mutex
	seqs   map[string][]uint64
	counts map[string]int
}

func newRecorder() *recorder {
	return &recorder{seqs: map[string][]uint64{}, counts: map[string]int{}}
}

func (r *recorder) onMessage(from string, payload []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.counts[from]++
	if len(payload) >= 8 {
		r.seqs[from] = append(r.seqs[from], binary.BigEndian.Uint64(payload))
	}
}

func (r *recorder) count(from string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.counts[from]
}

func (r *recorder) seqsFrom(from string) []uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.seqs[from])
}

func seqPayload(seq uint64, size int) []byte {
	b := make([]byte, max(size, 8))
	binary.BigEndian.PutUint64(b, seq)
	return b
}

func bufioReader(c net.Conn) *bufio.Reader { return bufio.NewReader(c) }
