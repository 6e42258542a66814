package main

import (
	"bytes"
	"io"
	"log/slog"
	"strings"
	"testing"
)

// --max-pending-bytes and its environment twin reach node.Config (issue 10, finding 3).
func TestMaxPendingBytesFlag(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, c := range []struct {
		args []string
		env  map[string]string
		want int64
	}{
		{nil, nil, 256 << 20}, // loop.Defaults()
		{[]string{"--max-pending-bytes", "1048576"}, nil, 1 << 20},
		{nil, map[string]string{"LONGLINK_MAX_PENDING_BYTES": "2097152"}, 2 << 20},
	} {
		o, fs := serveFlags()
		fs.SetOutput(&bytes.Buffer{})
		lookup := func(k string) (string, bool) { v, ok := c.env[k]; return v, ok }
		if err := parseLayered(fs, c.args, lookup); err != nil {
			t.Fatal(err)
		}
		cfg, err := o.nodeConfig(log)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Loop.MaxPendingBytes != c.want {
			t.Errorf("%v %v: MaxPendingBytes = %d, want %d", c.args, c.env, cfg.Loop.MaxPendingBytes, c.want)
		}
	}
}

// A budget for all unfinished messages smaller than one message would close honest
// clients: refused at start, naming both flags.
func TestMaxPendingBytesBelowMaxMessageRefused(t *testing.T) {
	o, fs := serveFlags()
	fs.SetOutput(&bytes.Buffer{})
	if err := parseLayered(fs, []string{"--max-pending-bytes", "1000", "--max-message", "2000"}, func(string) (string, bool) { return "", false }); err != nil {
		t.Fatal(err)
	}
	_, err := o.nodeConfig(slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil || !strings.Contains(err.Error(), "--max-pending-bytes") || !strings.Contains(err.Error(), "--max-message") {
		t.Fatalf("nodeConfig: %v; want an error naming both flags", err)
	}
}
