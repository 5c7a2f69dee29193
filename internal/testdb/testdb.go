// Package testdb gives tests real PostgreSQL databases: each New is a fresh database
// cloned from a template that holds every migration, so a test starts from the schema
// the application runs on and can do what it likes to it.
//
// A package that uses it runs its tests through Main:
//
//	func TestMain(m *testing.M) { os.Exit(testdb.Main(m)) }
//
// With DATABASE_URL set (make test sets it), databases are created on that server, whose
// user must be allowed to create databases; otherwise Main starts a private throwaway
// server for the test binary. No PostgreSQL means failing tests, never skipped ones.
package testdb

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/passnum/passnum/internal/dbmigrate"
	"github.com/passnum/passnum/internal/pgcluster"
	"github.com/passnum/passnum/migrations"
)

// DB is one test's database. Its pools are closed and the database dropped when the test
// ends.
type DB struct {
	// URL connects to the database as the owner (the migrating user, a superuser on a
	// private server).
	URL string
	// App works as dbmigrate.AppRole, like the application.
	App *pgxpool.Pool
	// Owner works as the owner of the tables, for setting up or tampering with what the
	// application may not touch.
	Owner *pgxpool.Pool
}

// ownerMaxConns bounds the Owner pool unless DATABASE_URL sets pool_max_conns: it is for
// setup, and many test databases share one server.
const ownerMaxConns = 4

// templateLockKey is the advisory lock that serialises template creation among test
// binaries sharing a server.
const templateLockKey = int64(0x7061_7373_6e75_6d01)

var (
	// adminURL is the server's maintenance database, where databases are created and
	// dropped; set by Main.
	adminURL string

	setupOnce sync.Once
	setupErr  error
	admin     *pgxpool.Pool
	template  string
)

// Main runs the package's tests (m.Run) against DATABASE_URL's server, or against a
// private throwaway server started for this test binary and stopped afterwards, and
// returns the exit code for os.Exit. It returns 1, saying why on stderr, when it cannot
// get a server.
func Main(m *testing.M) int {
	ctx := context.Background()
	if u := os.Getenv("DATABASE_URL"); u != "" {
		adminURL = u
		return runAndClose(m)
	}
	// Installing PostgreSQL on a fresh machine takes a while: show it.
	if _, err := pgcluster.EnsureBinDir(ctx, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "testdb: DATABASE_URL is not set and no private PostgreSQL can be started: %v\n", err)
		return 1
	}
	cluster, err := pgcluster.Start(ctx, pgcluster.Options{FastUnsafe: true})
	if err != nil {
		fmt.Fprintf(os.Stderr, "testdb: DATABASE_URL is not set and no private PostgreSQL can be started: %v\n", err)
		return 1
	}
	adminURL = cluster.URL("postgres")
	code := runAndClose(m)
	if err := cluster.Stop(); err != nil {
		fmt.Fprintf(os.Stderr, "testdb: stop the private PostgreSQL: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

func runAndClose(m *testing.M) int {
	code := m.Run()
	if admin != nil {
		admin.Close()
	}
	return code
}

// New returns a fresh database with every migration applied, dropped when t ends.
func New(t testing.TB) *DB {
	t.Helper()
	ctx := context.Background()
	if err := setup(ctx); err != nil {
		t.Fatalf("testdb: %v", err)
	}
	name := createDatabase(t, "TEMPLATE "+pgx.Identifier{template}.Sanitize())
	db := &DB{URL: withDatabase(adminURL, name)}
	var err error
	db.Owner, err = dbmigrate.OpenOwner(ctx, withDefaultParam(db.URL, "pool_max_conns", fmt.Sprint(ownerMaxConns)))
	if err != nil {
		t.Fatalf("testdb: %v", err)
	}
	t.Cleanup(db.Owner.Close)
	db.App, err = dbmigrate.OpenApp(ctx, db.URL)
	if err != nil {
		t.Fatalf("testdb: %v", err)
	}
	t.Cleanup(db.App.Close)
	return db
}

// NewEmpty returns the URL of a new database without any migration (to test migrations
// themselves), dropped when t ends.
func NewEmpty(t testing.TB) string {
	t.Helper()
	if err := setup(context.Background()); err != nil {
		t.Fatalf("testdb: %v", err)
	}
	return withDatabase(adminURL, createDatabase(t, "TEMPLATE template0"))
}

// createDatabase creates a uniquely named database with the given clause and registers
// its removal (connections and all) for the end of t.
func createDatabase(t testing.TB, clause string) string {
	t.Helper()
	ctx := context.Background()
	name := "passnum_test_" + strings.ToLower(rand.Text()[:16])
	ident := pgx.Identifier{name}.Sanitize()
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+ident+" "+clause); err != nil {
		t.Fatalf("testdb: create database %s: %v", name, err)
	}
	// Registered first, so it runs after the pools' Close.
	t.Cleanup(func() {
		if _, err := admin.Exec(context.Background(), "DROP DATABASE "+ident+" WITH (FORCE)"); err != nil {
			t.Errorf("testdb: drop database %s: %v", name, err)
		}
	})
	return name
}

// setup opens the admin pool and makes sure the template of the current migrations
// exists, once per test binary.
func setup(ctx context.Context) error {
	setupOnce.Do(func() {
		if adminURL == "" {
			setupErr = fmt.Errorf("no server: call testdb.Main from the package's TestMain, or set DATABASE_URL")
			return
		}
		admin, setupErr = pgxpool.New(ctx, withDefaultParam(adminURL, "pool_max_conns", "2"))
		if setupErr != nil {
			setupErr = fmt.Errorf("connect to %s: %w", redact(adminURL), setupErr)
			return
		}
		template, setupErr = ensureTemplate(ctx)
	})
	return setupErr
}

// ensureTemplate creates and migrates the template named after the migrations' contents
// unless a complete one exists. Complete means marked IS_TEMPLATE, the last step; a
// database left half-made by a killed process is dropped and made again. The advisory
// lock keeps test binaries sharing a server from making it twice.
func ensureTemplate(ctx context.Context) (string, error) {
	sum, err := migrationsHash()
	if err != nil {
		return "", err
	}
	name := "passnum_tpl_" + sum
	ident := pgx.Identifier{name}.Sanitize()

	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return "", fmt.Errorf("connect to %s: %w", redact(adminURL), err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", templateLockKey); err != nil {
		return "", fmt.Errorf("lock template creation: %w", err)
	}
	// Closing the connection releases the lock.

	var isTemplate bool
	err = conn.QueryRow(ctx, "SELECT datistemplate FROM pg_database WHERE datname = $1", name).Scan(&isTemplate)
	switch {
	case err == nil && isTemplate:
		return name, nil
	case err == nil:
		if _, err := conn.Exec(ctx, "DROP DATABASE "+ident+" WITH (FORCE)"); err != nil {
			return "", fmt.Errorf("drop incomplete template %s: %w", name, err)
		}
	case !errors.Is(err, pgx.ErrNoRows):
		return "", fmt.Errorf("look for template %s: %w", name, err)
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+ident+" TEMPLATE template0 ENCODING 'UTF8'"); err != nil {
		return "", fmt.Errorf("create template %s: %w", name, err)
	}
	if err := dbmigrate.Migrate(ctx, withDatabase(adminURL, name)); err != nil {
		return "", fmt.Errorf("template %s: %w", name, err)
	}
	// No connections: CREATE DATABASE ... TEMPLATE fails while anyone is connected to it.
	if _, err := conn.Exec(ctx, "ALTER DATABASE "+ident+" WITH IS_TEMPLATE true ALLOW_CONNECTIONS false"); err != nil {
		return "", fmt.Errorf("seal template %s: %w", name, err)
	}
	return name, nil
}

// migrationsHash is a short digest of every migration file's name and contents: a new or
// changed migration gets a new template.
func migrationsHash() (string, error) {
	entries, err := fs.ReadDir(migrations.FS, ".")
	if err != nil {
		return "", err
	}
	h := sha256.New()
	for _, e := range entries {
		b, err := fs.ReadFile(migrations.FS, e.Name())
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s\x00%d\x00", e.Name(), len(b))
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:12], nil
}

// withDatabase returns connString (a URL or keyword/value string) pointing at database db.
func withDatabase(connString, db string) string {
	if u, ok := parseURL(connString); ok {
		u.Path = "/" + db
		u.RawPath = ""
		return u.String()
	}
	return connString + " dbname=" + quoteValue(db)
}

// withDefaultParam adds key=value to connString unless it sets key already.
func withDefaultParam(connString, key, value string) string {
	if u, ok := parseURL(connString); ok {
		q := u.Query()
		if !q.Has(key) {
			q.Set(key, value)
			u.RawQuery = q.Encode()
		}
		return u.String()
	}
	for _, f := range strings.Fields(connString) {
		if k, _, ok := strings.Cut(f, "="); ok && k == key {
			return connString
		}
	}
	return connString + " " + key + "=" + quoteValue(value)
}

func parseURL(connString string) (*url.URL, bool) {
	if !strings.HasPrefix(connString, "postgres://") && !strings.HasPrefix(connString, "postgresql://") {
		return nil, false
	}
	u, err := url.Parse(connString)
	return u, err == nil
}

func quoteValue(v string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}

// redact hides a password in a connection URL for messages.
func redact(connString string) string {
	if u, ok := parseURL(connString); ok {
		return u.Redacted()
	}
	return "DATABASE_URL"
}
