package main

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"

	"github.com/passnum/passnum/internal/ident"
	"github.com/passnum/passnum/ledger"
)

// Shape of the history (see the package documentation).
const (
	distributorsPerDep = 12
	sitesPerDep        = 25
	handOutRate        = 0.90
	cancelRate         = 0.10 // of the books left in stock
	targetPublicRate   = 0.62
	idleBookRate       = 0.08 // handed out, never used
	reversalRate       = 0.002
	reRedeemRate       = 0.70 // of the reversed
	usePerActiveBook   = 0.75 // mean share of an active book's vouchers used
	stateCapCents      = 150_000_000
	feeBps             = 400
	faceValueCents     = 1000
	validityMonths     = 12
	graceDays          = 31
)

var departements = []string{"07", "26", "33", "13", "59", "62", "69", "38", "44", "35", "31", "34", "67", "2A",
	"974", "971", "972", "93", "94", "92", "76", "29", "56", "63", "87", "21", "25", "54", "57", "86"}

var services = []string{"Démarches administratives en ligne", "Prise en main du smartphone",
	"Utiliser sa messagerie", "Découvrir l'ordinateur", "Sécurité et données personnelles"}

type department struct {
	code         string
	funder       uuid.UUID
	distributors []uuid.UUID
	sites        []uuid.UUID
}

type programme struct {
	id           uuid.UUID
	dep          *department
	territories  []string
	perBook      int
	validFrom    time.Time
	validUntil   time.Time
	funders      []uuid.UUID
	shares       []int64
	caps         []*int64
	distributors []uuid.UUID
	weight       float64
	bookBase     int64 // running index of its first book, for voucher codes
	books        int64
	expiresOn    time.Time // zero: still open at the end of the window
}

type generator struct {
	ctx  context.Context
	pool *pgxpool.Pool
	l    *ledger.Ledger
	o    options
	log  *slog.Logger

	start      time.Time // first day of the window
	endDate    time.Time // first day after the window: "today"
	codeOffset int64
	operator   uuid.UUID
	state      uuid.UUID
	deps       []*department
	programmes []*programme
	siret      int64
}

func newGenerator(ctx context.Context, pool *pgxpool.Pool, l *ledger.Ledger, o options, log *slog.Logger) *generator {
	return &generator{
		ctx: ctx, pool: pool, l: l, o: o, log: log,
		start:   o.end.AddDate(0, 1-o.months, 0),
		endDate: o.end.AddDate(0, 1, 0),
	}
}

func (g *generator) generate() error {
	r := rng(g.o.seed, 1)
	g.codeOffset = r.Int64N(1 << 58)
	g.siret = 10_000_000 + r.Int64N(80_000_000)
	phase := time.Now()
	if err := g.organisations(); err != nil {
		return err
	}
	if err := g.plan(); err != nil {
		return err
	}
	g.log.Info("organisations and programmes", "elapsed", time.Since(phase).Round(time.Millisecond))

	phase = time.Now()
	eg, ctx := errgroup.WithContext(g.ctx)
	eg.SetLimit(g.o.workers)
	for _, p := range g.programmes {
		eg.Go(func() error {
			began := time.Now()
			if err := g.vouchers(ctx, p); err != nil {
				return fmt.Errorf("programme %s: %w", p.id, err)
			}
			g.log.Info("programme generated", "programme", p.id, "books", p.books, "elapsed", time.Since(began).Round(time.Millisecond))
			return nil
		})
	}
	if err := eg.Wait(); err != nil {
		return err
	}
	g.log.Info("books, vouchers and redemptions", "elapsed", time.Since(phase).Round(time.Millisecond))

	phase = time.Now()
	for m := g.start; !m.After(g.o.end); m = m.AddDate(0, 1, 0) {
		cutoff := m.AddDate(0, 1, -1)
		paidOn := cutoff.AddDate(0, 0, 10)
		if !paidOn.Before(g.endDate) {
			break
		}
		if err := g.settle(cutoff, paidOn); err != nil {
			return fmt.Errorf("statements of %s: %w", m.Format("2006-01"), err)
		}
	}
	g.log.Info("statements paid", "elapsed", time.Since(phase).Round(time.Millisecond))

	phase = time.Now()
	if err := g.closeOut(); err != nil {
		return err
	}
	g.log.Info("close-outs", "elapsed", time.Since(phase).Round(time.Millisecond))

	// Fresh statistics for the report queries.
	if _, err := g.pool.Exec(g.ctx, `ANALYZE report_spend`); err != nil {
		return fmt.Errorf("analyze: %w", err)
	}
	return nil
}

func (g *generator) nextSIRET() string {
	g.siret++
	base := fmt.Sprintf("%013d", g.siret)
	return ident.CompleteSIRET(base)
}

// inTx runs fn in one transaction of the application role.
func (g *generator) inTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, g.pool, fn)
}

func (g *generator) organisations() error {
	g.operator, g.state = uuid.New(), uuid.New()
	nDeps := max(1, (g.o.programmes+1)/2)
	return g.inTx(g.ctx, func(tx pgx.Tx) error {
		var ids, kinds, names, depCodes, sirets []*string
		add := func(id uuid.UUID, kind, name, dep, siret string) {
			s := id.String()
			ids, kinds, names = append(ids, &s), append(kinds, &kind), append(names, &name)
			depCodes, sirets = append(depCodes, nullable(dep)), append(sirets, nullable(siret))
		}
		add(g.operator, "operator", "Opérateur Pass numérique", "", "")
		add(g.state, "funder", "État (ANCT)", "", "")
		var siteIDs []uuid.UUID
		for i := range nDeps {
			code := departements[i%len(departements)]
			d := &department{code: code, funder: uuid.New()}
			add(d.funder, "funder", "Conseil départemental "+code+suffix(i), code, "")
			kinds := []string{"CAF", "France Travail", "Mairie", "CCAS", "Association", "Maison France Services"}
			for j := range distributorsPerDep {
				id := uuid.New()
				d.distributors = append(d.distributors, id)
				add(id, "distributor", fmt.Sprintf("%s %s n°%d%s", kinds[j%len(kinds)], code, j+1, suffix(i)), code, "")
			}
			for j := range sitesPerDep {
				id := uuid.New()
				d.sites = append(d.sites, id)
				siteIDs = append(siteIDs, id)
				add(id, "site", fmt.Sprintf("Espace numérique %s n°%d%s", code, j+1, suffix(i)), code, g.nextSIRET())
			}
			g.deps = append(g.deps, d)
		}
		if _, err := tx.Exec(g.ctx, `
			INSERT INTO organisations (id, kind, name, departement, siret)
			SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[])`,
			ids, kinds, names, depCodes, sirets); err != nil {
			return fmt.Errorf("organisations: %w", err)
		}
		if _, err := tx.Exec(g.ctx, `
			INSERT INTO sites (org_id, legal_representative, iban, bic, services, status, valid_from, valid_until)
			SELECT id, 'Représentant légal', 'FR7630006000011234567890189', 'AGRIFRPP', $2, 'qualified',
			       '2015-01-01', '2040-12-31'
			  FROM unnest($1::uuid[]) AS id`, siteIDs, services); err != nil {
			return fmt.Errorf("sites: %w", err)
		}
		return nil
	})
}

func suffix(i int) string {
	if i < len(departements) {
		return ""
	}
	return fmt.Sprintf(" (%d)", i/len(departements)+1)
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// plan draws the programmes, their funders and distributors, and opens them with their
// fundings and book orders.
func (g *generator) plan() error {
	r := rng(g.o.seed, 2)
	var totalWeight float64
	for i := range g.o.programmes {
		d := g.deps[i/2%len(g.deps)]
		p := &programme{id: uuid.New(), dep: d, territories: []string{d.code}, perBook: 10, weight: 0.5 + r.Float64()}
		if r.IntN(10) == 0 {
			other := g.deps[r.IntN(len(g.deps))].code
			if other != d.code {
				p.territories = append(p.territories, other)
			}
		}
		if r.IntN(5) == 0 {
			p.perBook = 5
		}
		// A département's first programme starts in the first three months, its second a year later.
		startMonth := r.IntN(3)
		if i%2 == 1 {
			startMonth += 12
		}
		p.validFrom = g.start.AddDate(0, startMonth, 0)
		p.validUntil = p.validFrom.AddDate(0, validityMonths, -1)
		if exp := p.validUntil.AddDate(0, 0, graceDays+1); exp.Before(g.endDate) {
			p.expiresOn = exp
		}
		if r.IntN(4) > 0 {
			cp := int64(stateCapCents)
			p.funders = []uuid.UUID{g.state, d.funder}
			p.shares = []int64{5000, 5000}
			p.caps = []*int64{&cp, nil}
		} else {
			p.funders = []uuid.UUID{d.funder}
			p.shares = []int64{10000}
			p.caps = []*int64{nil}
		}
		perm := r.Perm(len(d.distributors))
		for _, j := range perm[:8+r.IntN(len(d.distributors)-7)] {
			p.distributors = append(p.distributors, d.distributors[j])
		}
		totalWeight += p.weight
		g.programmes = append(g.programmes, p)
	}
	perBookUse := (1 - idleBookRate) * usePerActiveBook * handOutRate
	var base int64
	for i, p := range g.programmes {
		target := float64(g.o.redemptions) * p.weight / totalWeight
		p.books = max(int64(len(p.distributors)), int64(math.Round(target/(float64(p.perBook)*perBookUse))))
		p.bookBase = base
		base += p.books
		if err := g.open(p, rng(g.o.seed, 100+uint64(i))); err != nil {
			return fmt.Errorf("programme %d: %w", i, err)
		}
	}
	return nil
}

// open creates a programme with its funders and distributors, funds it, and places its book
// orders: two or three per distributor over the first six months of validity.
func (g *generator) open(p *programme, r interface {
	IntN(int) int
	Float64() float64
}) error {
	type order struct {
		id          uuid.UUID
		distributor uuid.UUID
		first       int64
		books       int64
		at          time.Time
	}
	var orders []order
	left := p.books
	next := int64(1)
	for i, d := range p.distributors {
		share := left / int64(len(p.distributors)-i)
		n := 2 + r.IntN(2)
		for j := range n {
			b := share / int64(n-j)
			if j == n-1 {
				b = share
			}
			if b == 0 {
				continue
			}
			at := p.validFrom.Add(time.Duration(r.Float64()*180*24) * time.Hour).Add(9 * time.Hour)
			for b > 0 {
				chunk := min(b, 100_000)
				orders = append(orders, order{id: uuid.New(), distributor: d, first: next, books: chunk, at: at})
				next += chunk
				b -= chunk
				share -= chunk
				left -= chunk
			}
		}
	}
	value := p.books * int64(p.perBook) * faceValueCents
	return g.inTx(g.ctx, func(tx pgx.Tx) error {
		if err := ledger.OpenChain(g.ctx, tx, p.id); err != nil {
			return err
		}
		name := fmt.Sprintf("Pass numérique %s %d", p.dep.code, p.validFrom.Year())
		if _, err := tx.Exec(g.ctx, `
			INSERT INTO programmes (id, name, face_value_cents, vouchers_per_book, valid_from, valid_until, grace_days,
			                        territories, target_public_quota_bps, fee_bps, created_at, created_by)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 5000, $9, $10, $11)`,
			p.id, name, faceValueCents, p.perBook, p.validFrom, p.validUntil, graceDays, p.territories, feeBps,
			p.validFrom.Add(-30*24*time.Hour), g.operator); err != nil {
			return fmt.Errorf("programme: %w", err)
		}
		for i, f := range p.funders {
			if _, err := tx.Exec(g.ctx, `INSERT INTO programme_funders (programme_id, funder_id, share_bps, cap_cents) VALUES ($1, $2, $3, $4)`,
				p.id, f, p.shares[i], p.caps[i]); err != nil {
				return fmt.Errorf("programme funder: %w", err)
			}
		}
		if _, err := tx.Exec(g.ctx, `INSERT INTO programme_distributors (programme_id, distributor_id) SELECT $1, unnest($2::uuid[])`,
			p.id, p.distributors); err != nil {
			return fmt.Errorf("programme distributors: %w", err)
		}
		// Funding: 2 % more than the books ordered, by share; the fee on top.
		budget := value + value/50
		var entries []ledger.Entry
		var budgets, fees []int64
		for i, f := range p.funders {
			b := budget * p.shares[i] / 10000
			fee := b * feeBps / 10000
			budgets, fees = append(budgets, b), append(fees, fee)
			postings := []ledger.Posting{
				{Account: ledger.AccountRef{Programme: p.id, Kind: ledger.FunderCashIn, Owner: f}, Amount: -(b + fee)},
				{Account: ledger.AccountRef{Programme: p.id, Kind: ledger.Unissued}, Amount: b},
			}
			if fee > 0 {
				postings = append(postings, ledger.Posting{Account: ledger.AccountRef{Programme: p.id, Kind: ledger.Fees, Owner: f}, Amount: fee})
			}
			entries = append(entries, ledger.Entry{Programme: p.id, Kind: ledger.KindFunding, Org: g.operator,
				EffectiveAt: p.validFrom.Add(-20 * 24 * time.Hour), Postings: postings})
		}
		for _, o := range orders {
			entries = append(entries, ledger.Entry{Programme: p.id, Kind: ledger.KindIssuance, Org: g.operator, EffectiveAt: o.at,
				Postings: ledger.Move(ledger.AccountRef{Programme: p.id, Kind: ledger.Unissued},
					ledger.AccountRef{Programme: p.id, Kind: ledger.Outstanding}, o.books*int64(p.perBook)*faceValueCents)})
		}
		posted, err := g.l.Post(g.ctx, tx, entries...)
		if err != nil {
			return fmt.Errorf("fundings and issuances: %w", err)
		}
		for i, f := range p.funders {
			if _, err := tx.Exec(g.ctx, `
				INSERT INTO fundings (id, programme_id, funder_id, amount_cents, fee_cents, bank_reference, received_on, tx_id)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
				uuid.New(), p.id, f, budgets[i]+fees[i], fees[i], "VIR-"+p.id.String()[:8], p.validFrom.AddDate(0, 0, -20),
				posted[i].ID); err != nil {
				return fmt.Errorf("funding: %w", err)
			}
		}
		rows := make([][]any, len(orders))
		for i, o := range orders {
			rows[i] = []any{o.id, p.id, o.distributor, o.first, int32(o.books), o.books * int64(p.perBook) * faceValueCents,
				posted[len(p.funders)+i].ID, g.operator, o.at}
		}
		if _, err := tx.CopyFrom(g.ctx, pgx.Identifier{"book_orders"},
			[]string{"id", "programme_id", "distributor_id", "first_number", "books", "face_value_cents", "tx_id", "ordered_by", "created_at"},
			pgx.CopyFromRows(rows)); err != nil {
			return fmt.Errorf("book orders: %w", err)
		}
		_, err = tx.Exec(g.ctx, `UPDATE programmes SET books_ordered = $2 WHERE id = $1`, p.id, p.books)
		return err
	})
}

// lastServiceDay is the last day a programme's vouchers are used in the history.
func (g *generator) lastServiceDay(p *programme) time.Time {
	return minTime(p.validUntil, g.endDate.AddDate(0, 0, -1))
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
