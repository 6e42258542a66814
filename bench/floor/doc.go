// Command floor measures what one write(2) of a small pre-encoded WebSocket frame to
// a loopback TCP socket costs the writing process: the floor under the gateway's
// broadcast cost per recipient. It writes a 40-byte frame once to each of -n sockets
// per round, from one OS thread, to a reader in a child process, and prints CPU per
// write (thread CPU clock and getrusage), TCP segments per write and host CPU steal.
//
//	go run ./bench/floor -n 9000 -rounds 6 -gap 50ms -mode blocking
//	go run ./bench/floor -n 1 -rounds 20000 -gap 0            # back-to-back to one socket
//
// -gap sleeps between rounds so every write meets an idle socket, as in a broadcast;
// with -gap 0 and few sockets, writes catch up with each other and the kernel sends
// several frames per segment, which is what makes single-socket micro-benchmarks cheap.
// Reader modes: blocking (epoll_wait -1), busy (epoll_wait 0 in a loop), nap (epoll_wait
// 0, then sleep 100 µs when under 16 events, like longlink bench), none (never reads).
//
// -role push is a second floor, under longlink bench push: see push.go.
//
//	go run ./bench/floor -role push -client-addr 127.0.0.1:28380 -api-addr 127.0.0.1:28381
//
// Who owns what: one OS thread (runtime.LockOSThread) does every write, so its thread
// CPU clock measures the writes alone; the reader is a child process, so its work is
// never charged to the writer except where the kernel charges softirq to the sender.
package main
