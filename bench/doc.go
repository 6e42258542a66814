// Package bench is longlink's load generator: `longlink bench connect`,
// `broadcast`, `push` and `reconnect` (a storm of v2 clients resuming with
// ?since=), over the plain or the v2 protocol (v2.go). It measures a node or a cluster from the outside,
// over TCP, exactly as real clients and API callers would see it.
//
// It owns: the epoll-driven WebSocket client (client.go, wire.go), the worker
// processes that hold the connections (worker.go, pool.go), the scenarios
// (scenarios.go, reconnect.go), and the reports: summary table, JSON and self-contained
// HTML with inline SVG charts (report.go, html.go).
//
// It deliberately does not import the server's packages: a bench that shared
// code with the gateway could share its bugs.
//
// Processes and concurrency: the coordinator (Main/Run) starts worker
// processes by re-executing os.Executable() as `longlink bench worker` with
// WorkerEnv=1 in the environment, so no process exceeds its open-files
// limit. Each worker runs RunWorker: one epoll event loop goroutine owns all
// of that worker's connections (no goroutine and no lock per connection); a
// second goroutine reads newline-delimited JSON requests from stdin and
// reaches the loop through a command channel or atomic counters. Under `go
// test` the executable is the test binary, so tests dispatch on WorkerEnv in
// TestMain, or set Options.InProcess to run workers as goroutines.
//
// The pusher scenario (pusher.go) runs its Pusher Channels clients, and those of
// its native comparison, as goroutines of the coordinator (the workers' event loop
// speaks the native protocols only), and signs the Pusher HTTP API itself.
//
// The upstream scenario (upstream.go) runs its v2 clients as goroutines of the
// coordinator; its floor (upstreamfloor.go) is one worker's "floor" request,
// which runs the whole phase with net/http in that process so that its CPU is
// the HTTP client's alone, apart from the bundled back-end in the coordinator.
//
// Clock: payloads carry "<unix nanos>:<seq>" from time.Now() (CLOCK_REALTIME)
// and receipt is stamped with the same clock, so end-to-end latency is exact
// only when callers and clients share one machine, as they do here.
package bench
