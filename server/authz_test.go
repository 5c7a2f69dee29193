package server

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/passnum/passnum/internal/access"
	"github.com/passnum/passnum/internal/auth"
	"github.com/passnum/passnum/internal/fault"
	pb "github.com/passnum/passnum/proto/passnum/v1"
)

// declaredMethods lists every RPC of the passnum.v1 services in the compiled proto
// descriptors, full method name → method descriptor.
func declaredMethods(t *testing.T) map[string]protoreflect.MethodDescriptor {
	t.Helper()
	out := map[string]protoreflect.MethodDescriptor{}
	protoregistry.GlobalFiles.RangeFilesByPackage("passnum.v1", func(fd protoreflect.FileDescriptor) bool {
		for i := range fd.Services().Len() {
			sd := fd.Services().Get(i)
			for j := range sd.Methods().Len() {
				md := sd.Methods().Get(j)
				out["/"+string(sd.FullName())+"/"+string(md.Name())] = md
			}
		}
		return true
	})
	if len(out) == 0 {
		t.Fatal("no passnum.v1 service found in the proto registry")
	}
	return out
}

func testVerifier(t *testing.T) *auth.Verifier {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ks, err := auth.NewKeySet(auth.PublicKey{KID: auth.KeyID(pub), Key: pub})
	if err != nil {
		t.Fatal(err)
	}
	return auth.NewVerifier(ks, auth.DefaultIssuer, auth.DefaultAudience)
}

// The server as wired for production: every method it serves is in the table, or belongs
// to an explicitly public service.
func TestEveryRegisteredMethodIsInTheTable(t *testing.T) {
	s := New(Config{Verifier: testVerifier(t), Reflection: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, App{})
	defer s.Stop()
	for svc, info := range s.GetServiceInfo() {
		for _, m := range info.Methods {
			full := "/" + svc + "/" + m.Name
			if publicServices[svc] {
				if !isPublic(full) {
					t.Errorf("%s: public service not recognised as public", full)
				}
				continue
			}
			if _, ok := methodRoles[full]; !ok {
				t.Errorf("%s is served but missing from methodRoles in authz.go", full)
			}
		}
	}
}

// Every RPC of the API contract has a row, and every row names a real RPC.
func TestTableMatchesTheProto(t *testing.T) {
	declared := declaredMethods(t)
	for full := range declared {
		if _, ok := methodRoles[full]; !ok {
			t.Errorf("%s is declared in proto/passnum/v1 but missing from methodRoles", full)
		}
	}
	for full, roles := range methodRoles {
		if _, ok := declared[full]; !ok {
			t.Errorf("methodRoles has %s, which no proto declares", full)
		}
		if len(roles) == 0 {
			t.Errorf("%s: empty role list (remove the row: missing means denied)", full)
		}
		for _, r := range roles {
			if _, err := auth.ParseRole(string(r)); err != nil {
				t.Errorf("%s: %v", full, err)
			}
		}
		if isPublic(full) {
			t.Errorf("%s is in the table but treated as public", full)
		}
	}
}

// Every object rule belongs to a listed method, accepts that method's request type, and
// names objects that have an id.
func TestObjectRulesMatchRequests(t *testing.T) {
	declared := declaredMethods(t)
	for full, rule := range objectRules {
		if _, ok := methodRoles[full]; !ok {
			t.Errorf("object rule for %s, which methodRoles does not list", full)
		}
		md, ok := declared[full]
		if !ok {
			t.Errorf("object rule for undeclared method %s", full)
			continue
		}
		mt, err := protoregistry.GlobalTypes.FindMessageByName(md.Input().FullName())
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rule(mt.New().Interface()) {
			if r.Kind != access.KindAll {
				t.Errorf("%s: empty request names %+v; empty ids must be skipped or mean All", full, r)
			}
		}
	}
}

func TestObjectRulesExamples(t *testing.T) {
	prog, funder := uuid.NewString(), uuid.NewString()
	cases := []struct {
		method string
		req    any
		want   []access.Resource
	}{
		{pb.BookService_GetBook_FullMethodName, &pb.GetBookRequest{Book: &pb.BookRef{ProgrammeId: prog, Number: 12}},
			[]access.Resource{{Kind: access.KindBook, ID: prog + "/12"}}},
		{pb.PayoutService_GetCloseOut_FullMethodName, &pb.GetCloseOutRequest{ProgrammeId: prog},
			[]access.Resource{access.Programme(prog), access.All}},
		{pb.PayoutService_GetCloseOut_FullMethodName, &pb.GetCloseOutRequest{ProgrammeId: prog, FunderId: funder},
			[]access.Resource{access.Programme(prog), access.Organization(funder)}},
		{pb.LedgerService_ExportJournal_FullMethodName, &pb.ExportJournalRequest{}, []access.Resource{access.All}},
		{pb.LedgerService_ExportJournal_FullMethodName, &pb.ExportJournalRequest{ProgrammeId: prog}, []access.Resource{access.Programme(prog)}},
	}
	for _, tc := range cases {
		if got := objectRules[tc.method](tc.req); !slices.Equal(got, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.method, got, tc.want)
		}
	}
}

func TestObjectRuleWrongTypePanics(t *testing.T) {
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), "GetBookRequest") {
			t.Fatalf("recovered %v", r)
		}
	}()
	objectRules[pb.BookService_GetBook_FullMethodName](&pb.GetProgrammeRequest{})
}

type staticOwners map[access.Resource][]uuid.UUID

func (s staticOwners) Owners(_ context.Context, r access.Resource) (access.Owners, error) {
	orgs, ok := s[r]
	if !ok {
		return access.Owners{}, fault.New(fault.NotFound, "NOT_FOUND", "introuvable")
	}
	return access.Owners{Orgs: orgs}, nil
}

func TestCheckObjects(t *testing.T) {
	me, other := uuid.New(), uuid.New()
	mine, theirs, missing := access.Programme("p1"), access.Programme("p2"), access.Programme("p3")
	a := &authorizer{owners: staticOwners{mine: {other, me}, theirs: {other}},
		logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	funder := auth.Principal{Subject: "f", Org: me, Role: auth.RoleFunder}
	operator := auth.Principal{Subject: "o", Org: uuid.New(), Role: auth.RoleOperator}
	ctx := context.Background()

	if err := a.checkObjects(ctx, funder, []access.Resource{mine}); err != nil {
		t.Fatalf("owner refused: %v", err)
	}
	if err := a.checkObjects(ctx, funder, nil); err != nil {
		t.Fatalf("nothing to check refused: %v", err)
	}
	for name, rs := range map[string][]access.Resource{
		"theirs":           {theirs},
		"missing":          {missing},
		"one of two":       {mine, theirs},
		"all":              {access.All},
		"all after mine":   {mine, access.All},
		"missing and mine": {missing, mine},
	} {
		err := a.checkObjects(ctx, funder, rs)
		if f, ok := fault.As(err); !ok || f.Kind != fault.PermissionDenied {
			t.Errorf("%s: got %v, want a PermissionDenied fault", name, err)
		}
	}
	if err := a.checkObjects(ctx, operator, []access.Resource{theirs, missing, access.All}); err != nil {
		t.Fatalf("operator refused: %v", err)
	}

	// Without an ownership source, checks fail closed (and not as a permission error).
	a.owners = nil
	if err := a.checkObjects(ctx, funder, []access.Resource{mine}); err == nil {
		t.Fatal("object check passed without an ownership source")
	} else if _, ok := fault.As(err); ok {
		t.Fatalf("missing ownership source reported as a fault: %v", err)
	}
}
