package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"golang.org/x/sync/errgroup"

	"github.com/passnum/passnum/internal/auth"
	"github.com/passnum/passnum/internal/civil"
	"github.com/passnum/passnum/internal/ident"
	"github.com/passnum/passnum/internal/orgs"
	pb "github.com/passnum/passnum/proto/passnum/v1"
)

// Shape of the seeded territory: one département, every site in it.
const (
	territory     = "26"
	siteIBAN      = "FR7630006000011234567890189"
	siteBIC       = "AGRIFRPP"
	seedWorkers   = 32 // concurrent seeding calls
	faceValue     = 1000
	perBook       = 10
	feeBps        = 400
	redeemMinutes = 60
)

// siteService is what every site offers and the load redeems for.
var siteService = orgs.NationalServices[0]

// world is what the seeding created.
type world struct {
	funder, distributor          uuid.UUID
	funderToken, distToken       string
	sites                        []site
	validFrom, validUntil, today time.Time
}

type site struct {
	id    uuid.UUID
	token string
}

// seedOrgs registers a funder, a distributor and n qualified sites through the API.
func (b *bench) seedOrgs(ctx context.Context, n int) (*world, error) {
	a := b.api
	op := as(ctx, a.operatorToken)
	today := civil.DateOf(time.Now())
	w := &world{today: today, validFrom: today.AddDate(0, -2, 0), validUntil: today.AddDate(0, 10, 0)}
	funder, err := a.orgs[0].CreateOrganization(op, &pb.CreateOrganizationRequest{
		IdempotencyKey: "bench-funder", Kind: pb.OrganizationKind_ORGANIZATION_KIND_FUNDER,
		Name: "Département de la Drôme", Departement: territory, Siret: siret(900_000_000)})
	if err != nil {
		return nil, fmt.Errorf("create funder: %w", err)
	}
	dist, err := a.orgs[0].CreateOrganization(op, &pb.CreateOrganizationRequest{
		IdempotencyKey: "bench-distributor", Kind: pb.OrganizationKind_ORGANIZATION_KIND_DISTRIBUTOR,
		Name: "CAF de la Drôme", Departement: territory, Siret: siret(900_000_001)})
	if err != nil {
		return nil, fmt.Errorf("create distributor: %w", err)
	}
	if w.funder, err = uuid.Parse(funder.GetId()); err != nil {
		return nil, err
	}
	if w.distributor, err = uuid.Parse(dist.GetId()); err != nil {
		return nil, err
	}
	if w.funderToken, err = a.keys.token(auth.RoleFunder, w.funder); err != nil {
		return nil, err
	}
	if w.distToken, err = a.keys.token(auth.RoleDistributor, w.distributor); err != nil {
		return nil, err
	}

	began := time.Now()
	w.sites = make([]site, n)
	var next atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	for k := range seedWorkers {
		orgsClient := a.orgs[k%len(a.orgs)]
		g.Go(func() error {
			op := as(gctx, a.operatorToken)
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return nil
				}
				insee := fmt.Sprintf("26%03d", 1+i%380)
				o, err := orgsClient.CreateOrganization(op, &pb.CreateOrganizationRequest{
					IdempotencyKey: "bench-site-" + strconv.Itoa(i), Kind: pb.OrganizationKind_ORGANIZATION_KIND_SITE,
					Name: fmt.Sprintf("Espace numérique n° %d", i+1), Siret: siret(800_000_000 + i),
					Site: &pb.Site{Iban: siteIBAN, Bic: siteBIC, Services: []string{siteService},
						Commune: "Valence", CodePostal: "26000", CodeInsee: insee, Adresse: fmt.Sprintf("%d avenue Victor Hugo", i+1)}})
				if err != nil {
					return fmt.Errorf("create site %d: %w", i, err)
				}
				if _, err := orgsClient.QualifySite(op, &pb.QualifySiteRequest{
					IdempotencyKey: "bench-qualify-" + strconv.Itoa(i), SiteId: o.GetId(),
					ValidFrom: civil.FormatDate(w.validFrom), ValidUntil: civil.FormatDate(w.validUntil),
					LegalRepresentative: "Camille Martin"}); err != nil {
					return fmt.Errorf("qualify site %d: %w", i, err)
				}
				id, err := uuid.Parse(o.GetId())
				if err != nil {
					return err
				}
				tok, err := a.keys.token(auth.RoleSite, id)
				if err != nil {
					return err
				}
				w.sites[i] = site{id: id, token: tok}
			}
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	b.log.Info("sites registered and qualified", "sites", n, "took", time.Since(began).Round(time.Millisecond))
	return w, nil
}

// createFundedProgramme creates a programme of the world's funder and distributor, funded
// for vouchers vouchers, and returns its id.
func (b *bench) createFundedProgramme(ctx context.Context, w *world, name string, vouchers int64) (string, error) {
	a := b.api
	op := as(ctx, a.operatorToken)
	p, err := a.progs[0].CreateProgramme(op, &pb.CreateProgrammeRequest{
		IdempotencyKey: "bench-programme-" + name, Name: name,
		Funders:   []*pb.ProgrammeFunder{{FunderId: w.funder.String(), ShareBps: 10000}},
		ValidFrom: civil.FormatDate(w.validFrom), ValidUntil: civil.FormatDate(w.validUntil),
		Territories: []string{territory}, DistributorIds: []string{w.distributor.String()}, FeeBps: feeBps,
		FaceValueCents: faceValue, VouchersPerBook: perBook})
	if err != nil {
		return "", fmt.Errorf("create programme %s: %w", name, err)
	}
	// Paying A buys a budget of A − ⌊A × fee / (10000 + fee)⌋: pay enough for the vouchers.
	budget := vouchers * faceValue
	amount := (budget*(10000+feeBps)+9999)/10000 + 1
	if _, err := a.progs[0].RecordFunding(op, &pb.RecordFundingRequest{
		IdempotencyKey: "bench-funding-" + name, ProgrammeId: p.GetId(), FunderId: w.funder.String(),
		AmountCents: amount, BankReference: "VIR-BENCH-" + name, ReceivedOn: civil.FormatDate(w.validFrom)}); err != nil {
		return "", fmt.Errorf("fund programme %s: %w", name, err)
	}
	return p.GetId(), nil
}

// supply hands out books of one order as vouchers are needed and keeps their codes.
type supply struct {
	b          *bench
	w          *world
	programme  string
	first      int64 // next book to hand out
	last       int64
	mu         sync.Mutex
	codes      []string
	handedOut  int
	handOutDur time.Duration
}

// orderBooks orders books for the world's distributor, as the funder.
func (b *bench) orderBooks(ctx context.Context, w *world, programme, key string, books int) (*pb.OrderBooksResponse, error) {
	return b.api.books[0].OrderBooks(as(ctx, w.funderToken), &pb.OrderBooksRequest{
		IdempotencyKey: key, ProgrammeId: programme, DistributorId: w.distributor.String(), Books: int32(books)})
}

// ensure hands out books until at least n vouchers are available.
func (s *supply) ensure(ctx context.Context, n int) error {
	need := (n - len(s.codes) + perBook - 1) / perBook
	if need <= 0 {
		return nil
	}
	if s.first+int64(need)-1 > s.last {
		return fmt.Errorf("need %d more books, only %d ordered are left", need, s.last-s.first+1)
	}
	began := time.Now()
	a := s.b.api
	first := s.first
	s.first += int64(need)
	var next atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	for k := range seedWorkers {
		books := a.books[k%len(a.books)]
		g.Go(func() error {
			dist := as(gctx, s.w.distToken)
			for {
				i := next.Add(1) - 1
				if i >= int64(need) {
					return nil
				}
				number := first + i
				bk, err := books.HandOutBook(dist, &pb.HandOutBookRequest{
					IdempotencyKey: "bench-hand-out-" + s.programme + "-" + strconv.FormatInt(number, 10),
					Book:           &pb.BookRef{ProgrammeId: s.programme, Number: number},
					TargetPublic:   number%5 < 3, Territory: territory})
				if err != nil {
					return fmt.Errorf("hand out book %d: %w", number, err)
				}
				s.mu.Lock()
				s.codes = append(s.codes, bk.GetVoucherCodes()...)
				s.mu.Unlock()
			}
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	s.handedOut += need
	s.handOutDur += time.Since(began)
	s.b.log.Info("books handed out", "books", need, "vouchers available", len(s.codes), "took", time.Since(began).Round(time.Millisecond))
	return nil
}

// take removes n vouchers from the supply, in random order: in the field a book's vouchers
// are used over weeks, mostly one at a time, not by consecutive requests a millisecond apart.
func (s *supply) take(n int) []string {
	n = min(n, len(s.codes))
	out := s.codes[:n:n]
	s.codes = s.codes[n:]
	rand.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// siret completes a 9-digit SIREN into a 14-digit SIRET (establishment 0001) with its Luhn
// check digit.
func siret(siren int) string {
	body := fmt.Sprintf("%09d0001", siren)
	return ident.CompleteSIRET(body)
}
