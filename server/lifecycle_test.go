package server

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"golang.org/x/time/rate"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/passnum/passnum/internal/access"
	"github.com/passnum/passnum/internal/auth"
	"github.com/passnum/passnum/internal/ident"
	"github.com/passnum/passnum/internal/orgs"
	"github.com/passnum/passnum/internal/programmes"
	"github.com/passnum/passnum/internal/testdb"
	"github.com/passnum/passnum/ledger"
	pb "github.com/passnum/passnum/proto/passnum/v1"
)

// lcEnv is a passnum gRPC server on a loopback listener over a fresh database, with the
// organisations of a small territory and a token for each.
type lcEnv struct {
	t      *testing.T
	ctx    context.Context
	db     *testdb.DB
	l      *ledger.Ledger
	svc    *programmes.Service
	addr   string
	minter *auth.Minter
	conn   *grpc.ClientConn

	op, state, drome, caf, mairie auth.Principal
	sites                         []auth.Principal
}

var lcKeys atomic.Int64

func lcKey() string {
	return "key-" + strconv.FormatInt(lcKeys.Add(1), 10) + "-" + uuid.NewString()[:8]
}

var lcServices = []string{"Aide aux démarches administratives", "Maîtrise des outils numériques du quotidien"}

// newLCEnv starts the server; voucherRate 0 is the production default.
func newLCEnv(t *testing.T, voucherRate rate.Limit, sites int) *lcEnv {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	db := testdb.New(t)
	l := ledger.New(db.App, nil)
	e := &lcEnv{t: t, ctx: ctx, db: db, l: l, svc: programmes.New(l, programmes.Options{})}
	t.Cleanup(e.svc.Close)

	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	kid := auth.KeyID(pub)
	ks, err := auth.NewKeySet(auth.PublicKey{KID: kid, Key: pub})
	if err != nil {
		t.Fatal(err)
	}
	e.minter = auth.NewMinter(priv, kid, auth.DefaultIssuer, auth.DefaultAudience)
	srv := New(Config{Verifier: auth.NewVerifier(ks, auth.DefaultIssuer, auth.DefaultAudience),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))},
		App{Access: access.NewResolver(db.App), Programmes: e.svc, VoucherRate: voucherRate})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	e.addr = lis.Addr().String()
	e.conn = e.dial()

	o := orgs.New(l)
	e.op = auth.Principal{Subject: "ops", Org: uuid.New(), Role: auth.RoleOperator}
	if _, err := o.EnsureOperator(ctx, e.op.Org, "Opérateur Pass numérique"); err != nil {
		t.Fatal(err)
	}
	org := func(kind orgs.Kind, role auth.Role, name, dep string) auth.Principal {
		org, err := o.CreateOrganization(ctx, e.op, lcKey(), orgs.NewOrganization{Kind: kind, Name: name, Departement: dep})
		if err != nil {
			t.Fatal(err)
		}
		return auth.Principal{Subject: "agent", Org: org.ID, Role: role}
	}
	e.state = org(orgs.KindFunder, auth.RoleFunder, "Agence nationale de la cohésion des territoires", "")
	e.drome = org(orgs.KindFunder, auth.RoleFunder, "Département de la Drôme", "26")
	e.caf = org(orgs.KindDistributor, auth.RoleDistributor, "CAF de la Drôme", "26")
	e.mairie = org(orgs.KindDistributor, auth.RoleDistributor, "Mairie de Valence", "26")
	y := time.Now().Year()
	for i := range sites {
		n := lcKeys.Add(1)
		s, err := o.CreateOrganization(ctx, e.op, lcKey(), orgs.NewOrganization{
			Kind: orgs.KindSite, Name: fmt.Sprintf("Espace numérique %d", i+1), SIRET: lcSIRET(n),
			Site: &orgs.SiteDetails{IBAN: lcIBAN(n), BIC: "CEPAFRPP", Services: lcServices, CodeINSEE: "26113",
				LegalRepresentative: "Camille Martin"},
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := o.QualifySite(ctx, e.op, lcKey(), s.ID, orgs.Qualification{
			ValidFrom: time.Date(y-1, 1, 1, 0, 0, 0, 0, time.UTC), ValidUntil: time.Date(y+1, 12, 31, 0, 0, 0, 0, time.UTC)}); err != nil {
			t.Fatal(err)
		}
		e.sites = append(e.sites, auth.Principal{Subject: "accueil", Org: s.ID, Role: auth.RoleSite})
	}
	return e
}

func (e *lcEnv) dial() *grpc.ClientConn {
	e.t.Helper()
	c, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = c.Close() })
	return c
}

// as is a context carrying p's token.
func (e *lcEnv) as(p auth.Principal) context.Context {
	e.t.Helper()
	tok, err := e.minter.Mint(p, time.Hour)
	if err != nil {
		e.t.Fatal(err)
	}
	return metadata.AppendToOutgoingContext(e.ctx, "authorization", "Bearer "+tok)
}

func (e *lcEnv) programmes() pb.ProgrammeServiceClient { return pb.NewProgrammeServiceClient(e.conn) }
func (e *lcEnv) books() pb.BookServiceClient           { return pb.NewBookServiceClient(e.conn) }
func (e *lcEnv) vouchers() pb.VoucherServiceClient     { return pb.NewVoucherServiceClient(e.conn) }

func (e *lcEnv) must(err error) {
	e.t.Helper()
	if err != nil {
		e.t.Fatal(err)
	}
}

// verify fails the test unless the programme's ledger verifies.
func (e *lcEnv) verify(programme string) {
	e.t.Helper()
	rep, err := e.l.Verify(e.ctx, uuid.MustParse(programme))
	e.must(err)
	for _, c := range rep.Checks {
		if !c.OK {
			e.t.Errorf("ledger check %s failed: %s %v", c.Name, c.Detail, c.Figures)
		}
	}
	if !rep.OK {
		e.t.FailNow()
	}
}

// funded creates a programme co-financed by the State and the Drôme, has both pay
// amountEach, and returns it.
func (e *lcEnv) funded(amountEach int64) *pb.Programme {
	e.t.Helper()
	y := time.Now().Year()
	prog, err := e.programmes().CreateProgramme(e.as(e.drome), &pb.CreateProgrammeRequest{
		IdempotencyKey: lcKey(), Name: "Pass numérique Drôme",
		Funders: []*pb.ProgrammeFunder{{FunderId: e.state.Org.String(), ShareBps: 5000, CapCents: 150_000_000},
			{FunderId: e.drome.Org.String(), ShareBps: 5000}},
		ValidFrom: fmt.Sprintf("%d-01-01", y-1), ValidUntil: fmt.Sprintf("%d-12-31", y+1),
		Territories: []string{"26"}, DistributorIds: []string{e.caf.Org.String(), e.mairie.Org.String()}, FeeBps: 400,
	})
	e.must(err)
	if amountEach > 0 {
		for i, f := range []auth.Principal{e.state, e.drome} {
			_, err := e.programmes().RecordFunding(e.as(e.op), &pb.RecordFundingRequest{
				IdempotencyKey: lcKey(), ProgrammeId: prog.GetId(), FunderId: f.Org.String(), AmountCents: amountEach,
				BankReference: fmt.Sprintf("VIR-%d", i), ReceivedOn: time.Now().Format(time.DateOnly)})
			e.must(err)
		}
	}
	return prog
}

// handedOut orders books for the CAF and hands the first one out; it returns that book.
func (e *lcEnv) handedOut(prog *pb.Programme, books int32) *pb.Book {
	e.t.Helper()
	_, err := e.books().OrderBooks(e.as(e.state), &pb.OrderBooksRequest{IdempotencyKey: lcKey(), ProgrammeId: prog.GetId(),
		DistributorId: e.caf.Org.String(), Books: books})
	e.must(err)
	b, err := e.books().HandOutBook(e.as(e.caf), &pb.HandOutBookRequest{IdempotencyKey: lcKey(),
		Book: &pb.BookRef{ProgrammeId: prog.GetId(), Number: 1}, TargetPublic: true, Territory: "26"})
	e.must(err)
	return b
}

func redeemReq(code string) *pb.RedeemVoucherRequest {
	return &pb.RedeemVoucherRequest{IdempotencyKey: lcKey(), Code: code, Service: lcServices[0], Minutes: 90}
}

// refusal is what a client sees of a refused call: code, message and ErrorInfo.
type refusal struct {
	code   codes.Code
	msg    string
	reason string
	meta   map[string]string
}

func refusalOf(t testing.TB, err error) refusal {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok || err == nil {
		t.Fatalf("want a status error, got %v", err)
	}
	r := refusal{code: st.Code(), msg: st.Message()}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			r.reason, r.meta = info.GetReason(), info.GetMetadata()
		}
	}
	return r
}

func wantRefusal(t testing.TB, err error, code codes.Code, reason string) refusal {
	t.Helper()
	r := refusalOf(t, err)
	if r.code != code || r.reason != reason {
		t.Fatalf("want %s %s, got %s %s: %s", code, reason, r.code, r.reason, r.msg)
	}
	return r
}

func TestLifecycleOverGRPC(t *testing.T) {
	e := newLCEnv(t, rate.Inf, 2)
	prog := e.funded(0)
	id := prog.GetId()
	if prog.GetFaceValueCents() != 1000 || prog.GetVouchersPerBook() != 10 || prog.GetGraceDays() != 31 ||
		prog.GetStatus() != pb.ProgrammeStatus_PROGRAMME_STATUS_OPEN {
		t.Fatalf("programme: %v", prog)
	}
	e.verify(id)

	// Not funded yet: refused, nothing written.
	_, err := e.books().OrderBooks(e.as(e.op), &pb.OrderBooksRequest{IdempotencyKey: lcKey(), ProgrammeId: id,
		DistributorId: e.caf.Org.String(), Books: 1})
	r := wantRefusal(t, err, codes.FailedPrecondition, "PROGRAMME_NOT_FUNDED")
	if r.meta["needed_cents"] != "10000" || r.meta["available_cents"] != "0" {
		t.Fatalf("not funded: %+v", r)
	}
	for i, f := range []auth.Principal{e.state, e.drome} {
		fd, err := e.programmes().RecordFunding(e.as(e.op), &pb.RecordFundingRequest{IdempotencyKey: lcKey(),
			ProgrammeId: id, FunderId: f.Org.String(), AmountCents: 52_000, BankReference: fmt.Sprintf("VIR-%d", i),
			ReceivedOn: time.Now().Format(time.DateOnly)})
		e.must(err)
		if fd.GetFeeCents() != 2000 || fd.GetBudgetCents() != 50_000 || fd.GetLedger().GetSeq() == 0 {
			t.Fatalf("funding: %v", fd)
		}
	}
	e.verify(id)
	bal, err := e.programmes().GetProgrammeBalance(e.as(e.state), &pb.GetProgrammeBalanceRequest{ProgrammeId: id})
	e.must(err)
	if bal.GetPaidInCents() != 104_000 || bal.GetFeesCents() != 4000 || bal.GetUnissuedCents() != 100_000 {
		t.Fatalf("balance: %v", bal)
	}

	order, err := e.books().OrderBooks(e.as(e.drome), &pb.OrderBooksRequest{IdempotencyKey: lcKey(), ProgrammeId: id,
		DistributorId: e.caf.Org.String(), Books: 3})
	e.must(err)
	if order.GetFirstNumber() != 1 || order.GetLastNumber() != 3 || order.GetFaceValueCents() != 30_000 {
		t.Fatalf("order: %v", order)
	}
	e.verify(id)

	book, err := e.books().HandOutBook(e.as(e.caf), &pb.HandOutBookRequest{IdempotencyKey: lcKey(),
		Book: &pb.BookRef{ProgrammeId: id, Number: 1}, TargetPublic: true, Territory: "26"})
	e.must(err)
	if book.GetStatus() != pb.BookStatus_BOOK_STATUS_HANDED_OUT || len(book.GetVoucherCodes()) != 10 || book.GetHandedOutAt() == nil {
		t.Fatalf("book: %v", book)
	}
	e.verify(id)
	// The Mairie may neither see nor hand out the CAF's books.
	_, err = e.books().GetBook(e.as(e.mairie), &pb.GetBookRequest{Book: &pb.BookRef{ProgrammeId: id, Number: 1}})
	wantRefusal(t, err, codes.PermissionDenied, ReasonObjectNotAllowed)
	_, err = e.books().HandOutBook(e.as(e.mairie), &pb.HandOutBookRequest{IdempotencyKey: lcKey(),
		Book: &pb.BookRef{ProgrammeId: id, Number: 2}, Territory: "26"})
	wantRefusal(t, err, codes.PermissionDenied, ReasonObjectNotAllowed)
	list, err := e.books().ListBooks(e.as(e.mairie), &pb.ListBooksRequest{ProgrammeId: id})
	e.must(err)
	if len(list.GetBooks()) != 0 {
		t.Fatalf("the Mairie sees %d books", len(list.GetBooks()))
	}
	list, err = e.books().ListBooks(e.as(e.caf), &pb.ListBooksRequest{Status: pb.BookStatus_BOOK_STATUS_IN_STOCK, PageSize: 1})
	e.must(err)
	if len(list.GetBooks()) != 1 || list.GetNextPageToken() == "" {
		t.Fatalf("CAF's books in stock, page 1: %v", list)
	}

	code := book.GetVoucherCodes()[0]
	site, other := e.sites[0], e.sites[1]
	v, err := e.vouchers().CheckVoucher(e.as(site), &pb.CheckVoucherRequest{Code: code})
	e.must(err)
	if v.GetStatus() != pb.VoucherStatus_VOUCHER_STATUS_AVAILABLE || v.GetFaceValueCents() != 1000 ||
		v.GetRedeemableUntil() != fmt.Sprintf("%d-01-31", time.Now().Year()+2) {
		t.Fatalf("check: %v", v)
	}
	held, err := e.vouchers().HoldVoucher(e.as(site), &pb.HoldVoucherRequest{IdempotencyKey: lcKey(), Code: code, Minutes: 5})
	e.must(err)
	if held.GetHeldBy() != site.Org.String() {
		t.Fatalf("hold: %v", held)
	}
	_, err = e.vouchers().RedeemVoucher(e.as(other), redeemReq(code))
	wantRefusal(t, err, codes.FailedPrecondition, "VOUCHER_HELD")

	red, err := e.vouchers().RedeemVoucher(e.as(site), redeemReq(code))
	e.must(err)
	if red.GetRound() != 1 || red.GetAmountCents() != 1000 || red.GetSiteId() != site.Org.String() {
		t.Fatalf("redemption: %v", red)
	}
	e.verify(id)

	rev, err := e.vouchers().ReverseRedemption(e.as(e.op), &pb.ReverseRedemptionRequest{IdempotencyKey: lcKey(), Code: code,
		Reason: pb.ReversalReason_REVERSAL_REASON_ERROR, Note: "Encaissé par erreur"})
	e.must(err)
	if rev.GetVoucherStatus() != pb.VoucherStatus_VOUCHER_STATUS_AVAILABLE || rev.GetRound() != 1 {
		t.Fatalf("reversal: %v", rev)
	}
	e.verify(id)
	red2, err := e.vouchers().RedeemVoucher(e.as(other), redeemReq(code))
	e.must(err)
	if red2.GetRound() != 2 {
		t.Fatalf("second round: %v", red2)
	}
	e.verify(id)
	rev2, err := e.vouchers().ReverseRedemption(e.as(e.op), &pb.ReverseRedemptionRequest{IdempotencyKey: lcKey(), Code: code,
		Reason: pb.ReversalReason_REVERSAL_REASON_FRAUD, Note: "Chèque photocopié"})
	e.must(err)
	if rev2.GetVoucherStatus() != pb.VoucherStatus_VOUCHER_STATUS_VOIDED {
		t.Fatalf("fraud reversal: %v", rev2)
	}
	e.verify(id)
	_, err = e.vouchers().ReverseRedemption(e.as(e.op), &pb.ReverseRedemptionRequest{IdempotencyKey: lcKey(), Code: code,
		Reason: pb.ReversalReason_REVERSAL_REASON_UNSPECIFIED, Note: "?"})
	wantRefusal(t, err, codes.InvalidArgument, "INVALID_REASON")

	cancelled, err := e.books().CancelBook(e.as(e.caf), &pb.CancelBookRequest{IdempotencyKey: lcKey(),
		Book: &pb.BookRef{ProgrammeId: id, Number: 2}, Reason: "Chéquier perdu"})
	e.must(err)
	if cancelled.GetStatus() != pb.BookStatus_BOOK_STATUS_CANCELLED {
		t.Fatalf("cancel: %v", cancelled)
	}
	_, err = e.books().CancelBook(e.as(e.state), &pb.CancelBookRequest{IdempotencyKey: lcKey(),
		Book: &pb.BookRef{ProgrammeId: id, Number: 3}})
	wantRefusal(t, err, codes.PermissionDenied, ReasonRoleNotAllowed)
	e.verify(id)

	bal, err = e.programmes().GetProgrammeBalance(e.as(e.op), &pb.GetProgrammeBalanceRequest{ProgrammeId: id})
	e.must(err)
	// 3 books issued (30 000), one cancelled (10 000 back), one voucher voided for fraud (1 000 back).
	if bal.GetOutstandingCents() != 19_000 || bal.GetUnissuedCents() != 81_000 || bal.GetPayableCents() != 0 {
		t.Fatalf("final balance: %v", bal)
	}
	progs, err := e.programmes().ListProgrammes(e.as(site), &pb.ListProgrammesRequest{})
	e.must(err)
	if len(progs.GetProgrammes()) != 1 {
		t.Fatalf("a site sees %d open programmes", len(progs.GetProgrammes()))
	}
}

func TestRedeemRefusalsOverGRPC(t *testing.T) {
	e := newLCEnv(t, rate.Inf, 2)
	prog := e.funded(52_000)
	book := e.handedOut(prog, 2)
	site, other := e.sites[0], e.sites[1]
	redeemed := book.GetVoucherCodes()[0]
	_, err := e.vouchers().RedeemVoucher(e.as(site), redeemReq(redeemed))
	e.must(err)
	stock, err := e.books().GetBook(e.as(e.caf), &pb.GetBookRequest{Book: &pb.BookRef{ProgrammeId: prog.GetId(), Number: 2}})
	e.must(err)
	ok := book.GetVoucherCodes()[1]
	today := time.Now().Format(time.DateOnly)
	for _, c := range []struct {
		name   string
		req    *pb.RedeemVoucherRequest
		code   codes.Code
		reason string
	}{
		{"already redeemed", redeemReq(redeemed), codes.FailedPrecondition, "VOUCHER_ALREADY_REDEEMED"},
		{"in stock", redeemReq(stock.GetVoucherCodes()[0]), codes.FailedPrecondition, "VOUCHER_NOT_ACTIVE"},
		{"not found", redeemReq("PN-0000-0000-0000-0"), codes.NotFound, "VOUCHER_NOT_FOUND"},
		{"bad code", redeemReq("PN-0000-0000-0000-1"), codes.InvalidArgument, "VOUCHER_CODE_CHECK"},
		{"service", &pb.RedeemVoucherRequest{IdempotencyKey: lcKey(), Code: ok, Service: "Cours de cuisine", Minutes: 60},
			codes.InvalidArgument, "SERVICE_NOT_IN_CATALOGUE"},
		{"minutes", &pb.RedeemVoucherRequest{IdempotencyKey: lcKey(), Code: ok, Service: lcServices[0], Minutes: 600},
			codes.InvalidArgument, "INVALID_MINUTES"},
		{"date format", &pb.RedeemVoucherRequest{IdempotencyKey: lcKey(), Code: ok, Service: lcServices[0], Minutes: 60,
			ServiceDate: "22/11/2026"}, codes.InvalidArgument, "INVALID_SERVICE_DATE"},
		{"future date", &pb.RedeemVoucherRequest{IdempotencyKey: lcKey(), Code: ok, Service: lcServices[0], Minutes: 60,
			ServiceDate: time.Now().AddDate(0, 0, 2).Format(time.DateOnly)}, codes.InvalidArgument, "INVALID_SERVICE_DATE"},
		{"no key", &pb.RedeemVoucherRequest{Code: ok, Service: lcServices[0], Minutes: 60}, codes.InvalidArgument,
			"IDEMPOTENCY_KEY_REQUIRED"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := e.vouchers().RedeemVoucher(e.as(other), c.req)
			r := wantRefusal(t, err, c.code, c.reason)
			if r.msg == "" {
				t.Fatal("no message")
			}
		})
	}
	_, err = e.vouchers().RedeemVoucher(e.as(e.op), redeemReq(ok))
	wantRefusal(t, err, codes.PermissionDenied, ReasonRoleNotAllowed)
	red, err := e.vouchers().RedeemVoucher(e.as(other), &pb.RedeemVoucherRequest{IdempotencyKey: lcKey(), Code: ok,
		Service: lcServices[1], Minutes: 60, ServiceDate: today})
	e.must(err)
	if red.GetServiceDate() != today {
		t.Fatalf("service date: %v", red)
	}
	e.verify(prog.GetId())
}

// TestRedeemRaceOverGRPC: 1,000 concurrent redemptions of one voucher over 50 connections,
// by several sites with distinct keys: one wins, every other call gets the same refusal.
func TestRedeemRaceOverGRPC(t *testing.T) {
	e := newLCEnv(t, rate.Inf, 5)
	prog := e.funded(52_000)
	code := e.handedOut(prog, 1).GetVoucherCodes()[0]
	const calls, conns = 1000, 50
	clients := make([]pb.VoucherServiceClient, conns)
	for i := range clients {
		clients[i] = pb.NewVoucherServiceClient(e.dial())
	}
	ctxs := make([]context.Context, len(e.sites))
	for i, s := range e.sites {
		ctxs[i] = e.as(s)
	}
	var (
		wg       sync.WaitGroup
		start    = make(chan struct{})
		mu       sync.Mutex
		wins     []*pb.Redemption
		refusals []refusal
	)
	for i := range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			red, err := clients[i%conns].RedeemVoucher(ctxs[i%len(ctxs)], redeemReq(code))
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				wins = append(wins, red)
				return
			}
			refusals = append(refusals, refusalOf(t, err))
		}()
	}
	close(start)
	wg.Wait()
	if len(wins) != 1 || len(refusals) != calls-1 {
		t.Fatalf("%d wins, %d refusals", len(wins), len(refusals))
	}
	first := refusals[0]
	if first.code != codes.FailedPrecondition || first.reason != "VOUCHER_ALREADY_REDEEMED" ||
		first.meta["site_id"] != wins[0].GetSiteId() || first.meta["redeemed_at"] != wins[0].GetRedeemedAt().AsTime().Format(time.RFC3339Nano) {
		t.Fatalf("refusal %+v for win %v", first, wins[0])
	}
	for _, r := range refusals {
		if r.code != first.code || r.msg != first.msg || r.reason != first.reason || fmt.Sprint(r.meta) != fmt.Sprint(first.meta) {
			t.Fatalf("refusals differ:\n%+v\n%+v", r, first)
		}
	}
	var n int
	e.must(e.db.Owner.QueryRow(e.ctx, `SELECT count(*) FROM redemptions`).Scan(&n))
	if n != 1 {
		t.Fatalf("%d redemption rows", n)
	}
	e.verify(prog.GetId())
}

func TestRedeemReplayOverGRPC(t *testing.T) {
	e := newLCEnv(t, rate.Inf, 1)
	prog := e.funded(52_000)
	req := redeemReq(e.handedOut(prog, 1).GetVoucherCodes()[0])
	ctx := e.as(e.sites[0])
	const n = 20
	res := make([]*pb.Redemption, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[i], errs[i] = pb.NewVoucherServiceClient(e.conn).RedeemVoucher(ctx, req)
		}()
	}
	wg.Wait()
	for i := range n {
		e.must(errs[i])
		if !proto.Equal(res[i], res[0]) {
			t.Fatalf("concurrent replay %d differs:\n%v\n%v", i, res[i], res[0])
		}
	}
	again, err := e.vouchers().RedeemVoucher(ctx, req)
	e.must(err)
	if !proto.Equal(again, res[0]) {
		t.Fatalf("sequential replay differs:\n%v\n%v", again, res[0])
	}
	var rows int
	e.must(e.db.Owner.QueryRow(e.ctx, `SELECT (SELECT count(*) FROM redemptions) + (SELECT count(*) FROM transactions WHERE kind = 'redemption')`).Scan(&rows))
	if rows != 2 {
		t.Fatalf("%d rows: want one redemption and one ledger transaction", rows)
	}
	e.verify(prog.GetId())
}

func TestVoucherRateLimit(t *testing.T) {
	e := newLCEnv(t, 0, 2)
	prog := e.funded(52_000)
	code := e.handedOut(prog, 1).GetVoucherCodes()[0]
	ctx := e.as(e.sites[0])
	limited := 0
	for range DefaultVoucherBurst + 5 {
		if _, err := e.vouchers().CheckVoucher(ctx, &pb.CheckVoucherRequest{Code: code}); err != nil {
			wantRefusal(t, err, codes.ResourceExhausted, "RATE_LIMITED")
			limited++
		}
	}
	if limited < 4 {
		t.Fatalf("%d of %d checks limited", limited, DefaultVoucherBurst+5)
	}
	// Redemptions share the site's bucket; other sites and the operator have their own.
	_, err := e.vouchers().RedeemVoucher(ctx, redeemReq(code))
	wantRefusal(t, err, codes.ResourceExhausted, "RATE_LIMITED")
	_, err = e.vouchers().CheckVoucher(e.as(e.sites[1]), &pb.CheckVoucherRequest{Code: code})
	e.must(err)
	for range DefaultVoucherBurst + 5 {
		_, err = e.vouchers().CheckVoucher(e.as(e.op), &pb.CheckVoucherRequest{Code: code})
		e.must(err)
	}
}

func TestSiteLimitsSweep(t *testing.T) {
	l := newSiteLimits(rate.Inf/2, 1) // refills at once
	for range sweepEvery {
		e := l.allow(auth.Principal{Org: uuid.New(), Role: auth.RoleSite})
		if e != nil {
			t.Fatal(e)
		}
	}
	if len(l.buckets) > 1 {
		t.Fatalf("%d buckets kept after a sweep", len(l.buckets))
	}
}

// lcSIRET is a Luhn-valid SIRET derived from n.
func lcSIRET(n int64) string {
	body := fmt.Sprintf("7%012d", n%1_000_000_000_000)
	return ident.CompleteSIRET(body)
}

// lcIBAN is a valid French IBAN (RIB key and check digits) whose account number is n.
func lcIBAN(n int64) string {
	bank, branch, account := int64(30003), int64(1234), n%100_000_000_000
	key := 97 - (89*bank+15*branch+3*account)%97
	bban := fmt.Sprintf("%05d%05d%011d%02d", bank, branch, account, key)
	rem := 0
	for _, c := range bban + "152700" { // FR00
		rem = (rem*10 + int(c-'0')) % 97
	}
	return fmt.Sprintf("FR%02d%s", 98-rem, bban)
}
