package server

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/passnum/passnum/internal/access"
	"github.com/passnum/passnum/internal/auth"
	"github.com/passnum/passnum/internal/civil"
	"github.com/passnum/passnum/internal/orgs"
	"github.com/passnum/passnum/internal/payouts"
	"github.com/passnum/passnum/internal/programmes"
	"github.com/passnum/passnum/internal/reports"
	pb "github.com/passnum/passnum/proto/passnum/v1"
)

// The access matrix (issue 4, OWASP API1 "broken object level authorisation"): every passnum
// RPC, called by every role, on the caller's own organisation's object and on another
// organisation's, against the production server (New, the database's ownership resolver,
// real tokens, real PostgreSQL).
//
// The world has two sides. Side A is the callers' own: funder A funds programme A, in which
// distributor A is eligible and site A redeems. Side B is the other organisation's: funder
// B, programme B, distributor B, site B. Every caller but the operator belongs to side A.

// matrixSide is one side of the world: A is the caller's own, B another organisation's.
type matrixSide int

const (
	sideA matrixSide = iota
	sideB
)

// matrixOwnership is what a cell's request names.
type matrixOwnership string

const (
	// ownObject: an object of the caller's side (for the operator: side A).
	ownObject matrixOwnership = "own"
	// otherObject: the same kind of object on side B (lists and reports: a filter naming side B).
	otherObject matrixOwnership = "other"
	// everyObject: no object at all where that means "everything" (ledger, close-out).
	everyObject matrixOwnership = "all"
	// noObject: the RPC names no object; lists without filters check their scope instead.
	noObject matrixOwnership = "scope"
)

// side is the side of the world a cell's request names.
func (o matrixOwnership) side() matrixSide {
	if o == otherObject {
		return sideB
	}
	return sideA
}

// matrixWant is a cell's expected outcome.
type matrixWant struct {
	code   codes.Code
	reason string // the ErrorInfo reason of a refusal
	// public: the answer may name side B's objects by design (the registry of qualified
	// sites, the open programmes a site may take vouchers of, a voucher's holder).
	public bool
}

var (
	// wantOK: authorised and successful; the answer names nothing of side B.
	wantOK = matrixWant{code: codes.OK}
	// wantPublic: authorised and successful; the answer may name side B's public objects.
	wantPublic = matrixWant{code: codes.OK, public: true}
	// wantRoleDenied: the role table refuses the caller's role.
	wantRoleDenied = matrixWant{code: codes.PermissionDenied, reason: ReasonRoleNotAllowed}
	// wantObjectDenied: the object check (or the domain's own) refuses another's object.
	wantObjectDenied = matrixWant{code: codes.PermissionDenied, reason: ReasonObjectNotAllowed}
	// wantOperatorOnly: the object check refuses a request spanning everything.
	wantOperatorOnly = matrixWant{code: codes.PermissionDenied, reason: ReasonOperatorOnly}
)

// wantRefused: authorised, then refused by the domain for a business reason.
func wantRefused(code codes.Code, reason string) matrixWant {
	return matrixWant{code: code, reason: reason}
}

func (m matrixWant) String() string {
	if m.code == codes.OK {
		return "OK"
	}
	return m.code.String() + " " + m.reason
}

// matrixOwnerships are the ownerships of a row's cells, by number of cells per role.
var matrixOwnerships = map[int][]matrixOwnership{
	1: {noObject},
	2: {ownObject, otherObject},
	3: {ownObject, otherObject, everyObject},
}

var matrixRoles = []auth.Role{auth.RoleOperator, auth.RoleFunder, auth.RoleDistributor, auth.RoleSite}

// matrixCell is one call of the matrix.
type matrixCell struct {
	role auth.Role
	own  matrixOwnership
}

func (c matrixCell) side() matrixSide { return c.own.side() }

// matrixRow is one RPC: its request and its outcome for each role and ownership.
type matrixRow struct {
	method string
	// req builds a request for a cell; it may take a fresh object from the world's pools.
	req            func(w *matrixWorld, c matrixCell) proto.Message
	op, fu, di, si []matrixWant
	// check, if set, inspects a successful answer (lists: only the caller's objects).
	check func(w *matrixWorld, c matrixCell, resp proto.Message) error
}

func (r matrixRow) wants(role auth.Role) []matrixWant {
	return map[auth.Role][]matrixWant{
		auth.RoleOperator: r.op, auth.RoleFunder: r.fu, auth.RoleDistributor: r.di, auth.RoleSite: r.si,
	}[role]
}

// matrixStatements are one site's statements, each reserved for the RPC that changes it.
type matrixStatements struct {
	draft    string // read by GetStatement, approved by ApproveStatement
	rejected string // draft, rejected by RejectStatement
	paid     string // approved, marked paid by MarkStatementPaid
	exported string // approved, put in a payment file by ExportPaymentFile
}

// matrixWorld is the two-sided world and the production server over it.
type matrixWorld struct {
	*lcEnv
	// cur is the test running: the world's, then each cell's.
	cur     *testing.T
	srv     *grpc.Server
	conn    *grpc.ClientConn
	minter  *auth.Minter
	methods map[string]protoreflect.MethodDescriptor
	orgs    *orgs.Service
	payouts *payouts.Service
	today   time.Time

	funder, distributor, site [2]auth.Principal
	prog                      [2]string
	handed                    [2]int64    // a handed-out book, for reads
	stock                     [2][]int64  // books in stock, taken by hand-outs and cancellations
	available                 [2][]string // available vouchers, taken by holds and redemptions
	checked                   string      // an available voucher of A, only ever checked
	heldByB                   string      // a voucher of B held by site B
	redeemed                  [2][]string // redeemed vouchers not on a statement, for reversals
	st                        [2]matrixStatements
	suspendable, withdrawable [2]uuid.UUID // spare qualified sites (the world's sites stay qualified)
	// foreign are side B's identifiers, which no answer to a caller of side A may contain
	// unless the cell is public.
	foreign []string
}

// must fails the running test (the world's, or the cell's) on an error.
func (w *matrixWorld) must(err error) {
	w.cur.Helper()
	if err != nil {
		w.cur.Fatal(err)
	}
}

// asCaller is a context carrying a real token of the cell's caller.
func (w *matrixWorld) asCaller(role auth.Role) context.Context {
	w.cur.Helper()
	p := w.caller(role)
	tok, err := w.minter.Mint(p, time.Hour)
	w.must(err)
	return metadata.AppendToOutgoingContext(w.ctx, "authorization", "Bearer "+tok)
}

// caller is the principal calling for a role: the operator, or side A's organisation.
func (w *matrixWorld) caller(role auth.Role) auth.Principal {
	switch role {
	case auth.RoleFunder:
		return w.funder[sideA]
	case auth.RoleDistributor:
		return w.distributor[sideA]
	case auth.RoleSite:
		return w.site[sideA]
	}
	return w.op
}

// peer is the organisation of a side that a role's caller would be on that side (the
// operator's peers are the funders).
func (w *matrixWorld) peer(role auth.Role, s matrixSide) string {
	switch role {
	case auth.RoleDistributor:
		return w.distributor[s].Org.String()
	case auth.RoleSite:
		return w.site[s].Org.String()
	case auth.RoleOperator:
		if s == sideA {
			return w.op.Org.String()
		}
	}
	return w.funder[s].Org.String()
}

// takeStock removes a book in stock from a side's pool and returns it.
func (w *matrixWorld) takeStock(s matrixSide) *pb.BookRef {
	w.cur.Helper()
	if len(w.stock[s]) == 0 {
		w.cur.Fatalf("side %d: no book left in stock", s)
	}
	n := w.stock[s][0]
	w.stock[s] = w.stock[s][1:]
	return &pb.BookRef{ProgrammeId: w.prog[s], Number: n}
}

// take removes the first entry of a pool and returns it.
func (w *matrixWorld) take(pool *[]string, what string) string {
	w.cur.Helper()
	if len(*pool) == 0 {
		w.cur.Fatalf("no %s left", what)
	}
	v := (*pool)[0]
	*pool = (*pool)[1:]
	return v
}

func (w *matrixWorld) date(d time.Time) string { return civil.FormatDate(d) }

// newMatrixWorld builds the world through the domain services, on the lifecycle
// environment's organisations (two funders, two distributors, two qualified sites), and
// serves it with every service wired as in production.
func newMatrixWorld(t *testing.T) *matrixWorld {
	t.Helper()
	e := newLCEnv(t, rate.Inf, 2)
	w := &matrixWorld{lcEnv: e, cur: t, methods: declaredMethods(t), orgs: orgs.New(e.l), today: civil.DateOf(time.Now())}
	var err error
	w.payouts, err = payouts.New(e.l, payouts.Config{})
	w.must(err)

	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	w.must(err)
	kid := auth.KeyID(pub)
	ks, err := auth.NewKeySet(auth.PublicKey{KID: kid, Key: pub})
	w.must(err)
	w.minter = auth.NewMinter(priv, kid, auth.DefaultIssuer, auth.DefaultAudience)
	w.srv = New(Config{Verifier: auth.NewVerifier(ks, auth.DefaultIssuer, auth.DefaultAudience),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))},
		App{Access: access.NewResolver(e.db.App), Orgs: w.orgs, Programmes: e.svc, Payouts: w.payouts,
			Reports: reports.New(e.l), Ledger: e.l})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	w.must(err)
	go func() { _ = w.srv.Serve(lis) }()
	t.Cleanup(w.srv.Stop)
	w.conn, err = grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	w.must(err)
	t.Cleanup(func() { _ = w.conn.Close() })

	w.funder = [2]auth.Principal{e.state, e.drome}
	w.distributor = [2]auth.Principal{e.caf, e.mairie}
	w.site = [2]auth.Principal{e.sites[0], e.sites[1]}
	ctx := e.ctx
	const books, handedOut = 14, 4
	var codes [2][]string
	for s, name := range []string{"Pass numérique Alpha", "Pass numérique Bravo"} {
		prog, err := e.svc.CreateProgramme(ctx, w.funder[s], lcKey(), programmes.ProgrammeSpec{
			Name: name, Funders: []programmes.FunderShare{{Funder: w.funder[s].Org, ShareBps: 10000}},
			ValidFrom: w.today.AddDate(0, 0, -30), ValidUntil: w.today.AddDate(0, 0, 20), Territories: []string{"26"},
			Distributors: []uuid.UUID{w.distributor[s].Org}})
		w.must(err)
		w.prog[s] = prog.ID.String()
		_, err = e.svc.RecordFunding(ctx, e.op, lcKey(), programmes.FundingSpec{Programme: prog.ID, Funder: w.funder[s].Org,
			AmountCents: 500_000, BankReference: "VIR-" + lcKey(), ReceivedOn: w.today})
		w.must(err)
		_, err = e.svc.OrderBooks(ctx, w.funder[s], lcKey(), programmes.OrderSpec{Programme: prog.ID,
			Distributor: w.distributor[s].Org, Books: books})
		w.must(err)
		for n := int64(1); n <= books; n++ {
			if n > handedOut {
				w.stock[s] = append(w.stock[s], n)
				continue
			}
			b, err := e.svc.HandOutBook(ctx, w.distributor[s], lcKey(), programmes.HandOutSpec{
				Book: programmes.BookRef{Programme: prog.ID, Number: n}, TargetPublic: n%2 == 1, Territory: "26"})
			w.must(err)
			for _, c := range b.Codes {
				codes[s] = append(codes[s], c.String())
			}
		}
		w.handed[s] = 1
		w.available[s] = slices.Clone(codes[s])
	}
	redeem := func(s matrixSide) string {
		code := w.take(&w.available[s], "available voucher")
		_, err := e.svc.RedeemVoucher(ctx, w.site[s], lcKey(), programmes.RedeemSpec{Code: code, Service: lcServices[0], Minutes: 60})
		w.must(err)
		return code
	}
	// Four rounds of statements, one redemption per site each: every statement RPC that
	// changes a statement gets its own, in the state it needs.
	var rounds [4][2]string
	for i := range rounds {
		redeem(sideA)
		redeem(sideB)
		sts, err := w.payouts.CreateStatements(ctx, e.op, lcKey(), w.today)
		w.must(err)
		if len(sts) != 2 {
			t.Fatalf("round %d: %d statements", i, len(sts))
		}
		for _, st := range sts {
			s := sideA
			if st.Site == w.site[sideB].Org {
				s = sideB
			}
			rounds[i][s] = st.ID.String()
			if i >= 2 {
				_, err := w.payouts.ApproveStatement(ctx, e.op, lcKey(), st.ID)
				w.must(err)
			}
		}
	}
	for s := range w.st {
		w.st[s] = matrixStatements{draft: rounds[0][s], rejected: rounds[1][s], paid: rounds[2][s], exported: rounds[3][s]}
		for range 4 {
			w.redeemed[s] = append(w.redeemed[s], redeem(matrixSide(s)))
		}
	}
	w.checked = w.take(&w.available[sideA], "available voucher")
	w.heldByB = w.take(&w.available[sideB], "available voucher")
	_, err = e.svc.HoldVoucher(ctx, w.site[sideB], lcKey(), programmes.HoldSpec{Code: w.heldByB, Minutes: programmes.MaxHoldMinutes})
	w.must(err)
	for s := range 2 {
		w.suspendable[s] = w.spareSite(fmt.Sprintf("Tiers-lieu à suspendre %d", s+1))
		w.withdrawable[s] = w.spareSite(fmt.Sprintf("Tiers-lieu à retirer %d", s+1))
	}

	w.foreign = append([]string{w.prog[sideB], w.funder[sideB].Org.String(), w.distributor[sideB].Org.String(),
		w.site[sideB].Org.String()}, codes[sideB]...)
	st := w.st[sideB]
	w.foreign = append(w.foreign, st.draft, st.rejected, st.paid, st.exported)
	return w
}

// spareSite registers and qualifies a site used only by SuspendSite or WithdrawSite.
func (w *matrixWorld) spareSite(name string) uuid.UUID {
	w.cur.Helper()
	n := lcKeys.Add(1)
	s, err := w.orgs.CreateOrganization(w.ctx, w.op, lcKey(), orgs.NewOrganization{
		Kind: orgs.KindSite, Name: name, SIRET: lcSIRET(n),
		Site: &orgs.SiteDetails{IBAN: lcIBAN(n), BIC: "CEPAFRPP", Services: lcServices, CodeINSEE: "26362",
			LegalRepresentative: "Dominique Roux"},
	})
	w.must(err)
	_, err = w.orgs.QualifySite(w.ctx, w.op, lcKey(), s.ID, orgs.Qualification{
		ValidFrom: w.today.AddDate(-1, 0, 0), ValidUntil: w.today.AddDate(1, 0, 0)})
	w.must(err)
	return s.ID
}

// call invokes a method with the cell's caller's token. A server-streaming answer comes back
// as one message whose data is the concatenation of the chunks'.
func (w *matrixWorld) call(c matrixCell, method string, req proto.Message) (proto.Message, error) {
	md, ok := w.methods[method]
	if !ok {
		return nil, fmt.Errorf("%s is not a passnum.v1 RPC", method)
	}
	mt, err := protoregistry.GlobalTypes.FindMessageByName(md.Output().FullName())
	if err != nil {
		return nil, err
	}
	ctx := w.asCaller(c.role)
	if !md.IsStreamingServer() {
		resp := mt.New().Interface()
		return resp, w.conn.Invoke(ctx, method, req, resp)
	}
	stream, err := w.conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, method)
	if err != nil {
		return nil, err
	}
	if err := stream.SendMsg(req); err != nil {
		return nil, err
	}
	if err := stream.CloseSend(); err != nil {
		return nil, err
	}
	data := mt.Descriptor().Fields().ByName("data")
	if data == nil {
		return nil, fmt.Errorf("%s streams %s, which has no data field", method, mt.Descriptor().FullName())
	}
	var all []byte
	for {
		chunk := mt.New()
		err := stream.RecvMsg(chunk.Interface())
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		all = append(all, chunk.Get(data).Bytes()...)
	}
	resp := mt.New()
	resp.Set(data, protoreflect.ValueOfBytes(all))
	return resp.Interface(), nil
}

// fingerprint hashes every row of every table: a refused call must leave it unchanged.
func (w *matrixWorld) fingerprint() string {
	w.cur.Helper()
	rows, err := w.db.Owner.Query(w.ctx, `
		SELECT table_schema, table_name FROM information_schema.tables
		 WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema')
		 ORDER BY 1, 2`)
	w.must(err)
	tables, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (string, error) {
		var schema, name string
		err := row.Scan(&schema, &name)
		return pgx.Identifier{schema, name}.Sanitize(), err
	})
	w.must(err)
	parts := make([]string, len(tables))
	for i, tbl := range tables {
		parts[i] = fmt.Sprintf(`SELECT %d AS n, md5(coalesce(string_agg(t::text, E'\n' ORDER BY t::text), '')) AS h FROM %s t`, i, tbl)
	}
	var sum string
	w.must(w.db.Owner.QueryRow(w.ctx, `SELECT md5(string_agg(h, '' ORDER BY n)) FROM (`+
		strings.Join(parts, " UNION ALL ")+`) x`).Scan(&sum))
	return sum
}

// run makes one cell's call and checks its outcome.
func (w *matrixWorld) run(t *testing.T, row matrixRow, c matrixCell, want matrixWant) {
	w.cur = t
	req := row.req(w, c)
	var before string
	if want.code != codes.OK {
		before = w.fingerprint()
	}
	resp, err := w.call(c, row.method, req)
	if want.code != codes.OK {
		if err == nil {
			t.Fatalf("want %s, got OK: %s", want, matrixText(resp))
		}
		got := refusalOf(t, err)
		if got.code != want.code || got.reason != want.reason {
			t.Fatalf("want %s, got %s %s: %s", want, got.code, got.reason, got.msg)
		}
		if after := w.fingerprint(); after != before {
			t.Fatalf("refused with %s, but the database changed", want)
		}
		return
	}
	if err != nil {
		got := refusalOf(t, err)
		t.Fatalf("want OK, got %s %s: %s", got.code, got.reason, got.msg)
	}
	if c.role != auth.RoleOperator && !want.public {
		text := matrixText(resp)
		for _, id := range w.foreign {
			if strings.Contains(text, id) {
				t.Fatalf("the answer names %s, an object of the other side:\n%s", id, text)
			}
		}
	}
	if row.check != nil {
		if err := row.check(w, c, resp); err != nil {
			t.Fatal(err)
		}
	}
}

// matrixText is a message as text, for the foreign-id search and failure messages.
func matrixText(m proto.Message) string {
	if m == nil {
		return "<nil>"
	}
	return prototext.Format(m)
}

// matrixName is the short name of a method, "Service/Method".
func matrixName(method string) string {
	return strings.TrimPrefix(method, "/passnum.v1.")
}

// TestAccessMatrix calls every RPC as every role on its own and another organisation's
// objects (see accessMatrix) and checks, cell by cell: the status code and ErrorInfo reason;
// for a refusal, that no row of any table changed; for a success, that the answer to a caller
// of side A names no object of side B (unless the cell is public), and the row's check.
func TestAccessMatrix(t *testing.T) {
	w := newMatrixWorld(t)
	rows := accessMatrix()

	// Every served passnum RPC has a row: a new RPC cannot slip through untested.
	byMethod := make(map[string]matrixRow, len(rows))
	for _, r := range rows {
		if _, dup := byMethod[r.method]; dup {
			t.Fatalf("%s has two rows", r.method)
		}
		byMethod[r.method] = r
		if _, ok := w.methods[r.method]; !ok {
			t.Fatalf("row %s names no passnum.v1 RPC", r.method)
		}
		for _, role := range matrixRoles {
			if n := len(r.wants(role)); matrixOwnerships[n] == nil || n != len(r.op) {
				t.Fatalf("%s: %s has %d cells, the operator %d", r.method, role, n, len(r.op))
			}
		}
	}
	for svc, info := range w.srv.GetServiceInfo() {
		if !strings.HasPrefix(svc, "passnum.v1.") {
			continue
		}
		for _, m := range info.Methods {
			if _, ok := byMethod["/"+svc+"/"+m.Name]; !ok {
				t.Errorf("/%s/%s is served but has no row in the access matrix", svc, m.Name)
			}
		}
	}
	if t.Failed() {
		t.FailNow()
	}

	for _, row := range rows {
		for _, role := range matrixRoles {
			wants := row.wants(role)
			for i, own := range matrixOwnerships[len(wants)] {
				c := matrixCell{role: role, own: own}
				t.Run(matrixName(row.method)+"/"+string(role)+"/"+string(own), func(t *testing.T) {
					w.run(t, row, c, wants[i])
				})
			}
		}
	}
}

// accessMatrix is the matrix, one row per RPC in the order of methodRoles. Each role's cells
// read (own, other), (own, other, all) or (scope); callers other than the operator are side
// A's organisations.
func accessMatrix() []matrixRow {
	r, ok, pub := wantRoleDenied, wantOK, wantPublic
	obj, all := wantObjectDenied, wantOperatorOnly
	// cells lists a role's outcomes in ownership order: (scope), (own, other) or (own, other, all).
	cells := func(w ...matrixWant) []matrixWant { return w }
	return []matrixRow{
		// OrganizationService.
		{method: pb.OrganizationService_CreateOrganization_FullMethodName,
			req: func(w *matrixWorld, c matrixCell) proto.Message {
				return &pb.CreateOrganizationRequest{IdempotencyKey: lcKey(), Kind: pb.OrganizationKind_ORGANIZATION_KIND_DISTRIBUTOR,
					Name: "Mission locale " + lcKey(), Departement: "26"}
			},
			op: cells(ok), fu: cells(r), di: cells(r), si: cells(r)},
		{method: pb.OrganizationService_GetOrganization_FullMethodName,
			req: func(w *matrixWorld, c matrixCell) proto.Message {
				return &pb.GetOrganizationRequest{Id: w.peer(c.role, c.side())}
			},
			op: cells(ok, ok), fu: cells(ok, obj), di: cells(ok, obj), si: cells(ok, obj),
			check: func(w *matrixWorld, c matrixCell, resp proto.Message) error {
				if got, want := resp.(*pb.Organization).GetId(), w.peer(c.role, c.side()); got != want {
					return fmt.Errorf("got organisation %s, asked for %s", got, want)
				}
				return nil
			}},
		// Own: the whole list; other: the caller's own kind, where side B's peer would show.
		{method: pb.OrganizationService_ListOrganizations_FullMethodName,
			req: func(w *matrixWorld, c matrixCell) proto.Message {
				if c.own == ownObject {
					return &pb.ListOrganizationsRequest{PageSize: 500}
				}
				kind := map[auth.Role]pb.OrganizationKind{
					auth.RoleOperator: pb.OrganizationKind_ORGANIZATION_KIND_FUNDER, auth.RoleFunder: pb.OrganizationKind_ORGANIZATION_KIND_FUNDER,
					auth.RoleDistributor: pb.OrganizationKind_ORGANIZATION_KIND_DISTRIBUTOR, auth.RoleSite: pb.OrganizationKind_ORGANIZATION_KIND_SITE,
				}[c.role]
				return &pb.ListOrganizationsRequest{Kind: kind, PageSize: 500}
			},
			op: cells(ok, ok), fu: cells(pub, ok), di: cells(pub, ok), si: cells(ok, ok),
			check: onlyOwnOrganizations},
		{method: pb.OrganizationService_QualifySite_FullMethodName,
			req: func(w *matrixWorld, c matrixCell) proto.Message {
				return &pb.QualifySiteRequest{IdempotencyKey: lcKey(), SiteId: w.site[c.side()].Org.String(),
					ValidFrom: w.date(w.today.AddDate(-1, 0, 0)), ValidUntil: w.date(w.today.AddDate(1, 0, 0))}
			},
			op: cells(ok, ok), fu: cells(r, r), di: cells(r, r), si: cells(r, r)},
		// Suspension and withdrawal act on spare sites: the world's sites must stay qualified.
		{method: pb.OrganizationService_SuspendSite_FullMethodName,
			req: func(w *matrixWorld, c matrixCell) proto.Message {
				return &pb.ChangeSiteStatusRequest{IdempotencyKey: lcKey(), SiteId: w.suspendable[c.side()].String(), Reason: "Contrôle"}
			},
			op: cells(ok, ok), fu: cells(r, r), di: cells(r, r), si: cells(r, r)},
		{method: pb.OrganizationService_WithdrawSite_FullMethodName,
			req: func(w *matrixWorld, c matrixCell) proto.Message {
				return &pb.ChangeSiteStatusRequest{IdempotencyKey: lcKey(), SiteId: w.withdrawable[c.side()].String(), Reason: "Fermeture"}
			},
			op: cells(ok, ok), fu: cells(r, r), di: cells(r, r), si: cells(r, r)},
		{method: pb.OrganizationService_ImportSites_FullMethodName,
			req: func(w *matrixWorld, c matrixCell) proto.Message {
				file := "id;pivot;nom;code_postal;services\nimport-1;" + lcSIRET(lcKeys.Add(1)) +
					";Médiathèque importée;26400;Aide aux démarches administratives\n"
				return &pb.ImportSitesRequest{IdempotencyKey: lcKey(), Csv: []byte(file)}
			},
			op: cells(ok), fu: cells(r), di: cells(r), si: cells(r)},

		// ProgrammeService.
		{method: pb.ProgrammeService_CreateProgramme_FullMethodName,
			req: func(w *matrixWorld, c matrixCell) proto.Message {
				s := c.side()
				return &pb.CreateProgrammeRequest{IdempotencyKey: lcKey(), Name: "Programme complémentaire",
					Funders:   []*pb.ProgrammeFunder{{FunderId: w.funder[s].Org.String(), ShareBps: 10000}},
					ValidFrom: w.date(w.today), ValidUntil: w.date(w.today.AddDate(0, 0, 20)), Territories: []string{"26"},
					DistributorIds: []string{w.distributor[s].Org.String()}}
			},
			op: cells(ok, ok), fu: cells(ok, wantRefused(codes.PermissionDenied, "FUNDER_NOT_IN_PROGRAMME")),
			di: cells(r, r), si: cells(r, r)},
		{method: pb.ProgrammeService_GetProgramme_FullMethodName,
			req: func(w *matrixWorld, c matrixCell) proto.Message { return &pb.GetProgrammeRequest{Id: w.prog[c.side()]} },
			op:  cells(ok, ok), fu: cells(ok, obj), di: cells(ok, obj), si: cells(r, r)},
		// Sites see every open programme: they need its territories and validity.
		{method: pb.ProgrammeService_ListProgrammes_FullMethodName,
			req: func(w *matrixWorld, c matrixCell) proto.Message { return &pb.ListProgrammesRequest{PageSize: 500} },
			op:  cells(ok), fu: cells(ok), di: cells(ok), si: cells(pub),
			check: onlyOwnProgrammes},
		{method: pb.ProgrammeService_RecordFunding_FullMethodName,
			req: func(w *matrixWorld, c matrixCell) proto.Message {
				s := c.side()
				return &pb.RecordFundingRequest{IdempotencyKey: lcKey(), ProgrammeId: w.prog[s], FunderId: w.funder[s].Org.String(),
					AmountCents: 10_000, BankReference: "VIR-" + lcKey(), ReceivedOn: w.date(w.today)}
			},
			op: cells(ok, ok), fu: cells(r, r), di: cells(r, r), si: cells(r, r)},
		{method: pb.ProgrammeService_GetProgrammeBalance_FullMethodName,
			req: func(w *matrixWorld, c matrixCell) proto.Message {
				return &pb.GetProgrammeBalanceRequest{ProgrammeId: w.prog[c.side()]}
			},
			op: cells(ok, ok), fu: cells(ok, obj), di: cells(r, r), si: cells(r, r)},

		// BookService.
		{method: pb.BookService_OrderBooks_FullMethodName,
			req: func(w *matrixWorld, c matrixCell) proto.Message {
				s := c.side()
				return &pb.OrderBooksRequest{IdempotencyKey: lcKey(), ProgrammeId: w.prog[s],
					DistributorId: w.distributor[s].Org.String(), Books: 1}
			},
			op: cells(ok, ok), fu: cells(ok, obj), di: cells(r, r), si: cells(r, r)},
		{method: pb.BookService_HandOutBook_FullMethodName,
			req: func(w *matrixWorld, c matrixCell) proto.Message {
				return &pb.HandOutBookRequest{IdempotencyKey: lcKey(), Book: w.takeStock(c.side()), TargetPublic: true, Territory: "26"}
			},
			op: cells(r, r), fu: cells(r, r), di: cells(ok, obj), si: cells(r, r)},
		{method: pb.BookService_CancelBook_FullMethodName,
			req: func(w *matrixWorld, c matrixCell) proto.Message {
				return &pb.CancelBookRequest{IdempotencyKey: lcKey(), Book: w.takeStock(c.side()), Reason: "Chéquier abîmé"}
			},
			op: cells(ok, ok), fu: cells(r, r), di: cells(ok, obj), si: cells(r, r)},
		{method: pb.BookService_GetBook_FullMethodName,
			req: func(w *matrixWorld, c matrixCell) proto.Message {
				s := c.side()
				return &pb.GetBookRequest{Book: &pb.BookRef{ProgrammeId: w.prog[s], Number: w.handed[s]}}
			},
			op: cells(ok, ok), fu: cells(ok, obj), di: cells(ok, obj), si: cells(r, r)},
		// Own: every book the caller may see; other: side B's programme and distributor.
		{method: pb.BookService_ListBooks_FullMethodName,
			req: func(w *matrixWorld, c matrixCell) proto.Message {
				if c.own == ownObject {
					return &pb.ListBooksRequest{PageSize: 500}
				}
				return &pb.ListBooksRequest{ProgrammeId: w.prog[sideB], DistributorId: w.distributor[sideB].Org.String(), PageSize: 500}
			},
			op: cells(ok, ok), fu: cells(ok, ok), di: cells(ok, ok), si: cells(r, r),
			check: onlyOwnBooks},

		// VoucherService. Vouchers are bearer instruments: any site may check any code. The
		// other organisation's object is a voucher site B holds.
		{method: pb.VoucherService_CheckVoucher_FullMethodName,
			req: func(w *matrixWorld, c matrixCell) proto.Message {
				if c.own == ownObject {
					return &pb.CheckVoucherRequest{Code: w.checked}
				}
				return &pb.CheckVoucherRequest{Code: w.heldByB}
			},
			op: cells(ok, ok), fu: cells(r, r), di: cells(r, r), si: cells(ok, pub)},
		{method: pb.VoucherService_HoldVoucher_FullMethodName,
			req: func(w *matrixWorld, c matrixCell) proto.Message {
				return &pb.HoldVoucherRequest{IdempotencyKey: lcKey(), Code: w.voucherFor(c), Minutes: 5}
			},
			op: cells(r, r), fu: cells(r, r), di: cells(r, r),
			si: cells(ok, wantRefused(codes.FailedPrecondition, "VOUCHER_HELD"))},
		{method: pb.VoucherService_RedeemVoucher_FullMethodName,
			req: func(w *matrixWorld, c matrixCell) proto.Message { return redeemReq(w.voucherFor(c)) },
			op:  cells(r, r), fu: cells(r, r), di: cells(r, r),
			si: cells(ok, wantRefused(codes.FailedPrecondition, "VOUCHER_HELD"))},
		{method: pb.VoucherService_ReverseRedemption_FullMethodName,
			req: func(w *matrixWorld, c matrixCell) proto.Message {
				return &pb.ReverseRedemptionRequest{IdempotencyKey: lcKey(), Code: w.take(&w.redeemed[c.side()], "redeemed voucher"),
					Reason: pb.ReversalReason_REVERSAL_REASON_ERROR, Note: "Encaissé par erreur"}
			},
			op: cells(ok, ok), fu: cells(r, r), di: cells(r, r), si: cells(r, r)},

		// PayoutService.
		{method: pb.PayoutService_CreateStatements_FullMethodName,
			req: func(w *matrixWorld, c matrixCell) proto.Message {
				return &pb.CreateStatementsRequest{IdempotencyKey: lcKey(), Cutoff: w.date(w.today)}
			},
			op: cells(ok), fu: cells(r), di: cells(r), si: cells(r)},
		{method: pb.PayoutService_ApproveStatement_FullMethodName,
			req: func(w *matrixWorld, c matrixCell) proto.Message {
				return &pb.StatementActionRequest{IdempotencyKey: lcKey(), StatementId: w.st[c.side()].draft}
			},
			op: cells(ok, ok), fu: cells(r, r), di: cells(r, r), si: cells(r, r)},
		{method: pb.PayoutService_RejectStatement_FullMethodName,
			req: func(w *matrixWorld, c matrixCell) proto.Message {
				return &pb.StatementActionRequest{IdempotencyKey: lcKey(), StatementId: w.st[c.side()].rejected, Reason: "Relevé en double"}
			},
			op: cells(ok, ok), fu: cells(r, r), di: cells(r, r), si: cells(r, r)},
		{method: pb.PayoutService_MarkStatementPaid_FullMethodName,
			req: func(w *matrixWorld, c matrixCell) proto.Message {
				return &pb.MarkStatementPaidRequest{IdempotencyKey: lcKey(), StatementId: w.st[c.side()].paid,
					BankReference: "VIR-" + lcKey(), PaidOn: w.date(w.today)}
			},
			op: cells(ok, ok), fu: cells(r, r), di: cells(r, r), si: cells(r, r)},
		{method: pb.PayoutService_GetStatement_FullMethodName,
			req: func(w *matrixWorld, c matrixCell) proto.Message {
				return &pb.GetStatementRequest{StatementId: w.st[c.side()].draft}
			},
			op: cells(ok, ok), fu: cells(r, r), di: cells(r, r), si: cells(ok, obj)},
		// Own: every statement the caller may see; other: site B's.
		{method: pb.PayoutService_ListStatements_FullMethodName,
			req: func(w *matrixWorld, c matrixCell) proto.Message {
				if c.own == ownObject {
					return &pb.ListStatementsRequest{PageSize: 100}
				}
				return &pb.ListStatementsRequest{SiteId: w.site[sideB].Org.String(), PageSize: 100}
			},
			op: cells(ok, ok), fu: cells(r, r), di: cells(r, r), si: cells(ok, obj),
			check: onlyOwnStatements},
		{method: pb.PayoutService_ExportPaymentFile_FullMethodName,
			req: func(w *matrixWorld, c matrixCell) proto.Message {
				return &pb.ExportPaymentFileRequest{StatementIds: []string{w.st[c.side()].exported}}
			},
			op: cells(ok, ok), fu: cells(r, r), di: cells(r, r), si: cells(r, r)},
		{method: pb.PayoutService_ListExpiring_FullMethodName,
			req: func(w *matrixWorld, c matrixCell) proto.Message { return &pb.ListExpiringRequest{} },
			op:  cells(ok), fu: cells(ok), di: cells(ok), si: cells(r),
			check: onlyOwnExpiring},
		{method: pb.PayoutService_ExpireProgramme_FullMethodName,
			req: func(w *matrixWorld, c matrixCell) proto.Message {
				return &pb.ExpireProgrammeRequest{IdempotencyKey: lcKey(), ProgrammeId: w.prog[c.side()]}
			},
			op: cells(wantRefused(codes.FailedPrecondition, "PROGRAMME_NOT_YET_EXPIRABLE"),
				wantRefused(codes.FailedPrecondition, "PROGRAMME_NOT_YET_EXPIRABLE")),
			fu: cells(r, r), di: cells(r, r), si: cells(r, r)},
		// Own and other: a programme's funder's close-out; all: the programme's totals.
		{method: pb.PayoutService_GetCloseOut_FullMethodName,
			req: func(w *matrixWorld, c matrixCell) proto.Message {
				s := c.side()
				if c.own == everyObject {
					return &pb.GetCloseOutRequest{ProgrammeId: w.prog[s]}
				}
				return &pb.GetCloseOutRequest{ProgrammeId: w.prog[s], FunderId: w.funder[s].Org.String()}
			},
			op: cells(ok, ok, ok), fu: cells(ok, obj, all), di: cells(r, r, r), si: cells(r, r, r)},

		// ReportService. Own: the caller's whole scope; other: side B's programme.
		{method: pb.ReportService_SpendReport_FullMethodName,
			req: matrixSpendRequest,
			op:  cells(ok, ok), fu: cells(ok, ok), di: cells(ok, ok), si: cells(ok, ok),
			check: onlyOwnSpend},
		{method: pb.ReportService_ExportSpendReport_FullMethodName,
			req: matrixSpendRequest,
			op:  cells(ok, ok), fu: cells(ok, ok), di: cells(ok, ok), si: cells(ok, ok),
			check: onlyOwnSpendCSV},

		// LedgerService. Own, other: one programme; all: the whole ledger.
		{method: pb.LedgerService_VerifyLedger_FullMethodName,
			req: func(w *matrixWorld, c matrixCell) proto.Message {
				if c.own == everyObject {
					return &pb.VerifyLedgerRequest{}
				}
				return &pb.VerifyLedgerRequest{ProgrammeId: w.prog[c.side()]}
			},
			op: cells(ok, ok, ok), fu: cells(ok, obj, all), di: cells(r, r, r), si: cells(r, r, r),
			check: func(w *matrixWorld, c matrixCell, resp proto.Message) error {
				if !resp.(*pb.VerifyLedgerResponse).GetOk() {
					return fmt.Errorf("the ledger does not verify: %s", matrixText(resp))
				}
				return nil
			}},
		{method: pb.LedgerService_ExportJournal_FullMethodName,
			req: func(w *matrixWorld, c matrixCell) proto.Message {
				if c.own == everyObject {
					return &pb.ExportJournalRequest{}
				}
				return &pb.ExportJournalRequest{ProgrammeId: w.prog[c.side()]}
			},
			op: cells(ok, ok, ok), fu: cells(ok, obj, all), di: cells(r, r, r), si: cells(r, r, r),
			check: func(w *matrixWorld, c matrixCell, resp proto.Message) error {
				data := resp.(*pb.ExportChunk).GetData()
				for s, name := range []string{"A", "B"} {
					want := c.own == everyObject || c.side() == matrixSide(s)
					if got := bytes.Contains(data, []byte(w.prog[s])); got != want {
						return fmt.Errorf("the journal names programme %s: %v, want %v", name, got, want)
					}
				}
				return nil
			}},
	}
}

// voucherFor is the voucher a hold or a redemption names: a fresh available voucher of A, or
// the one site B holds.
func (w *matrixWorld) voucherFor(c matrixCell) string {
	if c.own == ownObject {
		return w.take(&w.available[sideA], "available voucher")
	}
	return w.heldByB
}

func matrixSpendRequest(w *matrixWorld, c matrixCell) proto.Message {
	req := &pb.SpendReportRequest{GroupBy: []pb.ReportDimension{pb.ReportDimension_REPORT_DIMENSION_PROGRAMME,
		pb.ReportDimension_REPORT_DIMENSION_FUNDER, pb.ReportDimension_REPORT_DIMENSION_DISTRIBUTOR,
		pb.ReportDimension_REPORT_DIMENSION_SITE}}
	if c.own == otherObject {
		req.ProgrammeId = w.prog[sideB]
	}
	return req
}

// inScope reports whether a report row or object, described by its programme, funder,
// distributor and site ids ("" when it has none), belongs to the caller's scope.
func (w *matrixWorld) inScope(role auth.Role, programme, funder, distributor, site string) bool {
	switch role {
	case auth.RoleFunder:
		return programme == w.prog[sideA] && (funder == "" || funder == w.funder[sideA].Org.String())
	case auth.RoleDistributor:
		return distributor == w.distributor[sideA].Org.String()
	case auth.RoleSite:
		return site == w.site[sideA].Org.String()
	}
	return true
}

// onlyOwnOrganizations: the operator sees both sides; anyone else sees itself and, for
// funders and distributors, the registry of qualified sites without their bank details.
func onlyOwnOrganizations(w *matrixWorld, c matrixCell, resp proto.Message) error {
	list := resp.(*pb.ListOrganizationsResponse).GetOrganizations()
	seen := map[string]bool{}
	me := w.caller(c.role).Org.String()
	for _, o := range list {
		seen[o.GetId()] = true
		if c.role == auth.RoleOperator || o.GetId() == me {
			continue
		}
		st := o.GetSite()
		registry := (c.role == auth.RoleFunder || c.role == auth.RoleDistributor) &&
			o.GetKind() == pb.OrganizationKind_ORGANIZATION_KIND_SITE && st.GetStatus() == pb.SiteStatus_SITE_STATUS_QUALIFIED
		if !registry {
			return fmt.Errorf("lists organisation %s (%s), neither itself nor in the registry", o.GetId(), o.GetName())
		}
		if st.GetIban() != "" || st.GetBic() != "" || st.GetLegalRepresentative() != "" {
			return fmt.Errorf("the registry shows the bank details of site %s: %v", o.GetId(), st)
		}
	}
	want := []string{me}
	if c.role == auth.RoleOperator {
		want = []string{w.funder[sideA].Org.String(), w.funder[sideB].Org.String()}
	}
	for _, id := range want {
		if !seen[id] {
			return fmt.Errorf("organisation %s missing", id)
		}
	}
	return nil
}

// onlyOwnProgrammes: funders and distributors list only their programmes, sites and the
// operator every (open) one.
func onlyOwnProgrammes(w *matrixWorld, c matrixCell, resp proto.Message) error {
	seen := map[string]bool{}
	for _, p := range resp.(*pb.ListProgrammesResponse).GetProgrammes() {
		seen[p.GetId()] = true
		var mine bool
		switch c.role {
		case auth.RoleFunder:
			mine = slices.ContainsFunc(p.GetFunders(), func(f *pb.ProgrammeFunder) bool {
				return f.GetFunderId() == w.funder[sideA].Org.String()
			})
		case auth.RoleDistributor:
			mine = slices.Contains(p.GetDistributorIds(), w.distributor[sideA].Org.String())
		default:
			mine = true
		}
		if !mine {
			return fmt.Errorf("lists programme %s (%s), which is not the caller's", p.GetId(), p.GetName())
		}
	}
	want := []string{w.prog[sideA]}
	if c.role == auth.RoleOperator || c.role == auth.RoleSite {
		want = append(want, w.prog[sideB])
	}
	for _, id := range want {
		if !seen[id] {
			return fmt.Errorf("programme %s missing", id)
		}
	}
	return nil
}

// onlyOwnBooks: the caller's own books, and none of side B's when it asks for them.
func onlyOwnBooks(w *matrixWorld, c matrixCell, resp proto.Message) error {
	books := resp.(*pb.ListBooksResponse).GetBooks()
	if c.own == otherObject && c.role != auth.RoleOperator {
		if len(books) > 0 {
			return fmt.Errorf("%d books of side B listed", len(books))
		}
		return nil
	}
	if len(books) == 0 {
		return errors.New("no book listed")
	}
	for _, b := range books {
		if c.own == otherObject && b.GetProgrammeId() != w.prog[sideB] {
			return fmt.Errorf("book %s/%d does not match the filter", b.GetProgrammeId(), b.GetNumber())
		}
		if !w.inScope(c.role, b.GetProgrammeId(), "", b.GetDistributorId(), "") {
			return fmt.Errorf("book %s/%d of distributor %s is not the caller's", b.GetProgrammeId(), b.GetNumber(), b.GetDistributorId())
		}
	}
	return nil
}

// onlyOwnStatements: a site lists its own statements; the operator, filtering, site B's.
func onlyOwnStatements(w *matrixWorld, c matrixCell, resp proto.Message) error {
	sts := resp.(*pb.ListStatementsResponse).GetStatements()
	if len(sts) == 0 {
		return errors.New("no statement listed")
	}
	want := ""
	switch {
	case c.own == otherObject:
		want = w.site[sideB].Org.String()
	case c.role == auth.RoleSite:
		want = w.site[sideA].Org.String()
	}
	for _, st := range sts {
		if want != "" && st.GetSiteId() != want {
			return fmt.Errorf("statement %s of site %s listed, want only site %s's", st.GetNumber(), st.GetSiteId(), want)
		}
	}
	return nil
}

// onlyOwnExpiring: each caller sees programme A expire; only the operator sees programme B.
func onlyOwnExpiring(w *matrixWorld, c matrixCell, resp proto.Message) error {
	seen := map[string]bool{}
	for _, p := range resp.(*pb.ListExpiringResponse).GetProgrammes() {
		seen[p.GetProgrammeId()] = true
	}
	if !seen[w.prog[sideA]] || seen[w.prog[sideB]] != (c.role == auth.RoleOperator) {
		return fmt.Errorf("expiring programmes %v: A %s, B %s", seen, w.prog[sideA], w.prog[sideB])
	}
	return nil
}

// onlyOwnSpend: every row is in the caller's scope; asked about programme B, a caller of
// side A gets nothing.
func onlyOwnSpend(w *matrixWorld, c matrixCell, resp proto.Message) error {
	rep := resp.(*pb.SpendReportResponse)
	if c.own == otherObject && c.role != auth.RoleOperator {
		if len(rep.GetRows()) > 0 || rep.GetTotal().GetBooksIssued() != 0 || rep.GetTotal().GetOwedCents() != 0 {
			return fmt.Errorf("report on programme B: %s", matrixText(rep))
		}
		return nil
	}
	if len(rep.GetRows()) == 0 {
		return errors.New("empty report")
	}
	progs := map[string]bool{}
	for _, row := range rep.GetRows() {
		progs[row.GetProgrammeId()] = true
		if !w.inScope(c.role, row.GetProgrammeId(), row.GetFunderId(), row.GetDistributorId(), row.GetSiteId()) {
			return fmt.Errorf("row out of the caller's scope: %s", matrixText(row))
		}
		if c.own == otherObject && row.GetProgrammeId() != w.prog[sideB] {
			return fmt.Errorf("row of another programme than B: %s", matrixText(row))
		}
	}
	if c.own == ownObject && (!progs[w.prog[sideA]] || progs[w.prog[sideB]] != (c.role == auth.RoleOperator)) {
		return fmt.Errorf("report programmes %v", progs)
	}
	return nil
}

// onlyOwnSpendCSV: the CSV names programme A for callers of side A, and has no row but the
// total when they ask about programme B.
func onlyOwnSpendCSV(w *matrixWorld, c matrixCell, resp proto.Message) error {
	data := resp.(*pb.ReportChunk).GetData()
	r := csv.NewReader(bytes.NewReader(bytes.TrimPrefix(data, []byte("\uFEFF"))))
	r.Comma = ';'
	records, err := r.ReadAll()
	if err != nil {
		return fmt.Errorf("read the CSV: %w", err)
	}
	hasA, hasB := bytes.Contains(data, []byte(w.prog[sideA])), bytes.Contains(data, []byte(w.prog[sideB]))
	switch {
	case c.own == otherObject && c.role != auth.RoleOperator:
		if len(records) != 2 || hasA {
			return fmt.Errorf("export on programme B: %q", records)
		}
	case c.own == otherObject:
		if hasA || !hasB {
			return fmt.Errorf("operator's export on programme B names A: %v, B: %v", hasA, hasB)
		}
	case !hasA || hasB != (c.role == auth.RoleOperator):
		return fmt.Errorf("export names A: %v, B: %v", hasA, hasB)
	}
	return nil
}
