package server

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/passnum/passnum/internal/auth"
	"github.com/passnum/passnum/internal/fault"
	"github.com/passnum/passnum/internal/reports"
	pb "github.com/passnum/passnum/proto/passnum/v1"
)

func TestChunkWriter(t *testing.T) {
	var chunks [][]byte
	w := &chunkWriter{send: func(b []byte) error {
		chunks = append(chunks, b)
		return nil
	}}
	var want bytes.Buffer
	for i, n := range []int{10, maxReportChunk - 10, 1, 3*maxReportChunk + 7, 0, 5} {
		p := bytes.Repeat([]byte{byte('a' + i)}, n)
		want.Write(p)
		if k, err := w.Write(p); k != n || err != nil {
			t.Fatalf("Write(%d bytes) = %d, %v", n, k, err)
		}
	}
	if err := w.flush(); err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	for i, c := range chunks {
		if len(c) == 0 || len(c) > maxReportChunk {
			t.Errorf("chunk %d: %d bytes", i, len(c))
		}
		got.Write(c)
	}
	if !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Error("chunks do not add up to what was written")
	}
	if len(chunks) != 5 {
		t.Errorf("%d chunks for %d bytes", len(chunks), want.Len())
	}
}

func TestReportQuery(t *testing.T) {
	org := uuid.New()
	ctx := auth.WithPrincipal(context.Background(), auth.Principal{Subject: "s", Org: org, Role: auth.RoleSite})
	scope, q, err := reportQuery(ctx, &pb.SpendReportRequest{
		Territory: "974", From: "2025-01", To: "2025-06-30",
		GroupBy: []pb.ReportDimension{pb.ReportDimension_REPORT_DIMENSION_MONTH, pb.ReportDimension_REPORT_DIMENSION_FUNDER},
	})
	if err != nil {
		t.Fatal(err)
	}
	if scope != (reports.Scope{Role: auth.RoleSite, Org: org}) {
		t.Errorf("scope %+v", scope)
	}
	if q.Territory != "974" || len(q.GroupBy) != 2 || q.GroupBy[0] != reports.Month || q.GroupBy[1] != reports.Funder ||
		!q.To.Equal(time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("query %+v", q)
	}
	_, _, err = reportQuery(ctx, &pb.SpendReportRequest{GroupBy: []pb.ReportDimension{pb.ReportDimension_REPORT_DIMENSION_UNSPECIFIED}})
	if f, ok := fault.As(err); !ok || f.Reason != "INVALID_GROUP_BY" {
		t.Errorf("unspecified dimension: %v", err)
	}
	if _, _, err := reportQuery(context.Background(), &pb.SpendReportRequest{}); err == nil {
		t.Error("no principal accepted")
	}
}

func TestSpendRow(t *testing.T) {
	p := uuid.New()
	row := spendRow(reports.Row{
		Key:      reports.Key{Programme: p, Month: time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC)},
		Measures: reports.Measures{BooksHandedOut: 3, BooksTargetPublic: 2, OwedCents: 12345, FunderShareCents: 6172},
	})
	if row.GetProgrammeId() != p.String() || row.GetSiteId() != "" || row.GetMonth() != "2024-03" ||
		row.GetTargetPublicShareBps() != 6666 || row.GetOwedCents() != 12345 || row.GetFunderShareCents() != 6172 {
		t.Errorf("row %v", row)
	}
}
