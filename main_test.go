package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"longlink/auth"
)

func TestConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "longlink.conf")
	os.WriteFile(file, []byte(`# comment
api-addr = 127.0.0.1:9001
node-name = from-file
ping-interval = 11s
join = a:1, b:2
cluster-key = file-secret
`), 0o600)
	env := map[string]string{
		"LONGLINK_NODE_NAME":     "from-env",
		"LONGLINK_PING_INTERVAL": "12s",
	}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }

	o, fs := serveFlags()
	fs.SetOutput(&bytes.Buffer{})
	err := parseLayered(fs, []string{"--config", file, "--ping-interval", "13s", "--client-addr", "127.0.0.1:1", "--client-addr", "127.0.0.1:2"}, lookup)
	if err != nil {
		t.Fatal(err)
	}
	f := func(name string, got, want any) {
		t.Helper()
		if got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	f("ping-interval (flag beats env and file)", o.cfg.Loop.PingInterval, 13*time.Second)
	f("node-name (env beats file)", o.cfg.NodeName, "from-env")
	f("api-addr (file beats default)", o.cfg.API.Addr, "127.0.0.1:9001")
	f("idle-timeout (default)", o.cfg.Loop.IdleTimeout, 75*time.Second)
	f("join (list from file)", strings.Join(o.cfg.Cluster.Join, ","), "a:1,b:2")
	f("client-addr (repeated flag replaces default)", strings.Join(o.cfg.Loop.Addrs, ","), "127.0.0.1:1,127.0.0.1:2")

	var out bytes.Buffer
	printConfig(&out, fs, true, false)
	s := out.String()
	if strings.Contains(s, "file-secret") || !strings.Contains(s, "cluster-key = ****") || !strings.Contains(s, "token-secret = (random development value)") {
		t.Fatalf("print-config leaks or misses secrets:\n%s", s)
	}
	if !strings.Contains(s, "node-name = from-env") {
		t.Fatalf("print-config:\n%s", s)
	}
}

func TestConfigFileErrors(t *testing.T) {
	for _, body := range []string{"nonsense\n", "no-such-flag = 1\n", "ping-interval = soon\n"} {
		file := filepath.Join(t.TempDir(), "c.conf")
		os.WriteFile(file, []byte(body), 0o600)
		_, fs := serveFlags()
		fs.SetOutput(&bytes.Buffer{})
		if err := parseLayered(fs, []string{"--config", file}, func(string) (string, bool) { return "", false }); err == nil || !strings.Contains(err.Error(), "c.conf:1") {
			t.Errorf("%q: err = %v, want one naming c.conf:1", body, err)
		}
	}
	_, fs := serveFlags()
	fs.SetOutput(&bytes.Buffer{})
	err := parseLayered(fs, nil, func(k string) (string, bool) {
		if k == "LONGLINK_MAX_CONNS" {
			return "many", true
		}
		return "", false
	})
	if err == nil || !strings.Contains(err.Error(), "LONGLINK_MAX_CONNS") {
		t.Errorf("bad env: %v", err)
	}
}

func TestTokenCommand(t *testing.T) {
	var out, errb bytes.Buffer
	secret := "cmd-test-secret-0123456789"
	if code := run([]string{"token", "--secret", secret, "--user", "42", "--rooms", "a,b", "--ttl", "2h"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	v, _ := auth.NewVerifier([]byte(secret))
	c, err := v.Verify(strings.TrimSpace(out.String()))
	if err != nil || c.User != "42" || strings.Join(c.Rooms, ",") != "a,b" || time.Until(c.Expires) < 119*time.Minute {
		t.Fatalf("token %q: %+v %v", out.String(), c, err)
	}
	if code := run([]string{"token", "--user", "42"}, &out, &errb); code != 2 {
		t.Fatalf("missing secret: exit %d", code)
	}
}

func TestHelpListsEveryFlagWithEnv(t *testing.T) {
	var errb bytes.Buffer
	if code := run([]string{"serve", "-h"}, &bytes.Buffer{}, &errb); code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, name := range []string{"client-addr", "api-addr", "token-secret", "api-key", "join", "node-name", "gossip-addr",
		"gossip-advertise", "cluster-key", "cluster-name", "echo", "max-conns-per-user", "ping-interval", "handshake-timeout", "LONGLINK_"} {
		if !strings.Contains(errb.String(), name) {
			t.Errorf("help does not mention %s", name)
		}
	}
}
