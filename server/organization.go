package server

import (
	"context"
	"errors"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/passnum/passnum/internal/auth"
	"github.com/passnum/passnum/internal/civil"
	"github.com/passnum/passnum/internal/orgs"
	pb "github.com/passnum/passnum/proto/passnum/v1"
)

// registerOrganizations registers OrganizationService over app.Orgs.
func registerOrganizations(s *grpc.Server, app App) {
	pb.RegisterOrganizationServiceServer(s, &organizationServer{svc: app.Orgs})
}

// organizationServer maps OrganizationService to internal/orgs. Roles are checked by
// authz.go, visibility by the domain.
type organizationServer struct {
	pb.UnimplementedOrganizationServiceServer
	svc *orgs.Service
}

var errNoOrgs = errors.New("organisation service not configured (server.App.Orgs is nil)")

// caller returns the authenticated caller.
func (s *organizationServer) caller(ctx context.Context) (auth.Principal, error) {
	if s.svc == nil {
		return auth.Principal{}, errNoOrgs
	}
	p, ok := auth.PrincipalFrom(ctx)
	if !ok {
		return auth.Principal{}, errNoPrincipal
	}
	return p, nil
}

var (
	orgKinds = map[pb.OrganizationKind]orgs.Kind{
		pb.OrganizationKind_ORGANIZATION_KIND_OPERATOR:    orgs.KindOperator,
		pb.OrganizationKind_ORGANIZATION_KIND_FUNDER:      orgs.KindFunder,
		pb.OrganizationKind_ORGANIZATION_KIND_DISTRIBUTOR: orgs.KindDistributor,
		pb.OrganizationKind_ORGANIZATION_KIND_SITE:        orgs.KindSite,
	}
	orgKindsPB = map[orgs.Kind]pb.OrganizationKind{
		orgs.KindOperator:    pb.OrganizationKind_ORGANIZATION_KIND_OPERATOR,
		orgs.KindFunder:      pb.OrganizationKind_ORGANIZATION_KIND_FUNDER,
		orgs.KindDistributor: pb.OrganizationKind_ORGANIZATION_KIND_DISTRIBUTOR,
		orgs.KindSite:        pb.OrganizationKind_ORGANIZATION_KIND_SITE,
	}
	siteStatusesPB = map[orgs.Status]pb.SiteStatus{
		orgs.StatusPending:   pb.SiteStatus_SITE_STATUS_PENDING,
		orgs.StatusQualified: pb.SiteStatus_SITE_STATUS_QUALIFIED,
		orgs.StatusSuspended: pb.SiteStatus_SITE_STATUS_SUSPENDED,
		orgs.StatusWithdrawn: pb.SiteStatus_SITE_STATUS_WITHDRAWN,
	}
)

func organizationPB(o orgs.Organization) *pb.Organization {
	out := &pb.Organization{
		Id: o.ID.String(), Kind: orgKindsPB[o.Kind], Name: o.Name, Departement: o.Departement, Siret: o.SIRET,
		CreatedAt: timestamppb.New(o.CreatedAt),
	}
	if st := o.Site; st != nil {
		out.Site = &pb.Site{
			ExternalId: st.ExternalID, LegalRepresentative: st.LegalRepresentative, Iban: st.IBAN, Bic: st.BIC,
			Services: st.Services, Commune: st.Commune, CodePostal: st.CodePostal, CodeInsee: st.CodeINSEE,
			Adresse: st.Adresse, Status: siteStatusesPB[st.Status],
			ValidFrom: civil.FormatDate(st.ValidFrom), ValidUntil: civil.FormatDate(st.ValidUntil),
		}
	}
	return out
}

func (s *organizationServer) CreateOrganization(ctx context.Context, req *pb.CreateOrganizationRequest) (*pb.Organization, error) {
	p, err := s.caller(ctx)
	if err != nil {
		return nil, err
	}
	in := orgs.NewOrganization{
		Kind: orgKinds[req.GetKind()], Name: req.GetName(), Departement: req.GetDepartement(), SIRET: req.GetSiret(),
	}
	if st := req.GetSite(); st != nil {
		in.Site = &orgs.SiteDetails{
			ExternalID: st.GetExternalId(), LegalRepresentative: st.GetLegalRepresentative(), IBAN: st.GetIban(),
			BIC: st.GetBic(), Services: st.GetServices(), Commune: st.GetCommune(), CodePostal: st.GetCodePostal(),
			CodeINSEE: st.GetCodeInsee(), Adresse: st.GetAdresse(),
		}
	}
	o, err := s.svc.CreateOrganization(ctx, p, req.GetIdempotencyKey(), in)
	if err != nil {
		return nil, err
	}
	return organizationPB(o), nil
}

func (s *organizationServer) GetOrganization(ctx context.Context, req *pb.GetOrganizationRequest) (*pb.Organization, error) {
	p, err := s.caller(ctx)
	if err != nil {
		return nil, err
	}
	id, err := uuidField("id", req.GetId())
	if err != nil {
		return nil, err
	}
	o, err := s.svc.GetOrganization(ctx, p, id)
	if err != nil {
		return nil, err
	}
	return organizationPB(o), nil
}

func (s *organizationServer) ListOrganizations(ctx context.Context, req *pb.ListOrganizationsRequest) (*pb.ListOrganizationsResponse, error) {
	p, err := s.caller(ctx)
	if err != nil {
		return nil, err
	}
	f := orgs.ListFilter{Departement: req.GetDepartement(), PageSize: int(req.GetPageSize()), PageToken: req.GetPageToken()}
	if k := req.GetKind(); k != pb.OrganizationKind_ORGANIZATION_KIND_UNSPECIFIED {
		if f.Kind = orgKinds[k]; f.Kind == "" {
			f.Kind = orgs.Kind(k.String()) // unknown enum value: refused by the domain
		}
	}
	page, err := s.svc.ListOrganizations(ctx, p, f)
	if err != nil {
		return nil, err
	}
	out := &pb.ListOrganizationsResponse{NextPageToken: page.NextPageToken}
	for _, o := range page.Organizations {
		out.Organizations = append(out.Organizations, organizationPB(o))
	}
	return out, nil
}

func (s *organizationServer) QualifySite(ctx context.Context, req *pb.QualifySiteRequest) (*pb.Organization, error) {
	p, err := s.caller(ctx)
	if err != nil {
		return nil, err
	}
	id, err := uuidField("site_id", req.GetSiteId())
	if err != nil {
		return nil, err
	}
	q := orgs.Qualification{LegalRepresentative: req.GetLegalRepresentative(), IBAN: req.GetIban(), BIC: req.GetBic()}
	if q.ValidFrom, err = dateField("valid_from", req.GetValidFrom()); err != nil {
		return nil, err
	}
	if q.ValidUntil, err = dateField("valid_until", req.GetValidUntil()); err != nil {
		return nil, err
	}
	o, err := s.svc.QualifySite(ctx, p, req.GetIdempotencyKey(), id, q)
	if err != nil {
		return nil, err
	}
	return organizationPB(o), nil
}

func (s *organizationServer) SuspendSite(ctx context.Context, req *pb.ChangeSiteStatusRequest) (*pb.Organization, error) {
	return s.changeStatus(ctx, req, s.svc.SuspendSite)
}

func (s *organizationServer) WithdrawSite(ctx context.Context, req *pb.ChangeSiteStatusRequest) (*pb.Organization, error) {
	return s.changeStatus(ctx, req, s.svc.WithdrawSite)
}

func (s *organizationServer) changeStatus(ctx context.Context, req *pb.ChangeSiteStatusRequest,
	change func(context.Context, auth.Principal, string, uuid.UUID, string) (orgs.Organization, error)) (*pb.Organization, error) {
	p, err := s.caller(ctx)
	if err != nil {
		return nil, err
	}
	id, err := uuidField("site_id", req.GetSiteId())
	if err != nil {
		return nil, err
	}
	o, err := change(ctx, p, req.GetIdempotencyKey(), id, req.GetReason())
	if err != nil {
		return nil, err
	}
	return organizationPB(o), nil
}

func (s *organizationServer) ImportSites(ctx context.Context, req *pb.ImportSitesRequest) (*pb.ImportSitesResponse, error) {
	p, err := s.caller(ctx)
	if err != nil {
		return nil, err
	}
	res, err := s.svc.ImportSites(ctx, p, req.GetIdempotencyKey(), req.GetCsv())
	if err != nil {
		return nil, err
	}
	out := &pb.ImportSitesResponse{
		Imported: int32(res.Imported), Updated: int32(res.Updated), Rejected: int32(res.Rejected),
		SiteIds: uuidStrings(res.SiteIDs),
	}
	for _, e := range res.Errors {
		out.Errors = append(out.Errors, &pb.ImportLineError{Line: int32(e.Line), Column: e.Column, Message: e.Message})
	}
	return out, nil
}
