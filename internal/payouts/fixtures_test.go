package payouts_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/passnum/passnum/internal/auth"
	"github.com/passnum/passnum/internal/civil"
	"github.com/passnum/passnum/internal/ident"
	"github.com/passnum/passnum/internal/orgs"
	"github.com/passnum/passnum/internal/payouts"
	"github.com/passnum/passnum/internal/programmes"
	"github.com/passnum/passnum/internal/testdb"
	"github.com/passnum/passnum/internal/vcode"
	"github.com/passnum/passnum/ledger"
)

func TestMain(m *testing.M) { os.Exit(testdb.Main(m)) }

// clock is a settable time source for the service.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// set moves the clock to noon (Paris) of a civil date "YYYY-MM-DD".
func (c *clock) set(day string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = noon(day)
}

func date(s string) time.Time {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		panic(err)
	}
	return t
}

func noon(day string) time.Time {
	d := date(day)
	return time.Date(d.Year(), d.Month(), d.Day(), 12, 0, 0, 0, civil.Paris)
}

// world is a test database where organisations, programmes, books, redemptions and
// reversals are made by the domain services (internal/orgs, internal/programmes), all on one
// settable clock, as the application makes them.
type world struct {
	t        *testing.T
	ctx      context.Context
	db       *testdb.DB
	l        *ledger.Ledger
	orgs     *orgs.Service
	progs    *programmes.Service
	svc      *payouts.Service
	clock    *clock
	operator auth.Principal
}

var serial atomic.Int64

func newWorld(t *testing.T) *world {
	t.Helper()
	db := testdb.New(t)
	w := &world{t: t, ctx: context.Background(), db: db, l: ledger.New(db.App, nil), clock: &clock{}}
	w.clock.set("2026-01-02")
	w.orgs = orgs.New(w.l)
	w.progs = programmes.New(w.l, programmes.Options{Now: w.clock.now})
	t.Cleanup(w.progs.Close)
	var err error
	w.svc, err = payouts.New(w.l, payouts.Config{Now: w.clock.now})
	if err != nil {
		t.Fatal(err)
	}
	w.operator = auth.Principal{Subject: "ops", Org: uuid.New(), Role: auth.RoleOperator}
	_, err = w.orgs.EnsureOperator(w.ctx, w.operator.Org, "Opérateur Pass numérique")
	w.must(err)
	return w
}

func (w *world) must(err error) {
	w.t.Helper()
	if err != nil {
		w.t.Fatal(err)
	}
}

// key returns a fresh idempotency key.
func (w *world) key() string { return "k-" + strconv.FormatInt(serial.Add(1), 10) }

// org registers a funder or a distributor (in the Drôme).
func (w *world) org(kind orgs.Kind, name string) uuid.UUID {
	w.t.Helper()
	dep := "26"
	if kind == orgs.KindFunder {
		dep = ""
	}
	o, err := w.orgs.CreateOrganization(w.ctx, w.operator, w.key(), orgs.NewOrganization{Kind: kind, Name: name, Departement: dep})
	w.must(err)
	return o.ID
}

func (w *world) funder(name string) uuid.UUID { return w.org(orgs.KindFunder, name) }

// testSIRET is a Luhn-valid SIRET derived from n.
func testSIRET(n int64) string {
	body := fmt.Sprintf("7%012d", n%1_000_000_000_000)
	return ident.CompleteSIRET(body)
}

// testIBANs are the accounts sites are paid on (valid French IBANs).
var testIBANs = []string{"FR7630006000011234567890189", "FR1420041010050500013M02606", "FR7630001007941234567890185"}

const testService = "Aide aux démarches administratives"

// site registers a site in Crest (Drôme), paid on testIBANs[iban], qualified from 2020 on.
func (w *world) site(name string, iban int) uuid.UUID {
	w.t.Helper()
	o, err := w.orgs.CreateOrganization(w.ctx, w.operator, w.key(), orgs.NewOrganization{
		Kind: orgs.KindSite, Name: name, SIRET: testSIRET(serial.Add(1)),
		Site: &orgs.SiteDetails{IBAN: testIBANs[iban%len(testIBANs)], BIC: "CCBPFRPPVER", Services: []string{testService},
			CodeINSEE: "26108", Commune: "Crest", Adresse: "1 place de la Mairie"},
	})
	w.must(err)
	_, err = w.orgs.QualifySite(w.ctx, w.operator, w.key(), o.ID, orgs.Qualification{
		ValidFrom: date("2020-01-01"), ValidUntil: date("2099-12-31"), LegalRepresentative: "Camille Martin"})
	w.must(err)
	return o.ID
}

type share struct {
	funder uuid.UUID
	bps    int32
}

type programme struct {
	id          uuid.UUID
	distributor auth.Principal
}

// programme opens a programme valid from 2026-01-01 to validUntil (grace: the default 31
// days), with 4 % fees and its own distributor. The clock must be within its validity.
func (w *world) programme(name string, face int64, perBook int32, validUntil string, shares ...share) *programme {
	w.t.Helper()
	dist := w.org(orgs.KindDistributor, "CAF "+name)
	sp := programmes.ProgrammeSpec{
		Name: name, FaceValueCents: face, VouchersPerBook: perBook,
		ValidFrom: date("2026-01-01"), ValidUntil: date(validUntil),
		Territories: []string{"26"}, Distributors: []uuid.UUID{dist}, FeeBps: 400,
	}
	for _, s := range shares {
		sp.Funders = append(sp.Funders, programmes.FunderShare{Funder: s.funder, ShareBps: s.bps})
	}
	pr, err := w.progs.CreateProgramme(w.ctx, w.operator, w.key(), sp)
	w.must(err)
	return &programme{id: pr.ID, distributor: auth.Principal{Subject: "accueil", Org: dist, Role: auth.RoleDistributor}}
}

// fund books amount cents paid in by a funder and returns the fee charged on it.
func (w *world) fund(p *programme, funder uuid.UUID, amount int64) int64 {
	w.t.Helper()
	f, err := w.progs.RecordFunding(w.ctx, w.operator, w.key(), programmes.FundingSpec{Programme: p.id, Funder: funder,
		AmountCents: amount, BankReference: "VIR-" + uuid.NewString()[:8], ReceivedOn: civil.DateOf(w.clock.now())})
	w.must(err)
	return f.FeeCents
}

// book is a book's number and its voucher codes, in position order.
type book struct {
	number int64
	codes  []vcode.Code
}

// order issues n books to the programme's distributor.
func (w *world) order(p *programme, n int32) []book {
	w.t.Helper()
	o, err := w.progs.OrderBooks(w.ctx, w.operator, w.key(), programmes.OrderSpec{Programme: p.id,
		Distributor: p.distributor.Org, Books: n})
	w.must(err)
	var out []book
	for num := o.FirstNumber; num <= o.LastNumber; num++ {
		b, err := w.progs.GetBook(w.ctx, w.operator, programmes.BookRef{Programme: p.id, Number: num})
		w.must(err)
		out = append(out, book{number: num, codes: b.Codes})
	}
	return out
}

// handOut hands a book out today: its vouchers become available.
func (w *world) handOut(p *programme, b book) {
	w.t.Helper()
	_, err := w.progs.HandOutBook(w.ctx, p.distributor, w.key(), programmes.HandOutSpec{
		Book: programmes.BookRef{Programme: p.id, Number: b.number}, TargetPublic: true, Territory: "26"})
	w.must(err)
}

// redemption is a redemption made by the fixtures.
type redemption struct {
	code  vcode.Code
	round int16
	site  uuid.UUID
}

func asSite(site uuid.UUID) auth.Principal {
	return auth.Principal{Subject: "accueil", Org: site, Role: auth.RoleSite}
}

// redeem redeems a voucher at a site on day (the clock moves there) for a service that day.
func (w *world) redeem(code vcode.Code, site uuid.UUID, day string) redemption {
	w.t.Helper()
	w.clock.set(day)
	r, err := w.progs.RedeemVoucher(w.ctx, asSite(site), w.key(), programmes.RedeemSpec{
		Code: code.String(), Service: testService, Minutes: 90, ServiceDate: date(day)})
	w.must(err)
	return redemption{code: code, round: int16(r.Round), site: site}
}

// reverse reverses a redemption for an error on day (the clock moves there): the voucher is
// available again.
func (w *world) reverse(r redemption, day string) {
	w.t.Helper()
	w.clock.set(day)
	_, err := w.progs.ReverseRedemption(w.ctx, w.operator, w.key(), programmes.ReverseSpec{
		Code: r.code.String(), Reason: programmes.ReasonError, Note: "saisie en double"})
	w.must(err)
}

// balance is one account's balance.
func (w *world) balance(p *programme, kind ledger.AccountKind, owner uuid.UUID) int64 {
	w.t.Helper()
	b, err := ledger.BalanceOf(w.ctx, w.db.App, ledger.AccountRef{Programme: p.id, Kind: kind, Owner: owner})
	w.must(err)
	return b
}
