package orgs

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/passnum/passnum/internal/auth"
	"github.com/passnum/passnum/internal/fault"
	"github.com/passnum/passnum/internal/ident"
	"github.com/passnum/passnum/ledger"
)

// NewOrganization is a registration request. Site is required for sites and refused for
// the other kinds.
type NewOrganization struct {
	Kind        Kind
	Name        string
	Departement string
	SIRET       string
	Site        *SiteDetails
}

// SiteDetails are what a site is registered with. IBAN, BIC and at least one service are
// required; the legal representative may come later, at qualification. Departement may be
// left empty on the organisation when CodeINSEE or CodePostal tells it.
type SiteDetails struct {
	ExternalID          string
	LegalRepresentative string
	IBAN                string
	BIC                 string
	Services            []string
	Commune             string
	CodePostal          string
	CodeINSEE           string
	Adresse             string
}

// CreateOrganization registers a funder, distributor or site (operator organisations come
// from EnsureOperator only). Sites start pending. The SIRET of a site must not be registered
// already (fault AlreadyExists SIRET_ALREADY_REGISTERED).
func (s *Service) CreateOrganization(ctx context.Context, actor auth.Principal, key string, in NewOrganization) (Organization, error) {
	org, err := validateNew(in)
	if err != nil {
		return Organization{}, err
	}
	op := ledger.Op{Name: "orgs.CreateOrganization", Org: actor.Org, Key: key, Request: in}
	return ledger.Do(ctx, s.ledger, op, func(ctx context.Context, tx pgx.Tx, _ []byte) (Organization, error) {
		o := org
		o.ID = uuid.New()
		if err := insertOrganization(ctx, tx, &o, actor.Org); err != nil {
			return Organization{}, fmt.Errorf("create %s %q: %w", o.Kind, o.Name, err)
		}
		return o, nil
	})
}

// validateNew checks a registration and returns the organisation to store, normalised.
func validateNew(in NewOrganization) (Organization, error) {
	var o Organization
	switch in.Kind {
	case KindFunder, KindDistributor, KindSite:
		o.Kind = in.Kind
	case KindOperator:
		return o, fault.New(fault.Invalid, "OPERATOR_NOT_CREATABLE",
			"L'organisation de l'opérateur est créée à l'installation de passnum ; on ne peut enregistrer "+
				"que des financeurs, des prescripteurs et des lieux de médiation.", "field", "kind")
	default:
		return o, fault.New(fault.Invalid, "KIND_REQUIRED",
			"Précisez le type d'organisation : financeur, prescripteur ou lieu de médiation.", "field", "kind")
	}
	var err error
	if o.Name, err = fieldName.clean(in.Name, true); err != nil {
		return o, err
	}
	if in.Departement != "" {
		if o.Departement, err = ident.NormalizeDepartement(in.Departement); err != nil {
			return o, err
		}
	}
	if in.SIRET != "" {
		if o.SIRET, err = normalizeSIRET(in.SIRET); err != nil {
			return o, err
		}
	}
	if o.Kind != KindSite {
		if in.Site != nil {
			return o, fault.New(fault.Invalid, "SITE_DETAILS_NOT_ALLOWED",
				"Les informations de lieu (services, IBAN, adresse…) ne concernent que les lieux de médiation.",
				"field", "site")
		}
		if o.Kind == KindDistributor && o.Departement == "" {
			return o, departementRequired()
		}
		return o, nil
	}
	if in.Site == nil {
		return o, fault.New(fault.Invalid, "SITE_DETAILS_REQUIRED",
			"Pour un lieu de médiation, indiquez au moins ses services, son IBAN et son BIC.", "field", "site")
	}
	if o.SIRET == "" {
		return o, fault.New(fault.Invalid, "SIRET_REQUIRED",
			"Le numéro SIRET du lieu est obligatoire : il identifie sa qualification.", "field", "siret")
	}
	site, err := validateSiteDetails(*in.Site)
	if err != nil {
		return o, err
	}
	if site.CodeINSEE != "" {
		d := departementOfINSEE(site.CodeINSEE)
		if o.Departement == "" {
			o.Departement = d
		} else if o.Departement != d {
			return o, fault.New(fault.Invalid, "DEPARTEMENT_MISMATCH",
				fmt.Sprintf("Le code commune Insee %s est dans le département %s, pas dans le %s : corrigez l'un des deux.",
					site.CodeINSEE, d, o.Departement),
				"field", "departement", "code_insee", site.CodeINSEE)
		}
	}
	if o.Departement == "" && site.CodePostal != "" {
		o.Departement = departementOfPostalCode(site.CodePostal)
	}
	if o.Departement == "" {
		return o, departementRequired()
	}
	site.Status = StatusPending
	o.Site = &site
	return o, nil
}

func departementRequired() error {
	return fault.New(fault.Invalid, "DEPARTEMENT_REQUIRED",
		"Indiquez le département de l'organisation (par exemple 26, 2A ou 974). "+
			"Seuls les financeurs nationaux, comme l'État, n'en ont pas.", "field", "departement")
}

func validateSiteDetails(in SiteDetails) (Site, error) {
	var (
		s   Site
		err error
	)
	if s.ExternalID, err = fieldExternal.clean(in.ExternalID, false); err != nil {
		return s, err
	}
	if s.LegalRepresentative, err = fieldLegalRep.clean(in.LegalRepresentative, false); err != nil {
		return s, err
	}
	if in.IBAN == "" {
		return s, fault.New(fault.Invalid, "IBAN_REQUIRED",
			"L'IBAN du lieu est obligatoire : c'est le compte sur lequel passnum lui rembourse les chèques.",
			"field", "iban")
	}
	if s.IBAN, err = ident.NormalizeIBAN(in.IBAN); err != nil {
		return s, err
	}
	if in.BIC == "" {
		return s, fault.New(fault.Invalid, "BIC_REQUIRED",
			"Le BIC de la banque du lieu est obligatoire ; il figure sur le RIB, à côté de l'IBAN.", "field", "bic")
	}
	if s.BIC, err = ident.NormalizeBIC(in.BIC); err != nil {
		return s, err
	}
	if s.Services, err = normalizeServices(in.Services); err != nil {
		return s, err
	}
	if s.Commune, err = fieldCommune.clean(in.Commune, false); err != nil {
		return s, err
	}
	if s.Adresse, err = fieldAdresse.clean(in.Adresse, false); err != nil {
		return s, err
	}
	if in.CodePostal != "" {
		if s.CodePostal, err = ident.NormalizePostalCode(in.CodePostal); err != nil {
			return s, err
		}
	}
	if in.CodeINSEE != "" {
		if s.CodeINSEE, err = ident.NormalizeINSEE(in.CodeINSEE); err != nil {
			return s, err
		}
	}
	return s, nil
}

// insertOrganization writes o (and its site row and first history row, for a site) and sets
// o.CreatedAt. actor is recorded as the author of the site's first status.
func insertOrganization(ctx context.Context, tx pgx.Tx, o *Organization, actor uuid.UUID) error {
	b := &pgx.Batch{}
	b.Queue(`
		INSERT INTO organisations (id, kind, name, departement, siret)
		VALUES ($1, $2, $3, NULLIF($4, ''), NULLIF($5, ''))
		RETURNING created_at`, o.ID, o.Kind, o.Name, o.Departement, o.SIRET).QueryRow(func(row pgx.Row) error {
		return row.Scan(&o.CreatedAt)
	})
	if st := o.Site; st != nil {
		b.Queue(`
			INSERT INTO sites (org_id, external_id, legal_representative, iban, bic, services,
			                   commune, code_postal, code_insee, adresse, status)
			VALUES ($1, NULLIF($2, ''), NULLIF($3, ''), NULLIF($4, ''), NULLIF($5, ''), $6,
			        NULLIF($7, ''), NULLIF($8, ''), NULLIF($9, ''), NULLIF($10, ''), $11)`,
			o.ID, st.ExternalID, st.LegalRepresentative, st.IBAN, st.BIC, st.Services,
			st.Commune, st.CodePostal, st.CodeINSEE, st.Adresse, st.Status)
		b.Queue(`INSERT INTO site_status_history (site_id, status, changed_by) VALUES ($1, $2, $3)`,
			o.ID, st.Status, actor)
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return dbFault(err)
	}
	return nil
}

// EnsureOperator creates the operator's organisation with the given id and name if it does
// not exist yet; the deployment's bootstrap calls it with the organisation id of the
// operator's tokens. Calling it again returns the existing organisation (its name is not
// changed). An id already used by another kind of organisation is refused.
func (s *Service) EnsureOperator(ctx context.Context, id uuid.UUID, name string) (Organization, error) {
	name, err := fieldName.clean(name, true)
	if err != nil {
		return Organization{}, err
	}
	var o Organization
	err = s.ledger.RunInTx(ctx, "orgs.EnsureOperator", func(ctx context.Context, tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `
			INSERT INTO organisations (id, kind, name) VALUES ($1, 'operator', $2)
			ON CONFLICT (id) DO NOTHING`, id, name); err != nil {
			return fmt.Errorf("insert operator %s: %w", id, err)
		}
		var err error
		o, err = load(ctx, tx, id)
		return err
	})
	if err != nil {
		return Organization{}, err
	}
	if o.Kind != KindOperator {
		return Organization{}, fault.New(fault.AlreadyExists, "ORGANIZATION_ID_TAKEN",
			fmt.Sprintf("L'identifiant %s est déjà celui d'une organisation qui n'est pas l'opérateur.", id),
			"id", id.String(), "kind", string(o.Kind))
	}
	return o, nil
}

// dbFault turns the violations of the uniqueness constraints, which Go cannot check alone,
// into faults; other errors are returned unchanged.
func dbFault(err error) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return err
	}
	switch pgErr.ConstraintName {
	case "organisations_site_siret":
		return fault.New(fault.AlreadyExists, "SIRET_ALREADY_REGISTERED",
			"Ce numéro SIRET est déjà enregistré pour un autre lieu de médiation : un SIRET ne peut être qualifié "+
				"qu'une fois. Cherchez ce lieu dans la liste plutôt que de le créer à nouveau.",
			"field", "siret")
	case "sites_external_id_key":
		return fault.New(fault.AlreadyExists, "EXTERNAL_ID_ALREADY_REGISTERED",
			"Cet identifiant de lieu (données nationales des lieux de médiation numérique) est déjà celui d'un autre lieu.",
			"field", "external_id")
	}
	return err
}
