package programmes

import (
	"context"
	"errors"
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
	"github.com/passnum/passnum/internal/fault"
	"github.com/passnum/passnum/internal/ident"
	"github.com/passnum/passnum/internal/orgs"
	"github.com/passnum/passnum/internal/testdb"
	"github.com/passnum/passnum/ledger"
)

func TestMain(m *testing.M) { os.Exit(testdb.Main(m)) }

// clock is a settable clock for the service under test.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// fixture is one test's database with the organisations of a small territory: the operator,
// two funders (the State and the Drôme), two distributors, three qualified sites in the
// Drôme, and helpers to build a funded programme.
type fixture struct {
	t      testing.TB
	ctx    context.Context
	db     *testdb.DB
	l      *ledger.Ledger
	orgs   *orgs.Service
	svc    *Service
	clock  *clock
	op     auth.Principal
	state  auth.Principal
	drome  auth.Principal
	caf    auth.Principal
	mairie auth.Principal
	sites  []auth.Principal
	names  map[uuid.UUID]string
}

var serial atomic.Int64

// key returns a fresh idempotency key.
func key() string { return "k-" + strconv.FormatInt(serial.Add(1), 10) + "-" + uuid.NewString()[:8] }

func newFixture(t testing.TB, opts Options) *fixture {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	db := testdb.New(t)
	l := ledger.New(db.App, nil)
	c := &clock{t: time.Now()}
	opts.Now = c.Now
	f := &fixture{t: t, ctx: ctx, db: db, l: l, orgs: orgs.New(l), svc: New(l, opts), clock: c,
		names: map[uuid.UUID]string{}}
	t.Cleanup(f.svc.Close)
	f.op = auth.Principal{Subject: "ops", Org: uuid.New(), Role: auth.RoleOperator}
	if _, err := f.orgs.EnsureOperator(ctx, f.op.Org, "Opérateur Pass numérique"); err != nil {
		t.Fatal(err)
	}
	f.state = f.org(orgs.KindFunder, "Agence nationale de la cohésion des territoires", "")
	f.drome = f.org(orgs.KindFunder, "Département de la Drôme", "26")
	f.caf = f.org(orgs.KindDistributor, "CAF de la Drôme", "26")
	f.mairie = f.org(orgs.KindDistributor, "Mairie de Valence", "26")
	for i, name := range []string{"Espace numérique de Die", "Médiathèque de Crest", "France Services Nyons"} {
		f.sites = append(f.sites, f.site(name, "26"+[]string{"113", "108", "220"}[i], true))
	}
	return f
}

func (f *fixture) must(err error) {
	f.t.Helper()
	if err != nil {
		f.t.Fatal(err)
	}
}

func roleOf(k orgs.Kind) auth.Role {
	return map[orgs.Kind]auth.Role{orgs.KindFunder: auth.RoleFunder, orgs.KindDistributor: auth.RoleDistributor,
		orgs.KindSite: auth.RoleSite}[k]
}

func (f *fixture) org(kind orgs.Kind, name, dep string) auth.Principal {
	f.t.Helper()
	o, err := f.orgs.CreateOrganization(f.ctx, f.op, key(), orgs.NewOrganization{Kind: kind, Name: name, Departement: dep})
	f.must(err)
	f.names[o.ID] = name
	return auth.Principal{Subject: "user", Org: o.ID, Role: roleOf(kind)}
}

// services are the catalogue of every test site.
var services = []string{"Aide aux démarches administratives", "Prise en main d'un smartphone ou d'une tablette"}

// site registers a site in the commune with INSEE code insee and qualifies it for this year
// and the next if qualify.
func (f *fixture) site(name, insee string, qualify bool) auth.Principal {
	f.t.Helper()
	n := serial.Add(1)
	o, err := f.orgs.CreateOrganization(f.ctx, f.op, key(), orgs.NewOrganization{
		Kind: orgs.KindSite, Name: name, SIRET: testSIRET(n),
		Site: &orgs.SiteDetails{IBAN: testIBAN(n), BIC: "CEPAFRPP", Services: services, CodeINSEE: insee,
			Commune: name, Adresse: "1 place de la Mairie"},
	})
	f.must(err)
	f.names[o.ID] = name
	p := auth.Principal{Subject: "accueil", Org: o.ID, Role: auth.RoleSite}
	if qualify {
		y := time.Now().Year()
		_, err := f.orgs.QualifySite(f.ctx, f.op, key(), o.ID, orgs.Qualification{
			ValidFrom: time.Date(y-1, 1, 1, 0, 0, 0, 0, time.UTC), ValidUntil: time.Date(y+1, 12, 31, 0, 0, 0, 0, time.UTC),
			LegalRepresentative: "Camille Martin"})
		f.must(err)
	}
	return p
}

// testSIRET is a Luhn-valid SIRET derived from n.
func testSIRET(n int64) string {
	body := fmt.Sprintf("8%012d", n%1_000_000_000_000)
	return ident.CompleteSIRET(body)
}

// testIBAN is a valid French IBAN (RIB key and check digits) whose account number is n.
func testIBAN(n int64) string {
	bank, branch, account := int64(30003), int64(1234), n%100_000_000_000
	key := 97 - (89*bank+15*branch+3*account)%97
	bban := fmt.Sprintf("%05d%05d%011d%02d", bank, branch, account, key)
	rem := 0
	for _, c := range bban + "152700" { // FR00
		rem = (rem*10 + int(c-'0')) % 97
	}
	return fmt.Sprintf("FR%02d%s", 98-rem, bban)
}

// spec is a programme co-financed 50/50 by the State and the Drôme, valid this year and the
// next, in the Drôme and the Ardèche, with both distributors.
func (f *fixture) spec() ProgrammeSpec {
	y := time.Now().Year()
	return ProgrammeSpec{
		Name:         "Pass numérique Drôme",
		Funders:      []FunderShare{{Funder: f.state.Org, ShareBps: 5000, CapCents: 150_000_000}, {Funder: f.drome.Org, ShareBps: 5000}},
		ValidFrom:    time.Date(y-1, 1, 1, 0, 0, 0, 0, time.UTC),
		ValidUntil:   time.Date(y+1, 12, 31, 0, 0, 0, 0, time.UTC),
		Territories:  []string{"26", "07"},
		Distributors: []uuid.UUID{f.caf.Org, f.mairie.Org},
		FeeBps:       400,
	}
}

func (f *fixture) programme(sp ProgrammeSpec) *Programme {
	f.t.Helper()
	p, err := f.svc.CreateProgramme(f.ctx, f.op, key(), sp)
	f.must(err)
	return p
}

func (f *fixture) fund(p *Programme, funder auth.Principal, amount int64) *Funding {
	f.t.Helper()
	fd, err := f.svc.RecordFunding(f.ctx, f.op, key(), FundingSpec{Programme: p.ID, Funder: funder.Org,
		AmountCents: amount, BankReference: "VIR-" + uuid.NewString()[:8], ReceivedOn: civil.DateOf(f.clock.Now())})
	f.must(err)
	return fd
}

func (f *fixture) order(p *Programme, dist auth.Principal, books int32) *Order {
	f.t.Helper()
	o, err := f.svc.OrderBooks(f.ctx, f.op, key(), OrderSpec{Programme: p.ID, Distributor: dist.Org, Books: books})
	f.must(err)
	return o
}

func (f *fixture) handOut(dist auth.Principal, p *Programme, number int64) *Book {
	f.t.Helper()
	b, err := f.svc.HandOutBook(f.ctx, dist, key(), HandOutSpec{Book: BookRef{Programme: p.ID, Number: number},
		TargetPublic: true, Territory: "26"})
	f.must(err)
	return b
}

// ready is a funded programme with one book handed out by the CAF; it returns the book.
func (f *fixture) ready() (*Programme, *Book) {
	f.t.Helper()
	p := f.programme(f.spec())
	f.fund(p, f.state, 104_000)
	f.fund(p, f.drome, 104_000)
	f.order(p, f.caf, 5)
	return p, f.handOut(f.caf, p, 1)
}

func (f *fixture) redeem(site auth.Principal, code string) (*Redemption, error) {
	return f.svc.RedeemVoucher(f.ctx, site, key(), RedeemSpec{Code: code, Service: services[0], Minutes: 90})
}

// verify fails the test unless the ledger verifies.
func (f *fixture) verify(programme uuid.UUID) {
	f.t.Helper()
	rep, err := f.l.Verify(f.ctx, programme)
	f.must(err)
	for _, c := range rep.Checks {
		if !c.OK {
			f.t.Errorf("ledger check %s failed: %s %v", c.Name, c.Detail, c.Figures)
		}
	}
	if !rep.OK {
		f.t.FailNow()
	}
}

func (f *fixture) totals(programme uuid.UUID) map[ledger.AccountKind]int64 {
	f.t.Helper()
	bs, err := ledger.Balances(f.ctx, f.db.App, programme)
	f.must(err)
	return ledger.Totals(bs)
}

// wantFault fails unless err is a fault with that reason; it returns the fault.
func wantFault(t testing.TB, err error, reason string) *fault.Error {
	t.Helper()
	var fe *fault.Error
	if !errors.As(err, &fe) {
		t.Fatalf("want fault %s, got %v", reason, err)
	}
	if fe.Reason != reason {
		t.Fatalf("want fault %s, got %s: %s", reason, fe.Reason, fe.Message)
	}
	return fe
}

func (f *fixture) count(sql string, args ...any) int64 {
	f.t.Helper()
	var n int64
	f.must(f.db.Owner.QueryRow(f.ctx, sql, args...).Scan(&n))
	return n
}
