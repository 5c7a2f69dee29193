package testdb

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/passnum/passnum/internal/dbmigrate"
	"github.com/passnum/passnum/migrations"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

func TestDatabasesAreIsolated(t *testing.T) {
	t.Parallel()
	a, b := New(t), New(t)
	if a.URL == b.URL {
		t.Fatalf("two databases share the URL %s", a.URL)
	}
	if _, err := a.Owner.Exec(t.Context(), "CREATE TABLE only_in_a (id int)"); err != nil {
		t.Fatal(err)
	}
	var found bool
	if err := b.Owner.QueryRow(t.Context(), "SELECT to_regclass('public.only_in_a') IS NOT NULL").Scan(&found); err != nil {
		t.Fatal(err)
	}
	if found {
		t.Error("a table created in one database shows in another")
	}
}

func TestTemplateHasEveryMigration(t *testing.T) {
	t.Parallel()
	db := New(t)
	files, err := fs.Glob(migrations.FS, "*.sql")
	if err != nil {
		t.Fatal(err)
	}
	var version int
	if err := db.Owner.QueryRow(t.Context(), "SELECT version FROM "+dbmigrate.VersionTable).Scan(&version); err != nil {
		t.Fatal(err)
	}
	if version != len(files) {
		t.Errorf("schema version %d, want %d (one per migration file)", version, len(files))
	}
}

func TestAppWorksAsAppRoleWithoutOwnership(t *testing.T) {
	t.Parallel()
	db := New(t)
	var current, session string
	if err := db.App.QueryRow(t.Context(), "SELECT current_user, session_user").Scan(&current, &session); err != nil {
		t.Fatal(err)
	}
	if current != dbmigrate.AppRole {
		t.Errorf("App works as %q, want %q", current, dbmigrate.AppRole)
	}
	if session == dbmigrate.AppRole {
		t.Errorf("session user is %q: the owner should log in and SET ROLE", session)
	}

	_, err := db.App.Exec(t.Context(), "CREATE TABLE public.sneaky (id int)")
	assertDenied(t, "CREATE TABLE in public", err)
	_, err = db.App.Exec(t.Context(), "DROP TABLE "+dbmigrate.VersionTable)
	assertDenied(t, "DROP TABLE of the owner's table", err)

	var owner string
	if err := db.Owner.QueryRow(t.Context(), "SELECT current_user").Scan(&owner); err != nil {
		t.Fatal(err)
	}
	if owner == dbmigrate.AppRole {
		t.Error("Owner works as the application role")
	}
}

func assertDenied(t *testing.T, what string, err error) {
	t.Helper()
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
		t.Errorf("%s as the application: got %v, want insufficient_privilege (42501)", what, err)
	}
}

func TestDatabaseDroppedAtCleanup(t *testing.T) {
	t.Parallel()
	var url string
	t.Run("user", func(t *testing.T) {
		url = New(t).URL
	})
	var exists bool
	err := admin.QueryRow(context.Background(),
		"SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)", databaseOf(t, url)).Scan(&exists)
	if err != nil {
		t.Fatal(err)
	}
	if exists {
		t.Errorf("database of %s still exists after its test ended", url)
	}
}

func TestNewEmptyHasNoMigrations(t *testing.T) {
	t.Parallel()
	pool, err := dbmigrate.OpenOwner(t.Context(), NewEmpty(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var found bool
	if err := pool.QueryRow(t.Context(), "SELECT to_regclass($1) IS NOT NULL", dbmigrate.VersionTable).Scan(&found); err != nil {
		t.Fatal(err)
	}
	if found {
		t.Error("an empty database has the version table")
	}
}

func databaseOf(t *testing.T, connString string) string {
	t.Helper()
	cfg, err := pgconn.ParseConfig(connString)
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Database
}

func TestConnStringHelpers(t *testing.T) {
	for _, tc := range []struct{ in, db, want string }{
		{"postgres://u@h:5/postgres?sslmode=disable", "x", "postgres://u@h:5/x?sslmode=disable"},
		{"postgresql://u:p@h/", "x", "postgresql://u:p@h/x"},
		{"host=h user=u dbname=postgres", "x", "host=h user=u dbname=postgres dbname='x'"},
	} {
		if got := withDatabase(tc.in, tc.db); got != tc.want {
			t.Errorf("withDatabase(%q, %q) = %q, want %q", tc.in, tc.db, got, tc.want)
		}
		cfg, err := pgconn.ParseConfig(withDatabase(tc.in, tc.db))
		if err != nil || cfg.Database != tc.db {
			t.Errorf("withDatabase(%q, %q) parses to database %v (err %v)", tc.in, tc.db, cfg, err)
		}
	}
	for _, tc := range []struct{ in, want string }{
		{"postgres://u@h/d?sslmode=disable", "postgres://u@h/d?pool_max_conns=4&sslmode=disable"},
		{"postgres://u@h/d?pool_max_conns=9", "postgres://u@h/d?pool_max_conns=9"},
		{"host=h", "host=h pool_max_conns='4'"},
		{"host=h pool_max_conns=9", "host=h pool_max_conns=9"},
	} {
		if got := withDefaultParam(tc.in, "pool_max_conns", "4"); got != tc.want {
			t.Errorf("withDefaultParam(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// BenchmarkNew measures what a test pays for its database: the clone and two pools (the
// databases are dropped after the timing).
func BenchmarkNew(b *testing.B) {
	if err := setup(context.Background()); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		New(b)
	}
}
