package ledger_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/passnum/passnum/ledger"
)

// Rewriting history through the owner (superuser) connection, around the triggers, is
// caught by Verify, naming the check that fails, and by VerifyExport on an export taken
// afterwards, in both formats.
func TestTamperingIsDetected(t *testing.T) {
	tests := []struct {
		name         string
		tamper       func(s *scene) []stmt
		fails        []string // Verify
		exportFails  []string // VerifyExport on an export taken after tampering
		figure       string   // a figure of the first failed check that must be non-zero
		exportFigure string
	}{
		{"a posting amount changed", func(s *scene) []stmt {
			return []stmt{
				{`ALTER TABLE postings DISABLE TRIGGER USER`, nil},
				{`UPDATE postings SET amount = amount + 1 WHERE programme_id = $1 AND seq = 2 AND amount > 0`, []any{s.p.ID}},
				{`ALTER TABLE postings ENABLE TRIGGER USER`, nil},
			}
		}, []string{ledger.CheckPostingsSumZero, ledger.CheckBalancesMatchPostings, ledger.CheckHashChain},
			[]string{ledger.CheckPostingsSumZero, ledger.CheckBalancesMatchPostings, ledger.CheckHashChain},
			"unbalanced_transactions", "unbalanced_transactions"},
		{"an account balance changed", func(s *scene) []stmt {
			return []stmt{{`UPDATE accounts SET balance = balance - 1 WHERE programme_id = $1 AND kind = 'unissued'`, []any{s.p.ID}}}
		}, []string{ledger.CheckBalancesMatchPostings},
			[]string{ledger.CheckBalancesMatchPostings},
			"mismatched_accounts", "mismatched_accounts"},
		{"a transaction's metadata altered", func(s *scene) []stmt {
			return []stmt{
				{`ALTER TABLE transactions DISABLE TRIGGER USER`, nil},
				{`UPDATE transactions SET metadata = '{"reason":"fraud"}' WHERE programme_id = $1 AND seq = 6`, []any{s.p.ID}},
				{`ALTER TABLE transactions ENABLE TRIGGER USER`, nil},
			}
		}, []string{ledger.CheckHashChain}, []string{ledger.CheckHashChain}, "bad_hashes", "bad_hashes"},
		{"a transaction's date moved", func(s *scene) []stmt {
			return []stmt{
				{`ALTER TABLE transactions DISABLE TRIGGER USER`, nil},
				{`UPDATE transactions SET effective_at = effective_at - interval '1 day' WHERE programme_id = $1 AND seq = 8`, []any{s.p.ID}},
				{`ALTER TABLE transactions ENABLE TRIGGER USER`, nil},
			}
		}, []string{ledger.CheckHashChain}, []string{ledger.CheckHashChain}, "bad_hashes", "bad_hashes"},
		{"a payout deleted with its postings and balances", func(s *scene) []stmt {
			return []stmt{
				{`ALTER TABLE postings DISABLE TRIGGER USER`, nil},
				{`ALTER TABLE transactions DISABLE TRIGGER USER`, nil},
				{`UPDATE accounts a SET balance = a.balance - a.normal_side * p.amount
				    FROM postings p WHERE p.account_id = a.id AND p.programme_id = $1 AND p.seq = 8`, []any{s.p.ID}},
				{`DELETE FROM postings WHERE programme_id = $1 AND seq = 8`, []any{s.p.ID}},
				{`DELETE FROM transactions WHERE programme_id = $1 AND seq = 8`, []any{s.p.ID}},
				{`ALTER TABLE postings ENABLE TRIGGER USER`, nil},
				{`ALTER TABLE transactions ENABLE TRIGGER USER`, nil},
			}
		}, []string{ledger.CheckHashChain}, []string{ledger.CheckHashChain}, "bad_heads", "bad_heads"},
		// The application role cannot rewind a head (TestChainHeadOnlyMovesForward); the
		// owner, with the guard trigger off, can, and verification must see it.
		{"the chain head rewound", func(s *scene) []stmt {
			return []stmt{
				{`ALTER TABLE ledger_chains DISABLE TRIGGER USER`, nil},
				{`UPDATE ledger_chains c SET last_seq = t.seq, last_hash = t.hash
				    FROM transactions t WHERE t.programme_id = c.programme_id AND t.seq = c.last_seq - 1
				     AND c.programme_id = $1`, []any{s.p.ID}},
				{`ALTER TABLE ledger_chains ENABLE TRIGGER USER`, nil},
			}
		}, []string{ledger.CheckHashChain}, []string{ledger.CheckHashChain}, "bad_heads", "bad_heads"},
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
			if rep.Check(tc.fails[0]).Figures[tc.figure] == 0 {
				t.Errorf("%s.%s is 0", tc.fails[0], tc.figure)
			}
			for _, format := range []ledger.Format{ledger.FormatJSONL, ledger.FormatCSV} {
				var buf bytes.Buffer
				if err := e.l.Export(context.Background(), &buf, s.p.ID, format); err != nil {
					t.Fatal(err)
				}
				rep, err := ledger.VerifyExport(&buf, format)
				if err != nil {
					t.Fatalf("%s: %v", format, err)
				}
				assertFailed(t, rep, tc.exportFails)
				if rep.Check(tc.exportFails[0]).Figures[tc.exportFigure] == 0 {
					t.Errorf("%s: %s.%s is 0", format, tc.exportFails[0], tc.exportFigure)
				}
			}
		})
	}
}
