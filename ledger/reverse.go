package ledger

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// ReversalOf builds the entry that exactly undoes transaction id: the same accounts with
// opposite amounts, kind KindReversal, Reverses set. The database allows one reversal per
// original (transactions_one_reversal), so posting it twice fails.
func ReversalOf(ctx context.Context, tx pgx.Tx, id uuid.UUID, org uuid.UUID, metadata map[string]string) (Entry, error) {
	var programme uuid.UUID
	err := tx.QueryRow(ctx, `SELECT programme_id FROM transactions WHERE id = $1`, id).Scan(&programme)
	if errors.Is(err, pgx.ErrNoRows) {
		return Entry{}, fmt.Errorf("reverse %s: no such transaction", id)
	}
	if err != nil {
		return Entry{}, fmt.Errorf("reverse %s: %w", id, err)
	}
	rows, err := tx.Query(ctx, `
		SELECT a.kind, a.owner_id, p.amount
		  FROM transactions t
		  JOIN postings p ON p.programme_id = t.programme_id AND p.seq = t.seq
		  JOIN accounts a ON a.id = p.account_id
		 WHERE t.id = $1
		 ORDER BY p.account_id`, id)
	if err != nil {
		return Entry{}, fmt.Errorf("reverse %s: %w", id, err)
	}
	defer rows.Close()
	e := Entry{Programme: programme, Kind: KindReversal, Org: org, Reverses: id, Metadata: metadata}
	for rows.Next() {
		var (
			kind   string
			owner  uuid.UUID
			amount int64
		)
		if err := rows.Scan(&kind, &owner, &amount); err != nil {
			return Entry{}, fmt.Errorf("reverse %s: %w", id, err)
		}
		e.Postings = append(e.Postings, Posting{
			Account: AccountRef{Programme: programme, Kind: AccountKind(kind), Owner: owner},
			Amount:  -amount,
		})
	}
	if err := rows.Err(); err != nil {
		return Entry{}, fmt.Errorf("reverse %s: %w", id, err)
	}
	return e, nil
}
