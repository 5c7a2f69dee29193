// Package seed fills a database with a small, realistic Pass numérique territory for
// demonstrations (`make run`): an operator; the State (ANCT) and the Drôme co-financing one
// programme 50/50 with a 4 % fee; two distributors; three qualified mediation sites; the
// funding; 300 books of 10 × 10 €, most of them handed out (about 60 % to the target public);
// and a few dozen redemptions.
//
// Everything goes through the domain services, as an operator, funders, distributors and sites
// would do it, so the demo data obeys every rule and the ledger verifies. Every write uses a
// fixed idempotency key: running Demo again on the same database (the same year) replays the
// recorded answers and returns the same organisations.
package seed

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/passnum/passnum/internal/auth"
	"github.com/passnum/passnum/internal/civil"
	"github.com/passnum/passnum/internal/ident"
	"github.com/passnum/passnum/internal/orgs"
	"github.com/passnum/passnum/internal/programmes"
)

// DemoOrgs are the organisations and the programme Demo creates, by role.
type DemoOrgs struct {
	Operator     uuid.UUID
	Funders      []uuid.UUID // the State (ANCT), then the Drôme
	Distributors []uuid.UUID // the CAF de la Drôme, then the Mairie de Valence
	Sites        []uuid.UUID
	Programme    uuid.UUID
}

// Figures of the demo.
const (
	booksCAF       = 200
	booksMairie    = 100
	handedOutEvery = 5 // of every 5 books, 4 are handed out
	targetEvery    = 5 // of every 5 handed out, 3 go to the target public
	redeemedBooks  = 40
	redeemedPerBk  = 2
	fundingCents   = 2_080_000 // per funder: 20 800 € paid, 20 000 € of vouchers after the 4 % fee
)

type siteSpec struct {
	name, insee, postal, commune, address, siret, iban, bic, legalRep string
	services                                                          []string
}

// Demo builds the demo territory as the operator whose organisation id is operator (the id
// its tokens carry) and returns who is who.
func Demo(ctx context.Context, o *orgs.Service, p *programmes.Service, operator uuid.UUID) (DemoOrgs, error) {
	d := DemoOrgs{Operator: operator}
	if _, err := o.EnsureOperator(ctx, operator, "Opérateur Pass numérique"); err != nil {
		return d, fmt.Errorf("seed operator: %w", err)
	}
	year := time.Now().In(civil.Paris).Year()
	k := func(step string) string { return "seed-" + strconv.Itoa(year) + "-" + step }
	op := auth.Principal{Subject: "seed", Org: operator, Role: auth.RoleOperator}

	create := func(step string, in orgs.NewOrganization) (uuid.UUID, error) {
		org, err := o.CreateOrganization(ctx, op, k(step), in)
		if err != nil {
			return uuid.Nil, fmt.Errorf("seed %s: %w", in.Name, err)
		}
		return org.ID, nil
	}
	for i, in := range []orgs.NewOrganization{
		{Kind: orgs.KindFunder, Name: "Agence nationale de la cohésion des territoires (ANCT)", SIRET: siret("1300201600")},
		{Kind: orgs.KindFunder, Name: "Département de la Drôme", Departement: "26", SIRET: siret("2226000170")},
	} {
		id, err := create("funder-"+strconv.Itoa(i), in)
		if err != nil {
			return d, err
		}
		d.Funders = append(d.Funders, id)
	}
	for i, in := range []orgs.NewOrganization{
		{Kind: orgs.KindDistributor, Name: "CAF de la Drôme", Departement: "26", SIRET: siret("7795096150")},
		{Kind: orgs.KindDistributor, Name: "Mairie de Valence", Departement: "26", SIRET: siret("2126036200")},
	} {
		id, err := create("distributor-"+strconv.Itoa(i), in)
		if err != nil {
			return d, err
		}
		d.Distributors = append(d.Distributors, id)
	}
	sites := []siteSpec{
		{name: "Espace numérique de Die", insee: "26113", postal: "26150", commune: "Die", address: "2 rue Joseph Reynaud",
			siret: siret("8312457690"), iban: iban("10278", "08912", "00020145601"), bic: "CMCIFR2A",
			legalRep: "Claire Fabre", services: []string{orgs.NationalServices[0], orgs.NationalServices[1], orgs.NationalServices[2]}},
		{name: "Médiathèque de Crest", insee: "26108", postal: "26400", commune: "Crest", address: "6 place du Docteur Maurice Rozier",
			siret: siret("2126010800"), iban: iban("30001", "00415", "C2650000000"), bic: "BDFEFRPPCCT",
			legalRep: "Julien Roux", services: []string{orgs.NationalServices[1], orgs.NationalServices[2], orgs.NationalServices[6]}},
		{name: "France Services Nyons", insee: "26220", postal: "26110", commune: "Nyons", address: "Place Joseph Buffaven",
			siret: siret("2000402480"), iban: iban("16806", "02600", "66021587134"), bic: "AGRIFRPP868",
			legalRep: "Nadia Benali", services: []string{orgs.NationalServices[0], orgs.NationalServices[3]}},
	}
	for i, s := range sites {
		id, err := create("site-"+strconv.Itoa(i), orgs.NewOrganization{Kind: orgs.KindSite, Name: s.name, SIRET: s.siret,
			Site: &orgs.SiteDetails{IBAN: s.iban, BIC: s.bic, Services: s.services, Commune: s.commune,
				CodePostal: s.postal, CodeINSEE: s.insee, Adresse: s.address, LegalRepresentative: s.legalRep}})
		if err != nil {
			return d, err
		}
		if _, err := o.QualifySite(ctx, op, k("qualify-"+strconv.Itoa(i)), id, orgs.Qualification{
			ValidFrom:  time.Date(year, 1, 1, 0, 0, 0, 0, time.UTC),
			ValidUntil: time.Date(year+1, 12, 31, 0, 0, 0, 0, time.UTC),
		}); err != nil {
			return d, fmt.Errorf("seed qualify %s: %w", s.name, err)
		}
		d.Sites = append(d.Sites, id)
	}

	start := time.Date(year, 1, 1, 0, 0, 0, 0, time.UTC)
	prog, err := p.CreateProgramme(ctx, op, k("programme"), programmes.ProgrammeSpec{
		Name: fmt.Sprintf("Pass numérique Drôme %d", year),
		Funders: []programmes.FunderShare{
			{Funder: d.Funders[0], ShareBps: 5000, CapCents: 150_000_000}, // the State's 1.5 M€ ceiling
			{Funder: d.Funders[1], ShareBps: 5000},
		},
		ValidFrom: start, ValidUntil: time.Date(year, 12, 31, 0, 0, 0, 0, time.UTC),
		Territories: []string{"26"}, Distributors: d.Distributors, FeeBps: 400,
	})
	if err != nil {
		return d, fmt.Errorf("seed programme: %w", err)
	}
	d.Programme = prog.ID
	for i, f := range d.Funders {
		if _, err := p.RecordFunding(ctx, op, k("funding-"+strconv.Itoa(i)), programmes.FundingSpec{
			Programme: prog.ID, Funder: f, AmountCents: fundingCents,
			BankReference: fmt.Sprintf("VIR-SEPA-%d-%04d", year, 17+i), ReceivedOn: start,
		}); err != nil {
			return d, fmt.Errorf("seed funding: %w", err)
		}
	}

	var handed []*programmes.Book
	for i, o := range []struct {
		dist  uuid.UUID
		books int32
	}{{d.Distributors[0], booksCAF}, {d.Distributors[1], booksMairie}} {
		order, err := p.OrderBooks(ctx, op, k("order-"+strconv.Itoa(i)), programmes.OrderSpec{
			Programme: prog.ID, Distributor: o.dist, Books: o.books})
		if err != nil {
			return d, fmt.Errorf("seed order: %w", err)
		}
		dist := auth.Principal{Subject: "seed", Org: o.dist, Role: auth.RoleDistributor}
		for n := order.FirstNumber; n <= order.LastNumber; n++ {
			if n%handedOutEvery == 0 {
				continue // kept in stock
			}
			b, err := p.HandOutBook(ctx, dist, k("hand-out-"+strconv.FormatInt(n, 10)), programmes.HandOutSpec{
				Book: programmes.BookRef{Programme: prog.ID, Number: n}, Territory: "26",
				TargetPublic: len(handed)%targetEvery < 3})
			if err != nil {
				return d, fmt.Errorf("seed hand out book %d: %w", n, err)
			}
			handed = append(handed, b)
		}
	}

	for i, b := range handed[:redeemedBooks] {
		si := i % len(sites)
		site := auth.Principal{Subject: "seed", Org: d.Sites[si], Role: auth.RoleSite}
		for j := range redeemedPerBk {
			if _, err := p.RedeemVoucher(ctx, site, k(fmt.Sprintf("redeem-%d-%d", b.Number, j)), programmes.RedeemSpec{
				Code: b.Codes[j].String(), Service: sites[si].services[j%len(sites[si].services)], Minutes: int32(60 + 30*j),
			}); err != nil {
				return d, fmt.Errorf("seed redeem %s: %w", b.Codes[j], err)
			}
		}
	}
	return d, nil
}

// siret completes a 10-digit SIREN-like prefix into a Luhn-valid SIRET (14 digits).
func siret(prefix string) string {
	body := prefix + "001"
	return ident.CompleteSIRET(body)
}

// iban builds a French IBAN from a bank code, a branch code and an 11-character account
// number, with its RIB key and check digits.
func iban(bank, branch, account string) string {
	digits := func(s string) int64 {
		var n int64
		for _, c := range s {
			var d int64
			switch {
			case c >= '0' && c <= '9':
				d = int64(c - '0')
			case c <= 'I':
				d = int64(c-'A') + 1
			case c <= 'R':
				d = int64(c-'J') + 1
			default:
				d = int64(c-'S') + 2
			}
			n = n*10 + d
		}
		return n
	}
	key := 97 - (89*digits(bank)+15*digits(branch)+3*digits(account))%97
	bban := fmt.Sprintf("%s%s%s%02d", bank, branch, account, key)
	rem := 0
	for _, c := range bban + "FR00" {
		if c >= '0' && c <= '9' {
			rem = (rem*10 + int(c-'0')) % 97
		} else {
			rem = (rem*100 + int(c-'A') + 10) % 97
		}
	}
	return fmt.Sprintf("FR%02d%s", 98-rem, bban)
}
