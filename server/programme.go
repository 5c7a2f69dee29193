package server

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/passnum/passnum/internal/auth"
	"github.com/passnum/passnum/internal/civil"
	"github.com/passnum/passnum/internal/fault"
	"github.com/passnum/passnum/internal/paging"
	"github.com/passnum/passnum/internal/programmes"
	"github.com/passnum/passnum/ledger"
	pb "github.com/passnum/passnum/proto/passnum/v1"
)

// registerProgrammes registers ProgrammeService over app.Programmes.
func registerProgrammes(s *grpc.Server, app App) {
	pb.RegisterProgrammeServiceServer(s, &programmeServer{svc: app.Programmes})
}

// programmeServer maps ProgrammeService to internal/programmes.
type programmeServer struct {
	pb.UnimplementedProgrammeServiceServer
	svc *programmes.Service
}

var errNoProgrammes = errors.New("programme service not configured (server.App.Programmes is nil)")

// lifecycleCaller returns the authenticated caller and the programme service.
func lifecycleCaller(ctx context.Context, svc *programmes.Service) (auth.Principal, error) {
	if svc == nil {
		return auth.Principal{}, errNoProgrammes
	}
	p, ok := auth.PrincipalFrom(ctx)
	if !ok {
		return auth.Principal{}, errNoPrincipal
	}
	return p, nil
}

// uuidField parses a required identifier.
func uuidField(field, s string) (uuid.UUID, error) {
	if strings.TrimSpace(s) == "" {
		return uuid.Nil, fault.InvalidField(field, fmt.Sprintf("L'identifiant %s est obligatoire.", field))
	}
	id, err := uuid.Parse(strings.TrimSpace(s))
	if err != nil {
		return uuid.Nil, fault.InvalidField(field,
			fmt.Sprintf("L'identifiant %s « %s » n'est pas valide : il a la forme 123e4567-e89b-12d3-a456-426614174000.", field, s))
	}
	return id, nil
}

// optionalUUIDField parses an identifier that may be empty (uuid.Nil then).
func optionalUUIDField(field, s string) (uuid.UUID, error) {
	if strings.TrimSpace(s) == "" {
		return uuid.Nil, nil
	}
	return uuidField(field, s)
}

// dateField parses a required "YYYY-MM-DD" date.
func dateField(field, s string) (time.Time, error) {
	if strings.TrimSpace(s) == "" {
		return time.Time{}, fault.InvalidField(field, fmt.Sprintf("La date %s est obligatoire (AAAA-MM-JJ).", field))
	}
	return civil.ParseDate(field, s)
}

func ledgerRef(r ledger.Ref) *pb.LedgerRef {
	return &pb.LedgerRef{TransactionId: r.TransactionID.String(), ProgrammeId: r.Programme.String(), Seq: r.Seq}
}

func uuidStrings(ids []uuid.UUID) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = id.String()
	}
	return out
}

func programmePB(p *programmes.Programme) *pb.Programme {
	out := &pb.Programme{
		Id: p.ID.String(), Name: p.Name, FaceValueCents: p.FaceValueCents, VouchersPerBook: p.VouchersPerBook,
		ValidFrom: civil.FormatDate(p.ValidFrom), ValidUntil: civil.FormatDate(p.ValidUntil),
		GraceDays: p.GraceDays, Territories: p.Territories, DistributorIds: uuidStrings(p.Distributors),
		TargetPublicQuotaBps: p.TargetPublicQuotaBps, FeeBps: p.FeeBps, CreatedAt: timestamppb.New(p.CreatedAt),
		BooksOrdered: p.BooksOrdered, Status: pb.ProgrammeStatus_PROGRAMME_STATUS_OPEN,
	}
	if p.Status == programmes.ProgrammeExpired {
		out.Status = pb.ProgrammeStatus_PROGRAMME_STATUS_EXPIRED
	}
	for _, f := range p.Funders {
		out.Funders = append(out.Funders, &pb.ProgrammeFunder{FunderId: f.Funder.String(), ShareBps: f.ShareBps, CapCents: f.CapCents})
	}
	return out
}

func (s *programmeServer) CreateProgramme(ctx context.Context, req *pb.CreateProgrammeRequest) (*pb.Programme, error) {
	p, err := lifecycleCaller(ctx, s.svc)
	if err != nil {
		return nil, err
	}
	spec := programmes.ProgrammeSpec{
		Name: req.GetName(), FaceValueCents: req.GetFaceValueCents(), VouchersPerBook: req.GetVouchersPerBook(),
		GraceDays: req.GetGraceDays(), Territories: req.GetTerritories(),
		TargetPublicQuotaBps: req.GetTargetPublicQuotaBps(), FeeBps: req.GetFeeBps(),
	}
	for _, f := range req.GetFunders() {
		id, err := uuidField("funder_id", f.GetFunderId())
		if err != nil {
			return nil, err
		}
		spec.Funders = append(spec.Funders, programmes.FunderShare{Funder: id, ShareBps: f.GetShareBps(), CapCents: f.GetCapCents()})
	}
	for _, d := range req.GetDistributorIds() {
		id, err := uuidField("distributor_ids", d)
		if err != nil {
			return nil, err
		}
		spec.Distributors = append(spec.Distributors, id)
	}
	if spec.ValidFrom, err = dateField("valid_from", req.GetValidFrom()); err != nil {
		return nil, err
	}
	if spec.ValidUntil, err = dateField("valid_until", req.GetValidUntil()); err != nil {
		return nil, err
	}
	prog, err := s.svc.CreateProgramme(ctx, p, req.GetIdempotencyKey(), spec)
	if err != nil {
		return nil, err
	}
	return programmePB(prog), nil
}

func (s *programmeServer) GetProgramme(ctx context.Context, req *pb.GetProgrammeRequest) (*pb.Programme, error) {
	p, err := lifecycleCaller(ctx, s.svc)
	if err != nil {
		return nil, err
	}
	id, err := uuidField("id", req.GetId())
	if err != nil {
		return nil, err
	}
	prog, err := s.svc.GetProgramme(ctx, p, id)
	if err != nil {
		return nil, err
	}
	return programmePB(prog), nil
}

func (s *programmeServer) ListProgrammes(ctx context.Context, req *pb.ListProgrammesRequest) (*pb.ListProgrammesResponse, error) {
	p, err := lifecycleCaller(ctx, s.svc)
	if err != nil {
		return nil, err
	}
	list, next, err := s.svc.ListProgrammes(ctx, p, paging.Request{Size: req.GetPageSize(), Token: req.GetPageToken()})
	if err != nil {
		return nil, err
	}
	out := &pb.ListProgrammesResponse{NextPageToken: next}
	for _, prog := range list {
		out.Programmes = append(out.Programmes, programmePB(prog))
	}
	return out, nil
}

func (s *programmeServer) RecordFunding(ctx context.Context, req *pb.RecordFundingRequest) (*pb.Funding, error) {
	p, err := lifecycleCaller(ctx, s.svc)
	if err != nil {
		return nil, err
	}
	spec := programmes.FundingSpec{AmountCents: req.GetAmountCents(), BankReference: req.GetBankReference()}
	if spec.Programme, err = uuidField("programme_id", req.GetProgrammeId()); err != nil {
		return nil, err
	}
	if spec.Funder, err = uuidField("funder_id", req.GetFunderId()); err != nil {
		return nil, err
	}
	if spec.ReceivedOn, err = dateField("received_on", req.GetReceivedOn()); err != nil {
		return nil, err
	}
	fd, err := s.svc.RecordFunding(ctx, p, req.GetIdempotencyKey(), spec)
	if err != nil {
		return nil, err
	}
	return &pb.Funding{
		Id: fd.ID.String(), ProgrammeId: fd.Programme.String(), FunderId: fd.Funder.String(),
		AmountCents: fd.AmountCents, FeeCents: fd.FeeCents, BudgetCents: fd.BudgetCents,
		BankReference: fd.BankReference, ReceivedOn: civil.FormatDate(fd.ReceivedOn), Ledger: ledgerRef(fd.Ledger),
	}, nil
}

func (s *programmeServer) GetProgrammeBalance(ctx context.Context, req *pb.GetProgrammeBalanceRequest) (*pb.ProgrammeBalance, error) {
	p, err := lifecycleCaller(ctx, s.svc)
	if err != nil {
		return nil, err
	}
	id, err := uuidField("programme_id", req.GetProgrammeId())
	if err != nil {
		return nil, err
	}
	var asOf time.Time
	if req.GetAsOf() != nil {
		if err := req.GetAsOf().CheckValid(); err != nil {
			return nil, fault.InvalidField("as_of", "L'instant demandé n'est pas valide.")
		}
		asOf = req.GetAsOf().AsTime()
	}
	bal, err := s.svc.ProgrammeBalance(ctx, p, id, asOf)
	if err != nil {
		return nil, err
	}
	out := &pb.ProgrammeBalance{
		ProgrammeId:      id.String(),
		PaidInCents:      bal.Totals[ledger.FunderCashIn],
		FeesCents:        bal.Totals[ledger.Fees],
		UnissuedCents:    bal.Totals[ledger.Unissued],
		OutstandingCents: bal.Totals[ledger.Outstanding],
		PayableCents:     bal.Totals[ledger.SitePayable],
		PaidCents:        bal.Totals[ledger.SitePaid],
		ReturnedCents:    bal.Totals[ledger.FunderReturned],
	}
	for _, a := range bal.Accounts {
		owner := ""
		if a.Account.Owner != uuid.Nil {
			owner = a.Account.Owner.String()
		}
		out.Accounts = append(out.Accounts, &pb.AccountBalance{Kind: string(a.Account.Kind), OwnerId: owner, BalanceCents: a.Cents})
	}
	return out, nil
}
