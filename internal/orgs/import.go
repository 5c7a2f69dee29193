package orgs

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"

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

// importChunk is the number of rows written by one round trip of set-based statements.
const importChunk = 1000

// ImportSites imports a CSV file in the national "lieux de médiation numérique" format (see
// ParseSitesCSV) in one idempotent operation. Every row is validated first. A row whose
// SIRET is registered updates that site (name, département, address, services, and its
// external id if it had none); otherwise it creates a pending site. Statuses are never
// changed, so re-importing a file updates the same sites and never duplicates them.
//
// Each row is all or nothing, and a row the database refuses is reported on its line without
// losing the others: rows are written importChunk at a time by set-based statements under a
// savepoint; when the database refuses a chunk, the savepoint is rolled back and the chunk is
// split in halves, written the same way, down to the refused rows. Without refusals an import
// costs one round trip per chunk, and its transaction holds one subtransaction per chunk
// rather than one per row.
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
		refuse := func(e LineError) {
			res.Errors = append(res.Errors, e)
			res.Rejected++
		}
		bySIRET, byExternal, err := lockExisting(ctx, tx, parsed.Rows)
		if err != nil {
			return ImportResult{}, err
		}
		var plan []plannedRow
		for _, row := range parsed.Rows {
			p, lineErr := planRow(row, bySIRET[row.SIRET], byExternal[row.ExternalID])
			if lineErr != nil {
				refuse(*lineErr)
				continue
			}
			plan = append(plan, p)
		}
		w := chunkWriter{tx: tx, actor: actor.Org, done: make(map[int]bool, len(plan)), refuse: refuse}
		for chunk := range slices.Chunk(plan, importChunk) {
			if err := w.write(ctx, chunk); err != nil {
				return ImportResult{}, err
			}
		}
		for _, p := range plan {
			switch {
			case !w.done[p.row.Line]:
			case p.update:
				res.Updated++
				res.SiteIDs = append(res.SiteIDs, p.id)
			default:
				res.Imported++
				res.SiteIDs = append(res.SiteIDs, p.id)
			}
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

// plannedRow is a row and what it does: update site id, or create it with that id.
type plannedRow struct {
	row    SiteRow
	id     uuid.UUID
	update bool
}

// planRow decides what a row does, given the sites registered under its SIRET and its
// external id, or refuses it when they disagree: a site keeps its SIRET and its external id.
func planRow(row SiteRow, bySIRET, byExternal *existingSite) (plannedRow, *LineError) {
	if byExternal != nil && byExternal != bySIRET {
		return plannedRow{}, &LineError{row.Line, colID, fmt.Sprintf(
			"L'identifiant « %s » est déjà celui d'un autre lieu, de SIRET %s : un lieu garde son SIRET. "+
				"Vérifiez l'identifiant et le SIRET de cette ligne.", row.ExternalID, byExternal.siret)}
	}
	if bySIRET == nil {
		return plannedRow{row: row, id: uuid.New()}, nil
	}
	if bySIRET.externalID != "" && bySIRET.externalID != row.ExternalID {
		return plannedRow{}, &LineError{row.Line, colID, fmt.Sprintf(
			"Ce SIRET est déjà enregistré avec l'identifiant « %s » : gardez cet identifiant pour mettre le lieu à jour.",
			bySIRET.externalID)}
	}
	return plannedRow{row: row, id: bySIRET.id, update: true}, nil
}

// chunkWriter writes planned rows, isolating the rows the database refuses.
type chunkWriter struct {
	tx     pgx.Tx
	actor  uuid.UUID
	done   map[int]bool // lines written
	refuse func(LineError)
}

// write writes rows under a savepoint. When the database refuses them (a data or integrity
// error), it rolls the savepoint back and writes each half the same way; a single refused row
// is reported on its line. Any other error aborts the import.
func (w *chunkWriter) write(ctx context.Context, rows []plannedRow) error {
	err := writeRows(ctx, w.tx, rows, w.actor)
	var pgErr *pgconn.PgError
	switch {
	case err == nil:
		for _, p := range rows {
			w.done[p.row.Line] = true
		}
		return nil
	case !errors.As(err, &pgErr) || (pgErr.Code[:2] != "22" && pgErr.Code[:2] != "23"):
		return fmt.Errorf("write imported sites: %w", err)
	}
	if _, rbErr := w.tx.Exec(ctx, `ROLLBACK TO SAVEPOINT import_rows; RELEASE SAVEPOINT import_rows`); rbErr != nil {
		return fmt.Errorf("roll back imported sites: %w (after %w)", rbErr, err)
	}
	if len(rows) == 1 {
		w.refuse(LineError{rows[0].row.Line, columnOf(err), rowMessage(err)})
		return nil
	}
	if err := w.write(ctx, rows[:len(rows)/2]); err != nil {
		return err
	}
	return w.write(ctx, rows[len(rows)/2:])
}

// writeRows creates and updates the sites of rows with set-based statements, in one round
// trip, inside the savepoint import_rows (released on success, left for the caller to roll
// back on error). Services travel "|"-joined: labels never contain "|".
func writeRows(ctx context.Context, tx pgx.Tx, rows []plannedRow, actor uuid.UUID) error {
	var ins, upd columns
	for _, p := range rows {
		if p.update {
			upd.add(p)
		} else {
			ins.add(p)
		}
	}
	b := &pgx.Batch{}
	b.Queue(`SAVEPOINT import_rows`)
	if len(ins.ids) > 0 {
		b.Queue(`
			INSERT INTO organisations (id, kind, name, departement, siret)
			SELECT id, 'site', name, dep, siret
			  FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[]) AS u(id, name, dep, siret)`,
			ins.ids, ins.names, ins.deps, ins.sirets)
		b.Queue(`
			INSERT INTO sites (org_id, external_id, services, commune, code_postal, code_insee, adresse)
			SELECT id, ext, string_to_array(services, '|'), NULLIF(commune, ''), NULLIF(cp, ''), NULLIF(insee, ''),
			       NULLIF(adresse, '')
			  FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[])
			       AS u(id, ext, services, commune, cp, insee, adresse)`,
			ins.ids, ins.externals, ins.services, ins.communes, ins.postals, ins.insees, ins.adresses)
		b.Queue(`
			INSERT INTO site_status_history (site_id, status, changed_by)
			SELECT id, 'pending', $2 FROM unnest($1::uuid[]) AS u(id)`, ins.ids, actor)
	}
	if len(upd.ids) > 0 {
		b.Queue(`
			UPDATE organisations o SET name = u.name, departement = u.dep
			  FROM unnest($1::uuid[], $2::text[], $3::text[]) AS u(id, name, dep)
			 WHERE o.id = u.id`, upd.ids, upd.names, upd.deps)
		b.Queue(`
			UPDATE sites s SET external_id = u.ext, services = string_to_array(u.services, '|'),
			       commune = NULLIF(u.commune, ''), code_postal = NULLIF(u.cp, ''), code_insee = NULLIF(u.insee, ''),
			       adresse = NULLIF(u.adresse, ''), updated_at = now()
			  FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[])
			       AS u(id, ext, services, commune, cp, insee, adresse)
			 WHERE s.org_id = u.id`,
			upd.ids, upd.externals, upd.services, upd.communes, upd.postals, upd.insees, upd.adresses)
	}
	b.Queue(`RELEASE SAVEPOINT import_rows`)
	return tx.SendBatch(ctx, b).Close()
}

// columns are planned rows as one array per column, for unnest.
type columns struct {
	ids                                      []uuid.UUID
	names, deps, sirets, externals, services []string
	communes, postals, insees, adresses      []string
}

func (c *columns) add(p plannedRow) {
	r := p.row
	c.ids = append(c.ids, p.id)
	c.names, c.deps, c.sirets = append(c.names, r.Name), append(c.deps, r.Departement), append(c.sirets, r.SIRET)
	c.externals, c.services = append(c.externals, r.ExternalID), append(c.services, strings.Join(r.Services, "|"))
	c.communes, c.postals = append(c.communes, r.Commune), append(c.postals, r.CodePostal)
	c.insees, c.adresses = append(c.insees, r.CodeINSEE), append(c.adresses, r.Adresse)
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

// rowMessage is the French message of a database refusal of a row.
func rowMessage(err error) string {
	if f, ok := fault.As(dbFault(err)); ok {
		return f.Message
	}
	var pgErr *pgconn.PgError
	errors.As(err, &pgErr)
	return fmt.Sprintf("Cette ligne n'a pas pu être enregistrée : une valeur est refusée par la base (règle « %s »). "+
		"Vérifiez ses valeurs.", cmp.Or(pgErr.ConstraintName, pgErr.Code))
}
