package main

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/passnum/passnum/internal/reports"
	"github.com/passnum/passnum/internal/testdb"
	"github.com/passnum/passnum/ledger"
)

func TestMain(m *testing.M) { os.Exit(testdb.Main(m)) }

// TestGenerateSmall runs the whole generator on a small history: every constraint and
// trigger of the schema must accept it, the ledger must verify, and the aggregates the
// triggers kept must agree with the raw rows.
func TestGenerateSmall(t *testing.T) {
	db := testdb.New(t)
	ctx := context.Background()
	l := ledger.New(db.App, nil)
	o := options{redemptions: 30_000, programmes: 5, months: 24, end: time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC),
		seed: 3, workers: 2, queries: 30}
	g := newGenerator(ctx, db.App, l, o, slog.New(slog.DiscardHandler))
	if err := g.generate(); err != nil {
		t.Fatal(err)
	}
	rep, err := l.Verify(ctx, uuid.Nil)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK {
		for _, c := range rep.Checks {
			if !c.OK {
				t.Errorf("check %s: %s", c.Name, c.Detail)
			}
		}
	}

	var redemptions, reversals, owed, paid, expired, returned, handedOut, targetPublic, statements, closures int64
	if err := db.Owner.QueryRow(ctx, `
		SELECT (SELECT count(*) FROM redemptions),
		       (SELECT count(*) FROM redemption_reversals),
		       (SELECT sum(amount_cents) FROM redemptions) - (SELECT coalesce(sum(amount_cents), 0) FROM redemption_reversals),
		       (SELECT sum(l.amount_cents) FROM statement_lines l JOIN statements s ON s.id = l.statement_id WHERE s.status = 'paid'),
		       (SELECT sum(face_value_cents) FROM vouchers WHERE status = 'expired'),
		       (SELECT sum(balance) FROM accounts WHERE kind = 'funder_returned'),
		       (SELECT count(*) FROM books WHERE handed_out_at IS NOT NULL),
		       (SELECT count(*) FROM books WHERE target_public),
		       (SELECT count(*) FROM statements WHERE status = 'paid'),
		       (SELECT count(*) FROM programme_closures)`).Scan(
		&redemptions, &reversals, &owed, &paid, &expired, &returned, &handedOut, &targetPublic, &statements, &closures); err != nil {
		t.Fatal(err)
	}
	if redemptions < 25_000 || redemptions > 35_000 || reversals == 0 || statements == 0 || closures == 0 || expired == 0 {
		t.Errorf("history: %d redemptions, %d reversals, %d paid statements, %d close-outs, %d cents expired",
			redemptions, reversals, statements, closures, expired)
	}
	svc := reports.New(l)
	sum, err := svc.Spend(ctx, reports.Everything, reports.Query{})
	if err != nil {
		t.Fatal(err)
	}
	got := sum.Total
	if got.VouchersRedeemed != redemptions-reversals || got.OwedCents != owed || got.PaidCents != paid ||
		got.ExpiredCents != expired || got.ReturnedCents != returned || got.BooksHandedOut != handedOut ||
		got.BooksTargetPublic != targetPublic {
		t.Errorf("aggregates %+v\nraw: %d vouchers, %d owed, %d paid, %d expired, %d returned, %d handed out, %d target public",
			got, redemptions-reversals, owed, paid, expired, returned, handedOut, targetPublic)
	}
	share := got.TargetPublicShareBps()
	if share < 5700 || share > 6700 {
		t.Errorf("target public share %d bps, want about %d", share, int(targetPublicRate*10000))
	}
	if err := measure(ctx, db.App, svc, o); err != nil {
		t.Fatal(err)
	}
}
