package orgs

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/passnum/passnum/internal/fault"
)

// siteBySIRET reads a site back with every detail.
func (e *env) siteBySIRET(t *testing.T, s string) Organization {
	t.Helper()
	var id uuid.UUID
	if err := e.db.Owner.QueryRow(context.Background(),
		`SELECT id FROM organisations WHERE kind = 'site' AND siret = $1`, s).Scan(&id); err != nil {
		t.Fatalf("site %s: %v", s, err)
	}
	o, err := e.svc.GetOrganization(context.Background(), e.operator, id)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func (e *env) count(t *testing.T, query string) int {
	t.Helper()
	var n int
	if err := e.db.Owner.QueryRow(context.Background(), query).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestImportGoodFile(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	file := "\xEF\xBB\xBFid;pivot;nom;commune;code_postal;code_insee;adresse;services;latitude;longitude;typologie\r\n" +
		"mednum-1;" + siret(1) + ";Médiathèque de Valence;Valence;26000;26362;1 place de la Liberté;" +
		"Aide aux démarches administratives|maîtrise des outils numériques du quotidien;44.93;4.89;BIB\r\n" +
		"mednum-2;" + siret(2) + ";France Services Ajaccio;Ajaccio;20000;2A004;;Accompagnement aux démarches en ligne;;;RFS\r\n"
	res, err := e.svc.ImportSites(ctx, e.operator, key(), []byte(file))
	if err != nil {
		t.Fatal(err)
	}
	if res.Imported != 2 || res.Updated != 0 || res.Rejected != 0 || len(res.Errors) != 0 || len(res.SiteIDs) != 2 {
		t.Fatalf("result = %+v", res)
	}
	one := e.siteBySIRET(t, siret(1))
	want := Site{
		ExternalID: "mednum-1", Commune: "Valence", CodePostal: "26000", CodeINSEE: "26362",
		Adresse: "1 place de la Liberté", Status: StatusPending,
		Services: []string{"Aide aux démarches administratives", "Maîtrise des outils numériques du quotidien"},
	}
	if one.ID != res.SiteIDs[0] || one.Name != "Médiathèque de Valence" || one.Departement != "26" || !sameSite(*one.Site, want) {
		t.Fatalf("site 1 = %+v %+v", one, one.Site)
	}
	two := e.siteBySIRET(t, siret(2))
	if two.ID != res.SiteIDs[1] || two.Departement != "2A" || two.Site.Adresse != "" {
		t.Fatalf("site 2 = %+v %+v", two, two.Site)
	}
	if n := e.count(t, `SELECT count(*) FROM site_status_history WHERE status = 'pending'`); n != 2 {
		t.Fatalf("history rows = %d", n)
	}
}

func TestImportMixedFile(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	registered := e.createSite(t, 50) // SIRET taken, no external id
	other := e.createSite(t, 51)
	if _, err := e.db.Owner.Exec(ctx, `UPDATE sites SET external_id = 'taken' WHERE org_id = $1`, other.ID); err != nil {
		t.Fatal(err)
	}
	// A rule the database enforces and Go does not: its refusal is reported on the row's line.
	if _, err := e.db.Owner.Exec(ctx, `ALTER TABLE organisations ADD CONSTRAINT test_refuse CHECK (name <> 'Lieu refusé')`); err != nil {
		t.Fatal(err)
	}
	file := "id,pivot,nom,code_postal,code_insee,services\n" +
		"a," + siret(1) + ",Lieu A,26000,,S\n" + // 2: new
		"b,12345678901234,Lieu B,26000,,S\n" + // 3: bad SIRET
		"c," + siret(3) + ",Lieu refusé,,97701,S\n" + // 4: refused by the database
		"d," + siret(4) + ",Lieu D,26000,,S\n" + // 5: new, after a refused row
		"e," + siret(50) + ",Lieu E,07000,,S\n" + // 6: updates the registered site, sets its external id
		"taken," + siret(6) + ",Lieu F,26000,,S\n" + // 7: external id of another SIRET
		"g," + siret(51) + ",Lieu G,26000,,S\n" + // 8: SIRET registered with another external id
		"d," + siret(8) + ",Lieu H,26000,,S\n" + // 9: id twice in the file
		"i," + siret(9) + ",,26000,,\n" + // 10: two errors
		"j," + siret(10) + ",Lieu refusé,26000,,S\n" + // 11: refused by the database
		"k," + siret(11) + ",Lieu K,26000,,S\n" // 12: new
	res, err := e.svc.ImportSites(ctx, e.operator, key(), []byte(file))
	if err != nil {
		t.Fatal(err)
	}
	wantErrs := []LineError{
		{3, "pivot", "Ce numéro SIRET n'existe pas : un chiffre est sans doute mal recopié. Vérifiez-le sur l'avis de situation Insee ou sur annuaire-entreprises.data.gouv.fr."},
		{4, "", "Cette ligne n'a pas pu être enregistrée : une valeur est refusée par la base (règle « test_refuse »). Vérifiez ses valeurs."},
		{7, "id", "L'identifiant « taken » est déjà celui d'un autre lieu, de SIRET " + siret(51) + " : un lieu garde son SIRET. Vérifiez l'identifiant et le SIRET de cette ligne."},
		{8, "id", "Ce SIRET est déjà enregistré avec l'identifiant « taken » : gardez cet identifiant pour mettre le lieu à jour."},
		{9, "id", "Cet identifiant figure déjà ligne 5 du fichier : chaque lieu ne doit apparaître qu'une fois."},
		{10, "nom", "Le nom est obligatoire."},
		{10, "services", "Indiquez au moins un service proposé par le lieu, par exemple « Aide aux démarches administratives »."},
		{11, "", "Cette ligne n'a pas pu être enregistrée : une valeur est refusée par la base (règle « test_refuse »). Vérifiez ses valeurs."},
	}
	if !reflect.DeepEqual(res.Errors, wantErrs) {
		t.Errorf("errors:\n got %+v\nwant %+v", res.Errors, wantErrs)
	}
	if res.Imported != 3 || res.Updated != 1 || res.Rejected != 7 || len(res.SiteIDs) != 4 || res.SiteIDs[2] != registered.ID {
		t.Fatalf("result = %+v", res)
	}
	upd := e.siteBySIRET(t, siret(50))
	if upd.Name != "Lieu E" || upd.Departement != "07" || upd.Site.ExternalID != "e" || upd.Site.CodeINSEE != "" ||
		upd.Site.IBAN != testIBAN || upd.Site.Status != StatusPending || !slices.Equal(upd.Site.Services, []string{"S"}) {
		t.Fatalf("updated site = %+v %+v", upd, upd.Site)
	}
	if n := e.count(t, `SELECT count(*) FROM organisations WHERE kind = 'site'`); n != 5 {
		t.Fatalf("sites = %d, want 5", n)
	}
	if n := e.count(t, `SELECT count(*) FROM site_status_history`); n != 5 {
		t.Fatalf("history rows = %d, want 5", n)
	}
}

func TestReimport(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	file := []byte("id,pivot,nom,code_postal,services\n" +
		"a," + siret(1) + ",Lieu A,26000,S\n" +
		"b," + siret(2) + ",Lieu B,26000,S\n")
	k := key()
	first, err := e.svc.ImportSites(ctx, e.operator, k, file)
	if err != nil || first.Imported != 2 {
		t.Fatalf("first = %+v, %v", first, err)
	}
	// The same key and file replay the first result; the same key with another file is refused.
	replay, err := e.svc.ImportSites(ctx, e.operator, k, file)
	if err != nil || !reflect.DeepEqual(replay, first) {
		t.Fatalf("replay = %+v, %v", replay, err)
	}
	_, err = e.svc.ImportSites(ctx, e.operator, k, append(slices.Clone(file), "c,"+siret(3)+",C,26000,S\n"...))
	wantFault(t, err, fault.Conflict, "IDEMPOTENCY_KEY_REUSED")

	// Qualify site a, then import a changed file under a new key: same sites, updated, status kept.
	a := e.siteBySIRET(t, siret(1))
	e.qualify(t, a.ID, Qualification{ValidFrom: label.ValidFrom, ValidUntil: label.ValidUntil,
		LegalRepresentative: "C. Martin", IBAN: testIBAN, BIC: testBIC})
	changed := strings.ReplaceAll(string(file), "Lieu A,26000,S", "Lieu A rénové,07000,S|T")
	again, err := e.svc.ImportSites(ctx, e.operator, key(), []byte(changed))
	if err != nil || again.Imported != 0 || again.Updated != 2 || again.Rejected != 0 || !slices.Equal(again.SiteIDs, first.SiteIDs) {
		t.Fatalf("re-import = %+v, %v", again, err)
	}
	a = e.siteBySIRET(t, siret(1))
	if a.Name != "Lieu A rénové" || a.Departement != "07" || a.Site.Status != StatusQualified || a.Site.IBAN != testIBAN ||
		!slices.Equal(a.Site.Services, []string{"S", "T"}) || !a.Site.ValidFrom.Equal(label.ValidFrom) {
		t.Fatalf("re-imported = %+v %+v", a, a.Site)
	}
	if n := e.count(t, `SELECT count(*) FROM organisations WHERE kind = 'site'`); n != 2 {
		t.Fatalf("sites = %d, want 2", n)
	}
	if n := e.count(t, `SELECT count(*) FROM site_status_history`); n != 3 {
		t.Fatalf("history rows = %d, want 2 creations and 1 qualification", n)
	}
}

func TestImportRefusedFile(t *testing.T) {
	e := newEnv(t)
	_, err := e.svc.ImportSites(context.Background(), e.operator, key(), []byte("id,nom\n1,A\n"))
	wantFault(t, err, fault.Invalid, "IMPORT_COLUMNS_MISSING")
	_, err = e.svc.ImportSites(context.Background(), e.operator, "", []byte("id,pivot,nom,code_postal,services\na,"+siret(1)+",A,26000,S\n"))
	wantFault(t, err, fault.Invalid, "IDEMPOTENCY_KEY_REQUIRED")
	if n := e.count(t, `SELECT count(*) FROM organisations WHERE kind = 'site'`); n != 0 {
		t.Fatalf("sites = %d", n)
	}
}

// Rows the database refuses, spread over several chunks, are reported on their lines; every
// other row is written once.
func TestImportLargeFile(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if _, err := e.db.Owner.Exec(ctx, `ALTER TABLE organisations ADD CONSTRAINT test_refuse CHECK (name <> 'Lieu refusé')`); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	b.WriteString("id,pivot,nom,code_postal,services\n")
	const n = 2500
	refused := map[int]bool{1: true, 2: true, 999: true, 1000: true, 1001: true, 1500: true, 2500: true}
	var wantLines []int
	for i := 1; i <= n; i++ {
		name := fmt.Sprint("Lieu ", i)
		if refused[i] {
			name = "Lieu refusé"
			wantLines = append(wantLines, i+1)
		}
		fmt.Fprintf(&b, "id-%d,%s,%s,26000,Aide aux démarches administratives\n", i, siret(i), name)
	}
	res, err := e.svc.ImportSites(ctx, e.operator, key(), []byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	var lines []int
	for _, le := range res.Errors {
		lines = append(lines, le.Line)
	}
	if res.Imported != n-len(refused) || res.Rejected != len(refused) || len(res.SiteIDs) != res.Imported || !slices.Equal(lines, wantLines) {
		t.Fatalf("import = %d imported, %d rejected, lines %v", res.Imported, res.Rejected, lines)
	}
	if got := e.count(t, `SELECT count(*) FROM organisations WHERE kind = 'site'`); got != res.Imported {
		t.Fatalf("sites = %d, want %d", got, res.Imported)
	}
	if got := e.count(t, `SELECT count(*) FROM site_status_history`); got != res.Imported {
		t.Fatalf("history rows = %d, want %d", got, res.Imported)
	}
	var stored int
	if err := e.db.Owner.QueryRow(ctx, `SELECT count(*) FROM organisations WHERE id = ANY($1)`, res.SiteIDs).Scan(&stored); err != nil || stored != len(res.SiteIDs) {
		t.Fatalf("site ids stored = %d, %v", stored, err)
	}
}
