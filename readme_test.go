package main

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"longlink/internal/testutil"
)

// TestREADMEQuickStart follows the README's "Quick start" as a newcomer would: it
// reads the section's ```sh blocks from README.md itself (so the README and this
// test cannot drift) and runs their commands in order, through sh, with these
// substitutions and no others:
//
//   - `-o longlink` and `./longlink` name a temporary directory's longlink, so the
//     build does not write into the checkout (the build runs in the checkout);
//   - the node listens on port 0 (LONGLINK_CLIENT_ADDR / LONGLINK_API_ADDR, the
//     documented environment twins of --client-addr / --api-addr), and
//     127.0.0.1:8080 / 127.0.0.1:8081 become the addresses its banner printed;
//   - <test token>, <api key> and <token secret> become the values its banner printed.
//
// `./longlink serve` and `./longlink client` run in the background (they are the
// README's terminals); every other command must exit 0. It then checks what the
// README says happens: the client prints `hello`, and the metrics line is
// `longlink_connections 1`.
func TestREADMEQuickStart(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	for _, tool := range []string{"sh", "curl", "grep", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("the README's quick start needs %s: %v", tool, err)
		}
	}
	cmds := quickStartCommands(t, "README.md")
	dir := t.TempDir()
	bin := filepath.Join(dir, "longlink")
	root, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	// Generous for a cold build cache on a busy 2-core CI box; a warm one takes seconds.
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	// Nothing of the test's environment may configure the node: it must be the
	// README's defaults, bar the two listen addresses.
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "LONGLINK_") {
			env = append(env, kv)
		}
	}
	env = append(env, "LONGLINK_CLIENT_ADDR=127.0.0.1:0", "LONGLINK_API_ADDR=127.0.0.1:0")

	banner := map[string]string{} // placeholder or address -> value
	substitute := func(cmd string) string {
		cmd = strings.ReplaceAll(cmd, "-o longlink ", "-o "+bin+" ")
		cmd = strings.ReplaceAll(cmd, "./longlink", bin)
		for k, v := range banner {
			cmd = strings.ReplaceAll(cmd, k, v)
		}
		if m := regexp.MustCompile(`<[a-z ]+>`).FindString(cmd); m != "" {
			t.Fatalf("README command %q: no value for %s (the banner printed %v)", cmd, m, banner)
		}
		return cmd
	}
	start := func(cmd string) (stdout, stderr *testutil.SyncBuffer) {
		c := exec.CommandContext(ctx, "sh", "-c", "exec "+cmd)
		c.Dir, c.Env = root, env
		stdout, stderr = &testutil.SyncBuffer{}, &testutil.SyncBuffer{}
		c.Stdout, c.Stderr = stdout, stderr
		if err := c.Start(); err != nil {
			t.Fatalf("%s: %v", cmd, err)
		}
		t.Cleanup(func() {
			c.Process.Signal(os.Interrupt)
			done := make(chan struct{})
			go func() { c.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(15 * time.Second):
				c.Process.Kill()
				<-done
			}
			if t.Failed() {
				t.Logf("%s\nstdout:\n%s\nstderr:\n%s", cmd, stdout, stderr)
			}
		})
		return stdout, stderr
	}

	var clientOut *testutil.SyncBuffer
	var metricsOut string
	served, connected := false, false
	for _, raw := range cmds {
		cmd := substitute(raw)
		t.Logf("$ %s", raw)
		switch {
		case strings.HasPrefix(raw, "./longlink serve"):
			out, _ := start(cmd)
			testutil.WaitFor(t, 30*time.Second, "the node's banner", func() bool {
				return strings.Contains(out.String(), "Try it")
			})
			readBanner(t, out.String(), banner)
			served = true
		case strings.HasPrefix(raw, "./longlink client"):
			var errOut *testutil.SyncBuffer
			clientOut, errOut = start(cmd)
			testutil.WaitFor(t, 15*time.Second, "the client to connect", func() bool {
				return strings.Contains(errOut.String(), " as connection ")
			})
			connected = true
		default:
			c := exec.CommandContext(ctx, "sh", "-c", cmd)
			c.Dir, c.Env = root, env
			out, err := c.CombinedOutput()
			if err != nil {
				t.Fatalf("README command %q: %v\n%s", raw, err, out)
			}
			if strings.Contains(raw, "/metrics") {
				metricsOut = string(out)
			}
		}
	}
	if !served || !connected || clientOut == nil || metricsOut == "" {
		t.Fatalf("the quick start no longer starts a node, connects a client and reads /metrics: %q", cmds)
	}
	testutil.WaitFor(t, 10*time.Second, "the client to print hello", func() bool {
		return strings.Contains(clientOut.String(), "hello\n")
	})
	if !regexp.MustCompile(`(?m)^longlink_connections 1$`).MatchString(metricsOut) {
		t.Errorf("the metrics line is %q, not the README's longlink_connections 1", metricsOut)
	}
}

// quickStartCommands returns the commands of the ```sh blocks between the "## Quick
// start" heading and the next "## " heading: backslash-continued lines joined, "# "
// comments after two spaces and blank lines dropped.
func quickStartCommands(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var cmds []string
	in, block := false, false
	pending := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "## "):
			in = line == "## Quick start"
			continue
		case !in:
			continue
		case strings.HasPrefix(trimmed, "```"):
			if !block && trimmed != "```sh" {
				t.Fatalf("%s: a %q block in the quick start: the test runs only ```sh blocks", path, trimmed)
			}
			block = !block
			continue
		case !block:
			continue
		}
		if i := strings.Index(trimmed, "  # "); i >= 0 {
			trimmed = strings.TrimSpace(trimmed[:i])
		}
		if strings.HasSuffix(trimmed, `\`) {
			pending += strings.TrimSuffix(trimmed, `\`)
			continue
		}
		if cmd := strings.TrimSpace(pending + trimmed); cmd != "" {
			cmds = append(cmds, cmd)
		}
		pending = ""
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(cmds) == 0 {
		t.Fatalf("%s has no ```sh blocks under ## Quick start", path)
	}
	return cmds
}

// readBanner takes from a dev node's banner the values the README says to paste.
func readBanner(t *testing.T, out string, into map[string]string) {
	t.Helper()
	for placeholder, re := range map[string]string{
		"<test token>":   `test token \(user 42, 24h\): (\S+)`,
		"<api key>":      `api key: (\S+)`,
		"<token secret>": `token secret: (\S+)`,
		"127.0.0.1:8080": `clients: ws://(\S+)/ws`,
		"127.0.0.1:8081": `api:\s+http://(\S+)`,
	} {
		m := regexp.MustCompile(re).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("the banner has no %s (/%s/):\n%s", placeholder, re, out)
		}
		into[placeholder] = m[1]
	}
}
