package server

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"log/slog"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/passnum/passnum/internal/access"
	"github.com/passnum/passnum/internal/auth"
	"github.com/passnum/passnum/internal/orgs"
	"github.com/passnum/passnum/internal/testdb"
	"github.com/passnum/passnum/ledger"
	pb "github.com/passnum/passnum/proto/passnum/v1"
)

// orgFixture is the production server (New) over a fresh database, listening on loopback,
// with the organisation service and the database's ownership resolver.
type orgFixture struct {
	minter   *auth.Minter
	client   pb.OrganizationServiceClient
	operator auth.Principal
}

func newOrgFixture(t *testing.T) *orgFixture {
	t.Helper()
	db := testdb.New(t)
	svc := orgs.New(ledger.New(db.App, nil))
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	kid := auth.KeyID(pub)
	ks, err := auth.NewKeySet(auth.PublicKey{KID: kid, Key: pub})
	if err != nil {
		t.Fatal(err)
	}
	s := New(Config{
		Verifier: auth.NewVerifier(ks, auth.DefaultIssuer, auth.DefaultAudience),
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, App{Access: access.NewResolver(db.App), Orgs: svc})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	f := &orgFixture{
		minter:   auth.NewMinter(priv, kid, auth.DefaultIssuer, auth.DefaultAudience),
		client:   pb.NewOrganizationServiceClient(conn),
		operator: auth.Principal{Subject: "ops", Org: uuid.New(), Role: auth.RoleOperator},
	}
	if _, err := svc.EnsureOperator(context.Background(), f.operator.Org, "Opérateur passnum"); err != nil {
		t.Fatal(err)
	}
	return f
}

// as is a client context carrying a real token for an organisation in a role.
func (f *orgFixture) as(t *testing.T, org string, role auth.Role) context.Context {
	t.Helper()
	tok, err := f.minter.Mint(auth.Principal{Subject: "user", Org: uuid.MustParse(org), Role: role}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return withToken(tok)
}

func (f *orgFixture) op(t *testing.T) context.Context {
	return f.as(t, f.operator.Org.String(), auth.RoleOperator)
}

// wantFaultStatus checks the code, the ErrorInfo reason and that a French message came with it.
func wantFaultStatus(t *testing.T, err error, code codes.Code, reason string) {
	t.Helper()
	st := wantCode(t, err, code)
	if got := reasonOf(st); got != reason {
		t.Fatalf("reason = %q, want %q (%s)", got, reason, st.Message())
	}
	for _, d := range st.Details() {
		if lm, ok := d.(*errdetails.LocalizedMessage); ok && lm.GetLocale() == "fr-FR" && lm.GetMessage() == st.Message() {
			return
		}
	}
	t.Fatalf("no fr-FR LocalizedMessage in %v", st.Details())
}

func TestOrganizationServiceEndToEnd(t *testing.T) {
	f := newOrgFixture(t)
	op := f.op(t)

	// Registration, by the operator only.
	funder, err := f.client.CreateOrganization(op, &pb.CreateOrganizationRequest{
		IdempotencyKey: "funder", Kind: pb.OrganizationKind_ORGANIZATION_KIND_FUNDER, Name: "Département de la Drôme", Departement: "26"})
	if err != nil {
		t.Fatal(err)
	}
	siteReq := &pb.CreateOrganizationRequest{
		IdempotencyKey: "site", Kind: pb.OrganizationKind_ORGANIZATION_KIND_SITE, Name: "Médiathèque de Crest",
		Siret: "110 001 013 00017",
		Site: &pb.Site{Iban: "fr76 3000 6000 0112 3456 7890 189", Bic: "bnpafrpp", CodeInsee: "26108", Commune: "Crest",
			Services: []string{"Aide aux démarches administratives", "aide aux démarches administratives ", "Atelier photo"}},
	}
	site, err := f.client.CreateOrganization(op, siteReq)
	if err != nil {
		t.Fatal(err)
	}
	if site.GetKind() != pb.OrganizationKind_ORGANIZATION_KIND_SITE || site.GetDepartement() != "26" || site.GetSiret() != "11000101300017" ||
		site.GetSite().GetStatus() != pb.SiteStatus_SITE_STATUS_PENDING || site.GetSite().GetIban() != "FR7630006000011234567890189" ||
		!slices.Equal(site.GetSite().GetServices(), []string{"Aide aux démarches administratives", "Atelier photo"}) ||
		site.GetSite().GetValidFrom() != "" || site.GetCreatedAt().AsTime().IsZero() {
		t.Fatalf("site = %v", site)
	}
	if again, err := f.client.CreateOrganization(op, siteReq); err != nil || again.GetId() != site.GetId() {
		t.Fatalf("replay = %v, %v", again, err)
	}
	dup := &pb.CreateOrganizationRequest{IdempotencyKey: "dup", Kind: siteReq.Kind, Name: "Doublon", Siret: siteReq.Siret, Site: siteReq.Site}
	_, err = f.client.CreateOrganization(op, dup)
	wantFaultStatus(t, err, codes.AlreadyExists, "SIRET_ALREADY_REGISTERED")
	_, err = f.client.CreateOrganization(op, &pb.CreateOrganizationRequest{IdempotencyKey: "bad", Kind: siteReq.Kind,
		Name: "X", Siret: "11000101300018", Site: siteReq.Site})
	wantFaultStatus(t, err, codes.InvalidArgument, "SIRET_CHECKSUM")
	_, err = f.client.CreateOrganization(op, &pb.CreateOrganizationRequest{IdempotencyKey: "op", Kind: pb.OrganizationKind_ORGANIZATION_KIND_OPERATOR, Name: "X"})
	wantFaultStatus(t, err, codes.InvalidArgument, "OPERATOR_NOT_CREATABLE")
	asFunder := f.as(t, funder.GetId(), auth.RoleFunder)
	asSite := f.as(t, site.GetId(), auth.RoleSite)
	_, err = f.client.CreateOrganization(asFunder, &pb.CreateOrganizationRequest{IdempotencyKey: "f", Kind: pb.OrganizationKind_ORGANIZATION_KIND_FUNDER, Name: "X"})
	wantFaultStatus(t, err, codes.PermissionDenied, ReasonRoleNotAllowed)
	_, err = f.client.CreateOrganization(context.Background(), &pb.CreateOrganizationRequest{})
	wantCode(t, err, codes.Unauthenticated)

	// Reading one organisation: the operator and the organisation itself.
	if got, err := f.client.GetOrganization(asSite, &pb.GetOrganizationRequest{Id: site.GetId()}); err != nil || got.GetSite().GetBic() != "BNPAFRPP" {
		t.Fatalf("site reads itself = %v, %v", got, err)
	}
	_, err = f.client.GetOrganization(asFunder, &pb.GetOrganizationRequest{Id: site.GetId()})
	wantFaultStatus(t, err, codes.PermissionDenied, ReasonObjectNotAllowed)
	_, err = f.client.GetOrganization(asSite, &pb.GetOrganizationRequest{Id: uuid.NewString()})
	wantFaultStatus(t, err, codes.PermissionDenied, ReasonObjectNotAllowed)
	_, err = f.client.GetOrganization(op, &pb.GetOrganizationRequest{Id: "pas-un-uuid"})
	wantFaultStatus(t, err, codes.InvalidArgument, "INVALID_ID")
	_, err = f.client.GetOrganization(op, &pb.GetOrganizationRequest{Id: uuid.NewString()})
	wantFaultStatus(t, err, codes.NotFound, "ORGANIZATION_NOT_FOUND")

	// Qualification.
	_, err = f.client.QualifySite(asSite, &pb.QualifySiteRequest{IdempotencyKey: "q", SiteId: site.GetId()})
	wantFaultStatus(t, err, codes.PermissionDenied, ReasonRoleNotAllowed)
	y := time.Now().Year()
	from, until := time.Date(y, 1, 1, 0, 0, 0, 0, time.UTC).Format(time.DateOnly), time.Date(y+1, 12, 31, 0, 0, 0, 0, time.UTC).Format(time.DateOnly)
	_, err = f.client.QualifySite(op, &pb.QualifySiteRequest{IdempotencyKey: "q0", SiteId: site.GetId(), ValidFrom: "01/01/2026", ValidUntil: until})
	wantFaultStatus(t, err, codes.InvalidArgument, "INVALID_VALID_FROM")
	_, err = f.client.QualifySite(op, &pb.QualifySiteRequest{IdempotencyKey: "q1", SiteId: site.GetId(), ValidFrom: from, ValidUntil: until})
	wantFaultStatus(t, err, codes.FailedPrecondition, "QUALIFICATION_INCOMPLETE")
	q, err := f.client.QualifySite(op, &pb.QualifySiteRequest{IdempotencyKey: "q2", SiteId: site.GetId(), ValidFrom: from, ValidUntil: until,
		LegalRepresentative: "Camille Martin"})
	if err != nil {
		t.Fatal(err)
	}
	if st := q.GetSite(); st.GetStatus() != pb.SiteStatus_SITE_STATUS_QUALIFIED || st.GetValidFrom() != from ||
		st.GetValidUntil() != until || st.GetLegalRepresentative() != "Camille Martin" {
		t.Fatalf("qualified = %v", st)
	}

	// The registry: funders list qualified sites without their bank details.
	list, err := f.client.ListOrganizations(asFunder, &pb.ListOrganizationsRequest{Kind: pb.OrganizationKind_ORGANIZATION_KIND_SITE})
	if err != nil || len(list.GetOrganizations()) != 1 {
		t.Fatalf("funder list = %v, %v", list, err)
	}
	if st := list.GetOrganizations()[0].GetSite(); st.GetIban() != "" || st.GetBic() != "" || st.GetLegalRepresentative() != "" || st.GetCommune() != "Crest" {
		t.Fatalf("registry entry = %v", st)
	}
	var ids []string
	tok := ""
	for {
		page, err := f.client.ListOrganizations(op, &pb.ListOrganizationsRequest{PageSize: 1, PageToken: tok})
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range page.GetOrganizations() {
			ids = append(ids, o.GetId())
		}
		if tok = page.GetNextPageToken(); tok == "" {
			break
		}
	}
	want := []string{f.operator.Org.String(), funder.GetId(), site.GetId()}
	slices.Sort(want)
	if !slices.Equal(ids, want) {
		t.Fatalf("operator pages = %v, want %v", ids, want)
	}
	_, err = f.client.ListOrganizations(op, &pb.ListOrganizationsRequest{PageToken: "%%%"})
	wantFaultStatus(t, err, codes.InvalidArgument, "PAGE_TOKEN_INVALID")
	_, err = f.client.ListOrganizations(op, &pb.ListOrganizationsRequest{Kind: pb.OrganizationKind(42)})
	wantFaultStatus(t, err, codes.InvalidArgument, "KIND_INVALID")

	// Suspension and withdrawal.
	_, err = f.client.SuspendSite(op, &pb.ChangeSiteStatusRequest{IdempotencyKey: "s0", SiteId: site.GetId()})
	wantFaultStatus(t, err, codes.InvalidArgument, "REASON_REQUIRED")
	_, err = f.client.SuspendSite(op, &pb.ChangeSiteStatusRequest{IdempotencyKey: "s1", SiteId: "", Reason: "x"})
	wantFaultStatus(t, err, codes.InvalidArgument, "INVALID_SITE_ID")
	s, err := f.client.SuspendSite(op, &pb.ChangeSiteStatusRequest{IdempotencyKey: "s2", SiteId: site.GetId(), Reason: "Contrôle"})
	if err != nil || s.GetSite().GetStatus() != pb.SiteStatus_SITE_STATUS_SUSPENDED {
		t.Fatalf("suspend = %v, %v", s, err)
	}
	w, err := f.client.WithdrawSite(op, &pb.ChangeSiteStatusRequest{IdempotencyKey: "w", SiteId: site.GetId(), Reason: "Fermeture"})
	if err != nil || w.GetSite().GetStatus() != pb.SiteStatus_SITE_STATUS_WITHDRAWN {
		t.Fatalf("withdraw = %v, %v", w, err)
	}
	_, err = f.client.QualifySite(op, &pb.QualifySiteRequest{IdempotencyKey: "q3", SiteId: site.GetId(), ValidFrom: from, ValidUntil: until})
	wantFaultStatus(t, err, codes.FailedPrecondition, "SITE_TRANSITION_NOT_ALLOWED")
	_, err = f.client.WithdrawSite(asFunder, &pb.ChangeSiteStatusRequest{IdempotencyKey: "w2", SiteId: site.GetId(), Reason: "x"})
	wantFaultStatus(t, err, codes.PermissionDenied, ReasonRoleNotAllowed)
}

func TestImportSitesEndToEnd(t *testing.T) {
	f := newOrgFixture(t)
	file := []byte("\xEF\xBB\xBFid;pivot;nom;code_postal;services;latitude\n" +
		"a;110 001 013 00017;Médiathèque;26400;Aide aux démarches administratives;44.7\n" +
		"b;11000101300018;Lieu B;26400;S;\n" +
		"c;13002603200016;Lieu C;;S;\n")
	res, err := f.client.ImportSites(f.op(t), &pb.ImportSitesRequest{IdempotencyKey: "import", Csv: file})
	if err != nil {
		t.Fatal(err)
	}
	if res.GetImported() != 1 || res.GetUpdated() != 0 || res.GetRejected() != 2 || len(res.GetSiteIds()) != 1 {
		t.Fatalf("import = %v", res)
	}
	wantErrs := []*pb.ImportLineError{
		{Line: 3, Column: "pivot", Message: "Ce numéro SIRET n'existe pas : un chiffre est sans doute mal recopié. Vérifiez-le sur l'avis de situation Insee ou sur annuaire-entreprises.data.gouv.fr."},
		{Line: 4, Column: "code_postal", Message: "Indiquez le code postal ou le code commune Insee du lieu : il donne son département."},
	}
	if len(res.GetErrors()) != len(wantErrs) {
		t.Fatalf("errors = %v", res.GetErrors())
	}
	for i, e := range res.GetErrors() {
		if e.GetLine() != wantErrs[i].GetLine() || e.GetColumn() != wantErrs[i].GetColumn() || e.GetMessage() != wantErrs[i].GetMessage() {
			t.Errorf("error %d = %v, want %v", i, e, wantErrs[i])
		}
	}
	site, err := f.client.GetOrganization(f.op(t), &pb.GetOrganizationRequest{Id: res.GetSiteIds()[0]})
	if err != nil || site.GetName() != "Médiathèque" || site.GetSite().GetExternalId() != "a" || site.GetDepartement() != "26" {
		t.Fatalf("imported site = %v, %v", site, err)
	}
	again, err := f.client.ImportSites(f.op(t), &pb.ImportSitesRequest{IdempotencyKey: "import-2", Csv: file})
	if err != nil || again.GetImported() != 0 || again.GetUpdated() != 1 || !slices.Equal(again.GetSiteIds(), res.GetSiteIds()) {
		t.Fatalf("re-import = %v, %v", again, err)
	}
	_, err = f.client.ImportSites(f.op(t), &pb.ImportSitesRequest{IdempotencyKey: "import", Csv: append(file, "d;x;y;26000;S;\n"...)})
	wantFaultStatus(t, err, codes.Aborted, "IDEMPOTENCY_KEY_REUSED")
	_, err = f.client.ImportSites(f.op(t), &pb.ImportSitesRequest{IdempotencyKey: "empty"})
	wantFaultStatus(t, err, codes.InvalidArgument, "IMPORT_EMPTY")
	_, err = f.client.ImportSites(f.as(t, res.GetSiteIds()[0], auth.RoleSite), &pb.ImportSitesRequest{IdempotencyKey: "x", Csv: file})
	wantFaultStatus(t, err, codes.PermissionDenied, ReasonRoleNotAllowed)
	if st := status.Convert(err); st.Message() == "" {
		t.Fatal("refusal without a message")
	}
}
