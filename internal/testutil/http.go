package testutil

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// FreeAddr returns a loopback address nothing listens on for network ("tcp" or
// "udp"). Another process can take it before the caller binds it: prefer port 0
// wherever the address can be read back.
func FreeAddr(t testing.TB, network string) string {
	t.Helper()
	var addr string
	var err error
	if network == "udp" {
		var c net.PacketConn
		if c, err = net.ListenPacket("udp", "127.0.0.1:0"); err == nil {
			addr = c.LocalAddr().String()
			c.Close()
		}
	} else {
		var l net.Listener
		if l, err = net.Listen("tcp", "127.0.0.1:0"); err == nil {
			addr = l.Addr().String()
			l.Close()
		}
	}
	if err != nil {
		t.Fatalf("cannot find a free %s port: %v", network, err)
	}
	return addr
}

var getClient = &http.Client{Timeout: 5 * time.Second}

// Get fetches url and returns the status and body, or 0 and the error's text when
// the request fails (a server that is down or not up yet).
func Get(url string) (int, string) {
	resp, err := getClient.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// Response is an HTTP answer read whole.
type Response struct {
	Status int
	Header http.Header
	Raw    string         // the body
	Body   map[string]any // Raw decoded, when it is a JSON object
	// JSONErr says why Raw did not decode into Body.
	JSONErr error
}

// Do sends body (as application/json unless it is empty) to url and reads the
// answer, failing t only if no answer comes. header holds name, value pairs set on
// the request; an empty value removes that header.
func Do(t testing.TB, method, url, body string, header ...string) Response {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		if header[i+1] == "" {
			req.Header.Del(header[i])
		} else {
			req.Header.Set(header[i], header[i+1])
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the answer: %v", method, url, err)
	}
	r := Response{Status: resp.StatusCode, Header: resp.Header, Raw: string(raw)}
	r.JSONErr = json.Unmarshal(raw, &r.Body)
	return r
}

// Bearer is the header pair for Do that authenticates with an API key.
func Bearer(key string) []string { return []string{"Authorization", "Bearer " + key} }
