package ledger_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/passnum/passnum/ledger"
)

// insertTx writes transaction seq 2 of programme $1 as raw SQL ($2 id, $3 org, $4 both
// hashes); the chain values do not matter to the database.
const insertTx = `
	INSERT INTO transactions (programme_id, seq, id, kind, effective_at, recorded_at, org_id, prev_hash, hash)
	VALUES ($1, 2, $2, 'transfer', now(), now(), $3, $4, $4)`

// accountIDs returns the ids of a programme's accounts by kind.
func accountIDs(t testing.TB, e *env, programme uuid.UUID) map[ledger.AccountKind]int64 {
	t.Helper()
	ids := map[ledger.AccountKind]int64{}
	for _, b := range mustBalances(t, e.db.Owner, programme) {
		ids[b.Account.Kind] = b.ID
	}
	return ids
}

// The database, not only Post, keeps the journal balanced: raw SQL through the owner
// (superuser) connection is refused too.
func TestDatabaseRefusesUnbalancedJournal(t *testing.T) {
	e := newEnv(t)
	p := newProgramme(t, e, 1, 1)
	p.fund(t, e, p.Funders[0], 10_000)
	ctx := context.Background()

	ids := accountIDs(t, e, p.ID)
	// Two accounts without postings yet.
	var fees, payable int64
	if err := e.db.Owner.QueryRow(ctx, `
		INSERT INTO accounts (programme_id, kind, owner_id, normal_side, non_negative)
		VALUES ($1, 'fees', $2, 1, true) RETURNING id`, p.ID, p.Funders[0]).Scan(&fees); err != nil {
		t.Fatal(err)
	}
	if err := e.db.Owner.QueryRow(ctx, `
		INSERT INTO accounts (programme_id, kind, owner_id, normal_side, non_negative)
		VALUES ($1, 'site_payable', $2, 1, false) RETURNING id`, p.ID, p.Sites[0]).Scan(&payable); err != nil {
		t.Fatal(err)
	}

	zero := make([]byte, 32)

	tests := []struct {
		name       string
		sql        func(ctx context.Context, tx pgx.Tx) error
		constraint string
	}{
		{"postings that do not sum to zero", func(ctx context.Context, tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, insertTx, p.ID, uuid.New(), p.Operator, zero); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO postings (programme_id, seq, account_id, amount) VALUES ($1, 2, $2, -100), ($1, 2, $3, 99)`,
				p.ID, ids[ledger.Unissued], fees)
			return err
		}, "postings_balanced"},
		{"a single posting", func(ctx context.Context, tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, insertTx, p.ID, uuid.New(), p.Operator, zero); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO postings (programme_id, seq, account_id, amount) VALUES ($1, 2, $2, 100)`,
				p.ID, fees)
			return err
		}, "postings_balanced"},
		{"balanced postings split over two statements", func(ctx context.Context, tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, insertTx, p.ID, uuid.New(), p.Operator, zero); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `INSERT INTO postings (programme_id, seq, account_id, amount) VALUES ($1, 2, $2, -100)`,
				p.ID, ids[ledger.Unissued]); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO postings (programme_id, seq, account_id, amount) VALUES ($1, 2, $2, 100)`, p.ID, fees)
			return err
		}, "postings_balanced"},
		{"a transaction without postings (caught at commit)", func(ctx context.Context, tx pgx.Tx) error {
			_, err := tx.Exec(ctx, insertTx, p.ID, uuid.New(), p.Operator, zero)
			return err
		}, "transactions_have_postings"},
		{"one posting added to an old transaction", func(ctx context.Context, tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `INSERT INTO postings (programme_id, seq, account_id, amount) VALUES ($1, 1, $2, 100)`,
				p.ID, fees)
			return err
		}, "postings_one_statement"},
		{"a balanced pair added to an old transaction", func(ctx context.Context, tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `
				INSERT INTO postings (programme_id, seq, account_id, amount) VALUES ($1, 1, $2, 100), ($1, 1, $3, -100)`,
				p.ID, fees, payable)
			return err
		}, "postings_one_statement"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := balances(t, e.db.Owner, p.ID)
			err := pgx.BeginFunc(ctx, e.db.Owner, func(tx pgx.Tx) error { return tc.sql(ctx, tx) })
			if pgCode(err) != "23514" || pgConstraint(err) != tc.constraint {
				t.Fatalf("got %v, want check_violation on %s", err, tc.constraint)
			}
			if after := balances(t, e.db.Owner, p.ID); !mapsEqual(before, after) {
				t.Fatalf("balances moved: %v -> %v", before, after)
			}
		})
	}
	verifyOK(t, e, p.ID)
}

// Nothing in the journal can be edited or removed, even by the owner; the application
// role is not even granted the privileges, and cannot choose a balance.
func TestJournalIsAppendOnly(t *testing.T) {
	e := newEnv(t)
	p := newProgramme(t, e, 1, 1)
	p.fund(t, e, p.Funders[0], 10_000)
	ctx := context.Background()
	err := e.l.RunInTx(ctx, "test_remember", func(ctx context.Context, tx pgx.Tx) error {
		return ledger.Remember(ctx, tx, p.Operator, "key-1", "test", make([]byte, 32), []byte(`{}`))
	})
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		app  bool // through the application pool, else the owner
		sql  string
	}{
		{"owner updates a transaction", false, `UPDATE transactions SET metadata = '{"x":"y"}' WHERE programme_id = $1`},
		{"owner deletes a transaction", false, `DELETE FROM transactions WHERE programme_id = $1`},
		{"owner truncates transactions", false, `TRUNCATE transactions CASCADE`},
		{"owner updates a posting", false, `UPDATE postings SET amount = amount * 2 WHERE programme_id = $1`},
		{"owner deletes a posting", false, `DELETE FROM postings WHERE programme_id = $1`},
		{"owner truncates postings", false, `TRUNCATE postings`},
		{"owner truncates accounts", false, `TRUNCATE accounts CASCADE`},
		{"owner changes an account's kind", false, `UPDATE accounts SET kind = 'fees' WHERE programme_id = $1 AND kind = 'unissued'`},
		{"owner deletes an idempotency record", false, `DELETE FROM idempotency_keys WHERE key = 'key-1'`},
		{"owner updates an idempotency record", false, `UPDATE idempotency_keys SET response = '{"x":1}' WHERE key = 'key-1'`},
		{"app updates a transaction", true, `UPDATE transactions SET metadata = '{"x":"y"}' WHERE programme_id = $1`},
		{"app deletes a transaction", true, `DELETE FROM transactions WHERE programme_id = $1`},
		{"app truncates transactions", true, `TRUNCATE transactions`},
		{"app updates a posting", true, `UPDATE postings SET amount = amount * 2 WHERE programme_id = $1`},
		{"app deletes a posting", true, `DELETE FROM postings WHERE programme_id = $1`},
		{"app truncates postings", true, `TRUNCATE postings`},
		{"app writes a balance", true, `UPDATE accounts SET balance = balance + 1 WHERE programme_id = $1`},
		{"app opens an account with a balance", true, `
			INSERT INTO accounts (programme_id, kind, owner_id, normal_side, non_negative, balance)
			VALUES ($1, 'site_paid', gen_random_uuid(), 1, true, 1000000)`},
		{"app deletes an account", true, `DELETE FROM accounts WHERE programme_id = $1`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pool := e.db.Owner
			if tc.app {
				pool = e.db.App
			}
			var args []any
			if strings.Contains(tc.sql, "$1") {
				args = []any{p.ID}
			}
			_, err := pool.Exec(ctx, tc.sql, args...)
			// insufficient_privilege: the application lacks the grant, the owner meets a trigger.
			want := "append-only"
			switch {
			case tc.app:
				want = "permission denied"
			case strings.Contains(tc.sql, "UPDATE accounts"):
				want = "identity columns refused"
			}
			if pgCode(err) != "42501" || !strings.Contains(err.Error(), want) {
				t.Fatalf("got %v, want insufficient_privilege (%s)", err, want)
			}
		})
	}
	verifyOK(t, e, p.ID)
}

// The application role moves chain heads (Post appends) but only forward, onto a written
// transaction with its own hash: it cannot rewind a chain to hide its tail.
func TestChainHeadOnlyMovesForward(t *testing.T) {
	e := newEnv(t)
	p := newProgramme(t, e, 1, 1)
	p.fund(t, e, p.Funders[0], 10_000)
	p.fund(t, e, p.Funders[0], 20_000)
	ctx := context.Background()
	tests := []struct {
		name string
		sql  string
	}{
		{"rewind to the previous transaction", `
			UPDATE ledger_chains c SET last_seq = t.seq, last_hash = t.hash
			  FROM transactions t WHERE t.programme_id = c.programme_id AND t.seq = c.last_seq - 1
			   AND c.programme_id = $1`},
		{"point at a made-up hash", `
			UPDATE ledger_chains SET last_hash = sha256(last_hash) WHERE programme_id = $1`},
		{"jump past the journal", `
			UPDATE ledger_chains SET last_seq = last_seq + 1 WHERE programme_id = $1`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.db.App.Exec(ctx, tc.sql, p.ID)
			if pgCode(err) != "23514" || !strings.Contains(err.Error(), "only move forward") {
				t.Fatalf("got %v, want check_violation ledger_chains_forward", err)
			}
		})
	}
	verifyOK(t, e, p.ID)
}

// Never-negative accounts refuse to go below zero, whoever writes.
func TestNeverNegative(t *testing.T) {
	e := newEnv(t)
	p := newProgramme(t, e, 1, 1)
	p.fund(t, e, p.Funders[0], 10_000)
	before := balances(t, e.db.App, p.ID)
	err := e.l.RunInTx(context.Background(), "test_overdraw", func(ctx context.Context, tx pgx.Tx) error {
		_, err := e.l.Post(ctx, tx, p.entry(ledger.KindIssuance, ledger.Move(p.unissued(), p.outstanding(), 10_001)))
		return err
	})
	if pgCode(err) != "23514" || pgConstraint(err) != "accounts_balance_non_negative" {
		t.Fatalf("overdraw: got %v, want accounts_balance_non_negative", err)
	}
	if after := balances(t, e.db.App, p.ID); !mapsEqual(before, after) {
		t.Fatalf("balances moved: %v -> %v", before, after)
	}
}

func mustBalances(t testing.TB, q ledger.Querier, programme uuid.UUID) []ledger.Balance {
	t.Helper()
	bs, err := ledger.Balances(context.Background(), q, programme)
	if err != nil {
		t.Fatal(err)
	}
	return bs
}

func mapsEqual[K comparable](a, b map[K]int64) bool {
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	for k, v := range b {
		if a[k] != v {
			return false
		}
	}
	return true
}

// Transactions that open new accounts of one programme at the same moment wait for each
// other instead of deadlocking: each new account's foreign key holds a KEY SHARE lock on the
// programme's chain head, which the chain lock must not conflict with. No retry here:
// RunInTx would hide a deadlock.
func TestConcurrentAccountOpening(t *testing.T) {
	e := newEnv(t)
	p := newProgramme(t, e, 1, 1)
	p.fund(t, e, p.Funders[0], 1_000_000)
	ctx := ctxTimeout(t, time.Minute)
	for round := range 10 {
		var (
			wg    sync.WaitGroup
			start = make(chan struct{})
			errs  = make(chan error, 8)
		)
		for range 8 {
			entry := p.entry(ledger.KindTransfer, ledger.Move(p.unissued(), p.ref(ledger.SitePayable, uuid.New()), 10))
			wg.Go(func() {
				<-start
				errs <- pgx.BeginFunc(ctx, e.db.App, func(tx pgx.Tx) error {
					_, err := e.l.Post(ctx, tx, entry)
					return err
				})
			})
		}
		close(start)
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
	}
	verifyOK(t, e, p.ID)
}
