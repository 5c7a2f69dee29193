package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/passnum/passnum/internal/auth"
	"github.com/passnum/passnum/internal/dbmigrate"
	"github.com/passnum/passnum/internal/pgcluster"
	"github.com/passnum/passnum/internal/testdb"
	"github.com/passnum/passnum/internal/vcode"
	pb "github.com/passnum/passnum/proto/passnum/v1"
)

func TestMain(m *testing.M) { os.Exit(testdb.Main(m)) }

func TestDispatch(t *testing.T) {
	if err := dispatch(context.Background(), []string{"frobnicate"}); err == nil || !strings.Contains(err.Error(), "frobnicate") {
		t.Fatalf("unknown command: %v", err)
	}
	if err := dispatch(context.Background(), []string{"help"}); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("help: %v", err)
	}
	t.Setenv("DATABASE_URL", "")
	if err := dispatch(context.Background(), []string{"migrate"}); err == nil || !strings.Contains(err.Error(), "DATABASE_URL") {
		t.Fatalf("migrate without DATABASE_URL: %v", err)
	}
	if err := dispatch(context.Background(), []string{"-listen", "127.0.0.1:0"}); err == nil || !strings.Contains(err.Error(), "DATABASE_URL") {
		t.Fatalf("serve without DATABASE_URL: %v", err)
	}
}

func TestServeFlagsFromEnvironment(t *testing.T) {
	t.Setenv("PASSNUM_LISTEN", "0.0.0.0:6000")
	t.Setenv("PASSNUM_REFLECTION", "false")
	t.Setenv("PASSNUM_LOG_LEVEL", "debug")
	t.Setenv("PASSNUM_SHUTDOWN_TIMEOUT", "3s")
	var f serveFlags
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	if err := f.register(fs, "localhost:9090"); err != nil {
		t.Fatal(err)
	}
	if err := fs.Parse([]string{"-log-level", "warn"}); err != nil {
		t.Fatal(err)
	}
	if f.listen != "0.0.0.0:6000" || f.reflection || f.logLevel != "warn" || f.shutdownTimeout != 3*time.Second ||
		f.metricsListen != "localhost:9090" || f.issuer != auth.DefaultIssuer || f.audience != auth.DefaultAudience {
		t.Fatalf("flags %+v", f)
	}

	t.Setenv("PASSNUM_REFLECTION", "maybe")
	if err := new(serveFlags).register(flag.NewFlagSet("t", flag.ContinueOnError), ""); err == nil {
		t.Fatal("PASSNUM_REFLECTION=maybe accepted")
	}
	if _, err := newLogger("loud"); err == nil {
		t.Fatal("log level loud accepted")
	}
}

func TestRepoRoot(t *testing.T) {
	root := repoRoot()
	if _, err := os.Stat(filepath.Join(root, "cmd", "passnumd")); err != nil {
		t.Fatalf("repoRoot() = %s, which has no cmd/passnumd", root)
	}
}

func TestDevTokensAndBanner(t *testing.T) {
	dir := t.TempDir()
	if _, err := auth.GenerateDevKeys(dir); err != nil {
		t.Fatal(err)
	}
	m, err := auth.LoadMinter(filepath.Join(dir, auth.SigningKeyFile), auth.DefaultIssuer, auth.DefaultAudience)
	if err != nil {
		t.Fatal(err)
	}
	ks, err := auth.LoadJWKS(filepath.Join(dir, auth.JWKSFile))
	if err != nil {
		t.Fatal(err)
	}
	v := auth.NewVerifier(ks, auth.DefaultIssuer, auth.DefaultAudience)
	site := demoOrg{id: uuid.New(), name: "Médiathèque de Die"}
	tokens, err := devTokens(m, map[auth.Role]demoOrg{auth.RoleSite: site}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if len(tokens) != len(auth.Roles()) {
		t.Fatalf("%d tokens", len(tokens))
	}
	for _, tok := range tokens {
		p, err := v.Verify(tok.token)
		if err != nil {
			t.Fatalf("%s token refused: %v", tok.role, err)
		}
		if p.Role != tok.role || p.Org != tok.org {
			t.Fatalf("%s token carries %+v", tok.role, p)
		}
		if tok.role == auth.RoleSite && (tok.org != site.id || !strings.Contains(tok.label, site.name)) {
			t.Fatalf("site token not for the demo site: %+v", tok)
		}
	}
	var out bytes.Buffer
	printBanner(&out, banner{grpcAddr: "localhost:50051", metricsAddr: "localhost:9090", reflection: true,
		database: "db", privateDB: true, keysDir: dir, tokens: tokens, ttl: 12 * time.Hour})
	for _, want := range []string{
		"grpcurl -plaintext localhost:50051 list",
		"grpcurl -plaintext localhost:50051 grpc.health.v1.Health/Check",
		`-H "authorization: Bearer $PASSNUM_TOKEN_OPERATOR"`,
		"export PASSNUM_TOKEN_SITE=" + tokens[3].token,
		"http://localhost:9090/metrics",
		"valables 12 h",
		site.name,
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("banner lacks %q:\n%s", want, out.String())
		}
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// waitServing polls the health service until it answers SERVING.
func waitServing(t *testing.T, addr string, done <-chan error) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	deadline := time.Now().Add(2 * time.Minute)
	for {
		select {
		case err := <-done:
			t.Fatalf("server exited before serving: %v", err)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return conn
		}
		if time.Now().After(deadline) {
			t.Fatalf("not serving after 2 minutes: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func waitExit(t *testing.T, done <-chan error) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("server stopped with %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("server did not stop within a minute of its context ending")
	}
}

// migrate and serve against a real PostgreSQL: health without a token, RPCs refused
// without one and answered with one, metrics, and a clean stop when the context ends.
func TestMigrateAndServe(t *testing.T) {
	ctx := context.Background()
	url := testdb.NewEmpty(t)
	t.Setenv("DATABASE_URL", url)
	if err := dispatch(ctx, []string{"migrate", "-log-level", "error"}); err != nil {
		t.Fatal(err)
	}
	pool, err := dbmigrate.OpenApp(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	keysDir := t.TempDir()
	if _, err := auth.GenerateDevKeys(keysDir); err != nil {
		t.Fatal(err)
	}
	keys, err := auth.LoadJWKS(filepath.Join(keysDir, auth.JWKSFile))
	if err != nil {
		t.Fatal(err)
	}
	minter, err := auth.LoadMinter(filepath.Join(keysDir, auth.SigningKeyFile), auth.DefaultIssuer, auth.DefaultAudience)
	if err != nil {
		t.Fatal(err)
	}
	operator, err := minter.Mint(auth.Principal{Subject: "ops", Org: uuid.New(), Role: auth.RoleOperator}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}

	f := serveFlags{listen: "127.0.0.1:0", metricsListen: "127.0.0.1:0", reflection: true,
		issuer: auth.DefaultIssuer, audience: auth.DefaultAudience, shutdownTimeout: 5 * time.Second}
	logger, _ := newLogger("error")
	app, stopApp, err := newApp(pool, logger, vcode.RandomKeyring())
	if err != nil {
		t.Fatal(err)
	}
	defer stopApp()
	serveCtx, stop := context.WithCancel(ctx)
	defer stop()
	addrs := make(chan [2]string, 1)
	done := make(chan error, 1)
	go func() {
		done <- runServer(serveCtx, logger, f, keys, pool, app, func(g, m string) { addrs <- [2]string{g, m} })
	}()
	var a [2]string
	select {
	case a = <-addrs:
	case err := <-done:
		t.Fatalf("server exited: %v", err)
	}
	conn := waitServing(t, a[0], done)
	orgsClient := pb.NewOrganizationServiceClient(conn)
	_, err = orgsClient.ListOrganizations(ctx, &pb.ListOrganizationsRequest{})
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("RPC without token: %v", err)
	}
	authed := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+operator)
	if _, err := orgsClient.ListOrganizations(authed, &pb.ListOrganizationsRequest{}); err != nil {
		t.Fatalf("RPC with an operator token: %v", err)
	}
	// A write runs a ledger transaction, whose counter passnumd must serve too.
	if _, err := orgsClient.CreateOrganization(authed, &pb.CreateOrganizationRequest{IdempotencyKey: "metrics-test",
		Kind: pb.OrganizationKind_ORGANIZATION_KIND_FUNDER, Name: "Département test"}); err != nil {
		t.Fatalf("create a funder: %v", err)
	}
	resp, err := http.Get("http://" + a[1] + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"passnum_grpc_requests_total", "passnum_db_pool_max_connections", "go_goroutines",
		"passnum_db_tx_total", "passnum_redeem_batch_size", "passnum_redeem_queue_seconds"} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	stop()
	waitExit(t, done)
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// passnumd dev as make run uses it: a private persistent cluster under -var, dev keys,
// migrations, demo data, a banner whose tokens and example work; then a clean stop that
// keeps the data for the next run, which reuses it.
func TestDev(t *testing.T) {
	t.Setenv("DATABASE_URL", "")
	varDir := t.TempDir()
	out := &syncBuffer{}
	stdout = out
	t.Cleanup(func() { stdout = os.Stdout })
	exportRE := regexp.MustCompile(`export PASSNUM_TOKEN_SITE=(\S+)`)
	codeRE := regexp.MustCompile(`"code":"(PN-[0-9A-Z-]+)"`)
	for run := range 2 {
		out.mu.Lock()
		out.buf.Reset()
		out.mu.Unlock()
		addr := freeAddr(t)
		ctx, stop := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			done <- runDev(ctx, []string{"-var", varDir, "-listen", addr, "-metrics-listen", "", "-log-level", "error"})
		}()
		conn := waitServing(t, addr, done)
		for start := time.Now(); !strings.Contains(out.String(), "Ctrl-C"); time.Sleep(10 * time.Millisecond) {
			if time.Since(start) > 10*time.Second {
				t.Fatalf("run %d: serving but no banner:\n%s", run, out.String())
			}
		}
		banner := out.String()
		if n := strings.Count(banner, "organisation de démo"); n != len(auth.Roles()) {
			t.Fatalf("run %d: %d tokens for demo organisations, want %d:\n%s", run, n, len(auth.Roles()), banner)
		}
		tok, code := exportRE.FindStringSubmatch(banner), codeRE.FindStringSubmatch(banner)
		if tok == nil || code == nil {
			t.Fatalf("run %d: banner without site token or voucher example:\n%s", run, banner)
		}
		site := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tok[1])
		v, err := pb.NewVoucherServiceClient(conn).CheckVoucher(site, &pb.CheckVoucherRequest{Code: code[1]})
		if err != nil {
			t.Fatalf("run %d: the banner's CheckVoucher example fails: %v", run, err)
		}
		if v.GetStatus() != pb.VoucherStatus_VOUCHER_STATUS_AVAILABLE {
			t.Fatalf("run %d: example voucher is %s", run, v.GetStatus())
		}
		stop()
		waitExit(t, done)
		for _, p := range []string{"pg/PG_VERSION", "keys/" + auth.SigningKeyFile, "keys/" + auth.JWKSFile, "keys/" + voucherKeysFile} {
			if _, err := os.Stat(filepath.Join(varDir, p)); err != nil {
				t.Fatalf("run %d: %s missing: %v", run, p, err)
			}
		}
	}
	if err := pgcluster.StopDataDir(context.Background(), filepath.Join(varDir, "pg"), nil); err != nil {
		t.Fatal(err)
	}
}
