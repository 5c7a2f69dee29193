package orgs

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/passnum/passnum/internal/fault"
)

// writeSitesCSV writes rows in the national format, "," separated, services "|" separated.
func writeSitesCSV(t testing.TB, rows []SiteRow) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	w.Write([]string{"id", "pivot", "nom", "commune", "code_postal", "code_insee", "adresse", "services"})
	for _, r := range rows {
		w.Write([]string{r.ExternalID, r.SIRET, r.Name, r.Commune, r.CodePostal, r.CodeINSEE, r.Adresse,
			strings.Join(r.Services, "|")})
	}
	w.Flush()
	if err := w.Error(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestParseSitesCSV(t *testing.T) {
	good := SiteRow{
		Line: 2, ExternalID: "mednum-1", SIRET: siret(1), Name: "Médiathèque « Le Cube »", Departement: "2A",
		Commune: "Ajaccio", CodePostal: "20000", CodeINSEE: "2A004", Adresse: "3 rue Fesch",
		Services: []string{"Aide aux démarches administratives", "Maîtrise des outils numériques du quotidien"},
	}
	for _, tc := range []struct {
		name string
		file string
		rows []SiteRow
		errs []LineError
	}{
		{
			name: "standard file with ignored columns",
			file: "id,pivot,nom,commune,code_postal,code_insee,adresse,latitude,longitude,typologie,services,telephone,courriels,site_web,horaires,dispositif_programmes_nationaux\n" +
				"mednum-1," + siret(1) + ",Médiathèque « Le Cube »,Ajaccio,20000,2A004,3 rue Fesch,41.92,8.73,BIB," +
				"Aide aux démarches administratives|Maîtrise des outils numériques du quotidien,+33495000000,a@b.fr,https://x.fr,Mo 09:00-12:00,Pass numérique\n",
			rows: []SiteRow{good},
		},
		{
			name: "BOM, semicolons, header in any case and order, CRLF, quoted field",
			file: "\xEF\xBB\xBFServices; NOM ;Pivot;ID;Code_INSEE;Code_Postal;Commune;Adresse\r\n" +
				"Aide aux démarches administratives|Maîtrise des outils numériques du quotidien;\"Médiathèque « Le Cube »\";" +
				spaced(siret(1)) + ";mednum-1;2A004;20000;Ajaccio;3 rue Fesch\r\n",
			rows: []SiteRow{good},
		},
		{
			name: "département from the postal code when there is no INSEE code column",
			file: "id,pivot,nom,code_postal,services\n" +
				"a," + siret(1) + ",Lieu A,97400,Loisirs et créations numériques\n" +
				"b," + siret(2) + ",Lieu B,20200,Loisirs et créations numériques\n" +
				"c," + siret(3) + ",Lieu C,01000,Loisirs et créations numériques\n",
			rows: []SiteRow{
				{Line: 2, ExternalID: "a", SIRET: siret(1), Name: "Lieu A", Departement: "974", CodePostal: "97400", Services: []string{"Loisirs et créations numériques"}},
				{Line: 3, ExternalID: "b", SIRET: siret(2), Name: "Lieu B", Departement: "2B", CodePostal: "20200", Services: []string{"Loisirs et créations numériques"}},
				{Line: 4, ExternalID: "c", SIRET: siret(3), Name: "Lieu C", Departement: "01", CodePostal: "01000", Services: []string{"Loisirs et créations numériques"}},
			},
		},
		{
			name: "every error of a line, and multi-line fields keep line numbers",
			file: "id,pivot,nom,code_postal,code_insee,services\n" +
				",11000101300018,,6000,ABCDE,\n" +
				"x,00000000000000,\"Nom sur\ndeux lignes\",,,A|B\n" +
				"y," + siret(5) + ",Lieu Y,26000,,A||a|B\n" +
				"z," + siret(6) + ",Lieu Z,26000,,A|x" + strings.Repeat("y", 200) + "\n" +
				"w," + siret(7) + "\n" +
				"v," + siret(8) + ",Lieu V,26000,,A,,\n" +
				"u," + siret(9) + ",Lieu U,26000,,A,extra\n",
			rows: []SiteRow{
				{Line: 5, ExternalID: "y", SIRET: siret(5), Name: "Lieu Y", Departement: "26", CodePostal: "26000", Services: []string{"A", "B"}},
				{Line: 8, ExternalID: "v", SIRET: siret(8), Name: "Lieu V", Departement: "26", CodePostal: "26000", Services: []string{"A"}},
			},
			errs: []LineError{
				{2, "id", "L'identifiant du lieu est obligatoire."},
				{2, "pivot", "Ce numéro SIRET n'existe pas : un chiffre est sans doute mal recopié. Vérifiez-le sur l'avis de situation Insee ou sur annuaire-entreprises.data.gouv.fr."},
				{2, "nom", "Le nom est obligatoire."},
				{2, "code_postal", "Ce code postal n'existe pas : il compte 5 chiffres, par exemple 01000 ou 97400. S'il commence par 0, vérifiez que le tableur n'a pas supprimé ce zéro."},
				{2, "code_insee", "Ce code commune Insee n'existe pas : il compte 5 caractères, le département puis le numéro de la commune (par exemple 75056 pour Paris, 2A004 pour Ajaccio, 97411 pour Saint-Denis de La Réunion). Attention, ce n'est pas le code postal."},
				{2, "services", "Indiquez au moins un service proposé par le lieu, par exemple « Aide aux démarches administratives »."},
				{3, "pivot", "Le SIRET 00000000000000 veut dire « SIRET inconnu » : indiquez le vrai numéro SIRET de la structure (il figure sur annuaire-entreprises.data.gouv.fr)."},
				{3, "nom", "Le nom contient un caractère invisible (retour à la ligne, tabulation…) : retirez-le."},
				{3, "code_postal", "Indiquez le code postal ou le code commune Insee du lieu : il donne son département."},
				{6, "services", "Le nom d'un service ne doit pas dépasser 200 caractères (« x" + strings.Repeat("y", 39) + "… » en compte 201)."},
				{7, "", "La ligne compte 2 colonnes alors que l'en-tête en compte 6 : vérifiez les séparateurs et les guillemets."},
				{9, "", "La ligne compte 7 colonnes alors que l'en-tête en compte 6 : vérifiez les séparateurs et les guillemets."},
			},
		},
		{
			name: "stray quotes are kept, an unterminated quote swallows the rest of the file",
			file: "id,pivot,nom,code_postal,services\n" +
				"a," + siret(1) + ",Salle \"Le Cube\",26000,S\n" +
				"b," + siret(2) + ",\"Lieu,26000,S\n" +
				"c," + siret(3) + ",C,26000,S\n",
			rows: []SiteRow{
				{Line: 2, ExternalID: "a", SIRET: siret(1), Name: "Salle \"Le Cube\"", Departement: "26", CodePostal: "26000", Services: []string{"S"}},
			},
			errs: []LineError{
				{3, "", "La ligne compte 3 colonnes alors que l'en-tête en compte 5 : vérifiez les séparateurs et les guillemets."},
			},
		},
		{
			name: "duplicated SIRET and id inside the file",
			file: "id,pivot,nom,code_postal,services\n" +
				"a," + siret(1) + ",A,26000,S\n" +
				"b," + siret(1) + ",B,26000,S\n" +
				"a," + siret(2) + ",C,26000,S\n" +
				"a," + siret(1) + ",D,26000,S\n" +
				"e,bad,E,26000,S\n" +
				"e," + siret(5) + ",E,26000,S\n",
			rows: []SiteRow{
				{Line: 2, ExternalID: "a", SIRET: siret(1), Name: "A", Departement: "26", CodePostal: "26000", Services: []string{"S"}},
				{Line: 7, ExternalID: "e", SIRET: siret(5), Name: "E", Departement: "26", CodePostal: "26000", Services: []string{"S"}},
			},
			errs: []LineError{
				{3, "pivot", "Ce SIRET figure déjà ligne 2 du fichier : chaque lieu ne doit apparaître qu'une fois."},
				{4, "id", "Cet identifiant figure déjà ligne 2 du fichier : chaque lieu ne doit apparaître qu'une fois."},
				{5, "pivot", "Ce SIRET figure déjà ligne 2 du fichier : chaque lieu ne doit apparaître qu'une fois."},
				{5, "id", "Cet identifiant figure déjà ligne 2 du fichier : chaque lieu ne doit apparaître qu'une fois."},
				{6, "pivot", "Un numéro SIRET compte exactement 14 chiffres (par exemple 110 001 013 00017)."},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := ParseSitesCSV([]byte(tc.file))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(p.Rows, tc.rows) {
				t.Errorf("rows:\n got %+v\nwant %+v", p.Rows, tc.rows)
			}
			if !reflect.DeepEqual(p.Errors, tc.errs) {
				t.Errorf("errors:\n got %+v\nwant %+v", p.Errors, tc.errs)
			}
			lines := map[int]bool{}
			for _, e := range tc.errs {
				lines[e.Line] = true
			}
			if p.Rejected != len(lines) {
				t.Errorf("rejected = %d, want %d", p.Rejected, len(lines))
			}
		})
	}
}

func TestParseSitesCSVRefusesFile(t *testing.T) {
	row := func(n int) string { return fmt.Sprintf("id-%d,%s,Lieu,26000,S\n", n, siret(n)) }
	header := "id,pivot,nom,code_postal,services\n"
	var many strings.Builder
	many.WriteString(header)
	for n := range MaxImportRows + 1 {
		many.WriteString(row(n + 1))
	}
	for _, tc := range []struct {
		name   string
		file   string
		kind   fault.Kind
		reason string
		meta   map[string]string
	}{
		{"empty", "", fault.Invalid, "IMPORT_EMPTY", nil},
		{"only a BOM", "\xEF\xBB\xBF", fault.Invalid, "IMPORT_EMPTY", nil},
		{"header only", header, fault.Invalid, "IMPORT_NO_ROWS", nil},
		{"missing columns", "id,nom,commune\n1,A,B\n", fault.Invalid, "IMPORT_COLUMNS_MISSING", map[string]string{"columns": "pivot,services,code_postal"}},
		{"duplicated column", "id,pivot,nom,code_postal,services,NOM\n", fault.Invalid, "IMPORT_COLUMN_DUPLICATED", map[string]string{"column": "nom"}},
		{"Windows-1252", header + row(1) + "x," + siret(2) + ",M\xe9diath\xe8que,26000,S\n", fault.Invalid, "IMPORT_NOT_UTF8", map[string]string{"line": "3"}},
		{"too large", header + strings.Repeat("#", MaxImportBytes), fault.ResourceExhausted, "IMPORT_TOO_LARGE", nil},
		{"too many rows", many.String(), fault.ResourceExhausted, "IMPORT_TOO_MANY_ROWS", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseSitesCSV([]byte(tc.file))
			f, ok := fault.As(err)
			if !ok || f.Kind != tc.kind || f.Reason != tc.reason || f.Message == "" {
				t.Fatalf("got %v, want %s", err, tc.reason)
			}
			for k, v := range tc.meta {
				if f.Metadata[k] != v {
					t.Errorf("metadata %s = %q, want %q", k, f.Metadata[k], v)
				}
			}
		})
	}
}

func FuzzParseSitesCSV(f *testing.F) {
	f.Add([]byte("id,pivot,nom,commune,code_postal,code_insee,adresse,services\n" +
		"a," + siret(1) + ",Lieu,Valence,26000,26362,1 rue,Aide aux démarches administratives|Autre\n"))
	f.Add([]byte("\xEF\xBB\xBFid;pivot;nom;code_insee;services\r\nb;" + siret(2) + ";\"Lieu ;\"\"x\"\"\";2B033;A|a|B\r\n"))
	f.Add([]byte("ID,Pivot,Nom,Code_Postal,Services,extra\nc,110 001 013 00017,L,97400,S,\"multi\nline\"\nd,bad,,,,\n"))
	f.Add([]byte("id,pivot,nom,code_postal,services\n\"unterminated,1,2,3,4\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := ParseSitesCSV(data)
		if err != nil {
			if _, ok := fault.As(err); !ok {
				t.Fatalf("error is not a fault: %v", err)
			}
			return
		}
		for _, e := range p.Errors {
			if e.Line < 2 || e.Message == "" {
				t.Fatalf("bad line error %+v", e)
			}
		}
		for _, r := range p.Rows {
			if r.Line < 2 || r.SIRET == "" || r.Name == "" || r.ExternalID == "" || len(r.Services) == 0 || r.Departement == "" {
				t.Fatalf("incomplete valid row %+v", r)
			}
		}
		if len(p.Rows) == 0 {
			return
		}
		// Valid rows, written back in the national format, read back identical (but for their lines).
		again, err := ParseSitesCSV(writeSitesCSV(t, p.Rows))
		if err != nil || len(again.Errors) != 0 || len(again.Rows) != len(p.Rows) {
			t.Fatalf("round trip: %v, %+v", err, again.Errors)
		}
		for i := range p.Rows {
			want := p.Rows[i]
			want.Line = again.Rows[i].Line
			if !reflect.DeepEqual(again.Rows[i], want) {
				t.Fatalf("round trip row %d:\n got %+v\nwant %+v", i, again.Rows[i], want)
			}
		}
	})
}
