package main

import (
	"flag"
	"math"
	"runtime/debug"
	"slices"
	"testing"
)

func TestChooseGC(t *testing.T) {
	p := func(n int) *int { return &n }
	l := func(n int64) *int64 { return &n }
	type want struct {
		percentSet bool
		percent    int
		percentSrc string
		limitSet   bool
		limit      int64
		limitSrc   string
	}
	for _, tc := range []struct {
		name string
		g    gcFlags
		env  map[string]string
		want want
	}{
		{"nothing set: passnumd defaults", gcFlags{}, nil,
			want{true, defaultGCPercent, "passnumd default", true, defaultMemoryLimit, "passnumd default"}},
		{"empty variables are ignored", gcFlags{}, map[string]string{"GOGC": "", "GOMEMLIMIT": ""},
			want{true, defaultGCPercent, "passnumd default", true, defaultMemoryLimit, "passnumd default"}},
		{"GOGC set: both left to the runtime", gcFlags{}, map[string]string{"GOGC": "200"},
			want{false, 0, "GOGC", false, 0, "Go default (GOGC is set)"}},
		{"GOMEMLIMIT set: both left to the runtime", gcFlags{}, map[string]string{"GOMEMLIMIT": "1GiB"},
			want{false, 0, "Go default (GOMEMLIMIT is set)", false, 0, "GOMEMLIMIT"}},
		{"flags win over the environment", gcFlags{percent: p(150), limit: l(64 << 20)}, map[string]string{"GOGC": "off", "GOMEMLIMIT": "1GiB"},
			want{true, 150, "-gc-percent", true, 64 << 20, "-memory-limit"}},
		{"one flag, the other default", gcFlags{percent: p(-1)}, nil,
			want{true, -1, "-gc-percent", true, defaultMemoryLimit, "passnumd default"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			percent, limit := chooseGC(tc.g, func(k string) string { return tc.env[k] })
			got := want{percent.set, percent.value, percent.from, limit.set, limit.value, limit.from}
			if got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestGCFlags(t *testing.T) {
	var g gcFlags
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	g.register(fs)
	if err := fs.Parse([]string{"-gc-percent", "off", "-memory-limit", "64MiB"}); err != nil {
		t.Fatal(err)
	}
	if g.percent == nil || *g.percent != -1 || g.limit == nil || *g.limit != 64<<20 {
		t.Fatalf("flags %v %v", g.percent, g.limit)
	}
	for _, args := range [][]string{{"-gc-percent", "-5"}, {"-gc-percent", "lots"}, {"-memory-limit", "100MB"}} {
		var g gcFlags
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		fs.SetOutput(nopWriter{})
		g.register(fs)
		if err := fs.Parse(args); err == nil {
			t.Errorf("%q accepted", args)
		}
	}
}

type nopWriter struct{}

func (nopWriter) Write(p []byte) (int, error) { return len(p), nil }

func TestParseMemoryLimit(t *testing.T) {
	for in, want := range map[string]int64{
		"off": math.MaxInt64, "1": 1, "100B": 100, "4KiB": 4 << 10, "100MiB": 100 << 20,
		"2GiB": 2 << 30, "1TiB": 1 << 40, "8388607TiB": 8388607 << 40,
	} {
		if got, err := parseMemoryLimit(in); err != nil || got != want {
			t.Errorf("parseMemoryLimit(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "-1MiB", "+1MiB", "100MB", "100 MiB", "1.5GiB", "MiB", "iB", "1B0", "8388608TiB", "99999999999999999999"} {
		if got, err := parseMemoryLimit(in); err == nil {
			t.Errorf("parseMemoryLimit(%q) = %d, accepted", in, got)
		}
	}
	for n, want := range map[uint64]string{100 << 20: "100MiB", 1 << 30: "1GiB", 1536 << 20: "1536MiB", 1000: "1000B", 2048: "2KiB"} {
		if got := formatBytes(n); got != want {
			t.Errorf("formatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

// applyGC changes the process's collector: restore it afterwards.
func TestApplyGC(t *testing.T) {
	oldPercent := debug.SetGCPercent(100)
	oldLimit := debug.SetMemoryLimit(-1)
	t.Cleanup(func() {
		debug.SetGCPercent(oldPercent)
		debug.SetMemoryLimit(oldLimit)
	})
	attrs, unbounded := applyGC(gcFlags{}, func(string) string { return "" })
	want := []any{"gogc", "400", "gogc_from", "passnumd default", "memory_limit", "100MiB", "memory_limit_from", "passnumd default"}
	if !slices.Equal(attrs, want) || unbounded {
		t.Fatalf("got %v (unbounded %v), want %v", attrs, unbounded, want)
	}
	off, none := -1, int64(math.MaxInt64)
	attrs, unbounded = applyGC(gcFlags{percent: &off, limit: &none}, func(string) string { return "" })
	want = []any{"gogc", "off", "gogc_from", "-gc-percent", "memory_limit", "none", "memory_limit_from", "-memory-limit"}
	if !slices.Equal(attrs, want) || !unbounded {
		t.Fatalf("got %v (unbounded %v), want %v", attrs, unbounded, want)
	}
}
