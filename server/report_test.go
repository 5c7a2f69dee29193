package server

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/csv"
	"errors"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/google/uuid"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/passnum/passnum/internal/access"
	"github.com/passnum/passnum/internal/auth"
	"github.com/passnum/passnum/internal/civil"
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

// TestReportsOverGRPC writes through the real API (programme, funding, books, hand-out,
// batched redemptions), then asks for reports over gRPC as each role: the aggregates come
// out of the database triggers, and each caller sees its own figures only.
func TestReportsOverGRPC(t *testing.T) {
	e := newLCEnv(t, rate.Inf, 2)
	prog := e.funded(100_000)
	book := e.handedOut(prog, 3)
	codes := book.GetVoucherCodes()
	for i, code := range codes[:6] {
		site := e.sites[0]
		if i >= 4 {
			site = e.sites[1]
		}
		_, err := e.vouchers().RedeemVoucher(e.as(site), redeemReq(code))
		e.must(err)
	}

	// A server with the report service, its own signing key.
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	e.must(err)
	ks, err := auth.NewKeySet(auth.PublicKey{KID: auth.KeyID(pub), Key: pub})
	e.must(err)
	minter := auth.NewMinter(priv, auth.KeyID(pub), auth.DefaultIssuer, auth.DefaultAudience)
	srv := New(Config{Verifier: auth.NewVerifier(ks, auth.DefaultIssuer, auth.DefaultAudience),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))},
		App{Access: access.NewResolver(e.db.App), Reports: reports.New(e.l)})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	e.must(err)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	e.must(err)
	t.Cleanup(func() { _ = conn.Close() })
	client := pb.NewReportServiceClient(conn)
	as := func(p auth.Principal) context.Context {
		tok, err := minter.Mint(p, time.Hour)
		e.must(err)
		return metadata.AppendToOutgoingContext(e.ctx, "authorization", "Bearer "+tok)
	}
	bySite := []pb.ReportDimension{pb.ReportDimension_REPORT_DIMENSION_SITE}
	month := time.Now().In(civil.Paris).Format("2006-01")

	resp, err := client.SpendReport(as(e.op), &pb.SpendReportRequest{ProgrammeId: prog.GetId(),
		GroupBy: []pb.ReportDimension{pb.ReportDimension_REPORT_DIMENSION_SITE, pb.ReportDimension_REPORT_DIMENSION_MONTH}})
	e.must(err)
	want := map[string][2]int64{"": {0, 0}, e.sites[0].Org.String(): {4, 4000}, e.sites[1].Org.String(): {2, 2000}}
	if len(resp.GetRows()) != len(want) {
		t.Fatalf("operator by site: %v", resp.GetRows())
	}
	for _, r := range resp.GetRows() {
		w, ok := want[r.GetSiteId()]
		if !ok || r.GetVouchersRedeemed() != w[0] || r.GetOwedCents() != w[1] || r.GetMonth() != month {
			t.Errorf("operator row %v, want %v", r, w)
		}
	}
	tot := resp.GetTotal()
	if tot.GetBooksIssued() != 3 || tot.GetBooksHandedOut() != 1 || tot.GetBooksTargetPublic() != 1 ||
		tot.GetBooksStarted() != 1 || tot.GetTargetPublicShareBps() != 10000 || tot.GetVouchersRedeemed() != 6 ||
		tot.GetMinutesDelivered() != 540 || tot.GetOwedCents() != 6000 {
		t.Errorf("operator total %v", tot)
	}

	resp, err = client.SpendReport(as(e.sites[1]), &pb.SpendReportRequest{GroupBy: bySite})
	e.must(err)
	if len(resp.GetRows()) != 1 || resp.GetRows()[0].GetSiteId() != e.sites[1].Org.String() ||
		resp.GetTotal().GetOwedCents() != 2000 || resp.GetTotal().GetBooksIssued() != 0 {
		t.Errorf("site sees %v", resp)
	}
	resp, err = client.SpendReport(as(e.caf), &pb.SpendReportRequest{})
	e.must(err)
	if resp.GetTotal().GetBooksIssued() != 3 || resp.GetTotal().GetVouchersRedeemed() != 6 {
		t.Errorf("distributor sees %v", resp.GetTotal())
	}
	resp, err = client.SpendReport(as(e.mairie), &pb.SpendReportRequest{GroupBy: bySite})
	e.must(err)
	if len(resp.GetRows()) != 0 || resp.GetTotal().GetBooksIssued() != 0 {
		t.Errorf("a distributor with no books sees %v", resp)
	}
	resp, err = client.SpendReport(as(e.drome), &pb.SpendReportRequest{
		GroupBy: []pb.ReportDimension{pb.ReportDimension_REPORT_DIMENSION_FUNDER}})
	e.must(err)
	if len(resp.GetRows()) != 2 {
		t.Fatalf("funder by funder: %v", resp.GetRows())
	}
	for _, r := range resp.GetRows() {
		if r.GetOwedCents() != 3000 || r.GetFunderShareCents() != 3000 {
			t.Errorf("funder row %v", r)
		}
	}
	_, err = client.SpendReport(as(e.op), &pb.SpendReportRequest{From: "mars"})
	if r := refusalOf(t, err); r.reason != "INVALID_FROM" || r.msg == "" {
		t.Errorf("bad month: %+v", r)
	}

	stream, err := client.ExportSpendReport(as(e.op), &pb.SpendReportRequest{GroupBy: bySite})
	e.must(err)
	var data []byte
	for {
		chunk, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		e.must(err)
		if n := len(chunk.GetData()); n == 0 || n > maxReportChunk {
			t.Errorf("chunk of %d bytes", n)
		}
		data = append(data, chunk.GetData()...)
	}
	if !bytes.HasPrefix(data, []byte("\xef\xbb\xbf")) {
		t.Fatal("export without byte order mark")
	}
	r := csv.NewReader(bytes.NewReader(data[3:]))
	r.Comma = ';'
	records, err := r.ReadAll()
	e.must(err)
	if len(records) != 5 || records[0][0] != "Lieu de médiation" || records[4][0] != "Total" || records[4][9] != "60,00" {
		t.Errorf("export: %q", records)
	}
}
