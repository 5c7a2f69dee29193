package server

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/passnum/passnum/internal/access"
	"github.com/passnum/passnum/internal/auth"
	"github.com/passnum/passnum/ledger"
	pb "github.com/passnum/passnum/proto/passnum/v1"
)

// ledgerClient serves LedgerService over the lifecycle environment's database and returns a
// client and a way to call it as someone.
func ledgerClient(e *lcEnv) (pb.LedgerServiceClient, func(p auth.Principal) context.Context) {
	e.t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		e.t.Fatal(err)
	}
	kid := auth.KeyID(pub)
	ks, err := auth.NewKeySet(auth.PublicKey{KID: kid, Key: pub})
	if err != nil {
		e.t.Fatal(err)
	}
	minter := auth.NewMinter(priv, kid, auth.DefaultIssuer, auth.DefaultAudience)
	srv := New(Config{Verifier: auth.NewVerifier(ks, auth.DefaultIssuer, auth.DefaultAudience),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))},
		App{Access: access.NewResolver(e.db.App), Ledger: e.l})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		e.t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	e.t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = conn.Close() })
	as := func(p auth.Principal) context.Context {
		tok, err := minter.Mint(p, time.Hour)
		if err != nil {
			e.t.Fatal(err)
		}
		return metadata.AppendToOutgoingContext(e.ctx, "authorization", "Bearer "+tok)
	}
	return pb.NewLedgerServiceClient(conn), as
}

// exportJournal reads a whole ExportJournal stream, checking the size of every chunk.
func exportJournal(ctx context.Context, c pb.LedgerServiceClient, req *pb.ExportJournalRequest) ([]byte, int, error) {
	stream, err := c.ExportJournal(ctx, req)
	if err != nil {
		return nil, 0, err
	}
	var (
		data   bytes.Buffer
		chunks int
	)
	for {
		chunk, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return data.Bytes(), chunks, nil
		}
		if err != nil {
			return nil, chunks, err
		}
		if n := len(chunk.GetData()); n == 0 || n > 64<<10 {
			return nil, chunks, fmt.Errorf("chunk of %d bytes", n)
		}
		chunks++
		data.Write(chunk.GetData())
	}
}

func TestLedgerService(t *testing.T) {
	e := newLCEnv(t, 0, 1)
	prog := e.funded(500_000)
	e.handedOut(prog, 2)
	id := uuid.MustParse(prog.GetId())
	// Enough journal for an export of several chunks: small returns of unissued value.
	err := e.l.RunInTx(e.ctx, "test_returns", func(ctx context.Context, tx pgx.Tx) error {
		entries := make([]ledger.Entry, 400)
		for i := range entries {
			entries[i] = ledger.Entry{Programme: id, Kind: ledger.KindReturn, Org: e.op.Org,
				Metadata: map[string]string{"motif": fmt.Sprintf("restitution partielle n° %d", i)},
				Postings: ledger.Move(ledger.AccountRef{Programme: id, Kind: ledger.Unissued},
					ledger.AccountRef{Programme: id, Kind: ledger.FunderReturned, Owner: e.state.Org}, 10)}
		}
		_, err := e.l.Post(ctx, tx, entries...)
		return err
	})
	e.must(err)
	// A programme the Drôme does not fund.
	other, err := e.programmes().CreateProgramme(e.as(e.state), &pb.CreateProgrammeRequest{
		IdempotencyKey: lcKey(), Name: "Pass numérique national",
		Funders:   []*pb.ProgrammeFunder{{FunderId: e.state.Org.String(), ShareBps: 10000}},
		ValidFrom: fmt.Sprintf("%d-01-01", time.Now().Year()), ValidUntil: fmt.Sprintf("%d-12-31", time.Now().Year()),
		Territories: []string{"26"}, DistributorIds: []string{e.caf.Org.String()},
	})
	e.must(err)

	c, as := ledgerClient(e)

	t.Run("verify", func(t *testing.T) {
		for _, who := range []auth.Principal{e.op, e.state, e.drome} {
			resp, err := c.VerifyLedger(as(who), &pb.VerifyLedgerRequest{ProgrammeId: prog.GetId()})
			if err != nil {
				t.Fatalf("%s: %v", who.Role, err)
			}
			if !resp.GetOk() || len(resp.GetChecks()) != 8 || resp.GetTransactions() < 400 ||
				resp.GetVerifiedAt().AsTime().IsZero() {
				t.Fatalf("%s: %v", who.Role, resp)
			}
			for _, ch := range resp.GetChecks() {
				if !ch.GetOk() || ch.GetDetail() == "" || len(ch.GetFigures()) == 0 {
					t.Errorf("check %v", ch)
				}
			}
			if got := resp.GetChecks()[0].GetFigures()["transactions"]; got != resp.GetTransactions() {
				t.Errorf("figures %d transactions, response %d", got, resp.GetTransactions())
			}
		}
		resp, err := c.VerifyLedger(as(e.op), &pb.VerifyLedgerRequest{})
		if err != nil || !resp.GetOk() {
			t.Fatalf("operator, everything: %v %v", resp, err)
		}
	})

	t.Run("refused", func(t *testing.T) {
		tests := []struct {
			name   string
			who    auth.Principal
			req    *pb.VerifyLedgerRequest
			code   codes.Code
			reason string
		}{
			{"funder, everything", e.drome, &pb.VerifyLedgerRequest{}, codes.PermissionDenied, ReasonOperatorOnly},
			{"funder, programme it does not fund", e.drome, &pb.VerifyLedgerRequest{ProgrammeId: other.GetId()},
				codes.PermissionDenied, ReasonObjectNotAllowed},
			{"distributor", e.caf, &pb.VerifyLedgerRequest{ProgrammeId: prog.GetId()}, codes.PermissionDenied, ReasonRoleNotAllowed},
			{"site", e.sites[0], &pb.VerifyLedgerRequest{ProgrammeId: prog.GetId()}, codes.PermissionDenied, ReasonRoleNotAllowed},
			{"bad id", e.op, &pb.VerifyLedgerRequest{ProgrammeId: "pas-un-uuid"}, codes.InvalidArgument, "INVALID_PROGRAMME_ID"},
			{"unknown programme", e.op, &pb.VerifyLedgerRequest{ProgrammeId: uuid.NewString()}, codes.NotFound, "PROGRAMME_NOT_FOUND"},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				_, err := c.VerifyLedger(as(tc.who), tc.req)
				st := status.Convert(err)
				if st.Code() != tc.code || reasonOf(st) != tc.reason {
					t.Fatalf("got %v %q (%s), want %v %s", st.Code(), reasonOf(st), st.Message(), tc.code, tc.reason)
				}
			})
		}
		for _, req := range []*pb.ExportJournalRequest{{}, {ProgrammeId: other.GetId()}} {
			_, _, err := exportJournal(as(e.drome), c, req)
			if st := status.Convert(err); st.Code() != codes.PermissionDenied {
				t.Errorf("funder export of %q: %v", req.GetProgrammeId(), err)
			}
		}
		_, _, err := exportJournal(as(e.op), c, &pb.ExportJournalRequest{ProgrammeId: prog.GetId(), Format: pb.ExportFormat(9)})
		if st := status.Convert(err); st.Code() != codes.InvalidArgument || reasonOf(st) != "INVALID_FORMAT" {
			t.Errorf("unknown format: %v", err)
		}
	})

	t.Run("export", func(t *testing.T) {
		for _, tc := range []struct {
			format pb.ExportFormat
			want   ledger.Format
		}{
			{pb.ExportFormat_EXPORT_FORMAT_UNSPECIFIED, ledger.FormatJSONL},
			{pb.ExportFormat_EXPORT_FORMAT_JSONL, ledger.FormatJSONL},
			{pb.ExportFormat_EXPORT_FORMAT_CSV, ledger.FormatCSV},
		} {
			data, chunks, err := exportJournal(as(e.drome), c, &pb.ExportJournalRequest{ProgrammeId: prog.GetId(), Format: tc.format})
			if err != nil {
				t.Fatalf("%v: %v", tc.format, err)
			}
			if chunks < 2 {
				t.Errorf("%v: %d bytes in %d chunk(s), want several", tc.format, len(data), chunks)
			}
			rep, err := ledger.VerifyExport(bytes.NewReader(data), tc.want)
			if err != nil || !rep.OK || rep.Transactions < 400 {
				t.Fatalf("%v: verify export: %v %+v", tc.format, err, rep)
			}
		}
		data, _, err := exportJournal(as(e.op), c, &pb.ExportJournalRequest{Format: pb.ExportFormat_EXPORT_FORMAT_CSV})
		if err != nil {
			t.Fatal(err)
		}
		if rep, err := ledger.VerifyExport(bytes.NewReader(data), ledger.FormatCSV); err != nil || !rep.OK ||
			rep.Check(ledger.CheckHashChain).Figures["chains"] != 2 {
			t.Fatalf("operator export of everything: %v %+v", err, rep)
		}
	})
	e.verify(prog.GetId())
}
