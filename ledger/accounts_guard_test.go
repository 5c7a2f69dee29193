package ledger_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/passnum/passnum/ledger"
)

// errRollback ends a pgx.BeginFunc transaction without committing it.
var errRollback = errors.New("rollback")

// An account's identity never changes, even to the same value, and accounts are never
// deleted, even by the owner: the guard fires on any UPDATE naming an identity column, so
// only balance updates (the posting trigger's) skip it.
func TestAccountIdentityRefusedEvenUnchanged(t *testing.T) {
	e := newEnv(t)
	p := newProgramme(t, e, 1, 1)
	p.fund(t, e, p.Funders[0], 10_000)
	ctx := context.Background()
	for _, tc := range []struct{ name, sql string }{
		{"kind to its own value", `UPDATE accounts SET kind = kind WHERE programme_id = $1`},
		{"kind to another", `UPDATE accounts SET kind = 'fees' WHERE programme_id = $1 AND kind = 'unissued'`},
		{"programme to its own value", `UPDATE accounts SET programme_id = programme_id WHERE programme_id = $1`},
		{"owner to its own value", `UPDATE accounts SET owner_id = owner_id WHERE programme_id = $1`},
		{"normal side to its own value", `UPDATE accounts SET normal_side = normal_side WHERE programme_id = $1`},
		{"never-negative rule to its own value", `UPDATE accounts SET non_negative = non_negative WHERE programme_id = $1`},
		{"id to a new one", `UPDATE accounts SET id = DEFAULT WHERE programme_id = $1`},
		{"balance and kind together", `UPDATE accounts SET balance = balance, kind = kind WHERE programme_id = $1`},
		{"kind through an upsert", `
			INSERT INTO accounts (programme_id, kind, owner_id, normal_side, non_negative)
			SELECT programme_id, kind, owner_id, normal_side, non_negative FROM accounts WHERE programme_id = $1
			ON CONFLICT (programme_id, kind, owner_id) DO UPDATE SET kind = excluded.kind`},
		{"delete", `DELETE FROM accounts WHERE programme_id = $1`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := pgx.BeginFunc(ctx, e.db.Owner, func(tx pgx.Tx) error {
				_, err := tx.Exec(ctx, tc.sql, p.ID)
				return err
			})
			if pgCode(err) != "42501" || !strings.Contains(err.Error(), "identity columns refused") {
				t.Fatalf("got %v, want insufficient_privilege (identity columns refused)", err)
			}
		})
	}

	// The owner's balance-only update is not the guard's business (verification reports it):
	// it still goes through, here rolled back.
	err := pgx.BeginFunc(ctx, e.db.Owner, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE accounts SET balance = balance WHERE programme_id = $1`, p.ID)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			t.Error("no account updated")
		}
		return errRollback
	})
	if !errors.Is(err, errRollback) {
		t.Fatalf("balance-only update: %v", err)
	}
	verifyOK(t, e, p.ID)
}

// One posting statement that touches many accounts, some several times and one with a net
// change of zero, moves every balance by its net amount in the normal direction.
func TestPostingStatementMovesManyBalances(t *testing.T) {
	e := newEnv(t)
	p := newProgramme(t, e, 2, 40)
	p.fund(t, e, p.Funders[0], 1_000_000)
	p.fund(t, e, p.Funders[1], 500_000)
	post(t, e, p.entry(ledger.KindIssuance, ledger.Move(p.unissued(), p.outstanding(), 1_200_000)))
	before := balances(t, e.db.App, p.ID)

	var next atomic.Int64
	entries := siteEntries(p, &next, 130) // every site, some twice
	// A site paid then paid back in the same statement: net zero on its account.
	back := p.Sites[7]
	entries = append(entries,
		p.entry(ledger.KindTransfer, ledger.Move(p.outstanding(), p.ref(ledger.SitePayable, back), 333)),
		p.entry(ledger.KindTransfer, ledger.Move(p.ref(ledger.SitePayable, back), p.outstanding(), 333)))
	// And a funder paying in, on the credit-normal cash-in account.
	entries = append(entries, p.funding(p.Funders[1], 7_000, 0))
	post(t, e, entries...)

	want := make(map[ledger.AccountRef]int64, len(before))
	for k, v := range before {
		want[k] = v
	}
	for _, en := range entries {
		for _, ps := range en.Postings {
			side := int64(1)
			if ps.Account.Kind == ledger.FunderCashIn {
				side = -1
			}
			want[ps.Account] += side * ps.Amount
		}
	}
	got := balances(t, e.db.App, p.ID)
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%v: balance %d, want %d", k, got[k], v)
		}
	}
	// The ledger's own checks (not the voucher ones: this programme has value outstanding
	// but no voucher).
	rep, err := e.l.Verify(context.Background(), p.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range rep.Checks {
		switch c.Name {
		case ledger.CheckPostingsSumZero, ledger.CheckBalancesMatchPostings, ledger.CheckHashChain:
			if !c.OK {
				t.Errorf("check %s failed: %s %v", c.Name, c.Detail, c.Figures)
			}
		}
	}
}
