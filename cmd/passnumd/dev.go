package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/passnum/passnum/internal/auth"
	"github.com/passnum/passnum/internal/dbmigrate"
	"github.com/passnum/passnum/internal/pgcluster"
	"github.com/passnum/passnum/internal/seed"
	"github.com/passnum/passnum/internal/vcode"
	"github.com/passnum/passnum/server"
)

// stdout receives the dev banner (tests read it).
var stdout io.Writer = os.Stdout

// devDatabase is the database `passnumd dev` creates in its private cluster.
const devDatabase = "passnum"

func runDev(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	var f serveFlags
	if err := f.register(fs, "localhost:9090"); err != nil {
		return err
	}
	varDir := fs.String("var", filepath.Join(repoRoot(), "var"),
		"directory of the private PostgreSQL (pg/, kept between runs) and the dev keys (keys/)")
	ttl := fs.Duration("token-ttl", 12*time.Hour, "lifetime of the printed tokens")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	logger, err := newLogger(f.logLevel)
	if err != nil {
		return err
	}

	url := os.Getenv("DATABASE_URL")
	dbNote := "DATABASE_URL"
	private := url == ""
	if private {
		dataDir := filepath.Join(*varDir, "pg")
		cluster, err := pgcluster.Start(ctx, pgcluster.Options{DataDir: dataDir, Persistent: true, Log: os.Stderr})
		if err != nil {
			return fmt.Errorf("private PostgreSQL: %w", err)
		}
		defer func() {
			if err := cluster.Stop(); err != nil {
				logger.Error("stop PostgreSQL", "error", err)
			}
		}()
		if err := ensureDatabase(ctx, cluster.URL("postgres"), devDatabase); err != nil {
			return err
		}
		url = cluster.URL(devDatabase)
		dbNote = fmt.Sprintf("PostgreSQL privé, données dans %s (journal : %s)", dataDir, filepath.Join(dataDir, "log"))
	}

	keysDir := filepath.Join(*varDir, "keys")
	if _, err := auth.GenerateDevKeys(keysDir); err != nil {
		return err
	}
	keys, err := auth.LoadJWKS(filepath.Join(keysDir, auth.JWKSFile))
	if err != nil {
		return err
	}
	minter, err := auth.LoadMinter(filepath.Join(keysDir, auth.SigningKeyFile), f.issuer, f.audience)
	if err != nil {
		return err
	}
	vkeysPath := filepath.Join(keysDir, voucherKeysFile)
	if _, err := vcode.GenerateKeyFile(vkeysPath); err != nil {
		return err
	}
	vkeys, err := loadVoucherKeys(logger, vkeysPath)
	if err != nil {
		return err
	}

	if err := dbmigrate.Migrate(ctx, url); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	pool, err := dbmigrate.OpenApp(ctx, url)
	if err != nil {
		return err
	}
	defer pool.Close()
	app, stopApp, err := newApp(pool, logger, vkeys)
	if err != nil {
		return err
	}
	defer stopApp()
	if err := seedIfEmpty(ctx, logger, pool, app); err != nil {
		return err
	}
	orgs, err := demoOrgs(ctx, pool)
	if err != nil {
		return err
	}
	tokens, err := devTokens(minter, orgs, *ttl)
	if err != nil {
		return err
	}
	sample, err := sampleVoucher(ctx, pool)
	if err != nil {
		return err
	}
	return runServer(ctx, logger, f, keys, pool, app, func(grpcAddr, metricsAddr string) {
		printBanner(stdout, banner{
			grpcAddr: grpcAddr, metricsAddr: metricsAddr, reflection: f.reflection, voucher: sample,
			database: dbNote, privateDB: private, keysDir: keysDir, tokens: tokens, ttl: *ttl,
		})
	})
}

// repoRoot is the nearest directory above the working directory holding passnum's go.mod,
// or the working directory.
func repoRoot() string {
	wd, err := os.Getwd()
	if err != nil {
		return "."
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		if isPassnumModule(filepath.Join(dir, "go.mod")) {
			return dir
		}
		if filepath.Dir(dir) == dir {
			return wd
		}
	}
}

func isPassnumModule(goMod string) bool {
	f, err := os.Open(goMod)
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); strings.HasPrefix(line, "module ") {
			return strings.TrimSpace(strings.TrimPrefix(line, "module ")) == "github.com/passnum/passnum"
		}
	}
	return false
}

// ensureDatabase creates database name on the server of adminURL if it does not exist.
func ensureDatabase(ctx context.Context, adminURL, name string) error {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	defer conn.Close(context.Background())
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return fmt.Errorf("look up database %s: %w", name, err)
	}
	if exists {
		return nil
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()+" ENCODING 'UTF8'"); err != nil {
		return fmt.Errorf("create database %s: %w", name, err)
	}
	return nil
}

// seedIfEmpty builds the demo territory (internal/seed) in a database without any
// organisation, through the domain services like any client would.
func seedIfEmpty(ctx context.Context, logger *slog.Logger, pool *pgxpool.Pool, app server.App) error {
	var empty bool
	if err := pool.QueryRow(ctx, "SELECT NOT EXISTS (SELECT 1 FROM organisations)").Scan(&empty); err != nil {
		return fmt.Errorf("look for organisations: %w", err)
	}
	if !empty {
		return nil
	}
	start := time.Now()
	demo, err := seed.Demo(ctx, app.Orgs, app.Programmes, uuid.New())
	if err != nil {
		return fmt.Errorf("seed demo data: %w", err)
	}
	logger.Info("demo data seeded", "programme", demo.Programme.String(), "duration_ms", time.Since(start).Milliseconds())
	return nil
}

// sampleVoucher returns the formatted code of an available voucher, for the banner's
// example, or "" if there is none.
func sampleVoucher(ctx context.Context, pool *pgxpool.Pool) (string, error) {
	var code int64
	err := pool.QueryRow(ctx, "SELECT code FROM vouchers WHERE status = 'available' ORDER BY code LIMIT 1").Scan(&code)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return "", nil
	case err != nil:
		return "", fmt.Errorf("look for an available voucher: %w", err)
	}
	return vcode.Code(code).String(), nil
}

// demoOrg is the organisation whose id a dev token carries.
type demoOrg struct {
	id   uuid.UUID
	name string
}

// demoOrgs returns, per role, the oldest organisation of that kind, if any.
func demoOrgs(ctx context.Context, pool *pgxpool.Pool) (map[auth.Role]demoOrg, error) {
	rows, err := pool.Query(ctx,
		`SELECT DISTINCT ON (kind) kind, id, name FROM organisations ORDER BY kind, created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("look up demo organisations: %w", err)
	}
	out := map[auth.Role]demoOrg{}
	for rows.Next() {
		var kind string
		var o demoOrg
		if err := rows.Scan(&kind, &o.id, &o.name); err != nil {
			return nil, fmt.Errorf("look up demo organisations: %w", err)
		}
		role, err := auth.ParseRole(kind)
		if err != nil {
			return nil, err
		}
		out[role] = o
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("look up demo organisations: %w", err)
	}
	return out, nil
}

type devToken struct {
	role  auth.Role
	org   uuid.UUID
	label string
	token string
}

// devTokens mints one token per role, for the demo organisation of that role if there is
// one, else for a new random organisation id.
func devTokens(m *auth.Minter, orgs map[auth.Role]demoOrg, ttl time.Duration) ([]devToken, error) {
	var out []devToken
	for _, role := range auth.Roles() {
		t := devToken{role: role}
		if o, ok := orgs[role]; ok {
			t.org, t.label = o.id, "organisation de démo « "+o.name+" »"
		} else {
			t.org, t.label = uuid.New(), "identifiant d'organisation aléatoire (aucune organisation de ce type en base)"
		}
		tok, err := m.Mint(auth.Principal{Subject: "dev-" + string(role), Org: t.org, Role: role}, ttl)
		if err != nil {
			return nil, err
		}
		t.token = tok
		out = append(out, t)
	}
	return out, nil
}

type banner struct {
	grpcAddr, metricsAddr string
	voucher               string
	reflection            bool
	database              string
	privateDB             bool
	keysDir               string
	tokens                []devToken
	ttl                   time.Duration
}

func printBanner(w io.Writer, b banner) {
	p := func(format string, a ...any) { fmt.Fprintf(w, format+"\n", a...) }
	p("")
	p("passnum tourne en mode développement.")
	p("  gRPC          %s (en clair, réflexion %s)", b.grpcAddr, map[bool]string{true: "activée", false: "désactivée"}[b.reflection])
	if b.metricsAddr != "" {
		p("  métriques     http://%s/metrics", b.metricsAddr)
		p("  profilage     http://%s/debug/pprof/", b.metricsAddr)
	}
	p("  base          %s", b.database)
	p("  clés          %s (signing.pem signe, jwks.json vérifie, %s fait les codes des chèques)", b.keysDir, voucherKeysFile)
	p("")
	p("Jetons d'accès (valables %s), à coller dans un terminal :", frenchDuration(b.ttl))
	for _, t := range b.tokens {
		p("  # %s — org %s, %s", t.role, t.org, t.label)
		p("  export PASSNUM_TOKEN_%s=%s", strings.ToUpper(string(t.role)), t.token)
	}
	p("")
	p("Essais :")
	p("  grpcurl -plaintext %s list", b.grpcAddr)
	p("  grpcurl -plaintext %s grpc.health.v1.Health/Check", b.grpcAddr)
	p(`  grpcurl -plaintext -H "authorization: Bearer $PASSNUM_TOKEN_OPERATOR" %s passnum.v1.OrganizationService/ListOrganizations`, b.grpcAddr)
	if b.voucher != "" {
		p(`  grpcurl -plaintext -H "authorization: Bearer $PASSNUM_TOKEN_SITE" -d '{"code":"%s"}' %s passnum.v1.VoucherService/CheckVoucher`, b.voucher, b.grpcAddr)
	}
	p("Autre jeton : go run ./cmd/passnum token --role site --org <uuid> --key %s", filepath.Join(b.keysDir, auth.SigningKeyFile))
	if b.privateDB {
		p("Ctrl-C arrête le serveur et PostgreSQL ; les données restent sur disque.")
	} else {
		p("Ctrl-C arrête le serveur.")
	}
	p("")
}

// frenchDuration writes whole hours as "12 h" and anything else as Go does.
func frenchDuration(d time.Duration) string {
	if d >= time.Hour && d%time.Hour == 0 {
		return fmt.Sprintf("%d h", d/time.Hour)
	}
	return d.String()
}
