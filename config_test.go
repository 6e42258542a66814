package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"longlink/internal/testutil"
)

// printConfig runs `longlink serve --config file --print-config args...` with env
// and returns what it printed and its error (non-nil when the start was refused).
func runPrintConfig(t *testing.T, file string, env []string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	cmd := exec.Command(testutil.Binary(t), append([]string{"serve", "--config", file, "--print-config"}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

func writeConfig(t *testing.T, name, body string) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// The same settings in each structured format: scalars of each type, '_' for '-', a
// table grouping flags by prefix, arrays for repeatable flags, and secrets.
var configFormats = map[string]string{
	"longlink.toml": `# TOML
api-addr = "127.0.0.1:9001"
node_name = "from-file"
ping-interval = "11s"
max-conns = 100
client-rate = 2.5
deflate = false
join = ["a:1", "b:2"]
api-key = ["file-key-1", "file-key-2"]
pusher-app = ["f1:fk1:file-secret-1", "f2:fk2:file-secret-2,client-events"]

[webhook]
url = ["http://127.0.0.1:1/hook"]
secret = "file-webhook-secret"
events = ["user.online", "user.offline"]
`,
	"longlink.yaml": `# YAML
api-addr: 127.0.0.1:9001
node_name: from-file
ping-interval: 11s
max-conns: 100
client-rate: 2.5
deflate: false
join: [a:1, b:2]
api-key:
  - file-key-1
  - file-key-2
pusher-app:
  - f1:fk1:file-secret-1
  - f2:fk2:file-secret-2,client-events
webhook:
  url: [http://127.0.0.1:1/hook]
  secret: file-webhook-secret
  events: [user.online, user.offline]
`,
	"longlink.json": `{
  "api-addr": "127.0.0.1:9001",
  "node_name": "from-file",
  "ping-interval": "11s",
  "max-conns": 100,
  "client-rate": 2.5,
  "deflate": false,
  "join": ["a:1", "b:2"],
  "api-key": ["file-key-1", "file-key-2"],
  "pusher-app": ["f1:fk1:file-secret-1", "f2:fk2:file-secret-2,client-events"],
  "webhook": {
    "url": ["http://127.0.0.1:1/hook"],
    "secret": "file-webhook-secret",
    "events": ["user.online", "user.offline"]
  }
}
`,
}

// TestConfigStructuredFormats: a .toml, .yaml and .json file each set every kind of
// flag, as --print-config shows, with the secrets masked.
func TestConfigStructuredFormats(t *testing.T) {
	for name, body := range configFormats {
		t.Run(name, func(t *testing.T) {
			out, stderr, err := runPrintConfig(t, writeConfig(t, name, body), nil)
			if err != nil {
				t.Fatalf("%v\n%s", err, stderr)
			}
			for _, want := range []string{
				"api-addr = 127.0.0.1:9001", "node-name = from-file", "ping-interval = 11s",
				"max-conns = 100", "client-rate = 2.5", "deflate = false", "join = a:1,b:2",
				"api-key = ****", "pusher-app = f1:fk1:****;f2:fk2:****,client-events",
				"webhook-url = http://127.0.0.1:1/hook", "webhook-secret = ****",
				"webhook-events = user.online,user.offline",
				"idle-timeout = 1m15s", // not in the file: the default
			} {
				if !strings.Contains(out, want+"\n") {
					t.Errorf("--print-config lacks %q:\n%s", want, out)
				}
			}
			if strings.Contains(out, "file-secret") || strings.Contains(out, "file-key") || strings.Contains(out, "file-webhook-secret") {
				t.Errorf("--print-config leaks a secret:\n%s", out)
			}
		})
	}
}

// TestConfigStructuredPrecedence: flag, then environment, then the file, then the
// default, in each format, the whole way through the binary.
func TestConfigStructuredPrecedence(t *testing.T) {
	for name, body := range configFormats {
		t.Run(name, func(t *testing.T) {
			out, stderr, err := runPrintConfig(t, writeConfig(t, name, body),
				[]string{"LONGLINK_NODE_NAME=from-env", "LONGLINK_PING_INTERVAL=12s", "LONGLINK_JOIN=env:1"},
				"--ping-interval", "13s")
			if err != nil {
				t.Fatalf("%v\n%s", err, stderr)
			}
			for _, want := range []string{
				"ping-interval = 13s",       // flag beats env and file
				"node-name = from-env",      // env beats file
				"join = env:1",              // env beats the file's array
				"api-addr = 127.0.0.1:9001", // file beats default
				"max-conns-per-user = 10",   // the default
				"client-advertise = \n",     // unset default
			} {
				if !strings.Contains(out, strings.TrimSuffix(want, "\n")+"\n") {
					t.Errorf("--print-config lacks %q:\n%s", want, out)
				}
			}
		})
	}
}

// TestConfigStructuredStart: a node started from a TOML file listens where the file
// says and takes the file's API key, not the file's other key nor a generated one.
func TestConfigStructuredStart(t *testing.T) {
	file := writeConfig(t, "node.toml", `client-addr = ["127.0.0.1:0"]
api-addr = "127.0.0.1:0"
token-secret = "a-token-secret-of-32-bytes-00000"
api_key = ["file-key-1"]
demo = false
`)
	n := testutil.StartNode(t, nil, "--config", file)
	if code, _ := testutil.Get("http://" + n.API + "/healthz"); code != 200 {
		t.Fatalf("/healthz: %d", code)
	}
	if r := testutil.Do(t, "POST", "http://"+n.API+"/v1/push", `{"to":{"users":["u1"]},"data":"x"}`, testutil.Bearer("file-key-1")...); r.Status != 202 {
		t.Errorf("push with the file's key: %d %s", r.Status, r.Raw)
	}
	if r := testutil.Do(t, "POST", "http://"+n.API+"/v1/push", `{"to":{"users":["u1"]},"data":"x"}`, testutil.Bearer("other-key")...); r.Status != 401 {
		t.Errorf("push with another key: %d %s, want 401", r.Status, r.Raw)
	}
	if code, _ := testutil.Get("http://" + n.API + "/demo/"); code != 404 {
		t.Errorf("/demo/ with demo = false: %d, want 404", code)
	}
}

// TestConfigStructuredErrors: every wrong file stops the start with the file, line
// and column, what is wrong, and for an unknown key the nearest known name.
func TestConfigStructuredErrors(t *testing.T) {
	for _, tc := range []struct {
		file, body string
		want       []string
	}{
		{"a.toml", "api-addr = \"x\"\nping-intervl = \"11s\"\n", []string{`a.toml:2:1: unknown setting "ping-intervl"; did you mean "ping-interval"?`}},
		{"a.toml", "max-conns = \"many\"\n", []string{`a.toml:1:1: max-conns: want an integer, got the string "many"`}},
		{"a.toml", "\n  deflate = \"yes\"\n", []string{`a.toml:2:3: deflate: want true or false, got the string "yes"`}},
		{"a.toml", "ping-interval = 30\n", []string{`a.toml:1:1: ping-interval: want a duration as a string such as "30s"`}},
		{"a.toml", "ping-interval = \"soon\"\n", []string{`a.toml:1:1: ping-interval: want a duration such as "30s" or "1m30s", got "soon"`}},
		{"a.toml", "node-name = 42\n", []string{`a.toml:1:1: node-name: want a string (quote it), got the integer 42`}},
		{"a.toml", "[webhok]\nurl = \"http://x\"\n", []string{`a.toml:2:1: unknown setting "webhok.url"; did you mean "webhook-url"?`}},
		{"a.toml", "webhook-url = \"http://x\"\n[webhook]\nurl = \"http://y\"\n", []string{`a.toml:3:1: webhook-url is set twice (also at 1:1)`}},
		{"a.toml", "join = [\"a:1\", 2]\n", []string{`a.toml:1:1: join: element 2: want a string, got the integer 2`}},
		{"a.toml", "[[business]]\nname = \"x\"\n", []string{`a.toml:1:3: business: want a string or an array of strings, got an array of tables`}},
		{"a.toml", "config = \"other.toml\"\n", []string{`a.toml:1:1: "config" cannot be set in a config file`}},
		// Today's unquoted lines are not TOML: the error says so and how to keep them.
		{"a.toml", "api-addr = :8081\n", []string{`a.toml:1:12: toml:`, `under another extension, such as .conf`}},
		// Errors about a secret's setting leave its value out.
		{"a.toml", "cluster-key = 12345678\n", []string{`a.toml:1:1: cluster-key: want a string (quote it), got an integer (the value is not shown: a secret)`}},
		{"a.toml", "pusher-app = [\"a:k:s3cr3t,bogus\"]\n", []string{`a.toml:1:1: pusher-app: invalid value (not shown: it holds a secret): `, `unknown option`}},
		// All the errors at once, in the file's order.
		{"a.toml", "zzz = 1\nmax-conns = true\n", []string{`a.toml:1:1: unknown setting "zzz"`, `a.toml:2:1: max-conns: want an integer, got the boolean true`}},

		{"a.yaml", "api-addr: x\nping-intervl: 11s\n", []string{`a.yaml:2:1: unknown setting "ping-intervl"; did you mean "ping-interval"?`}},
		{"a.yml", "max-conns: many\n", []string{`a.yml:1:1: max-conns: want an integer, got the string "many"`}},
		{"a.yaml", "webhook:\n  urll: http://x\n", []string{`a.yaml:2:3: unknown setting "webhook.urll"; did you mean "webhook-url"?`}},
		{"a.yaml", "join:\n  - {a: 1}\n", []string{`a.yaml:1:1: join: element 1: want a string, got a nested mapping`}},
		{"a.yaml", "ping-interval:\n", []string{`a.yaml:1:1: ping-interval: want a duration as a string such as "30s" or "1m30s", got no value`}},
		{"a.yaml", "- a\n- b\n", []string{`a.yaml:1:1: want a mapping`}},
		{"a.yaml", "a: 1\n---\nb: 2\n", []string{`a.yaml:2:1: one YAML document only`}},
		{"a.yaml", "a: [\n", []string{`a.yaml: yaml: line`}},

		{"a.json", "{\n  \"max-conns\": 1.5\n}\n", []string{`a.json:2:3: max-conns: want an integer, got the number 1.5`}},
		{"a.json", "{\"demo\": false,\n \"pingg-interval\": \"1s\"}\n", []string{`a.json:2:2: unknown setting "pingg-interval"; did you mean "ping-interval"?`}},
		{"a.json", "{\"demo\": false, \"demo\": true}\n", []string{`a.json:1:17: demo is set twice (also at 1:2)`}},
		{"a.json", "{\n  \"x\": }\n", []string{`a.json:2:8: invalid character '}'`}},
		{"a.json", "[1]\n", []string{`a.json:1:1: want an object`}},
		{"a.json", "{} {}\n", []string{`a.json:1:5: one JSON object only`}},

		// The line format, for other extensions, names the nearest flag too.
		{"a.conf", "node_name = n9\nping = 1s\n", []string{`a.conf:2: unknown setting "ping"; did you mean "ping-interval"?`}},
	} {
		out, stderr, err := runPrintConfig(t, writeConfig(t, tc.file, tc.body), nil)
		if err == nil {
			t.Errorf("%s %q: started; want it refused:\n%s", tc.file, tc.body, out)
			continue
		}
		if strings.Contains(stderr, "12345678") || strings.Contains(stderr, "s3cr3t") {
			t.Errorf("%s %q: the error shows the secret:\n%s", tc.file, tc.body, stderr)
		}
		for _, want := range tc.want {
			if !strings.Contains(stderr, want) {
				t.Errorf("%s %q:\n%s\nwant it to say %q", tc.file, tc.body, stderr, want)
			}
		}
	}
}

// TestConfigLineFormatKept: the `name = value` lines written before the structured
// formats keep working unchanged in a .conf file and in a file without an extension,
// unquoted values, quoted ones and '_' for '-' alike.
func TestConfigLineFormatKept(t *testing.T) {
	body := `# the format of deploy/kubernetes/configmap.yaml
api-addr = 127.0.0.1:9001
node_name = "from-file"
join = a:1, b:2
demo = false
drain-timeout = 10s
pusher-app = f1:fk1:file-secret-1;f2:fk2:file-secret-2,client-events
`
	// An empty array replaces a list's default with none, as the flag given "" does.
	out, stderr, err := runPrintConfig(t, writeConfig(t, "empty.toml", "client-addr = []\n"), nil)
	if err != nil || !strings.Contains(out, "client-addr = \n") {
		t.Errorf("client-addr = []: %v\n%s%s", err, stderr, out)
	}
	for _, name := range []string{"longlink.conf", "longlink"} {
		out, stderr, err := runPrintConfig(t, writeConfig(t, name, body), nil)
		if err != nil {
			t.Fatalf("%s: %v\n%s", name, err, stderr)
		}
		for _, want := range []string{"api-addr = 127.0.0.1:9001", "node-name = from-file", "join = a:1,b:2", "demo = false",
			"drain-timeout = 10s", "pusher-app = f1:fk1:****;f2:fk2:****,client-events"} {
			if !strings.Contains(out, want+"\n") {
				t.Errorf("%s: --print-config lacks %q:\n%s", name, want, out)
			}
		}
	}
}

// TestConfigExamples: the shipped example and the three examples in docs/deploy.md
// are read without an error, so they cannot drift from the flags.
func TestConfigExamples(t *testing.T) {
	if _, stderr, err := runPrintConfig(t, "deploy/config/longlink.toml", nil); err != nil {
		t.Errorf("deploy/config/longlink.toml: %v\n%s", err, stderr)
	}
	doc, err := os.ReadFile("docs/deploy.md")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, block := range strings.Split(string(doc), "```")[1:] {
		lang, body, _ := strings.Cut(block, "\n")
		ext := map[string]string{"toml": ".toml", "yaml": ".yaml", "json": ".json"}[lang]
		if ext == "" {
			continue
		}
		seen[lang] = true
		out, stderr, err := runPrintConfig(t, writeConfig(t, "example"+ext, body), nil)
		if err != nil {
			t.Errorf("docs/deploy.md %s example: %v\n%s", lang, err, stderr)
			continue
		}
		for _, want := range []string{"join = 10.0.0.2:7946,10.0.0.3:7946", "webhook-url = https://hooks.example.com/longlink", "demo = false"} {
			if !strings.Contains(out, want+"\n") {
				t.Errorf("docs/deploy.md %s example: --print-config lacks %q", lang, want)
			}
		}
	}
	if len(seen) != 3 {
		t.Errorf("docs/deploy.md examples found: %v, want toml, yaml and json", seen)
	}
}
