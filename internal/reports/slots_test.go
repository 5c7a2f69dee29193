package reports

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/passnum/passnum/internal/auth"
	"github.com/passnum/passnum/ledger"
)

// report_slot gives each open transaction the lowest slot of a programme no other open
// transaction holds, the same one for all its statements, and frees it at commit; writers of
// different programmes all keep slot 0.
func TestReportSlotIsLowestFree(t *testing.T) {
	w := newWorld(t, 11)
	ctx := context.Background()
	p, q := w.programmes[0].id, w.programmes[1].id
	begin := func() pgx.Tx {
		tx, err := w.db.App.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { tx.Rollback(ctx) })
		return tx
	}
	slot := func(name string, tx pgx.Tx, programme uuid.UUID, want int16) {
		t.Helper()
		var got int16
		if err := tx.QueryRow(ctx, `SELECT report_slot($1)`, programme).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Errorf("%s: slot %d, want %d", name, got, want)
		}
	}
	a, b, c := begin(), begin(), begin()
	slot("first transaction", a, p, 0)
	slot("first transaction again", a, p, 0)
	slot("second transaction", b, p, 1)
	slot("third transaction", c, p, 2)
	slot("second transaction again", b, p, 1)
	slot("third transaction, another programme", c, q, 0)
	slot("second transaction, that other programme", b, q, 1)
	if err := a.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	slot("a transaction after the first committed", begin(), p, 0)
	if err := c.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	slot("a transaction after the third rolled back", begin(), p, 2)
}

// Two transactions redeeming at the same site, in the same month, on books of the same
// distributor and territory (the two redemption executors with consecutive batches) write
// the same report_spend key: the second no longer waits for the first's commit, each writes
// its own slot, and the reports, which sum the slots, still equal the raw rows.
func TestConcurrentRedemptionsDoNotWaitForReportRows(t *testing.T) {
	w := newWorld(t, 12)
	w.build()
	ctx := context.Background()
	p := w.programmes[2] // neither closed out nor given back
	site := w.sites[3]

	// Available vouchers of two books with the same distributor and territory: two different
	// books, since two transactions starting the same book do wait for each other (its first
	// redemption is counted once, report_book_starts' key).
	type voucher struct {
		code   int64
		book   int64
		rounds int16
	}
	var (
		dist        uuid.UUID
		territory   string
		first, next []voucher
	)
	rows, err := w.db.App.Query(ctx, `
		SELECT b.distributor_id, b.territory, b.number, v.code, v.rounds
		  FROM books b JOIN vouchers v ON v.programme_id = b.programme_id AND v.book_number = b.number
		 WHERE b.programme_id = $1 AND b.status = 'handed_out' AND v.status = 'available'
		 ORDER BY b.distributor_id, b.territory, b.number, v.code`, p.id)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var (
			d  uuid.UUID
			tr string
			v  voucher
		)
		if err := rows.Scan(&d, &tr, &v.book, &v.code, &v.rounds); err != nil {
			t.Fatal(err)
		}
		switch {
		case d != dist || tr != territory:
			if len(next) > 0 {
				continue // the group found is enough
			}
			dist, territory, first, next = d, tr, []voucher{v}, nil
		case v.book == first[0].book:
			first = append(first, v)
		case len(next) == 0 || v.book == next[0].book:
			next = append(next, v)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(first) == 0 || len(next) == 0 {
		t.Fatal("no two books of one distributor and territory with available vouchers")
	}

	day := p.validUntil
	write := func(tx pgx.Tx, vs []voucher) []ledger.Entry {
		t.Helper()
		var (
			codes   []int64
			rounds  []int16
			txIDs   []uuid.UUID
			entries []ledger.Entry
		)
		for _, v := range vs {
			id := uuid.New()
			codes, rounds, txIDs = append(codes, v.code), append(rounds, v.rounds+1), append(txIDs, id)
			entries = append(entries, ledger.Entry{ID: id, Programme: p.id, Kind: ledger.KindRedemption, Org: w.operator,
				Postings: ledger.Move(acct(p.id, ledger.Outstanding, uuid.Nil), acct(p.id, ledger.SitePayable, site), p.face)})
		}
		// As redeemBatch: the redemptions (and their report rows) first, the ledger last.
		if _, err := tx.Exec(ctx, `
			INSERT INTO redemptions (voucher_code, round, programme_id, site_id, service, minutes, service_date,
			                         amount_cents, redeemed_at, tx_id)
			SELECT c, r, $1, $2, 'Démarches en ligne', 45, $3, $4, now(), t
			  FROM unnest($5::bigint[], $6::smallint[], $7::uuid[]) AS u(c, r, t)`,
			p.id, site, day, p.face, codes, rounds, txIDs); err != nil {
			t.Fatalf("insert redemptions: %v", err)
		}
		if _, err := tx.Exec(ctx, `
			UPDATE vouchers v SET status = 'redeemed', rounds = u.r
			  FROM unnest($1::bigint[], $2::smallint[]) AS u(c, r) WHERE v.code = u.c`, codes, rounds); err != nil {
			t.Fatalf("update vouchers: %v", err)
		}
		return entries
	}

	tx1, err := w.db.App.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx1.Rollback(ctx)
	tx2, err := w.db.App.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx2.Rollback(ctx)
	if _, err := tx2.Exec(ctx, `SET LOCAL lock_timeout = '5s'`); err != nil {
		t.Fatal(err)
	}
	e1 := write(tx1, first)
	began := time.Now()
	e2 := write(tx2, next) // before slots: lock_not_available after 5 s
	if d := time.Since(began); d > 2*time.Second {
		t.Errorf("the second transaction's redemptions took %v", d)
	}
	for _, step := range []struct {
		tx      pgx.Tx
		entries []ledger.Entry
	}{{tx1, e1}, {tx2, e2}} {
		if _, err := w.l.Post(ctx, step.tx, step.entries...); err != nil {
			t.Fatal(err)
		}
		if err := step.tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
	}

	var slots []int16
	if err := w.db.Owner.QueryRow(ctx, `
		SELECT array_agg(slot ORDER BY slot) FROM report_spend
		 WHERE programme_id = $1 AND month = date_trunc('month', $2::date) AND distributor_id = $3
		   AND site_id = $4 AND territory = $5`, p.id, day, dist, site, territory).Scan(&slots); err != nil {
		t.Fatal(err)
	}
	if len(slots) != 2 || slots[0] == slots[1] {
		t.Errorf("slots of the shared key: %v, want two different ones", slots)
	}

	svc, b := New(w.l), loadBrute(t, w.db)
	all := []Dimension{Programme, Funder, Territory, Distributor, Site, Month}
	for _, c := range []struct {
		name  string
		scope Scope
		q     Query
	}{
		{"everything in one row", Everything, Query{}},
		{"every dimension", Everything, Query{GroupBy: all}},
		{"by site and month", Everything, Query{GroupBy: []Dimension{Site, Month}}},
		{"the programme by funder", Everything, Query{Filter: Filter{Programme: p.id}, GroupBy: []Dimension{Funder, Distributor}}},
		{"the site's scope", Scope{Role: auth.RoleSite, Org: site}, Query{GroupBy: []Dimension{Programme, Month}}},
		{"the distributor's scope", Scope{Role: auth.RoleDistributor, Org: dist}, Query{GroupBy: []Dimension{Territory, Site}}},
	} {
		rep, err := svc.Spend(ctx, c.scope, c.q)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		b.check(t, c.name, c.scope, c.q, rep)
	}
}
