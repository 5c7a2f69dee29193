package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/passnum/passnum/internal/testdb"
	"github.com/passnum/passnum/ledger"
)

// TestMain gives the tests that need one a PostgreSQL server (internal/testdb).
func TestMain(m *testing.M) { os.Exit(testdb.Main(m)) }

// fundedLedger is a database with one programme whose funder paid in 10 000 cents.
func fundedLedger(t *testing.T) (*testdb.DB, *ledger.Ledger, uuid.UUID) {
	t.Helper()
	db := testdb.New(t)
	l := ledger.New(db.App, nil)
	programme := uuid.New()
	err := l.RunInTx(context.Background(), "test", func(ctx context.Context, tx pgx.Tx) error {
		if err := ledger.OpenChain(ctx, tx, programme); err != nil {
			return err
		}
		_, err := l.Post(ctx, tx, ledger.Entry{Programme: programme, Kind: ledger.KindFunding, Org: uuid.New(),
			Postings: ledger.Move(ledger.AccountRef{Programme: programme, Kind: ledger.FunderCashIn, Owner: uuid.New()},
				ledger.AccountRef{Programme: programme, Kind: ledger.Unissued}, 10_000)})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return db, l, programme
}

func TestVerifyCommand(t *testing.T) {
	db, _, programme := fundedLedger(t)
	for _, args := range [][]string{
		{"verify", "--database-url", db.URL},
		{"verify", "--database-url", db.URL, "--programme", programme.String()},
	} {
		var out bytes.Buffer
		if err := dispatch(args, &out); err != nil {
			t.Fatalf("%q: %v\n%s", args, err, out.String())
		}
		for _, want := range []string{"OK     postings_sum_zero", "OK     hash_chain", "sum_cents=0", "Registre vérifié"} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("%q: output lacks %q:\n%s", args, want, out.String())
			}
		}
	}

	if _, err := db.Owner.Exec(context.Background(), `UPDATE accounts SET balance = balance + 1 WHERE kind = 'unissued'`); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	err := dispatch([]string{"verify", "--database-url", db.URL, "--programme", programme.String()}, &out)
	if !errors.Is(err, errNotVerified) {
		t.Fatalf("tampered ledger: %v", err)
	}
	for _, want := range []string{"ÉCHEC  balances_match_postings", "mismatched_accounts=1", "Registre NON vérifié : 1 contrôle(s)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

func TestVerifyExportCommand(t *testing.T) {
	_, l, programme := fundedLedger(t)
	dir := t.TempDir()
	for _, tc := range []struct {
		file   string
		format ledger.Format
		flags  []string
	}{
		{"journal.jsonl", ledger.FormatJSONL, nil},
		{"journal.csv", ledger.FormatCSV, nil},                         // format from the extension
		{"journal.txt", ledger.FormatCSV, []string{"--format", "csv"}}, // format from the flag
	} {
		t.Run(tc.file, func(t *testing.T) {
			var buf bytes.Buffer
			if err := l.Export(context.Background(), &buf, programme, tc.format); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, tc.file)
			if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
				t.Fatal(err)
			}
			args := append(append([]string{"verify-export"}, tc.flags...), path)
			var out bytes.Buffer
			if err := dispatch(args, &out); err != nil || !strings.Contains(out.String(), "Registre vérifié") {
				t.Fatalf("%q: %v\n%s", args, err, out.String())
			}

			// One cent more on the funding's unissued posting.
			old, new := `"amount":10000}`, `"amount":10001}`
			if tc.format == ledger.FormatCSV {
				old, new = ",10000\n", ",10001\n"
			}
			edited := bytes.Replace(buf.Bytes(), []byte(old), []byte(new), 1)
			if bytes.Equal(edited, buf.Bytes()) {
				t.Fatal("the edit changed nothing")
			}
			if err := os.WriteFile(path, edited, 0o600); err != nil {
				t.Fatal(err)
			}
			out.Reset()
			if err := dispatch(args, &out); !errors.Is(err, errNotVerified) || !strings.Contains(out.String(), "ÉCHEC") {
				t.Fatalf("edited export: %v\n%s", err, out.String())
			}
		})
	}
}

func TestVerifyCommandsRefuseBadInput(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"verify", "--database-url", ""}, "DATABASE_URL"},
		{[]string{"verify", "--database-url", "postgres://x/y", "--programme", "P1"}, "--programme"},
		{[]string{"verify", "--database-url", "postgres://x/y", "stray"}, "unexpected arguments"},
		{[]string{"verify-export"}, "exactly one FILE"},
		{[]string{"verify-export", "a.jsonl", "b.jsonl"}, "exactly one FILE"},
		{[]string{"verify-export", "--format", "xml", "a.jsonl"}, "unknown export format"},
		{[]string{"verify-export", filepath.Join(t.TempDir(), "missing.jsonl")}, "no such file"},
	} {
		err := dispatch(c.args, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: %v, want an error mentioning %q", c.args, err, c.want)
		}
	}
}
