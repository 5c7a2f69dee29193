package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/passnum/passnum/internal/auth"
	"github.com/passnum/passnum/internal/civil"
	"github.com/passnum/passnum/internal/fault"
	"github.com/passnum/passnum/internal/paging"
	"github.com/passnum/passnum/internal/payouts"
	pb "github.com/passnum/passnum/proto/passnum/v1"
)

// registerPayouts registers PayoutService over app.Payouts.
func registerPayouts(s *grpc.Server, app App) {
	pb.RegisterPayoutServiceServer(s, &payoutServer{svc: app.Payouts})
}

// payoutServer translates PayoutService calls to internal/payouts and back. Roles and object
// ownership are checked by the interceptors (authz.go); the domain filters lists by the
// caller's organisation.
type payoutServer struct {
	pb.UnimplementedPayoutServiceServer
	svc *payouts.Service
}

var errNoPayouts = errors.New("payout service not configured (server.App.Payouts is nil)")

// caller returns the authenticated principal and checks the service is configured.
func (s *payoutServer) caller(ctx context.Context) (auth.Principal, error) {
	if s.svc == nil {
		return auth.Principal{}, errNoPayouts
	}
	p, ok := auth.PrincipalFrom(ctx)
	if !ok {
		return auth.Principal{}, errNoPrincipal
	}
	return p, nil
}

// payoutID reads a required UUID field.
func payoutID(field, s string) (uuid.UUID, error) {
	id, err := uuid.Parse(s)
	if err != nil || id == uuid.Nil {
		return uuid.Nil, fault.InvalidField(field, fmt.Sprintf("L'identifiant « %s » n'est pas valide.", s))
	}
	return id, nil
}

// payoutOptionalID reads a UUID field that may be empty (uuid.Nil).
func payoutOptionalID(field, s string) (uuid.UUID, error) {
	if s == "" {
		return uuid.Nil, nil
	}
	return payoutID(field, s)
}

// payoutOptionalDate reads a date field that may be empty (zero time).
func payoutOptionalDate(field, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	return civil.ParseDate(field, s)
}

var statementStatuses = map[string]pb.StatementStatus{
	payouts.StatusDraft:    pb.StatementStatus_STATEMENT_STATUS_DRAFT,
	payouts.StatusApproved: pb.StatementStatus_STATEMENT_STATUS_APPROVED,
	payouts.StatusPaid:     pb.StatementStatus_STATEMENT_STATUS_PAID,
	payouts.StatusRejected: pb.StatementStatus_STATEMENT_STATUS_REJECTED,
}

func payoutTimestamp(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func statementPB(st *payouts.Statement) *pb.Statement {
	out := &pb.Statement{
		Id:              st.ID.String(),
		Number:          st.Number,
		SiteId:          st.Site.String(),
		Cutoff:          civil.FormatDate(st.Cutoff),
		Status:          statementStatuses[st.Status],
		TotalCents:      st.TotalCents,
		LineCount:       st.LineCount,
		CreatedAt:       payoutTimestamp(st.CreatedAt),
		ApprovedAt:      payoutTimestamp(st.ApprovedAt),
		PaidAt:          payoutTimestamp(st.PaidAt),
		PaidOn:          civil.FormatDate(st.PaidOn),
		BankReference:   st.BankReference,
		RejectionReason: st.RejectionReason,
	}
	for _, l := range st.Lines {
		out.Lines = append(out.Lines, &pb.StatementLine{
			LineNo:      l.No,
			Kind:        l.Kind,
			VoucherCode: l.VoucherCode.String(),
			Round:       int32(l.Round),
			ProgrammeId: l.Programme.String(),
			Service:     l.Service,
			Minutes:     l.Minutes,
			ServiceDate: civil.FormatDate(l.ServiceDate),
			AmountCents: l.AmountCents,
		})
	}
	for _, r := range st.Ledger {
		out.Ledger = append(out.Ledger, ledgerRef(r))
	}
	return out
}

func closeOutPB(c payouts.CloseOut) *pb.CloseOut {
	out := &pb.CloseOut{
		ProgrammeId:       c.Programme.String(),
		PaidInCents:       c.PaidInCents,
		FeesCents:         c.FeesCents,
		RedeemedPaidCents: c.RedeemedPaidCents,
		OwedToSitesCents:  c.OwedToSitesCents,
		ReturnedCents:     c.ReturnedCents,
	}
	if c.Funder != uuid.Nil {
		out.FunderId = c.Funder.String()
	}
	return out
}

func (s *payoutServer) CreateStatements(ctx context.Context, req *pb.CreateStatementsRequest) (*pb.CreateStatementsResponse, error) {
	p, err := s.caller(ctx)
	if err != nil {
		return nil, err
	}
	cutoff, err := civil.ParseDate("cutoff", req.GetCutoff())
	if err != nil {
		return nil, err
	}
	sts, err := s.svc.CreateStatements(ctx, p, req.GetIdempotencyKey(), cutoff)
	if err != nil {
		return nil, err
	}
	resp := &pb.CreateStatementsResponse{Statements: make([]*pb.Statement, len(sts))}
	for i := range sts {
		resp.Statements[i] = statementPB(&sts[i])
	}
	return resp, nil
}

func (s *payoutServer) ApproveStatement(ctx context.Context, req *pb.StatementActionRequest) (*pb.Statement, error) {
	p, err := s.caller(ctx)
	if err != nil {
		return nil, err
	}
	id, err := payoutID("statement_id", req.GetStatementId())
	if err != nil {
		return nil, err
	}
	st, err := s.svc.ApproveStatement(ctx, p, req.GetIdempotencyKey(), id)
	if err != nil {
		return nil, err
	}
	return statementPB(&st), nil
}

func (s *payoutServer) RejectStatement(ctx context.Context, req *pb.StatementActionRequest) (*pb.Statement, error) {
	p, err := s.caller(ctx)
	if err != nil {
		return nil, err
	}
	id, err := payoutID("statement_id", req.GetStatementId())
	if err != nil {
		return nil, err
	}
	st, err := s.svc.RejectStatement(ctx, p, req.GetIdempotencyKey(), id, req.GetReason())
	if err != nil {
		return nil, err
	}
	return statementPB(&st), nil
}

func (s *payoutServer) MarkStatementPaid(ctx context.Context, req *pb.MarkStatementPaidRequest) (*pb.Statement, error) {
	p, err := s.caller(ctx)
	if err != nil {
		return nil, err
	}
	id, err := payoutID("statement_id", req.GetStatementId())
	if err != nil {
		return nil, err
	}
	paidOn, err := civil.ParseDate("paid_on", req.GetPaidOn())
	if err != nil {
		return nil, err
	}
	st, err := s.svc.MarkStatementPaid(ctx, p, req.GetIdempotencyKey(), id, req.GetBankReference(), paidOn)
	if err != nil {
		return nil, err
	}
	return statementPB(&st), nil
}

func (s *payoutServer) GetStatement(ctx context.Context, req *pb.GetStatementRequest) (*pb.Statement, error) {
	p, err := s.caller(ctx)
	if err != nil {
		return nil, err
	}
	id, err := payoutID("statement_id", req.GetStatementId())
	if err != nil {
		return nil, err
	}
	st, err := s.svc.GetStatement(ctx, p, id)
	if err != nil {
		return nil, err
	}
	return statementPB(st), nil
}

func (s *payoutServer) ListStatements(ctx context.Context, req *pb.ListStatementsRequest) (*pb.ListStatementsResponse, error) {
	p, err := s.caller(ctx)
	if err != nil {
		return nil, err
	}
	site, err := payoutOptionalID("site_id", req.GetSiteId())
	if err != nil {
		return nil, err
	}
	f := payouts.ListFilter{Site: site}
	if req.GetStatus() != pb.StatementStatus_STATEMENT_STATUS_UNSPECIFIED {
		for name, st := range statementStatuses {
			if st == req.GetStatus() {
				f.Status = name
			}
		}
		if f.Status == "" {
			return nil, fault.InvalidField("status", "Ce statut de relevé n'existe pas.")
		}
	}
	sts, next, err := s.svc.ListStatements(ctx, p, f, paging.Request{Size: req.GetPageSize(), Token: req.GetPageToken()})
	if err != nil {
		return nil, err
	}
	resp := &pb.ListStatementsResponse{Statements: make([]*pb.Statement, len(sts)), NextPageToken: next}
	for i := range sts {
		resp.Statements[i] = statementPB(&sts[i])
	}
	return resp, nil
}

func (s *payoutServer) ExportPaymentFile(ctx context.Context, req *pb.ExportPaymentFileRequest) (*pb.PaymentFile, error) {
	p, err := s.caller(ctx)
	if err != nil {
		return nil, err
	}
	ids := make([]uuid.UUID, len(req.GetStatementIds()))
	for i, raw := range req.GetStatementIds() {
		if ids[i], err = payoutID("statement_ids", raw); err != nil {
			return nil, err
		}
	}
	exec, err := payoutOptionalDate("execution_date", req.GetExecutionDate())
	if err != nil {
		return nil, err
	}
	f, err := s.svc.ExportPaymentFile(ctx, p, ids, exec)
	if err != nil {
		return nil, err
	}
	return &pb.PaymentFile{MessageId: f.MessageID, Xml: f.XML, Transactions: f.Transactions,
		ControlSumCents: f.ControlSumCents}, nil
}

func (s *payoutServer) ListExpiring(ctx context.Context, req *pb.ListExpiringRequest) (*pb.ListExpiringResponse, error) {
	p, err := s.caller(ctx)
	if err != nil {
		return nil, err
	}
	today, err := payoutOptionalDate("today", req.GetToday())
	if err != nil {
		return nil, err
	}
	list, err := s.svc.ListExpiring(ctx, p, today)
	if err != nil {
		return nil, err
	}
	resp := &pb.ListExpiringResponse{Programmes: make([]*pb.ExpiringProgramme, len(list))}
	for i, e := range list {
		resp.Programmes[i] = &pb.ExpiringProgramme{
			ProgrammeId:       e.Programme.String(),
			Name:              e.Name,
			ValidUntil:        civil.FormatDate(e.ValidUntil),
			DaysLeft:          e.DaysLeft,
			Warning:           e.Warning,
			BooksIssued:       e.BooksIssued,
			BooksHandedOut:    e.BooksHandedOut,
			BooksNotHandedOut: e.BooksNotHandedOut,
			BooksStarted:      e.BooksStarted,
		}
	}
	return resp, nil
}

func (s *payoutServer) ExpireProgramme(ctx context.Context, req *pb.ExpireProgrammeRequest) (*pb.ExpireProgrammeResponse, error) {
	p, err := s.caller(ctx)
	if err != nil {
		return nil, err
	}
	id, err := payoutID("programme_id", req.GetProgrammeId())
	if err != nil {
		return nil, err
	}
	e, err := s.svc.ExpireProgramme(ctx, p, req.GetIdempotencyKey(), id)
	if err != nil {
		return nil, err
	}
	resp := &pb.ExpireProgrammeResponse{
		ProgrammeId:     e.Programme.String(),
		VouchersExpired: e.VouchersExpired,
		ExpiredCents:    e.ExpiredCents,
		ReturnedCents:   e.ReturnedCents,
		CloseOuts:       make([]*pb.CloseOut, len(e.CloseOuts)),
	}
	for i, c := range e.CloseOuts {
		resp.CloseOuts[i] = closeOutPB(c)
	}
	return resp, nil
}

func (s *payoutServer) GetCloseOut(ctx context.Context, req *pb.GetCloseOutRequest) (*pb.CloseOut, error) {
	p, err := s.caller(ctx)
	if err != nil {
		return nil, err
	}
	prog, err := payoutID("programme_id", req.GetProgrammeId())
	if err != nil {
		return nil, err
	}
	funder, err := payoutOptionalID("funder_id", req.GetFunderId())
	if err != nil {
		return nil, err
	}
	c, err := s.svc.GetCloseOut(ctx, p, prog, funder)
	if err != nil {
		return nil, err
	}
	return closeOutPB(c), nil
}
