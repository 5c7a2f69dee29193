package ledger

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Querier is what balance reads need: a pool, a connection or a transaction.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Balance is one account's balance in its normal direction.
type Balance struct {
	Account AccountRef
	ID      int64
	Cents   int64
}

// Balances returns the current balance of every account of a programme, read from the stored
// balances: O(1) per account, whatever the number of postings.
func Balances(ctx context.Context, q Querier, programme uuid.UUID) ([]Balance, error) {
	rows, err := q.Query(ctx, `
		SELECT id, kind, owner_id, balance FROM accounts WHERE programme_id = $1 ORDER BY kind, owner_id`, programme)
	if err != nil {
		return nil, fmt.Errorf("balances of %s: %w", programme, err)
	}
	return collectBalances(rows, programme)
}

// BalancesAt returns every account's balance of a programme as of an instant, summed from
// the postings recorded up to it (an index-only scan per account over postings_account_seq).
// The last seq recorded by then is found walking the primary key backwards: recorded_at
// follows seq within a programme, and recent instants are the common question.
func BalancesAt(ctx context.Context, q Querier, programme uuid.UUID, at time.Time) ([]Balance, error) {
	rows, err := q.Query(ctx, `
		WITH upto AS (
		    SELECT coalesce((SELECT seq FROM transactions
		                      WHERE programme_id = $1 AND recorded_at <= $2
		                      ORDER BY seq DESC LIMIT 1), 0) AS seq)
		SELECT a.id, a.kind, a.owner_id,
		       a.normal_side * coalesce((SELECT sum(p.amount) FROM postings p, upto
		                                  WHERE p.account_id = a.id AND p.seq <= upto.seq), 0)
		  FROM accounts a
		 WHERE a.programme_id = $1
		 ORDER BY a.kind, a.owner_id`, programme, at)
	if err != nil {
		return nil, fmt.Errorf("balances of %s at %s: %w", programme, at, err)
	}
	return collectBalances(rows, programme)
}

// BalanceOf returns one account's current balance (0 if the account was never opened).
func BalanceOf(ctx context.Context, q Querier, ref AccountRef) (int64, error) {
	var cents int64
	err := q.QueryRow(ctx, `
		SELECT coalesce((SELECT balance FROM accounts WHERE programme_id = $1 AND kind = $2 AND owner_id = $3), 0)`,
		ref.Programme, string(ref.Kind), ref.Owner).Scan(&cents)
	if err != nil {
		return 0, fmt.Errorf("balance of %s: %w", ref, err)
	}
	return cents, nil
}

func collectBalances(rows pgx.Rows, programme uuid.UUID) ([]Balance, error) {
	defer rows.Close()
	var out []Balance
	for rows.Next() {
		b := Balance{Account: AccountRef{Programme: programme}}
		var kind string
		if err := rows.Scan(&b.ID, &kind, &b.Account.Owner, &b.Cents); err != nil {
			return nil, fmt.Errorf("balances of %s: %w", programme, err)
		}
		b.Account.Kind = AccountKind(kind)
		out = append(out, b)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("balances of %s: %w", programme, err)
	}
	return out, nil
}

// Totals sums balances by kind.
func Totals(bs []Balance) map[AccountKind]int64 {
	t := make(map[AccountKind]int64, len(AccountKinds))
	for _, b := range bs {
		t[b.Account.Kind] += b.Cents
	}
	return t
}
