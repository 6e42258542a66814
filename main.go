// Command longlink is a WebSocket long-connection gateway: services POST a message to
// its API and it reaches the right browsers and apps among many open connections, on
// one host or across a cluster.
//
//	longlink [serve] [flags]   run a gateway node (the default)
//	longlink token --user 42   mint a client token for testing
//	longlink client ...        connect as a client and print messages
//	longlink bench ...         the bundled load generator
//	longlink healthcheck       exit 0 if the node's /healthz answers (container probes)
//	longlink keygen            print a fresh random --cluster-key
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"longlink/auth"
	"longlink/bench"
	"longlink/cluster"
	"longlink/node"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return serve(args, stdout, stderr)
	case "token":
		return token(args, stdout, stderr)
	case "bench":
		return bench.Main(args, stdout, stderr)
	case "healthcheck":
		return healthcheck(args, stderr)
	case "keygen":
		return keygen(args, stdout, stderr)
	case "client":
		return client(args, stdout, stderr)
	case "help":
		usage(stderr)
		return 0
	}
	fmt.Fprintf(stderr, "longlink: unknown command %q\n\n", cmd)
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprint(w, `Usage:
  longlink [serve] [flags]     run a gateway node (see longlink serve -h)
  longlink token --user ID     mint a client token (see longlink token -h)
  longlink client --user ID    connect and print every message (a quick test client)
  longlink bench SCENARIO      load-test a node or cluster (see longlink bench --help)
  longlink healthcheck         probe a node's /healthz (container health checks)
  longlink keygen              print a fresh --cluster-key
`)
}

func serve(args []string, stdout, stderr io.Writer) int {
	o, fs := serveFlags()
	fs.SetOutput(stderr)
	if err := parseLayered(fs, args, os.LookupEnv); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(stderr, "longlink: %v\n", err)
		return 2
	}
	log, err := newLogger(o.logFormat, o.logLevel, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "longlink: %v\n", err)
		return 2
	}
	devSecret, devKey := false, false
	if len(o.cfg.TokenSecret) == 0 {
		o.cfg.TokenSecret = []byte(randHex(32))
		devSecret = true
	}
	if len(o.cfg.Push.APIKeys) == 0 {
		o.cfg.Push.APIKeys = []string{randHex(16)}
		devKey = true
	}
	if o.printConfig {
		printConfig(stdout, fs, devSecret, devKey)
		return 0
	}
	cfg, err := o.nodeConfig(log)
	if err != nil {
		fmt.Fprintf(stderr, "longlink: %v\n", err)
		return 2
	}
	if o.demo {
		// The page's push form sends with the node's API key, so anyone who reaches the
		// API port could push: only in development, when the key was generated.
		cfg.Demo = &node.Demo{DevToken: devTokenFunc(devSecret, o.cfg.TokenSecret), Push: devKey || o.demoPush}
	}
	n, err := node.New(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "longlink: %v\n", err)
		return 2
	}
	// Signals are ours before the node serves: a SIGTERM that arrives the moment it
	// is up (a fast rolling restart, a test) must drain, not kill, and a loaded host
	// may deschedule this goroutine for a while after the banner.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	if err := n.Start(); err != nil {
		fmt.Fprintf(stderr, "longlink: %s\n", startError(err))
		return 1
	}
	printBanner(stdout, n, o, devSecret, devKey)
	s := <-sig
	log.Info("shutting down: draining clients", "signal", s.String(), "drain_timeout", o.cfg.DrainTimeout)
	go func() {
		<-sig
		log.Warn("second signal: exiting without waiting for the drain")
		os.Exit(1)
	}()
	dropped, err := n.Shutdown(context.Background())
	if err != nil {
		log.Error("shutdown", "err", err)
		return 1
	}
	log.Info("stopped", "dropped_after_drain_timeout", dropped)
	return 0
}

func devTokenFunc(dev bool, secret []byte) func(string) (string, error) {
	if !dev {
		return nil
	}
	return func(user string) (string, error) { return auth.Mint(secret, user, nil, 24*time.Hour) }
}

func printBanner(w io.Writer, n *node.Node, o *serveOptions, devSecret, devKey bool) {
	client := n.ClientAddrs()[0]
	api := n.APIAddr()
	var clients []string
	for _, a := range n.ClientAddrs() {
		clients = append(clients, "ws://"+node.Dialable(a)+"/ws")
	}
	gossip := "off (standalone; --join or --gossip-addr starts clustering)"
	if n.Clustered() {
		gossip = n.GossipAddr() + ", forwarding " + n.Cluster().ForwardAddr()
	}
	fmt.Fprintf(w, "longlink node %q\n  clients: %s\n  api:     http://%s  (/v1/push, /metrics, /healthz)\n  cluster: %s\n",
		n.Name(), strings.Join(clients, ", "), node.Dialable(api), gossip)
	if m := n.Loop().MaxConns(); m > 0 {
		fmt.Fprintf(w, "  max connections: %d (--max-conns)\n", m)
	}
	if m := n.APIMaxConns(); m > 0 {
		fmt.Fprintf(w, "  max API connections: %d (--api-max-conns)\n", m)
	}
	if o.demo {
		fmt.Fprintf(w, "  demo:    http://%s/demo/\n", node.Dialable(api))
	}
	if apps := o.cfg.Pusher.Apps; len(apps) > 0 {
		ids := make([]string, len(apps))
		for i, a := range apps {
			ids[i] = a.ID
		}
		fmt.Fprintf(w, "  pusher:  ws://%s/app/{key}, HTTP API http://%s/apps/{app_id} (apps %s; docs/pusher.md)\n",
			node.Dialable(client), node.Dialable(api), strings.Join(ids, ", "))
	}
	if devSecret {
		tok, _ := auth.Mint(o.cfg.TokenSecret, "42", nil, 24*time.Hour)
		fmt.Fprintf(w, "\nWARNING: no --token-secret given; using a random development secret. Clients from\n"+
			"another run will not verify. Never run production like this.\n"+
			"  token secret: %s\n  test token (user 42, 24h): %s\n", string(o.cfg.TokenSecret), tok)
	}
	if devKey {
		fmt.Fprintf(w, "\nWARNING: no --api-key given; using a random development API key.\n  api key: %s\n", o.cfg.Push.APIKeys[0])
	}
	if devSecret || devKey {
		tok, _ := auth.Mint(o.cfg.TokenSecret, "42", nil, 24*time.Hour)
		fmt.Fprintf(w, "\nTry it (two terminals):\n  %s client --url ws://%s/ws --token %s\n"+
			"  curl -H 'Authorization: Bearer %s' -d '{\"to\":{\"users\":[\"42\"]},\"data\":\"hello\"}' http://%s/v1/push\n\n",
			selfCommand(os.Args[0]), node.Dialable(client), tok, o.cfg.Push.APIKeys[0], node.Dialable(api))
	}
}

// selfCommand is how to run this binary again, for the commands the banner suggests:
// "go run ." when it is go run's temporary build, else the path it was started as
// ("./longlink", "longlink" from PATH).
func selfCommand(arg0 string) string {
	if strings.Contains(filepath.ToSlash(arg0), "/go-build") {
		return "go run ."
	}
	return arg0
}

func token(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("longlink token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	secret := fs.String("secret", "", "HS256 token secret, as given to serve --token-secret (env LONGLINK_TOKEN_SECRET)")
	user := fs.String("user", "", "user id (the token's sub claim); required")
	rooms := fs.String("rooms", "", "comma-separated rooms the connection joins (the rooms claim)")
	subscribe := fs.String("subscribe", "", "comma-separated rooms or prefix* patterns (chat/*) the client may subscribe itself to (the subscribe claim)")
	ttl := fs.Duration("ttl", time.Hour, "how long the token is valid")
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: longlink token --secret S --user 42 [--rooms a,b] [--subscribe chat/*] [--ttl 1h]\n\nPrints a client token and nothing else.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *secret == "" {
		*secret = os.Getenv("LONGLINK_TOKEN_SECRET")
	}
	if *secret == "" || *user == "" {
		fmt.Fprintln(stderr, "longlink token: --secret (or LONGLINK_TOKEN_SECRET) and --user are required")
		return 2
	}
	var rs []string
	if *rooms != "" {
		rs = strings.Split(*rooms, ",")
	}
	var sub []string
	if *subscribe != "" {
		sub = strings.Split(*subscribe, ",")
	}
	tok, err := auth.MintClaims([]byte(*secret), auth.Claims{User: *user, Rooms: rs, Subscribe: sub}, *ttl)
	if err != nil {
		fmt.Fprintf(stderr, "longlink token: %v\n", err)
		return 2
	}
	fmt.Fprintln(stdout, tok)
	return 0
}

func healthcheck(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("longlink healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("api-addr", envOr("LONGLINK_API_ADDR", "127.0.0.1:8081"), "the node's API address (env LONGLINK_API_ADDR)")
	path := fs.String("path", "/healthz", "path to probe: /healthz (alive) or /readyz (ready)")
	timeout := fs.Duration("timeout", 3*time.Second, "give up after this long")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	c := http.Client{Timeout: *timeout}
	resp, err := c.Get("http://" + node.Dialable(*addr) + *path)
	if err != nil {
		fmt.Fprintf(stderr, "unhealthy: %v\n", err)
		return 1
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		fmt.Fprintf(stderr, "unhealthy: %s answered %d\n", *path, resp.StatusCode)
		return 1
	}
	return 0
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func newLogger(format, level string, w io.Writer) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

func keygen(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		fmt.Fprint(stderr, "Usage: longlink keygen\n\nPrints a fresh random cluster key (base64 of 32 bytes) for --cluster-key.\n")
		if args[0] == "-h" || args[0] == "--help" {
			return 0
		}
		return 2
	}
	k, err := cluster.NewKey()
	if err != nil {
		fmt.Fprintf(stderr, "longlink: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, k)
	return 0
}
