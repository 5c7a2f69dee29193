package payouts_test

import (
	"context"
	"errors"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/passnum/passnum/internal/payouts"
)

// wantPgError runs sql in its own transaction (committed, so deferred checks run) and wants
// it refused with the given SQLSTATE and, if not empty, constraint.
func wantPgError(t *testing.T, pool *pgxpool.Pool, code, constraint, sql string, args ...any) {
	t.Helper()
	err := pgx.BeginFunc(context.Background(), pool, func(tx pgx.Tx) error {
		_, err := tx.Exec(context.Background(), sql, args...)
		return err
	})
	var pe *pgconn.PgError
	if !errors.As(err, &pe) {
		t.Fatalf("%s: got %v, want SQLSTATE %s", sql, err, code)
	}
	if pe.Code != code || (constraint != "" && pe.ConstraintName != constraint) {
		t.Fatalf("%s: got %s %s (%s), want %s %s", sql, pe.Code, pe.ConstraintName, pe.Message, code, constraint)
	}
}

// paidAndDraft makes one paid statement and one draft statement, each of one line.
func paidAndDraft(t *testing.T) (w *world, paid, draft *payouts.Statement, site uuid.UUID, p *programme, free redemption) {
	w = newWorld(t)
	state := w.funder("État")
	p = w.programme("Drôme", 1000, 10, "2026-12-31", share{state, 10000})
	w.fund(p, state, 104000)
	b := w.order(p, 1)[0]
	w.handOut(p, b)
	site = w.site("Tiers-lieu", 0)
	other := w.site("Autre lieu", 1)
	w.redeem(b.codes[0], site, "2026-11-10")
	w.redeem(b.codes[1], other, "2026-11-10")
	free = w.redeem(b.codes[2], site, "2026-12-01")
	sts := w.create("2026-11-30")
	w.approve(sts[site].ID)
	w.pay(sts[site].ID, "VIR-1", "2026-12-01")
	return w, w.get(sts[site].ID), w.get(sts[other].ID), site, p, free
}

// A paid statement never changes, even for the owner of the tables with raw SQL.
func TestPaidStatementNeverChanges(t *testing.T) {
	t.Parallel()
	w, paid, _, _, p, free := paidAndDraft(t)
	owner := w.db.Owner
	for _, sql := range []string{
		`UPDATE statements SET bank_reference = 'AUTRE' WHERE id = $1`,
		`UPDATE statements SET status = 'rejected', rejected_at = now(), rejected_by = created_by, rejection_reason = 'x' WHERE id = $1`,
		`UPDATE statements SET payment_message_id = NULL WHERE id = $1`,
	} {
		wantPgError(t, owner, "42501", "statements_final", sql, paid.ID)
	}
	wantPgError(t, owner, "42501", "", `DELETE FROM statements WHERE id = $1`, paid.ID)
	wantPgError(t, owner, "42501", "", `TRUNCATE statements CASCADE`)
	wantPgError(t, owner, "42501", "", `UPDATE statement_lines SET amount_cents = 1 WHERE statement_id = $1`, paid.ID)
	wantPgError(t, owner, "42501", "", `DELETE FROM statement_lines WHERE statement_id = $1`, paid.ID)
	wantPgError(t, owner, "42501", "", `DELETE FROM statement_claims WHERE statement_id = $1`, paid.ID)
	wantPgError(t, owner, "42501", "", `DELETE FROM statement_payouts WHERE statement_id = $1`, paid.ID)
	// No line can be added to it, not even a genuine one.
	wantPgError(t, owner, "23514", "statement_lines_match", `
		INSERT INTO statement_lines (statement_id, line_no, programme_id, kind, voucher_code, round, amount_cents)
		VALUES ($1, 2, $2, 'redemption', $3, $4, 1000)`, paid.ID, p.id, int64(free.code), free.round)
	// The application role may not even try.
	wantPgError(t, w.db.App, "42501", "", `UPDATE statements SET total_cents = 1 WHERE id = $1`, paid.ID)
	wantPgError(t, w.db.App, "42501", "", `DELETE FROM statements WHERE id = $1`, paid.ID)
	wantPgError(t, w.db.App, "42501", "", `INSERT INTO statement_claims (kind, voucher_code, round, statement_id)
		VALUES ('redemption', 1, 1, $1)`, paid.ID)

	got := w.get(paid.ID)
	if got.Status != payouts.StatusPaid || got.BankReference != "VIR-1" || got.TotalCents != 1000 || len(got.Lines) != 1 {
		t.Fatalf("paid statement changed: %+v", got)
	}
}

// A total that is not the sum of the lines is refused at commit, and nothing is written.
func TestTotalMustEqualLines(t *testing.T) {
	t.Parallel()
	w, _, _, site, p, free := paidAndDraft(t)
	w.clock.set("2026-12-02")
	insert := func(pool *pgxpool.Pool, total int64, amount int64) error {
		return pgx.BeginFunc(w.ctx, pool, func(tx pgx.Tx) error {
			id := uuid.New()
			if _, err := tx.Exec(w.ctx, `
				INSERT INTO statements (id, number, site_id, cutoff, total_cents, line_count, created_by)
				VALUES ($1, 'RLV-2026-12-999999', $2, '2026-12-01', $3, 1, $4)`, id, site, total, w.operator.Org); err != nil {
				return err
			}
			_, err := tx.Exec(w.ctx, `
				INSERT INTO statement_lines (statement_id, line_no, programme_id, kind, voucher_code, round, amount_cents)
				VALUES ($1, 1, $2, 'redemption', $3, $4, $5)`, id, p.id, int64(free.code), free.round, amount)
			return err
		})
	}
	for _, pool := range []*pgxpool.Pool{w.db.App, w.db.Owner} {
		err := insert(pool, 1500, 1000)
		var pe *pgconn.PgError
		if !errors.As(err, &pe) || pe.ConstraintName != "statements_total_matches_lines" {
			t.Fatalf("total 1500 over a line of 1000: %v", err)
		}
		// A line that does not match its redemption's amount is refused too.
		err = insert(pool, 1500, 1500)
		if !errors.As(err, &pe) || pe.ConstraintName != "statement_lines_match" {
			t.Fatalf("line of 1500 for a redemption of 1000: %v", err)
		}
	}
	var n int
	if err := w.db.Owner.QueryRow(w.ctx, `SELECT count(*) FROM statements WHERE number = 'RLV-2026-12-999999'`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("refused statement left %d rows (%v)", n, err)
	}
	// The right total goes through.
	if err := insert(w.db.App, 1000, 1000); err != nil {
		t.Fatal(err)
	}
}

// A redemption is on at most one live statement; rejecting a statement frees its lines.
func TestOneLiveStatementPerRedemption(t *testing.T) {
	t.Parallel()
	w, paid, draft, _, _, _ := paidAndDraft(t)
	line := draft.Lines[0]
	second := func() error {
		return pgx.BeginFunc(w.ctx, w.db.App, func(tx pgx.Tx) error {
			id := uuid.New()
			if _, err := tx.Exec(w.ctx, `
				INSERT INTO statements (id, number, site_id, cutoff, total_cents, line_count, created_by)
				VALUES ($1, 'RLV-2026-11-999998', $2, '2026-11-30', 1000, 1, $3)`, id, draft.Site, w.operator.Org); err != nil {
				return err
			}
			_, err := tx.Exec(w.ctx, `
				INSERT INTO statement_lines (statement_id, line_no, programme_id, kind, voucher_code, round, amount_cents)
				VALUES ($1, 1, $2, 'redemption', $3, $4, 1000)`, id, line.Programme, int64(line.VoucherCode), line.Round)
			return err
		})
	}
	var pe *pgconn.PgError
	if err := second(); !errors.As(err, &pe) || pe.ConstraintName != "statement_claims_pkey" {
		t.Fatalf("same redemption on two live statements: %v", err)
	}
	if _, err := w.svc.RejectStatement(w.ctx, w.operator, w.key(), draft.ID, "doublon"); err != nil {
		t.Fatal(err)
	}
	if err := second(); err != nil {
		t.Fatalf("after rejection the line is free again: %v", err)
	}
	// A paid statement's redemption stays claimed for ever.
	pl := paid.Lines[0]
	wantPgError(t, w.db.Owner, "23505", "statement_claims_pkey", `
		WITH s AS (INSERT INTO statements (id, number, site_id, cutoff, total_cents, line_count, created_by)
		           VALUES ($1, 'RLV-2026-11-999997', $2, '2026-11-30', 1000, 1, $2) RETURNING id)
		INSERT INTO statement_lines (statement_id, line_no, programme_id, kind, voucher_code, round, amount_cents)
		SELECT s.id, 1, $3, 'redemption', $4, $5, 1000 FROM s`,
		uuid.New(), paid.Site, pl.Programme, int64(pl.VoucherCode), pl.Round)
}

// Status moves only draft → approved | rejected and approved → paid | rejected, with the
// fields of each step, and a payment needs its ledger transactions.
func TestStatusTransitions(t *testing.T) {
	t.Parallel()
	w, _, draft, _, _, _ := paidAndDraft(t)
	owner := w.db.Owner
	wantPgError(t, owner, "23514", "statements_transition", `
		UPDATE statements SET status = 'paid', approved_at = now(), approved_by = created_by, paid_at = now(),
		       paid_by = created_by, paid_on = '2026-12-01', bank_reference = 'X' WHERE id = $1`, draft.ID)
	wantPgError(t, owner, "23514", "", `UPDATE statements SET status = 'approved' WHERE id = $1`, draft.ID)
	wantPgError(t, owner, "42501", "statements_identity", `UPDATE statements SET cutoff = '2026-11-01' WHERE id = $1`, draft.ID)
	w.approve(draft.ID)
	// Paid without its payout transaction in the ledger.
	wantPgError(t, owner, "23514", "statements_paid_in_ledger", `
		UPDATE statements SET status = 'paid', paid_at = now(), paid_by = created_by, paid_on = '2026-12-01',
		       bank_reference = 'X' WHERE id = $1`, draft.ID)
	wantPgError(t, owner, "23514", "statements_transition", `
		UPDATE statements SET status = 'draft', approved_at = NULL, approved_by = NULL WHERE id = $1`, draft.ID)
	wantPgError(t, owner, "23514", "statements_transition", `
		UPDATE statements SET approved_at = now() - interval '1 day' WHERE id = $1`, draft.ID)
}
