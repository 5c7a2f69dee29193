package server

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/passnum/passnum/internal/access"
	"github.com/passnum/passnum/internal/auth"
	"github.com/passnum/passnum/internal/fault"
	pb "github.com/passnum/passnum/proto/passnum/v1"
)

// Role shorthands for the table below.
const (
	op = auth.RoleOperator
	fu = auth.RoleFunder
	di = auth.RoleDistributor
	si = auth.RoleSite
)

// methodRoles is the one authorisation table: full method name → roles allowed to call it.
// Deny by default: a method missing here is refused to everyone (and logged), and a test
// fails if a registered or declared passnum RPC is missing. List and report RPCs are open
// to several roles because the domain filters their rows by the caller's organisation.
var methodRoles = map[string][]auth.Role{
	pb.OrganizationService_CreateOrganization_FullMethodName: {op},
	pb.OrganizationService_GetOrganization_FullMethodName:    {op, fu, di, si},
	pb.OrganizationService_ListOrganizations_FullMethodName:  {op, fu, di, si},
	pb.OrganizationService_QualifySite_FullMethodName:        {op},
	pb.OrganizationService_SuspendSite_FullMethodName:        {op},
	pb.OrganizationService_WithdrawSite_FullMethodName:       {op},
	pb.OrganizationService_ImportSites_FullMethodName:        {op},

	pb.ProgrammeService_CreateProgramme_FullMethodName:     {op, fu},
	pb.ProgrammeService_GetProgramme_FullMethodName:        {op, fu, di},
	pb.ProgrammeService_ListProgrammes_FullMethodName:      {op, fu, di, si},
	pb.ProgrammeService_RecordFunding_FullMethodName:       {op},
	pb.ProgrammeService_GetProgrammeBalance_FullMethodName: {op, fu},

	pb.BookService_OrderBooks_FullMethodName:  {op, fu},
	pb.BookService_HandOutBook_FullMethodName: {di},
	pb.BookService_CancelBook_FullMethodName:  {op, di},
	pb.BookService_GetBook_FullMethodName:     {op, fu, di},
	pb.BookService_ListBooks_FullMethodName:   {op, fu, di},

	pb.VoucherService_CheckVoucher_FullMethodName:      {op, si},
	pb.VoucherService_HoldVoucher_FullMethodName:       {si},
	pb.VoucherService_RedeemVoucher_FullMethodName:     {si},
	pb.VoucherService_ReverseRedemption_FullMethodName: {op},

	pb.PayoutService_CreateStatements_FullMethodName:  {op},
	pb.PayoutService_ApproveStatement_FullMethodName:  {op},
	pb.PayoutService_RejectStatement_FullMethodName:   {op},
	pb.PayoutService_MarkStatementPaid_FullMethodName: {op},
	pb.PayoutService_GetStatement_FullMethodName:      {op, si},
	pb.PayoutService_ListStatements_FullMethodName:    {op, si},
	pb.PayoutService_ExportPaymentFile_FullMethodName: {op},
	pb.PayoutService_ListExpiring_FullMethodName:      {op, fu, di},
	pb.PayoutService_ExpireProgramme_FullMethodName:   {op},
	pb.PayoutService_GetCloseOut_FullMethodName:       {op, fu},

	pb.ReportService_SpendReport_FullMethodName:       {op, fu, di, si},
	pb.ReportService_ExportSpendReport_FullMethodName: {op, fu, di, si},

	pb.LedgerService_VerifyLedger_FullMethodName:  {op, fu},
	pb.LedgerService_ExportJournal_FullMethodName: {op, fu},
}

// objectRule lists the objects a request names; each must be owned by the caller's
// organisation (operators pass). Empty ids are skipped: the domain refuses them as invalid.
type objectRule func(req any) []access.Resource

// objectRules is the one table of object-level checks: full method name → the objects its
// request names. Methods that take no object id, or whose rows the domain filters by the
// caller's scope (lists, reports), have no entry.
var objectRules = map[string]objectRule{
	pb.OrganizationService_GetOrganization_FullMethodName: on(func(r *pb.GetOrganizationRequest) []access.Resource {
		return ids(access.Organization(r.GetId()))
	}),
	pb.ProgrammeService_GetProgramme_FullMethodName: on(func(r *pb.GetProgrammeRequest) []access.Resource {
		return ids(access.Programme(r.GetId()))
	}),
	pb.ProgrammeService_GetProgrammeBalance_FullMethodName: on(func(r *pb.GetProgrammeBalanceRequest) []access.Resource {
		return ids(access.Programme(r.GetProgrammeId()))
	}),
	pb.BookService_OrderBooks_FullMethodName: on(func(r *pb.OrderBooksRequest) []access.Resource {
		return ids(access.Programme(r.GetProgrammeId()))
	}),
	pb.BookService_HandOutBook_FullMethodName: on(func(r *pb.HandOutBookRequest) []access.Resource {
		return book(r.GetBook())
	}),
	pb.BookService_CancelBook_FullMethodName: on(func(r *pb.CancelBookRequest) []access.Resource {
		return book(r.GetBook())
	}),
	pb.BookService_GetBook_FullMethodName: on(func(r *pb.GetBookRequest) []access.Resource {
		return book(r.GetBook())
	}),
	pb.PayoutService_GetStatement_FullMethodName: on(func(r *pb.GetStatementRequest) []access.Resource {
		return ids(access.Statement(r.GetStatementId()))
	}),
	// Without a funder the close-out covers every funder of the programme: operators only.
	pb.PayoutService_GetCloseOut_FullMethodName: on(func(r *pb.GetCloseOutRequest) []access.Resource {
		return append(ids(access.Programme(r.GetProgrammeId())), orAll(access.Organization(r.GetFunderId()))...)
	}),
	// Without a programme, verification and export cover everything: operators only.
	pb.LedgerService_VerifyLedger_FullMethodName: on(func(r *pb.VerifyLedgerRequest) []access.Resource {
		return orAll(access.Programme(r.GetProgrammeId()))
	}),
	pb.LedgerService_ExportJournal_FullMethodName: on(func(r *pb.ExportJournalRequest) []access.Resource {
		return orAll(access.Programme(r.GetProgrammeId()))
	}),
}

// publicServices need no token and no table entry: health checks and reflection.
var publicServices = map[string]bool{
	"grpc.health.v1.Health":                    true,
	"grpc.reflection.v1.ServerReflection":      true,
	"grpc.reflection.v1alpha.ServerReflection": true,
}

// isPublic reports whether fullMethod ("/pkg.Service/Method") belongs to a public service.
func isPublic(fullMethod string) bool {
	svc, _, ok := strings.Cut(strings.TrimPrefix(fullMethod, "/"), "/")
	return ok && publicServices[svc]
}

// on adapts a typed rule to the table. A request of another type is a wiring bug: it panics,
// the recovery interceptor answers INTERNAL and the handler never runs.
func on[T any](f func(T) []access.Resource) objectRule {
	return func(req any) []access.Resource {
		r, ok := req.(T)
		if !ok {
			var want T
			panic(fmt.Sprintf("object rule for %T called with %T", want, req))
		}
		return f(r)
	}
}

// ids keeps the resources that have an id.
func ids(rs ...access.Resource) []access.Resource {
	out := make([]access.Resource, 0, len(rs))
	for _, r := range rs {
		if r.ID != "" {
			out = append(out, r)
		}
	}
	return out
}

// orAll is r, or All when r has no id.
func orAll(r access.Resource) []access.Resource {
	if r.ID == "" {
		return []access.Resource{access.All}
	}
	return []access.Resource{r}
}

func book(ref *pb.BookRef) []access.Resource {
	if ref.GetProgrammeId() == "" {
		return nil
	}
	return []access.Resource{access.Book(ref.GetProgrammeId(), ref.GetNumber())}
}

// policy is the pair of tables an authorizer enforces (tests use their own).
type policy struct {
	roles   map[string][]auth.Role
	objects map[string]objectRule
}

var passnumPolicy = policy{roles: methodRoles, objects: objectRules}

// Reasons of the PermissionDenied faults returned by the authorizer.
const (
	ReasonMethodNotAllowed = "METHOD_NOT_ALLOWED"
	ReasonRoleNotAllowed   = "ROLE_NOT_ALLOWED"
	ReasonObjectNotAllowed = "OBJECT_NOT_ALLOWED"
	ReasonOperatorOnly     = "OPERATOR_ONLY"
)

var roleLabels = map[auth.Role]string{
	auth.RoleOperator:    "opérateur",
	auth.RoleFunder:      "financeur",
	auth.RoleDistributor: "prescripteur",
	auth.RoleSite:        "lieu de médiation",
}

type authorizer struct {
	policy
	owners access.Ownership
	logger *slog.Logger
}

// allowMethod is the role check: the method must be in the table and list p's role.
func (a *authorizer) allowMethod(ctx context.Context, method string, p auth.Principal) error {
	roles, ok := a.roles[method]
	if !ok {
		a.logger.ErrorContext(ctx, "method missing from the authorisation table, refused",
			"method", method, "request_id", requestID(ctx))
		return fault.New(fault.PermissionDenied, ReasonMethodNotAllowed,
			"Opération non autorisée.", "method", method)
	}
	if !slices.Contains(roles, p.Role) {
		return fault.New(fault.PermissionDenied, ReasonRoleNotAllowed,
			fmt.Sprintf("Votre rôle (%s) ne permet pas cette opération.", roleLabels[p.Role]),
			"role", string(p.Role))
	}
	return nil
}

// checkRequest runs the method's object rule, if it has one, on a request message.
func (a *authorizer) checkRequest(ctx context.Context, method string, p auth.Principal, req any) error {
	rule, ok := a.objects[method]
	if !ok {
		return nil
	}
	return a.checkObjects(ctx, p, rule(req))
}

// checkObjects is the one object-level check. Operators pass. Anyone else must belong to
// an owning organisation of every resource. An object that does not exist is refused with
// the same PERMISSION_DENIED as one owned by someone else, so that ids of other
// organisations' objects cannot be probed.
func (a *authorizer) checkObjects(ctx context.Context, p auth.Principal, resources []access.Resource) error {
	if p.Role == auth.RoleOperator || len(resources) == 0 {
		return nil
	}
	for _, r := range resources {
		if r.Kind == access.KindAll {
			return fault.New(fault.PermissionDenied, ReasonOperatorOnly,
				"Cette demande porte sur l'ensemble des données : elle est réservée à l'opérateur. Précisez le programme ou l'organisation.")
		}
		if a.owners == nil {
			return fmt.Errorf("object check for %s %q: no ownership source configured", r.Kind, r.ID)
		}
		owners, err := a.owners.Owners(ctx, r)
		if f, ok := fault.As(err); ok && f.Kind == fault.NotFound {
			return denyObject(r)
		}
		if err != nil {
			return fmt.Errorf("owners of %s %q: %w", r.Kind, r.ID, err)
		}
		if !slices.Contains(owners.Orgs, p.Org) {
			return denyObject(r)
		}
	}
	return nil
}

func denyObject(r access.Resource) error {
	return fault.New(fault.PermissionDenied, ReasonObjectNotAllowed,
		"Vous n'avez pas accès à cet objet, ou il n'existe pas.", "kind", r.Kind, "id", r.ID)
}
