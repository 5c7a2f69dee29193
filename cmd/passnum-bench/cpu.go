package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTicks is the kernel's USER_HZ, the unit of CPU times in /proc (100 on Linux).
const clockTicks = 100

// cpuSample is the CPU time used so far by the processes taking part in a run, and by the
// whole machine.
type cpuSample struct {
	at       time.Time
	passnumd time.Duration
	postgres time.Duration // the postmaster and its children, exited ones included
	bench    time.Duration // this process: the load generator
	machine  time.Duration // every CPU's non-idle time
}

// sampleCPU reads the CPU times of passnumd (pid), of the PostgreSQL server whose
// postmaster is postmaster, of this process and of the machine.
func sampleCPU(pid, postmaster int) (cpuSample, error) {
	s := cpuSample{at: time.Now()}
	var err error
	if s.passnumd, err = processCPU(pid, false); err != nil {
		return s, err
	}
	if s.postgres, err = processCPU(postmaster, true); err != nil {
		return s, err
	}
	children, err := childrenOf(postmaster)
	if err != nil {
		return s, err
	}
	for _, c := range children {
		if d, err := processCPU(c, false); err == nil { // a backend may exit meanwhile
			s.postgres += d
		}
	}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return s, err
	}
	s.bench = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	s.machine, err = machineCPU()
	return s, err
}

// processCPU returns a process's user and system time, plus that of its waited-for
// children when withChildren.
func processCPU(pid int, withChildren bool) (time.Duration, error) {
	f, err := statFields(pid)
	if err != nil {
		return 0, err
	}
	// Fields after the command: state is 0, ppid 1, ..., utime 11, stime 12, cutime 13, cstime 14.
	n := 2
	if withChildren {
		n = 4
	}
	var ticks int64
	for i := 11; i < 11+n; i++ {
		v, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			return 0, err
		}
		ticks += v
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// statFields returns the fields of /proc/pid/stat that follow the command name.
func statFields(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 15 {
		return nil, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	return f, nil
}

func childrenOf(ppid int) ([]int, error) {
	dirs, err := filepath.Glob("/proc/[0-9]*")
	if err != nil {
		return nil, err
	}
	want := strconv.Itoa(ppid)
	var out []int
	for _, d := range dirs {
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil {
			continue
		}
		if f, err := statFields(pid); err == nil && f[1] == want {
			out = append(out, pid)
		}
	}
	return out, nil
}

// machineCPU is the non-idle time of every CPU since boot.
func machineCPU() (time.Duration, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	var busy int64
	for i, v := range f[1:8] { // user nice system idle iowait irq softirq
		if i == 3 || i == 4 {
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, err
		}
		busy += n
	}
	return time.Duration(busy) * time.Second / clockTicks, nil
}

// postmasterPID reads the server's pid from postmaster.pid in its data directory.
func postmasterPID(dataDir string) (int, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return strconv.Atoi(strings.TrimSpace(line))
}

// cpuPerCall describes where the CPU went between two samples, per call completed, and
// reports whether other processes used more than busyOutside cores meanwhile.
func cpuPerCall(a, b cpuSample, calls int) (string, bool) {
	if calls <= 0 {
		return "no calls", false
	}
	per := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(calls) }
	wall := b.at.Sub(a.at).Seconds()
	mine := (b.passnumd - a.passnumd) + (b.postgres - a.postgres) + (b.bench - a.bench)
	outside := max(0, ((b.machine-a.machine)-mine).Seconds()/wall)
	s := fmt.Sprintf("CPU per call: passnumd %.0f µs, PostgreSQL %.0f µs, load generator %.0f µs; "+
		"cores busy %.2f of %d (%.2f outside the benchmark)",
		per(b.passnumd-a.passnumd), per(b.postgres-a.postgres), per(b.bench-a.bench),
		(b.machine-a.machine).Seconds()/wall, runtime.NumCPU(), outside)
	busy := outside > busyOutside
	if busy {
		s += " — " + busyNote
	}
	return s, busy
}

// busyOutside is the CPU (in cores) other processes may use during a measurement before
// the result says it is not representative.
const busyOutside = 0.2

const busyNote = "OTHER WORK SHARED THE MACHINE: the figure is not representative"
