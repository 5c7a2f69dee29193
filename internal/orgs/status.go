package orgs

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/passnum/passnum/internal/auth"
	"github.com/passnum/passnum/internal/fault"
	"github.com/passnum/passnum/internal/ident"
	"github.com/passnum/passnum/ledger"
)

// Qualification is a site's label period (civil dates; their calendar dates are used) and,
// optionally, new payment and legal details, checked like at registration. Empty details
// keep the site's current ones.
type Qualification struct {
	ValidFrom           time.Time
	ValidUntil          time.Time
	LegalRepresentative string
	IBAN                string
	BIC                 string
}

// labelStatus is the part of a site that status changes read and lock.
type labelStatus struct {
	status   Status
	legalRep string
	iban     string
	bic      string
}

// lockSite reads a site's status for update. An unknown id, or an organisation that is not a
// site, is SITE_NOT_FOUND.
func lockSite(ctx context.Context, tx pgx.Tx, id uuid.UUID) (labelStatus, error) {
	var ls labelStatus
	err := tx.QueryRow(ctx, `
		SELECT status, coalesce(legal_representative, ''), coalesce(iban, ''), coalesce(bic, '')
		  FROM sites WHERE org_id = $1 FOR UPDATE`, id).Scan(&ls.status, &ls.legalRep, &ls.iban, &ls.bic)
	if errors.Is(err, pgx.ErrNoRows) {
		return ls, fault.New(fault.NotFound, "SITE_NOT_FOUND",
			"Ce lieu de médiation n'est pas enregistré dans passnum.", "site_id", id.String())
	}
	if err != nil {
		return ls, fmt.Errorf("lock site %s: %w", id, err)
	}
	return ls, nil
}

// statusLabels names statuses in French messages.
var statusLabels = map[Status]string{
	StatusPending:   "en attente de qualification",
	StatusQualified: "qualifié",
	StatusSuspended: "suspendu",
	StatusWithdrawn: "retiré définitivement",
}

// transitionRefused is the fault for a status change the site's current status forbids.
func transitionRefused(id uuid.UUID, from, to Status, message string) error {
	return fault.New(fault.FailedPrecondition, "SITE_TRANSITION_NOT_ALLOWED",
		fmt.Sprintf("Ce lieu est %s : %s", statusLabels[from], message),
		"site_id", id.String(), "status", string(from), "target", string(to))
}

// QualifySite qualifies a pending or suspended site, or renews the label of a qualified
// one, for the period q gives. The site must end up with a legal representative, an IBAN and
// a BIC. A withdrawn site cannot be qualified again.
func (s *Service) QualifySite(ctx context.Context, actor auth.Principal, key string, siteID uuid.UUID, q Qualification) (Organization, error) {
	if q.ValidFrom.IsZero() || q.ValidUntil.IsZero() {
		return Organization{}, fault.New(fault.Invalid, "LABEL_PERIOD_REQUIRED",
			"Indiquez les dates de début et de fin de validité du label du lieu.", "field", "valid_from")
	}
	q.ValidFrom, q.ValidUntil = dateOnly(q.ValidFrom), dateOnly(q.ValidUntil)
	if q.ValidUntil.Before(q.ValidFrom) {
		return Organization{}, fault.New(fault.Invalid, "LABEL_PERIOD_INVALID",
			"La fin de validité du label doit être le même jour que son début ou après.", "field", "valid_until")
	}
	if today := s.today(); q.ValidUntil.Before(today) {
		return Organization{}, fault.New(fault.Invalid, "LABEL_PERIOD_ENDED",
			fmt.Sprintf("La période de validité se termine le %s, avant aujourd'hui : le lieu ne pourrait accepter aucun chèque.",
				q.ValidUntil.Format("02/01/2006")),
			"field", "valid_until")
	}
	var err error
	if q.LegalRepresentative, err = fieldLegalRep.clean(q.LegalRepresentative, false); err != nil {
		return Organization{}, err
	}
	if q.IBAN != "" {
		if q.IBAN, err = ident.NormalizeIBAN(q.IBAN); err != nil {
			return Organization{}, err
		}
	}
	if q.BIC != "" {
		if q.BIC, err = ident.NormalizeBIC(q.BIC); err != nil {
			return Organization{}, err
		}
	}
	req := struct {
		Site uuid.UUID
		Qualification
	}{siteID, q}
	op := ledger.Op{Name: "orgs.QualifySite", Org: actor.Org, Key: key, Request: req}
	return ledger.Do(ctx, s.ledger, op, func(ctx context.Context, tx pgx.Tx, _ []byte) (Organization, error) {
		ls, err := lockSite(ctx, tx, siteID)
		if err != nil {
			return Organization{}, err
		}
		if ls.status == StatusWithdrawn {
			return Organization{}, transitionRefused(siteID, ls.status, StatusQualified,
				"il ne peut plus être qualifié. Pour accueillir à nouveau des bénéficiaires, la structure doit être "+
					"enregistrée sous un autre SIRET.")
		}
		legalRep, iban, bic := or(q.LegalRepresentative, ls.legalRep), or(q.IBAN, ls.iban), or(q.BIC, ls.bic)
		var missing, labels []string
		for _, m := range []struct{ field, value, label string }{
			{"legal_representative", legalRep, "le nom du représentant légal"},
			{"iban", iban, "l'IBAN"},
			{"bic", bic, "le BIC"},
		} {
			if m.value == "" {
				missing, labels = append(missing, m.field), append(labels, m.label)
			}
		}
		if len(missing) > 0 {
			return Organization{}, fault.New(fault.FailedPrecondition, "QUALIFICATION_INCOMPLETE",
				"Pour qualifier ce lieu, il manque "+strings.Join(labels, ", ")+" : indiquez-les avec la qualification.",
				"site_id", siteID.String(), "missing", strings.Join(missing, ","))
		}
		if _, err := tx.Exec(ctx, `
			UPDATE sites SET status = 'qualified', valid_from = $2, valid_until = $3,
			       legal_representative = $4, iban = $5, bic = $6, updated_at = now()
			 WHERE org_id = $1`, siteID, q.ValidFrom, q.ValidUntil, legalRep, iban, bic); err != nil {
			return Organization{}, fmt.Errorf("qualify site %s: %w", siteID, err)
		}
		return recordStatus(ctx, tx, siteID, StatusQualified, "", actor.Org)
	})
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// SuspendSite stops a qualified site from accepting vouchers until it is qualified again.
func (s *Service) SuspendSite(ctx context.Context, actor auth.Principal, key string, siteID uuid.UUID, reason string) (Organization, error) {
	return s.changeStatus(ctx, actor, key, siteID, reason, StatusSuspended, func(from Status) string {
		switch from {
		case StatusPending:
			return "il n'accepte pas encore de chèques, il n'y a rien à suspendre."
		case StatusSuspended:
			return "il est déjà suspendu."
		case StatusWithdrawn:
			return "il ne peut plus changer de statut."
		}
		return ""
	})
}

// WithdrawSite withdraws a site for good: it never accepts vouchers again and cannot be
// qualified again.
func (s *Service) WithdrawSite(ctx context.Context, actor auth.Principal, key string, siteID uuid.UUID, reason string) (Organization, error) {
	return s.changeStatus(ctx, actor, key, siteID, reason, StatusWithdrawn, func(from Status) string {
		if from == StatusWithdrawn {
			return "il a déjà été retiré."
		}
		return ""
	})
}

// changeStatus moves a site to status to, with a reason. refusal returns the end of the
// French message refusing the move from a status, or "" when the move is allowed.
func (s *Service) changeStatus(ctx context.Context, actor auth.Principal, key string, siteID uuid.UUID, reason string,
	to Status, refusal func(from Status) string) (Organization, error) {
	reason, err := fieldReason.clean(reason, true)
	if err != nil {
		return Organization{}, err
	}
	req := struct {
		Site   uuid.UUID
		Reason string
	}{siteID, reason}
	op := ledger.Op{Name: "orgs.ChangeSiteStatus." + string(to), Org: actor.Org, Key: key, Request: req}
	return ledger.Do(ctx, s.ledger, op, func(ctx context.Context, tx pgx.Tx, _ []byte) (Organization, error) {
		ls, err := lockSite(ctx, tx, siteID)
		if err != nil {
			return Organization{}, err
		}
		if msg := refusal(ls.status); msg != "" {
			return Organization{}, transitionRefused(siteID, ls.status, to, msg)
		}
		if _, err := tx.Exec(ctx, `UPDATE sites SET status = $2, updated_at = now() WHERE org_id = $1`,
			siteID, to); err != nil {
			return Organization{}, fmt.Errorf("set site %s %s: %w", siteID, to, err)
		}
		return recordStatus(ctx, tx, siteID, to, reason, actor.Org)
	})
}

// recordStatus writes the site's new status, with its current label period, to the history
// and returns the site.
func recordStatus(ctx context.Context, tx pgx.Tx, siteID uuid.UUID, status Status, reason string, actor uuid.UUID) (Organization, error) {
	if _, err := tx.Exec(ctx, `
		INSERT INTO site_status_history (site_id, status, valid_from, valid_until, reason, changed_by)
		SELECT org_id, $2, valid_from, valid_until, NULLIF($3, ''), $4 FROM sites WHERE org_id = $1`,
		siteID, status, reason, actor); err != nil {
		return Organization{}, fmt.Errorf("record status of site %s: %w", siteID, err)
	}
	return load(ctx, tx, siteID)
}
