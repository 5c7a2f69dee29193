package ledger_test

import (
	"context"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/passnum/passnum/ledger"
)

// Postings reference their transaction and their accounts. The database checks both once
// per statement (migration 011), even for the owner, and nothing moves when it refuses.
func TestPostingsNeedTheirTransactionAndAccounts(t *testing.T) {
	e := newEnv(t)
	p := newProgramme(t, e, 1, 1)
	p.fund(t, e, p.Funders[0], 10_000)
	ctx := context.Background()
	ids := accountIDs(t, e, p.ID)
	zero := make([]byte, 32)
	tests := []struct {
		name       string
		sql        func(ctx context.Context, tx pgx.Tx) error
		constraint string
	}{
		{"postings of a transaction that does not exist", func(ctx context.Context, tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `
				INSERT INTO postings (programme_id, seq, account_id, amount) VALUES ($1, 99, $2, -100), ($1, 99, $3, 100)`,
				p.ID, ids[ledger.Unissued], ids[ledger.Outstanding])
			return err
		}, "postings_transaction_exists"},
		{"a posting to an account that does not exist", func(ctx context.Context, tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, insertTx, p.ID, uuid.New(), p.Operator, zero); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `
				INSERT INTO postings (programme_id, seq, account_id, amount) VALUES ($1, 2, $2, -100), ($1, 2, 999999999, 100)`,
				p.ID, ids[ledger.Unissued])
			return err
		}, "postings_account_exists"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := balances(t, e.db.Owner, p.ID)
			err := pgx.BeginFunc(ctx, e.db.Owner, func(tx pgx.Tx) error { return tc.sql(ctx, tx) })
			if pgCode(err) != "23503" || pgConstraint(err) != tc.constraint {
				t.Fatalf("got %v, want foreign_key_violation on %s", err, tc.constraint)
			}
			if after := balances(t, e.db.Owner, p.ID); !mapsEqual(before, after) {
				t.Fatalf("balances moved: %v -> %v", before, after)
			}
		})
	}
	verifyOK(t, e, p.ID)
}
