package main

import (
	"flag"
	"fmt"
	"math"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
)

// Garbage-collector settings of `passnumd serve`.
//
// Under the redemption load the collector took about 8% of passnumd's CPU with Go's
// default GOGC=100, while the heap stayed small (peak RSS about 80 MB). A higher GC
// percent makes collections rarer; a soft memory limit stops the heap from growing with
// it: as the Go runtime's memory nears the limit, collections become as frequent as needed
// to stay under it (the runtime spends at most about half the CPU on that). The limit
// counts the runtime's memory (heap, stacks, metadata), not the binary's mapped code, so
// 100 MiB leaves room under the 150 MB of RSS passnumd must stay within.
//
// GOGC and GOMEMLIMIT are the environment variables of these settings, read by the Go
// runtime itself: when either is set, the operator has taken charge of the collector and
// passnumd changes neither default. The flags -gc-percent and -memory-limit, when given,
// win over both.
const (
	defaultGCPercent   = 400
	defaultMemoryLimit = 100 << 20 // bytes
)

// gcFlags are the flags of the collector settings; nil means not given.
type gcFlags struct {
	percent *int   // -gc-percent; -1 is off
	limit   *int64 // -memory-limit in bytes; math.MaxInt64 is none
}

func (g *gcFlags) register(fs *flag.FlagSet) {
	fs.Func("gc-percent", fmt.Sprintf("garbage collection target percentage, or off; default %d unless GOGC or GOMEMLIMIT is set (GOGC)",
		defaultGCPercent), func(s string) error {
		p, err := parseGCPercent(s)
		if err != nil {
			return err
		}
		g.percent = &p
		return nil
	})
	fs.Func("memory-limit", fmt.Sprintf("soft memory limit of the Go runtime, such as 100MiB (B, KiB, MiB, GiB, TiB), or off; default %dMiB unless GOGC or GOMEMLIMIT is set (GOMEMLIMIT)",
		defaultMemoryLimit>>20), func(s string) error {
		l, err := parseMemoryLimit(s)
		if err != nil {
			return err
		}
		g.limit = &l
		return nil
	})
}

// gcSetting is one collector setting to apply, and where it comes from.
type gcSetting[T any] struct {
	set   bool // false: leave the runtime's value (from the environment or Go's default)
	value T
	from  string
}

// chooseGC decides the settings from the flags and the environment (getenv).
func chooseGC(g gcFlags, getenv func(string) string) (percent gcSetting[int], limit gcSetting[int64]) {
	// The runtime ignores an empty GOGC or GOMEMLIMIT, and so do we.
	gogc, gomemlimit := getenv("GOGC"), getenv("GOMEMLIMIT")
	percent = chooseSetting(g.percent, "-gc-percent", gogc, "GOGC", gomemlimit, "GOMEMLIMIT", defaultGCPercent)
	limit = chooseSetting(g.limit, "-memory-limit", gomemlimit, "GOMEMLIMIT", gogc, "GOGC", defaultMemoryLimit)
	return percent, limit
}

// chooseSetting picks one GC setting: its flag, else its environment variable (left to the
// runtime), else Go's default when the operator tuned the other variable, else passnumd's.
func chooseSetting[T any](flag *T, flagName, env, envName, otherEnv, otherName string, def T) gcSetting[T] {
	switch {
	case flag != nil:
		return gcSetting[T]{set: true, value: *flag, from: flagName}
	case env != "":
		return gcSetting[T]{from: envName}
	case otherEnv != "":
		return gcSetting[T]{from: "Go default (" + otherName + " is set)"}
	default:
		return gcSetting[T]{set: true, value: def, from: "passnumd default"}
	}
}

// applyGC sets what chooseGC decided and returns the log attributes of the settings now
// in effect, read back from the runtime; unbounded reports a collector that is off with
// no memory limit, where the heap grows without bound.
func applyGC(g gcFlags, getenv func(string) string) (attrs []any, unbounded bool) {
	percent, limit := chooseGC(g, getenv)
	if percent.set {
		debug.SetGCPercent(percent.value)
	}
	if limit.set {
		debug.SetMemoryLimit(limit.value)
	}
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}, {Name: "/gc/gomemlimit:bytes"}}
	metrics.Read(s)
	// The runtime reports GOGC=off (-1) as a huge uint64, and no limit as MaxInt64.
	gogc, memLimit := "off", "none"
	if v := s[0].Value; v.Kind() == metrics.KindUint64 && v.Uint64() <= math.MaxInt32 {
		gogc = strconv.FormatUint(v.Uint64(), 10)
	}
	if v := s[1].Value; v.Kind() == metrics.KindUint64 && v.Uint64() < math.MaxInt64 {
		memLimit = formatBytes(v.Uint64())
	}
	attrs = []any{"gogc", gogc, "gogc_from", percent.from, "memory_limit", memLimit, "memory_limit_from", limit.from}
	return attrs, gogc == "off" && memLimit == "none"
}

// parseGCPercent reads a value as GOGC does: a non-negative integer or "off" (-1).
func parseGCPercent(s string) (int, error) {
	if s == "off" {
		return -1, nil
	}
	p, err := strconv.Atoi(s)
	if err != nil || p < 0 {
		return 0, fmt.Errorf("%q: want a percentage such as %d, or off", s, defaultGCPercent)
	}
	return p, nil
}

// parseMemoryLimit reads a value as GOMEMLIMIT does: a positive number of bytes with an
// optional unit B, KiB, MiB, GiB or TiB, or "off" (no limit).
func parseMemoryLimit(s string) (int64, error) {
	if s == "off" {
		return math.MaxInt64, nil
	}
	bad := fmt.Errorf("%q: want a size such as 100MiB (B, KiB, MiB, GiB, TiB), or off", s)
	digits := strings.TrimRight(s, "BKMGTi")
	shift := 0
	switch s[len(digits):] {
	case "", "B":
	case "KiB":
		shift = 10
	case "MiB":
		shift = 20
	case "GiB":
		shift = 30
	case "TiB":
		shift = 40
	default:
		return 0, bad
	}
	n, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || n <= 0 || digits[0] == '+' {
		return 0, bad
	}
	if n > math.MaxInt64>>shift {
		return 0, bad
	}
	return n << shift, nil
}

// formatBytes writes n in the largest binary unit that divides it.
func formatBytes(n uint64) string {
	for _, u := range []struct {
		shift uint
		name  string
	}{{40, "TiB"}, {30, "GiB"}, {20, "MiB"}, {10, "KiB"}} {
		if n >= 1<<u.shift && n%(1<<u.shift) == 0 {
			return strconv.FormatUint(n>>u.shift, 10) + u.name
		}
	}
	return strconv.FormatUint(n, 10) + "B"
}
