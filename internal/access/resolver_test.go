package access_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/passnum/passnum/internal/access"
	"github.com/passnum/passnum/internal/auth"
	"github.com/passnum/passnum/internal/civil"
	"github.com/passnum/passnum/internal/fault"
	"github.com/passnum/passnum/internal/orgs"
	"github.com/passnum/passnum/internal/programmes"
	"github.com/passnum/passnum/internal/testdb"
	"github.com/passnum/passnum/ledger"
)

func TestMain(m *testing.M) { os.Exit(testdb.Main(m)) }

func sorted(ids ...uuid.UUID) []uuid.UUID {
	slices.SortFunc(ids, func(a, b uuid.UUID) int { return strings.Compare(a.String(), b.String()) })
	return ids
}

func TestResolver(t *testing.T) {
	ctx := context.Background()
	db := testdb.New(t)
	l := ledger.New(db.App, nil)
	org, progs := orgs.New(l), programmes.New(l, programmes.Options{})
	t.Cleanup(progs.Close)
	op := auth.Principal{Subject: "op", Org: uuid.New(), Role: auth.RoleOperator}
	if _, err := org.EnsureOperator(ctx, op.Org, "Opérateur"); err != nil {
		t.Fatal(err)
	}
	n := 0
	create := func(r orgs.NewOrganization) uuid.UUID {
		t.Helper()
		n++
		o, err := org.CreateOrganization(ctx, op, fmt.Sprint("org-", n), r)
		if err != nil {
			t.Fatal(err)
		}
		return o.ID
	}
	state := create(orgs.NewOrganization{Kind: orgs.KindFunder, Name: "État"})
	drome := create(orgs.NewOrganization{Kind: orgs.KindFunder, Name: "Drôme", Departement: "26"})
	caf := create(orgs.NewOrganization{Kind: orgs.KindDistributor, Name: "CAF", Departement: "26"})
	mairie := create(orgs.NewOrganization{Kind: orgs.KindDistributor, Name: "Mairie", Departement: "26"})
	site := create(orgs.NewOrganization{Kind: orgs.KindSite, Name: "Médiathèque", SIRET: "11000101300017",
		Site: &orgs.SiteDetails{IBAN: "FR7630006000011234567890189", BIC: "BNPAFRPP", Services: []string{"Aide"}, CodeINSEE: "26362"}})

	y := time.Now().Year()
	prog, err := progs.CreateProgramme(ctx, op, "prog", programmes.ProgrammeSpec{
		Name:            "Pass numérique Drôme",
		Funders:         []programmes.FunderShare{{Funder: state, ShareBps: 5000}, {Funder: drome, ShareBps: 5000}},
		FaceValueCents:  1000,
		VouchersPerBook: 10,
		ValidFrom:       time.Date(y, 1, 1, 0, 0, 0, 0, time.UTC),
		ValidUntil:      time.Date(y, 12, 31, 0, 0, 0, 0, time.UTC),
		GraceDays:       31,
		Territories:     []string{"26"},
		Distributors:    []uuid.UUID{caf, mairie},
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := progs.RecordFunding(ctx, op, "fund", programmes.FundingSpec{Programme: prog.ID, Funder: state,
		AmountCents: 1_000_000, BankReference: "VIR-1", ReceivedOn: civil.DateOf(time.Now())}); err != nil {
		t.Fatal(err)
	}
	if _, err := progs.OrderBooks(ctx, op, "order", programmes.OrderSpec{Programme: prog.ID, Distributor: caf, Books: 2}); err != nil {
		t.Fatal(err)
	}

	res := access.NewResolver(db.App)
	pid := prog.ID.String()
	for _, tc := range []struct {
		r    access.Resource
		want []uuid.UUID // nil: not found
	}{
		{access.Organization(caf.String()), []uuid.UUID{caf}},
		{access.Organization(site.String()), []uuid.UUID{site}},
		{access.Organization(op.Org.String()), []uuid.UUID{op.Org}},
		{access.Organization(uuid.NewString()), nil},
		{access.Organization("not-a-uuid"), nil},
		{access.Resource{Kind: access.KindSite, ID: site.String()}, []uuid.UUID{site}},
		{access.Resource{Kind: access.KindSite, ID: caf.String()}, nil},
		{access.Programme(pid), sorted(state, drome, caf, mairie)},
		{access.Programme(uuid.NewString()), nil},
		{access.Programme(""), nil},
		{access.Book(pid, 1), sorted(state, drome, caf)},
		{access.Book(pid, 2), sorted(state, drome, caf)},
		{access.Book(pid, 3), nil},
		{access.Book(uuid.NewString(), 1), nil},
		{access.Resource{Kind: access.KindBook, ID: pid}, nil},
		{access.Resource{Kind: access.KindBook, ID: pid + "/0"}, nil},
		{access.Resource{Kind: access.KindBook, ID: pid + "/un"}, nil},
		{access.Resource{Kind: access.KindBook, ID: "x/1"}, nil},
	} {
		t.Run(tc.r.Kind+" "+tc.r.ID, func(t *testing.T) {
			got, err := res.Owners(ctx, tc.r)
			if tc.want == nil {
				f, ok := fault.As(err)
				if !ok || f.Kind != fault.NotFound || f.Reason != "OBJECT_NOT_FOUND" {
					t.Fatalf("got %v, %v; want not found", got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(sorted(got.Orgs...), tc.want) {
				t.Fatalf("owners = %v, want %v", got.Orgs, tc.want)
			}
		})
	}
	if _, err := res.Owners(ctx, access.Resource{Kind: "planet", ID: uuid.NewString()}); err == nil {
		t.Fatal("unknown kind answered")
	} else if _, isFault := fault.As(err); isFault {
		t.Fatalf("unknown kind is a fault (a refusal), want a plain error: %v", err)
	}
}
