package sepa

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/passnum/passnum/internal/fault"
	"github.com/passnum/passnum/internal/ident"
)

// The read model is written independently of the writer's types, from the pain.001.001.03
// schema, so that a mistake in one is not repeated in the other.
type readDoc struct {
	XMLName xml.Name
	GrpHdr  struct {
		MsgId    string
		CreDtTm  string
		NbOfTxs  string
		CtrlSum  string
		InitgPty struct{ Nm string }
	} `xml:"CstmrCdtTrfInitn>GrpHdr"`
	PmtInf []struct {
		PmtInfId    string
		PmtMtd      string
		BtchBookg   string
		NbOfTxs     string
		CtrlSum     string
		SvcLvl      string `xml:"PmtTpInf>SvcLvl>Cd"`
		ReqdExctnDt string
		DbtrNm      string `xml:"Dbtr>Nm"`
		DbtrIBAN    string `xml:"DbtrAcct>Id>IBAN"`
		DbtrBIC     string `xml:"DbtrAgt>FinInstnId>BIC"`
		ChrgBr      string
		Tx          []struct {
			EndToEndId string `xml:"PmtId>EndToEndId"`
			Amt        struct {
				Ccy   string `xml:"Ccy,attr"`
				Value string `xml:",chardata"`
			} `xml:"Amt>InstdAmt"`
			CdtrBIC  string  `xml:"CdtrAgt>FinInstnId>BIC"`
			CdtrNm   string  `xml:"Cdtr>Nm"`
			CdtrIBAN string  `xml:"CdtrAcct>Id>IBAN"`
			Ustrd    *string `xml:"RmtInf>Ustrd"`
		} `xml:"CdtTrfTxInf"`
	} `xml:"CstmrCdtTrfInitn>PmtInf"`
}

var paris = func() *time.Location {
	loc, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		return time.FixedZone("CET", 3600)
	}
	return loc
}()

func validPayment() Payment {
	return Payment{
		MessageID:     "PN-PAY-2025-03-0001",
		CreatedAt:     time.Date(2025, 3, 31, 17, 45, 12, 999_000_000, paris),
		ExecutionDate: time.Date(2025, 4, 2, 0, 0, 0, 0, paris),
		Debtor: Party{
			Name: "Opérateur du Pass numérique – compte de cantonnement",
			IBAN: "FR76 3000 6000 0112 3456 7890 189",
			BIC:  "agrifrpp882",
		},
		Credits: []Credit{
			{
				Creditor:    Party{Name: "Médiathèque de l’Île-Saint-Denis", IBAN: "FR1420041010050500013M02606", BIC: "PSSTFRPPPAR"},
				AmountCents: 1,
				EndToEndID:  "STMT-0001",
				Remittance:  "Relevé n° 2025-03 – Pass numérique « démarches en ligne »",
			},
			{
				Creditor:    Party{Name: "Emmaüs Connect & Cœur de Ville", IBAN: "FR7630001007941234567890185", BIC: "BDFEFRPPCCT"},
				AmountCents: 100_000,
				EndToEndID:  "STMT-0002",
			},
			{
				Creditor:    Party{Name: "Espace numérique de Saint-Pierre", IBAN: "RE3612345678900123456789A58", BIC: "CEPAFRPP751"},
				AmountCents: MaxAmountCents,
				EndToEndID:  "STMT-0003",
				Remittance:  "Relevé mars 2025",
			},
		},
	}
}

func write(t *testing.T, p Payment) (readDoc, string) {
	t.Helper()
	var buf bytes.Buffer
	if err := Write(&buf, p); err != nil {
		t.Fatalf("Write: %v", err)
	}
	var doc readDoc
	if err := xml.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatalf("output does not parse: %v\n%s", err, buf.String())
	}
	return doc, buf.String()
}

// cents parses an amount written with exactly two decimals, in integers.
func cents(t *testing.T, s string) int64 {
	t.Helper()
	units, frac, ok := strings.Cut(s, ".")
	if !ok || len(frac) != 2 {
		t.Fatalf("amount %q does not have exactly two decimals", s)
	}
	u, err1 := strconv.ParseInt(units, 10, 64)
	f, err2 := strconv.ParseInt(frac, 10, 64)
	if err1 != nil || err2 != nil || u < 0 {
		t.Fatalf("amount %q is not a decimal number", s)
	}
	return u*100 + f
}

func TestWrite(t *testing.T) {
	p := validPayment()
	doc, raw := write(t, p)

	if !strings.HasPrefix(raw, `<?xml version="1.0" encoding="UTF-8"?>`) {
		t.Errorf("missing XML declaration: %.60s", raw)
	}
	if doc.XMLName.Space != Namespace || doc.XMLName.Local != "Document" {
		t.Errorf("root = %v, want {%s}Document", doc.XMLName, Namespace)
	}
	if Namespace != "urn:iso:std:iso:20022:tech:xsd:pain.001.001.03" {
		t.Errorf("Namespace = %s", Namespace)
	}
	g := doc.GrpHdr
	if g.MsgId != p.MessageID || g.CreDtTm != "2025-03-31T17:45:12" || g.NbOfTxs != "3" ||
		g.CtrlSum != "1000001000.00" || g.InitgPty.Nm != "Operateur du Pass numerique - compte de cantonnement" {
		t.Errorf("group header = %+v", g)
	}
	if len(doc.PmtInf) != 1 {
		t.Fatalf("%d PmtInf blocks, want 1", len(doc.PmtInf))
	}
	pi := doc.PmtInf[0]
	if pi.PmtInfId != p.MessageID || pi.PmtMtd != "TRF" || pi.BtchBookg != "false" || pi.NbOfTxs != "3" ||
		pi.CtrlSum != g.CtrlSum || pi.SvcLvl != "SEPA" || pi.ReqdExctnDt != "2025-04-02" || pi.ChrgBr != "SLEV" {
		t.Errorf("payment information = %+v", pi)
	}
	if pi.DbtrNm != g.InitgPty.Nm || pi.DbtrIBAN != "FR7630006000011234567890189" || pi.DbtrBIC != "AGRIFRPP882" {
		t.Errorf("debtor = %q %q %q", pi.DbtrNm, pi.DbtrIBAN, pi.DbtrBIC)
	}
	if len(pi.Tx) != 3 {
		t.Fatalf("%d transactions, want 3", len(pi.Tx))
	}
	want := []struct {
		id, amount, name, iban, bic string
		ustrd                       *string
	}{
		{"STMT-0001", "0.01", "Mediatheque de l'Ile-Saint-Denis", "FR1420041010050500013M02606", "PSSTFRPPPAR",
			ptr("Releve no 2025-03 - Pass numerique demarches en ligne")},
		{"STMT-0002", "1000.00", "Emmaus Connect + Coeur de Ville", "FR7630001007941234567890185", "BDFEFRPPCCT", nil},
		{"STMT-0003", "999999999.99", "Espace numerique de Saint-Pierre", "RE3612345678900123456789A58", "CEPAFRPP751",
			ptr("Releve mars 2025")},
	}
	var sum int64
	for i, tx := range pi.Tx {
		w := want[i]
		if tx.EndToEndId != w.id || tx.Amt.Value != w.amount || tx.Amt.Ccy != "EUR" || tx.CdtrNm != w.name ||
			tx.CdtrIBAN != w.iban || tx.CdtrBIC != w.bic {
			t.Errorf("transaction %d = %+v, want %+v", i, tx, w)
		}
		if (tx.Ustrd == nil) != (w.ustrd == nil) || tx.Ustrd != nil && *tx.Ustrd != *w.ustrd {
			t.Errorf("transaction %d remittance = %v, want %v", i, deref(tx.Ustrd), deref(w.ustrd))
		}
		sum += cents(t, tx.Amt.Value)
	}
	if got := cents(t, g.CtrlSum); got != sum || got != 1+100_000+MaxAmountCents {
		t.Errorf("CtrlSum %s = %d cents, transactions sum to %d", g.CtrlSum, got, sum)
	}
}

func ptr(s string) *string { return &s }

func deref(s *string) string {
	if s == nil {
		return "<none>"
	}
	return *s
}

// TestElementOrder walks the raw token stream: encoding/xml ignores order when reading, but the
// schema's sequences do not.
func TestElementOrder(t *testing.T) {
	_, raw := write(t, validPayment())
	type frame struct {
		name     string
		children []string
	}
	seen := map[string][]string{} // element name → children of each instance, space-separated
	var stack []*frame
	dec := xml.NewDecoder(strings.NewReader(raw))
	for {
		tok, err := dec.Token()
		if err != nil {
			break
		}
		switch e := tok.(type) {
		case xml.StartElement:
			if len(stack) > 0 {
				top := stack[len(stack)-1]
				top.children = append(top.children, e.Name.Local)
			}
			stack = append(stack, &frame{name: e.Name.Local})
		case xml.EndElement:
			top := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			seen[top.name] = append(seen[top.name], strings.Join(top.children, " "))
		}
	}
	want := map[string][]string{
		"Document":         {"CstmrCdtTrfInitn"},
		"CstmrCdtTrfInitn": {"GrpHdr PmtInf"},
		"GrpHdr":           {"MsgId CreDtTm NbOfTxs CtrlSum InitgPty"},
		"PmtInf": {"PmtInfId PmtMtd BtchBookg NbOfTxs CtrlSum PmtTpInf ReqdExctnDt Dbtr DbtrAcct DbtrAgt " +
			"ChrgBr CdtTrfTxInf CdtTrfTxInf CdtTrfTxInf"},
		"PmtTpInf": {"SvcLvl"},
		"CdtTrfTxInf": {
			"PmtId Amt CdtrAgt Cdtr CdtrAcct RmtInf",
			"PmtId Amt CdtrAgt Cdtr CdtrAcct",
			"PmtId Amt CdtrAgt Cdtr CdtrAcct RmtInf",
		},
		"DbtrAcct": {"Id"},
		"DbtrAgt":  {"FinInstnId"},
	}
	for name, w := range want {
		if got := seen[name]; strings.Join(got, " | ") != strings.Join(w, " | ") {
			t.Errorf("children of %s = %q, want %q", name, got, w)
		}
	}
}

func TestBatchBooking(t *testing.T) {
	p := validPayment()
	p.BatchBooking = true
	doc, _ := write(t, p)
	if doc.PmtInf[0].BtchBookg != "true" {
		t.Errorf("BtchBookg = %q, want true", doc.PmtInf[0].BtchBookg)
	}
}

// TestControlSum writes many random amounts and checks both control sums against an integer sum
// of the amounts read back.
func TestControlSum(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	p := validPayment()
	p.Credits = nil
	var want int64
	for i := range 2000 {
		var a int64
		switch i % 4 {
		case 0:
			a = 1 + rng.Int64N(99)
		case 1:
			a = 1 + rng.Int64N(100_000)
		case 2:
			a = MaxAmountCents - rng.Int64N(1000)
		default:
			a = 100 * (1 + rng.Int64N(1000))
		}
		want += a
		p.Credits = append(p.Credits, Credit{
			Creditor:    Party{Name: fmt.Sprintf("Site %d", i), IBAN: "FR7630006000011234567890189", BIC: "BNPAFRPP"},
			AmountCents: a,
			EndToEndID:  fmt.Sprintf("E2E-%06d", i),
		})
	}
	doc, _ := write(t, p)
	var got int64
	for _, tx := range doc.PmtInf[0].Tx {
		got += cents(t, tx.Amt.Value)
	}
	if got != want || cents(t, doc.GrpHdr.CtrlSum) != want || cents(t, doc.PmtInf[0].CtrlSum) != want {
		t.Errorf("sums: transactions %d, GrpHdr %s, PmtInf %s; want %d", got, doc.GrpHdr.CtrlSum,
			doc.PmtInf[0].CtrlSum, want)
	}
	if doc.GrpHdr.NbOfTxs != "2000" || doc.PmtInf[0].NbOfTxs != "2000" {
		t.Errorf("NbOfTxs = %s, %s", doc.GrpHdr.NbOfTxs, doc.PmtInf[0].NbOfTxs)
	}
}

func TestRejects(t *testing.T) {
	long := strings.Repeat("x", 36)
	for _, tc := range []struct {
		name   string
		change func(*Payment)
		reason string
		index  string // expected credit_index metadata, "" when the fault is not about a credit
		field  string
	}{
		{"no credits", func(p *Payment) { p.Credits = nil }, ReasonNoCredits, "", "credits"},
		{"empty message id", func(p *Payment) { p.MessageID = "" }, ReasonMessageID, "", "message_id"},
		{"long message id", func(p *Payment) { p.MessageID = long }, ReasonMessageID, "", "message_id"},
		{"accented message id", func(p *Payment) { p.MessageID = "PAIEMENT-ÉTÉ" }, ReasonMessageID, "", "message_id"},
		{"message id with space", func(p *Payment) { p.MessageID = "PAY 1" }, ReasonMessageID, "", "message_id"},
		{"message id leading slash", func(p *Payment) { p.MessageID = "/PAY1" }, ReasonMessageID, "", "message_id"},
		{"message id double slash", func(p *Payment) { p.MessageID = "PAY//1" }, ReasonMessageID, "", "message_id"},
		{"no creation time", func(p *Payment) { p.CreatedAt = time.Time{} }, ReasonCreationTime, "", "created_at"},
		{"no execution date", func(p *Payment) { p.ExecutionDate = time.Time{} }, ReasonExecutionDate, "", "execution_date"},
		{"execution before creation", func(p *Payment) { p.ExecutionDate = p.CreatedAt.AddDate(0, 0, -1) },
			ReasonExecutionDate, "", "execution_date"},
		{"debtor without name", func(p *Payment) { p.Debtor.Name = " « » " }, ReasonName, "", "debtor.name"},
		{"debtor bad IBAN", func(p *Payment) { p.Debtor.IBAN = "FR7630006000011234567890188" },
			ident.ReasonIBANChecksum, "", "debtor.iban"},
		{"debtor bad BIC", func(p *Payment) { p.Debtor.BIC = "AGRIFRP" }, ident.ReasonBICFormat, "", "debtor.bic"},
		{"zero amount", func(p *Payment) { p.Credits[1].AmountCents = 0 }, ReasonAmount, "1", "credits.amount"},
		{"negative amount", func(p *Payment) { p.Credits[2].AmountCents = -500 }, ReasonAmount, "2", "credits.amount"},
		{"amount too large", func(p *Payment) { p.Credits[0].AmountCents = MaxAmountCents + 1 },
			ReasonAmount, "0", "credits.amount"},
		{"creditor bad IBAN", func(p *Payment) { p.Credits[2].Creditor.IBAN = "RE3612345678900123456789A59" },
			ident.ReasonIBANChecksum, "2", "credits.creditor.iban"},
		{"creditor non-SEPA IBAN", func(p *Payment) { p.Credits[1].Creditor.IBAN = "US64SVBKUS6S3300958879" },
			ident.ReasonIBANCountry, "1", "credits.creditor.iban"},
		{"creditor bad BIC", func(p *Payment) { p.Credits[0].Creditor.BIC = "PSSTFRPPPA" },
			ident.ReasonBICFormat, "0", "credits.creditor.bic"},
		{"creditor test BIC", func(p *Payment) { p.Credits[0].Creditor.BIC = "PSSTFR0P" },
			ident.ReasonBICFormat, "0", "credits.creditor.bic"},
		{"creditor name too long", func(p *Payment) { p.Credits[1].Creditor.Name = strings.Repeat("é", 71) },
			ReasonName, "1", "credits.creditor.name"},
		{"creditor name grows past 70", func(p *Payment) { p.Credits[1].Creditor.Name = strings.Repeat("œ", 36) },
			ReasonName, "1", "credits.creditor.name"},
		{"creditor without name", func(p *Payment) { p.Credits[2].Creditor.Name = "" },
			ReasonName, "2", "credits.creditor.name"},
		{"empty end-to-end id", func(p *Payment) { p.Credits[1].EndToEndID = "" },
			ReasonEndToEndID, "1", "credits.end_to_end_id"},
		{"long end-to-end id", func(p *Payment) { p.Credits[0].EndToEndID = long },
			ReasonEndToEndID, "0", "credits.end_to_end_id"},
		{"end-to-end id trailing slash", func(p *Payment) { p.Credits[0].EndToEndID = "STMT/" },
			ReasonEndToEndID, "0", "credits.end_to_end_id"},
		{"end-to-end id with underscore", func(p *Payment) { p.Credits[0].EndToEndID = "STMT_1" },
			ReasonEndToEndID, "0", "credits.end_to_end_id"},
		{"duplicate end-to-end id", func(p *Payment) { p.Credits[2].EndToEndID = p.Credits[0].EndToEndID },
			ReasonDuplicateID, "2", "credits.end_to_end_id"},
		{"remittance too long", func(p *Payment) { p.Credits[2].Remittance = strings.Repeat("a", 141) },
			ReasonRemittance, "2", "credits.remittance"},
		{"remittance grows past 140", func(p *Payment) { p.Credits[0].Remittance = strings.Repeat("æ", 71) },
			ReasonRemittance, "0", "credits.remittance"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := validPayment()
			tc.change(&p)
			var buf bytes.Buffer
			err := Write(&buf, p)
			f, ok := fault.As(err)
			if !ok || f.Kind != fault.Invalid || f.Reason != tc.reason {
				t.Fatalf("Write = %v, want invalid fault %s", err, tc.reason)
			}
			if buf.Len() != 0 {
				t.Fatalf("Write wrote %d bytes despite the fault", buf.Len())
			}
			if f.Metadata["credit_index"] != tc.index || f.Metadata["field"] != tc.field {
				t.Fatalf("metadata = %v, want credit_index %q field %q", f.Metadata, tc.index, tc.field)
			}
			if tc.index != "" {
				n, _ := strconv.Atoi(tc.index)
				if prefix := fmt.Sprintf("Virement n° %d : ", n+1); !strings.HasPrefix(f.Message, prefix) {
					t.Fatalf("message %q does not start with %q", f.Message, prefix)
				}
			}
		})
	}
}

func TestIdentFaultKeepsMetadata(t *testing.T) {
	p := validPayment()
	p.Credits[1].Creditor.IBAN = "FR763000100794123456789018"
	err := Write(&bytes.Buffer{}, p)
	f, ok := fault.As(err)
	if !ok || f.Reason != ident.ReasonIBANLength || f.Metadata["expected"] != "27" || f.Metadata["country"] != "FR" ||
		f.Metadata["credit_index"] != "1" || !strings.HasPrefix(f.Message, "Virement n° 2 : un IBAN commençant par FR") {
		t.Fatalf("Write = %v (metadata %v)", err, f.Metadata)
	}
	p = validPayment()
	p.Debtor.BIC = "X"
	f, _ = fault.As(Write(&bytes.Buffer{}, p))
	if f == nil || !strings.HasPrefix(f.Message, "Compte débiteur : un BIC") {
		t.Fatalf("debtor fault = %v", f)
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestWriteError(t *testing.T) {
	err := Write(failingWriter{}, validPayment())
	if err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("Write = %v, want the writer's error", err)
	}
	if _, ok := fault.As(err); ok {
		t.Fatalf("a write error is not a fault: %v", err)
	}
}

func TestSameDayExecution(t *testing.T) {
	p := validPayment()
	p.ExecutionDate = time.Date(2025, 3, 31, 0, 0, 0, 0, paris)
	doc, _ := write(t, p)
	if doc.PmtInf[0].ReqdExctnDt != "2025-03-31" {
		t.Errorf("ReqdExctnDt = %s", doc.PmtInf[0].ReqdExctnDt)
	}
}

func TestDecimal(t *testing.T) {
	for _, tc := range []struct {
		cents int64
		want  string
	}{
		{1, "0.01"}, {10, "0.10"}, {99, "0.99"}, {100, "1.00"}, {105, "1.05"}, {12345, "123.45"},
		{MaxAmountCents, "999999999.99"}, {MaxTotalCents, "9999999999999999.99"},
	} {
		if got := decimal(tc.cents); got != tc.want {
			t.Errorf("decimal(%d) = %s, want %s", tc.cents, got, tc.want)
		}
	}
}

func TestLatin(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"Médiathèque François-Mitterrand", "Mediatheque Francois-Mitterrand"},
		{"ÀÂÄÇÉÈÊËÎÏÔÖÙÛÜŸ àâäçéèêëîïôöùûüÿ", "AAACEEEEIIOOUUUY aaaceeeeiioouuuy"},
		{"Œuvre Æsop straße", "OEuvre AEsop strasse"},
		{"L’Atelier « numérique »", "L'Atelier numerique"},
		{"Relevé n° 12 — mars", "Releve no 12 - mars"},
		{"A & B; c'est ok!", "A + B, c'est ok."},
		{"  tabs\tand\nnewlines\u00a0nbsp  ", "tabs and newlines nbsp"},
		{"e\u0301cole", "ecole"}, // decomposed é
		{"Łódź Øresund Ştefan", "Lodz Oresund Stefan"},
		{"emoji 🙂 and @ # * = signs", "emoji and signs"},
		{"/-?:().,'+", "/-?:().,'+"},
		{"", ""},
		{"«»", ""},
	} {
		got := latin(tc.in)
		if got != tc.want {
			t.Errorf("latin(%q) = %q, want %q", tc.in, got, tc.want)
		}
		for _, c := range got {
			if !sepaChar(c) {
				t.Errorf("latin(%q) = %q keeps %q", tc.in, got, c)
			}
		}
	}
}

func FuzzLatin(f *testing.F) {
	for _, s := range []string{"Médiathèque", "«»", "a  b", "\xff", "œ"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := latin(s)
		for _, c := range got {
			if !sepaChar(c) {
				t.Fatalf("latin(%q) = %q keeps %q", s, got, c)
			}
		}
		if strings.HasPrefix(got, " ") || strings.HasSuffix(got, " ") || strings.Contains(got, "  ") {
			t.Fatalf("latin(%q) = %q has stray spaces", s, got)
		}
		if again := latin(got); again != got {
			t.Fatalf("latin is not idempotent on %q: %q then %q", s, got, again)
		}
	})
}
