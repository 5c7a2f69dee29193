package reports

import (
	"bufio"
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"strconv"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// The CSV is made for French spreadsheets (LibreOffice, Excel): UTF-8 with a byte order mark,
// ";" between fields, CRLF line ends, fields quoted when they hold ";", '"' or a line break,
// amounts in euros and hours with a decimal comma and no thousands separator, so that they
// are read as numbers.

// bom makes Excel read the file as UTF-8.
const bom = "\ufeff"

// notApplicable stands for a dimension that does not apply to a row: the site of book events,
// the territory of books not yet handed out, the distributor of returned value.
const notApplicable = "Sans objet"

// dimensionHeaders are the columns of a grouped dimension: its name, then its identifier.
var dimensionHeaders = map[Dimension][]string{
	Programme:   {"Programme", "Identifiant du programme"},
	Funder:      {"Financeur", "Identifiant du financeur"},
	Territory:   {"Département"},
	Distributor: {"Aiguilleur", "Identifiant de l'aiguilleur"},
	Site:        {"Lieu de médiation", "Identifiant du lieu"},
	Month:       {"Mois"},
}

// frDimension names a dimension in French messages.
var frDimension = map[Dimension]string{
	Programme:   "par programme",
	Funder:      "par financeur",
	Territory:   "par département",
	Distributor: "par aiguilleur",
	Site:        "par lieu",
	Month:       "par mois",
}

var measureHeaders = []string{
	"Chéquiers émis",
	"Chéquiers distribués",
	"Chéquiers entamés",
	"Chéquiers distribués au public cible",
	"Part du public cible (%)",
	"Chèques utilisés",
	"Heures d'accompagnement",
	"Montant dû aux lieux (€)",
	"Montant payé aux lieux (€)",
	"Montant expiré (€)",
	"Montant restitué (€)",
}

const funderShareHeader = "Part du financeur (€)"

// Names maps programme and organisation ids to their names, for people.
type Names map[uuid.UUID]string

// SpendNamed computes a report for a caller, without a bound on its rows, with the names of
// the programmes and organisations it shows, read in the same snapshot.
func (s *Service) SpendNamed(ctx context.Context, scope Scope, q Query) (*Report, Names, error) {
	var (
		rep   *Report
		names Names
	)
	err := s.l.RunInSnapshot(ctx, "report_spend_named", func(ctx context.Context, tx pgx.Tx) error {
		var err error
		if rep, err = spend(ctx, tx, scope, q); err != nil {
			return err
		}
		names, err = lookUpNames(ctx, tx, rep)
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	return rep, names, nil
}

// ExportSpend computes a report for a caller and writes it to w as CSV, without a bound on
// its rows. w is written after the snapshot ends.
func (s *Service) ExportSpend(ctx context.Context, scope Scope, q Query, w io.Writer) error {
	rep, names, err := s.SpendNamed(ctx, scope, q)
	if err != nil {
		return err
	}
	return WriteCSV(w, rep, names)
}

// lookUpNames reads the names of the programmes and organisations a report shows.
func lookUpNames(ctx context.Context, tx pgx.Tx, rep *Report) (Names, error) {
	seen := make(map[uuid.UUID]bool)
	var ids []uuid.UUID
	for _, r := range rep.Rows {
		for _, id := range []uuid.UUID{r.Programme, r.Funder, r.Distributor, r.Site} {
			if id != uuid.Nil && !seen[id] {
				seen[id] = true
				ids = append(ids, id)
			}
		}
	}
	names := make(Names, len(ids))
	if len(ids) == 0 {
		return names, nil
	}
	rows, err := tx.Query(ctx, `
		SELECT id, name FROM programmes WHERE id = ANY($1)
		UNION ALL
		SELECT id, name FROM organisations WHERE id = ANY($1)`, ids)
	if err != nil {
		return nil, fmt.Errorf("report names: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id uuid.UUID
		var name string
		if err := rows.Scan(&id, &name); err != nil {
			return nil, fmt.Errorf("report names: %w", err)
		}
		names[id] = name
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("report names: %w", err)
	}
	return names, nil
}

// Records lays a report out for people: a header, then one record per row with one column
// per grouped dimension (two for those with an identifier: name and id) and the measures
// (amounts and hours with a decimal comma), then a last "Total" record when the report is
// grouped.
func Records(rep *Report, names Names) [][]string {
	var header []string
	for _, d := range rep.Query.GroupBy {
		header = append(header, dimensionHeaders[d]...)
	}
	header = append(header, measureHeaders...)
	if rep.Funders {
		header = append(header, funderShareHeader)
	}
	out := make([][]string, 0, len(rep.Rows)+2)
	out = append(out, header)
	for _, r := range rep.Rows {
		record := make([]string, 0, len(header))
		for _, d := range rep.Query.GroupBy {
			record = append(record, dimensionCells(d, r.Key, names)...)
		}
		out = append(out, appendMeasures(record, &r.Measures, rep.Funders))
	}
	if len(rep.Query.GroupBy) > 0 {
		record := make([]string, 0, len(header))
		for _, d := range rep.Query.GroupBy {
			for range dimensionHeaders[d] {
				record = append(record, "")
			}
		}
		record[0] = "Total"
		out = append(out, appendMeasures(record, &rep.Total, rep.Funders))
	}
	return out
}

// WriteCSV writes a report's Records as CSV for a French spreadsheet.
func WriteCSV(w io.Writer, rep *Report, names Names) error {
	bw := bufio.NewWriterSize(w, 32<<10)
	if _, err := bw.WriteString(bom); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	cw := csv.NewWriter(bw)
	cw.Comma = ';'
	cw.UseCRLF = true
	for _, record := range Records(rep, names) {
		if err := cw.Write(record); err != nil {
			return fmt.Errorf("write report: %w", err)
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

func dimensionCells(d Dimension, k Key, names Names) []string {
	switch d {
	case Programme:
		return idCells(k.Programme, names)
	case Funder:
		return idCells(k.Funder, names)
	case Distributor:
		return idCells(k.Distributor, names)
	case Site:
		return idCells(k.Site, names)
	case Territory:
		if k.Territory == "" {
			return []string{notApplicable}
		}
		return []string{k.Territory}
	case Month:
		return []string{k.Month.Format("2006-01")}
	}
	return nil
}

func idCells(id uuid.UUID, names Names) []string {
	if id == uuid.Nil {
		return []string{notApplicable, ""}
	}
	return []string{names[id], id.String()}
}

func appendMeasures(record []string, m *Measures, funders bool) []string {
	record = append(record,
		strconv.FormatInt(m.BooksIssued, 10),
		strconv.FormatInt(m.BooksHandedOut, 10),
		strconv.FormatInt(m.BooksStarted, 10),
		strconv.FormatInt(m.BooksTargetPublic, 10),
		Hundredths(int64(m.TargetPublicShareBps())),
		strconv.FormatInt(m.VouchersRedeemed, 10),
		Hours(m.MinutesDelivered),
		Hundredths(m.OwedCents),
		Hundredths(m.PaidCents),
		Hundredths(m.ExpiredCents),
		Hundredths(m.ReturnedCents),
	)
	if funders {
		record = append(record, Hundredths(m.FunderShareCents))
	}
	return record
}

// Hundredths writes an integer number of hundredths with a decimal comma: cents as euros
// (123450 → "1234,50"), basis points as a percentage (5234 → "52,34").
func Hundredths(n int64) string {
	sign := ""
	u := uint64(n)
	if n < 0 {
		sign = "-"
		u = uint64(-n)
	}
	return fmt.Sprintf("%s%d,%02d", sign, u/100, u%100)
}

// Hours writes minutes as hours with two decimals and a decimal comma, rounded half away
// from zero (90 → "1,50", 20 → "0,33").
func Hours(minutes int64) string {
	neg := minutes < 0
	if neg {
		minutes = -minutes
	}
	h := (minutes*100 + 30) / 60
	if neg {
		h = -h
	}
	return Hundredths(h)
}
