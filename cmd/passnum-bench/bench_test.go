package main

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// pgbench -R -l writes one line per transaction: client, transaction number, run time (µs),
// script, epoch seconds, epoch µs, schedule lag (µs); one file per thread.
func TestPgbenchLatencies(t *testing.T) {
	for _, c := range []struct {
		name    string
		files   map[string]string
		want    []time.Duration // sorted
		wantErr bool
	}{
		{"two threads", map[string]string{
			"pgbench_log.1":   "0 1 1500 0 1795356732 816942 500\n0 2 800 0 1795356732 819575 0\n",
			"pgbench_log.1.1": "4 1 10000 0 1795356733 100 90000\n",
		}, []time.Duration{800 * time.Microsecond, 2 * time.Millisecond, 100 * time.Millisecond}, false},
		{"no transactions", map[string]string{"pgbench_log.1": ""}, nil, true},
		{"line without schedule lag", map[string]string{"pgbench_log.1": "0 1 1500 0 1795356732 816942\n"}, nil, true},
		{"not a number", map[string]string{"pgbench_log.1": "0 1 1.5 0 1795356732 816942 3\n"}, nil, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, text := range c.files {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			got, err := pgbenchLatencies(dir)
			if (err != nil) != c.wantErr {
				t.Fatalf("err = %v, want error %v", err, c.wantErr)
			}
			if !slices.Equal(got, c.want) {
				t.Fatalf("latencies %v, want %v", got, c.want)
			}
		})
	}
}
