// Command passnum-datagen fills a database with a large, realistic Pass numérique history
// and measures spend report latency on it (make bench-data).
//
//	passnum-datagen [-redemptions 10000000] [-programmes 40] [-months 24] [-end 2026-10]
//	                [-seed 1] [-workers 2] [-queries 300] [-measure-only] [-verify]
//
// It connects to DATABASE_URL, applies the migrations, and writes as the application role
// with set-based SQL (COPY-sized INSERT … SELECT over generate_series, per programme), so that
// every constraint and trigger of the schema applies: the report aggregates come out of the
// reports triggers, never written here. The ledger stays balanced and verifiable: fundings,
// one issuance per book order, one cancellation per programme, one redemption transaction
// per (programme, site, month) — individual ones for the few redemptions that are reversed,
// with their reversals —, one payout per paid statement and programme, and an expiry and
// returns per programme closed out.
//
// The history: départements, each with its funder (the State co-funds three programmes in
// four, capped at 1.5 M€), distributors and mediation sites; two programmes per département,
// valid for twelve months, the first starting in the window's first three months and the
// second a year later; books ordered in the first six months of validity, 90 % handed out
// (62 % to the target public), some of the rest cancelled; vouchers used at a handful of
// sites near each distributor; 0.2 % of redemptions reversed, most then redeemed again;
// monthly statements paid on the 10th; programmes past their grace period closed out
// (vouchers expired, unused budget returned).
//
// Then it times reports.Service.Spend on random queries (scopes, filters and groupings) and
// prints p50, p95 and p99.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/signal"
	"time"

	"github.com/passnum/passnum/internal/dbmigrate"
	"github.com/passnum/passnum/internal/reports"
	"github.com/passnum/passnum/ledger"
)

type options struct {
	redemptions int64
	programmes  int
	months      int
	end         time.Time // first day of the last month of the window
	seed        uint64
	workers     int
	queries     int
	measureOnly bool
	showSlow    time.Duration
	verify      bool
}

func main() {
	if err := run(); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "passnum-datagen:", err)
		}
		os.Exit(1)
	}
}

func run() error {
	var o options
	lastMonth := time.Now().UTC().AddDate(0, -1, 0)
	fs := flag.NewFlagSet("passnum-datagen", flag.ContinueOnError)
	fs.Int64Var(&o.redemptions, "redemptions", 10_000_000, "redemptions to generate (about)")
	fs.IntVar(&o.programmes, "programmes", 40, "programmes")
	fs.IntVar(&o.months, "months", 24, "months of history, ending with -end")
	end := fs.String("end", lastMonth.Format("2006-01"), "last month of the history, YYYY-MM")
	fs.Uint64Var(&o.seed, "seed", 1, "random seed")
	fs.IntVar(&o.workers, "workers", 2, "programmes generated in parallel")
	fs.IntVar(&o.queries, "queries", 300, "random spend reports to time after generating")
	fs.BoolVar(&o.measureOnly, "measure-only", false, "generate nothing: time reports on the data already there")
	fs.DurationVar(&o.showSlow, "show-slow", 0, "print the reports that take at least this long (0: none)")
	fs.BoolVar(&o.verify, "verify", true, "verify the whole ledger after generating")
	dbURL := fs.String("database-url", os.Getenv("DATABASE_URL"), "PostgreSQL connection string, as the owner (DATABASE_URL)")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *dbURL == "" {
		return errors.New("set DATABASE_URL or -database-url")
	}
	t, err := time.Parse("2006-01", *end)
	if err != nil {
		return fmt.Errorf("-end %q: want YYYY-MM", *end)
	}
	o.end = t
	if o.programmes < 1 || o.months < 15 || o.redemptions < 1000 || o.workers < 1 {
		return errors.New("need at least 1 programme, 15 months, 1000 redemptions and 1 worker")
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := dbmigrate.Migrate(ctx, *dbURL); err != nil {
		return err
	}
	pool, err := dbmigrate.OpenApp(ctx, *dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	l := ledger.New(pool, log)

	if !o.measureOnly {
		var existing int64
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM programmes`).Scan(&existing); err != nil {
			return err
		}
		if existing > 0 {
			return fmt.Errorf("the database already holds %d programmes: time reports on them with -measure-only, "+
				"or generate into an empty database (make bench-data: remove var/bench first)", existing)
		}
		began := time.Now()
		g := newGenerator(ctx, pool, l, o, log)
		if err := g.generate(); err != nil {
			return err
		}
		fmt.Printf("generated %d redemptions (%d programmes, %d books, %d vouchers, %d statements, %d aggregate rows) in %v\n",
			g.count("redemptions"), o.programmes, g.count("books"), g.count("vouchers"), g.count("statements"),
			g.count("report_spend"), time.Since(began).Round(time.Second))
		if o.verify {
			vb := time.Now()
			rep, err := l.Verify(ctx, [16]byte{})
			if err != nil {
				return fmt.Errorf("verify: %w", err)
			}
			if !rep.OK {
				for _, c := range rep.Checks {
					if !c.OK {
						fmt.Printf("check %s failed: %s\n", c.Name, c.Detail)
					}
				}
				return errors.New("the generated ledger does not verify")
			}
			fmt.Printf("ledger verified (%d checks) in %v\n", len(rep.Checks), time.Since(vb).Round(time.Millisecond))
		}
	}
	if o.queries > 0 {
		return measure(ctx, pool, reports.New(l), o)
	}
	return nil
}

// rng is the generator's random source, from the seed.
func rng(seed uint64, stream uint64) *rand.Rand {
	return rand.New(rand.NewPCG(seed, stream))
}

// count is the number of rows of a table, for the summary.
func (g *generator) count(table string) int64 {
	var n int64
	if err := g.pool.QueryRow(g.ctx, "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		g.log.Warn("count rows", "table", table, "error", err)
	}
	return n
}
