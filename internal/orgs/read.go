package orgs

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/passnum/passnum/internal/auth"
	"github.com/passnum/passnum/internal/fault"
	"github.com/passnum/passnum/internal/ident"
	"github.com/passnum/passnum/ledger"
)

// scope is what a caller may read (see the package documentation). It is the one place
// where visibility is decided; visibleSQL applies it to a query over "organisations o LEFT
// JOIN sites s" with the named arguments of args.
type scope struct {
	all      bool      // the operator: everything
	viewer   uuid.UUID // the caller's own organisation
	registry bool      // funders and distributors: also the qualified sites
}

const visibleSQL = `(@all OR o.id = @viewer OR (@registry AND o.kind = 'site' AND s.status = 'qualified'))`

func scopeOf(p auth.Principal) scope {
	switch p.Role {
	case auth.RoleOperator:
		return scope{all: true, viewer: p.Org}
	case auth.RoleFunder, auth.RoleDistributor:
		return scope{viewer: p.Org, registry: true}
	}
	return scope{viewer: p.Org}
}

func (sc scope) args(a pgx.NamedArgs) pgx.NamedArgs {
	a["all"], a["viewer"], a["registry"] = sc.all, sc.viewer, sc.registry
	return a
}

// redact removes from o what the caller may not see: a site's legal representative and
// bank details are for the operator and the site itself.
func (sc scope) redact(o *Organization) {
	if sc.all || o.ID == sc.viewer || o.Site == nil {
		return
	}
	site := *o.Site
	site.LegalRepresentative, site.IBAN, site.BIC = "", "", ""
	o.Site = &site
}

const selectOrganization = `
	SELECT o.id, o.kind, o.name, coalesce(o.departement, ''), coalesce(o.siret, ''), o.created_at,
	       s.org_id IS NOT NULL, coalesce(s.external_id, ''), coalesce(s.legal_representative, ''),
	       coalesce(s.iban, ''), coalesce(s.bic, ''), coalesce(s.services, '{}'), coalesce(s.commune, ''),
	       coalesce(s.code_postal, ''), coalesce(s.code_insee, ''), coalesce(s.adresse, ''),
	       coalesce(s.status, ''), s.valid_from, s.valid_until
	  FROM organisations o LEFT JOIN sites s ON s.org_id = o.id`

func scanOrganization(row pgx.Row) (Organization, error) {
	var (
		o        Organization
		st       Site
		isSite   bool
		from, to pgtype.Date
	)
	err := row.Scan(&o.ID, &o.Kind, &o.Name, &o.Departement, &o.SIRET, &o.CreatedAt,
		&isSite, &st.ExternalID, &st.LegalRepresentative, &st.IBAN, &st.BIC, &st.Services, &st.Commune,
		&st.CodePostal, &st.CodeINSEE, &st.Adresse, &st.Status, &from, &to)
	if err != nil {
		return o, err
	}
	if isSite {
		st.ValidFrom, st.ValidUntil = dateOf(from), dateOf(to)
		o.Site = &st
	}
	return o, nil
}

func dateOf(d pgtype.Date) time.Time {
	if !d.Valid {
		return time.Time{}
	}
	return dateOnly(d.Time)
}

func notFound(id uuid.UUID) error {
	return fault.New(fault.NotFound, "ORGANIZATION_NOT_FOUND",
		"Cette organisation n'existe pas, ou vous n'y avez pas accès.", "id", id.String())
}

// load reads one organisation with every detail, whoever asks (for the write paths).
func load(ctx context.Context, q ledger.Querier, id uuid.UUID) (Organization, error) {
	o, err := scanOrganization(q.QueryRow(ctx, selectOrganization+` WHERE o.id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return o, notFound(id)
	}
	if err != nil {
		return o, fmt.Errorf("load organisation %s: %w", id, err)
	}
	return o, nil
}

// GetOrganization returns one organisation as viewer may see it; one outside the viewer's
// scope is not found.
func (s *Service) GetOrganization(ctx context.Context, viewer auth.Principal, id uuid.UUID) (Organization, error) {
	sc := scopeOf(viewer)
	o, err := scanOrganization(s.ledger.Pool().QueryRow(ctx,
		selectOrganization+` WHERE o.id = @id AND `+visibleSQL, sc.args(pgx.NamedArgs{"id": id})))
	if errors.Is(err, pgx.ErrNoRows) {
		return o, notFound(id)
	}
	if err != nil {
		return o, fmt.Errorf("get organisation %s: %w", id, err)
	}
	sc.redact(&o)
	return o, nil
}

// Page sizes of ListOrganizations.
const (
	DefaultPageSize = 50
	MaxPageSize     = 500
)

// ListFilter selects organisations; zero fields do not filter. PageToken is the
// NextPageToken of the previous page, empty for the first.
type ListFilter struct {
	Kind        Kind
	Departement string
	PageSize    int // 0 means DefaultPageSize; larger than MaxPageSize means MaxPageSize
	PageToken   string
}

// Page is one page of organisations, in id order. NextPageToken is empty on the last page.
type Page struct {
	Organizations []Organization
	NextPageToken string
}

// pageTokenVersion starts every page token, so that the format can change later.
const pageTokenVersion = 1

func encodePageToken(last uuid.UUID) string {
	return base64.RawURLEncoding.EncodeToString(append([]byte{pageTokenVersion}, last[:]...))
}

func decodePageToken(tok string) (uuid.UUID, error) {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(b) != 17 || b[0] != pageTokenVersion {
		return uuid.Nil, fault.New(fault.Invalid, "PAGE_TOKEN_INVALID",
			"Le jeton de page (page_token) n'est pas valide : reprenez la liste depuis le début.", "field", "page_token")
	}
	return uuid.UUID(b[1:]), nil
}

// ListOrganizations returns the organisations viewer may see, filtered, in pages ordered by
// id (keyset pagination: a page token is the last id of the previous page).
func (s *Service) ListOrganizations(ctx context.Context, viewer auth.Principal, f ListFilter) (Page, error) {
	args := pgx.NamedArgs{"kind": "", "departement": "", "after": nil}
	switch f.Kind {
	case "":
	case KindOperator, KindFunder, KindDistributor, KindSite:
		args["kind"] = string(f.Kind)
	default:
		return Page{}, fault.New(fault.Invalid, "KIND_INVALID", "Ce type d'organisation n'existe pas.", "field", "kind")
	}
	if f.Departement != "" {
		d, err := ident.NormalizeDepartement(f.Departement)
		if err != nil {
			return Page{}, err
		}
		args["departement"] = d
	}
	size := f.PageSize
	switch {
	case size < 0:
		return Page{}, fault.New(fault.Invalid, "PAGE_SIZE_INVALID",
			"La taille de page (page_size) ne peut pas être négative.", "field", "page_size")
	case size == 0:
		size = DefaultPageSize
	case size > MaxPageSize:
		size = MaxPageSize
	}
	if f.PageToken != "" {
		after, err := decodePageToken(f.PageToken)
		if err != nil {
			return Page{}, err
		}
		args["after"] = after
	}
	args["limit"] = size + 1
	sc := scopeOf(viewer)
	rows, err := s.ledger.Pool().Query(ctx, selectOrganization+`
		 WHERE (@after::uuid IS NULL OR o.id > @after)
		   AND (@kind = '' OR o.kind = @kind)
		   AND (@departement = '' OR o.departement = @departement)
		   AND `+visibleSQL+`
		 ORDER BY o.id
		 LIMIT @limit`, sc.args(args))
	if err != nil {
		return Page{}, fmt.Errorf("list organisations: %w", err)
	}
	orgs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Organization, error) { return scanOrganization(row) })
	if err != nil {
		return Page{}, fmt.Errorf("list organisations: %w", err)
	}
	var p Page
	if len(orgs) > size {
		orgs = orgs[:size]
		p.NextPageToken = encodePageToken(orgs[size-1].ID)
	}
	for i := range orgs {
		sc.redact(&orgs[i])
	}
	p.Organizations = orgs
	return p, nil
}

// SiteInfo is what a redemption needs to know about a site.
type SiteInfo struct {
	ID          uuid.UUID
	Name        string
	Status      Status
	ValidFrom   time.Time // civil dates at UTC midnight; zero when never qualified
	ValidUntil  time.Time
	Services    []string
	Departement string
}

// SiteForRedemption reads a site for a redemption, with q the redemption's transaction (or
// a pool). A missing site, or an organisation that is not a site, is the NotFound fault
// SITE_NOT_FOUND. It takes no lock: a suspension committed while a redemption runs applies
// to the next redemptions.
func SiteForRedemption(ctx context.Context, q ledger.Querier, siteID uuid.UUID) (SiteInfo, error) {
	si := SiteInfo{ID: siteID}
	var from, to pgtype.Date
	err := q.QueryRow(ctx, `
		SELECT o.name, coalesce(o.departement, ''), s.status, s.valid_from, s.valid_until, s.services
		  FROM sites s JOIN organisations o ON o.id = s.org_id
		 WHERE s.org_id = $1`, siteID).Scan(&si.Name, &si.Departement, &si.Status, &from, &to, &si.Services)
	if errors.Is(err, pgx.ErrNoRows) {
		return si, fault.New(fault.NotFound, "SITE_NOT_FOUND",
			"Ce lieu de médiation n'est pas enregistré dans passnum.", "site_id", siteID.String())
	}
	if err != nil {
		return si, fmt.Errorf("read site %s: %w", siteID, err)
	}
	si.ValidFrom, si.ValidUntil = dateOf(from), dateOf(to)
	return si, nil
}

// QualifiedOn reports whether the site may accept vouchers for a service delivered on date
// (its calendar date is used): the site is qualified now and date is within its label
// period, both ends included.
func (si SiteInfo) QualifiedOn(date time.Time) bool {
	if si.Status != StatusQualified || si.ValidFrom.IsZero() || si.ValidUntil.IsZero() {
		return false
	}
	d := dateOnly(date)
	return !d.Before(si.ValidFrom) && !d.After(si.ValidUntil)
}

// Offers reports whether label is in the site's catalogue, compared like the catalogue is
// deduplicated (case, spaces and apostrophes do not matter), and returns the catalogue's
// spelling of it.
func (si SiteInfo) Offers(label string) (string, bool) {
	// Clients usually send the catalogue's own spelling; catalogue labels are unique up to
	// serviceKey (normalizeServices), so an exact match is the answer.
	if i := slices.Index(si.Services, label); i >= 0 && label != "" {
		return si.Services[i], true
	}
	k := serviceKey(label)
	i := slices.IndexFunc(si.Services, func(s string) bool { return serviceKey(s) == k })
	if i < 0 || k == "" {
		return "", false
	}
	return si.Services[i], true
}
