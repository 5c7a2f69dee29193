package payouts_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/xml"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/passnum/passnum/internal/access"
	"github.com/passnum/passnum/internal/auth"
	"github.com/passnum/passnum/ledger"
	pb "github.com/passnum/passnum/proto/passnum/v1"
	"github.com/passnum/passnum/server"
)

// rpc is a PayoutService client over loopback to the real server (interceptors, authorisation
// tables, ownership resolver, error mapping) on the world's database.
type rpc struct {
	client pb.PayoutServiceClient
	minter *auth.Minter
}

func (w *world) serve() *rpc {
	w.t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	w.must(err)
	kid := auth.KeyID(pub)
	ks, err := auth.NewKeySet(auth.PublicKey{KID: kid, Key: pub})
	w.must(err)
	s := server.New(server.Config{
		Verifier: auth.NewVerifier(ks, auth.DefaultIssuer, auth.DefaultAudience),
		Logger:   slog.New(slog.NewJSONHandler(io.Discard, nil)),
	}, server.App{Access: access.NewResolver(w.db.App), Payouts: w.svc, Programmes: w.progs})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	w.must(err)
	go s.Serve(lis)
	w.t.Cleanup(s.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	w.must(err)
	w.t.Cleanup(func() { conn.Close() })
	return &rpc{client: pb.NewPayoutServiceClient(conn), minter: auth.NewMinter(priv, kid, auth.DefaultIssuer, auth.DefaultAudience)}
}

// as returns a context carrying a token for p.
func (r *rpc) as(t *testing.T, p auth.Principal) context.Context {
	t.Helper()
	tok, err := r.minter.Mint(p, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tok)
}

// wantStatus checks an RPC error's code and ErrorInfo reason.
func wantStatus(t *testing.T, err error, code codes.Code, reason string) *errdetails.ErrorInfo {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != code {
		t.Fatalf("got %s %q, want %s", st.Code(), st.Message(), code)
	}
	for _, d := range st.Details() {
		if ei, ok := d.(*errdetails.ErrorInfo); ok {
			if ei.GetReason() != reason {
				t.Fatalf("reason %s, want %s", ei.GetReason(), reason)
			}
			return ei
		}
	}
	if reason != "" {
		t.Fatalf("no ErrorInfo, want reason %s", reason)
	}
	return nil
}

// One month through the gRPC API: statements created, read by the operator and by their
// sites, approved, exported, paid; roles, ownership and faults come back as the API says.
func TestPayoutServiceOverGRPC(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	state := w.funder("État")
	p := w.programme("Drôme", 1000, 10, "2026-12-31", share{state, 10000})
	w.fund(p, state, 104000)
	b := w.order(p, 1)[0]
	w.handOut(p, b)
	siteA, siteB := w.site("Médiathèque", 0), w.site("Tiers-lieu", 1)
	w.redeem(b.codes[0], siteA, "2026-11-10")
	w.redeem(b.codes[1], siteA, "2026-11-12")
	w.redeem(b.codes[2], siteB, "2026-11-13")
	w.clock.set("2026-12-01")
	api := w.serve()
	op := api.as(t, w.operator)
	asA, asB := api.as(t, asSite(siteA)), api.as(t, asSite(siteB))

	_, err := api.client.CreateStatements(asA, &pb.CreateStatementsRequest{IdempotencyKey: "x", Cutoff: "2026-11-30"})
	wantStatus(t, err, codes.PermissionDenied, server.ReasonRoleNotAllowed)
	_, err = api.client.CreateStatements(op, &pb.CreateStatementsRequest{IdempotencyKey: "x", Cutoff: "30/11/2026"})
	wantStatus(t, err, codes.InvalidArgument, "INVALID_CUTOFF")

	created, err := api.client.CreateStatements(op, &pb.CreateStatementsRequest{IdempotencyKey: "nov", Cutoff: "2026-11-30"})
	if err != nil {
		t.Fatal(err)
	}
	if len(created.GetStatements()) != 2 {
		t.Fatalf("%d statements", len(created.GetStatements()))
	}
	var stA, stB *pb.Statement
	for _, st := range created.GetStatements() {
		switch st.GetSiteId() {
		case siteA.String():
			stA = st
		case siteB.String():
			stB = st
		}
	}
	if stA.GetTotalCents() != 2000 || stA.GetLineCount() != 2 || stA.GetStatus() != pb.StatementStatus_STATEMENT_STATUS_DRAFT ||
		stA.GetCutoff() != "2026-11-30" || stA.GetCreatedAt() == nil || len(stA.GetLines()) != 0 {
		t.Fatalf("statement of A: %v", stA)
	}

	// The site reads its own statement with its lines, not the other site's.
	got, err := api.client.GetStatement(asA, &pb.GetStatementRequest{StatementId: stA.GetId()})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.GetLines()) != 2 || got.GetLines()[0].GetVoucherCode() != b.codes[0].String() ||
		got.GetLines()[0].GetKind() != "redemption" || got.GetLines()[0].GetServiceDate() != "2026-11-10" ||
		got.GetLines()[0].GetAmountCents() != 1000 || got.GetLines()[0].GetMinutes() != 90 {
		t.Fatalf("lines: %v", got.GetLines())
	}
	_, err = api.client.GetStatement(asA, &pb.GetStatementRequest{StatementId: stB.GetId()})
	wantStatus(t, err, codes.PermissionDenied, server.ReasonObjectNotAllowed)
	_, err = api.client.GetStatement(asA, &pb.GetStatementRequest{StatementId: uuid.NewString()})
	wantStatus(t, err, codes.PermissionDenied, server.ReasonObjectNotAllowed)
	list, err := api.client.ListStatements(asB, &pb.ListStatementsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.GetStatements()) != 1 || list.GetStatements()[0].GetId() != stB.GetId() {
		t.Fatalf("site B lists %v", list.GetStatements())
	}

	for _, st := range []*pb.Statement{stA, stB} {
		if _, err := api.client.ApproveStatement(op, &pb.StatementActionRequest{IdempotencyKey: "ok-" + st.GetId(),
			StatementId: st.GetId()}); err != nil {
			t.Fatal(err)
		}
	}
	_, err = api.client.ApproveStatement(op, &pb.StatementActionRequest{IdempotencyKey: "again", StatementId: stA.GetId()})
	ei := wantStatus(t, err, codes.FailedPrecondition, "STATEMENT_NOT_DRAFT")
	if ei.GetMetadata()["status"] != "approved" {
		t.Fatalf("metadata %v", ei.GetMetadata())
	}

	file, err := api.client.ExportPaymentFile(op, &pb.ExportPaymentFileRequest{ExecutionDate: "2026-12-02"})
	if err != nil {
		t.Fatal(err)
	}
	var doc pain001
	if err := xml.Unmarshal(file.GetXml(), &doc); err != nil {
		t.Fatal(err)
	}
	if file.GetTransactions() != 2 || file.GetControlSumCents() != 3000 || doc.Init.GrpHdr.MsgID != file.GetMessageId() ||
		cents(t, doc.Init.GrpHdr.CtrlSum) != 3000 {
		t.Fatalf("payment file: %d transfers, %d cents", file.GetTransactions(), file.GetControlSumCents())
	}

	paid, err := api.client.MarkStatementPaid(op, &pb.MarkStatementPaidRequest{IdempotencyKey: "pay-a",
		StatementId: stA.GetId(), BankReference: "VIR-2026-12-01", PaidOn: "2026-12-01"})
	if err != nil {
		t.Fatal(err)
	}
	if paid.GetStatus() != pb.StatementStatus_STATEMENT_STATUS_PAID || paid.GetPaidOn() != "2026-12-01" ||
		paid.GetBankReference() != "VIR-2026-12-01" || len(paid.GetLedger()) != 1 || paid.GetLedger()[0].GetProgrammeId() != p.id.String() {
		t.Fatalf("paid: %v", paid)
	}
	if got := w.balance(p, ledger.SitePaid, siteA); got != 2000 {
		t.Fatalf("site A paid %d", got)
	}
	_, err = api.client.RejectStatement(op, &pb.StatementActionRequest{IdempotencyKey: "rej-b", StatementId: stB.GetId()})
	wantStatus(t, err, codes.InvalidArgument, "REJECTION_REASON_REQUIRED")
	rejected, err := api.client.RejectStatement(op, &pb.StatementActionRequest{IdempotencyKey: "rej-b",
		StatementId: stB.GetId(), Reason: "virement retourné par la banque"})
	if err != nil || rejected.GetStatus() != pb.StatementStatus_STATEMENT_STATUS_REJECTED {
		t.Fatalf("reject: %v %v", err, rejected)
	}

	// Close-out: funders read their own, before expiry nothing is returned yet.
	_, err = api.client.ExpireProgramme(op, &pb.ExpireProgrammeRequest{IdempotencyKey: "exp", ProgrammeId: p.id.String()})
	ei = wantStatus(t, err, codes.FailedPrecondition, "PROGRAMME_NOT_YET_EXPIRABLE")
	if ei.GetMetadata()["expirable_from"] != "2027-02-01" {
		t.Fatalf("metadata %v", ei.GetMetadata())
	}
	asState := api.as(t, auth.Principal{Subject: "anct", Org: state, Role: auth.RoleFunder})
	co, err := api.client.GetCloseOut(asState, &pb.GetCloseOutRequest{ProgrammeId: p.id.String(), FunderId: state.String()})
	if err != nil {
		t.Fatal(err)
	}
	if co.GetPaidInCents() != 104000 || co.GetFeesCents() != 4000 || co.GetRedeemedPaidCents() != 2000 ||
		co.GetOwedToSitesCents() != 1000 || co.GetReturnedCents() != 0 {
		t.Fatalf("close-out: %v", co)
	}
	_, err = api.client.GetCloseOut(asState, &pb.GetCloseOutRequest{ProgrammeId: p.id.String()})
	wantStatus(t, err, codes.PermissionDenied, server.ReasonOperatorOnly)
	expiring, err := api.client.ListExpiring(asState, &pb.ListExpiringRequest{Today: "2026-12-24"})
	if err != nil {
		t.Fatal(err)
	}
	if len(expiring.GetProgrammes()) != 1 || expiring.GetProgrammes()[0].GetWarning() != 7 ||
		expiring.GetProgrammes()[0].GetDaysLeft() != 7 || expiring.GetProgrammes()[0].GetBooksStarted() != 1 {
		t.Fatalf("expiring: %v", expiring.GetProgrammes())
	}
}
