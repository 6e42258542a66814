package main

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"longlink/internal/testutil"
)

// exampleSecrets returns the secret values shipped in the example deploy files, by
// flag name, so the test follows the files if they change.
func exampleSecrets(t *testing.T) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, file := range []string{"deploy/systemd/longlink.env.example", "deploy/compose/longlink.env.example"} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			k, v, ok := strings.Cut(strings.TrimSpace(line), "=")
			for _, name := range []string{"token-secret", "api-key", "cluster-key"} {
				if ok && k == envName(name) {
					out[name] = append(out[name], v)
				}
			}
		}
	}
	b, err := os.ReadFile("deploy/kubernetes/secret.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if _, known := out[k]; ok && known && !strings.HasPrefix(line, "#") {
			out[k] = append(out[k], strings.TrimSpace(v))
		}
	}
	for _, name := range []string{"token-secret", "api-key", "cluster-key"} {
		if len(out[name]) != 3 {
			t.Fatalf("found %q for %s in the example files, want three values", out[name], name)
		}
	}
	return out
}

// The secrets in the shipped example files are public: a node started with one of
// them (the env file copied but not edited) must refuse to run, naming the flag.
func TestServeRefusesExampleSecrets(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	bin := testutil.Binary(t)
	good := map[string]string{
		"token-secret": "b1c8f0e2a7d94c36b1c8f0e2a7d94c36",
		"api-key":      "5f2d9a7c3e1b8f4a6d0c2e9b",
		"cluster-key":  "c2VjcmV0LWNsdXN0ZXIta2V5LTMyLWJ5dGVzISE=",
	}
	run := func(name, value string, viaEnv bool) {
		t.Helper()
		args := []string{"serve", "--client-addr", "127.0.0.1:0", "--api-addr", "127.0.0.1:0",
			"--gossip-addr", "127.0.0.1:0", "--forward-addr", "127.0.0.1:0", "--demo=false"}
		env := os.Environ()
		for n, v := range good {
			if n == name {
				v = value
			}
			if n == name && viaEnv {
				env = append(env, envName(n)+"="+v)
				continue
			}
			args = append(args, "--"+n, v)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin, args...)
		cmd.Env = env
		var stderr strings.Builder
		cmd.Stderr = &stderr
		stdout, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// A node that accepted the value prints its banner and keeps running.
		sc := bufio.NewScanner(stdout)
		if sc.Scan() && strings.HasPrefix(sc.Text(), "longlink node") {
			cmd.Process.Kill()
		}
		err := cmd.Wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 2 {
			t.Errorf("--%s %q (env %v): exit %v, want 2; stderr: %s", name, value, viaEnv, err, stderr.String())
			return
		}
		if msg := stderr.String(); !strings.Contains(msg, "--"+name) || !strings.Contains(msg, "generate") || !strings.Contains(msg, "placeholder") {
			t.Errorf("--%s %q: message %q does not name the flag and say to generate a secret", name, value, msg)
		}
	}
	for name, values := range exampleSecrets(t) {
		for _, v := range values {
			run(name, v, true)
			run(name, v, false)
		}
	}
	// Several API keys: a placeholder among real ones is refused too.
	run("api-key", good["api-key"]+",REPLACE-ME-api-key", true)
}

func TestIsPlaceholder(t *testing.T) {
	f := func(v string, want bool) {
		t.Helper()
		if got := isPlaceholder(v); got != want {
			t.Errorf("isPlaceholder(%q) = %v, want %v", v, got, want)
		}
	}
	f("REPLACE-ME-api-key", true)
	f("my-replace-me-key", true)
	f("replace-with-a-random-api-key", true)
	f("Replace-With-32-random-bytes-base64", true)
	f("5f2d9a7c3e1b8f4a6d0c2e9b", false)
	f("not-replace-with", false)
	f("", false)
}
