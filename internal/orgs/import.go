package orgs

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/passnum/passnum/internal/auth"
	"github.com/passnum/passnum/internal/fault"
	"github.com/passnum/passnum/ledger"
)

// ImportResult reports a site import: rows that created a site, rows that updated one,
// refused lines and their errors (in line order), and the ids of the sites created or
// updated, in file order.
type ImportResult struct {
	Imported int
	Updated  int
	Rejected int
	Errors   []LineError
	SiteIDs  []uuid.UUID
}

// existingSite is a site an import row may update.
type existingSite struct {
	id         uuid.UUID
	siret      string
	externalID string
}

// ImportSites imports a CSV file in the national "lieux de médiation numérique" format (see
// ParseSitesCSV). Every row is validated first; the valid ones are then applied in one
// idempotent operation, each in its own savepoint, so that a row the database refuses is
// reported on its line without losing the others. A row whose SIRET is registered updates
// that site (name, département, address, services, and its external id if it had none),
// otherwise it creates a pending site. Statuses are never changed. Re-importing a file
// therefore updates the same sites and never duplicates them.
func (s *Service) ImportSites(ctx context.Context, actor auth.Principal, key string, data []byte) (ImportResult, error) {
	parsed, err := ParseSitesCSV(data)
	if err != nil {
		return ImportResult{}, err
	}
	sum := sha256.Sum256(data)
	req := struct{ CSVSHA256 string }{hex.EncodeToString(sum[:])}
	op := ledger.Op{Name: "orgs.ImportSites", Org: actor.Org, Key: key, Request: req}
	return ledger.Do(ctx, s.ledger, op, func(ctx context.Context, tx pgx.Tx, _ []byte) (ImportResult, error) {
		res := ImportResult{Rejected: parsed.Rejected, Errors: slices.Clone(parsed.Errors)}
		bySIRET, byExternal, err := lockExisting(ctx, tx, parsed.Rows)
		if err != nil {
			return ImportResult{}, err
		}
		for _, row := range parsed.Rows {
			id, updated, lineErr, err := applyRow(ctx, tx, row, bySIRET[row.SIRET], byExternal[row.ExternalID], actor.Org)
			switch {
			case err != nil:
				return ImportResult{}, fmt.Errorf("import line %d: %w", row.Line, err)
			case lineErr != nil:
				res.Errors = append(res.Errors, *lineErr)
				res.Rejected++
				continue
			case updated:
				res.Updated++
			default:
				res.Imported++
			}
			res.SiteIDs = append(res.SiteIDs, id)
		}
		slices.SortStableFunc(res.Errors, func(a, b LineError) int { return cmp.Compare(a.Line, b.Line) })
		return res, nil
	})
}

// lockExisting finds and locks (in id order, so that concurrent imports do not deadlock) the
// registered sites that rows name by SIRET or by external id.
func lockExisting(ctx context.Context, tx pgx.Tx, rows []SiteRow) (bySIRET, byExternal map[string]*existingSite, err error) {
	sirets := make([]string, len(rows))
	externals := make([]string, len(rows))
	for i, r := range rows {
		sirets[i], externals[i] = r.SIRET, r.ExternalID
	}
	res, err := tx.Query(ctx, `
		SELECT o.id, o.siret, coalesce(s.external_id, '')
		  FROM organisations o JOIN sites s ON s.org_id = o.id
		 WHERE o.kind = 'site' AND (o.siret = ANY($1) OR s.external_id = ANY($2))
		 ORDER BY o.id
		   FOR UPDATE OF s`, sirets, externals)
	if err != nil {
		return nil, nil, fmt.Errorf("lock existing sites: %w", err)
	}
	found, err := pgx.CollectRows(res, func(row pgx.CollectableRow) (*existingSite, error) {
		var e existingSite
		return &e, row.Scan(&e.id, &e.siret, &e.externalID)
	})
	if err != nil {
		return nil, nil, fmt.Errorf("lock existing sites: %w", err)
	}
	bySIRET = make(map[string]*existingSite, len(found))
	byExternal = make(map[string]*existingSite, len(found))
	for _, e := range found {
		bySIRET[e.siret] = e
		if e.externalID != "" {
			byExternal[e.externalID] = e
		}
	}
	return bySIRET, byExternal, nil
}

// applyRow creates or updates the site of one row in a savepoint. A conflict with the
// registered sites, or a refusal by the database's constraints, rolls the savepoint back and
// is returned as the line's error; any other error aborts the import.
func applyRow(ctx context.Context, tx pgx.Tx, row SiteRow, bySIRET, byExternal *existingSite, actor uuid.UUID) (id uuid.UUID, updated bool, lineErr *LineError, err error) {
	if byExternal != nil && byExternal != bySIRET {
		return id, false, &LineError{row.Line, colID, fmt.Sprintf(
			"L'identifiant « %s » est déjà celui d'un autre lieu, de SIRET %s : un lieu garde son SIRET. "+
				"Vérifiez l'identifiant et le SIRET de cette ligne.", row.ExternalID, byExternal.siret)}, nil
	}
	if bySIRET != nil && bySIRET.externalID != "" && bySIRET.externalID != row.ExternalID {
		return id, false, &LineError{row.Line, colID, fmt.Sprintf(
			"Ce SIRET est déjà enregistré avec l'identifiant « %s » : gardez cet identifiant pour mettre le lieu à jour.",
			bySIRET.externalID)}, nil
	}
	b := &pgx.Batch{}
	b.Queue(`SAVEPOINT import_row`)
	if bySIRET != nil {
		id, updated = bySIRET.id, true
		b.Queue(`UPDATE organisations SET name = $2, departement = $3 WHERE id = $1`, id, row.Name, row.Departement)
		b.Queue(`
			UPDATE sites SET external_id = $2, services = $3, commune = NULLIF($4, ''), code_postal = NULLIF($5, ''),
			       code_insee = NULLIF($6, ''), adresse = NULLIF($7, ''), updated_at = now()
			 WHERE org_id = $1`,
			id, row.ExternalID, row.Services, row.Commune, row.CodePostal, row.CodeINSEE, row.Adresse)
	} else {
		id = uuid.New()
		b.Queue(`INSERT INTO organisations (id, kind, name, departement, siret) VALUES ($1, 'site', $2, $3, $4)`,
			id, row.Name, row.Departement, row.SIRET)
		b.Queue(`
			INSERT INTO sites (org_id, external_id, services, commune, code_postal, code_insee, adresse)
			VALUES ($1, $2, $3, NULLIF($4, ''), NULLIF($5, ''), NULLIF($6, ''), NULLIF($7, ''))`,
			id, row.ExternalID, row.Services, row.Commune, row.CodePostal, row.CodeINSEE, row.Adresse)
		b.Queue(`INSERT INTO site_status_history (site_id, status, changed_by) VALUES ($1, 'pending', $2)`, id, actor)
	}
	b.Queue(`RELEASE SAVEPOINT import_row`)
	err = tx.SendBatch(ctx, b).Close()
	if err == nil {
		return id, updated, nil, nil
	}
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || (pgErr.SQLState()[:2] != "22" && pgErr.SQLState()[:2] != "23") {
		return id, false, nil, err
	}
	if _, rbErr := tx.Exec(ctx, `ROLLBACK TO SAVEPOINT import_row; RELEASE SAVEPOINT import_row`); rbErr != nil {
		return id, false, nil, fmt.Errorf("roll back refused row: %w (after %w)", rbErr, err)
	}
	return id, false, &LineError{row.Line, columnOf(err), rowMessage(err)}, nil
}

// columnOf names the CSV column a database refusal is about, "" when it is not known.
func columnOf(err error) string {
	f, ok := fault.As(dbFault(err))
	if !ok {
		return ""
	}
	switch f.Metadata["field"] {
	case "siret":
		return colPivot
	case "external_id":
		return colID
	}
	return ""
}

func rowMessage(err error) string {
	if f, ok := fault.As(dbFault(err)); ok {
		return f.Message
	}
	var pgErr *pgconn.PgError
	errors.As(err, &pgErr)
	return fmt.Sprintf("Cette ligne n'a pas pu être enregistrée : une valeur est refusée par la base (règle « %s »). "+
		"Vérifiez ses valeurs.", cmp.Or(pgErr.ConstraintName, pgErr.Code))
}
