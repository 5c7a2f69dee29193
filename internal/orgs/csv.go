package orgs

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/passnum/passnum/internal/fault"
	"github.com/passnum/passnum/internal/ident"
)

// Bounds of a site import. A file travels in one API message, which the server caps at
// 4 MiB (server.DefaultMaxRecvMsgBytes) because gRPC reads a whole message before any
// authentication; the import stays under that, with room for the envelope. A département's
// sites fit many times over; the national file is imported département by département.
const (
	MaxImportBytes = 4<<20 - 64<<10
	MaxImportRows  = 100_000
)

// Columns of the national format that passnum reads. The other columns of the standard
// (latitude, longitude, typologie, telephone, courriels, site_web, horaires,
// dispositif_programmes_nationaux, ...) are accepted and ignored.
const (
	colID         = "id"
	colPivot      = "pivot"
	colNom        = "nom"
	colCommune    = "commune"
	colCodePostal = "code_postal"
	colCodeINSEE  = "code_insee"
	colAdresse    = "adresse"
	colServices   = "services"
)

// SiteRow is one valid site of an import file, normalised.
type SiteRow struct {
	Line        int // 1-based line of the file where the row starts (the header is line 1)
	ExternalID  string
	SIRET       string
	Name        string
	Departement string // from CodeINSEE, or else CodePostal
	Commune     string
	CodePostal  string
	CodeINSEE   string
	Adresse     string
	Services    []string
}

// LineError is a refused line of an import file: the column at fault ("" for the whole
// line) and a French message for the person who prepared the file.
type LineError struct {
	Line    int
	Column  string
	Message string
}

// ParsedSites is an import file checked line by line: its valid rows, and the errors of the
// other lines (one line may have several), in line order.
type ParsedSites struct {
	Rows     []SiteRow
	Errors   []LineError
	Rejected int // lines with at least one error
}

var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// ParseSitesCSV reads a file in the national "lieux de médiation numérique" CSV format:
// UTF-8 with or without a byte order mark, separated by "," or ";" (whichever the header
// line uses most), header names in any case and any order, services separated by "|".
// Columns id, pivot (the SIRET), nom, services, and code_postal or code_insee are required;
// unknown columns are ignored. Every row is checked in full; a SIRET or an id that appears
// on two lines is refused on the second.
//
// Quotes are read leniently: a quote inside an unquoted field is kept as a character, and a
// quoted field that is never closed runs to the end of the file (its line then has too few
// columns). A fault is returned only for problems with the whole file: larger than
// MaxImportBytes or with more than MaxImportRows rows (ResourceExhausted), not UTF-8,
// unreadable as CSV, a header missing a required column or naming one twice, or no rows.
func ParseSitesCSV(data []byte) (ParsedSites, error) {
	var p ParsedSites
	if len(data) > MaxImportBytes {
		return p, fault.New(fault.ResourceExhausted, "IMPORT_TOO_LARGE",
			fmt.Sprintf("Le fichier pèse %d Ko ; la limite est de %d Ko. Découpez-le en plusieurs fichiers, "+
				"par exemple un par département.", (len(data)+1023)/1024, MaxImportBytes/1024),
			"max_bytes", fmt.Sprint(MaxImportBytes))
	}
	data = bytes.TrimPrefix(data, utf8BOM)
	if !utf8.Valid(data) {
		line := 1 + bytes.Count(data[:invalidUTF8At(data)], []byte{'\n'})
		return p, fault.New(fault.Invalid, "IMPORT_NOT_UTF8",
			fmt.Sprintf("Le fichier n'est pas encodé en UTF-8 (premier caractère illisible ligne %d). "+
				"Dans le tableur, enregistrez-le au format « CSV UTF-8 ».", line),
			"line", fmt.Sprint(line))
	}
	r := csv.NewReader(bytes.NewReader(data))
	r.Comma = sniffSeparator(data)
	r.FieldsPerRecord = -1
	r.LazyQuotes = true
	header, err := r.Read()
	if errors.Is(err, io.EOF) {
		return p, fault.New(fault.Invalid, "IMPORT_EMPTY",
			"Le fichier est vide : il doit commencer par la ligne d'en-tête (id, pivot, nom, …) puis une ligne par lieu.")
	}
	if err != nil {
		return p, malformed(err)
	}
	cols, err := columnIndex(header)
	if err != nil {
		return p, err
	}
	seenSIRET := map[string]int{}
	seenID := map[string]int{}
	rows := 0
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return p, malformed(err)
		}
		if rows++; rows > MaxImportRows {
			return p, fault.New(fault.ResourceExhausted, "IMPORT_TOO_MANY_ROWS",
				fmt.Sprintf("Le fichier compte plus de %d lieux : découpez-le en plusieurs fichiers.", MaxImportRows),
				"max_rows", fmt.Sprint(MaxImportRows))
		}
		line, _ := r.FieldPos(0)
		row, errs := parseRow(line, rec, len(header), cols)
		if len(errs) == 0 {
			if first, dup := seenSIRET[row.SIRET]; dup {
				errs = append(errs, LineError{line, colPivot,
					fmt.Sprintf("Ce SIRET figure déjà ligne %d du fichier : chaque lieu ne doit apparaître qu'une fois.", first)})
			}
			if first, dup := seenID[row.ExternalID]; dup {
				errs = append(errs, LineError{line, colID,
					fmt.Sprintf("Cet identifiant figure déjà ligne %d du fichier : chaque lieu ne doit apparaître qu'une fois.", first)})
			}
		}
		if len(errs) > 0 {
			p.Errors = append(p.Errors, errs...)
			p.Rejected++
			continue
		}
		seenSIRET[row.SIRET], seenID[row.ExternalID] = line, line
		p.Rows = append(p.Rows, row)
	}
	if rows == 0 {
		return p, fault.New(fault.Invalid, "IMPORT_NO_ROWS",
			"Le fichier ne contient que la ligne d'en-tête : ajoutez une ligne par lieu de médiation.")
	}
	return p, nil
}

// invalidUTF8At is the offset of the first byte of data that is not valid UTF-8.
func invalidUTF8At(data []byte) int {
	for i := 0; i < len(data); {
		r, n := utf8.DecodeRune(data[i:])
		if r == utf8.RuneError && n <= 1 {
			return i
		}
		i += n
	}
	return len(data)
}

// sniffSeparator returns ';' when the header line holds more semicolons than commas outside
// quotes, and ',' otherwise.
func sniffSeparator(data []byte) rune {
	commas, semicolons, quoted := 0, 0, false
	for _, c := range data {
		switch {
		case c == '"':
			quoted = !quoted
		case quoted:
		case c == '\n':
			if semicolons > commas {
				return ';'
			}
			return ','
		case c == ',':
			commas++
		case c == ';':
			semicolons++
		}
	}
	if semicolons > commas {
		return ';'
	}
	return ','
}

func malformed(err error) error {
	line := 0
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		line = pe.StartLine
	}
	return fault.New(fault.Invalid, "IMPORT_MALFORMED_CSV",
		fmt.Sprintf("Le fichier n'est pas un CSV lisible à partir de la ligne %d : enregistrez-le à nouveau "+
			"depuis le tableur, au format « CSV UTF-8 ».", line),
		"line", fmt.Sprint(line))
}

// columnIndex maps the columns passnum reads to their positions in the header.
func columnIndex(header []string) (map[string]int, error) {
	cols := make(map[string]int, len(header))
	for i, h := range header {
		h = strings.ToLower(strings.TrimSpace(h))
		if h == "" {
			continue
		}
		if _, dup := cols[h]; dup {
			return nil, fault.New(fault.Invalid, "IMPORT_COLUMN_DUPLICATED",
				fmt.Sprintf("La colonne « %s » apparaît deux fois dans l'en-tête : gardez-en une seule.", h), "column", h)
		}
		cols[h] = i
	}
	var missing []string
	for _, c := range []string{colID, colPivot, colNom, colServices} {
		if _, ok := cols[c]; !ok {
			missing = append(missing, c)
		}
	}
	_, hasPostal := cols[colCodePostal]
	_, hasINSEE := cols[colCodeINSEE]
	if !hasPostal && !hasINSEE {
		missing = append(missing, colCodePostal)
	}
	if len(missing) > 0 {
		return nil, fault.New(fault.Invalid, "IMPORT_COLUMNS_MISSING",
			fmt.Sprintf("Il manque dans l'en-tête du fichier la ou les colonnes : %s. Le fichier doit suivre le format "+
				"national des lieux de médiation numérique (colonnes id, pivot, nom, code_postal ou code_insee, services).",
				strings.Join(missing, ", ")),
			"columns", strings.Join(missing, ","))
	}
	return cols, nil
}

// parseRow checks one record; it returns every error of the line.
func parseRow(line int, rec []string, width int, cols map[string]int) (SiteRow, []LineError) {
	row := SiteRow{Line: line}
	if len(rec) < width || slices.ContainsFunc(rec[width:], func(s string) bool { return strings.TrimSpace(s) != "" }) {
		return row, []LineError{{line, "", fmt.Sprintf(
			"La ligne compte %d colonnes alors que l'en-tête en compte %d : vérifiez les séparateurs et les guillemets.",
			len(rec), width)}}
	}
	get := func(c string) string {
		if i, ok := cols[c]; ok {
			return rec[i]
		}
		return ""
	}
	var errs []LineError
	check := func(col string, err error) {
		if err != nil {
			errs = append(errs, LineError{line, col, messageOf(err)})
		}
	}
	var err error
	row.ExternalID, err = fieldExternal.clean(get(colID), true)
	check(colID, err)
	if pivot := get(colPivot); strings.TrimSpace(pivot) == "" {
		errs = append(errs, LineError{line, colPivot,
			"Le SIRET (colonne pivot) est obligatoire : il identifie la qualification du lieu."})
	} else {
		row.SIRET, err = normalizeSIRET(pivot)
		check(colPivot, err)
	}
	row.Name, err = fieldName.clean(get(colNom), true)
	check(colNom, err)
	row.Commune, err = fieldCommune.clean(get(colCommune), false)
	check(colCommune, err)
	row.Adresse, err = fieldAdresse.clean(get(colAdresse), false)
	check(colAdresse, err)
	postal, insee := strings.TrimSpace(get(colCodePostal)), strings.TrimSpace(get(colCodeINSEE))
	if postal != "" {
		row.CodePostal, err = ident.NormalizePostalCode(postal)
		check(colCodePostal, err)
	}
	if insee != "" {
		row.CodeINSEE, err = ident.NormalizeINSEE(insee)
		check(colCodeINSEE, err)
	}
	switch {
	case postal == "" && insee == "":
		errs = append(errs, LineError{line, colCodePostal,
			"Indiquez le code postal ou le code commune Insee du lieu : il donne son département."})
	case row.CodeINSEE != "":
		row.Departement = departementOfINSEE(row.CodeINSEE)
	case row.CodePostal != "" && insee == "":
		row.Departement = departementOfPostalCode(row.CodePostal)
	}
	row.Services, err = normalizeServices(strings.Split(get(colServices), "|"))
	check(colServices, err)
	return row, errs
}

// messageOf is the French message of a fault, for a line error; the validators used here
// return faults only, anything else is reported by its text.
func messageOf(err error) string {
	if f, ok := fault.As(err); ok {
		return f.Message
	}
	return err.Error()
}
