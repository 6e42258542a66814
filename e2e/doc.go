// Package e2e holds the end-to-end browser test: it builds the real longlink binary,
// starts it on loopback, and drives the demo page in headless Chromium (through
// playwright-core, e2e/browser.mjs) across pushes and a server restart.
//
// It also runs the Pusher Channels libraries against real nodes (docs/pusher.md,
// "How it is tested"): pusher-js and the `pusher` server SDK from Node
// (pusher_node.mjs, pusher_node_test.go) and Laravel Echo in Chromium (echo.mjs,
// echo_test.go), on one node and on a three-node cluster.
//
// jspackage_test.go installs the JavaScript client as its users do: the tarball of
// `npm pack` in clients/js, with ws, in a scratch project; it type-checks an
// application's use of it (tsc) and runs it from Node.js and Chromium against a real
// node (jspackage/, docs/client-js.md "Install").
//
// It has no non-test code. Install once: `apt-get install -y chromium nodejs npm` and
// `cd e2e && npm ci`; then `go test ./e2e/`. Without Chromium or node_modules the test
// skips, unless LONGLINK_E2E=1 (CI), which turns the skip into a failure.
// LONGLINK_E2E_BINARY runs a prebuilt binary instead of building one;
// LONGLINK_CHROMIUM overrides /usr/bin/chromium.
//
// The test process owns the server and node subprocesses and ends them on every path.
package e2e
