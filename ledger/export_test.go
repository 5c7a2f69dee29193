package ledger_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/passnum/passnum/ledger"
)

var formats = []ledger.Format{ledger.FormatJSONL, ledger.FormatCSV}

func export(t testing.TB, e *env, programme uuid.UUID, format ledger.Format) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := e.l.Export(context.Background(), &buf, programme, format); err != nil {
		t.Fatalf("export %s: %v", format, err)
	}
	return buf.Bytes()
}

func verifyExportOK(t testing.TB, data []byte, format ledger.Format) *ledger.Report {
	t.Helper()
	rep, err := ledger.VerifyExport(bytes.NewReader(data), format)
	if err != nil {
		t.Fatalf("verify %s export: %v", format, err)
	}
	assertFailed(t, rep, nil)
	return rep
}

// An export of a clean ledger verifies offline, in both formats, for one programme and for
// everything, with the same figures as the database's own verification.
func TestExportRoundTrip(t *testing.T) {
	e := newEnv(t)
	s := buildScene(t, e)
	other := newProgramme(t, e, 1, 1)
	post(t, e, other.funding(other.Funders[0], 50_000, 500))
	empty := newProgramme(t, e, 1, 1) // a chain without transactions

	for _, format := range formats {
		t.Run(string(format), func(t *testing.T) {
			for _, tc := range []struct {
				programme        uuid.UUID
				txs, posts, accs int64
				chains           int64
			}{
				{s.p.ID, 8, 17, 8, 1},
				{other.ID, 1, 3, 3, 1},
				{empty.ID, 0, 0, 0, 1},
				{uuid.Nil, 9, 20, 11, 3},
			} {
				data := export(t, e, tc.programme, format)
				rep := verifyExportOK(t, data, format)
				if rep.Transactions != tc.txs || rep.Postings != tc.posts ||
					rep.Check(ledger.CheckBalancesMatchPostings).Figures["accounts"] != tc.accs ||
					rep.Check(ledger.CheckHashChain).Figures["chains"] != tc.chains {
					t.Errorf("programme %s: %d transactions, %d postings, %v, %v; want %d, %d, %d accounts, %d chains",
						tc.programme, rep.Transactions, rep.Postings,
						rep.Check(ledger.CheckBalancesMatchPostings).Figures, rep.Check(ledger.CheckHashChain).Figures,
						tc.txs, tc.posts, tc.accs, tc.chains)
				}
			}
		})
	}
}

// The JSON lines export is one record per line with the documented fields; the CSV export
// has the documented header and one row per posting.
func TestExportShape(t *testing.T) {
	e := newEnv(t)
	p := newProgramme(t, e, 1, 1)
	post(t, e, p.funding(p.Funders[0], 10_000, 100))

	lines := strings.Split(strings.TrimSuffix(string(export(t, e, p.ID, ledger.FormatJSONL)), "\n"), "\n")
	var types []string
	for _, l := range lines {
		var rec map[string]any
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("%q: %v", l, err)
		}
		types = append(types, rec["type"].(string))
	}
	if got := strings.Join(types, ","); got != "chain,account,account,account,transaction" {
		t.Fatalf("record types %s", got)
	}
	var tx struct {
		Programme, ID, Kind, Org, Metadata string
		PrevHash                           string `json:"prev_hash"`
		Hash                               string
		Seq                                int64
		Postings                           []struct {
			Account     int64
			Kind, Owner string
			Amount      int64
		}
	}
	if err := json.Unmarshal([]byte(lines[4]), &tx); err != nil {
		t.Fatal(err)
	}
	if tx.Programme != p.ID.String() || tx.Seq != 1 || tx.Kind != "funding" || tx.Org != p.Operator.String() ||
		tx.Metadata != "{}" || tx.PrevHash != strings.Repeat("0", 64) || len(tx.Hash) != 64 || len(tx.Postings) != 3 {
		t.Errorf("transaction record %s", lines[4])
	}
	var sum int64
	for _, ps := range tx.Postings {
		sum += ps.Amount
		if ps.Kind == "" || ps.Owner == "" {
			t.Errorf("posting without account identity: %+v", ps)
		}
	}
	if sum != 0 {
		t.Errorf("postings sum to %d", sum)
	}

	rows, err := csv.NewReader(bytes.NewReader(export(t, e, p.ID, ledger.FormatCSV))).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(rows[0], ","); !strings.HasPrefix(got, "record_type,programme_id,seq,tx_id,") ||
		!strings.HasSuffix(got, ",account_id,account_kind,account_owner,normal_side,balance,amount") {
		t.Errorf("CSV header %s", got)
	}
	var kinds []string
	for _, r := range rows[1:] {
		kinds = append(kinds, r[0])
	}
	if got := strings.Join(kinds, ","); got != "chain,account,account,account,posting,posting,posting" {
		t.Errorf("CSV record types %s", got)
	}
}

// Editing an exported file, even by one character, is caught offline.
func TestVerifyExportCatchesEditedFile(t *testing.T) {
	e := newEnv(t)
	s := buildScene(t, e)
	pid := s.p.ID.String()

	// Lines of transaction seq n, in each format.
	txLine := map[ledger.Format]func(n int) func(string) bool{
		ledger.FormatJSONL: func(n int) func(string) bool {
			return func(l string) bool {
				return strings.HasPrefix(l, `{"type":"transaction"`) && strings.Contains(l, fmt.Sprintf(`"seq":%d,`, n))
			}
		},
		ledger.FormatCSV: func(n int) func(string) bool {
			return func(l string) bool { return strings.HasPrefix(l, fmt.Sprintf("posting,%s,%d,", pid, n)) }
		},
	}
	sitePaid := func(l string) bool {
		return strings.Contains(l, "site_paid") && (strings.HasPrefix(l, `{"type":"account"`) || strings.HasPrefix(l, "account,"))
	}
	tests := []struct {
		name  string
		edit  func(format ledger.Format, data []byte) []byte
		fails []string
	}{
		{"a posting amount", func(f ledger.Format, data []byte) []byte {
			// The payout's credit to the paid account: 1000 becomes 1001.
			old, new := `"amount":1000}`, `"amount":1001}`
			if f == ledger.FormatCSV {
				old, new = ",1000\n", ",1001\n"
			}
			return editFirst(t, data, txLine[f](8), old, new)
		}, []string{ledger.CheckPostingsSumZero, ledger.CheckBalancesMatchPostings, ledger.CheckHashChain}},
		{"an account balance", func(f ledger.Format, data []byte) []byte {
			old, new := `"balance":1000}`, `"balance":1001}`
			if f == ledger.FormatCSV {
				old, new = ",1000,\n", ",1001,\n"
			}
			return editFirst(t, data, sitePaid, old, new)
		}, []string{ledger.CheckBalancesMatchPostings}},
		{"a hash", func(f ledger.Format, data []byte) []byte {
			return flipHashDigit(t, data, f, txLine[f](5))
		}, []string{ledger.CheckHashChain}},
		{"metadata", func(f ledger.Format, data []byte) []byte {
			return editFirst(t, data, txLine[f](6), "error", "errOr")
		}, []string{ledger.CheckHashChain}},
		{"a transaction kind", func(f ledger.Format, data []byte) []byte {
			return editFirst(t, data, txLine[f](8), "payout", "return")
		}, []string{ledger.CheckHashChain}},
		{"the last transaction removed", func(f ledger.Format, data []byte) []byte {
			return removeLines(data, txLine[f](8))
		}, []string{ledger.CheckBalancesMatchPostings, ledger.CheckHashChain}},
		{"a transaction removed from the middle", func(f ledger.Format, data []byte) []byte {
			return removeLines(data, txLine[f](3))
		}, []string{ledger.CheckBalancesMatchPostings, ledger.CheckHashChain}},
	}
	for _, format := range formats {
		data := export(t, e, s.p.ID, format)
		verifyExportOK(t, data, format)
		for _, tc := range tests {
			t.Run(string(format)+"/"+tc.name, func(t *testing.T) {
				edited := tc.edit(format, bytes.Clone(data))
				if bytes.Equal(edited, data) {
					t.Fatal("the edit changed nothing")
				}
				rep, err := ledger.VerifyExport(bytes.NewReader(edited), format)
				if err != nil {
					t.Fatal(err)
				}
				assertFailed(t, rep, tc.fails)
			})
		}
	}

	// A file that is no longer an export is an error that names the line.
	for _, format := range formats {
		data := export(t, e, s.p.ID, format)
		broken := editFirst(t, data, txLine[format](2), `,`, `;`)
		if _, err := ledger.VerifyExport(bytes.NewReader(broken), format); err == nil || !strings.Contains(err.Error(), "line ") {
			t.Errorf("%s: broken record gave %v, want an error naming the line", format, err)
		}
	}
}

// editFirst replaces the first occurrence of old with new in the first line that matches.
func editFirst(t testing.TB, data []byte, match func(string) bool, old, new string) []byte {
	t.Helper()
	lines := strings.SplitAfter(string(data), "\n")
	for i, l := range lines {
		if match(l) && strings.Contains(l, old) {
			lines[i] = strings.Replace(l, old, new, 1)
			return []byte(strings.Join(lines, ""))
		}
	}
	t.Fatalf("no line with %q", old)
	return nil
}

// removeLines drops every matching line.
func removeLines(data []byte, match func(string) bool) []byte {
	var out []string
	for _, l := range strings.SplitAfter(string(data), "\n") {
		if !match(l) {
			out = append(out, l)
		}
	}
	return []byte(strings.Join(out, ""))
}

// flipHashDigit changes the first hex digit of the "hash" field of the first matching line.
func flipHashDigit(t testing.TB, data []byte, f ledger.Format, match func(string) bool) []byte {
	t.Helper()
	lines := strings.SplitAfter(string(data), "\n")
	for i, l := range lines {
		if !match(l) {
			continue
		}
		at := strings.Index(l, `"hash":"`) + len(`"hash":"`)
		if f == ledger.FormatCSV {
			// Columns before hash hold no comma in this line (metadata "{}").
			fields := strings.Split(l, ",")
			at = len(strings.Join(fields[:13], ",")) + 1
		}
		b := []byte(l)
		if b[at] == '0' {
			b[at] = '1'
		} else {
			b[at] = '0'
		}
		lines[i] = string(b)
		return []byte(strings.Join(lines, ""))
	}
	t.Fatal("no matching line")
	return nil
}
