package ledger_test

import (
	"context"
	"slices"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/passnum/passnum/internal/fault"
	"github.com/passnum/passnum/ledger"
)

// scene is a programme with a little of everything, in this order (seq):
//
//	1 funding by funder 0 of 500 000 with 5 000 of fees   5 redemption of voucher 1 at site 1
//	2 funding by funder 1 of 300 000                      6 reversal of 4 (voucher 0 available again)
//	3 issuance of 3 books (6 vouchers of 1 000)           7 redemption of voucher 0 at site 1, round 2
//	4 redemption of voucher 0 at site 0                   8 payout of 1 000 to site 1
type scene struct {
	p     *programme
	codes []int64
}

func buildScene(t testing.TB, e *env) *scene {
	t.Helper()
	p := newProgramme(t, e, 2, 2)
	s := &scene{p: p}
	post(t, e, p.funding(p.Funders[0], 500_000, 5_000))
	post(t, e, p.funding(p.Funders[1], 300_000, 0))
	err := e.l.RunInTx(context.Background(), "test_scene", func(ctx context.Context, tx pgx.Tx) error {
		var err error
		s.codes, err = p.issueBooks(ctx, e.l, tx, 3)
		return err
	})
	if err != nil {
		t.Fatalf("issue: %v", err)
	}
	var first uuid.UUID
	step := func(f func(ctx context.Context, tx pgx.Tx) error) {
		t.Helper()
		if err := e.l.RunInTx(context.Background(), "test_scene", f); err != nil {
			t.Fatal(err)
		}
	}
	step(func(ctx context.Context, tx pgx.Tx) error {
		var err error
		first, _, err = p.redeem(ctx, e.l, tx, s.codes[0], p.Sites[0])
		return err
	})
	step(func(ctx context.Context, tx pgx.Tx) error {
		_, _, err := p.redeem(ctx, e.l, tx, s.codes[1], p.Sites[1])
		return err
	})
	step(func(ctx context.Context, tx pgx.Tx) error {
		return p.reverseRedemption(ctx, e.l, tx, s.codes[0], 1, p.Sites[0], first)
	})
	step(func(ctx context.Context, tx pgx.Tx) error {
		_, _, err := p.redeem(ctx, e.l, tx, s.codes[0], p.Sites[1])
		return err
	})
	post(t, e, p.entry(ledger.KindPayout,
		ledger.Move(p.ref(ledger.SitePayable, p.Sites[1]), p.ref(ledger.SitePaid, p.Sites[1]), 1_000)))
	return s
}

func TestVerifyHealthyLedger(t *testing.T) {
	e := newEnv(t)
	s := buildScene(t, e)
	other := newProgramme(t, e, 1, 1)
	other.fund(t, e, other.Funders[0], 50_000)

	rep := verifyOK(t, e, s.p.ID)
	if rep.Transactions != 8 || rep.Postings != 17 || rep.Programme != s.p.ID || rep.VerifiedAt.IsZero() {
		t.Errorf("report: %d transactions, %d postings, programme %s, at %s; want 8, 17, %s",
			rep.Transactions, rep.Postings, rep.Programme, rep.VerifiedAt, s.p.ID)
	}
	var names []string
	for _, c := range rep.Checks {
		names = append(names, c.Name)
		if c.Detail == "" || len(c.Figures) == 0 {
			t.Errorf("check %s: no detail or figures", c.Name)
		}
	}
	want := []string{ledger.CheckPostingsSumZero, ledger.CheckBalancesMatchPostings, ledger.CheckHashChain,
		ledger.CheckOutstanding, ledger.CheckFullyBacked, ledger.CheckNoDoubleRedemption,
		ledger.CheckVouchersHaveBooks, ledger.CheckStatementTotals}
	if !slices.Equal(names, want) {
		t.Errorf("checks %v, want %v", names, want)
	}
	figures := []struct {
		check, figure string
		want          int64
	}{
		{ledger.CheckPostingsSumZero, "sum_cents", 0},
		{ledger.CheckPostingsSumZero, "transactions", 8},
		{ledger.CheckHashChain, "transactions", 8},
		{ledger.CheckHashChain, "chains", 1},
		{ledger.CheckOutstanding, "outstanding_cents", 4_000},
		{ledger.CheckOutstanding, "active_vouchers", 4},
		{ledger.CheckFullyBacked, "paid_in_cents", 800_000},
		{ledger.CheckFullyBacked, "payable_cents", 1_000},
		{ledger.CheckFullyBacked, "paid_cents", 1_000},
		{ledger.CheckNoDoubleRedemption, "redemptions", 3},
		{ledger.CheckNoDoubleRedemption, "reversed_redemptions", 1},
		{ledger.CheckVouchersHaveBooks, "vouchers", 6},
	}
	for _, f := range figures {
		if got := rep.Check(f.check).Figures[f.figure]; got != f.want {
			t.Errorf("%s.%s = %d, want %d", f.check, f.figure, got, f.want)
		}
	}

	all := verifyOK(t, e, uuid.Nil)
	if all.Transactions != 9 || all.Check(ledger.CheckHashChain).Figures["chains"] != 2 {
		t.Errorf("whole ledger: %d transactions, %d chains; want 9 and 2",
			all.Transactions, all.Check(ledger.CheckHashChain).Figures["chains"])
	}
}

func TestVerifyUnknownProgramme(t *testing.T) {
	e := newEnv(t)
	_, err := e.l.Verify(context.Background(), uuid.New())
	if f, ok := fault.As(err); !ok || f.Kind != fault.NotFound || f.Reason != "PROGRAMME_NOT_FOUND" {
		t.Fatalf("got %v, want PROGRAMME_NOT_FOUND", err)
	}
}

// A statement whose stored total no longer matches its lines (written around the
// database's own commit-time check) is reported; statements of other programmes are not
// looked at.
func TestVerifyStatementTotals(t *testing.T) {
	e := newEnv(t)
	s := buildScene(t, e)
	ctx := context.Background()

	// Site 1's two live redemptions (voucher 1 round 1, voucher 0 round 2) on one statement.
	statement := uuid.New()
	err := e.l.RunInTx(ctx, "test_statement", func(ctx context.Context, tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `
			INSERT INTO statements (id, number, site_id, cutoff, total_cents, line_count, created_by)
			VALUES ($1, 'RLV-2026-03-000001', $2, '2026-03-31', 2000, 2, $3)`, statement, s.p.Sites[1], s.p.Operator); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `
			INSERT INTO statement_lines (statement_id, line_no, programme_id, kind, voucher_code, round, amount_cents)
			VALUES ($1, 1, $2, 'redemption', $3, 1, 1000), ($1, 2, $2, 'redemption', $4, 2, 1000)`,
			statement, s.p.ID, s.codes[1], s.codes[0])
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if c := verifyOK(t, e, s.p.ID).Check(ledger.CheckStatementTotals); c.Figures["statements"] != 1 {
		t.Fatalf("statement not counted: %+v", c)
	}

	execAll(t, e.db.Owner, []stmt{
		{`ALTER TABLE statements DISABLE TRIGGER USER`, nil},
		{`UPDATE statements SET total_cents = 2500 WHERE id = $1`, []any{statement}},
		{`ALTER TABLE statements ENABLE TRIGGER USER`, nil},
	})
	rep, err := e.l.Verify(ctx, s.p.ID)
	if err != nil {
		t.Fatal(err)
	}
	assertFailed(t, rep, []string{ledger.CheckStatementTotals})
	if c := rep.Check(ledger.CheckStatementTotals); c.Figures["mismatched_statements"] != 1 {
		t.Fatalf("want one mismatched statement: %+v", c)
	}
	other := newProgramme(t, e, 1, 1)
	if c := verifyOK(t, e, other.ID).Check(ledger.CheckStatementTotals); c.Figures["statements"] != 0 {
		t.Fatalf("another programme's verification looked at the statement: %+v", c)
	}
}

// Inconsistencies between the ledger and the vouchers, made through the owner connection,
// are each reported by the check that covers them, and only by the checks that should.
func TestVerifyDetectsVoucherInconsistencies(t *testing.T) {
	// Vouchers of the scene: 0 redeemed (round 2), 1 redeemed, 2 available.
	tests := []struct {
		name   string
		tamper func(s *scene) []stmt
		fails  []string
		figure string // a figure of the first failed check that must be 1
	}{
		{"voucher voided without a cancellation", func(s *scene) []stmt {
			return []stmt{{`UPDATE vouchers SET status = 'voided' WHERE code = $1`, []any{s.codes[2]}}}
		}, []string{ledger.CheckOutstanding}, "mismatched_programmes"},
		{"voucher redeemed twice", func(s *scene) []stmt {
			return []stmt{
				{`ALTER TABLE redemptions DISABLE TRIGGER redemptions_one_live`, nil},
				{`INSERT INTO redemptions (voucher_code, round, programme_id, site_id, service, minutes, service_date,
				                           amount_cents, redeemed_at, tx_id)
				  SELECT voucher_code, 2, programme_id, site_id, service, minutes, service_date, amount_cents, now(), tx_id
				    FROM redemptions WHERE voucher_code = $1`, []any{s.codes[1]}},
				{`ALTER TABLE redemptions ENABLE TRIGGER redemptions_one_live`, nil},
			}
		}, []string{ledger.CheckNoDoubleRedemption}, "vouchers_redeemed_twice"},
		{"voucher marked redeemed without a redemption", func(s *scene) []stmt {
			return []stmt{{`UPDATE vouchers SET status = 'redeemed' WHERE code = $1`, []any{s.codes[2]}}}
		}, []string{ledger.CheckOutstanding, ledger.CheckNoDoubleRedemption}, "mismatched_programmes"},
		{"redeemed voucher made available again", func(s *scene) []stmt {
			return []stmt{{`UPDATE vouchers SET status = 'available' WHERE code = $1`, []any{s.codes[0]}}}
		}, []string{ledger.CheckOutstanding, ledger.CheckNoDoubleRedemption}, "mismatched_programmes"},
		{"voucher without a book", func(s *scene) []stmt {
			return []stmt{{`INSERT INTO vouchers (code, programme_id, book_number, position, face_value_cents, status)
			                VALUES ($1, $2, 999, 1, 1000, 'expired')`, []any{randomCode(), s.p.ID}}}
		}, []string{ledger.CheckVouchersHaveBooks}, "vouchers_without_book"},
		{"outstanding balance inflated", func(s *scene) []stmt {
			return []stmt{{`UPDATE accounts SET balance = balance + 10000000 WHERE programme_id = $1 AND kind = 'outstanding'`,
				[]any{s.p.ID}}}
		}, []string{ledger.CheckBalancesMatchPostings, ledger.CheckOutstanding, ledger.CheckFullyBacked}, "mismatched_accounts"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			s := buildScene(t, e)
			verifyOK(t, e, s.p.ID)
			execAll(t, e.db.Owner, tc.tamper(s))
			rep, err := e.l.Verify(context.Background(), s.p.ID)
			if err != nil {
				t.Fatal(err)
			}
			assertFailed(t, rep, tc.fails)
			if got := rep.Check(tc.fails[0]).Figures[tc.figure]; got != 1 {
				t.Errorf("%s.%s = %d, want 1", tc.fails[0], tc.figure, got)
			}
		})
	}
}

// assertFailed checks that exactly the named checks failed, each with a detail.
func assertFailed(t testing.TB, rep *ledger.Report, want []string) {
	t.Helper()
	var failed []string
	for _, c := range rep.Checks {
		if !c.OK {
			failed = append(failed, c.Name)
			if c.Detail == "" {
				t.Errorf("failed check %s has no detail", c.Name)
			}
			t.Logf("%s: %s %v", c.Name, c.Detail, c.Figures)
		}
	}
	slices.Sort(failed)
	want = slices.Sorted(slices.Values(want))
	if !slices.Equal(failed, want) || rep.OK != (len(want) == 0) {
		t.Fatalf("failed checks %v (report OK=%v), want %v", failed, rep.OK, want)
	}
}

// stmt is one SQL statement with its arguments.
type stmt struct {
	sql  string
	args []any
}

// execAll runs statements one by one on the pool (the owner's, to tamper).
func execAll(t testing.TB, pool *pgxpool.Pool, stmts []stmt) {
	t.Helper()
	for _, s := range stmts {
		if _, err := pool.Exec(context.Background(), s.sql, s.args...); err != nil {
			t.Fatalf("%s: %v", s.sql, err)
		}
	}
}
