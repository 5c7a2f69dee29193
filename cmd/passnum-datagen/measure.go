package main

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/passnum/passnum/internal/auth"
	"github.com/passnum/passnum/internal/fault"
	"github.com/passnum/passnum/internal/reports"
)

// population is what random report queries are drawn from.
type population struct {
	programmes   []uuid.UUID
	funders      []uuid.UUID
	funded       map[uuid.UUID][]uuid.UUID // funder -> its programmes
	distributors []uuid.UUID
	sites        []uuid.UUID
	territories  []string
	months       []time.Time
}

func loadPopulation(ctx context.Context, pool *pgxpool.Pool) (*population, error) {
	p := &population{funded: map[uuid.UUID][]uuid.UUID{}}
	ids := func(sql string) ([]uuid.UUID, error) {
		rows, err := pool.Query(ctx, sql)
		if err != nil {
			return nil, err
		}
		return pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	}
	var err error
	if p.programmes, err = ids(`SELECT id FROM programmes ORDER BY id`); err != nil {
		return nil, err
	}
	if p.distributors, err = ids(`SELECT id FROM organisations WHERE kind = 'distributor' ORDER BY id`); err != nil {
		return nil, err
	}
	if p.sites, err = ids(`SELECT id FROM organisations WHERE kind = 'site' ORDER BY id`); err != nil {
		return nil, err
	}
	rows, err := pool.Query(ctx, `SELECT funder_id, programme_id FROM programme_funders ORDER BY 1, 2`)
	if err != nil {
		return nil, err
	}
	pairs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[struct{ F, P uuid.UUID }])
	if err != nil {
		return nil, err
	}
	for _, pr := range pairs {
		if len(p.funded[pr.F]) == 0 {
			p.funders = append(p.funders, pr.F)
		}
		p.funded[pr.F] = append(p.funded[pr.F], pr.P)
	}
	rows, err = pool.Query(ctx, `SELECT DISTINCT unnest(territories) FROM programmes ORDER BY 1`)
	if err != nil {
		return nil, err
	}
	if p.territories, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
		return nil, err
	}
	rows, err = pool.Query(ctx, `SELECT DISTINCT month FROM report_spend ORDER BY 1`)
	if err != nil {
		return nil, err
	}
	if p.months, err = pgx.CollectRows(rows, pgx.RowTo[time.Time]); err != nil {
		return nil, err
	}
	if len(p.programmes) == 0 || len(p.funders) == 0 || len(p.distributors) == 0 || len(p.sites) == 0 || len(p.months) == 0 {
		return nil, fmt.Errorf("no data to report on: run without -measure-only first")
	}
	return p, nil
}

// randomQuery draws a caller and a report like the ones people ask for: half the callers
// operators, the others funders (often on one of their programmes), distributors and sites;
// filters on a programme, funder, territory or period now and then; zero to three groupings.
func (p *population) randomQuery(r interface {
	IntN(int) int
}) (reports.Scope, reports.Query) {
	pick := func(ids []uuid.UUID) uuid.UUID { return ids[r.IntN(len(ids))] }
	var scope reports.Scope
	var q reports.Query
	switch r.IntN(10) {
	case 0, 1:
		f := pick(p.funders)
		scope = reports.Scope{Role: auth.RoleFunder, Org: f}
		if r.IntN(2) == 0 {
			q.Programme = pick(p.funded[f])
		}
	case 2, 3:
		scope = reports.Scope{Role: auth.RoleDistributor, Org: pick(p.distributors)}
	case 4:
		scope = reports.Scope{Role: auth.RoleSite, Org: pick(p.sites)}
	default:
		scope = reports.Everything
		if r.IntN(3) == 0 {
			q.Programme = pick(p.programmes)
		}
	}
	if r.IntN(6) == 0 {
		q.Funder = pick(p.funders)
	}
	if r.IntN(6) == 0 {
		q.Territory = p.territories[r.IntN(len(p.territories))]
	}
	if r.IntN(3) == 0 {
		i, j := r.IntN(len(p.months)), r.IntN(len(p.months))
		q.From, q.To = p.months[min(i, j)], p.months[max(i, j)]
	}
	dims := []reports.Dimension{reports.Programme, reports.Funder, reports.Territory, reports.Distributor,
		reports.Site, reports.Month}
	n := []int{0, 1, 1, 1, 2, 2, 2, 3}[r.IntN(8)]
	for len(q.GroupBy) < n {
		d := dims[r.IntN(len(dims))]
		if !slices.Contains(q.GroupBy, d) {
			q.GroupBy = append(q.GroupBy, d)
		}
	}
	return scope, q
}

// measure times Spend on random queries after a few to warm the caches, and prints the
// latency percentiles.
func measure(ctx context.Context, pool *pgxpool.Pool, svc *reports.Service, o options) error {
	pop, err := loadPopulation(ctx, pool)
	if err != nil {
		return err
	}
	r := rng(o.seed, 3)
	run := func() (time.Duration, int, bool, error) {
		scope, q := pop.randomQuery(r)
		began := time.Now()
		rep, err := svc.Spend(ctx, scope, q)
		took := time.Since(began)
		if o.showSlow > 0 && took >= o.showSlow {
			fmt.Printf("slow report (%v): scope %+v, query %+v\n", ms(took), scope, q)
		}
		if f, ok := fault.As(err); ok && f.Reason == "REPORT_TOO_LARGE" {
			return took, 0, true, nil
		}
		if err != nil {
			return 0, 0, false, fmt.Errorf("report %+v %+v: %w", scope, q, err)
		}
		return took, len(rep.Rows), false, nil
	}
	for range 20 {
		if _, _, _, err := run(); err != nil {
			return err
		}
	}
	var (
		times    []time.Duration
		rows     int
		tooLarge int
	)
	for range o.queries {
		d, n, big, err := run()
		if err != nil {
			return err
		}
		times = append(times, d)
		rows += n
		if big {
			tooLarge++
		}
	}
	slices.Sort(times)
	pct := func(p float64) time.Duration { return times[min(len(times)-1, int(p*float64(len(times))))] }
	var aggregates int64
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM report_spend`).Scan(&aggregates); err != nil {
		return err
	}
	fmt.Printf("SpendReport over %d aggregate rows, %d random queries (%.0f rows on average, %d refused as too large): "+
		"p50 %v, p95 %v, p99 %v, max %v\n",
		aggregates, len(times), float64(rows)/float64(len(times)), tooLarge,
		ms(pct(0.50)), ms(pct(0.95)), ms(pct(0.99)), ms(times[len(times)-1]))
	return nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }
