// Package server is the gRPC face of passnum: it builds the grpc.Server with its
// interceptors (request id, logging, recovery, deadline, authentication, authorisation),
// registers the passnum services, health and reflection, and maps domain faults to gRPC
// statuses. It holds no SQL: handlers call the domain packages in App.
package server

import (
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	"github.com/passnum/passnum/internal/access"
	"github.com/passnum/passnum/internal/auth"
	"github.com/passnum/passnum/internal/orgs"
	"github.com/passnum/passnum/internal/payouts"
	"github.com/passnum/passnum/internal/programmes"
	"github.com/passnum/passnum/internal/reports"
	"github.com/passnum/passnum/ledger"
)

// Defaults applied by New to zero Config fields.
const (
	DefaultMaxRecvMsgBytes    = 4 << 20
	DefaultMaxHeaderListBytes = 16 << 10
	DefaultRequestTimeout     = 30 * time.Second
	DefaultStreamTimeout      = 10 * time.Minute
)

// Config is the server's configuration. Verifier is required; zero values elsewhere take
// the defaults above.
type Config struct {
	// Verifier checks bearer tokens.
	Verifier *auth.Verifier
	// Logger receives one JSON line per RPC; nil logs JSON to stderr.
	Logger *slog.Logger
	// Reflection registers the gRPC reflection service (grpcurl list/describe).
	Reflection bool
	// MaxRecvMsgBytes bounds a received message; larger ones get RESOURCE_EXHAUSTED.
	MaxRecvMsgBytes int
	// MaxHeaderListBytes bounds the request's metadata (HTTP/2 header list). gRPC's own
	// default is 16 MiB; ours leaves room for an 8 KiB authorization header and little else.
	MaxHeaderListBytes uint32
	// RequestTimeout is the server-side deadline of a unary RPC, applied when the client
	// sent none or a longer one.
	RequestTimeout time.Duration
	// StreamTimeout is the same for streaming RPCs (exports).
	StreamTimeout time.Duration
	// Metrics, if set, receives the RPC counters and latency histograms.
	Metrics prometheus.Registerer
}

// App holds the domain services the handlers call. Each service file adds the fields it
// needs.
type App struct {
	// Access tells who owns an object, for the object-level checks of authz.go.
	Access access.Ownership
	// Orgs registers organisations and qualifies and imports sites (organization.go).
	Orgs *orgs.Service
	// Reports computes spend reports (report.go).
	Reports *reports.Service
	// Payouts runs statements, payment files, expiry and close-out (payout.go).
	Payouts *payouts.Service
	// Programmes runs programmes, books and vouchers (programme.go, book.go, voucher.go).
	Programmes *programmes.Service
	// Ledger verifies the ledger and exports its journal (ledger.go).
	Ledger *ledger.Ledger
	// VoucherRate and VoucherBurst are the token bucket of CheckVoucher and RedeemVoucher
	// per site organisation (voucher.go); zero values take DefaultVoucherRate and
	// DefaultVoucherBurst, rate.Inf turns the limit off (load tests).
	VoucherRate  rate.Limit
	VoucherBurst int
}

// services is the one list of passnum gRPC services: each server/<service>.go provides a
// func registering its service with the App fields it needs, and adds one line here (plus
// its rows in the tables of authz.go).
var services = []func(s *grpc.Server, app App){
	registerOrganizations,
	registerReports,
	registerProgrammes,
	registerBooks,
	registerVouchers,
	registerLedger,
	registerPayouts,
}

// New builds the gRPC server with every passnum service, health (SERVING, no token) and,
// if cfg.Reflection, reflection (no token). It panics if cfg.Verifier is nil.
func New(cfg Config, app App) *grpc.Server {
	return build(cfg, app, passnumPolicy, services)
}

// build is New with the authorisation tables and the services given, so that tests can
// exercise the interceptors on a test service.
func build(cfg Config, app App, pol policy, register []func(*grpc.Server, App)) *grpc.Server {
	if cfg.Verifier == nil {
		panic("server.New: Config.Verifier is nil")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewJSONHandler(os.Stderr, nil))
	}
	if cfg.MaxRecvMsgBytes <= 0 {
		cfg.MaxRecvMsgBytes = DefaultMaxRecvMsgBytes
	}
	if cfg.MaxHeaderListBytes == 0 {
		cfg.MaxHeaderListBytes = DefaultMaxHeaderListBytes
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	if cfg.StreamTimeout <= 0 {
		cfg.StreamTimeout = DefaultStreamTimeout
	}
	m, err := newMetrics(cfg.Metrics)
	if err != nil {
		panic(fmt.Sprintf("server.New: register metrics: %v", err))
	}
	ic := &interceptors{
		logger:         cfg.Logger,
		verifier:       cfg.Verifier,
		authz:          &authorizer{policy: pol, owners: app.Access, logger: cfg.Logger},
		requestTimeout: cfg.RequestTimeout,
		streamTimeout:  cfg.StreamTimeout,
		metrics:        m,
	}
	s := grpc.NewServer(
		ic.unary(),
		ic.stream(),
		grpc.MaxRecvMsgSize(cfg.MaxRecvMsgBytes),
		grpc.MaxHeaderListSize(cfg.MaxHeaderListBytes),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             20 * time.Second,
			PermitWithoutStream: true,
		}),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionIdle: 15 * time.Minute,
			Time:              2 * time.Minute,
			Timeout:           20 * time.Second,
		}),
	)
	for _, r := range register {
		r(s, app)
	}
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	for name := range s.GetServiceInfo() {
		hs.SetServingStatus(name, healthpb.HealthCheckResponse_SERVING)
	}
	healthpb.RegisterHealthServer(s, hs)
	if cfg.Reflection {
		reflection.Register(s)
	}
	return s
}
