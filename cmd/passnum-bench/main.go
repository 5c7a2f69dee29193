// Command passnum-bench is the benchmark harness behind `make bench`. It measures passnum
// against PostgreSQL's own pgbench on the same machine, in one run:
//
//	passnum-bench [-scenario all|redeem|issue|report] [-duration 30s] [-concurrency 1024]
//	              [-connections 4] [-rate 0] [-sites 6000] [-skip-pgbench] [-out bench/results]
//
// It starts a private PostgreSQL (fsync and synchronous_commit on, in a temporary
// directory), runs pgbench's TPC-B-like test on it (-i -s 10, then -c 8 -j 2 -T 30 -M
// prepared), creates a fresh database, starts the real passnumd binary against it as a
// separate process (it applies the migrations; dev keys in a temporary directory), and
// seeds what the scenarios need through the gRPC API, as the operator, a funder and a
// distributor would: -sites mediation sites, each with its own token, since passnumd
// limits every site to 2 redemptions a second (bursts of 30).
//
//   - redeem: N goroutines over M gRPC connections redeem vouchers of ONE programme (its
//     Outstanding account and hash chain are hot), each call with a site's JWT and a new
//     idempotency key, for -duration after a warm-up: calls/s against pgbench's tps. Then an
//     open-loop run at a constant rate (half the peak unless -rate) for latency percentiles,
//     measured from each call's scheduled time. passnumd's peak RSS (VmHWM) is read after
//     these loads. Exactly-once is then probed: replays with the same keys must return the
//     recorded redemptions, concurrent redemptions of one voucher must have one winner, and
//     the database must hold exactly the redemptions that were answered OK.
//   - issue: OrderBooks of 100,000 books × 10 vouchers through the API, against a pgx
//     CopyFrom of as many rows of the same shape into a bare table (vouchers' columns, no
//     index or constraint), committed the same way.
//   - report: cmd/passnum-datagen's generator and its SpendReport timing (p95): on the
//     10 M-redemption data of `make bench-data` (var/bench) when it is there, else generated
//     at -report-redemptions into the benchmark's cluster, which the result row says.
//
// The run ends with ledger verification of the benchmark database. The exit status is
// non-zero only when the benchmark could not run, exactly-once did not hold or the ledger
// does not verify, never for a missed target. Results go to <out>/latest.json and a dated
// copy, and a table on stdout; bench/README.md explains the figures.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

type options struct {
	scenario          string
	duration          time.Duration
	warmup            time.Duration
	latencyDuration   time.Duration
	latencyWarmup     time.Duration
	concurrency       int
	connections       int
	rate              float64
	sites             int
	skipPgbench       bool
	pgbenchDuration   time.Duration
	out               string
	passnumd          string
	datagen           string
	issueBooks        int
	reportRedemptions int64
	reportData        string
	cpuProfile        bool
	pgStats           bool
	keep              bool
}

func (o *options) has(scenario string) bool { return o.scenario == "all" || o.scenario == scenario }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "passnum-bench:", err)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	var o options
	fs := flag.NewFlagSet("passnum-bench", flag.ContinueOnError)
	fs.StringVar(&o.scenario, "scenario", "all", "redeem, issue, report or all")
	fs.DurationVar(&o.duration, "duration", 30*time.Second, "measured length of the redemption throughput run")
	fs.DurationVar(&o.warmup, "warmup", 5*time.Second, "unmeasured load before the throughput run")
	fs.DurationVar(&o.latencyDuration, "latency-duration", 30*time.Second, "length of the constant-rate latency run")
	fs.DurationVar(&o.latencyWarmup, "latency-warmup", 35*time.Second, "unmeasured load at the latency run's rate before it (and before pgbench's run at half its peak), "+
		"so that the page cache dirtied by the peak runs and the hand-outs is written back before measuring: the kernel writes pages back 30 s after they were dirtied (vm.dirty_expire_centisecs)")
	fs.IntVar(&o.concurrency, "concurrency", 1024, "redeeming goroutines of the throughput run")
	fs.IntVar(&o.connections, "connections", 4, "gRPC connections the goroutines share")
	fs.Float64Var(&o.rate, "rate", 0, "calls/s of the latency run; 0: half the measured peak")
	fs.IntVar(&o.sites, "sites", 6000, "mediation sites redeeming (each has its own token and passnumd's per-site limit of 2/s, burst 30)")
	fs.BoolVar(&o.skipPgbench, "skip-pgbench", false, "do not run pgbench (no throughput ratio)")
	fs.DurationVar(&o.pgbenchDuration, "pgbench-duration", 30*time.Second, "length of pgbench's run (-T)")
	fs.StringVar(&o.out, "out", filepath.Join("bench", "results"), "directory of latest.json, the dated copy and profiles")
	fs.StringVar(&o.passnumd, "passnumd", "", "passnumd binary; empty: built from ./cmd/passnumd")
	fs.StringVar(&o.datagen, "datagen", "", "passnum-datagen binary; empty: built from ./cmd/passnum-datagen")
	fs.IntVar(&o.issueBooks, "issue-books", 100_000, "books of the issuance scenario's order (10 vouchers each)")
	fs.Int64Var(&o.reportRedemptions, "report-redemptions", 1_000_000, "redemptions generated for the report scenario when -report-data has no data")
	fs.StringVar(&o.reportData, "report-data", filepath.Join("var", "bench"), "data directory of `make bench-data` (10 M redemptions), measured if present")
	fs.BoolVar(&o.cpuProfile, "cpuprofile", false, "save 20 s CPU profiles of passnumd under the throughput load and the latency run to <out>/passnumd.cpu.pprof and passnumd.latency.cpu.pprof")
	fs.BoolVar(&o.pgStats, "pgstats", false, "load pg_stat_statements and print the statements that took the most time in the throughput window")
	fs.BoolVar(&o.keep, "keep", false, "keep the temporary directory (PostgreSQL data, passnumd log) for inspection")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	switch o.scenario {
	case "all", "redeem", "issue", "report":
	default:
		return fmt.Errorf("-scenario %q: want redeem, issue, report or all", o.scenario)
	}
	if o.concurrency < 1 || o.connections < 1 || o.sites < 1 || o.duration <= 0 || o.latencyDuration <= 0 || o.latencyWarmup < 0 {
		return errors.New("-concurrency, -connections, -sites, -duration and -latency-duration must be positive")
	}
	if o.issueBooks < 1 || o.issueBooks > 100_000 {
		return errors.New("-issue-books must be between 1 and 100000 (one order)")
	}

	root, err := moduleRoot()
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "passnum-bench-*")
	if err != nil {
		return err
	}
	if o.keep {
		fmt.Fprintf(os.Stderr, "passnum-bench: keeping %s\n", work)
	} else {
		defer os.RemoveAll(work)
	}
	logFile, err := os.Create(filepath.Join(work, "bench.log"))
	if err != nil {
		return err
	}
	defer logFile.Close()
	log := slog.New(slog.NewTextHandler(io.MultiWriter(os.Stderr, logFile), nil))
	slog.SetDefault(slog.New(slog.NewTextHandler(logFile, nil))) // migrations' chatter

	b := &bench{o: o, root: root, work: work, log: log, res: &results{}}
	defer b.close()
	err = b.run(ctx)
	if b.res.machine != "" {
		b.res.print(os.Stdout)
		if werr := b.res.write(b.outDir(), time.Now()); werr != nil {
			log.Error("write results", "error", werr)
			if err == nil {
				err = werr
			}
		}
	}
	return err
}

// moduleRoot finds the directory of go.mod from the working directory up.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && strings.Contains(string(b), "module github.com/passnum/passnum") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run passnum-bench from the passnum repository (no go.mod of github.com/passnum/passnum above the working directory)")
		}
		dir = parent
	}
}
