package server

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/passnum/passnum/internal/fault"
	"github.com/passnum/passnum/internal/paging"
	"github.com/passnum/passnum/internal/programmes"
	pb "github.com/passnum/passnum/proto/passnum/v1"
)

// registerBooks registers BookService over app.Programmes.
func registerBooks(s *grpc.Server, app App) {
	pb.RegisterBookServiceServer(s, &bookServer{svc: app.Programmes})
}

// bookServer maps BookService to internal/programmes.
type bookServer struct {
	pb.UnimplementedBookServiceServer
	svc *programmes.Service
}

var bookStatuses = map[string]pb.BookStatus{
	programmes.BookInStock:   pb.BookStatus_BOOK_STATUS_IN_STOCK,
	programmes.BookHandedOut: pb.BookStatus_BOOK_STATUS_HANDED_OUT,
	programmes.BookCancelled: pb.BookStatus_BOOK_STATUS_CANCELLED,
	programmes.BookExpired:   pb.BookStatus_BOOK_STATUS_EXPIRED,
}

func bookPB(b *programmes.Book) *pb.Book {
	out := &pb.Book{
		ProgrammeId: b.Programme.String(), Number: b.Number, DistributorId: b.Distributor.String(),
		Status: bookStatuses[b.Status], TargetPublic: b.TargetPublic, Territory: b.Territory,
		FaceValueCents: b.FaceValueCents, VoucherCodes: make([]string, len(b.Codes)),
	}
	if !b.HandedOutAt.IsZero() {
		out.HandedOutAt = timestamppb.New(b.HandedOutAt)
	}
	for i, c := range b.Codes {
		out.VoucherCodes[i] = c.String()
	}
	return out
}

// bookRef parses a BookRef.
func bookRef(ref *pb.BookRef) (programmes.BookRef, error) {
	id, err := uuidField("book.programme_id", ref.GetProgrammeId())
	if err != nil {
		return programmes.BookRef{}, err
	}
	if ref.GetNumber() < 1 {
		return programmes.BookRef{}, fault.InvalidField("book.number", "Le numéro du chéquier commence à 1.")
	}
	return programmes.BookRef{Programme: id, Number: ref.GetNumber()}, nil
}

func (s *bookServer) OrderBooks(ctx context.Context, req *pb.OrderBooksRequest) (*pb.OrderBooksResponse, error) {
	p, err := lifecycleCaller(ctx, s.svc)
	if err != nil {
		return nil, err
	}
	spec := programmes.OrderSpec{Books: req.GetBooks()}
	if spec.Programme, err = uuidField("programme_id", req.GetProgrammeId()); err != nil {
		return nil, err
	}
	if spec.Distributor, err = uuidField("distributor_id", req.GetDistributorId()); err != nil {
		return nil, err
	}
	o, err := s.svc.OrderBooks(ctx, p, req.GetIdempotencyKey(), spec)
	if err != nil {
		return nil, err
	}
	return &pb.OrderBooksResponse{
		OrderId: o.ID.String(), ProgrammeId: o.Programme.String(), FirstNumber: o.FirstNumber, LastNumber: o.LastNumber,
		Vouchers: o.Vouchers, FaceValueCents: o.FaceValueCents, Ledger: ledgerRef(o.Ledger),
	}, nil
}

func (s *bookServer) HandOutBook(ctx context.Context, req *pb.HandOutBookRequest) (*pb.Book, error) {
	p, err := lifecycleCaller(ctx, s.svc)
	if err != nil {
		return nil, err
	}
	ref, err := bookRef(req.GetBook())
	if err != nil {
		return nil, err
	}
	b, err := s.svc.HandOutBook(ctx, p, req.GetIdempotencyKey(), programmes.HandOutSpec{
		Book: ref, TargetPublic: req.GetTargetPublic(), Territory: req.GetTerritory()})
	if err != nil {
		return nil, err
	}
	return bookPB(b), nil
}

func (s *bookServer) CancelBook(ctx context.Context, req *pb.CancelBookRequest) (*pb.Book, error) {
	p, err := lifecycleCaller(ctx, s.svc)
	if err != nil {
		return nil, err
	}
	ref, err := bookRef(req.GetBook())
	if err != nil {
		return nil, err
	}
	b, err := s.svc.CancelBook(ctx, p, req.GetIdempotencyKey(), programmes.CancelSpec{Book: ref, Reason: req.GetReason()})
	if err != nil {
		return nil, err
	}
	return bookPB(b), nil
}

func (s *bookServer) GetBook(ctx context.Context, req *pb.GetBookRequest) (*pb.Book, error) {
	p, err := lifecycleCaller(ctx, s.svc)
	if err != nil {
		return nil, err
	}
	ref, err := bookRef(req.GetBook())
	if err != nil {
		return nil, err
	}
	b, err := s.svc.GetBook(ctx, p, ref)
	if err != nil {
		return nil, err
	}
	return bookPB(b), nil
}

func (s *bookServer) ListBooks(ctx context.Context, req *pb.ListBooksRequest) (*pb.ListBooksResponse, error) {
	p, err := lifecycleCaller(ctx, s.svc)
	if err != nil {
		return nil, err
	}
	var f programmes.BookFilter
	if f.Programme, err = optionalUUIDField("programme_id", req.GetProgrammeId()); err != nil {
		return nil, err
	}
	if f.Distributor, err = optionalUUIDField("distributor_id", req.GetDistributorId()); err != nil {
		return nil, err
	}
	if st := req.GetStatus(); st != pb.BookStatus_BOOK_STATUS_UNSPECIFIED {
		for name, v := range bookStatuses {
			if v == st {
				f.Status = name
			}
		}
		if f.Status == "" {
			return nil, fault.InvalidField("status", "Ce statut de chéquier n'existe pas.")
		}
	}
	list, next, err := s.svc.ListBooks(ctx, p, f, paging.Request{Size: req.GetPageSize(), Token: req.GetPageToken()})
	if err != nil {
		return nil, err
	}
	out := &pb.ListBooksResponse{NextPageToken: next}
	for _, b := range list {
		out.Books = append(out.Books, bookPB(b))
	}
	return out, nil
}
