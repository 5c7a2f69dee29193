package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Names of the figures in the JSON results; docs and history files rely on them.
const (
	figThroughput = "redeem_throughput_vs_pgbench"
	figP99        = "redeem_p99_ms"
	figIssue      = "issue_1m_vs_copy"
	figReport     = "report_p95_ms"
	figRSS        = "server_peak_rss_mb"
)

// target is one measured figure. For a figure compared with a peer measurement (pgbench,
// COPY), Baseline is the peer figure and Ratio = Value / Baseline is what Target bounds; for
// an absolute figure, Baseline is the limit itself and Target repeats it.
type target struct {
	Name     string  `json:"name"`
	Value    float64 `json:"value"`
	Unit     string  `json:"unit"`
	Baseline float64 `json:"baseline"`
	Ratio    float64 `json:"ratio"`
	Target   float64 `json:"target"`
	Pass     bool    `json:"pass"`
	Note     string  `json:"note,omitempty"`

	higher bool   // the ratio must reach Target (else stay at or under it)
	peer   string // what Baseline is, for the table
}

// results collects the run's figures and context.
type results struct {
	commit  string
	machine string
	targets []target
	info    []string // further figures printed under the table
}

// peerRatio records a figure compared with a peer's: ratio = value / peer, which must be at
// least want (higher) or at most want.
func (r *results) peerRatio(name string, value float64, unit string, peer float64, peerName string, want float64, higher bool, note string) {
	t := target{Name: name, Value: round(value, 3), Unit: unit, Baseline: round(peer, 3), Target: want, Note: note,
		higher: higher, peer: peerName}
	if peer > 0 {
		t.Ratio = round(value/peer, 3)
		t.Pass = (higher && t.Ratio >= want) || (!higher && t.Ratio <= want)
	}
	r.set(t)
}

// limit records an absolute figure that must stay at or under max.
func (r *results) limit(name string, value float64, unit string, max float64, note string) {
	t := target{Name: name, Value: round(value, 3), Unit: unit, Baseline: max, Target: max, Note: note, peer: "limit"}
	t.Ratio = round(value/max, 3)
	t.Pass = value <= max
	r.set(t)
}

func (r *results) set(t target) {
	for i := range r.targets {
		if r.targets[i].Name == t.Name {
			r.targets[i] = t
			return
		}
	}
	r.targets = append(r.targets, t)
}

func (r *results) addInfo(format string, args ...any) {
	r.info = append(r.info, fmt.Sprintf(format, args...))
}

func round(v float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(v*p) / p
}

func (r *results) print(w io.Writer) {
	fmt.Fprintf(w, "\npassnum benchmark — commit %s\nmachine: %s\n\n", r.commit, r.machine)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "figure\tvalue\tlimit or peer\tratio\ttarget\tresult")
	for _, t := range r.targets {
		cmp := "≤"
		if t.higher {
			cmp = "≥"
		}
		want := fmt.Sprintf("ratio %s %g", cmp, t.Target)
		if t.peer == "limit" {
			want = fmt.Sprintf("%s %g %s", cmp, t.Target, t.Unit)
		}
		verdict := "FAIL"
		if t.Pass {
			verdict = "pass"
		}
		fmt.Fprintf(tw, "%s\t%s %s\t%s %s\t%.3f\t%s\t%s\n", t.Name, num(t.Value), t.Unit, t.peer, num(t.Baseline), t.Ratio, want, verdict)
	}
	tw.Flush()
	for _, t := range r.targets {
		if t.Note != "" {
			fmt.Fprintf(w, "  %s: %s\n", t.Name, t.Note)
		}
	}
	if len(r.info) > 0 {
		fmt.Fprintln(w)
		for _, s := range r.info {
			fmt.Fprintln(w, "  "+s)
		}
	}
	fmt.Fprintln(w)
}

func num(v float64) string {
	switch {
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'f', 2, 64)
}

// write saves latest.json and a copy named after the run's time in dir.
func (r *results) write(dir string, at time.Time) error {
	doc := struct {
		Commit  string   `json:"commit"`
		Machine string   `json:"machine"`
		Date    string   `json:"date"`
		Targets []target `json:"targets"`
		Info    []string `json:"info,omitempty"`
	}{r.commit, r.machine, at.UTC().Format(time.RFC3339), r.targets, r.info}
	data, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return err
	}
	data = append(data, '\n')
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	dated := filepath.Join(dir, at.UTC().Format("2006-01-02T150405Z")+".json")
	for _, path := range []string{filepath.Join(dir, "latest.json"), dated} {
		if err := os.WriteFile(path, data, 0o644); err != nil {
			return err
		}
	}
	fmt.Printf("results: %s and %s\n", filepath.Join(dir, "latest.json"), dated)
	return nil
}

// gitCommit is the checked-out commit, with "-dirty" when the working tree has changes.
func gitCommit(root string) string {
	out, err := exec.Command("git", "-C", root, "rev-parse", "--short=12", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	commit := strings.TrimSpace(string(out))
	status, err := exec.Command("git", "-C", root, "status", "--porcelain", "--untracked-files=no").Output()
	if err == nil && len(bytes.TrimSpace(status)) > 0 {
		commit += "-dirty"
	}
	return commit
}

// machineLine describes the CPU, memory and software the figures were measured with.
func machineLine(pgVersion string) string {
	cpu := "unknown CPU"
	var memKB int64
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				memKB, _ = strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			}
		}
	}
	return fmt.Sprintf("%s, %d cores, %.1f GiB RAM, PostgreSQL %s, %s %s/%s",
		cpu, runtime.NumCPU(), float64(memKB)/(1<<20), pgVersion, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
