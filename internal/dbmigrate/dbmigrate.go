// Package dbmigrate applies the embedded migrations (package migrations) with tern and
// opens the connection pools the application uses.
//
// Migrations run as the owner: the user of the connection string. The application works
// as AppRole, which owns nothing: OpenApp's connections SET ROLE to it right after
// connecting.
package dbmigrate

import (
	"context"
	"fmt"
	"log/slog"
	"regexp"
	"runtime"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/tern/v2/migrate"

	"github.com/passnum/passnum/migrations"
)

// AppRole is the role the application works as. Migration 001 creates it and lets the
// migrating user SET ROLE to it.
const AppRole = "passnum_app"

// VersionTable records the number of the last migration applied.
const VersionTable = "public.schema_version"

// Migrate applies the migrations the database at connString lacks, each in its own
// transaction, connected as the owner. tern's advisory lock makes concurrent runs on one
// database wait for each other. A database already past the embedded migrations (a newer
// binary ran) is an error.
func Migrate(ctx context.Context, connString string) error {
	conn, err := pgx.Connect(ctx, connString)
	if err != nil {
		return fmt.Errorf("migrate: connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))

	m, err := migrate.NewMigrator(ctx, conn, VersionTable)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if err := m.LoadMigrations(migrations.FS); err != nil {
		return fmt.Errorf("migrate: load migrations: %w", err)
	}
	from, err := m.GetCurrentVersion(ctx)
	if err != nil {
		return fmt.Errorf("migrate: read %s: %w", VersionTable, err)
	}
	known := int32(len(m.Migrations))
	if from > known {
		return fmt.Errorf("migrate: the database is at migration %d but this binary knows only %d: run a newer binary", from, known)
	}
	m.OnStart = func(sequence int32, name, direction, _ string) {
		slog.InfoContext(ctx, "applying migration", "version", sequence, "name", name, "direction", direction)
	}
	if err := m.Migrate(ctx); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	to, err := m.GetCurrentVersion(ctx)
	if err != nil {
		return fmt.Errorf("migrate: read %s: %w", VersionTable, err)
	}
	if to == from {
		slog.InfoContext(ctx, "database schema up to date", "version", to)
	} else {
		slog.InfoContext(ctx, "database migrated", "from", from, "to", to)
	}
	return nil
}

// OpenApp opens the application's pool: every connection does SET ROLE passnum_app right
// after connecting, so queries run with that role's privileges only. pgxpool never resets
// sessions, so the role holds for the connection's life. The connection string's user
// must be a member of passnum_app (migration 001 makes the migrating user one).
//
// pool_max_conns and the other pgxpool settings in connString are honoured; without
// pool_max_conns the pool holds up to DefaultMaxConns connections.
func OpenApp(ctx context.Context, connString string) (*pgxpool.Pool, error) {
	setRole := "SET ROLE " + pgx.Identifier{AppRole}.Sanitize()
	pool, err := open(ctx, connString, func(ctx context.Context, conn *pgx.Conn) error {
		if _, err := conn.Exec(ctx, setRole); err != nil {
			return fmt.Errorf("%s (have the migrations run?): %w", setRole, err)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("open application pool: %w", err)
	}
	return pool, nil
}

// OpenOwner opens a pool that works as the connection string's user (the owner), for
// migrations, administration and tests that need to bypass the application's role.
// Sizing is as for OpenApp.
func OpenOwner(ctx context.Context, connString string) (*pgxpool.Pool, error) {
	pool, err := open(ctx, connString, nil)
	if err != nil {
		return nil, fmt.Errorf("open owner pool: %w", err)
	}
	return pool, nil
}

// DefaultMaxConns is the pool size when the connection string sets no pool_max_conns:
// enough to keep the server's cores busy while transactions wait on the network, few
// enough to keep serialization conflicts rare.
func DefaultMaxConns() int32 {
	return int32(max(8, 4*runtime.NumCPU()))
}

var poolMaxConnsParam = regexp.MustCompile(`(^|[?&\s])pool_max_conns\s*=`)

func open(ctx context.Context, connString string, afterConnect func(context.Context, *pgx.Conn) error) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(connString)
	if err != nil {
		return nil, err
	}
	if !poolMaxConnsParam.MatchString(connString) {
		cfg.MaxConns = DefaultMaxConns()
	}
	cfg.AfterConnect = afterConnect
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	// Fail here, not at the first query, when the server or the role is not there.
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return pool, nil
}
