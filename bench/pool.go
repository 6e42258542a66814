package bench

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// worker is the coordinator's handle on one worker, a child process or, in
// in-process mode, a goroutine running RunWorker over pipes.
type worker struct {
	id  int
	in  io.WriteCloser
	out *bufio.Reader
	cmd *exec.Cmd     // nil in-process
	fin chan struct{} // closed when the in-process worker returns

	mu sync.Mutex // one request in flight per worker
}

// pool is the set of workers. Its methods are called from one goroutine at a
// time except stats, which the progress ticker calls concurrently.
type pool struct {
	workers   []*worker
	inProcess bool
}

// workerTimeout bounds one request/answer exchange with a worker.
const workerTimeout = 30 * time.Second

func startPool(n int, inProcess bool, stderr io.Writer) (*pool, error) {
	p := &pool{inProcess: inProcess}
	exe, err := os.Executable()
	if !inProcess && err != nil {
		return nil, fmt.Errorf("cannot find own executable to start workers: %w", err)
	}
	for i := 0; i < n; i++ {
		w := &worker{id: i}
		if inProcess {
			inR, inW := io.Pipe()
			outR, outW := io.Pipe()
			w.in, w.out, w.fin = inW, bufio.NewReaderSize(outR, 64<<10), make(chan struct{})
			go func() {
				if err := RunWorker(inR, outW); err != nil {
					fmt.Fprintf(stderr, "bench: in-process worker %d: %v\n", i, err)
				}
				outW.Close()
				close(w.fin)
			}()
		} else {
			c := exec.Command(exe, "bench", "worker")
			c.Env = append(os.Environ(), WorkerEnv+"=1")
			c.Stderr = stderr
			// A worker must not outlive the coordinator and keep thousands
			// of connections open.
			c.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
			in, err := c.StdinPipe()
			if err != nil {
				p.kill()
				return nil, fmt.Errorf("worker %d stdin: %w", i, err)
			}
			out, err := c.StdoutPipe()
			if err != nil {
				p.kill()
				return nil, fmt.Errorf("worker %d stdout: %w", i, err)
			}
			if err := c.Start(); err != nil {
				p.kill()
				return nil, fmt.Errorf("cannot start worker %d (%s bench worker): %w", i, exe, err)
			}
			w.in, w.out, w.cmd = in, bufio.NewReaderSize(out, 64<<10), c
		}
		p.workers = append(p.workers, w)
	}
	return p, nil
}

func (w *worker) do(c workerCmd) (WorkerStats, error) { return w.doWithin(c, workerTimeout) }

// doWithin is do with the answer awaited at most timeout (a request that runs
// a whole phase before answering).
func (w *worker) doWithin(c workerCmd, timeout time.Duration) (WorkerStats, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	type result struct {
		st  WorkerStats
		err error
	}
	ch := make(chan result, 1)
	go func() {
		b, _ := json.Marshal(c)
		if _, err := w.in.Write(append(b, '\n')); err != nil {
			ch <- result{err: fmt.Errorf("worker %d: cannot send %s: %w", w.id, c.Op, err)}
			return
		}
		line, err := w.out.ReadBytes('\n')
		if err != nil {
			ch <- result{err: fmt.Errorf("worker %d: no answer to %s: %w", w.id, c.Op, err)}
			return
		}
		var st WorkerStats
		if err := json.Unmarshal(line, &st); err != nil {
			ch <- result{err: fmt.Errorf("worker %d: bad answer to %s: %w", w.id, c.Op, err)}
			return
		}
		if st.Err != "" {
			ch <- result{st: st, err: fmt.Errorf("worker %d: %s", w.id, st.Err)}
			return
		}
		ch <- result{st: st}
	}()
	select {
	case r := <-ch:
		return r.st, r.err
	case <-time.After(timeout):
		// Unblock the reader goroutine: kill the process or close the pipe.
		if w.cmd != nil {
			_ = w.cmd.Process.Kill()
		} else {
			w.in.Close()
		}
		return WorkerStats{}, fmt.Errorf("worker %d: no answer to %s within %v", w.id, c.Op, timeout)
	}
}

// each sends mk(i) to worker i, all in parallel, and returns the answers.
func (p *pool) each(mk func(i int) workerCmd) ([]WorkerStats, error) {
	out := make([]WorkerStats, len(p.workers))
	errs := make([]error, len(p.workers))
	var wg sync.WaitGroup
	for i, w := range p.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i], errs[i] = w.do(mk(i))
		}()
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

func (p *pool) stats(hists, reset bool) ([]WorkerStats, error) {
	return p.each(func(int) workerCmd { return workerCmd{Op: "stats", Hists: hists, Reset: reset} })
}

// close asks every worker to close its connections and exit, and waits for
// the processes, at most workerTimeout each.
func (p *pool) close() ([]WorkerStats, error) {
	st, err := p.each(func(int) workerCmd { return workerCmd{Op: "close"} })
	for _, w := range p.workers {
		w.in.Close()
		if w.cmd != nil {
			done := make(chan struct{})
			go func() { _ = w.cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(workerTimeout):
				_ = w.cmd.Process.Kill()
				<-done
			}
		} else {
			select {
			case <-w.fin:
			case <-time.After(workerTimeout):
			}
		}
	}
	return st, err
}

// kill ends workers without asking; used on start-up failure.
func (p *pool) kill() {
	for _, w := range p.workers {
		w.in.Close()
		if w.cmd != nil {
			_ = w.cmd.Process.Kill()
			_ = w.cmd.Wait()
		}
	}
}
