package programmes

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/passnum/passnum/internal/auth"
	"github.com/passnum/passnum/internal/civil"
	"github.com/passnum/passnum/internal/fault"
	"github.com/passnum/passnum/internal/orgs"
	"github.com/passnum/passnum/internal/paging"
	"github.com/passnum/passnum/internal/vcode"
	"github.com/passnum/passnum/ledger"
)

func TestFeeOf(t *testing.T) {
	for _, c := range []struct {
		amount      int64
		bps         int32
		fee, budget int64
	}{
		{1_040_000, 400, 40_000, 1_000_000}, // 10 400 € at 4 %: 10 000 € of vouchers, 400 € of fees
		{1000, 0, 0, 1000},
		{1, 10000, 0, 1},
		{999, 400, 38, 961}, // rounded down, in the funder's favour
	} {
		fee, budget := FeeOf(c.amount, c.bps)
		if fee != c.fee || budget != c.budget {
			t.Errorf("FeeOf(%d, %d) = %d, %d; want %d, %d", c.amount, c.bps, fee, budget, c.fee, c.budget)
		}
	}
}

func TestLifecycle(t *testing.T) {
	f := newFixture(t, Options{})
	p := f.programme(f.spec())
	if p.FaceValueCents != 1000 || p.VouchersPerBook != 10 || p.GraceDays != 31 || p.TargetPublicQuotaBps != 5000 ||
		p.Status != ProgrammeOpen || !reflect.DeepEqual(p.Territories, []string{"07", "26"}) {
		t.Fatalf("programme defaults: %+v", p)
	}
	f.verify(p.ID)

	fd := f.fund(p, f.state, 104_000)
	if fd.FeeCents != 4000 || fd.BudgetCents != 100_000 {
		t.Fatalf("funding: fee %d budget %d", fd.FeeCents, fd.BudgetCents)
	}
	f.fund(p, f.drome, 104_000)
	f.verify(p.ID)
	bal, err := f.svc.ProgrammeBalance(f.ctx, f.op, p.ID, time.Time{})
	f.must(err)
	if bal.Totals[ledger.FunderCashIn] != 208_000 || bal.Totals[ledger.Fees] != 8000 || bal.Totals[ledger.Unissued] != 200_000 {
		t.Fatalf("balance after funding: %v", bal.Totals)
	}

	order := f.order(p, f.caf, 5)
	if order.FirstNumber != 1 || order.LastNumber != 5 || order.Vouchers != 50 || order.FaceValueCents != 50_000 {
		t.Fatalf("order: %+v", order)
	}
	f.verify(p.ID)
	tot := f.totals(p.ID)
	if tot[ledger.Unissued] != 150_000 || tot[ledger.Outstanding] != 50_000 {
		t.Fatalf("after order: %v", tot)
	}

	book := f.handOut(f.caf, p, 1)
	if book.Status != BookHandedOut || !book.TargetPublic || book.Territory != "26" || len(book.Codes) != 10 ||
		book.FaceValueCents != 10_000 {
		t.Fatalf("handed out book: %+v", book)
	}
	f.verify(p.ID)
	code := book.Codes[0].String()
	site := f.sites[0]

	v, err := f.svc.CheckVoucher(f.ctx, site, code)
	f.must(err)
	if v.Status != VoucherAvailable || v.FaceValueCents != 1000 || !v.RedeemableUntil.Equal(p.ValidUntil.AddDate(0, 0, 31)) {
		t.Fatalf("check: %+v", v)
	}
	held, err := f.svc.HoldVoucher(f.ctx, site, key(), HoldSpec{Code: code})
	f.must(err)
	if held.HeldBy != site.Org || held.HeldUntil.Sub(f.clock.Now()) > 10*time.Minute+time.Second {
		t.Fatalf("hold: %+v", held)
	}

	k := key()
	red, err := f.svc.RedeemVoucher(f.ctx, site, k, RedeemSpec{Code: code, Service: "aide aux  démarches administratives", Minutes: 90})
	f.must(err)
	if red.Round != 1 || red.AmountCents != 1000 || red.Site != site.Org || red.Service != services[0] ||
		!red.ServiceDate.Equal(civil.DateOf(f.clock.Now())) || red.Ledger.Seq == 0 {
		t.Fatalf("redemption: %+v", red)
	}
	again, err := f.svc.RedeemVoucher(f.ctx, site, k, RedeemSpec{Code: code, Service: "aide aux  démarches administratives", Minutes: 90})
	f.must(err)
	if !reflect.DeepEqual(again, red) {
		t.Fatalf("replay differs:\n%+v\n%+v", again, red)
	}
	f.verify(p.ID)
	if tot := f.totals(p.ID); tot[ledger.SitePayable] != 1000 || tot[ledger.Outstanding] != 49_000 {
		t.Fatalf("after redemption: %v", tot)
	}

	// Reversal for an error: the voucher is available again; the next redemption is round 2.
	rev, err := f.svc.ReverseRedemption(f.ctx, f.op, key(), ReverseSpec{Code: code, Reason: ReasonError, Note: "Saisie en double"})
	f.must(err)
	if rev.Round != 1 || rev.VoucherStatus != VoucherAvailable || rev.AmountCents != 1000 || rev.Site != site.Org {
		t.Fatalf("reversal: %+v", rev)
	}
	f.verify(p.ID)
	red2, err := f.redeem(f.sites[1], code)
	f.must(err)
	if red2.Round != 2 {
		t.Fatalf("second redemption round %d", red2.Round)
	}
	f.verify(p.ID)

	// Reversal for fraud: the voucher is voided and its value returns to the budget.
	rev2, err := f.svc.ReverseRedemption(f.ctx, f.op, key(), ReverseSpec{Code: code, Reason: ReasonFraud, Note: "Chèque volé"})
	f.must(err)
	if rev2.Round != 2 || rev2.VoucherStatus != VoucherVoided {
		t.Fatalf("fraud reversal: %+v", rev2)
	}
	f.verify(p.ID)
	if tot := f.totals(p.ID); tot[ledger.SitePayable] != 0 || tot[ledger.Outstanding] != 49_000 || tot[ledger.Unissued] != 151_000 {
		t.Fatalf("after fraud reversal: %v", tot)
	}
	_, err = f.redeem(site, code)
	wantFault(t, err, "VOUCHER_NOT_ACTIVE")
	_, err = f.svc.ReverseRedemption(f.ctx, f.op, key(), ReverseSpec{Code: code, Reason: ReasonError, Note: "encore"})
	wantFault(t, err, "VOUCHER_NOT_REDEEMED")

	// Cancelling a book in stock voids its vouchers and gives their value back.
	cb, err := f.svc.CancelBook(f.ctx, f.caf, key(), CancelSpec{Book: BookRef{Programme: p.ID, Number: 2}, Reason: "Chéquier abîmé"})
	f.must(err)
	if cb.Status != BookCancelled {
		t.Fatalf("cancelled book: %+v", cb)
	}
	f.verify(p.ID)
	if tot := f.totals(p.ID); tot[ledger.Outstanding] != 39_000 || tot[ledger.Unissued] != 161_000 {
		t.Fatalf("after cancel: %v", tot)
	}
	_, err = f.svc.CancelBook(f.ctx, f.op, key(), CancelSpec{Book: BookRef{Programme: p.ID, Number: 1}})
	wantFault(t, err, "BOOK_NOT_IN_STOCK")
	_, err = f.svc.HandOutBook(f.ctx, f.caf, key(), HandOutSpec{Book: BookRef{Programme: p.ID, Number: 2}, Territory: "26"})
	wantFault(t, err, "BOOK_NOT_IN_STOCK")

	// Balances as of an instant before the order.
	at, err := f.svc.ProgrammeBalance(f.ctx, f.drome, p.ID, recordedAt(t, f, fd.Ledger))
	f.must(err)
	if at.Totals[ledger.Outstanding] != 0 || at.Totals[ledger.FunderCashIn] != 104_000 {
		t.Fatalf("balance as of the first funding: %v", at.Totals)
	}
	if n := f.count(`SELECT count(*) FROM redemptions`); n != 2 {
		t.Fatalf("%d redemptions, want 2", n)
	}
}

// recordedAt returns the instant the transaction r was recorded.
func recordedAt(t testing.TB, f *fixture, r ledger.Ref) time.Time {
	t.Helper()
	var at time.Time
	f.must(f.db.Owner.QueryRow(f.ctx, `SELECT recorded_at FROM transactions WHERE id = $1`, r.TransactionID).Scan(&at))
	return at
}

func TestCreateProgrammeRefusals(t *testing.T) {
	f := newFixture(t, Options{})
	for _, c := range []struct {
		name   string
		p      auth.Principal
		edit   func(*ProgrammeSpec)
		reason string
	}{
		{"shares", f.op, func(s *ProgrammeSpec) { s.Funders[1].ShareBps = 4000 }, "FUNDER_SHARES_TOTAL"},
		{"duplicate funder", f.op, func(s *ProgrammeSpec) { s.Funders[1].Funder = s.Funders[0].Funder }, "FUNDER_DUPLICATE"},
		{"unknown funder", f.op, func(s *ProgrammeSpec) { s.Funders[1].Funder = f.caf.Org }, "FUNDER_UNKNOWN"},
		{"not a distributor", f.op, func(s *ProgrammeSpec) { s.Distributors = []uuid.UUID{f.state.Org} }, "DISTRIBUTOR_UNKNOWN"},
		{"territory", f.op, func(s *ProgrammeSpec) { s.Territories = []string{"20"} }, "DEPARTEMENT_CODE"},
		{"uninhabited territory", f.op, func(s *ProgrammeSpec) { s.Territories = []string{"984"} }, "DEPARTEMENT_CODE"},
		{"no territory", f.op, func(s *ProgrammeSpec) { s.Territories = nil }, "INVALID_TERRITORIES"},
		{"dates", f.op, func(s *ProgrammeSpec) { s.ValidFrom, s.ValidUntil = s.ValidUntil, s.ValidFrom }, "INVALID_VALID_UNTIL"},
		{"face value", f.op, func(s *ProgrammeSpec) { s.FaceValueCents = 100001 }, "INVALID_FACE_VALUE_CENTS"},
		{"fee", f.op, func(s *ProgrammeSpec) { s.FeeBps = -1 }, "INVALID_FEE_BPS"},
		{"funder outside", f.state, func(s *ProgrammeSpec) { s.Funders = []FunderShare{{Funder: f.drome.Org, ShareBps: 10000}} }, "FUNDER_NOT_IN_PROGRAMME"},
		{"distributor", f.caf, func(s *ProgrammeSpec) {}, "ROLE_NOT_ALLOWED"},
	} {
		t.Run(c.name, func(t *testing.T) {
			sp := f.spec()
			c.edit(&sp)
			_, err := f.svc.CreateProgramme(f.ctx, c.p, key(), sp)
			wantFault(t, err, c.reason)
		})
	}
	// A funder among the funders may create it.
	p, err := f.svc.CreateProgramme(f.ctx, f.drome, key(), f.spec())
	f.must(err)
	f.verify(p.ID)
}

func TestFundingRefusals(t *testing.T) {
	f := newFixture(t, Options{})
	p := f.programme(f.spec())
	fd := f.fund(p, f.state, 50_000)
	_, err := f.svc.RecordFunding(f.ctx, f.op, key(), FundingSpec{Programme: p.ID, Funder: f.state.Org, AmountCents: 10,
		BankReference: fd.BankReference, ReceivedOn: fd.ReceivedOn})
	wantFault(t, err, "FUNDING_ALREADY_RECORDED")
	_, err = f.svc.RecordFunding(f.ctx, f.op, key(), FundingSpec{Programme: p.ID, Funder: f.caf.Org, AmountCents: 10,
		BankReference: "X", ReceivedOn: fd.ReceivedOn})
	wantFault(t, err, "FUNDER_NOT_IN_PROGRAMME")
	_, err = f.svc.RecordFunding(f.ctx, f.op, key(), FundingSpec{Programme: p.ID, Funder: f.state.Org, AmountCents: 10,
		BankReference: "Y", ReceivedOn: civil.DateOf(f.clock.Now()).AddDate(0, 0, 1)})
	wantFault(t, err, "INVALID_RECEIVED_ON")
	_, err = f.svc.RecordFunding(f.ctx, f.state, key(), FundingSpec{Programme: p.ID, Funder: f.state.Org, AmountCents: 10,
		BankReference: "Z", ReceivedOn: fd.ReceivedOn})
	wantFault(t, err, "ROLE_NOT_ALLOWED")
	if n := f.count(`SELECT count(*) FROM fundings`); n != 1 {
		t.Fatalf("%d fundings, want 1", n)
	}
	f.verify(p.ID)
}

func TestOrderNotFunded(t *testing.T) {
	f := newFixture(t, Options{})
	p := f.programme(f.spec())
	f.fund(p, f.state, 52_000) // 50 000 of budget: 5 books of 10 × 10 €
	_, err := f.svc.OrderBooks(f.ctx, f.op, key(), OrderSpec{Programme: p.ID, Distributor: f.caf.Org, Books: 6})
	fe := wantFault(t, err, "PROGRAMME_NOT_FUNDED")
	if fe.Metadata["needed_cents"] != "60000" || fe.Metadata["available_cents"] != "50000" {
		t.Fatalf("figures: %v (%s)", fe.Metadata, fe.Message)
	}
	if n := f.count(`SELECT count(*) FROM books`) + f.count(`SELECT count(*) FROM vouchers`) +
		f.count(`SELECT count(*) FROM book_orders`) + f.count(`SELECT books_ordered FROM programmes`) +
		f.count(`SELECT count(*) FROM transactions WHERE kind = 'issuance'`); n != 0 {
		t.Fatalf("a refused order wrote %d rows", n)
	}
	o, err := f.svc.OrderBooks(f.ctx, f.state, key(), OrderSpec{Programme: p.ID, Distributor: f.caf.Org, Books: 5})
	f.must(err)
	if o.FirstNumber != 1 || o.LastNumber != 5 {
		t.Fatalf("order: %+v", o)
	}
	_, err = f.svc.OrderBooks(f.ctx, f.op, key(), OrderSpec{Programme: p.ID, Distributor: f.caf.Org, Books: 1})
	wantFault(t, err, "PROGRAMME_NOT_FUNDED")
	f.verify(p.ID)
}

func TestOrderRefusals(t *testing.T) {
	f := newFixture(t, Options{})
	p := f.programme(f.spec())
	f.fund(p, f.state, 1_000_000)
	other := f.org(orgs.KindDistributor, "Association Ailleurs", "38")
	other2 := f.org(orgs.KindFunder, "Ville de Lyon", "69")
	for _, c := range []struct {
		name   string
		p      auth.Principal
		spec   OrderSpec
		reason string
	}{
		{"not eligible", f.op, OrderSpec{Programme: p.ID, Distributor: other.Org, Books: 1}, "DISTRIBUTOR_NOT_ELIGIBLE"},
		{"zero books", f.op, OrderSpec{Programme: p.ID, Distributor: f.caf.Org, Books: 0}, "INVALID_BOOKS"},
		{"too many books", f.op, OrderSpec{Programme: p.ID, Distributor: f.caf.Org, Books: 100_001}, "INVALID_BOOKS"},
		{"unknown programme", f.op, OrderSpec{Programme: uuid.New(), Distributor: f.caf.Org, Books: 1}, "PROGRAMME_NOT_FOUND"},
		{"other funder", other2, OrderSpec{Programme: p.ID, Distributor: f.caf.Org, Books: 1}, "OBJECT_NOT_ALLOWED"},
		{"distributor", f.caf, OrderSpec{Programme: p.ID, Distributor: f.caf.Org, Books: 1}, "ROLE_NOT_ALLOWED"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := f.svc.OrderBooks(f.ctx, c.p, key(), c.spec)
			wantFault(t, err, c.reason)
		})
	}
	// After the end of validity.
	f.clock.set(p.ValidUntil.AddDate(0, 0, 1).Add(12 * time.Hour))
	_, err := f.svc.OrderBooks(f.ctx, f.op, key(), OrderSpec{Programme: p.ID, Distributor: f.caf.Org, Books: 1})
	wantFault(t, err, "PROGRAMME_VALIDITY_ENDED")
	f.verify(p.ID)
}

func TestOrderTenThousandBooks(t *testing.T) {
	f := newFixture(t, Options{})
	p := f.programme(f.spec())
	f.fund(p, f.state, 104_000_000) // 1 M€ of budget
	start := time.Now()
	o := f.order(p, f.mairie, 10_000)
	t.Logf("ordered 10,000 books (100,000 vouchers) in %v", time.Since(start))
	if o.LastNumber != 10_000 || o.Vouchers != 100_000 {
		t.Fatalf("order: %+v", o)
	}
	// Keyed codes: the books are written, their vouchers get rows when handed out.
	if n := f.count(`SELECT count(*) FROM books WHERE programme_id = $1 AND status = 'in_stock' AND voucher_codes IS NULL`, p.ID); n != 10_000 {
		t.Fatalf("%d books", n)
	}
	if n := f.count(`SELECT count(*) FROM vouchers WHERE programme_id = $1`, p.ID); n != 0 {
		t.Fatalf("%d voucher rows before any hand-out", n)
	}
	f.verify(p.ID)
}

// Every voucher of an order has its own code; a code of a book in stock reads as in stock
// (not unknown), and hand-out gives the vouchers the codes the book showed.
func TestKeyedCodes(t *testing.T) {
	f := newFixture(t, Options{})
	p := f.programme(f.spec())
	f.fund(p, f.state, 104_000)
	f.order(p, f.caf, 5)
	seen := make(map[vcode.Code]bool)
	var books []*Book
	for n := int64(1); n <= 5; n++ {
		b, err := f.svc.GetBook(f.ctx, f.caf, BookRef{Programme: p.ID, Number: n})
		f.must(err)
		if len(b.Codes) != int(p.VouchersPerBook) {
			t.Fatalf("book %d has %d codes", n, len(b.Codes))
		}
		for _, c := range b.Codes {
			if seen[c] {
				t.Fatalf("code %s twice", c)
			}
			seen[c] = true
		}
		books = append(books, b)
	}
	in := books[1].Codes[2]
	v, err := f.svc.CheckVoucher(f.ctx, f.op, in.String())
	f.must(err)
	if v.Status != VoucherInStock || v.Book != 2 || v.Programme != p.ID || v.FaceValueCents != p.FaceValueCents {
		t.Fatalf("check of a voucher in stock: %+v", v)
	}
	_, err = f.redeem(f.sites[0], in.String())
	wantFault(t, err, "VOUCHER_NOT_ACTIVE")

	handed := f.handOut(f.caf, p, 2)
	if !slices.Equal(handed.Codes, books[1].Codes) {
		t.Fatalf("codes after hand-out %v, before %v", handed.Codes, books[1].Codes)
	}
	if n := f.count(`SELECT count(*) FROM vouchers WHERE programme_id = $1 AND book_number = 2 AND status = 'available'`, p.ID); n != int64(p.VouchersPerBook) {
		t.Fatalf("%d voucher rows after hand-out", n)
	}
	r, err := f.redeem(f.sites[0], in.String())
	f.must(err)
	if r.Code != in || r.AmountCents != p.FaceValueCents {
		t.Fatalf("redemption %+v", r)
	}

	// Cancelled in stock: its vouchers read as voided and its value is back.
	_, err = f.svc.CancelBook(f.ctx, f.caf, key(), CancelSpec{Book: BookRef{Programme: p.ID, Number: 3}})
	f.must(err)
	v, err = f.svc.CheckVoucher(f.ctx, f.op, books[2].Codes[0].String())
	f.must(err)
	if v.Status != VoucherVoided {
		t.Fatalf("voucher of a cancelled book: %+v", v)
	}

	// A code made with another key, or typed at random, is no voucher.
	other := vcode.RandomKeyring().Current()
	foreign, err := other.Code(vcode.Slot{Prefix: 1, Book: 1, Position: 1})
	f.must(err)
	_, err = f.svc.CheckVoucher(f.ctx, f.op, foreign.String())
	wantFault(t, err, "VOUCHER_NOT_FOUND")
	f.verify(p.ID)
}

// A service without the key of an order cannot show its codes, and says why.
func TestBookCodesNeedTheirKey(t *testing.T) {
	f := newFixture(t, Options{})
	p := f.programme(f.spec())
	f.fund(p, f.state, 104_000)
	f.order(p, f.caf, 1)
	stranger := New(f.l, Options{VoucherKeys: vcode.RandomKeyring()})
	t.Cleanup(stranger.Close)
	_, err := stranger.GetBook(f.ctx, f.caf, BookRef{Programme: p.ID, Number: 1})
	if err == nil || !strings.Contains(err.Error(), "not loaded") {
		t.Fatalf("GetBook without the order's key: %v", err)
	}
}

func TestHandOutRefusals(t *testing.T) {
	f := newFixture(t, Options{})
	p, _ := f.ready()
	ref := BookRef{Programme: p.ID, Number: 2}
	for _, c := range []struct {
		name   string
		p      auth.Principal
		spec   HandOutSpec
		reason string
	}{
		{"other distributor", f.mairie, HandOutSpec{Book: ref, Territory: "26"}, "OBJECT_NOT_ALLOWED"},
		{"territory outside", f.caf, HandOutSpec{Book: ref, Territory: "38"}, "TERRITORY_NOT_IN_PROGRAMME"},
		{"bad territory", f.caf, HandOutSpec{Book: ref, Territory: "00"}, "DEPARTEMENT_CODE"},
		{"unknown book", f.caf, HandOutSpec{Book: BookRef{Programme: p.ID, Number: 99}, Territory: "26"}, "BOOK_NOT_FOUND"},
		{"already handed out", f.caf, HandOutSpec{Book: BookRef{Programme: p.ID, Number: 1}, Territory: "26"}, "BOOK_NOT_IN_STOCK"},
		{"operator", f.op, HandOutSpec{Book: ref, Territory: "26"}, "ROLE_NOT_ALLOWED"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := f.svc.HandOutBook(f.ctx, c.p, key(), c.spec)
			wantFault(t, err, c.reason)
		})
	}
	_, err := f.svc.CancelBook(f.ctx, f.mairie, key(), CancelSpec{Book: ref})
	wantFault(t, err, "OBJECT_NOT_ALLOWED")
	f.clock.set(p.ValidUntil.AddDate(0, 0, 1).Add(12 * time.Hour))
	_, err = f.svc.HandOutBook(f.ctx, f.caf, key(), HandOutSpec{Book: ref, Territory: "26"})
	wantFault(t, err, "PROGRAMME_VALIDITY_ENDED")
	f.verify(p.ID)
}

func TestRedeemRefusals(t *testing.T) {
	f := newFixture(t, Options{})
	p, book := f.ready()
	pending := f.site("Tiers-lieu de Dieulefit", "26114", false)
	isere := f.site("Espace public numérique de Vienne", "38544", true)
	siteA, siteB := f.sites[0], f.sites[1]

	redeemed := book.Codes[0].String()
	first, err := f.redeem(siteA, redeemed)
	f.must(err)
	held := book.Codes[1].String()
	_, err = f.svc.HoldVoucher(f.ctx, siteA, key(), HoldSpec{Code: held, Minutes: 5})
	f.must(err)
	inStock, err := f.svc.GetBook(f.ctx, f.op, BookRef{Programme: p.ID, Number: 2})
	f.must(err)
	cancelled, err := f.svc.CancelBook(f.ctx, f.op, key(), CancelSpec{Book: BookRef{Programme: p.ID, Number: 3}})
	f.must(err)
	drawn, err := vcode.Generate(1)
	f.must(err)
	unknown := drawn[0]
	today := civil.DateOf(f.clock.Now())
	okCode := book.Codes[2].String()
	typo := []byte(okCode)
	typo[3] = map[bool]byte{true: 'A', false: 'B'}[typo[3] != 'A']

	for _, c := range []struct {
		name   string
		site   auth.Principal
		spec   RedeemSpec
		reason string
	}{
		{"site not qualified", pending, RedeemSpec{Code: okCode, Service: services[0], Minutes: 60}, "SITE_NOT_QUALIFIED"},
		{"site outside label period", siteB, RedeemSpec{Code: okCode, Service: services[0], Minutes: 60,
			ServiceDate: time.Date(today.Year()-2, 6, 1, 0, 0, 0, 0, time.UTC)}, "SITE_NOT_QUALIFIED"},
		{"unknown voucher", siteB, RedeemSpec{Code: unknown.String(), Service: services[0], Minutes: 60}, "VOUCHER_NOT_FOUND"},
		{"book in stock", siteB, RedeemSpec{Code: inStock.Codes[0].String(), Service: services[0], Minutes: 60}, "VOUCHER_NOT_ACTIVE"},
		{"voided", siteB, RedeemSpec{Code: cancelled.Codes[0].String(), Service: services[0], Minutes: 60}, "VOUCHER_NOT_ACTIVE"},
		{"already redeemed", siteB, RedeemSpec{Code: redeemed, Service: services[0], Minutes: 60}, "VOUCHER_ALREADY_REDEEMED"},
		{"out of territory", isere, RedeemSpec{Code: okCode, Service: services[0], Minutes: 60}, "VOUCHER_OUT_OF_TERRITORY"},
		{"not in catalogue", siteB, RedeemSpec{Code: okCode, Service: "Cours de cuisine", Minutes: 60}, "SERVICE_NOT_IN_CATALOGUE"},
		{"held elsewhere", siteB, RedeemSpec{Code: held, Service: services[0], Minutes: 60}, "VOUCHER_HELD"},
		{"no minutes", siteB, RedeemSpec{Code: okCode, Service: services[0]}, "INVALID_MINUTES"},
		{"too many minutes", siteB, RedeemSpec{Code: okCode, Service: services[0], Minutes: 481}, "INVALID_MINUTES"},
		{"future date", siteB, RedeemSpec{Code: okCode, Service: services[0], Minutes: 60, ServiceDate: today.AddDate(0, 0, 1)}, "INVALID_SERVICE_DATE"},
		{"before hand-out", siteB, RedeemSpec{Code: okCode, Service: services[0], Minutes: 60, ServiceDate: today.AddDate(0, 0, -1)}, "SERVICE_DATE_BEFORE_HAND_OUT"},
		{"typo", siteB, RedeemSpec{Code: string(typo), Service: services[0], Minutes: 60}, vcode.ReasonCheck},
		{"no service", siteB, RedeemSpec{Code: okCode, Minutes: 60}, "INVALID_SERVICE"},
		{"operator", f.op, RedeemSpec{Code: okCode, Service: services[0], Minutes: 60}, "ROLE_NOT_ALLOWED"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := f.svc.RedeemVoucher(f.ctx, c.site, key(), c.spec)
			fe := wantFault(t, err, c.reason)
			if fe.Message == "" {
				t.Fatal("no message")
			}
		})
	}
	fe := wantFault(t, func() error { _, err := f.redeem(siteB, redeemed); return err }(), "VOUCHER_ALREADY_REDEEMED")
	want := fmt.Sprintf("Ce chèque a déjà été encaissé le %s par Espace numérique de Die.", frTime(first.RedeemedAt))
	if fe.Message != want || fe.Metadata["site_id"] != siteA.Org.String() ||
		fe.Metadata["redeemed_at"] != first.RedeemedAt.UTC().Format(time.RFC3339Nano) {
		t.Fatalf("already redeemed: %q %v", fe.Message, fe.Metadata)
	}

	// Expired: past valid_until + grace, for a service given in time.
	f.clock.set(p.RedeemableUntil().AddDate(0, 0, 1).Add(12 * time.Hour))
	_, err = f.svc.RedeemVoucher(f.ctx, siteB, key(), RedeemSpec{Code: okCode, Service: services[0], Minutes: 60, ServiceDate: today})
	wantFault(t, err, "VOUCHER_EXPIRED")
	v, err := f.svc.CheckVoucher(f.ctx, siteB, okCode)
	f.must(err)
	if v.Status != VoucherExpired {
		t.Fatalf("check after validity: %s", v.Status)
	}
	if n := f.count(`SELECT count(*) FROM redemptions`); n != 1 {
		t.Fatalf("refusals wrote: %d redemptions", n)
	}
	f.verify(p.ID)
}

func TestHold(t *testing.T) {
	f := newFixture(t, Options{})
	p, book := f.ready()
	code := book.Codes[0].String()
	a, b := f.sites[0], f.sites[1]
	h1, err := f.svc.HoldVoucher(f.ctx, a, key(), HoldSpec{Code: code, Minutes: 5})
	f.must(err)
	_, err = f.svc.HoldVoucher(f.ctx, b, key(), HoldSpec{Code: code})
	wantFault(t, err, "VOUCHER_HELD")
	for _, m := range []int32{-1, 31} {
		_, err = f.svc.HoldVoucher(f.ctx, a, key(), HoldSpec{Code: code, Minutes: m})
		wantFault(t, err, "INVALID_MINUTES")
	}
	f.clock.set(f.clock.Now().Add(3 * time.Minute))
	h2, err := f.svc.HoldVoucher(f.ctx, a, key(), HoldSpec{Code: code, Minutes: 5})
	f.must(err)
	if !h2.HeldUntil.After(h1.HeldUntil) {
		t.Fatalf("re-hold did not extend: %v then %v", h1.HeldUntil, h2.HeldUntil)
	}
	chk, err := f.svc.CheckVoucher(f.ctx, b, code)
	f.must(err)
	if chk.HeldBy != a.Org {
		t.Fatalf("check does not show the hold: %+v", chk)
	}
	_, err = f.redeem(b, code)
	wantFault(t, err, "VOUCHER_HELD")
	// Once the hold runs out, another site may redeem.
	f.clock.set(f.clock.Now().Add(6 * time.Minute))
	_, err = f.redeem(b, code)
	f.must(err)
	f.verify(p.ID)
}

// TestRedeemRaceDomain: many concurrent redemptions of one voucher by several sites: one
// wins, every loser gets the same fault.
func TestRedeemRaceDomain(t *testing.T) {
	f := newFixture(t, Options{})
	p, book := f.ready()
	code := book.Codes[0].String()
	const n = 200
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		wins int
		errs []*fault.Error
	)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := f.redeem(f.sites[i%len(f.sites)], code)
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				wins++
				return
			}
			fe, ok := fault.As(err)
			if !ok {
				t.Errorf("not a fault: %v", err)
				return
			}
			errs = append(errs, fe)
		}()
	}
	wg.Wait()
	if wins != 1 || len(errs) != n-1 {
		t.Fatalf("%d wins, %d refusals", wins, len(errs))
	}
	for _, e := range errs {
		if !reflect.DeepEqual(e, errs[0]) || e.Reason != "VOUCHER_ALREADY_REDEEMED" {
			t.Fatalf("refusals differ:\n%+v\n%+v", e, errs[0])
		}
	}
	if c := f.count(`SELECT count(*) FROM redemptions`); c != 1 {
		t.Fatalf("%d redemptions", c)
	}
	f.verify(p.ID)
}

func TestRedeemIdempotent(t *testing.T) {
	f := newFixture(t, Options{})
	p, book := f.ready()
	site := f.sites[2]
	k := key()
	spec := RedeemSpec{Code: book.Codes[0].String(), Service: services[1], Minutes: 30}
	const n = 20
	res := make([]*Redemption, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[i], errs[i] = f.svc.RedeemVoucher(f.ctx, site, k, spec)
		}()
	}
	wg.Wait()
	for i := range n {
		f.must(errs[i])
		if !reflect.DeepEqual(res[i], res[0]) {
			t.Fatalf("response %d differs:\n%+v\n%+v", i, res[i], res[0])
		}
	}
	later, err := f.svc.RedeemVoucher(f.ctx, site, k, spec)
	f.must(err)
	if !reflect.DeepEqual(later, res[0]) {
		t.Fatalf("sequential replay differs")
	}
	spec.Minutes = 45
	_, err = f.svc.RedeemVoucher(f.ctx, site, k, spec)
	wantFault(t, err, "IDEMPOTENCY_KEY_REUSED")

	// One key for different vouchers at once: one redemption, the others refused.
	k2 := key()
	var (
		mu   sync.Mutex
		wins int
	)
	for _, c := range book.Codes[1:] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := f.svc.RedeemVoucher(f.ctx, site, k2, RedeemSpec{Code: c.String(), Service: services[1], Minutes: 30})
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				wins++
				return
			}
			if !fault.Is(err, "IDEMPOTENCY_KEY_REUSED") {
				t.Errorf("same key, other voucher: %v", err)
			}
		}()
	}
	wg.Wait()
	if wins != 1 {
		t.Fatalf("%d redemptions under one key", wins)
	}
	if c := f.count(`SELECT count(*) FROM redemptions`) + f.count(`SELECT count(*) FROM transactions WHERE kind = 'redemption'`); c != 4 {
		t.Fatalf("%d rows, want two redemptions and two transactions", c)
	}
	f.verify(p.ID)
}

// TestBatchFallback: a batch that fails as a whole is redeemed again item by item, so only the
// bad item fails.
func TestBatchFallback(t *testing.T) {
	f := newFixture(t, Options{})
	p, book := f.ready()
	// A key longer than idempotency_keys accepts (RedeemVoucher refuses it before queueing):
	// the records' insert breaks the whole batch.
	keys := []string{key(), strings.Repeat("k", 201), key()}
	var items []*redeemItem
	for i, k := range keys {
		items = append(items, &redeemItem{ctx: f.ctx, org: f.sites[0].Org, key: k, hash: make([]byte, 32),
			code: book.Codes[i], service: services[0], minutes: 60, date: civil.DateOf(f.clock.Now()), done: make(chan struct{})})
	}
	f.svc.redeemer.execute(items, nil)
	for i, it := range items {
		<-it.done
		if (it.err == nil) != (i != 1) {
			t.Fatalf("item %d: res %+v err %v", i, it.res, it.err)
		}
	}
	if c := f.count(`SELECT count(*) FROM redemptions`); c != 2 {
		t.Fatalf("%d redemptions", c)
	}
	f.verify(p.ID)
}

// TestBatchUnknownSite: an organisation that is no site is refused within its batch, which
// goes on for the others.
func TestBatchUnknownSite(t *testing.T) {
	f := newFixture(t, Options{})
	p, book := f.ready()
	var items []*redeemItem
	for i, org := range []uuid.UUID{f.sites[0].Org, uuid.New(), f.sites[1].Org} {
		items = append(items, &redeemItem{ctx: f.ctx, org: org, key: key(), hash: make([]byte, 32),
			code: book.Codes[i], service: services[0], minutes: 60, date: civil.DateOf(f.clock.Now()), done: make(chan struct{})})
	}
	f.svc.redeemer.execute(items, nil)
	f.must(items[0].err)
	wantFault(t, items[1].err, "SITE_NOT_FOUND")
	f.must(items[2].err)
	if c := f.count(`SELECT count(*) FROM redemptions`); c != 2 {
		t.Fatalf("%d redemptions", c)
	}
	f.verify(p.ID)
}

// TestBatchSameVoucher: two requests on one voucher in one batch: the first wins, the second
// gets exactly the fault a later request gets.
func TestBatchSameVoucher(t *testing.T) {
	f := newFixture(t, Options{})
	p, book := f.ready()
	var items []*redeemItem
	for _, s := range f.sites[:2] {
		items = append(items, &redeemItem{ctx: f.ctx, org: s.Org, key: key(), hash: make([]byte, 32),
			code: book.Codes[0], service: services[0], minutes: 60, date: civil.DateOf(f.clock.Now()), done: make(chan struct{})})
	}
	f.svc.redeemer.execute(items, nil)
	f.must(items[0].err)
	inBatch := wantFault(t, items[1].err, "VOUCHER_ALREADY_REDEEMED")
	_, err := f.redeem(f.sites[2], book.Codes[0].String())
	later := wantFault(t, err, "VOUCHER_ALREADY_REDEEMED")
	if !reflect.DeepEqual(inBatch, later) {
		t.Fatalf("in-batch loser and later loser differ:\n%+v\n%+v", inBatch, later)
	}
	f.verify(p.ID)
}

func TestScopes(t *testing.T) {
	f := newFixture(t, Options{})
	p, _ := f.ready()
	f.order(p, f.mairie, 2)
	lyon := f.org(orgs.KindFunder, "Métropole de Lyon", "69")
	other := f.programme(ProgrammeSpec{Name: "Pass numérique Rhône", Funders: []FunderShare{{Funder: lyon.Org, ShareBps: 10000}},
		ValidFrom: p.ValidFrom, ValidUntil: p.ValidUntil, Territories: []string{"69"}})
	names := func(ps []*Programme) []string {
		var out []string
		for _, x := range ps {
			out = append(out, x.Name)
		}
		return out
	}
	for _, c := range []struct {
		p    auth.Principal
		want []string
	}{
		{f.op, []string{p.Name, other.Name}},
		{f.state, []string{p.Name}},
		{lyon, []string{other.Name}},
		{f.mairie, []string{p.Name}},
		{f.sites[0], []string{p.Name, other.Name}},
	} {
		got, _, err := f.svc.ListProgrammes(f.ctx, c.p, paging.Request{})
		f.must(err)
		if !reflect.DeepEqual(names(got), c.want) {
			t.Errorf("%s sees %v, want %v", c.p.Role, names(got), c.want)
		}
	}
	_, err := f.svc.GetProgramme(f.ctx, lyon, p.ID)
	wantFault(t, err, "PROGRAMME_NOT_FOUND")

	count := func(pr auth.Principal, filter BookFilter) int {
		var all []*Book
		page := paging.Request{Size: 2}
		for {
			bs, next, err := f.svc.ListBooks(f.ctx, pr, filter, page)
			f.must(err)
			all = append(all, bs...)
			if next == "" {
				return len(all)
			}
			page.Token = next
		}
	}
	for _, c := range []struct {
		p      auth.Principal
		filter BookFilter
		want   int
	}{
		{f.op, BookFilter{}, 7},
		{f.caf, BookFilter{}, 5},
		{f.mairie, BookFilter{}, 2},
		{f.caf, BookFilter{Distributor: f.mairie.Org}, 0},
		{f.state, BookFilter{Programme: p.ID}, 7},
		{f.op, BookFilter{Status: BookHandedOut}, 1},
		{lyon, BookFilter{}, 0},
		{f.sites[0], BookFilter{}, 0},
	} {
		if got := count(c.p, c.filter); got != c.want {
			t.Errorf("%s with %+v sees %d books, want %d", c.p.Role, c.filter, got, c.want)
		}
	}
	_, err = f.svc.GetBook(f.ctx, f.mairie, BookRef{Programme: p.ID, Number: 1})
	wantFault(t, err, "BOOK_NOT_FOUND")
	b, err := f.svc.GetBook(f.ctx, f.caf, BookRef{Programme: p.ID, Number: 1})
	f.must(err)
	if len(b.Codes) != 10 {
		t.Fatalf("book codes: %v", b.Codes)
	}
	_, _, err = f.svc.ListBooks(f.ctx, f.op, BookFilter{}, paging.Request{Token: "!!"})
	wantFault(t, err, "INVALID_PAGE_TOKEN")
}

// A redemption's idempotency record names the redemption only; replays rebuild the answer
// from the redemption row and its ledger transaction. Records written before held the whole
// response (but its sequence number) and must replay the same.
func TestRedeemReplaysRecordsOfEitherForm(t *testing.T) {
	f := newFixture(t, Options{})
	_, book := f.ready()
	site := f.sites[1]
	spec := RedeemSpec{Code: book.Codes[2].String(), Service: services[0], Minutes: 75}
	k := key()
	first, err := f.svc.RedeemVoucher(f.ctx, site, k, spec)
	f.must(err)
	var stored []byte
	f.must(f.db.Owner.QueryRow(f.ctx, `SELECT response FROM idempotency_keys WHERE org_id = $1 AND key = $2`,
		site.Org, k).Scan(&stored))
	if want := fmt.Sprintf(`{"code":%d,"round":1}`, int64(first.Code)); string(stored) != want {
		t.Errorf("recorded response %s, want %s", stored, want)
	}

	// The former form, under another key for the same request: what json.Marshal of the
	// answer gave before its ledger sequence number was known.
	old := *first
	old.Ledger.Seq = 0
	whole, err := json.Marshal(old)
	f.must(err)
	oldKey := key()
	_, err = f.db.Owner.Exec(f.ctx, `
		INSERT INTO idempotency_keys (org_id, key, operation, request_hash, response)
		SELECT org_id, $3, operation, request_hash, $4 FROM idempotency_keys WHERE org_id = $1 AND key = $2`,
		site.Org, k, oldKey, whole)
	f.must(err)

	for _, c := range []struct{ name, key string }{{"record naming the redemption", k}, {"record of the whole response", oldKey}} {
		t.Run(c.name, func(t *testing.T) {
			got, err := f.svc.RedeemVoucher(f.ctx, site, c.key, spec)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, first) {
				t.Errorf("replay differs:\n got %+v\nwant %+v", got, first)
			}
		})
	}
	if n := f.count(`SELECT count(*) FROM redemptions WHERE voucher_code = $1`, int64(first.Code)); n != 1 {
		t.Errorf("%d redemptions of the voucher, want 1", n)
	}
}

func TestRedeemerClose(t *testing.T) {
	f := newFixture(t, Options{})
	_, book := f.ready()
	f.svc.Close()
	_, err := f.redeem(f.sites[0], book.Codes[0].String())
	if err != errRedeemerClosed {
		t.Fatalf("after close: %v", err)
	}
	f.svc.Close()
}

// BenchmarkOrderBooks orders 100,000 books of 10 vouchers (one million vouchers) per
// iteration.
func BenchmarkOrderBooks(b *testing.B) {
	f := newFixture(b, Options{})
	p := f.programme(f.spec())
	f.fund(p, f.state, 1_040_000_000*int64(b.N))
	b.ResetTimer()
	for range b.N {
		f.order(p, f.caf, 100_000)
	}
}

// benchCodes returns a fixture with at least b.N handed-out vouchers of one programme.
func benchCodes(b *testing.B) (*fixture, []vcode.Code) {
	f := newFixture(b, Options{})
	p := f.programme(f.spec())
	books := int32(b.N/10 + 1)
	f.fund(p, f.state, int64(books)*10_400)
	f.order(p, f.caf, books)
	var codes []vcode.Code
	for n := range int64(books) {
		codes = append(codes, f.handOut(f.caf, p, n+1).Codes...)
	}
	return f, codes
}

// BenchmarkRedeem redeems vouchers of one programme from many goroutines (the hot-account
// case); it reports redemptions per second.
func BenchmarkRedeem(b *testing.B) {
	f, codes := benchCodes(b)
	ctx := context.Background()
	var next sync.Mutex
	i := 0
	b.SetParallelism(16)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			next.Lock()
			k := i
			i++
			next.Unlock()
			c := codes[k]
			if _, err := f.svc.RedeemVoucher(ctx, f.sites[k%3], key(), RedeemSpec{Code: c.String(), Service: services[0], Minutes: 60}); err != nil {
				b.Error(err)
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "redemptions/s")
}

// The database holds the rules that replaced foreign keys checked row by row, even for the
// schema's owner: a book needs an existing order, never changes order, and orders are never
// edited or deleted (010); a redemption needs its voucher and site, which keep their keys and
// are never deleted (011).
func TestBookOrderRules(t *testing.T) {
	f := newFixture(t, Options{})
	p := f.programme(f.spec())
	f.fund(p, f.state, 104_000)
	o := f.order(p, f.caf, 2)
	f.handOut(f.caf, p, 1) // voucher rows to protect
	var handedOut int64
	if err := f.db.Owner.QueryRow(f.ctx, `SELECT code FROM vouchers WHERE programme_id = $1 LIMIT 1`, p.ID).Scan(&handedOut); err != nil {
		t.Fatal(err)
	}
	const redeem = `
			INSERT INTO redemptions (voucher_code, round, programme_id, site_id, service, minutes, service_date,
			                         amount_cents, redeemed_at, tx_id)
			VALUES ($4, 1, $1, $2, 'x', 60, current_date, 1000, now(), $3)`
	for _, c := range []struct {
		name, sql  string
		args       []any
		sqlstate   string
		constraint string // checked when set
	}{
		{"book of an unknown order", `INSERT INTO books (programme_id, number, order_id, distributor_id) VALUES ($1, 99, $2, $3)`,
			[]any{p.ID, uuid.New(), f.caf.Org}, "23503", ""},
		{"book moved to another order", `UPDATE books SET order_id = $2 WHERE programme_id = $1 AND number = 1`,
			[]any{p.ID, uuid.New()}, "42501", ""},
		{"book given to another distributor", `UPDATE books SET distributor_id = $2 WHERE programme_id = $1 AND number = 1`,
			[]any{p.ID, f.mairie.Org}, "42501", ""},
		{"order edited", `UPDATE book_orders SET books = 1 WHERE id = $1`, []any{o.ID}, "42501", ""},
		{"order deleted", `DELETE FROM book_orders WHERE id = $1`, []any{o.ID}, "42501", ""},
		{"redemption of an unknown voucher", redeem,
			[]any{p.ID, f.sites[0].Org, uuid.New(), 12345}, "23503", "redemptions_voucher_exists"},
		{"redemption at an unknown site", redeem,
			[]any{p.ID, uuid.New(), uuid.New(), handedOut}, "23503", "redemptions_site_exists"},
		{"voucher deleted", `DELETE FROM vouchers WHERE programme_id = $1`, []any{p.ID}, "42501", ""},
		{"voucher code changed", `UPDATE vouchers SET code = code + 1 WHERE programme_id = $1`, []any{p.ID}, "42501", ""},
		{"site deleted", `DELETE FROM sites WHERE org_id = $1`, []any{f.sites[0].Org}, "42501", ""},
		{"site key changed", `UPDATE sites SET org_id = gen_random_uuid() WHERE org_id = $1`, []any{f.sites[0].Org}, "42501", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := f.db.Owner.Exec(f.ctx, c.sql, c.args...)
			code, constraint := pgConstraint(err)
			if code != c.sqlstate || c.constraint != "" && constraint != c.constraint {
				t.Fatalf("err = %v, want SQLSTATE %s %s", err, c.sqlstate, c.constraint)
			}
		})
	}
	if n := f.count(`SELECT count(*) FROM books WHERE programme_id = $1 AND order_id = $2`, p.ID, o.ID); n != 2 {
		t.Fatalf("%d books of the order", n)
	}
	f.verify(p.ID)
}

// BenchmarkRedeemAlone redeems vouchers one at a time from one goroutine, so that every
// batch holds one redemption: its time per op is the per-batch cost that dominates latency
// at moderate load.
func BenchmarkRedeemAlone(b *testing.B) {
	f, codes := benchCodes(b)
	ctx := context.Background()
	b.ResetTimer()
	for i := range b.N {
		if _, err := f.svc.RedeemVoucher(ctx, f.sites[i%3], key(), RedeemSpec{Code: codes[i].String(), Service: services[0], Minutes: 60}); err != nil {
			b.Fatal(err)
		}
	}
}
