package orgs

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/passnum/passnum/internal/auth"
	"github.com/passnum/passnum/internal/civil"
	"github.com/passnum/passnum/internal/fault"
	"github.com/passnum/passnum/internal/ident"
	"github.com/passnum/passnum/internal/testdb"
	"github.com/passnum/passnum/ledger"
)

func TestMain(m *testing.M) { os.Exit(testdb.Main(m)) }

const (
	testIBAN = "FR7630006000011234567890189"
	testBIC  = "BNPAFRPP"
)

// siret returns a valid SIRET number made from n (13 digits, then the Luhn check digit).
func siret(n int) string {
	body := fmt.Sprintf("%013d", n)
	return ident.CompleteSIRET(body)
}

type env struct {
	db       *testdb.DB
	svc      *Service
	operator auth.Principal
}

func newEnv(t *testing.T) *env {
	t.Helper()
	db := testdb.New(t)
	svc := New(ledger.New(db.App, nil))
	svc.now = func() time.Time { return time.Date(2026, 3, 15, 10, 0, 0, 0, civil.Paris) }
	e := &env{db: db, svc: svc, operator: auth.Principal{Subject: "op", Org: uuid.New(), Role: auth.RoleOperator}}
	if _, err := svc.EnsureOperator(context.Background(), e.operator.Org, "Opérateur passnum"); err != nil {
		t.Fatal(err)
	}
	return e
}

var keys int

func key() string {
	keys++
	return fmt.Sprintf("key-%d", keys)
}

func siteRequest(n int) NewOrganization {
	return NewOrganization{
		Kind: KindSite, Name: fmt.Sprintf("Espace numérique %d", n), SIRET: siret(n),
		Site: &SiteDetails{
			IBAN: testIBAN, BIC: testBIC, Services: []string{"Aide aux démarches administratives"},
			Commune: "Valence", CodePostal: "26000", CodeINSEE: "26362", Adresse: "1 place de la Liberté",
		},
	}
}

func (e *env) createSite(t *testing.T, n int) Organization {
	t.Helper()
	o, err := e.svc.CreateOrganization(context.Background(), e.operator, key(), siteRequest(n))
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func (e *env) create(t *testing.T, kind Kind, name, dep string) Organization {
	t.Helper()
	o, err := e.svc.CreateOrganization(context.Background(), e.operator, key(),
		NewOrganization{Kind: kind, Name: name, Departement: dep})
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// wantFault fails unless err is a fault of the given kind and reason with a message.
func wantFault(t *testing.T, err error, kind fault.Kind, reason string) {
	t.Helper()
	f, ok := fault.As(err)
	if !ok || f.Kind != kind || f.Reason != reason || f.Message == "" {
		t.Fatalf("got %v, want %s fault %s", err, kind, reason)
	}
}

func date(s string) time.Time {
	d, err := time.Parse(time.DateOnly, s)
	if err != nil {
		panic(err)
	}
	return d
}

func TestCreateOrganizationRefusals(t *testing.T) {
	e := newEnv(t)
	e.createSite(t, 1)
	site := func(edit func(*NewOrganization, *SiteDetails)) NewOrganization {
		r := siteRequest(2)
		d := *r.Site
		r.Site = &d
		edit(&r, &d)
		return r
	}
	for _, tc := range []struct {
		name   string
		req    NewOrganization
		key    string
		kind   fault.Kind
		reason string
	}{
		{"no kind", NewOrganization{Name: "X", Departement: "26"}, "", fault.Invalid, "KIND_REQUIRED"},
		{"operator", NewOrganization{Kind: KindOperator, Name: "X"}, "", fault.Invalid, "OPERATOR_NOT_CREATABLE"},
		{"unknown kind", NewOrganization{Kind: "bank", Name: "X"}, "", fault.Invalid, "KIND_REQUIRED"},
		{"no name", NewOrganization{Kind: KindFunder, Name: "  "}, "", fault.Invalid, "NAME_REQUIRED"},
		{"long name", NewOrganization{Kind: KindFunder, Name: strings.Repeat("é", 201)}, "", fault.Invalid, "NAME_TOO_LONG"},
		{"name with newline", NewOrganization{Kind: KindFunder, Name: "CAF\nDrôme"}, "", fault.Invalid, "NAME_INVALID_CHARACTERS"},
		{"bad département", NewOrganization{Kind: KindFunder, Name: "X", Departement: "20"}, "", fault.Invalid, "DEPARTEMENT_CODE"},
		{"distributor without département", NewOrganization{Kind: KindDistributor, Name: "CAF"}, "", fault.Invalid, "DEPARTEMENT_REQUIRED"},
		{"bad SIRET", NewOrganization{Kind: KindFunder, Name: "X", SIRET: "11000101300018"}, "", fault.Invalid, "SIRET_CHECKSUM"},
		{"short SIRET", NewOrganization{Kind: KindFunder, Name: "X", SIRET: "1100010130001"}, "", fault.Invalid, "SIRET_FORMAT"},
		{"unknown SIRET placeholder", NewOrganization{Kind: KindFunder, Name: "X", SIRET: "00000000000000"}, "", fault.Invalid, "SIRET_UNKNOWN"},
		{"site details on a funder", NewOrganization{Kind: KindFunder, Name: "X", Site: &SiteDetails{}}, "", fault.Invalid, "SITE_DETAILS_NOT_ALLOWED"},
		{"site without details", NewOrganization{Kind: KindSite, Name: "X", SIRET: siret(3), Departement: "26"}, "", fault.Invalid, "SITE_DETAILS_REQUIRED"},
		{"site without SIRET", site(func(r *NewOrganization, _ *SiteDetails) { r.SIRET = "" }), "", fault.Invalid, "SIRET_REQUIRED"},
		{"site without IBAN", site(func(_ *NewOrganization, d *SiteDetails) { d.IBAN = "" }), "", fault.Invalid, "IBAN_REQUIRED"},
		{"bad IBAN", site(func(_ *NewOrganization, d *SiteDetails) { d.IBAN = "FR7630006000011234567890188" }), "", fault.Invalid, "IBAN_CHECKSUM"},
		{"site without BIC", site(func(_ *NewOrganization, d *SiteDetails) { d.BIC = "" }), "", fault.Invalid, "BIC_REQUIRED"},
		{"bad BIC", site(func(_ *NewOrganization, d *SiteDetails) { d.BIC = "BNP1FRPP" }), "", fault.Invalid, "BIC_FORMAT"},
		{"no services", site(func(_ *NewOrganization, d *SiteDetails) { d.Services = []string{" ", ""} }), "", fault.Invalid, "SERVICES_REQUIRED"},
		{"long service", site(func(_ *NewOrganization, d *SiteDetails) { d.Services = []string{strings.Repeat("a", 201)} }), "", fault.Invalid, "SERVICE_LABEL_TOO_LONG"},
		{"pipe in service", site(func(_ *NewOrganization, d *SiteDetails) { d.Services = []string{"a|b"} }), "", fault.Invalid, "SERVICE_LABEL_INVALID"},
		{"too many services", site(func(_ *NewOrganization, d *SiteDetails) {
			d.Services = nil
			for i := range 51 {
				d.Services = append(d.Services, fmt.Sprint("service ", i))
			}
		}), "", fault.Invalid, "SERVICES_TOO_MANY"},
		{"long legal representative", site(func(_ *NewOrganization, d *SiteDetails) { d.LegalRepresentative = strings.Repeat("x", 201) }), "", fault.Invalid, "LEGAL_REPRESENTATIVE_TOO_LONG"},
		{"long external id", site(func(_ *NewOrganization, d *SiteDetails) { d.ExternalID = strings.Repeat("x", 201) }), "", fault.Invalid, "EXTERNAL_ID_TOO_LONG"},
		{"long commune", site(func(_ *NewOrganization, d *SiteDetails) { d.Commune = strings.Repeat("x", 201) }), "", fault.Invalid, "COMMUNE_TOO_LONG"},
		{"long address", site(func(_ *NewOrganization, d *SiteDetails) { d.Adresse = strings.Repeat("x", 301) }), "", fault.Invalid, "ADRESSE_TOO_LONG"},
		{"bad postal code", site(func(_ *NewOrganization, d *SiteDetails) { d.CodePostal = "6000" }), "", fault.Invalid, "POSTAL_CODE"},
		{"bad INSEE code", site(func(_ *NewOrganization, d *SiteDetails) { d.CodeINSEE = "20004" }), "", fault.Invalid, "INSEE_CODE"},
		{"département against INSEE code", site(func(r *NewOrganization, _ *SiteDetails) { r.Departement = "07" }), "", fault.Invalid, "DEPARTEMENT_MISMATCH"},
		{"site without any territory", site(func(_ *NewOrganization, d *SiteDetails) { d.CodePostal, d.CodeINSEE = "", "" }), "", fault.Invalid, "DEPARTEMENT_REQUIRED"},
		{"SIRET already registered", site(func(r *NewOrganization, _ *SiteDetails) { r.SIRET = siret(1) }), "", fault.AlreadyExists, "SIRET_ALREADY_REGISTERED"},
		{"no idempotency key", siteRequest(4), "none", fault.Invalid, "IDEMPOTENCY_KEY_REQUIRED"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := key()
			if tc.key == "none" {
				k = ""
			}
			_, err := e.svc.CreateOrganization(context.Background(), e.operator, k, tc.req)
			wantFault(t, err, tc.kind, tc.reason)
		})
	}
	var n int
	if err := e.db.Owner.QueryRow(context.Background(), `SELECT count(*) FROM organisations`).Scan(&n); err != nil || n != 2 {
		t.Fatalf("organisations = %d, %v; want the operator and site 1 only", n, err)
	}
}

func TestCreateOrganization(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	req := siteRequest(7)
	req.SIRET = spaced(siret(7))
	req.Site.IBAN = "fr76 3000 6000 0112 3456 7890 189"
	req.Site.BIC = "bnpa frpp"
	req.Site.Services = []string{" aide aux  démarches administratives ", "Prise en main d’un smartphone ou d’une tablette",
		"Aide aux démarches administratives", "Atelier  photo "}
	k := key()
	o, err := e.svc.CreateOrganization(ctx, e.operator, k, req)
	if err != nil {
		t.Fatal(err)
	}
	want := Site{
		IBAN: testIBAN, BIC: testBIC, Commune: "Valence", CodePostal: "26000", CodeINSEE: "26362",
		Adresse: "1 place de la Liberté", Status: StatusPending,
		Services: []string{"Aide aux démarches administratives", "Prise en main d'un smartphone ou d'une tablette", "Atelier photo"},
	}
	if o.Kind != KindSite || o.Departement != "26" || o.SIRET != siret(7) || o.CreatedAt.IsZero() || o.Site == nil {
		t.Fatalf("created %+v", o)
	}
	if got := *o.Site; !sameSite(got, want) {
		t.Fatalf("site = %+v, want %+v", got, want)
	}
	// The same request under the same key replays the first answer; another request under it is refused.
	again, err := e.svc.CreateOrganization(ctx, e.operator, k, req)
	if err != nil || again.ID != o.ID {
		t.Fatalf("replay = %v, %v; want %s", again.ID, err, o.ID)
	}
	_, err = e.svc.CreateOrganization(ctx, e.operator, k, siteRequest(8))
	wantFault(t, err, fault.Conflict, "IDEMPOTENCY_KEY_REUSED")
	got, err := e.svc.GetOrganization(ctx, e.operator, o.ID)
	if err != nil || !sameSite(*got.Site, want) || got.Name != o.Name {
		t.Fatalf("get = %+v, %v", got, err)
	}
	var hist int
	if err := e.db.Owner.QueryRow(ctx, `SELECT count(*) FROM site_status_history WHERE site_id = $1 AND status = 'pending' AND changed_by = $2`,
		o.ID, e.operator.Org).Scan(&hist); err != nil || hist != 1 {
		t.Fatalf("history rows = %d, %v", hist, err)
	}

	// National funders have no département; distributors and sites derive or need one.
	state := e.create(t, KindFunder, "État (ANCT)", "")
	if state.Departement != "" || state.Site != nil {
		t.Fatalf("state = %+v", state)
	}
	caf := e.create(t, KindDistributor, "CAF de la Drôme", "26")
	if caf.Departement != "26" {
		t.Fatalf("caf = %+v", caf)
	}
	corsica := siteRequest(9)
	corsica.Site.CodeINSEE, corsica.Site.CodePostal = "", "20200"
	c, err := e.svc.CreateOrganization(ctx, e.operator, key(), corsica)
	if err != nil || c.Departement != "2B" {
		t.Fatalf("corsica = %+v, %v", c, err)
	}
}

func spaced(s string) string { return s[:3] + " " + s[3:6] + " " + s[6:9] + " " + s[9:] }

func sameSite(a, b Site) bool {
	return slices.Equal(a.Services, b.Services) && a.ExternalID == b.ExternalID &&
		a.LegalRepresentative == b.LegalRepresentative && a.IBAN == b.IBAN && a.BIC == b.BIC &&
		a.Commune == b.Commune && a.CodePostal == b.CodePostal && a.CodeINSEE == b.CodeINSEE &&
		a.Adresse == b.Adresse && a.Status == b.Status && a.ValidFrom.Equal(b.ValidFrom) && a.ValidUntil.Equal(b.ValidUntil)
}

func TestEnsureOperator(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	o, err := e.svc.EnsureOperator(ctx, e.operator.Org, "Autre nom")
	if err != nil || o.Kind != KindOperator || o.Name != "Opérateur passnum" {
		t.Fatalf("again = %+v, %v", o, err)
	}
	funder := e.create(t, KindFunder, "Département de la Drôme", "26")
	_, err = e.svc.EnsureOperator(ctx, funder.ID, "Opérateur")
	wantFault(t, err, fault.AlreadyExists, "ORGANIZATION_ID_TAKEN")
	_, err = e.svc.EnsureOperator(ctx, uuid.New(), " ")
	wantFault(t, err, fault.Invalid, "NAME_REQUIRED")
}

func (e *env) qualify(t *testing.T, id uuid.UUID, q Qualification) Organization {
	t.Helper()
	o, err := e.svc.QualifySite(context.Background(), e.operator, key(), id, q)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

var label = Qualification{ValidFrom: date("2026-01-01"), ValidUntil: date("2026-12-31"), LegalRepresentative: "Camille Martin"}

func TestVisibility(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	funder := e.create(t, KindFunder, "Département de la Drôme", "26")
	dist := e.create(t, KindDistributor, "CAF de la Drôme", "26")
	qualified := e.createSite(t, 1)
	e.qualify(t, qualified.ID, label)
	pending := e.createSite(t, 2)
	as := func(o Organization, role auth.Role) auth.Principal {
		return auth.Principal{Subject: "u", Org: o.ID, Role: role}
	}
	list := func(p auth.Principal) []uuid.UUID {
		t.Helper()
		page, err := e.svc.ListOrganizations(ctx, p, ListFilter{})
		if err != nil {
			t.Fatal(err)
		}
		var ids []uuid.UUID
		for _, o := range page.Organizations {
			ids = append(ids, o.ID)
			if o.Site != nil && o.ID != p.Org && p.Role != auth.RoleOperator && (o.Site.IBAN != "" || o.Site.BIC != "" || o.Site.LegalRepresentative != "") {
				t.Errorf("%s sees the bank details of %s", p.Role, o.Name)
			}
		}
		slices.SortFunc(ids, func(a, b uuid.UUID) int { return strings.Compare(a.String(), b.String()) })
		return ids
	}
	sorted := func(ids ...uuid.UUID) []uuid.UUID {
		slices.SortFunc(ids, func(a, b uuid.UUID) int { return strings.Compare(a.String(), b.String()) })
		return ids
	}
	for _, tc := range []struct {
		name string
		p    auth.Principal
		want []uuid.UUID
	}{
		{"operator", e.operator, sorted(e.operator.Org, funder.ID, dist.ID, qualified.ID, pending.ID)},
		{"funder", as(funder, auth.RoleFunder), sorted(funder.ID, qualified.ID)},
		{"distributor", as(dist, auth.RoleDistributor), sorted(dist.ID, qualified.ID)},
		{"pending site", as(pending, auth.RoleSite), sorted(pending.ID)},
		{"qualified site", as(qualified, auth.RoleSite), sorted(qualified.ID)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := list(tc.p); !slices.Equal(got, tc.want) {
				t.Fatalf("list = %v, want %v", got, tc.want)
			}
			for _, id := range []uuid.UUID{e.operator.Org, funder.ID, dist.ID, qualified.ID, pending.ID} {
				o, err := e.svc.GetOrganization(ctx, tc.p, id)
				if slices.Contains(tc.want, id) {
					if err != nil || o.ID != id {
						t.Fatalf("get %s = %v", id, err)
					}
				} else {
					wantFault(t, err, fault.NotFound, "ORGANIZATION_NOT_FOUND")
				}
			}
		})
	}
	// The site itself and the operator see the bank details.
	for _, p := range []auth.Principal{as(qualified, auth.RoleSite), e.operator} {
		o, err := e.svc.GetOrganization(ctx, p, qualified.ID)
		if err != nil || o.Site.IBAN != testIBAN || o.Site.BIC != testBIC || o.Site.LegalRepresentative != "Camille Martin" {
			t.Fatalf("%s get = %+v, %v", p.Role, o.Site, err)
		}
	}
	o, err := e.svc.GetOrganization(ctx, as(funder, auth.RoleFunder), qualified.ID)
	if err != nil || o.Site.IBAN != "" || o.Site.Services[0] != "Aide aux démarches administratives" || o.Site.Status != StatusQualified {
		t.Fatalf("funder get = %+v, %v", o.Site, err)
	}
}

func TestListFiltersAndPages(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	var sites []uuid.UUID
	for n := 1; n <= 7; n++ {
		sites = append(sites, e.createSite(t, n).ID)
	}
	e.create(t, KindDistributor, "France Travail Ardèche", "07")
	e.create(t, KindFunder, "État", "")
	slices.SortFunc(sites, func(a, b uuid.UUID) int { return strings.Compare(a.String(), b.String()) })
	var got []uuid.UUID
	tok := ""
	for pages := 0; ; pages++ {
		p, err := e.svc.ListOrganizations(ctx, e.operator, ListFilter{Kind: KindSite, PageSize: 3, PageToken: tok})
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range p.Organizations {
			got = append(got, o.ID)
		}
		if tok = p.NextPageToken; tok == "" {
			if pages != 2 || len(p.Organizations) != 1 {
				t.Fatalf("last page %d has %d rows", pages, len(p.Organizations))
			}
			break
		}
	}
	if !slices.Equal(got, sites) {
		t.Fatalf("pages = %v, want %v", got, sites)
	}
	for _, tc := range []struct {
		f    ListFilter
		want int
	}{
		{ListFilter{Departement: "07"}, 1},
		{ListFilter{Departement: " 26 "}, 7},
		{ListFilter{Kind: KindFunder}, 1},
		{ListFilter{Kind: KindOperator}, 1},
		{ListFilter{}, 10},
		{ListFilter{PageSize: 1000}, 10},
	} {
		p, err := e.svc.ListOrganizations(ctx, e.operator, tc.f)
		if err != nil || len(p.Organizations) != tc.want || p.NextPageToken != "" {
			t.Errorf("list %+v = %d rows, %q, %v; want %d", tc.f, len(p.Organizations), p.NextPageToken, err, tc.want)
		}
	}
	for _, tc := range []struct {
		f      ListFilter
		reason string
	}{
		{ListFilter{Kind: "bank"}, "KIND_INVALID"},
		{ListFilter{Departement: "99"}, "DEPARTEMENT_CODE"},
		{ListFilter{PageSize: -1}, "PAGE_SIZE_INVALID"},
		{ListFilter{PageToken: "not a token"}, "PAGE_TOKEN_INVALID"},
		{ListFilter{PageToken: encodePageToken(uuid.New())[2:]}, "PAGE_TOKEN_INVALID"},
	} {
		_, err := e.svc.ListOrganizations(ctx, e.operator, tc.f)
		wantFault(t, err, fault.Invalid, tc.reason)
	}
}

func TestSiteTransitions(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	type step struct {
		action string // qualify, suspend, withdraw
		q      Qualification
		reason string
		// want: the status after the step, or the refusal's fault reason.
		status Status
		fault  string
	}
	noRep := Qualification{ValidFrom: date("2026-01-01"), ValidUntil: date("2026-12-31")}
	for i, tc := range []struct {
		name    string
		noBank  bool // created by import: no IBAN, BIC nor legal representative
		steps   []step
		history []Status
	}{
		{"qualify, suspend, requalify, withdraw", false, []step{
			{action: "qualify", q: label, status: StatusQualified},
			{action: "suspend", reason: "Contrôle en cours", status: StatusSuspended},
			{action: "suspend", reason: "encore", fault: "SITE_TRANSITION_NOT_ALLOWED"},
			{action: "qualify", q: Qualification{ValidFrom: date("2026-04-01"), ValidUntil: date("2027-03-31")}, status: StatusQualified},
			{action: "qualify", q: Qualification{ValidFrom: date("2027-01-01"), ValidUntil: date("2027-12-31")}, status: StatusQualified},
			{action: "withdraw", reason: "Fermeture du lieu", status: StatusWithdrawn},
			{action: "qualify", q: label, fault: "SITE_TRANSITION_NOT_ALLOWED"},
			{action: "suspend", reason: "x", fault: "SITE_TRANSITION_NOT_ALLOWED"},
			{action: "withdraw", reason: "x", fault: "SITE_TRANSITION_NOT_ALLOWED"},
		}, []Status{StatusPending, StatusQualified, StatusSuspended, StatusQualified, StatusQualified, StatusWithdrawn}},
		{"pending cannot be suspended, can be withdrawn", false, []step{
			{action: "suspend", reason: "x", fault: "SITE_TRANSITION_NOT_ALLOWED"},
			{action: "withdraw", reason: "Doublon", status: StatusWithdrawn},
		}, []Status{StatusPending, StatusWithdrawn}},
		{"qualification needs the legal representative", false, []step{
			{action: "qualify", q: noRep, fault: "QUALIFICATION_INCOMPLETE"},
			{action: "qualify", q: Qualification{ValidFrom: date("2026-01-01"), ValidUntil: date("2026-12-31"),
				LegalRepresentative: "  Camille Martin "}, status: StatusQualified},
		}, []Status{StatusPending, StatusQualified}},
		{"imported site needs bank details", true, []step{
			{action: "qualify", q: label, fault: "QUALIFICATION_INCOMPLETE"},
			{action: "qualify", q: Qualification{ValidFrom: label.ValidFrom, ValidUntil: label.ValidUntil,
				LegalRepresentative: "C. Martin", IBAN: "FR76 3000 6000 0112 3456 7890 189", BIC: "bnpafrpp"}, status: StatusQualified},
			{action: "suspend", reason: "Soupçon de fraude", status: StatusSuspended},
			{action: "withdraw", reason: "Fraude avérée", status: StatusWithdrawn},
		}, []Status{StatusPending, StatusQualified, StatusSuspended, StatusWithdrawn}},
		{"refused inputs change nothing", false, []step{
			{action: "qualify", q: Qualification{ValidUntil: date("2026-12-31"), LegalRepresentative: "A"}, fault: "LABEL_PERIOD_REQUIRED"},
			{action: "qualify", q: Qualification{ValidFrom: date("2026-06-01"), ValidUntil: date("2026-05-31"), LegalRepresentative: "A"}, fault: "LABEL_PERIOD_INVALID"},
			{action: "qualify", q: Qualification{ValidFrom: date("2025-01-01"), ValidUntil: date("2026-03-14"), LegalRepresentative: "A"}, fault: "LABEL_PERIOD_ENDED"},
			{action: "qualify", q: Qualification{ValidFrom: date("2026-01-01"), ValidUntil: date("2026-03-15"), LegalRepresentative: "A", IBAN: "FR00"}, fault: "IBAN_LENGTH"},
			{action: "qualify", q: Qualification{ValidFrom: date("2026-01-01"), ValidUntil: date("2026-03-15"), LegalRepresentative: "A", BIC: "X"}, fault: "BIC_FORMAT"},
			{action: "qualify", q: Qualification{ValidFrom: date("2026-01-01"), ValidUntil: date("2026-03-15"), LegalRepresentative: strings.Repeat("a", 201)}, fault: "LEGAL_REPRESENTATIVE_TOO_LONG"},
			{action: "withdraw", reason: "  ", fault: "REASON_REQUIRED"},
			{action: "suspend", reason: strings.Repeat("a", 501), fault: "REASON_TOO_LONG"},
		}, []Status{StatusPending}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var id uuid.UUID
			if tc.noBank {
				res, err := e.svc.ImportSites(ctx, e.operator, key(), []byte(fmt.Sprintf(
					"id,pivot,nom,code_postal,services\nimp-%d,%s,Médiathèque,26000,Aide aux démarches administratives\n", i, siret(100+i))))
				if err != nil || len(res.SiteIDs) != 1 {
					t.Fatalf("import = %+v, %v", res, err)
				}
				id = res.SiteIDs[0]
			} else {
				id = e.createSite(t, 100+i).ID
			}
			for j, s := range tc.steps {
				var (
					o   Organization
					err error
				)
				switch s.action {
				case "qualify":
					o, err = e.svc.QualifySite(ctx, e.operator, key(), id, s.q)
				case "suspend":
					o, err = e.svc.SuspendSite(ctx, e.operator, key(), id, s.reason)
				case "withdraw":
					o, err = e.svc.WithdrawSite(ctx, e.operator, key(), id, s.reason)
				}
				if s.fault != "" {
					f, ok := fault.As(err)
					if !ok || f.Reason != s.fault || f.Message == "" {
						t.Fatalf("step %d %s: %v, want %s", j, s.action, err, s.fault)
					}
					continue
				}
				if err != nil || o.Site.Status != s.status {
					t.Fatalf("step %d %s: %+v, %v; want %s", j, s.action, o.Site, err, s.status)
				}
			}
			rows, err := e.db.Owner.Query(ctx, `SELECT status FROM site_status_history WHERE site_id = $1 ORDER BY changed_at`, id)
			if err != nil {
				t.Fatal(err)
			}
			var hist []Status
			for rows.Next() {
				var s Status
				if err := rows.Scan(&s); err != nil {
					t.Fatal(err)
				}
				hist = append(hist, s)
			}
			if !slices.Equal(hist, tc.history) {
				t.Fatalf("history = %v, want %v", hist, tc.history)
			}
		})
	}
	_, err := e.svc.SuspendSite(ctx, e.operator, key(), uuid.New(), "x")
	wantFault(t, err, fault.NotFound, "SITE_NOT_FOUND")
	funder := e.create(t, KindFunder, "État", "")
	_, err = e.svc.QualifySite(ctx, e.operator, key(), funder.ID, label)
	wantFault(t, err, fault.NotFound, "SITE_NOT_FOUND")
}

func TestTransitionMessagesAndHistory(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	site := e.createSite(t, 1)
	e.qualify(t, site.ID, label)
	_, err := e.svc.SuspendSite(ctx, e.operator, key(), site.ID, "Contrôle")
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.svc.SuspendSite(ctx, e.operator, key(), site.ID, "Contrôle")
	f, _ := fault.As(err)
	if f == nil || f.Kind != fault.FailedPrecondition || f.Message != "Ce lieu est suspendu : il est déjà suspendu." ||
		f.Metadata["status"] != "suspended" || f.Metadata["target"] != "suspended" {
		t.Fatalf("refusal = %#v", f)
	}
	var reason string
	var from, until time.Time
	if err := e.db.Owner.QueryRow(ctx, `
		SELECT reason, valid_from, valid_until FROM site_status_history
		 WHERE site_id = $1 AND status = 'suspended'`, site.ID).Scan(&reason, &from, &until); err != nil {
		t.Fatal(err)
	}
	if reason != "Contrôle" || !from.Equal(label.ValidFrom) || !until.Equal(label.ValidUntil) {
		t.Fatalf("history = %q %v %v", reason, from, until)
	}
}

func TestSiteForRedemption(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	site := e.createSite(t, 1)
	info, err := SiteForRedemption(ctx, e.db.App, site.ID)
	if err != nil || info.Status != StatusPending || info.QualifiedOn(date("2026-03-15")) || info.Name != site.Name {
		t.Fatalf("pending = %+v, %v", info, err)
	}
	e.qualify(t, site.ID, label)
	info, err = SiteForRedemption(ctx, e.db.App, site.ID)
	if err != nil {
		t.Fatal(err)
	}
	if info.ID != site.ID || info.Departement != "26" || !info.ValidFrom.Equal(label.ValidFrom) ||
		!info.ValidUntil.Equal(label.ValidUntil) || !slices.Equal(info.Services, []string{"Aide aux démarches administratives"}) {
		t.Fatalf("qualified = %+v", info)
	}
	for _, tc := range []struct {
		on   time.Time
		want bool
	}{
		{date("2025-12-31"), false},
		{date("2026-01-01"), true},
		{time.Date(2026, 12, 31, 23, 59, 0, 0, civil.Paris), true},
		{date("2027-01-01"), false},
	} {
		if got := info.QualifiedOn(tc.on); got != tc.want {
			t.Errorf("QualifiedOn(%s) = %v", tc.on, got)
		}
	}
	if got, ok := info.Offers("aide aux  Démarches administratives"); !ok || got != "Aide aux démarches administratives" {
		t.Errorf("Offers = %q, %v", got, ok)
	}
	if _, ok := info.Offers("Réparation de vélos"); ok {
		t.Error("Offers accepts a service outside the catalogue")
	}
	if _, ok := info.Offers(""); ok {
		t.Error("Offers accepts an empty service")
	}
	if _, err := e.svc.SuspendSite(ctx, e.operator, key(), site.ID, "Contrôle"); err != nil {
		t.Fatal(err)
	}
	info, err = SiteForRedemption(ctx, e.db.App, site.ID)
	if err != nil || info.QualifiedOn(date("2026-06-01")) {
		t.Fatalf("suspended = %+v, %v", info, err)
	}
	_, err = SiteForRedemption(ctx, e.db.App, e.operator.Org)
	wantFault(t, err, fault.NotFound, "SITE_NOT_FOUND")
}
