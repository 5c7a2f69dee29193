package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/passnum/passnum/internal/auth"
	"github.com/passnum/passnum/internal/orgs"
	"github.com/passnum/passnum/internal/vcode"
	"github.com/passnum/passnum/ledger"
	pb "github.com/passnum/passnum/proto/passnum/v1"
)

// tokenTTL covers the longest run with room to spare.
const tokenTTL = 2 * time.Hour

// keys are the run's dev signing key and the operator's identity.
type keys struct {
	jwks     string // JWKS file passnumd verifies tokens with
	vouchers string // passnumd's voucher code key file
	minter   *auth.Minter
	operator uuid.UUID
}

func newKeys(dir string) (*keys, error) {
	if _, err := auth.GenerateDevKeys(dir); err != nil {
		return nil, err
	}
	m, err := auth.LoadMinter(filepath.Join(dir, auth.SigningKeyFile), auth.DefaultIssuer, auth.DefaultAudience)
	if err != nil {
		return nil, err
	}
	vouchers := filepath.Join(dir, "voucher-codes.keys")
	if _, err := vcode.GenerateKeyFile(vouchers); err != nil {
		return nil, err
	}
	return &keys{jwks: filepath.Join(dir, auth.JWKSFile), vouchers: vouchers, minter: m, operator: uuid.New()}, nil
}

// token mints a bearer token for org in role.
func (k *keys) token(role auth.Role, org uuid.UUID) (string, error) {
	t, err := k.minter.Mint(auth.Principal{Subject: "bench-" + string(role), Org: org, Role: role}, tokenTTL)
	if err != nil {
		return "", err
	}
	return "Bearer " + t, nil
}

// bootstrapOperator creates the operator's organisation, as a deployment's bootstrap does
// (operators are never created through the API).
func bootstrapOperator(ctx context.Context, pool *pgxpool.Pool, id uuid.UUID) error {
	l := ledger.New(pool, slog.Default())
	if _, err := orgs.New(l).EnsureOperator(ctx, id, "Opérateur Pass numérique (banc d'essai)"); err != nil {
		return fmt.Errorf("bootstrap operator: %w", err)
	}
	return nil
}

// ledgerVerify runs every ledger check over the whole database.
func ledgerVerify(ctx context.Context, pool *pgxpool.Pool) (*ledger.Report, error) {
	return ledger.New(pool, slog.Default()).Verify(ctx, uuid.Nil)
}

// api is a set of gRPC connections to passnumd with the service clients over each.
type api struct {
	keys  *keys
	conns []*grpc.ClientConn
	orgs  []pb.OrganizationServiceClient
	progs []pb.ProgrammeServiceClient
	books []pb.BookServiceClient
	vouch []pb.VoucherServiceClient

	operatorToken string
}

func dialAPI(addr string, n int, k *keys) (*api, error) {
	a := &api{keys: k}
	for range n {
		// Each connection its own HTTP/2 transport (no connection sharing between clients).
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithSharedWriteBuffer(true))
		if err != nil {
			a.close()
			return nil, err
		}
		a.conns = append(a.conns, conn)
		a.orgs = append(a.orgs, pb.NewOrganizationServiceClient(conn))
		a.progs = append(a.progs, pb.NewProgrammeServiceClient(conn))
		a.books = append(a.books, pb.NewBookServiceClient(conn))
		a.vouch = append(a.vouch, pb.NewVoucherServiceClient(conn))
	}
	var err error
	if a.operatorToken, err = k.token(auth.RoleOperator, k.operator); err != nil {
		a.close()
		return nil, err
	}
	return a, nil
}

func (a *api) close() {
	for _, c := range a.conns {
		c.Close()
	}
	a.conns = nil
}

// as returns ctx carrying the bearer token.
func as(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", token)
}
