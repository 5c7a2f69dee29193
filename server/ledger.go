package server

import (
	"context"
	"errors"
	"maps"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/passnum/passnum/internal/fault"
	"github.com/passnum/passnum/ledger"
	pb "github.com/passnum/passnum/proto/passnum/v1"
)

// registerLedger registers LedgerService over app.Ledger.
func registerLedger(s *grpc.Server, app App) {
	pb.RegisterLedgerServiceServer(s, &ledgerServer{ledger: app.Ledger})
}

// ledgerServer lets operators, and funders for the programmes they fund (authz.go), verify
// the ledger and export its journal.
type ledgerServer struct {
	pb.UnimplementedLedgerServiceServer
	ledger *ledger.Ledger
}

var errNoLedger = errors.New("ledger not configured (server.App.Ledger is nil)")

// VerifyLedger verifies one programme, or everything when programme_id is empty. A failed
// check is an answer, not an error: ok is false and the check says why.
func (s *ledgerServer) VerifyLedger(ctx context.Context, req *pb.VerifyLedgerRequest) (*pb.VerifyLedgerResponse, error) {
	if s.ledger == nil {
		return nil, errNoLedger
	}
	programme, err := optionalUUIDField("programme_id", req.GetProgrammeId())
	if err != nil {
		return nil, err
	}
	rep, err := s.ledger.Verify(ctx, programme)
	if err != nil {
		return nil, err
	}
	return verifyResponse(rep), nil
}

func verifyResponse(rep *ledger.Report) *pb.VerifyLedgerResponse {
	resp := &pb.VerifyLedgerResponse{
		Ok:           rep.OK,
		VerifiedAt:   timestamppb.New(rep.VerifiedAt),
		Transactions: rep.Transactions,
		Postings:     rep.Postings,
		Checks:       make([]*pb.Check, len(rep.Checks)),
	}
	for i, c := range rep.Checks {
		resp.Checks[i] = &pb.Check{Name: c.Name, Ok: c.OK, Detail: c.Detail, Figures: maps.Clone(c.Figures)}
	}
	return resp
}

// exportFormats maps the API's formats to the ledger's; unspecified means JSON lines.
var exportFormats = map[pb.ExportFormat]ledger.Format{
	pb.ExportFormat_EXPORT_FORMAT_UNSPECIFIED: ledger.FormatJSONL,
	pb.ExportFormat_EXPORT_FORMAT_JSONL:       ledger.FormatJSONL,
	pb.ExportFormat_EXPORT_FORMAT_CSV:         ledger.FormatCSV,
}

// ExportJournal streams the journal of one programme, or of everything when programme_id is
// empty, in chunks of at most 64 KiB, read from one snapshot as it is sent.
func (s *ledgerServer) ExportJournal(req *pb.ExportJournalRequest, stream grpc.ServerStreamingServer[pb.ExportChunk]) error {
	if s.ledger == nil {
		return errNoLedger
	}
	programme, err := optionalUUIDField("programme_id", req.GetProgrammeId())
	if err != nil {
		return err
	}
	format, ok := exportFormats[req.GetFormat()]
	if !ok {
		return fault.InvalidField("format",
			"Format d'export inconnu : choisissez JSON lines (EXPORT_FORMAT_JSONL) ou CSV (EXPORT_FORMAT_CSV).")
	}
	w := &chunkWriter{send: func(b []byte) error { return stream.Send(&pb.ExportChunk{Data: b}) }}
	if err := s.ledger.Export(stream.Context(), w, programme, format); err != nil {
		return err
	}
	return w.flush()
}
