package dbmigrate_test

import (
	"io/fs"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/passnum/passnum/internal/dbmigrate"
	"github.com/passnum/passnum/internal/testdb"
	"github.com/passnum/passnum/migrations"
)

func TestMain(m *testing.M) { os.Exit(testdb.Main(m)) }

func migrationCount(t *testing.T) int {
	t.Helper()
	files, err := fs.Glob(migrations.FS, "*.sql")
	if err != nil {
		t.Fatal(err)
	}
	return len(files)
}

func version(t *testing.T, url string) int {
	t.Helper()
	pool, err := dbmigrate.OpenOwner(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var v int
	if err := pool.QueryRow(t.Context(), "SELECT version FROM "+dbmigrate.VersionTable).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestMigrateFromEmptyAndAgain(t *testing.T) {
	t.Parallel()
	url := testdb.NewEmpty(t)
	for range 2 {
		if err := dbmigrate.Migrate(t.Context(), url); err != nil {
			t.Fatalf("Migrate: %v", err)
		}
		if got, want := version(t, url), migrationCount(t); got != want {
			t.Fatalf("version %d after Migrate, want %d", got, want)
		}
	}
}

func TestConcurrentMigrationsWaitForEachOther(t *testing.T) {
	t.Parallel()
	url := testdb.NewEmpty(t)
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range errs {
		wg.Go(func() { errs[i] = dbmigrate.Migrate(t.Context(), url) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("Migrate #%d: %v", i, err)
		}
	}
	if got, want := version(t, url), migrationCount(t); got != want {
		t.Errorf("version %d, want %d", got, want)
	}
}

func TestMigrateRefusesNewerDatabase(t *testing.T) {
	t.Parallel()
	db := testdb.New(t)
	if _, err := db.Owner.Exec(t.Context(), "UPDATE "+dbmigrate.VersionTable+" SET version = version + 1"); err != nil {
		t.Fatal(err)
	}
	err := dbmigrate.Migrate(t.Context(), db.URL)
	if err == nil || !strings.Contains(err.Error(), "newer binary") {
		t.Errorf("Migrate on a database ahead of the binary: %v, want an error asking for a newer binary", err)
	}
}

func TestOpenAppSetsRoleOnEveryConnection(t *testing.T) {
	t.Parallel()
	db := testdb.New(t)
	pool, err := dbmigrate.OpenApp(t.Context(), db.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if got, want := pool.Config().MaxConns, dbmigrate.DefaultMaxConns(); got != want {
		t.Errorf("MaxConns = %d, want the default %d", got, want)
	}
	// Hold several connections at once so that each is a distinct session.
	var conns []*pgxpool.Conn
	for range 3 {
		c, err := pool.Acquire(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		var role string
		if err := c.QueryRow(t.Context(), "SELECT current_user").Scan(&role); err != nil {
			t.Fatal(err)
		}
		if role != dbmigrate.AppRole {
			t.Errorf("connection works as %q, want %q", role, dbmigrate.AppRole)
		}
	}
	for _, c := range conns {
		c.Release()
	}
}

func TestPoolSizeFromConnString(t *testing.T) {
	t.Parallel()
	db := testdb.New(t)
	sep := "?"
	if strings.Contains(db.URL, "?") {
		sep = "&"
	}
	url := db.URL + sep + "pool_max_conns=3"

	app, err := dbmigrate.OpenApp(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	if got := app.Config().MaxConns; got != 3 {
		t.Errorf("app pool MaxConns = %d, want 3 from pool_max_conns", got)
	}
	owner, err := dbmigrate.OpenOwner(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer owner.Close()
	if got := owner.Config().MaxConns; got != 3 {
		t.Errorf("owner pool MaxConns = %d, want 3 from pool_max_conns", got)
	}
}

func TestOpenAppFailsFastWithoutServer(t *testing.T) {
	t.Parallel()
	if _, err := dbmigrate.OpenApp(t.Context(), "postgres://postgres@127.0.0.1:1/x?sslmode=disable&connect_timeout=2"); err == nil {
		t.Error("OpenApp succeeded without a server")
	}
}
