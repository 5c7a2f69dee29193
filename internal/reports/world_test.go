package reports

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
	_ "time/tzdata"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/passnum/passnum/internal/ident"
	"github.com/passnum/passnum/internal/testdb"
	"github.com/passnum/passnum/ledger"
)

// world writes a random but realistic history with the application role, the way the domain
// packages do: ledger transactions first, then the rows that reference them; books and
// vouchers with COPY; hand-outs, redemptions and reversals one by one and in batches;
// cancellations; a close-out with expiry and return transactions.
type world struct {
	t   *testing.T
	ctx context.Context
	db  *testdb.DB
	l   *ledger.Ledger
	rnd *rand.Rand

	operator     uuid.UUID
	state        uuid.UUID
	funders      []uuid.UUID // departments (the State is not among them)
	distributors []uuid.UUID
	sites        []uuid.UUID
	programmes   []*wProgramme

	clock      time.Time // redeemed_at of the next redemption batch, always moving forward
	codes      int64
	statements int
}

type wProgramme struct {
	id           uuid.UUID
	face         int64
	perBook      int
	territories  []string
	distributors []uuid.UUID
	books        int64 // last number
	validUntil   time.Time
	grace        int
}

var paris = func() *time.Location {
	loc, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		panic(err)
	}
	return loc
}()

const nilID = "00000000-0000-0000-0000-000000000000"

func newWorld(t *testing.T, seed uint64) *world {
	t.Helper()
	db := testdb.New(t)
	w := &world{
		t: t, ctx: context.Background(), db: db, l: ledger.New(db.App, nil),
		rnd:   rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		clock: time.Date(2024, 1, 1, 9, 0, 0, 0, time.UTC),
		codes: int64(seed%1000)*1_000_000 + 1,
	}
	w.setUp()
	return w
}

func (w *world) exec(tx pgx.Tx, sql string, args ...any) {
	w.t.Helper()
	if _, err := tx.Exec(w.ctx, sql, args...); err != nil {
		w.t.Fatalf("%s: %v", sql, err)
	}
}

// inTx runs fn in one application transaction.
func (w *world) inTx(fn func(tx pgx.Tx)) {
	w.t.Helper()
	tx, err := w.db.App.Begin(w.ctx)
	if err != nil {
		w.t.Fatal(err)
	}
	defer tx.Rollback(w.ctx)
	fn(tx)
	if err := tx.Commit(w.ctx); err != nil {
		w.t.Fatalf("commit: %v", err)
	}
}

func (w *world) post(tx pgx.Tx, entries ...ledger.Entry) []ledger.Posted {
	w.t.Helper()
	for i := range entries {
		entries[i].Org = w.operator
	}
	posted, err := w.l.Post(w.ctx, tx, entries...)
	if err != nil {
		w.t.Fatalf("post: %v", err)
	}
	return posted
}

func acct(p uuid.UUID, k ledger.AccountKind, owner uuid.UUID) ledger.AccountRef {
	return ledger.AccountRef{Programme: p, Kind: k, Owner: owner}
}

// siret returns a valid SIRET (Luhn) from a number.
func siret(n int) string {
	base := fmt.Sprintf("%013d", 1_000_000+n*7919)
	return ident.CompleteSIRET(base)
}

func (w *world) setUp() {
	w.operator = uuid.New()
	w.state = uuid.New()
	deps := []string{"07", "26", "33", "974"}
	w.inTx(func(tx pgx.Tx) {
		w.exec(tx, `INSERT INTO organisations (id, kind, name) VALUES ($1, 'operator', 'Opérateur'), ($2, 'funder', 'État (ANCT)')`,
			w.operator, w.state)
		for i := range 2 {
			id := uuid.New()
			w.funders = append(w.funders, id)
			w.exec(tx, `INSERT INTO organisations (id, kind, name, departement) VALUES ($1, 'funder', $2, $3)`,
				id, fmt.Sprintf("Département %d", i+1), deps[i])
		}
		for i := range 4 {
			id := uuid.New()
			w.distributors = append(w.distributors, id)
			w.exec(tx, `INSERT INTO organisations (id, kind, name, departement) VALUES ($1, 'distributor', $2, $3)`,
				id, fmt.Sprintf("CAF ; agence \"%d\"", i+1), deps[i%len(deps)])
		}
		for i := range 5 {
			id := uuid.New()
			w.sites = append(w.sites, id)
			w.exec(tx, `INSERT INTO organisations (id, kind, name, departement, siret) VALUES ($1, 'site', $2, $3, $4)`,
				id, fmt.Sprintf("Espace numérique n°%d", i+1), deps[i%len(deps)], siret(int(w.rnd.Int32N(1_000_000))*10+i))
			w.exec(tx, `
				INSERT INTO sites (org_id, legal_representative, iban, bic, status, valid_from, valid_until)
				VALUES ($1, 'Camille Martin', 'FR7630006000011234567890189', 'AGRIFRPP', 'qualified', '2023-01-01', '2030-12-31')`, id)
		}
	})

	type spec struct {
		face        int64
		perBook     int
		territories []string
		funders     []uuid.UUID
		shares      []int
		caps        []*int64
	}
	small := int64(40_000) // binds: the State's share of P1 goes over it
	specs := []spec{
		{1000, 10, []string{"07", "26"}, []uuid.UUID{w.state, w.funders[0]}, []int{5000, 5000}, []*int64{&small, nil}},
		{500, 5, []string{"33"}, []uuid.UUID{w.funders[1]}, []int{10000}, []*int64{nil}},
		{1000, 10, []string{"974", "07"}, []uuid.UUID{w.state, w.funders[0], w.funders[1]}, []int{3333, 3334, 3333}, []*int64{nil, nil, nil}},
	}
	for i, s := range specs {
		p := &wProgramme{id: uuid.New(), face: s.face, perBook: s.perBook, territories: s.territories,
			validUntil: time.Date(2024, 12, 31, 0, 0, 0, 0, time.UTC), grace: 31}
		perm := w.rnd.Perm(len(w.distributors))
		for _, j := range perm[:2+w.rnd.IntN(2)] {
			p.distributors = append(p.distributors, w.distributors[j])
		}
		w.programmes = append(w.programmes, p)
		w.inTx(func(tx pgx.Tx) {
			if err := ledger.OpenChain(w.ctx, tx, p.id); err != nil {
				w.t.Fatal(err)
			}
			w.exec(tx, `
				INSERT INTO programmes (id, name, face_value_cents, vouchers_per_book, valid_from, valid_until,
				                        grace_days, territories, target_public_quota_bps, fee_bps, created_by)
				VALUES ($1, $2, $3, $4, '2024-01-01', $5, $6, $7, 5000, 0, $8)`,
				p.id, fmt.Sprintf("Pass numérique %d", i+1), p.face, p.perBook, p.validUntil, p.grace, p.territories, w.operator)
			for j, f := range s.funders {
				w.exec(tx, `INSERT INTO programme_funders (programme_id, funder_id, share_bps, cap_cents) VALUES ($1, $2, $3, $4)`,
					p.id, f, s.shares[j], s.caps[j])
			}
			for _, d := range p.distributors {
				w.exec(tx, `INSERT INTO programme_distributors (programme_id, distributor_id) VALUES ($1, $2)`, p.id, d)
			}
			for _, f := range s.funders {
				amount := int64(10_000_000)
				posted := w.post(tx, ledger.Entry{Programme: p.id, Kind: ledger.KindFunding,
					Postings: ledger.Move(acct(p.id, ledger.FunderCashIn, f), acct(p.id, ledger.Unissued, uuid.Nil), amount)})
				w.exec(tx, `
					INSERT INTO fundings (id, programme_id, funder_id, amount_cents, fee_cents, bank_reference, received_on, tx_id)
					VALUES ($1, $2, $3, $4, 0, $5, '2024-01-02', $6)`,
					uuid.New(), p.id, f, amount, "VIR-"+uuid.NewString()[:8], posted[0].ID)
			}
		})
	}
}

// order orders books for a distributor with COPY, on a date of 2024.
func (w *world) order(p *wProgramme, books int, at time.Time) {
	dist := p.distributors[w.rnd.IntN(len(p.distributors))]
	w.inTx(func(tx pgx.Tx) {
		value := int64(books*p.perBook) * p.face
		posted := w.post(tx, ledger.Entry{Programme: p.id, Kind: ledger.KindIssuance,
			Postings: ledger.Move(acct(p.id, ledger.Unissued, uuid.Nil), acct(p.id, ledger.Outstanding, uuid.Nil), value)})
		orderID := uuid.New()
		first := p.books + 1
		w.exec(tx, `
			INSERT INTO book_orders (id, programme_id, distributor_id, first_number, books, face_value_cents, tx_id, ordered_by, created_at)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`, orderID, p.id, dist, first, books, value, posted[0].ID, w.operator, at)
		w.exec(tx, `UPDATE programmes SET books_ordered = $2 WHERE id = $1`, p.id, p.books+int64(books))
		var bookRows, voucherRows [][]any
		for b := range books {
			number := first + int64(b)
			codes := make([]int64, p.perBook)
			for v := range codes {
				codes[v] = w.codes
				voucherRows = append(voucherRows, []any{w.codes, p.id, number, int16(v + 1), p.face})
				w.codes++
			}
			bookRows = append(bookRows, []any{p.id, number, orderID, dist, codes})
		}
		if _, err := tx.CopyFrom(w.ctx, pgx.Identifier{"books"},
			[]string{"programme_id", "number", "order_id", "distributor_id", "voucher_codes"}, pgx.CopyFromRows(bookRows)); err != nil {
			w.t.Fatalf("copy books: %v", err)
		}
		if _, err := tx.CopyFrom(w.ctx, pgx.Identifier{"vouchers"},
			[]string{"code", "programme_id", "book_number", "position", "face_value_cents"}, pgx.CopyFromRows(voucherRows)); err != nil {
			w.t.Fatalf("copy vouchers: %v", err)
		}
	})
	p.books += int64(books)
}

type wBook struct {
	programme uuid.UUID
	number    int64
	orderedAt time.Time
}

// inStock lists the books of a programme still in stock.
func (w *world) inStock(p *wProgramme) []wBook {
	rows, err := w.db.App.Query(w.ctx, `
		SELECT b.programme_id, b.number, o.created_at FROM books b JOIN book_orders o ON o.id = b.order_id
		 WHERE b.programme_id = $1 AND b.status = 'in_stock' ORDER BY b.number`, p.id)
	if err != nil {
		w.t.Fatal(err)
	}
	bs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (wBook, error) {
		var b wBook
		return b, r.Scan(&b.programme, &b.number, &b.orderedAt)
	})
	if err != nil {
		w.t.Fatal(err)
	}
	return bs
}

// handOut hands books out, in one UPDATE statement per call.
func (w *world) handOut(p *wProgramme, books []wBook) {
	if len(books) == 0 {
		return
	}
	var numbers []int64
	var ats []time.Time
	var tps []bool
	var terrs []string
	for _, b := range books {
		numbers = append(numbers, b.number)
		at := b.orderedAt.Add(time.Duration(w.rnd.IntN(60*24)) * time.Hour)
		if lim := time.Date(2024, 12, 20, 0, 0, 0, 0, time.UTC); at.After(lim) {
			at = lim
		}
		ats = append(ats, at)
		tps = append(tps, w.rnd.IntN(3) > 0)
		terrs = append(terrs, p.territories[w.rnd.IntN(len(p.territories))])
	}
	w.inTx(func(tx pgx.Tx) {
		w.exec(tx, `
			UPDATE books b SET status = 'handed_out', handed_out_at = u.at, target_public = u.tp, territory = u.terr
			  FROM unnest($2::bigint[], $3::timestamptz[], $4::boolean[], $5::text[]) AS u(n, at, tp, terr)
			 WHERE b.programme_id = $1 AND b.number = u.n`, p.id, numbers, ats, tps, terrs)
		w.exec(tx, `
			UPDATE vouchers v SET status = 'available'
			  FROM books b WHERE b.programme_id = $1 AND b.number = ANY($2) AND v.code = ANY(b.voucher_codes)`, p.id, numbers)
	})
}

// cancel cancels books in stock.
func (w *world) cancel(p *wProgramme, books []wBook) {
	if len(books) == 0 {
		return
	}
	var numbers []int64
	for _, b := range books {
		numbers = append(numbers, b.number)
	}
	w.inTx(func(tx pgx.Tx) {
		value := int64(len(books)*p.perBook) * p.face
		w.post(tx, ledger.Entry{Programme: p.id, Kind: ledger.KindCancellation,
			Postings: ledger.Move(acct(p.id, ledger.Outstanding, uuid.Nil), acct(p.id, ledger.Unissued, uuid.Nil), value)})
		w.exec(tx, `UPDATE books SET status = 'cancelled', closed_at = $3 WHERE programme_id = $1 AND number = ANY($2)`,
			p.id, numbers, w.clock)
		w.exec(tx, `
			UPDATE vouchers v SET status = 'voided'
			  FROM books b WHERE b.programme_id = $1 AND b.number = ANY($2) AND v.code = ANY(b.voucher_codes)`, p.id, numbers)
	})
}

type wVoucher struct {
	code      int64
	programme uuid.UUID
	face      int64
	rounds    int16
	handedOut time.Time
}

func (w *world) available(p *wProgramme) []wVoucher {
	rows, err := w.db.App.Query(w.ctx, `
		SELECT v.code, v.programme_id, v.face_value_cents, v.rounds, b.handed_out_at
		  FROM vouchers v JOIN books b ON b.programme_id = v.programme_id AND b.number = v.book_number
		 WHERE v.programme_id = $1 AND v.status = 'available' ORDER BY v.code`, p.id)
	if err != nil {
		w.t.Fatal(err)
	}
	vs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (wVoucher, error) {
		var v wVoucher
		return v, r.Scan(&v.code, &v.programme, &v.face, &v.rounds, &v.handedOut)
	})
	if err != nil {
		w.t.Fatal(err)
	}
	return vs
}

// redeem redeems vouchers of one programme in one batch: one ledger entry each, one INSERT,
// one UPDATE.
func (w *world) redeem(p *wProgramme, vs []wVoucher) {
	if len(vs) == 0 {
		return
	}
	w.clock = w.clock.Add(time.Duration(1+w.rnd.IntN(600)) * time.Second)
	w.inTx(func(tx pgx.Tx) {
		entries := make([]ledger.Entry, len(vs))
		sites := make([]uuid.UUID, len(vs))
		for i, v := range vs {
			sites[i] = w.sites[w.rnd.IntN(len(w.sites))]
			entries[i] = ledger.Entry{Programme: p.id, Kind: ledger.KindRedemption,
				Postings: ledger.Move(acct(p.id, ledger.Outstanding, uuid.Nil), acct(p.id, ledger.SitePayable, sites[i]), v.face)}
		}
		posted := w.post(tx, entries...)
		var (
			codes, amounts []int64
			rounds         []int16
			mins           []int32
			dates          []time.Time
			txIDs          []uuid.UUID
		)
		for i, v := range vs {
			codes = append(codes, v.code)
			rounds = append(rounds, v.rounds+1)
			mins = append(mins, int32(15+w.rnd.IntN(160)))
			start := v.handedOut.In(paris)
			day := time.Date(start.Year(), start.Month(), start.Day(), 0, 0, 0, 0, time.UTC).AddDate(0, 0, w.rnd.IntN(200))
			if day.After(p.validUntil) {
				day = p.validUntil
			}
			dates = append(dates, day)
			amounts = append(amounts, v.face)
			txIDs = append(txIDs, posted[i].ID)
		}
		w.exec(tx, `
			INSERT INTO redemptions (voucher_code, round, programme_id, site_id, service, minutes, service_date,
			                         amount_cents, redeemed_at, tx_id)
			SELECT c, r, $1, s, 'Démarches en ligne', m, d, a, $2, t
			  FROM unnest($3::bigint[], $4::smallint[], $5::uuid[], $6::int[], $7::date[], $8::bigint[], $9::uuid[])
			       AS u(c, r, s, m, d, a, t)`,
			p.id, w.clock, codes, rounds, sites, mins, dates, amounts, txIDs)
		w.exec(tx, `
			UPDATE vouchers v SET status = 'redeemed', rounds = u.r
			  FROM unnest($1::bigint[], $2::smallint[]) AS u(c, r) WHERE v.code = u.c`, codes, rounds)
	})
}

// reverse reverses live redemptions of a programme, one transaction each; the vouchers become
// available again.
func (w *world) reverse(p *wProgramme, n int) {
	rows, err := w.db.App.Query(w.ctx, `
		SELECT r.voucher_code, r.round, r.site_id, r.amount_cents, r.tx_id
		  FROM redemptions r JOIN vouchers v ON v.code = r.voucher_code AND v.rounds = r.round
		 WHERE r.programme_id = $1 AND v.status = 'redeemed' ORDER BY r.voucher_code`, p.id)
	if err != nil {
		w.t.Fatal(err)
	}
	type live struct {
		code   int64
		round  int16
		site   uuid.UUID
		amount int64
		tx     uuid.UUID
	}
	lives, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (live, error) {
		var l live
		return l, r.Scan(&l.code, &l.round, &l.site, &l.amount, &l.tx)
	})
	if err != nil {
		w.t.Fatal(err)
	}
	w.rnd.Shuffle(len(lives), func(i, j int) { lives[i], lives[j] = lives[j], lives[i] })
	for _, lv := range lives[:min(n, len(lives))] {
		w.inTx(func(tx pgx.Tx) {
			e, err := ledger.ReversalOf(w.ctx, tx, lv.tx, w.operator, nil)
			if err != nil {
				w.t.Fatal(err)
			}
			posted := w.post(tx, e)
			w.exec(tx, `
				INSERT INTO redemption_reversals (voucher_code, round, programme_id, site_id, reason, note, amount_cents,
				                                  reversed_at, reversed_by, tx_id)
				VALUES ($1, $2, $3, $4, 'error', 'Code mal saisi', $5, $6, $7, $8)`,
				lv.code, lv.round, p.id, lv.site, lv.amount, w.clock, w.operator, posted[0].ID)
			w.exec(tx, `UPDATE vouchers SET status = 'available' WHERE code = $1`, lv.code)
		})
	}
}

// closeOut expires a programme: its active vouchers expire (expiry transaction) and its whole
// unissued budget returns to its funders by share (return transactions).
func (w *world) closeOut(p *wProgramme, at time.Time) {
	w.inTx(func(tx pgx.Tx) {
		var expired int64
		if err := tx.QueryRow(w.ctx, `
			WITH e AS (UPDATE vouchers SET status = 'expired'
			            WHERE programme_id = $1 AND status IN ('in_stock', 'available') RETURNING face_value_cents)
			SELECT coalesce(sum(face_value_cents), 0)::bigint FROM e`, p.id).Scan(&expired); err != nil {
			w.t.Fatal(err)
		}
		w.exec(tx, `UPDATE books SET status = 'expired', closed_at = $2 WHERE programme_id = $1 AND status IN ('in_stock', 'handed_out')`,
			p.id, at)
		w.exec(tx, `UPDATE programmes SET status = 'expired', expired_at = $2 WHERE id = $1`, p.id, at)
		if expired > 0 {
			w.post(tx, ledger.Entry{Programme: p.id, Kind: ledger.KindExpiry, EffectiveAt: at,
				Postings: ledger.Move(acct(p.id, ledger.Outstanding, uuid.Nil), acct(p.id, ledger.Unissued, uuid.Nil), expired)})
		}
		w.returnBudget(tx, p, 1, at)
	})
}

// returnBudget gives back a fraction 1/div of the unissued budget to the programme's funders.
func (w *world) returnBudget(tx pgx.Tx, p *wProgramme, div int64, at time.Time) {
	unissued, err := ledger.BalanceOf(w.ctx, tx, acct(p.id, ledger.Unissued, uuid.Nil))
	if err != nil {
		w.t.Fatal(err)
	}
	rows, err := tx.Query(w.ctx, `SELECT funder_id FROM programme_funders WHERE programme_id = $1 ORDER BY funder_id`, p.id)
	if err != nil {
		w.t.Fatal(err)
	}
	funders, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	if err != nil {
		w.t.Fatal(err)
	}
	part := unissued / div / int64(len(funders))
	if part == 0 {
		return
	}
	var entries []ledger.Entry
	for _, f := range funders {
		entries = append(entries, ledger.Entry{Programme: p.id, Kind: ledger.KindReturn, EffectiveAt: at,
			Postings: ledger.Move(acct(p.id, ledger.Unissued, uuid.Nil), acct(p.id, ledger.FunderReturned, f), part)})
	}
	w.post(tx, entries...)
}

// settle puts each site's unclaimed redemptions with a service date up to cutoff on a
// statement, with its unclaimed reversals up to cutoff whose redemption rides along or was
// paid (clawbacks), approves it and, if paidOn is set, pays it with its payout transactions.
func (w *world) settle(cutoff, paidOn time.Time) {
	type line struct {
		kind      string
		code      int64
		round     int16
		programme uuid.UUID
		amount    int64
	}
	for _, site := range w.sites {
		rows, err := w.db.App.Query(w.ctx, `
			WITH r AS (
			    SELECT 'redemption' AS kind, r.voucher_code, r.round, r.programme_id, r.amount_cents
			      FROM redemptions r
			     WHERE r.site_id = $1 AND r.service_date <= $2
			       AND NOT EXISTS (SELECT 1 FROM statement_claims c
			                        WHERE c.kind = 'redemption' AND c.voucher_code = r.voucher_code AND c.round = r.round))
			SELECT * FROM r
			UNION ALL
			SELECT 'reversal', v.voucher_code, v.round, v.programme_id, -v.amount_cents
			  FROM redemption_reversals v
			 WHERE v.site_id = $1 AND (v.reversed_at AT TIME ZONE 'Europe/Paris')::date <= $2
			   AND NOT EXISTS (SELECT 1 FROM statement_claims c
			                    WHERE c.kind = 'reversal' AND c.voucher_code = v.voucher_code AND c.round = v.round)
			   AND (EXISTS (SELECT 1 FROM r WHERE r.voucher_code = v.voucher_code AND r.round = v.round)
			        OR EXISTS (SELECT 1 FROM statement_claims c JOIN statements s ON s.id = c.statement_id
			                    WHERE c.kind = 'redemption' AND c.voucher_code = v.voucher_code AND c.round = v.round
			                      AND s.status = 'paid'))
			 ORDER BY 1, 2, 3`, site, cutoff)
		if err != nil {
			w.t.Fatal(err)
		}
		lines, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (line, error) {
			var l line
			return l, r.Scan(&l.kind, &l.code, &l.round, &l.programme, &l.amount)
		})
		if err != nil {
			w.t.Fatal(err)
		}
		var total int64
		net := map[uuid.UUID]int64{}
		for _, l := range lines {
			total += l.amount
			net[l.programme] += l.amount
		}
		if total <= 0 {
			continue
		}
		id := uuid.New()
		w.statements++
		w.inTx(func(tx pgx.Tx) {
			w.exec(tx, `
				INSERT INTO statements (id, number, site_id, cutoff, total_cents, line_count, created_by)
				VALUES ($1, $2, $3, $4, $5, $6, $7)`,
				id, fmt.Sprintf("RLV-%s-%06d", cutoff.Format("2006-01"), w.statements), site, cutoff, total, len(lines), w.operator)
			var (
				nos, amounts []int64
				kinds        []string
				codes        []int64
				rounds       []int16
				progs        []uuid.UUID
			)
			for i, l := range lines {
				nos, kinds, codes, rounds = append(nos, int64(i+1)), append(kinds, l.kind), append(codes, l.code), append(rounds, l.round)
				progs, amounts = append(progs, l.programme), append(amounts, l.amount)
			}
			w.exec(tx, `
				INSERT INTO statement_lines (statement_id, line_no, programme_id, kind, voucher_code, round, amount_cents)
				SELECT $1, n, p, k, c, r, a
				  FROM unnest($2::int[], $3::uuid[], $4::text[], $5::bigint[], $6::smallint[], $7::bigint[]) AS u(n, p, k, c, r, a)`,
				id, nos, progs, kinds, codes, rounds, amounts)
		})
		w.inTx(func(tx pgx.Tx) {
			w.exec(tx, `UPDATE statements SET status = 'approved', approved_at = $2, approved_by = $3 WHERE id = $1`,
				id, cutoff.Add(36*time.Hour), w.operator)
		})
		if paidOn.IsZero() {
			continue
		}
		w.inTx(func(tx pgx.Tx) {
			for p, amount := range net {
				if amount == 0 {
					continue
				}
				posted := w.post(tx, ledger.Entry{Programme: p, Kind: ledger.KindPayout, EffectiveAt: paidOn,
					Postings: ledger.Move(acct(p, ledger.SitePayable, site), acct(p, ledger.SitePaid, site), amount)})
				w.exec(tx, `INSERT INTO statement_payouts (statement_id, programme_id, tx_id, amount_cents) VALUES ($1, $2, $3, $4)`,
					id, p, posted[0].ID, amount)
			}
			w.exec(tx, `
				UPDATE statements SET status = 'paid', paid_at = $2, paid_by = $3, paid_on = $4, bank_reference = $5
				 WHERE id = $1`, id, paidOn.Add(10*time.Hour), w.operator, paidOn, "VIR-"+id.String()[:8])
		})
	}
}

// build writes the whole random history: a few thousand events.
func (w *world) build() {
	for _, p := range w.programmes {
		for range 3 + w.rnd.IntN(3) {
			month := time.Month(1 + w.rnd.IntN(10))
			at := time.Date(2024, month, 1+w.rnd.IntN(28), w.rnd.IntN(24), w.rnd.IntN(60), 0, 0, time.UTC)
			w.order(p, 5+w.rnd.IntN(30), at)
		}
	}
	for _, p := range w.programmes {
		stock := w.inStock(p)
		w.rnd.Shuffle(len(stock), func(i, j int) { stock[i], stock[j] = stock[j], stock[i] })
		nHand := len(stock) * 8 / 10
		for i := 0; i < nHand; {
			n := 1
			if w.rnd.IntN(2) == 0 {
				n = 1 + w.rnd.IntN(20)
			}
			n = min(n, nHand-i)
			w.handOut(p, stock[i:i+n])
			i += n
		}
		rest := stock[nHand:]
		w.cancel(p, rest[:len(rest)/4])
	}
	for round := range 3 {
		for _, p := range w.programmes {
			vs := w.available(p)
			w.rnd.Shuffle(len(vs), func(i, j int) { vs[i], vs[j] = vs[j], vs[i] })
			vs = vs[:len(vs)*6/10]
			for i := 0; i < len(vs); {
				n := min(1+w.rnd.IntN(40), len(vs)-i)
				w.redeem(p, vs[i:i+n])
				i += n
			}
			if round < 2 {
				w.reverse(p, 5+w.rnd.IntN(10))
			}
		}
	}
	w.settle(time.Date(2024, 6, 30, 0, 0, 0, 0, time.UTC), time.Date(2024, 7, 10, 0, 0, 0, 0, time.UTC))
	for _, p := range w.programmes {
		w.reverse(p, 5+w.rnd.IntN(10)) // some of them paid already: clawbacks
	}
	w.settle(time.Date(2024, 10, 31, 0, 0, 0, 0, time.UTC), time.Date(2024, 11, 8, 0, 0, 0, 0, time.UTC))
	w.settle(time.Date(2024, 12, 31, 0, 0, 0, 0, time.UTC), time.Time{}) // approved, not paid yet
	w.inTx(func(tx pgx.Tx) {
		w.returnBudget(tx, w.programmes[0], 10, time.Date(2024, 6, 30, 22, 30, 0, 0, time.UTC))
	})
	w.closeOut(w.programmes[1], time.Date(2025, 2, 3, 10, 0, 0, 0, time.UTC))
}

func (w *world) programmeIDs() []uuid.UUID {
	var ids []uuid.UUID
	for _, p := range w.programmes {
		ids = append(ids, p.id)
	}
	return slices.Clone(ids)
}
