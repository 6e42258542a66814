package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"longlink/internal/testutil"
)

// The JavaScript client as a team installs it (docs/client-js.md, "Install"): npm
// pack of clients/js, the tarball installed into a scratch project with `npm install
// <tarball> ws`, its types compiled by tsc, and the installed package used from this
// machine's Node.js (with ws, and with --experimental-websocket) and from headless
// Chromium against a real node: it connects, gets pushes posted to the HTTP API (a
// text, an acknowledged one, a binary one) and closes a link while it is connecting.

// jsPackageDevDeps are the test-only packages of e2e/package.json the scratch
// project installs, at the versions `npm ci` put in e2e/node_modules (so in npm's
// cache: --prefer-offline does not ask the registry again). ws is also what the docs
// tell Node 20 users to install.
var jsPackageDevDeps = []string{"ws", "typescript", "@types/ws", "@types/node"}

func TestJSPackage(t *testing.T) {
	requireNodeModules(t, jsPackageDevDeps...)
	npm := requireNPM(t)
	major := nodeMajor(t)
	if major < 20 {
		// The package's engines say >= 20; Debian 12's nodejs is 18.
		msg := fmt.Sprintf("the JavaScript package test needs Node.js >= 20 (its engines), this is %d", major)
		if os.Getenv("LONGLINK_E2E") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	testutil.Binary(t)
	t.Logf("node %s, npm %s", strings.TrimSpace(run(t, "", "node", "--version")), strings.TrimSpace(run(t, "", npm, "--version")))

	app := installJSPackage(t, npm)

	t.Run("types", func(t *testing.T) {
		// browser: lib dom, bundler resolution; node: @types/node with ws's
		// WebSocket, nodenext; bare: neither, node10 (the types field).
		for _, config := range []string{"browser", "node", "bare"} {
			run(t, app, filepath.Join(app, "node_modules", ".bin", "tsc"), "-p", filepath.Join("types", "tsconfig."+config+".json"))
		}
	})

	srv := startServer(t, prodFlags...)

	t.Run("node with ws", func(t *testing.T) {
		d := startJSDriverIn(t, app, []string{"consumer.mjs"}, "LONGLINK_WS=ws")
		// Node 20 as it is: the client says how to get a WebSocket.
		r := d.do(t, "noWebSocket")
		if major < 22 {
			msg, _ := r["error"].(string)
			if r["global"] != false || !strings.HasPrefix(msg, "TypeError: ") || !strings.Contains(msg, "npm install ws") || !strings.Contains(msg, "--experimental-websocket") {
				t.Fatalf("node %v without a WebSocket: %v", r["node"], r)
			}
			t.Logf("without a WebSocket: %s", msg)
		} else {
			t.Logf("node %v has a global WebSocket: the no-WebSocket error is covered by clients/js/test/package.test.mjs", r["node"])
		}
		useJSPackage(t, d, srv, "501", "close")
	})

	t.Run("node --experimental-websocket", func(t *testing.T) {
		d := startJSDriverIn(t, app, []string{"--experimental-websocket", "consumer.mjs"}, "LONGLINK_WS=global")
		if r := d.do(t, "noWebSocket"); r["global"] != true || r["error"] != "" {
			t.Fatalf("node --experimental-websocket: %v", r)
		}
		// Node 20's built-in WebSocket (undici) leaves a socket closed while connecting
		// CLOSING, without a close event.
		useJSPackage(t, d, srv, "502", "closing")
	})

	t.Run("chromium", func(t *testing.T) {
		chromium := requireTools(t)
		// The scratch project as a static site: index.html imports the installed
		// package through an import map.
		site := httptest.NewServer(http.FileServer(http.Dir(app)))
		t.Cleanup(site.Close)
		d := startJSDriver(t, filepath.Join("jspackage", "chromium.mjs"), "LONGLINK_PAGE_URL="+site.URL+"/index.html", "LONGLINK_CHROMIUM="+chromium)
		r := d.do(t, "open", "timeoutMs", 30000)
		t.Logf("browser: %v", r["userAgent"])
		useJSPackage(t, d, srv, "503", "close")
	})
}

// useJSPackage is what every runtime does with the installed package, as user;
// until is what closeWhileConnecting waits for (see jspackage/session.js).
func useJSPackage(t *testing.T, d *jsDriver, srv *testutil.Node, user, until string) {
	t.Helper()
	tok := testutil.Token(t, tokenSecret, user)
	url := "ws://" + srv.Client + "/ws"

	r := d.do(t, "connect", "url", url, "token", tok, "timeoutMs", 20000)
	if want := []any{"all", "user:" + user}; !reflect.DeepEqual(r["streams"], want) || r["state"] != "open" {
		t.Fatalf("welcome: streams %v, state %v; want %v, open", r["streams"], r["state"], want)
	}

	nonce := strconv.FormatInt(time.Now().UnixNano(), 36)
	text := "text-" + nonce
	push(t, srv, `{"to":{"users":["`+user+`"]},"data":"`+text+`"}`)
	d.do(t, "expect", "text", text)

	// The client acknowledges once its handler has returned: the API's wait says so.
	acked := "acked-" + nonce
	a := testutil.Do(t, http.MethodPost, "http://"+srv.API+"/v1/push",
		`{"to":{"users":["`+user+`"]},"data":"`+acked+`","ack":true,"wait":"10s"}`, testutil.Bearer(apiKey)...)
	if a.Status != http.StatusOK || !strings.Contains(a.Raw, `"status":"acked"`) {
		t.Fatalf("push with ack and wait: %d %s", a.Status, a.Raw)
	}
	d.do(t, "expect", "text", acked)

	// Binary data arrives as an ArrayBuffer (binaryType 'arraybuffer').
	push(t, srv, `{"to":{"users":["`+user+`"]},"data_base64":"AAEC/w=="}`)
	d.do(t, "expect", "text", "hex:000102ff")

	// A link closed while its socket connects: with ws, the aborted handshake emits
	// 'error' on a socket the client has let go of, which must not crash Node.
	r = d.do(t, "closeWhileConnecting", "url", url, "token", tok, "until", until)
	if r["readyStateAtClose"] != float64(0) || r["state"] != "closed" {
		t.Fatalf("close while connecting: %v (want readyStateAtClose 0, state closed)", r)
	}

	r = d.do(t, "close")
	if errs, _ := r["errors"].([]any); r["state"] != "closed" || len(errs) > 0 {
		t.Fatalf("close: state %v, the client reported errors %v", r["state"], r["errors"])
	}
}

// installJSPackage packs clients/js and installs the tarball, with ws, into a new
// scratch project holding jspackage/ and lines.mjs, as docs/client-js.md says;
// then the type checker and its types (not saved: the application's own choice).
func installJSPackage(t *testing.T, npm string) string {
	t.Helper()
	dir := t.TempDir()
	packDir, app := filepath.Join(dir, "pack"), filepath.Join(dir, "app")
	if err := os.Mkdir(packDir, 0o755); err != nil {
		t.Fatal(err)
	}

	var packed []struct {
		Name, Version, Filename string
		Files                   []struct{ Path string }
	}
	out := run(t, filepath.Join("..", "clients", "js"), npm, "pack", "--pack-destination", packDir, "--json")
	if err := json.Unmarshal([]byte(out), &packed); err != nil || len(packed) != 1 {
		t.Fatalf("npm pack --json: %v\n%s", err, out)
	}
	p := packed[0]
	var files []string
	for _, f := range p.Files {
		files = append(files, f.Path)
	}
	slices.Sort(files)
	if want := []string{"LICENSE", "README.md", "longlink.d.ts", "longlink.js", "package.json"}; p.Name != "longlink-client" || !slices.Equal(files, want) {
		t.Fatalf("npm pack: %s@%s with %v; want longlink-client with %v", p.Name, p.Version, files, want)
	}
	t.Logf("packed %s (%s@%s)", p.Filename, p.Name, p.Version)

	if err := os.CopyFS(app, os.DirFS("jspackage")); err != nil {
		t.Fatal(err)
	}
	lines, err := os.ReadFile("lines.mjs")
	if err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{
		"lines.mjs":    string(lines),
		"package.json": `{"name": "scratch-app", "private": true, "type": "module"}` + "\n",
	} {
		if err := os.WriteFile(filepath.Join(app, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	install := []string{"install", "--no-audit", "--no-fund", "--prefer-offline"}
	run(t, app, npm, append(install, filepath.Join(packDir, p.Filename), "ws@"+e2eModuleVersion(t, "ws"))...)
	var dev []string
	for _, m := range jsPackageDevDeps[1:] {
		dev = append(dev, m+"@"+e2eModuleVersion(t, m))
	}
	run(t, app, npm, append(append(install, "--no-save"), dev...)...)

	// What the application got: the package's own files, the types among them.
	var installed struct {
		Name, Version, License, Type, Types string
		Exports                             map[string]any
	}
	readJSON(t, filepath.Join(app, "node_modules", "longlink-client", "package.json"), &installed)
	if installed.Version != p.Version || installed.Type != "module" || installed.License == "" || installed.Exports["."] == nil {
		t.Fatalf("installed package.json: %+v", installed)
	}
	for _, f := range []string{"longlink.js", "longlink.d.ts"} {
		if _, err := os.Stat(filepath.Join(app, "node_modules", "longlink-client", f)); err != nil {
			t.Fatalf("the installed package lacks %s: %v", f, err)
		}
	}
	return app
}

// requireNPM returns npm's path, or skips (fails under LONGLINK_E2E=1).
func requireNPM(t *testing.T) string {
	t.Helper()
	npm, err := exec.LookPath("npm")
	if err != nil {
		msg := "the JavaScript package test needs npm (apt-get install -y npm)"
		if os.Getenv("LONGLINK_E2E") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg + "; set LONGLINK_E2E=1 to make this a failure")
	}
	return npm
}

// run runs name with args in dir ("": e2e/) and returns its standard output,
// failing the test with both outputs if it fails.
func run(t *testing.T, dir, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "npm_config_update_notifier=false")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s (in %s): %v\n%s%s", name, strings.Join(args, " "), dir, err, out, stderr.String())
	}
	return string(out)
}

func e2eModuleVersion(t *testing.T, module string) string {
	t.Helper()
	var m struct{ Version string }
	readJSON(t, filepath.Join("node_modules", module, "package.json"), &m)
	return m.Version
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// nodeMajor is the major version of the node on PATH.
func nodeMajor(t *testing.T) int {
	t.Helper()
	v := strings.TrimSpace(run(t, "", "node", "--version"))
	var major int
	if _, err := fmt.Sscanf(v, "v%d.", &major); err != nil {
		t.Fatalf("node --version %q: %v", v, err)
	}
	return major
}
