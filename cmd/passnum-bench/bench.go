package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/passnum/passnum/internal/dbmigrate"
	"github.com/passnum/passnum/internal/pgcluster"
)

// benchDatabase is the database passnumd runs on; pgbench gets its own.
const (
	benchDatabase   = "passnum"
	pgbenchDatabase = "pgbench"
)

// bench is one run of the harness.
type bench struct {
	o    options
	root string // repository root
	work string // temporary directory: binaries, keys, cluster, logs
	log  *slog.Logger
	res  *results

	cluster *pgcluster.Cluster
	pgLog   *os.File
	dbURL   string        // benchmark database, as the owner
	pool    *pgxpool.Pool // application pool on it (checks, verification)
	daemon  *daemon       // passnumd
	api     *api
	world   *world // organisations seeded through the API

	pgbenchTPS float64 // peer figure of the redemption throughput; 0 when skipped
	// pgbenchHalf is pgbench's latency at half its peak rate: what PostgreSQL alone does, in
	// the same run, under the redemption latency target's conditions; empty when skipped.
	pgbenchHalf string
}

func (b *bench) run(ctx context.Context) error {
	b.res.commit = gitCommit(b.root)
	if err := b.buildBinaries(ctx); err != nil {
		return err
	}
	if err := b.startCluster(ctx); err != nil {
		return err
	}
	if b.o.has("redeem") && !b.o.skipPgbench {
		if err := b.pgbench(ctx); err != nil {
			return err
		}
	}
	if b.o.has("redeem") || b.o.has("issue") {
		if err := b.startPassnum(ctx); err != nil {
			return err
		}
	}
	if b.o.has("redeem") {
		if err := b.redeemScenario(ctx); err != nil {
			return err
		}
	}
	if b.o.has("issue") {
		if err := b.issueScenario(ctx); err != nil {
			return err
		}
	}
	if b.o.has("report") {
		if err := b.reportScenario(ctx); err != nil {
			return err
		}
	}
	if b.pool != nil {
		return b.verifyLedger(ctx)
	}
	return nil
}

// outDir is where results and profiles go: -out, relative to the repository root.
func (b *bench) outDir() string {
	if filepath.IsAbs(b.o.out) {
		return b.o.out
	}
	return filepath.Join(b.root, b.o.out)
}

// close stops what the run started, passnumd first.
func (b *bench) close() {
	if b.api != nil {
		b.api.close()
	}
	if b.daemon != nil {
		if err := b.daemon.stop(); err != nil {
			b.log.Warn("stop passnumd", "error", err)
		}
	}
	if b.pool != nil {
		b.pool.Close()
	}
	if b.cluster != nil {
		if err := b.cluster.Stop(); err != nil {
			b.log.Warn("stop PostgreSQL", "error", err)
		}
	}
	if b.pgLog != nil {
		b.pgLog.Close()
	}
}

// buildBinaries builds passnumd (and passnum-datagen for the report scenario) unless given.
func (b *bench) buildBinaries(ctx context.Context) error {
	build := func(pkg, name string) (string, error) {
		out := filepath.Join(b.work, name)
		b.log.Info("building", "package", pkg)
		cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
		cmd.Dir = b.root
		if msg, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("go build %s: %w\n%s", pkg, err, msg)
		}
		return out, nil
	}
	var err error
	if (b.o.has("redeem") || b.o.has("issue")) && b.o.passnumd == "" {
		if b.o.passnumd, err = build("./cmd/passnumd", "passnumd"); err != nil {
			return err
		}
	}
	if b.o.has("report") && b.o.datagen == "" {
		if b.o.datagen, err = build("./cmd/passnum-datagen", "passnum-datagen"); err != nil {
			return err
		}
	}
	return nil
}

// startCluster starts the private PostgreSQL, durable (fsync, synchronous_commit and
// full_page_writes on), and checks that it is.
func (b *bench) startCluster(ctx context.Context) error {
	pgLog, err := os.Create(filepath.Join(b.work, "pgcluster.log"))
	if err != nil {
		return err
	}
	b.pgLog = pgLog // written to until the cluster stops
	b.log.Info("starting PostgreSQL (fsync on, synchronous_commit on)")
	// Persistent so that the server can be restarted (-pgstats) and -keep keeps the data;
	// the directory is new either way and goes with the work directory.
	opts := pgcluster.Options{DataDir: filepath.Join(b.work, "pg"), Persistent: true, Settings: benchSettings, Log: pgLog}
	c, err := pgcluster.Start(ctx, opts)
	if err != nil {
		return err
	}
	b.cluster = c
	if b.o.pgStats {
		if err := b.preloadStatements(ctx); err != nil {
			return err
		}
		if err := c.Stop(); err != nil {
			return err
		}
		if b.cluster, err = pgcluster.Start(ctx, opts); err != nil {
			b.cluster = nil
			return err
		}
		c = b.cluster
	}
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	for _, s := range []string{"fsync", "synchronous_commit", "full_page_writes"} {
		var v string
		if err := conn.QueryRow(ctx, "SELECT current_setting($1)", s).Scan(&v); err != nil {
			return err
		}
		if v != "on" {
			return fmt.Errorf("PostgreSQL runs with %s = %s: the benchmark needs a durable server", s, v)
		}
	}
	began := time.Now()
	if err := warmWAL(ctx, conn); err != nil {
		return err
	}
	b.log.Info("WAL segments created before measuring", "segments", walWarmSegments, "took", time.Since(began).Round(time.Millisecond))
	var version string
	if err := conn.QueryRow(ctx, "SHOW server_version").Scan(&version); err != nil {
		return err
	}
	b.res.machine = machineLine(strings.Fields(version)[0])
	b.log.Info("PostgreSQL ready", "version", version, "port", c.Port(), "data", c.DataDir())
	return nil
}

// benchSettings complete internal/pgcluster's settings for the benchmark's server.
var benchSettings = []string{
	// Time of WAL flushes, for pg_stat_wal (sampleActivity): the disk's share of commit latency.
	"track_wal_io_timing=on",
	// At least 1 GB of WAL segments stays recycled after each checkpoint (warmWAL), as on a
	// server in service whatever the load was before its last checkpoint.
	"min_wal_size=1GB",
	// Checkpoints every checkpoint_timeout (5 min), spread over it, as PostgreSQL advises for
	// a server that writes this much WAL. With the default 1 GB, the redemption loads (10–20 MB
	// of WAL a second) started one every 30–50 s; PostgreSQL logged "checkpoints are occurring
	// too frequently", and one that started behind schedule wrote 190 MB in 3.5 s, stalling
	// every commit's WAL flush for 300–400 ms (bench/README.md, session 8).
	"max_wal_size=8GB",
	// Every autovacuum and autoanalyze in the server's log, with its CPU, I/O and elapsed time
	// (kept with -keep): the latency run's worst seconds are those of their rounds.
	"log_autovacuum_min_duration=0",
}

// preloadStatements has the server load pg_stat_statements at its next start, counting the
// statements run inside functions (the triggers) too.
func (b *bench) preloadStatements(ctx context.Context) error {
	conn, err := pgx.Connect(ctx, b.cluster.URL("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
	return err
}

// createDatabase creates db in the cluster.
func (b *bench) createDatabase(ctx context.Context, db string) error {
	conn, err := pgx.Connect(ctx, b.cluster.URL("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{db}.Sanitize())
	return err
}

func (b *bench) dropDatabase(ctx context.Context, db string) error {
	conn, err := pgx.Connect(ctx, b.cluster.URL("postgres"))
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DROP DATABASE "+pgx.Identifier{db}.Sanitize()); err != nil {
		return err
	}
	_, err = conn.Exec(ctx, "CHECKPOINT")
	return err
}

var tpsLine = regexp.MustCompile(`(?m)^tps = ([0-9.]+) \(without initial connection time\)`)

// pgbench runs the TPC-B-like test on its own database and keeps its tps as the peer
// figure of the redemption throughput. Its database is dropped afterwards.
func (b *bench) pgbench(ctx context.Context) error {
	if err := b.createDatabase(ctx, pgbenchDatabase); err != nil {
		return err
	}
	bin := filepath.Join(b.cluster.BinDir(), "pgbench")
	conn := []string{"-h", "127.0.0.1", "-p", strconv.Itoa(b.cluster.Port()), "-U", "postgres"}
	runPgbench := func(args ...string) (string, error) {
		cmd := exec.CommandContext(ctx, bin, append(append(args, conn...), pgbenchDatabase)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("pgbench %s: %w\n%s", strings.Join(args, " "), err, out)
		}
		return string(out), nil
	}
	b.log.Info("pgbench: initialising (scale 10)")
	if _, err := runPgbench("-i", "-s", "10", "-q"); err != nil {
		return err
	}
	secs := strconv.Itoa(int(b.o.pgbenchDuration.Round(time.Second) / time.Second))
	b.log.Info("pgbench: TPC-B-like run", "clients", 8, "threads", 2, "seconds", secs)
	out, err := runPgbench("-c", "8", "-j", "2", "-T", secs, "-M", "prepared")
	if err != nil {
		return err
	}
	m := tpsLine.FindStringSubmatch(out)
	if m == nil {
		return fmt.Errorf("pgbench: no tps line in its output:\n%s", out)
	}
	tps, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return err
	}
	b.pgbenchTPS = tps
	b.log.Info("pgbench done", "tps", tps)

	// The same at half that rate, each transaction's latency counted from its scheduled start
	// (its run time plus its schedule lag, from the per-transaction log) as the redemption
	// latency run counts it.
	logDir, err := os.MkdirTemp(b.work, "pgbench-log-")
	if err != nil {
		return err
	}
	half := strconv.Itoa(int(math.Round(tps / 2)))
	if b.o.latencyWarmup >= time.Second { // pgbench counts whole seconds
		// As before the redemption latency run: the same rate, unmeasured, while the kernel
		// writes back what the initialisation and the peak run dirtied.
		warm := strconv.Itoa(int(b.o.latencyWarmup.Round(time.Second) / time.Second))
		b.log.Info("pgbench: warm-up at half its peak (not measured)", "tps", half, "seconds", warm)
		if _, err := runPgbench("-c", "8", "-j", "2", "-T", warm, "-M", "prepared", "-R", half); err != nil {
			return err
		}
	}
	b.log.Info("pgbench: TPC-B-like run at half its peak", "tps", half, "seconds", secs)
	actA, err := sampleActivity(ctx, b.cluster.URL("postgres"))
	if err != nil {
		return err
	}
	if _, err := runPgbench("-c", "8", "-j", "2", "-T", secs, "-M", "prepared", "-R", half,
		"-l", "--log-prefix", filepath.Join(logDir, "pgbench_log")); err != nil {
		return err
	}
	actB, err := sampleActivity(ctx, b.cluster.URL("postgres"))
	if err != nil {
		return err
	}
	lat, err := pgbenchLatencies(logDir)
	if err != nil {
		return err
	}
	b.pgbenchHalf = fmt.Sprintf("pgbench at half its peak (%s tps asked): p50 %.1f ms, p99 %.1f ms, p99.9 %.1f ms",
		half, ms(percentile(lat, 0.5)), ms(percentile(lat, 0.99)), ms(percentile(lat, 0.999)))
	b.res.addInfo("pgbench at half its peak: %s", activityPerCall(actA, actB, len(lat)))
	b.log.Info("pgbench done", "at half its peak", b.pgbenchHalf)
	return b.dropDatabase(ctx, pgbenchDatabase)
}

// pgbenchLatencies reads the per-transaction logs of a rate-limited pgbench run (-R -l) in
// dir and returns, sorted, each transaction's time from its scheduled start to its end: the
// third field (run time, µs) plus the last (schedule lag, µs).
func pgbenchLatencies(dir string) ([]time.Duration, error) {
	files, err := filepath.Glob(filepath.Join(dir, "pgbench_log*"))
	if err != nil {
		return nil, err
	}
	var lat []time.Duration
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		for line := range strings.Lines(string(data)) {
			fields := strings.Fields(line)
			if len(fields) < 7 {
				return nil, fmt.Errorf("pgbench log %s: unexpected line %q", f, line)
			}
			run, err1 := strconv.ParseInt(fields[2], 10, 64)
			lag, err2 := strconv.ParseInt(fields[len(fields)-1], 10, 64)
			if err := errors.Join(err1, err2); err != nil {
				return nil, fmt.Errorf("pgbench log %s: line %q: %w", f, line, err)
			}
			lat = append(lat, time.Duration(run+lag)*time.Microsecond)
		}
	}
	if len(lat) == 0 {
		return nil, fmt.Errorf("pgbench logged no transactions in %s", dir)
	}
	return sortDurations(lat), nil
}

// startPassnum creates and migrates the benchmark database, bootstraps the operator, makes
// dev keys and starts passnumd on it.
func (b *bench) startPassnum(ctx context.Context) error {
	if err := b.createDatabase(ctx, benchDatabase); err != nil {
		return err
	}
	b.dbURL = b.cluster.URL(benchDatabase)
	// Time spent in PL/pgSQL functions (the triggers) is counted, for functionTimes; the
	// setting applies to the sessions opened from now on.
	conn, err := pgx.Connect(ctx, b.dbURL)
	if err != nil {
		return err
	}
	_, err = conn.Exec(ctx, "ALTER DATABASE "+pgx.Identifier{benchDatabase}.Sanitize()+" SET track_functions = 'pl'")
	if b.o.pgStats {
		for _, q := range []string{
			"CREATE EXTENSION pg_stat_statements",
			"ALTER SYSTEM SET pg_stat_statements.track = 'all'",
			"SELECT pg_reload_conf()",
		} {
			if err == nil {
				_, err = conn.Exec(ctx, q)
			}
		}
	}
	conn.Close(ctx)
	if err != nil {
		return err
	}
	keys, err := newKeys(filepath.Join(b.work, "keys"))
	if err != nil {
		return err
	}
	// passnumd applies its own migrations as it starts.
	b.daemon, err = startDaemon(ctx, b.o.passnumd, b.dbURL, keys, filepath.Join(b.work, "passnumd.log"))
	if err != nil {
		return err
	}
	b.log.Info("passnumd serving", "pid", b.daemon.cmd.Process.Pid, "grpc", b.daemon.grpcAddr, "metrics", b.daemon.metricsAddr)
	if b.pool, err = dbmigrate.OpenApp(ctx, b.dbURL); err != nil {
		return err
	}
	if err := bootstrapOperator(ctx, b.pool, keys.operator); err != nil {
		return err
	}
	b.api, err = dialAPI(b.daemon.grpcAddr, b.o.connections, keys)
	return err
}

// verifyLedger runs every ledger check on the benchmark database.
func (b *bench) verifyLedger(ctx context.Context) error {
	began := time.Now()
	rep, err := ledgerVerify(ctx, b.pool)
	if err != nil {
		return fmt.Errorf("verify ledger: %w", err)
	}
	failed := 0
	for _, c := range rep.Checks {
		if !c.OK {
			failed++
			b.log.Error("ledger check failed", "check", c.Name, "detail", c.Detail)
		}
	}
	b.res.addInfo("ledger verified: %d transactions, %d postings, %d checks, %d failed (%v)",
		rep.Transactions, rep.Postings, len(rep.Checks), failed, time.Since(began).Round(time.Millisecond))
	if !rep.OK {
		return errors.New("the ledger does not verify")
	}
	b.log.Info("ledger verified", "transactions", rep.Transactions, "took", time.Since(began).Round(time.Millisecond))
	return nil
}

// functionTimes is the time PostgreSQL spent in each PL/pgSQL function (the triggers), by
// name, with its calls, as pg_stat_user_functions counts it.
type functionTimes map[string]struct {
	calls int64
	self  float64 // ms
}

// functionTimes reads the counters; differences of two readings give a window's costs
// (resetting them would reset the tables' counters too, which autovacuum relies on).
func (b *bench) functionTimes(ctx context.Context) (functionTimes, error) {
	conn, err := pgx.Connect(ctx, b.dbURL)
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT funcname, calls, self_time FROM pg_stat_user_functions`)
	if err != nil {
		return nil, err
	}
	ft := functionTimes{}
	for rows.Next() {
		var (
			name  string
			calls int64
			self  float64
		)
		if err := rows.Scan(&name, &calls, &self); err != nil {
			return nil, err
		}
		ft[name] = struct {
			calls int64
			self  float64
		}{calls, self}
	}
	return ft, rows.Err()
}

// since describes the functions that took the most time between before and ft.
func (ft functionTimes) since(before functionTimes, top int) string {
	type cost struct {
		name  string
		calls int64
		self  float64
	}
	var costs []cost
	for name, now := range ft {
		c := cost{name, now.calls - before[name].calls, now.self - before[name].self}
		if c.calls > 0 {
			costs = append(costs, c)
		}
	}
	slices.SortFunc(costs, func(a, b cost) int { return cmp.Compare(b.self, a.self) })
	var parts []string
	for _, c := range costs[:min(top, len(costs))] {
		parts = append(parts, fmt.Sprintf("%s %.0f ms/%d calls", c.name, c.self, c.calls))
	}
	return strings.Join(parts, ", ")
}

// statementCosts returns the statements that took the most time since the last call, one
// line each, and resets pg_stat_statements; empty without -pgstats.
func (b *bench) statementCosts(ctx context.Context, top int) ([]string, error) {
	if !b.o.pgStats {
		return nil, nil
	}
	conn, err := pgx.Connect(ctx, b.dbURL)
	if err != nil {
		return nil, err
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `
		SELECT calls, total_exec_time, rows, regexp_replace(query, '\s+', ' ', 'g')
		  FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
		 ORDER BY total_exec_time DESC LIMIT $1`, top)
	if err != nil {
		return nil, err
	}
	var out []string
	for rows.Next() {
		var (
			calls, n int64
			total    float64
			query    string
		)
		if err := rows.Scan(&calls, &total, &n, &query); err != nil {
			return nil, err
		}
		if len(query) > 160 {
			query = query[:160] + "…"
		}
		out = append(out, fmt.Sprintf("%8.0f ms %7d calls %8d rows  %s", total, calls, n, query))
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	_, err = conn.Exec(ctx, "SELECT pg_stat_statements_reset()")
	return out, err
}
