package payouts_test

import (
	"encoding/xml"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/passnum/passnum/internal/payouts"
	"github.com/passnum/passnum/internal/sepa"
)

// pain001 is what the test reads back from a payment file.
type pain001 struct {
	XMLName xml.Name `xml:"Document"`
	NS      string   `xml:"xmlns,attr"`
	Init    struct {
		GrpHdr struct {
			MsgID    string `xml:"MsgId"`
			NbOfTxs  string `xml:"NbOfTxs"`
			CtrlSum  string `xml:"CtrlSum"`
			InitgPty string `xml:"InitgPty>Nm"`
		} `xml:"GrpHdr"`
		PmtInf []struct {
			PmtInfID    string `xml:"PmtInfId"`
			NbOfTxs     string `xml:"NbOfTxs"`
			CtrlSum     string `xml:"CtrlSum"`
			ReqdExctnDt string `xml:"ReqdExctnDt"`
			Dbtr        string `xml:"Dbtr>Nm"`
			DbtrIBAN    string `xml:"DbtrAcct>Id>IBAN"`
			DbtrBIC     string `xml:"DbtrAgt>FinInstnId>BIC"`
			Txs         []struct {
				EndToEndID string `xml:"PmtId>EndToEndId"`
				Amount     struct {
					Ccy   string `xml:"Ccy,attr"`
					Value string `xml:",chardata"`
				} `xml:"Amt>InstdAmt"`
				BIC   string `xml:"CdtrAgt>FinInstnId>BIC"`
				Name  string `xml:"Cdtr>Nm"`
				IBAN  string `xml:"CdtrAcct>Id>IBAN"`
				Ustrd string `xml:"RmtInf>Ustrd"`
			} `xml:"CdtTrfTxInf"`
		} `xml:"PmtInf"`
	} `xml:"CstmrCdtTrfInitn"`
}

// cents reads a decimal amount "123.45" as cents.
func cents(t *testing.T, s string) int64 {
	t.Helper()
	units, frac, ok := strings.Cut(s, ".")
	if !ok || len(frac) != 2 {
		t.Fatalf("amount %q does not have two decimals", s)
	}
	n, err := strconv.ParseInt(units+frac, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestPaymentFile(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	state := w.funder("État")
	p := w.programme("Drôme", 1250, 10, "2026-12-31", share{state, 10000})
	w.fund(p, state, 208000)
	bs := w.order(p, 2)
	w.handOut(p, bs[0])
	w.handOut(p, bs[1])
	names := []string{"Médiathèque Éloïse-Œuvre", "Espace public numérique de Crest", "Café associatif « L'Étincelle »"}
	var sites []uuid.UUID
	want := map[uuid.UUID]int64{}
	n := 0
	for i, name := range names {
		site := w.site(name, i)
		sites = append(sites, site)
		for range i + 1 {
			w.redeem(bs[n/10].codes[n%10], site, "2026-11-10")
			n++
			want[site] += 1250
		}
	}
	w.clock.set("2026-12-01")
	sts := w.create("2026-11-30")

	// Only approved statements are paid.
	_, err := w.svc.ExportPaymentFile(w.ctx, w.operator, nil, date("2026-12-01"))
	wantFault(t, err, "NO_STATEMENTS_TO_PAY")
	_, err = w.svc.ExportPaymentFile(w.ctx, w.operator, []uuid.UUID{sts[sites[0]].ID}, date("2026-12-01"))
	wantFault(t, err, "STATEMENT_NOT_APPROVED")
	_, err = w.svc.ExportPaymentFile(w.ctx, w.operator, []uuid.UUID{uuid.New()}, date("2026-12-01"))
	wantFault(t, err, "STATEMENT_NOT_FOUND")

	for _, site := range sites {
		w.approve(sts[site].ID)
	}
	_, err = w.svc.ExportPaymentFile(w.ctx, w.operator, nil, date("2026-11-30"))
	wantFault(t, err, "EXECUTION_DATE_PASSED")

	file, err := w.svc.ExportPaymentFile(w.ctx, w.operator, nil, date("2026-12-02"))
	if err != nil {
		t.Fatal(err)
	}
	var doc pain001
	if err := xml.Unmarshal(file.XML, &doc); err != nil {
		t.Fatalf("payment file does not parse: %v\n%s", err, file.XML)
	}
	if doc.NS != sepa.Namespace {
		t.Fatalf("namespace %q", doc.NS)
	}
	hdr := doc.Init.GrpHdr
	if hdr.MsgID != file.MessageID || len(hdr.MsgID) > 35 {
		t.Fatalf("message id %q, returned %q", hdr.MsgID, file.MessageID)
	}
	var total int64
	for _, c := range want {
		total += c
	}
	if hdr.NbOfTxs != "3" || cents(t, hdr.CtrlSum) != total || file.Transactions != 3 || file.ControlSumCents != total {
		t.Fatalf("group header: %d transfers for %s, want 3 for %d", file.Transactions, hdr.CtrlSum, total)
	}
	if len(doc.Init.PmtInf) != 1 {
		t.Fatalf("%d payment blocks", len(doc.Init.PmtInf))
	}
	pi := doc.Init.PmtInf[0]
	if pi.NbOfTxs != "3" || cents(t, pi.CtrlSum) != total || pi.ReqdExctnDt != "2026-12-02" {
		t.Fatalf("payment block: %+v", pi)
	}
	if pi.DbtrIBAN != payouts.DevDebtorIBAN || pi.DbtrBIC != payouts.DevDebtorBIC || pi.Dbtr != payouts.DevDebtorName {
		t.Fatalf("debtor: %s %s %s", pi.Dbtr, pi.DbtrIBAN, pi.DbtrBIC)
	}
	if len(pi.Txs) != 3 {
		t.Fatalf("%d transfers", len(pi.Txs))
	}
	siteOf := make(map[string]int, len(sites))
	for i, s := range sites {
		siteOf[sts[s].Number] = i
	}
	var sum int64
	for i, tx := range pi.Txs {
		idx, ok := siteOf[tx.EndToEndID]
		if !ok {
			t.Fatalf("transfer %d pays %q, no such statement", i, tx.EndToEndID)
		}
		site := sites[idx]
		st := sts[site]
		amount := cents(t, tx.Amount.Value)
		sum += amount
		if tx.EndToEndID != st.Number || amount != want[site] || tx.Amount.Ccy != "EUR" ||
			tx.IBAN != testIBANs[idx] || tx.BIC != "CCBPFRPPVER" || !strings.Contains(tx.Ustrd, st.Number) {
			t.Fatalf("transfer %d: %+v, want statement %s of %d cents to %s", i, tx, st.Number, want[site], testIBANs[idx])
		}
		if strings.ContainsAny(tx.Name, "éÉŒœ«»") {
			t.Fatalf("creditor name not in the SEPA character set: %q", tx.Name)
		}
	}
	if sum != total {
		t.Fatalf("transfers sum to %d, control sum %d", sum, total)
	}
	for i := 1; i < len(pi.Txs); i++ {
		if pi.Txs[i].EndToEndID <= pi.Txs[i-1].EndToEndID {
			t.Fatalf("transfers not in statement number order")
		}
	}

	// Recorded on the statements; a second export of "everything" finds nothing new.
	for _, site := range sites {
		if got := w.get(sts[site].ID).PaymentMessageID; got != file.MessageID {
			t.Fatalf("statement of %s: message id %q", site, got)
		}
	}
	_, err = w.svc.ExportPaymentFile(w.ctx, w.operator, nil, date("2026-12-02"))
	wantFault(t, err, "NO_STATEMENTS_TO_PAY")
	var stored []byte
	if err := w.db.App.QueryRow(w.ctx, `SELECT xml FROM payment_files WHERE message_id = $1`, file.MessageID).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if string(stored) != string(file.XML) {
		t.Fatal("stored file differs from the one returned")
	}
	// A lost file can be made again for named statements; the new id replaces the old.
	again, err := w.svc.ExportPaymentFile(w.ctx, w.operator, []uuid.UUID{sts[sites[1]].ID}, date("2026-12-02"))
	if err != nil {
		t.Fatal(err)
	}
	if again.MessageID == file.MessageID || again.Transactions != 1 || again.ControlSumCents != want[sites[1]] {
		t.Fatalf("re-export: %s %d %d", again.MessageID, again.Transactions, again.ControlSumCents)
	}
	if got := w.get(sts[sites[1]].ID).PaymentMessageID; got != again.MessageID {
		t.Fatalf("re-exported statement keeps message id %q", got)
	}
}

func TestDebtorConfig(t *testing.T) {
	w := newWorld(t)
	for name, cfg := range map[string]payouts.Config{
		"bad IBAN": {DebtorIBAN: "FR7630001007941234567890186"},
		"bad BIC":  {DebtorBIC: "BANQUE"},
	} {
		if _, err := payouts.New(w.l, cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	t.Setenv(payouts.EnvDebtorName, "Opérateur")
	t.Setenv(payouts.EnvDebtorIBAN, "FR14 2004 1010 0505 0001 3M02 606")
	t.Setenv(payouts.EnvDebtorBIC, "psstfrppxxx")
	cfg := payouts.ConfigFromEnv()
	if _, err := payouts.New(w.l, cfg); err != nil {
		t.Fatal(fmt.Errorf("config from the environment: %w", err))
	}
}
