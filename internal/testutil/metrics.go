package testutil

import (
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"
)

// ParseMetrics reads the Prometheus text format into series -> value, the series
// being the name with its labels as written (`longlink_closes_total{code="1000"}`).
// Comments and blank lines are skipped. A sample line without a number is left out
// and reported in the error (the first such line), the rest still parsed.
func ParseMetrics(text string) (map[string]float64, error) {
	out := map[string]float64{}
	var first error
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if i < 0 || err != nil {
			if first == nil {
				first = fmt.Errorf("malformed metrics line %q", line)
			}
			continue
		}
		out[line[:i]] = v
	}
	return out, first
}

// Scrape returns every sample set (a *metrics.Set) writes, failing t on a malformed
// line.
func Scrape(t testing.TB, set interface{ WritePrometheus(io.Writer) }) map[string]float64 {
	t.Helper()
	var buf bytes.Buffer
	set.WritePrometheus(&buf)
	m, err := ParseMetrics(buf.String())
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// Metrics fetches http://addr/metrics and parses it, failing t if that fails.
func Metrics(t testing.TB, addr string) map[string]float64 {
	t.Helper()
	code, body := Get("http://" + addr + "/metrics")
	if code != 200 {
		t.Fatalf("GET http://%s/metrics: %d %s", addr, code, body)
	}
	m, err := ParseMetrics(body)
	if err != nil {
		t.Fatal(err)
	}
	return m
}
