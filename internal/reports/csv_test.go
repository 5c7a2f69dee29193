package reports

import (
	"bytes"
	"context"
	"encoding/csv"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
)

// parseHundredths reads "1234,50" or "-0,07" back into hundredths, refusing anything a French
// spreadsheet would not read as a number with two decimals.
func parseHundredths(t *testing.T, s string) int64 {
	t.Helper()
	units, frac, ok := strings.Cut(s, ",")
	if !ok || len(frac) != 2 || strings.ContainsAny(s, ". \u00a0\u202f") {
		t.Fatalf("%q is not a number with a decimal comma", s)
	}
	neg := strings.HasPrefix(units, "-")
	u, err := strconv.ParseInt(strings.TrimPrefix(units, "-"), 10, 64)
	if err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	f, err := strconv.ParseInt(frac, 10, 64)
	if err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	v := u*100 + f
	if neg {
		v = -v
	}
	return v
}

func TestHundredthsAndHours(t *testing.T) {
	for cents, want := range map[int64]string{0: "0,00", 5: "0,05", 123450: "1234,50", -7: "-0,07", -123456: "-1234,56",
		150_000_000_00: "150000000,00"} {
		if got := Hundredths(cents); got != want {
			t.Errorf("Hundredths(%d) = %q, want %q", cents, got, want)
		}
	}
	for minutes, want := range map[int64]string{0: "0,00", 90: "1,50", 20: "0,33", 40: "0,67", 1: "0,02", -90: "-1,50", 600: "10,00"} {
		if got := Hours(minutes); got != want {
			t.Errorf("Hours(%d) = %q, want %q", minutes, got, want)
		}
	}
}

func TestCSV(t *testing.T) {
	w, svc, _ := builtWorld(t, 4)
	ctx := context.Background()
	q := Query{GroupBy: []Dimension{Programme, Funder, Distributor, Month}}
	rep, err := svc.Spend(ctx, Everything, q)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := svc.ExportSpend(ctx, Everything, q, &buf); err != nil {
		t.Fatal(err)
	}
	data := buf.Bytes()
	if !bytes.HasPrefix(data, []byte("\xef\xbb\xbf")) {
		t.Fatalf("no UTF-8 byte order mark: % x", data[:min(8, len(data))])
	}
	if !utf8.Valid(data) {
		t.Fatal("not UTF-8")
	}
	body := data[3:]
	if n, crlf := bytes.Count(body, []byte("\n")), bytes.Count(body, []byte("\r\n")); n != crlf || n == 0 {
		t.Fatalf("%d line ends, %d of them CRLF", n, crlf)
	}
	r := csv.NewReader(bytes.NewReader(body))
	r.Comma = ';'
	records, err := r.ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	wantHeader := []string{"Programme", "Identifiant du programme", "Financeur", "Identifiant du financeur",
		"Aiguilleur", "Identifiant de l'aiguilleur", "Mois",
		"Chéquiers émis", "Chéquiers distribués", "Chéquiers entamés", "Chéquiers distribués au public cible",
		"Part du public cible (%)", "Chèques utilisés", "Heures d'accompagnement", "Montant dû aux lieux (€)",
		"Montant payé aux lieux (€)", "Montant expiré (€)", "Montant restitué (€)", "Part du financeur (€)"}
	if strings.Join(records[0], "|") != strings.Join(wantHeader, "|") {
		t.Fatalf("header\n got %q\nwant %q", records[0], wantHeader)
	}
	if len(records) != len(rep.Rows)+2 {
		t.Fatalf("%d records for %d rows (+ header and total)", len(records), len(rep.Rows))
	}
	names := map[string]string{}
	for _, p := range w.programmes {
		var name string
		if err := w.db.Owner.QueryRow(ctx, `SELECT name FROM programmes WHERE id = $1`, p.id).Scan(&name); err != nil {
			t.Fatal(err)
		}
		names[p.id.String()] = name
	}
	check := func(rec []string, m Measures, what string) {
		t.Helper()
		ints := []int64{m.BooksIssued, m.BooksHandedOut, m.BooksStarted, m.BooksTargetPublic}
		for i, v := range ints {
			if rec[7+i] != strconv.FormatInt(v, 10) {
				t.Errorf("%s: column %q = %q, want %d", what, wantHeader[7+i], rec[7+i], v)
			}
		}
		if got := parseHundredths(t, rec[11]); got != int64(m.TargetPublicShareBps()) {
			t.Errorf("%s: target public share %q, want %d bps", what, rec[11], m.TargetPublicShareBps())
		}
		if rec[12] != strconv.FormatInt(m.VouchersRedeemed, 10) {
			t.Errorf("%s: vouchers %q, want %d", what, rec[12], m.VouchersRedeemed)
		}
		if got := parseHundredths(t, rec[13]); got != (m.MinutesDelivered*100+30)/60 {
			t.Errorf("%s: hours %q for %d minutes", what, rec[13], m.MinutesDelivered)
		}
		for i, v := range []int64{m.OwedCents, m.PaidCents, m.ExpiredCents, m.ReturnedCents, m.FunderShareCents} {
			if got := parseHundredths(t, rec[14+i]); got != v {
				t.Errorf("%s: %q = %q, want %d cents", what, wantHeader[14+i], rec[14+i], v)
			}
		}
	}
	var sawQuoted bool
	for i, row := range rep.Rows {
		rec := records[i+1]
		if rec[1] != row.Programme.String() || rec[3] != row.Funder.String() || rec[6] != row.Month.Format("2006-01") {
			t.Errorf("row %d: dimensions %q for %+v", i, rec[:7], row.Key)
		}
		if rec[0] != names[rec[1]] {
			t.Errorf("row %d: programme name %q, want %q", i, rec[0], names[rec[1]])
		}
		if row.Distributor == uuid.Nil {
			if rec[4] != "Sans objet" || rec[5] != "" {
				t.Errorf("row %d: distributor cells %q for none", i, rec[4:6])
			}
		} else if !strings.HasPrefix(rec[4], "CAF ; agence \"") {
			t.Errorf("row %d: distributor name %q", i, rec[4])
		} else {
			sawQuoted = true
		}
		check(rec, row.Measures, "row "+strconv.Itoa(i))
	}
	if !sawQuoted || !bytes.Contains(body, []byte(`"CAF ; agence ""`)) {
		t.Error("a name with ';' and '\"' was not written quoted")
	}
	total := records[len(records)-1]
	if total[0] != "Total" || strings.Join(total[1:7], "") != "" {
		t.Errorf("total row starts %q", total[:7])
	}
	check(total, rep.Total, "total")

	// Ungrouped: measures only, one row, no total line; no funder column without funders.
	buf.Reset()
	if err := svc.ExportSpend(ctx, Everything, Query{Filter: Filter{From: time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC)}}, &buf); err != nil {
		t.Fatal(err)
	}
	r = csv.NewReader(bytes.NewReader(buf.Bytes()[3:]))
	r.Comma = ';'
	records, err = r.ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(records) != 2 || len(records[0]) != len(measureHeaders) || records[0][0] != "Chéquiers émis" {
		t.Errorf("ungrouped CSV: %q", records)
	}
}
