package server

import (
	"context"
	"sync"

	"github.com/google/uuid"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/passnum/passnum/internal/auth"
	"github.com/passnum/passnum/internal/civil"
	"github.com/passnum/passnum/internal/fault"
	"github.com/passnum/passnum/internal/programmes"
	pb "github.com/passnum/passnum/proto/passnum/v1"
)

// Default token bucket of CheckVoucher and RedeemVoucher per site organisation: a site
// checks and redeems a few vouchers a minute; 2 per second sustained with bursts of 30 lets
// a busy session through and makes guessing 60-bit codes hopeless.
const (
	DefaultVoucherRate  rate.Limit = 2
	DefaultVoucherBurst            = 30
)

// registerVouchers registers VoucherService over app.Programmes, with the per-site limit of
// app.VoucherRate and app.VoucherBurst.
func registerVouchers(s *grpc.Server, app App) {
	pb.RegisterVoucherServiceServer(s, &voucherServer{svc: app.Programmes, limits: newSiteLimits(app.VoucherRate, app.VoucherBurst)})
}

// voucherServer maps VoucherService to internal/programmes.
type voucherServer struct {
	pb.UnimplementedVoucherServiceServer
	svc    *programmes.Service
	limits *siteLimits
}

// siteLimits is one token bucket per site organisation, shared by CheckVoucher and
// RedeemVoucher, so that nobody can find codes by trying them. Buckets that have refilled
// are dropped from time to time: a full bucket is what a new one would be.
type siteLimits struct {
	limit rate.Limit
	burst int

	mu      sync.Mutex
	buckets map[uuid.UUID]*rate.Limiter
	calls   int
}

// sweepEvery is how many calls pass between two sweeps of refilled buckets.
const sweepEvery = 4096

func newSiteLimits(limit rate.Limit, burst int) *siteLimits {
	if limit == 0 {
		limit = DefaultVoucherRate
	}
	if burst <= 0 {
		burst = DefaultVoucherBurst
	}
	return &siteLimits{limit: limit, burst: burst, buckets: make(map[uuid.UUID]*rate.Limiter)}
}

// allow takes a token for p's organisation if p is a site; other roles are not limited.
func (l *siteLimits) allow(p auth.Principal) error {
	if p.Role != auth.RoleSite || l.limit == rate.Inf {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.calls++; l.calls%sweepEvery == 0 {
		for org, b := range l.buckets {
			if b.Tokens() >= float64(l.burst) {
				delete(l.buckets, org)
			}
		}
	}
	b := l.buckets[p.Org]
	if b == nil {
		b = rate.NewLimiter(l.limit, l.burst)
		l.buckets[p.Org] = b
	}
	if !b.Allow() {
		return fault.New(fault.ResourceExhausted, "RATE_LIMITED",
			"Trop de vérifications ou d'encaissements en peu de temps depuis votre lieu : patientez quelques secondes, puis réessayez.")
	}
	return nil
}

var voucherStatuses = map[string]pb.VoucherStatus{
	programmes.VoucherInStock:   pb.VoucherStatus_VOUCHER_STATUS_IN_STOCK,
	programmes.VoucherAvailable: pb.VoucherStatus_VOUCHER_STATUS_AVAILABLE,
	programmes.VoucherRedeemed:  pb.VoucherStatus_VOUCHER_STATUS_REDEEMED,
	programmes.VoucherExpired:   pb.VoucherStatus_VOUCHER_STATUS_EXPIRED,
	programmes.VoucherVoided:    pb.VoucherStatus_VOUCHER_STATUS_VOIDED,
}

var reversalReasons = map[pb.ReversalReason]string{
	pb.ReversalReason_REVERSAL_REASON_ERROR: programmes.ReasonError,
	pb.ReversalReason_REVERSAL_REASON_FRAUD: programmes.ReasonFraud,
}

func voucherPB(v *programmes.Voucher) *pb.Voucher {
	out := &pb.Voucher{
		Code: v.Code.String(), ProgrammeId: v.Programme.String(), BookNumber: v.Book, Status: voucherStatuses[v.Status],
		FaceValueCents: v.FaceValueCents, ValidUntil: civil.FormatDate(v.ValidUntil),
		RedeemableUntil: civil.FormatDate(v.RedeemableUntil), Territories: v.Territories,
	}
	if v.HeldBy != uuid.Nil {
		out.HeldBy, out.HeldUntil = v.HeldBy.String(), timestamppb.New(v.HeldUntil)
	}
	return out
}

func (s *voucherServer) CheckVoucher(ctx context.Context, req *pb.CheckVoucherRequest) (*pb.Voucher, error) {
	p, err := lifecycleCaller(ctx, s.svc)
	if err != nil {
		return nil, err
	}
	if err := s.limits.allow(p); err != nil {
		return nil, err
	}
	v, err := s.svc.CheckVoucher(ctx, p, req.GetCode())
	if err != nil {
		return nil, err
	}
	return voucherPB(v), nil
}

func (s *voucherServer) HoldVoucher(ctx context.Context, req *pb.HoldVoucherRequest) (*pb.Voucher, error) {
	p, err := lifecycleCaller(ctx, s.svc)
	if err != nil {
		return nil, err
	}
	v, err := s.svc.HoldVoucher(ctx, p, req.GetIdempotencyKey(), programmes.HoldSpec{Code: req.GetCode(), Minutes: req.GetMinutes()})
	if err != nil {
		return nil, err
	}
	return voucherPB(v), nil
}

func (s *voucherServer) RedeemVoucher(ctx context.Context, req *pb.RedeemVoucherRequest) (*pb.Redemption, error) {
	p, err := lifecycleCaller(ctx, s.svc)
	if err != nil {
		return nil, err
	}
	if err := s.limits.allow(p); err != nil {
		return nil, err
	}
	spec := programmes.RedeemSpec{Code: req.GetCode(), Service: req.GetService(), Minutes: req.GetMinutes()}
	if req.GetServiceDate() != "" {
		if spec.ServiceDate, err = dateField("service_date", req.GetServiceDate()); err != nil {
			return nil, err
		}
	}
	r, err := s.svc.RedeemVoucher(ctx, p, req.GetIdempotencyKey(), spec)
	if err != nil {
		return nil, err
	}
	return &pb.Redemption{
		Code: r.Code.String(), Round: r.Round, ProgrammeId: r.Programme.String(), SiteId: r.Site.String(),
		Service: r.Service, Minutes: r.Minutes, ServiceDate: civil.FormatDate(r.ServiceDate),
		AmountCents: r.AmountCents, RedeemedAt: timestamppb.New(r.RedeemedAt), Ledger: ledgerRef(r.Ledger),
	}, nil
}

func (s *voucherServer) ReverseRedemption(ctx context.Context, req *pb.ReverseRedemptionRequest) (*pb.Reversal, error) {
	p, err := lifecycleCaller(ctx, s.svc)
	if err != nil {
		return nil, err
	}
	reason, ok := reversalReasons[req.GetReason()]
	if !ok {
		return nil, fault.InvalidField("reason", "Indiquez le motif de l'annulation : REVERSAL_REASON_ERROR ou REVERSAL_REASON_FRAUD.")
	}
	r, err := s.svc.ReverseRedemption(ctx, p, req.GetIdempotencyKey(), programmes.ReverseSpec{
		Code: req.GetCode(), Reason: reason, Note: req.GetNote()})
	if err != nil {
		return nil, err
	}
	return &pb.Reversal{
		Code: r.Code.String(), Round: r.Round, Reason: req.GetReason(), Note: r.Note, AmountCents: r.AmountCents,
		SiteId: r.Site.String(), ReversedAt: timestamppb.New(r.ReversedAt), Ledger: ledgerRef(r.Ledger),
		VoucherStatus: voucherStatuses[r.VoucherStatus],
	}, nil
}
