package main

import (
	"bytes"
	"io"
	"log/slog"
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
