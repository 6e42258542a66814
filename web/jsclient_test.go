package web

import (
	"os"
	"os/exec"
	"testing"
)

// TestJSClientUnitTests runs the browser client's own tests (node's built-in runner,
// no npm packages) so `go test ./...` covers them too.
func TestJSClientUnitTests(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		if os.Getenv("LONGLINK_E2E") == "1" {
			t.Fatal("node is not installed")
		}
		t.Skip("node is not installed; install Node.js to run the JavaScript client's tests")
	}
	cmd := exec.Command(node, "--test", "../clients/js/test/")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node --test clients/js/test/: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}
