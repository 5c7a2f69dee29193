package access

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/passnum/passnum/internal/fault"
	"github.com/passnum/passnum/ledger"
)

// KindSite names a mediation site; it owns itself. Unlike KindOrganization, an
// organisation that is not a site is not found under it.
const KindSite = "site"

// lookup finds the owners of one kind of resource: args turns the resource's id into the
// query's arguments (false when the id cannot name such an object), and query returns one
// row holding the owners as a uuid[] when the object exists, no row otherwise.
type lookup struct {
	args  func(id string) ([]any, bool)
	query string
}

// lookups is the one table of ownership rules, kind → query. Adding a kind of resource is
// adding an entry.
var lookups = map[string]lookup{
	KindOrganization: {args: uuidArg, query: `SELECT ARRAY[id] FROM organisations WHERE id = $1`},
	KindSite:         {args: uuidArg, query: `SELECT ARRAY[org_id] FROM sites WHERE org_id = $1`},
	KindProgramme: {args: uuidArg, query: `
		SELECT ARRAY(SELECT funder_id FROM programme_funders WHERE programme_id = p.id
		             UNION
		             SELECT distributor_id FROM programme_distributors WHERE programme_id = p.id)
		  FROM programmes p WHERE p.id = $1`},
	KindBook: {args: bookArgs, query: `
		SELECT ARRAY(SELECT funder_id FROM programme_funders WHERE programme_id = b.programme_id) || b.distributor_id
		  FROM books b WHERE b.programme_id = $1 AND b.number = $2`},
	KindStatement: {args: uuidArg, query: `SELECT ARRAY[site_id] FROM statements WHERE id = $1`},
}

func uuidArg(id string) ([]any, bool) {
	u, err := uuid.Parse(id)
	return []any{u}, err == nil
}

// bookArgs splits "<programme id>/<book number>" (see Book).
func bookArgs(id string) ([]any, bool) {
	prog, num, ok := strings.Cut(id, "/")
	if !ok {
		return nil, false
	}
	p, err := uuid.Parse(prog)
	if err != nil {
		return nil, false
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n <= 0 {
		return nil, false
	}
	return []any{p, n}, true
}

// Resolver is the Ownership of passnum's database: it answers with one query per resource,
// chosen by kind from lookups.
type Resolver struct {
	q ledger.Querier
}

// NewResolver returns a resolver querying q (the application's pool).
func NewResolver(q ledger.Querier) *Resolver {
	return &Resolver{q: q}
}

// Owners returns the organisations owning r. An object that does not exist, or an id that
// cannot name one, is the NotFound fault OBJECT_NOT_FOUND; a kind without a lookup is an
// error (a wiring bug, not a refusal).
func (res *Resolver) Owners(ctx context.Context, r Resource) (Owners, error) {
	l, ok := lookups[r.Kind]
	if !ok {
		return Owners{}, fmt.Errorf("owners of %s %q: no ownership rule for this kind", r.Kind, r.ID)
	}
	args, ok := l.args(r.ID)
	if !ok {
		return Owners{}, notFound(r)
	}
	var orgs []uuid.UUID
	err := res.q.QueryRow(ctx, l.query, args...).Scan(&orgs)
	if errors.Is(err, pgx.ErrNoRows) {
		return Owners{}, notFound(r)
	}
	if err != nil {
		return Owners{}, fmt.Errorf("owners of %s %q: %w", r.Kind, r.ID, err)
	}
	return Owners{Orgs: orgs}, nil
}

func notFound(r Resource) error {
	return fault.New(fault.NotFound, "OBJECT_NOT_FOUND", "Cet objet n'existe pas.", "kind", r.Kind, "id", r.ID)
}
