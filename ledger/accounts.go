package ledger

import (
	"context"
	"fmt"
	"sync"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// AccountKind is the type of an account; it fixes the account's normal side and whether its
// balance may go negative (both also enforced by CHECK constraints in migrations/002_ledger.sql).
type AccountKind string

const (
	// FunderCashIn is where value enters a programme: its balance is what a funder paid in.
	FunderCashIn AccountKind = "funder_cash_in"
	// Fees are the operator's fees charged to a funder.
	Fees AccountKind = "fees"
	// Unissued is the programme's paid-in budget not yet put into vouchers.
	Unissued AccountKind = "unissued"
	// Outstanding is the face value of vouchers issued and neither redeemed, expired nor voided.
	Outstanding AccountKind = "outstanding"
	// SitePayable is what a site is owed for redemptions not yet paid (negative: a clawback).
	SitePayable AccountKind = "site_payable"
	// SitePaid is what a site has been paid.
	SitePaid AccountKind = "site_paid"
	// FunderReturned is unused value given back to a funder at close-out.
	FunderReturned AccountKind = "funder_returned"
)

// AccountKinds lists every kind, in a stable order.
var AccountKinds = []AccountKind{FunderCashIn, Fees, Unissued, Outstanding, SitePayable, SitePaid, FunderReturned}

// NormalSide is +1 for debit-normal accounts and -1 for credit-normal ones.
func (k AccountKind) NormalSide() int64 {
	if k == FunderCashIn {
		return -1
	}
	return 1
}

// NonNegative reports whether the balance may never go below zero.
func (k AccountKind) NonNegative() bool { return k != SitePayable }

// Owned reports whether accounts of this kind belong to a funder or a site.
func (k AccountKind) Owned() bool { return k != Unissued && k != Outstanding }

func (k AccountKind) valid() bool {
	for _, v := range AccountKinds {
		if k == v {
			return true
		}
	}
	return false
}

// AccountRef names an account: one kind, in one programme, for one owner (uuid.Nil for the
// programme-wide kinds Unissued and Outstanding).
type AccountRef struct {
	Programme uuid.UUID
	Kind      AccountKind
	Owner     uuid.UUID
}

func (r AccountRef) String() string {
	if r.Owner == uuid.Nil {
		return fmt.Sprintf("%s/%s", r.Programme, r.Kind)
	}
	return fmt.Sprintf("%s/%s/%s", r.Programme, r.Kind, r.Owner)
}

func (r AccountRef) validate() error {
	if r.Programme == uuid.Nil {
		return fmt.Errorf("account %s: no programme", r)
	}
	if !r.Kind.valid() {
		return fmt.Errorf("account %s: unknown kind %q", r, r.Kind)
	}
	if r.Kind.Owned() != (r.Owner != uuid.Nil) {
		return fmt.Errorf("account %s: kind %s owner mismatch", r, r.Kind)
	}
	return nil
}

// accountCache maps refs to ids of accounts known to be committed. Accounts are never
// deleted, so a cached id stays right forever; ids of accounts created by a transaction that
// may still roll back are not cached.
type accountCache struct{ m sync.Map }

func (c *accountCache) get(r AccountRef) (int64, bool) {
	v, ok := c.m.Load(r)
	if !ok {
		return 0, false
	}
	return v.(int64), true
}

// resolveAccounts returns the id of every ref, opening the accounts that do not exist yet.
func (l *Ledger) resolveAccounts(ctx context.Context, tx Execer, refs []AccountRef) (map[AccountRef]int64, error) {
	ids := make(map[AccountRef]int64, len(refs))
	var missing []AccountRef
	for _, r := range refs {
		if _, seen := ids[r]; seen {
			continue
		}
		if id, ok := l.accounts.get(r); ok {
			ids[r] = id
			continue
		}
		ids[r] = 0
		missing = append(missing, r)
	}
	if len(missing) == 0 {
		return ids, nil
	}
	progs, kinds, owners := splitRefs(missing)
	rows, err := tx.Query(ctx, `
		SELECT a.id, a.programme_id, a.kind, a.owner_id
		  FROM accounts a
		  JOIN unnest($1::uuid[], $2::text[], $3::uuid[]) AS r(p, k, o)
		    ON a.programme_id = r.p AND a.kind = r.k AND a.owner_id = r.o`, progs, kinds, owners)
	if err != nil {
		return nil, fmt.Errorf("look up accounts: %w", err)
	}
	found, err := collectAccounts(rows)
	if err != nil {
		return nil, fmt.Errorf("look up accounts: %w", err)
	}
	var create []AccountRef
	for _, r := range missing {
		if id, ok := found[r]; ok {
			ids[r] = id
			l.accounts.m.Store(r, id) // committed before this transaction began
		} else {
			create = append(create, r)
		}
	}
	if len(create) == 0 {
		return ids, nil
	}
	progs, kinds, owners = splitRefs(create)
	sides := make([]int16, len(create))
	nonNeg := make([]bool, len(create))
	for i, r := range create {
		sides[i] = int16(r.Kind.NormalSide())
		nonNeg[i] = r.Kind.NonNegative()
	}
	// ON CONFLICT DO NOTHING then a second look-up: a concurrent transaction may open the
	// same account; its row is then found once that transaction commits.
	if _, err := tx.Exec(ctx, `
		INSERT INTO accounts (programme_id, kind, owner_id, normal_side, non_negative)
		SELECT * FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::smallint[], $5::boolean[])
		ON CONFLICT (programme_id, kind, owner_id) DO NOTHING`, progs, kinds, owners, sides, nonNeg); err != nil {
		return nil, fmt.Errorf("open accounts: %w", err)
	}
	rows, err = tx.Query(ctx, `
		SELECT a.id, a.programme_id, a.kind, a.owner_id
		  FROM accounts a
		  JOIN unnest($1::uuid[], $2::text[], $3::uuid[]) AS r(p, k, o)
		    ON a.programme_id = r.p AND a.kind = r.k AND a.owner_id = r.o`, progs, kinds, owners)
	if err != nil {
		return nil, fmt.Errorf("look up opened accounts: %w", err)
	}
	found, err = collectAccounts(rows)
	if err != nil {
		return nil, fmt.Errorf("look up opened accounts: %w", err)
	}
	for _, r := range create {
		id, ok := found[r]
		if !ok {
			return nil, fmt.Errorf("account %s: not found after opening", r)
		}
		ids[r] = id
	}
	return ids, nil
}

func splitRefs(refs []AccountRef) (progs []uuid.UUID, kinds []string, owners []uuid.UUID) {
	progs = make([]uuid.UUID, len(refs))
	kinds = make([]string, len(refs))
	owners = make([]uuid.UUID, len(refs))
	for i, r := range refs {
		progs[i], kinds[i], owners[i] = r.Programme, string(r.Kind), r.Owner
	}
	return progs, kinds, owners
}

func collectAccounts(rows pgx.Rows) (map[AccountRef]int64, error) {
	defer rows.Close()
	out := make(map[AccountRef]int64)
	for rows.Next() {
		var (
			id   int64
			r    AccountRef
			kind string
		)
		if err := rows.Scan(&id, &r.Programme, &kind, &r.Owner); err != nil {
			return nil, err
		}
		r.Kind = AccountKind(kind)
		out[r] = id
	}
	return out, rows.Err()
}
