package node

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"longlink/loop"
)

// writeFDMetrics writes process_open_fds and process_max_fds, which the
// LonglinkFileDescriptorsNearLimit alert and the dashboard need: a gateway's limit
// is descriptors. VictoriaMetrics' WriteFDMetrics reads /proc/self/fd entry by
// entry, which cost 17 ms per scrape at 19,000 open descriptors here (and grows
// with them: about a second at a million), enough to show up as +1 µs per recipient
// in a benchmark that scrapes around each broadcast. Linux 6.2 and later report the
// count as the size of /proc/self/fd, one stat; older kernels fall back to the
// directory read, at most once per fdCountEvery.
func writeFDMetrics(w io.Writer) {
	if n, ok := openFDs(); ok {
		fmt.Fprintf(w, "process_open_fds %d\n", n)
	}
	if limit, ok := loop.OpenFilesLimit(); ok {
		fmt.Fprintf(w, "process_max_fds %d\n", limit)
	}
}

const fdCountEvery = 10 * time.Second

var fdCache struct {
	sync.Mutex
	n  int
	at time.Time
}

func openFDs() (int, bool) {
	if fi, err := os.Stat("/proc/self/fd"); err == nil && fi.Size() > 0 {
		return int(fi.Size()), true
	}
	fdCache.Lock()
	defer fdCache.Unlock()
	if !fdCache.at.IsZero() && time.Since(fdCache.at) < fdCountEvery {
		return fdCache.n, true
	}
	f, err := os.Open("/proc/self/fd")
	if err != nil {
		return 0, false
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return 0, false
	}
	fdCache.n, fdCache.at = len(names)-1, time.Now() // less the descriptor reading it
	return fdCache.n, true
}
