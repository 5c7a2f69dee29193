// Package access answers who owns which object. The server's one object-level check
// (server.checkObjects) asks an Ownership for the owners of every object a request names;
// operators pass without asking, other callers must belong to an owning organisation.
package access

import (
	"context"
	"strconv"

	"github.com/google/uuid"
)

// Kinds of resources named by requests, and whose organisations own them.
const (
	// KindOrganization: the organisation itself.
	KindOrganization = "organization"
	// KindProgramme: its funders and its eligible distributors.
	KindProgramme = "programme"
	// KindBook: the funders of its programme and the distributor it was ordered for.
	// ID is "<programme id>/<book number>" (see Book).
	KindBook = "book"
	// KindStatement: the site it pays.
	KindStatement = "statement"
	// KindAll: the whole system (an unfiltered export or verification). Nobody owns it:
	// only operators pass, and the check never asks an Ownership about it.
	KindAll = "all"
)

// Resource names one object: a kind above and its id as the API spells it.
type Resource struct {
	Kind string
	ID   string
}

// Owners are the organisations that may act on a resource.
type Owners struct {
	Orgs []uuid.UUID
}

// Ownership looks up owners. A resource that does not exist is reported as a fault of kind
// NotFound (the check then refuses it exactly like a resource owned by someone else).
type Ownership interface {
	Owners(ctx context.Context, r Resource) (Owners, error)
}

// All is the resource for requests that span every programme and organisation.
var All = Resource{Kind: KindAll}

// Organization names an organisation by id.
func Organization(id string) Resource { return Resource{Kind: KindOrganization, ID: id} }

// Programme names a programme by id.
func Programme(id string) Resource { return Resource{Kind: KindProgramme, ID: id} }

// Book names a book by its programme and number.
func Book(programmeID string, number int64) Resource {
	return Resource{Kind: KindBook, ID: programmeID + "/" + strconv.FormatInt(number, 10)}
}

// Statement names a payout statement by id.
func Statement(id string) Resource { return Resource{Kind: KindStatement, ID: id} }
