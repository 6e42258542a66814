package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"time"

	"github.com/gorilla/websocket"

	"longlink/auth"
)

// client is a minimal command-line WebSocket client for trying the gateway: it
// connects, prints every message on its own line, and exits on close or Ctrl-C.
func client(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("longlink client", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("url", "ws://127.0.0.1:8080/ws", "gateway WebSocket URL")
	tok := fs.String("token", "", "client token (or give --secret and --user to mint one)")
	secret := fs.String("secret", os.Getenv("LONGLINK_TOKEN_SECRET"), "token secret to mint a token with (env LONGLINK_TOKEN_SECRET)")
	user := fs.String("user", "", "user id for a minted token")
	count := fs.Int("count", 0, "exit after this many messages (0: run until closed)")
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: longlink client [--url ws://host:8080/ws] (--token T | --secret S --user ID) [--count N]\n\nPrints every message it receives, one per line.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *tok == "" {
		if *secret == "" || *user == "" {
			fmt.Fprintln(stderr, "longlink client: give --token, or --secret and --user")
			return 2
		}
		var err error
		if *tok, err = auth.Mint([]byte(*secret), *user, nil, time.Hour); err != nil {
			fmt.Fprintf(stderr, "longlink client: %v\n", err)
			return 2
		}
	}
	u, err := url.Parse(*addr)
	if err != nil {
		fmt.Fprintf(stderr, "longlink client: --url: %v\n", err)
		return 2
	}
	q := u.Query()
	q.Set("token", *tok)
	u.RawQuery = q.Encode()
	c, resp, err := websocket.DefaultDialer.Dial(u.String(), nil)
	if err != nil {
		if resp != nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			fmt.Fprintf(stderr, "longlink client: %s: %s", resp.Status, body)
			return 1
		}
		fmt.Fprintf(stderr, "longlink client: %v\n", err)
		return 1
	}
	defer c.Close()
	fmt.Fprintf(stderr, "connected to %s; waiting for messages (Ctrl-C to stop)\n", *addr)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt)
	go func() {
		<-sig
		c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(1000, ""), time.Now().Add(time.Second))
	}()
	for n := 0; *count == 0 || n < *count; n++ {
		_, msg, err := c.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				fmt.Fprintf(stderr, "closed: %d %s\n", ce.Code, ce.Text)
				if ce.Code == 1000 {
					return 0
				}
				return 1
			}
			fmt.Fprintf(stderr, "longlink client: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "%s\n", msg)
	}
	return 0
}
