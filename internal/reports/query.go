package reports

import (
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/passnum/passnum/internal/auth"
	"github.com/passnum/passnum/internal/fault"
	"github.com/passnum/passnum/internal/ident"
)

// Dimension is what a report can be grouped by.
type Dimension int

// The dimensions, numbered like passnum.v1.ReportDimension.
const (
	Programme Dimension = iota + 1
	Funder
	Territory
	Distributor
	Site
	Month
)

var dimensionNames = map[Dimension]string{
	Programme:   "programme",
	Funder:      "funder",
	Territory:   "territory",
	Distributor: "distributor",
	Site:        "site",
	Month:       "month",
}

func (d Dimension) String() string {
	if n, ok := dimensionNames[d]; ok {
		return n
	}
	return fmt.Sprintf("dimension(%d)", int(d))
}

// ParseDimension returns the dimension named s ("programme", "funder", "territory",
// "distributor", "site" or "month").
func ParseDimension(s string) (Dimension, error) {
	for d, n := range dimensionNames {
		if n == strings.ToLower(strings.TrimSpace(s)) {
			return d, nil
		}
	}
	return 0, fault.InvalidField("group_by", fmt.Sprintf(
		"Regroupement %q inconnu : choisissez parmi programme, funder, territory, distributor, site et month.", s))
}

// Filter narrows a report; zero fields do not filter.
type Filter struct {
	Programme   uuid.UUID
	Funder      uuid.UUID
	Territory   string
	Distributor uuid.UUID
	Site        uuid.UUID
	From        time.Time // first month included (first day of the month)
	To          time.Time // last month included (first day of the month)
}

// Query is a report to compute: a filter and the dimensions to group by, in order.
type Query struct {
	Filter
	GroupBy []Dimension
}

// Request is a query as callers write it (API, command line): ids as text, months as
// "YYYY-MM" or a "YYYY-MM-DD" date (meaning its month).
type Request struct {
	Programme   string
	Funder      string
	Territory   string
	Distributor string
	Site        string
	From        string
	To          string
	GroupBy     []Dimension
}

// Parse checks a request and returns its query, or a fault of kind Invalid naming the field.
func (r Request) Parse() (Query, error) {
	var q Query
	var err error
	if q.Programme, err = parseID("programme_id", "programme", r.Programme); err != nil {
		return Query{}, err
	}
	if q.Funder, err = parseID("funder_id", "financeur", r.Funder); err != nil {
		return Query{}, err
	}
	if q.Distributor, err = parseID("distributor_id", "aiguilleur", r.Distributor); err != nil {
		return Query{}, err
	}
	if q.Site, err = parseID("site_id", "lieu de médiation", r.Site); err != nil {
		return Query{}, err
	}
	if strings.TrimSpace(r.Territory) != "" {
		if q.Territory, err = ident.NormalizeDepartement(r.Territory); err != nil {
			return Query{}, fault.InvalidField("territory", fmt.Sprintf(
				"Le département %q n'est pas un code valide (par exemple 07, 2A ou 974).", r.Territory))
		}
	}
	if q.From, err = ParseMonth("from", r.From); err != nil {
		return Query{}, err
	}
	if q.To, err = ParseMonth("to", r.To); err != nil {
		return Query{}, err
	}
	if !q.From.IsZero() && !q.To.IsZero() && q.From.After(q.To) {
		return Query{}, fault.New(fault.Invalid, "INVALID_PERIOD",
			"La période est vide : le premier mois est après le dernier.", "field", "from")
	}
	seen := make(map[Dimension]bool, len(r.GroupBy))
	for _, d := range r.GroupBy {
		if _, ok := dimensionNames[d]; !ok {
			return Query{}, fault.InvalidField("group_by",
				"Regroupement inconnu : choisissez parmi programme, financeur, département, aiguilleur, lieu et mois.")
		}
		if seen[d] {
			return Query{}, fault.InvalidField("group_by",
				fmt.Sprintf("Le regroupement %s est demandé deux fois.", frDimension[d]))
		}
		seen[d] = true
		q.GroupBy = append(q.GroupBy, d)
	}
	return q, nil
}

func parseID(field, what, s string) (uuid.UUID, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return uuid.Nil, nil
	}
	id, err := uuid.Parse(s)
	if err != nil || id == uuid.Nil {
		return uuid.Nil, fault.InvalidField(field, fmt.Sprintf("L'identifiant de %s %q n'est pas valide.", what, s))
	}
	return id, nil
}

// ParseMonth reads "YYYY-MM", or a "YYYY-MM-DD" date meaning its month, as the first day of
// that month (UTC midnight, a civil date). An empty string is the zero time (no bound).
func ParseMonth(field, s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse("2006-01", s)
	if err != nil {
		t, err = time.Parse(time.DateOnly, s)
	}
	if err != nil || t.Year() < 2000 || t.Year() > 9999 {
		return time.Time{}, fault.InvalidField(field, fmt.Sprintf(
			"Le mois %q n'est pas valide : écrivez-le AAAA-MM, par exemple 2025-03.", s))
	}
	return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC), nil
}

// Scope is what a caller may see. The SQL of every report applies it (see scopeSQL).
type Scope struct {
	Role auth.Role
	Org  uuid.UUID
}

// ScopeOf is the one mapping of an API caller to the rows it may see: operators everything,
// funders their programmes, distributors their books, sites their redemptions and payments.
func ScopeOf(p auth.Principal) Scope { return Scope{Role: p.Role, Org: p.Org} }

// Everything is the operator's scope, for the command line.
var Everything = Scope{Role: auth.RoleOperator}

func (s Scope) check() error {
	switch s.Role {
	case auth.RoleOperator:
		return nil
	case auth.RoleFunder, auth.RoleDistributor, auth.RoleSite:
		if s.Org != uuid.Nil {
			return nil
		}
	}
	return fault.New(fault.PermissionDenied, "REPORT_NOT_ALLOWED",
		"Votre rôle ne permet pas de consulter ce rapport.", "role", string(s.Role))
}
