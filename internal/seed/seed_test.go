package seed

import (
	"context"
	"os"
	"reflect"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/passnum/passnum/internal/ident"
	"github.com/passnum/passnum/internal/orgs"
	"github.com/passnum/passnum/internal/programmes"
	"github.com/passnum/passnum/internal/testdb"
	"github.com/passnum/passnum/ledger"
)

func TestMain(m *testing.M) { os.Exit(testdb.Main(m)) }

func TestIdentifiers(t *testing.T) {
	for _, s := range []string{siret("1300201600"), siret("8312457690"), siret("2000402480")} {
		if err := ident.ValidSIRET(s); err != nil {
			t.Errorf("SIRET %s: %v", s, err)
		}
	}
	for _, s := range []string{iban("10278", "08912", "00020145601"), iban("30001", "00415", "C2650000000"),
		iban("16806", "02600", "66021587134")} {
		if err := ident.ValidIBAN(s); err != nil {
			t.Errorf("IBAN %s: %v", s, err)
		}
	}
}

func TestDemo(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	db := testdb.New(t)
	l := ledger.New(db.App, nil)
	p := programmes.New(l, programmes.Options{})
	defer p.Close()
	o := orgs.New(l)
	operator := uuid.New()
	d, err := Demo(ctx, o, p, operator)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Funders) != 2 || len(d.Distributors) != 2 || len(d.Sites) != 3 || d.Programme == uuid.Nil {
		t.Fatalf("demo orgs: %+v", d)
	}
	count := func(sql string) int64 {
		var n int64
		if err := db.Owner.QueryRow(ctx, sql).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count(`SELECT count(*) FROM books`); n != booksCAF+booksMairie {
		t.Errorf("%d books", n)
	}
	if n := count(`SELECT count(*) FROM books WHERE status = 'handed_out'`); n != 240 {
		t.Errorf("%d books handed out", n)
	}
	if n := count(`SELECT count(*) FROM books WHERE target_public`); n != 144 {
		t.Errorf("%d books to the target public", n)
	}
	if n := count(`SELECT count(*) FROM redemptions`); n != redeemedBooks*redeemedPerBk {
		t.Errorf("%d redemptions", n)
	}
	if n := count(`SELECT count(*) FROM sites WHERE status = 'qualified'`); n != 3 {
		t.Errorf("%d qualified sites", n)
	}
	rep, err := l.Verify(ctx, d.Programme)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK {
		t.Fatalf("the demo ledger does not verify: %+v", rep.Checks)
	}
	again, err := Demo(ctx, o, p, operator)
	if err != nil {
		t.Fatalf("second run: %v", err)
	}
	if !reflect.DeepEqual(again, d) {
		t.Fatalf("second run returned other organisations:\n%+v\n%+v", again, d)
	}
	if n := count(`SELECT count(*) FROM redemptions`); n != redeemedBooks*redeemedPerBk {
		t.Errorf("second run: %d redemptions", n)
	}
}
