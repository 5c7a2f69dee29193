package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
)

// Redemption scenario sizing.
const (
	redeemBooks       = 90_000 // ordered for the hot programme: 900,000 vouchers at most
	replayProbes      = 2000   // answered requests sent again with their keys
	raceProbes        = 200    // vouchers redeemed concurrently by several sites
	raceContenders    = 4      // sites racing for each of them
	throughputGuessX  = 1.5    // first supply of vouchers: this many times pgbench's tps...
	throughputGuessLo = 6000.0 // ...and at least this many calls/s
	profileSeconds    = 20
)

// Targets (issue 6).
const (
	wantThroughputRatio = 1.0
	stretchThroughput   = 2.0
	maxP99ms            = 25
	maxRSSMB            = 150
)

func (b *bench) redeemScenario(ctx context.Context) error {
	w, err := b.seedOrgs(ctx, b.o.sites)
	if err != nil {
		return err
	}
	b.world = w
	prog, err := b.createFundedProgramme(ctx, w, "redeem", redeemBooks*perBook)
	if err != nil {
		return err
	}
	began := time.Now()
	order, err := b.orderBooks(ctx, w, prog, "bench-order-redeem", redeemBooks)
	if err != nil {
		return fmt.Errorf("order books: %w", err)
	}
	b.log.Info("books ordered for the hot programme", "books", redeemBooks, "took", time.Since(began).Round(time.Millisecond))
	s := &supply{b: b, w: w, programme: prog, first: order.GetFirstNumber(), last: order.GetLastNumber()}
	guess := max(throughputGuessX*b.pgbenchTPS, throughputGuessLo)
	if err := s.ensure(ctx, int(guess*(b.o.warmup+b.o.duration).Seconds())); err != nil {
		return err
	}
	r := newRedeemer(b.api, w.sites, s.take(len(s.codes)), "bench-redeem-")
	postmaster, err := postmasterPID(b.cluster.DataDir())
	if err != nil {
		return err
	}

	tp, err := b.throughputRun(ctx, r, postmaster)
	if err != nil {
		return err
	}
	rate := b.o.rate
	if rate <= 0 {
		rate = tp.perSecond / 2
	}
	if err := s.ensure(ctx, int(rate*(b.o.latencyWarmup+b.o.latencyDuration).Seconds())+replayProbes+raceProbes); err != nil {
		return err
	}
	first := len(r.codes)
	r.codes = append(r.codes[:first:first], s.take(len(s.codes))...)
	r.out = append(r.out, make([]outcome, len(r.codes)-first)...)
	if b.o.latencyWarmup > 0 {
		// Steady state at the latency run's rate: the peak run and the hand-outs leave the
		// kernel hundreds of MB of dirty pages, which it writes back about 30 s later, in
		// bursts that the WAL flushes wait behind. The latency run measures its own load, so
		// that debt is paid first, at the same rate; what the run itself dirties still counts.
		b.log.Info("latency warm-up (open loop, not measured)", "rate", math.Round(rate), "duration", b.o.latencyWarmup)
		warm, err := r.openLoop(ctx, first, rate, b.o.latencyWarmup)
		if err != nil {
			return fmt.Errorf("latency warm-up: %w", err)
		}
		first += warm.sent
	}
	lr, err := b.latencyRun(ctx, r, first, rate, tp.perSecond, postmaster)
	if err != nil {
		return err
	}

	peak, current, err := b.daemon.memory()
	if err != nil {
		return err
	}
	b.res.limit(figRSS, peak, "MB", maxRSSMB,
		fmt.Sprintf("VmHWM of passnumd after the redemption loads (VmRSS now %.0f MB); MB = MiB", current))
	return b.exactlyOnce(ctx, r, first+lr.sent, prog)
}

// throughputRun measures the closed-loop redemption throughput and records it against
// pgbench's, with where the CPU and PostgreSQL's time went during the measured window.
func (b *bench) throughputRun(ctx context.Context, r *redeemer, postmaster int) (throughput, error) {
	b.log.Info("throughput run", "goroutines", b.o.concurrency, "connections", b.o.connections,
		"sites", len(r.sites), "warmup", b.o.warmup, "duration", b.o.duration, "vouchers", len(r.codes))
	var (
		hookErr                 error
		cpuA, cpuB              cpuSample
		actA, actB              activitySample
		fnA, fnB                functionTimes
		waitProfile             = func() {}
		profileCtx, stopProfile = context.WithCancel(ctx)
	)
	defer stopProfile()
	onStart := func() {
		// Pending statistics of the hand-outs are flushed by now (within a second of
		// activity): count the window's trigger time only.
		var err error
		if fnA, err = b.functionTimes(ctx); err != nil {
			hookErr = err
		}
		if _, err := b.statementCosts(ctx, 0); err != nil {
			hookErr = err
		}
		if actA, err = sampleActivity(ctx, b.dbURL); err != nil {
			hookErr = err
		}
		if cpuA, err = sampleCPU(b.daemon.cmd.Process.Pid, postmaster); err != nil {
			hookErr = err
		}
		waitProfile = b.startProfile(profileCtx, "passnumd.cpu.pprof", b.o.duration)
	}
	onEnd := func() {
		var err error
		if cpuB, err = sampleCPU(b.daemon.cmd.Process.Pid, postmaster); err != nil {
			hookErr = err
		}
		if actB, err = sampleActivity(ctx, b.dbURL); err != nil {
			hookErr = err
		}
		if fnB, err = b.functionTimes(ctx); err != nil {
			hookErr = err
		}
	}
	tp := r.closedLoop(ctx, b.o.concurrency, b.o.warmup, b.o.duration, onStart, onEnd)
	waitProfile()
	if err := ctx.Err(); err != nil {
		return tp, err
	}
	if hookErr != nil {
		return tp, hookErr
	}
	if tp.measured == 0 {
		return tp, fmt.Errorf("no redemption succeeded in the throughput run (errors: %s)\n%s",
			formatErrors(tp.errors), tail(filepath.Join(b.work, "passnumd.log"), 5))
	}
	b.log.Info("throughput run done", "calls/s", math.Round(tp.perSecond), "errors", formatErrors(tp.errors))
	cpu, busy := cpuPerCall(cpuA, cpuB, tp.measured)
	b.res.addInfo("throughput run: %s; %s", cpu, activityPerCall(actA, actB, tp.measured))
	b.res.addInfo("PostgreSQL functions (triggers) during the throughput window, by own time: %s", fnB.since(fnA, 6))
	if err := b.addStatements(ctx, "the throughput window"); err != nil {
		return tp, err
	}
	closed := sortDurations(tp.latencies)
	note := fmt.Sprintf("%d goroutines over %d connections, %d sites, one programme, %v measured after %v warm-up; "+
		"closed-loop latency p50 %.1f ms, p99 %.1f ms; stretch target ratio ≥ %g (group commit)",
		b.o.concurrency, b.o.connections, len(r.sites), tp.window.Round(time.Millisecond), b.o.warmup,
		ms(percentile(closed, 0.5)), ms(percentile(closed, 0.99)), stretchThroughput)
	if tp.exhausted {
		note += "; the vouchers ran out before the end of the window"
	}
	if len(tp.errors) > 0 {
		note += "; errors: " + formatErrors(tp.errors)
	}
	if busy {
		note += "; " + busyNote
	}
	if b.pgbenchTPS > 0 {
		b.res.peerRatio(figThroughput, tp.perSecond, "calls/s", b.pgbenchTPS, "pgbench tps", wantThroughputRatio, true, note)
	} else {
		b.res.addInfo("redemption throughput %.0f calls/s (pgbench skipped: no ratio); %s", tp.perSecond, note)
	}
	return tp, nil
}

// latencyRun measures latency at a constant rate (open loop) over requests first.. of r
// and records its p99.
func (b *bench) latencyRun(ctx context.Context, r *redeemer, first int, rate, peak float64, postmaster int) (latencyRun, error) {
	b.log.Info("latency run (open loop)", "rate", math.Round(rate), "duration", b.o.latencyDuration)
	if _, err := b.statementCosts(ctx, 0); err != nil {
		return latencyRun{}, err
	}
	fnA, err := b.functionTimes(ctx)
	if err != nil {
		return latencyRun{}, err
	}
	actA, err := sampleActivity(ctx, b.dbURL)
	if err != nil {
		return latencyRun{}, err
	}
	srvA, err := b.daemon.sample(ctx)
	if err != nil {
		return latencyRun{}, err
	}
	cpuA, err := sampleCPU(b.daemon.cmd.Process.Pid, postmaster)
	if err != nil {
		return latencyRun{}, err
	}
	waitProfile := b.startProfile(ctx, "passnumd.latency.cpu.pprof", b.o.latencyDuration)
	lr, err := r.openLoop(ctx, first, rate, b.o.latencyDuration)
	waitProfile()
	if err != nil {
		return lr, err
	}
	cpuB, err := sampleCPU(b.daemon.cmd.Process.Pid, postmaster)
	if err != nil {
		return lr, err
	}
	actB, err := sampleActivity(ctx, b.dbURL)
	if err != nil {
		return lr, err
	}
	srvB, err := b.daemon.sample(ctx)
	if err != nil {
		return lr, err
	}
	fnB, err := b.functionTimes(ctx)
	if err != nil {
		return lr, err
	}
	cpu, busy := cpuPerCall(cpuA, cpuB, lr.sent)
	b.res.addInfo("latency run: %s; %s", cpu, activityPerCall(actA, actB, lr.sent))
	b.res.addInfo("PostgreSQL functions (triggers) during the latency run, by own time: %s", fnB.since(fnA, 6))
	if err := b.addStatements(ctx, "the latency run"); err != nil {
		return lr, err
	}
	worst, worstP99, err := b.writeTimeline(&lr)
	if err != nil {
		return lr, err
	}
	open := sortDurations(lr.latencies)
	p50, p99 := ms(percentile(open, 0.5)), ms(percentile(open, 0.99))
	// Where the tail is: passnumd's own timing against the client's, at the target's limit.
	serverSlow, err := srvB.redeem.slowerThan(srvA.redeem, float64(maxP99ms)/1000)
	if err != nil {
		return lr, err
	}
	batches, err := srvB.batches.since(srvA.batches, b.o.latencyDuration)
	if err != nil {
		return lr, err
	}
	clientSlow := float64(len(open)-sort.Search(len(open), func(i int) bool { return ms(open[i]) > maxP99ms })) / float64(len(open))
	b.res.addInfo("latency run: %.2f %% of the calls took more than %.0f ms as the client timed them (from their scheduled start), "+
		"%.2f %% as passnumd timed them (from its first interceptor to the reply)", 100*clientSlow, float64(maxP99ms), 100*serverSlow)
	b.res.addInfo("latency run: %s", batches)
	b.log.Info("latency run done", "p50_ms", p50, "p99_ms", p99, "achieved", math.Round(lr.achieved), "errors", formatErrors(lr.errors))
	note := fmt.Sprintf("p50 %.1f ms, p99.9 %.1f ms, max %.1f ms at %.0f calls/s asked (%.0f %% of peak), "+
		"%.0f answered OK per second, over %v; worst second: %d (p99 %.1f ms), each second in latency-timeline.csv",
		p50, ms(percentile(open, 0.999)), ms(open[len(open)-1]), rate, 100*rate/peak, lr.achieved, b.o.latencyDuration,
		worst, ms(worstP99))
	if b.pgbenchHalf != "" {
		note += "; " + b.pgbenchHalf
	}
	if len(lr.errors) > 0 {
		note += "; errors: " + formatErrors(lr.errors)
	}
	if busy {
		note += "; " + busyNote
	}
	b.res.limit(figP99, p99, "ms", maxP99ms, note)
	return lr, nil
}

// addStatements records the statements that took the most time during what (-pgstats).
func (b *bench) addStatements(ctx context.Context, what string) error {
	statements, err := b.statementCosts(ctx, 15)
	if err != nil || len(statements) == 0 {
		return err
	}
	b.res.addInfo("statements during %s, by total time (pg_stat_statements):\n    %s", what, strings.Join(statements, "\n    "))
	return nil
}

// writeTimeline saves the latency run's second-by-second figures in the output directory.
func (b *bench) writeTimeline(lr *latencyRun) (worst int, worstP99 time.Duration, err error) {
	if err := os.MkdirAll(b.outDir(), 0o755); err != nil {
		return 0, 0, err
	}
	f, err := os.Create(filepath.Join(b.outDir(), "latency-timeline.csv"))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	return lr.timeline(f)
}

// startProfile starts, when -cpuprofile asks for it, a CPU profile of passnumd during a run
// of length run, saved as name. The returned wait returns once it is saved, logging why if it
// could not be.
func (b *bench) startProfile(ctx context.Context, name string, run time.Duration) (wait func()) {
	if !b.o.cpuProfile {
		return func() {}
	}
	done := make(chan error, 1)
	go func() { done <- b.profile(ctx, name, run) }()
	return func() {
		if err := <-done; err != nil {
			b.log.Warn("CPU profile", "error", err)
		}
	}
}

// profile saves as name a CPU profile of passnumd taken from now, for at most
// profileSeconds and within a run of length run.
func (b *bench) profile(ctx context.Context, name string, run time.Duration) error {
	secs := max(1, min(profileSeconds, int(run.Seconds())-1))
	dir := b.outDir()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	path := filepath.Join(dir, name)
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := b.daemon.cpuProfile(ctx, secs, f); err != nil {
		return err
	}
	b.log.Info("CPU profile saved", "path", path, "seconds", secs)
	return nil
}

// exactlyOnce checks what the redemption runs did: ambiguous requests are resolved by
// sending them again, answered ones replay identically, vouchers raced for by several sites
// have exactly one winner, and the database holds exactly the redemptions answered OK.
func (b *bench) exactlyOnce(ctx context.Context, r *redeemer, used int, programme string) error {
	resolved := 0
	for i := range used {
		if r.out[i].ambiguous() {
			if !r.send(ctx, i, i).ok {
				return fmt.Errorf("request %d: still refused when sent again: %s %s", i, r.out[i].code, r.out[i].why)
			}
			resolved++
		}
	}
	okCount, refused := 0, 0
	var answered []int
	for i := range used {
		switch {
		case r.out[i].ok:
			okCount++
			answered = append(answered, i)
		case r.out[i].done:
			refused++
		}
	}
	// Replays: the same key and request must return the recorded redemption.
	step := max(1, len(answered)/replayProbes)
	replays := 0
	for k := 0; k < len(answered); k += step {
		i := answered[k]
		want := r.out[i]
		got := r.send(ctx, i, i)
		if !got.ok || got.tx != want.tx || got.round != want.round {
			return fmt.Errorf("replay of request %d: got ok=%v tx %s round %d (%s %s), want tx %s round %d",
				i, got.ok, got.tx, got.round, got.code, got.why, want.tx, want.round)
		}
		replays++
	}
	// Races: several sites redeem one voucher at once, each with its own key.
	if used+raceProbes > len(r.codes) {
		return errors.New("no vouchers left for the race probes")
	}
	race := newRedeemer(b.api, r.sites, nil, "bench-race-")
	for k := range raceProbes {
		for range raceContenders {
			race.codes = append(race.codes, r.codes[used+k])
		}
	}
	race.out = make([]outcome, len(race.codes))
	var wg sync.WaitGroup
	for i := range race.codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			race.send(ctx, i, i)
		}()
	}
	wg.Wait()
	for k := range raceProbes {
		winners := 0
		for j := range raceContenders {
			o := race.out[k*raceContenders+j]
			switch {
			case o.ok:
				winners++
			case o.code != codes.FailedPrecondition || o.why != "VOUCHER_ALREADY_REDEEMED":
				return fmt.Errorf("race for voucher %s: a loser got %s %s, want FAILED_PRECONDITION VOUCHER_ALREADY_REDEEMED",
					race.codes[k*raceContenders], o.code, o.why)
			}
		}
		if winners != 1 {
			return fmt.Errorf("race for voucher %s: %d winners, want exactly 1", race.codes[k*raceContenders], winners)
		}
	}
	okCount += raceProbes
	// The database: one redemption per request answered OK, no more, no less.
	var rows, distinct, redeemed int64
	if err := b.pool.QueryRow(ctx, `
		SELECT count(*), count(DISTINCT voucher_code),
		       (SELECT count(*) FROM vouchers WHERE programme_id = $1 AND status = 'redeemed')
		  FROM redemptions WHERE programme_id = $1`, programme).Scan(&rows, &distinct, &redeemed); err != nil {
		return err
	}
	if rows != int64(okCount) || distinct != rows || redeemed != rows {
		return fmt.Errorf("exactly-once: %d requests answered OK but the database holds %d redemptions of %d vouchers, %d vouchers redeemed",
			okCount, rows, distinct, redeemed)
	}
	b.res.addInfo("exactly-once: %d redemptions answered OK = %d rows in the database (%d refused, %d ambiguous resent); "+
		"%d replays returned the recorded redemption; %d vouchers raced for by %d sites each had exactly one winner",
		okCount, rows, refused, resolved, replays, raceProbes, raceContenders)
	return nil
}
