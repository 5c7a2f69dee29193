package server

import (
	"context"
	"errors"

	"github.com/google/uuid"
	"google.golang.org/grpc"

	"github.com/passnum/passnum/internal/auth"
	"github.com/passnum/passnum/internal/reports"
	pb "github.com/passnum/passnum/proto/passnum/v1"
)

// maxReportChunk bounds the bytes of one ReportChunk of a CSV export.
const maxReportChunk = 64 << 10

// registerReports registers ReportService over app.Reports.
func registerReports(s *grpc.Server, app App) {
	pb.RegisterReportServiceServer(s, &reportServer{reports: app.Reports})
}

// reportServer answers spend reports. Every role may call it (authz.go); the rows are filtered
// by the caller's scope in the report's SQL.
type reportServer struct {
	pb.UnimplementedReportServiceServer
	reports *reports.Service
}

var errNoReports = errors.New("report service not configured (server.App.Reports is nil)")

// reportQuery reads the caller's scope and the request.
func reportQuery(ctx context.Context, req *pb.SpendReportRequest) (reports.Scope, reports.Query, error) {
	p, ok := auth.PrincipalFrom(ctx)
	if !ok {
		return reports.Scope{}, reports.Query{}, errNoPrincipal
	}
	dims := make([]reports.Dimension, len(req.GetGroupBy()))
	for i, d := range req.GetGroupBy() {
		dims[i] = reports.Dimension(d) // same numbering; Parse refuses the others
	}
	q, err := reports.Request{
		Programme:   req.GetProgrammeId(),
		Funder:      req.GetFunderId(),
		Territory:   req.GetTerritory(),
		Distributor: req.GetDistributorId(),
		Site:        req.GetSiteId(),
		From:        req.GetFrom(),
		To:          req.GetTo(),
		GroupBy:     dims,
	}.Parse()
	return reports.ScopeOf(p), q, err
}

func (r *reportServer) SpendReport(ctx context.Context, req *pb.SpendReportRequest) (*pb.SpendReportResponse, error) {
	if r.reports == nil {
		return nil, errNoReports
	}
	scope, q, err := reportQuery(ctx, req)
	if err != nil {
		return nil, err
	}
	rep, err := r.reports.Spend(ctx, scope, q)
	if err != nil {
		return nil, err
	}
	resp := &pb.SpendReportResponse{Rows: make([]*pb.SpendRow, len(rep.Rows)), Total: spendRow(reports.Row{Measures: rep.Total})}
	for i, row := range rep.Rows {
		resp.Rows[i] = spendRow(row)
	}
	return resp, nil
}

func (r *reportServer) ExportSpendReport(req *pb.SpendReportRequest, stream grpc.ServerStreamingServer[pb.ReportChunk]) error {
	if r.reports == nil {
		return errNoReports
	}
	scope, q, err := reportQuery(stream.Context(), req)
	if err != nil {
		return err
	}
	w := &chunkWriter{send: func(b []byte) error { return stream.Send(&pb.ReportChunk{Data: b}) }}
	if err := r.reports.ExportSpend(stream.Context(), scope, q, w); err != nil {
		return err
	}
	return w.flush()
}

// spendRow converts a report row. Dimensions not grouped, and those that do not apply to the
// row (no site for book events, no territory before hand-out), are empty strings.
func spendRow(row reports.Row) *pb.SpendRow {
	id := func(u uuid.UUID) string {
		if u == uuid.Nil {
			return ""
		}
		return u.String()
	}
	out := &pb.SpendRow{
		ProgrammeId:          id(row.Programme),
		FunderId:             id(row.Funder),
		Territory:            row.Territory,
		DistributorId:        id(row.Distributor),
		SiteId:               id(row.Site),
		BooksIssued:          row.BooksIssued,
		BooksHandedOut:       row.BooksHandedOut,
		BooksStarted:         row.BooksStarted,
		BooksTargetPublic:    row.BooksTargetPublic,
		TargetPublicShareBps: row.TargetPublicShareBps(),
		VouchersRedeemed:     row.VouchersRedeemed,
		MinutesDelivered:     row.MinutesDelivered,
		OwedCents:            row.OwedCents,
		PaidCents:            row.PaidCents,
		ExpiredCents:         row.ExpiredCents,
		ReturnedCents:        row.ReturnedCents,
		FunderShareCents:     row.FunderShareCents,
	}
	if !row.Month.IsZero() {
		out.Month = row.Month.Format("2006-01")
	}
	return out
}

// chunkWriter sends what is written in chunks of at most maxReportChunk bytes.
type chunkWriter struct {
	send func([]byte) error
	buf  []byte
}

func (c *chunkWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		take := min(len(p), maxReportChunk-len(c.buf))
		c.buf = append(c.buf, p[:take]...)
		p = p[take:]
		if len(c.buf) == maxReportChunk {
			if err := c.flush(); err != nil {
				return n - len(p), err
			}
		}
	}
	return n, nil
}

// flush sends what is buffered, if anything.
func (c *chunkWriter) flush() error {
	if len(c.buf) == 0 {
		return nil
	}
	err := c.send(c.buf)
	c.buf = make([]byte, 0, maxReportChunk)
	return err
}
