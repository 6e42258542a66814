package main

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strings"
	"time"

	"github.com/gorilla/websocket"

	"longlink/auth"
)

// client is a minimal command-line WebSocket client for trying the gateway: it
// connects, prints every pushed message on its own line, and exits on close or
// Ctrl-C. It speaks the v2 protocol unless told otherwise, because only v2 tells a
// client its connection id (the welcome), which is what "to.connections" needs.
func client(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("longlink client", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("url", "ws://127.0.0.1:8080/ws", "gateway WebSocket URL")
	tok := fs.String("token", "", "client token (or give --secret and --user to mint one)")
	secret := fs.String("secret", os.Getenv("LONGLINK_TOKEN_SECRET"), "token secret to mint a token with (env LONGLINK_TOKEN_SECRET)")
	user := fs.String("user", "", "user id for a minted token")
	count := fs.Int("count", 0, "exit after this many pushed messages (0: run until closed)")
	protocol := fs.String("protocol", "v2", "v2 (JSON envelopes: the welcome names the connection id; pushes asking for an ack are acknowledged once printed) or plain (raw frames; the server tells plain clients no id)")
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: longlink client [--url ws://host:8080/ws] (--token T | --secret S --user ID) [--count N] [--protocol v2|plain]\n\n"+
			"Prints every pushed message on stdout, one per line: a text (a JSON string's value)\n"+
			"as it is, other JSON compactly, binary as [binary N B] and its first 32 bytes in hex.\n"+
			"Connection details (the connection id) go to stderr.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "longlink client: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if *protocol != "v2" && *protocol != "plain" {
		fmt.Fprintf(stderr, "longlink client: --protocol %q: want v2 or plain\n", *protocol)
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
	dialer := *websocket.DefaultDialer
	if *protocol == "v2" {
		dialer.Subprotocols = []string{"longlink.v2"}
	}
	c, resp, err := dialer.Dial(u.String(), nil)
	if err != nil {
		if resp != nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			fmt.Fprintf(stderr, "longlink client: %s: %s\n", resp.Status, strings.TrimSpace(string(body)))
			return 1
		}
		fmt.Fprintf(stderr, "longlink client: %v\n", err)
		return 1
	}
	defer c.Close()
	if *protocol == "plain" {
		fmt.Fprintf(stderr, "connected to %s (plain protocol: the server names no connection id to plain clients;\n"+
			"  --protocol v2 shows it, GET /v1/users/{id} lists a user's); waiting for messages (Ctrl-C to stop)\n", *addr)
	} else if c.Subprotocol() != "longlink.v2" {
		fmt.Fprintf(stderr, "longlink client: the server did not select longlink.v2 (got %q)\n", c.Subprotocol())
		return 1
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt)
	go func() {
		<-sig
		c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(1000, ""), time.Now().Add(time.Second))
	}()
	for n := 0; *count == 0 || n < *count; {
		kind, msg, err := c.ReadMessage()
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
		if *protocol == "plain" {
			if kind == websocket.BinaryMessage {
				fmt.Fprintln(stdout, renderBinary(msg))
			} else {
				fmt.Fprintf(stdout, "%s\n", msg)
			}
			n++
			continue
		}
		pushed, err := handleV2(c, msg, *addr, stdout, stderr)
		if err != nil {
			fmt.Fprintf(stderr, "longlink client: %v\n", err)
			return 1
		}
		if pushed {
			n++
		}
	}
	return 0
}

// v2Message is the part of a v2 server message the client reads (docs/protocol.md).
type v2Message struct {
	Type       string          `json:"type"`
	Connection string          `json:"connection"`
	Node       string          `json:"node"`
	Streams    map[string]any  `json:"streams"`
	ID         string          `json:"id"`
	Stream     string          `json:"stream"`
	Epoch      string          `json:"epoch"`
	Offset     *uint64         `json:"offset"`
	Ack        bool            `json:"ack"`
	Data       json.RawMessage `json:"data"`
	DataBase64 *string         `json:"data_base64"`
	Status     int             `json:"status"`
	Reason     string          `json:"reason"`
}

// handleV2 prints one v2 server message and acknowledges a push that asks for it
// (the message is handled once printed). It says whether msg was a push.
func handleV2(c *websocket.Conn, msg []byte, addr string, stdout, stderr io.Writer) (bool, error) {
	var m v2Message
	if err := json.Unmarshal(msg, &m); err != nil {
		return false, fmt.Errorf("server sent a message that is not JSON: %v: %.200q", err, msg)
	}
	switch m.Type {
	case "welcome":
		streams := make([]string, 0, len(m.Streams))
		for s := range m.Streams {
			streams = append(streams, s)
		}
		slices.Sort(streams)
		fmt.Fprintf(stderr, "connected to %s as connection %s (node %s, streams %s); waiting for messages (Ctrl-C to stop)\n",
			addr, m.Connection, m.Node, strings.Join(streams, ","))
		return false, nil
	case "push":
		switch {
		case m.DataBase64 != nil:
			b, err := base64.StdEncoding.DecodeString(*m.DataBase64)
			if err != nil {
				return false, fmt.Errorf("push %s: data_base64: %v", m.ID, err)
			}
			fmt.Fprintln(stdout, renderBinary(b))
		default:
			var s string
			if json.Unmarshal(m.Data, &s) == nil {
				fmt.Fprintln(stdout, s)
			} else {
				fmt.Fprintf(stdout, "%s\n", m.Data)
			}
		}
		if m.Ack {
			if err := sendAck(c, &m); err != nil {
				return true, err
			}
		}
		return true, nil
	case "position":
		return false, nil // the message came through another stream
	case "error", "reply":
		fmt.Fprintf(stderr, "server: %s\n", msg)
		return false, nil
	}
	return false, nil // types may be added (docs/protocol.md)
}

// sendAck acknowledges m: by position on its stream, or by id without one.
func sendAck(c *websocket.Conn, m *v2Message) error {
	var ack any
	if m.Stream != "" && m.Offset != nil {
		ack = map[string]any{"type": "ack", "stream": m.Stream, "epoch": m.Epoch, "offset": *m.Offset}
	} else {
		ack = map[string]any{"type": "ack", "message": m.ID}
	}
	b, _ := json.Marshal(ack)
	if err := c.WriteMessage(websocket.TextMessage, b); err != nil {
		return fmt.Errorf("ack %s: %v", m.ID, err)
	}
	return nil
}

// renderBinary shows a binary message the way the demo page does: its length and its
// first 32 bytes in hex, so raw bytes never reach the terminal.
func renderBinary(b []byte) string {
	const show = 32
	var sb strings.Builder
	fmt.Fprintf(&sb, "[binary %d B]", len(b))
	for i, x := range b {
		if i == show {
			sb.WriteString(" …")
			break
		}
		sb.WriteByte(' ')
		sb.WriteString(hex.EncodeToString([]byte{x}))
	}
	return sb.String()
}
