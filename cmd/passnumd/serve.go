package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/passnum/passnum/internal/auth"
	"github.com/passnum/passnum/internal/dbmigrate"
	"github.com/passnum/passnum/internal/programmes"
	"github.com/passnum/passnum/internal/vcode"
	"github.com/passnum/passnum/ledger"
	"github.com/passnum/passnum/server"
)

func runServe(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	var f serveFlags
	if err := f.register(fs, ""); err != nil {
		return err
	}
	jwks := fs.String("jwks", envOr("PASSNUM_JWKS", "var/keys/jwks.json"),
		"JWKS file of the Ed25519 keys that may sign tokens; list several to rotate (PASSNUM_JWKS)")
	voucherKeys := fs.String("voucher-keys", envOr("PASSNUM_VOUCHER_KEYS", "var/keys/"+voucherKeysFile),
		"file of the secret keys that make voucher codes, the first for new orders; never lose one whose codes are in use (PASSNUM_VOUCHER_KEYS)")
	var gc gcFlags
	gc.register(fs)
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
	url, err := databaseURL()
	if err != nil {
		return err
	}
	keys, err := auth.LoadJWKS(*jwks)
	if err != nil {
		return err
	}
	logger.Info("token keys loaded", "jwks", *jwks, "kids", keys.KeyIDs())
	vkeys, err := loadVoucherKeys(logger, *voucherKeys)
	if err != nil {
		return err
	}
	// Fewer collections under load, within a memory limit: see gc.go. Set once the
	// configuration is known to be good, just before the work starts.
	gcAttrs, unbounded := applyGC(gc, os.Getenv)
	logger.Info("garbage collector", gcAttrs...)
	if unbounded {
		logger.Warn("garbage collector off without a memory limit: the heap will grow without bound")
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
	return runServer(ctx, logger, f, keys, pool, app, nil)
}

// voucherKeysFile is the name of the voucher code key file in a keys directory.
const voucherKeysFile = "voucher-codes.keys"

// loadVoucherKeys reads the voucher code keys and logs their ids (never the keys).
func loadVoucherKeys(logger *slog.Logger, path string) (*vcode.Keyring, error) {
	ring, err := vcode.LoadKeyring(path)
	if err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(ring.Keys()))
	for _, k := range ring.Keys() {
		ids = append(ids, k.ID())
	}
	logger.Info("voucher code keys loaded", "file", path, "ids", ids, "current", ring.Current().ID())
	return ring, nil
}

// runServer serves app over gRPC (and metrics, if configured) until ctx is done, then
// stops gracefully: running RPCs get f.shutdownTimeout to finish before they are cut.
// ready, if not nil, is called once both listeners are open, with their addresses.
func runServer(ctx context.Context, logger *slog.Logger, f serveFlags, keys *auth.KeySet, pool *pgxpool.Pool,
	app server.App, ready func(grpcAddr, metricsAddr string)) error {
	if err := pool.Ping(ctx); err != nil {
		return fmt.Errorf("database: %w", err)
	}
	var reg *prometheus.Registry
	if f.metricsListen != "" {
		reg = prometheus.NewRegistry()
		reg.MustRegister(
			collectors.NewGoCollector(),
			collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
			poolCollector(pool),
		)
		reg.MustRegister(ledger.Collectors()...)
		reg.MustRegister(programmes.Collectors()...)
	}
	cfg := server.Config{
		Verifier:   auth.NewVerifier(keys, f.issuer, f.audience),
		Logger:     logger,
		Reflection: f.reflection,
	}
	if reg != nil {
		cfg.Metrics = reg
	}
	srv := server.New(cfg, app)

	lis, err := net.Listen("tcp", f.listen)
	if err != nil {
		return fmt.Errorf("gRPC listener: %w", err)
	}
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(lis) }()

	var metricsSrv *http.Server
	metricsAddr := ""
	if reg != nil {
		mlis, err := net.Listen("tcp", f.metricsListen)
		if err != nil {
			srv.Stop()
			return fmt.Errorf("metrics listener: %w", err)
		}
		metricsAddr = mlis.Addr().String()
		metricsSrv = &http.Server{Handler: metricsMux(reg), ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := metricsSrv.Serve(mlis); !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("metrics server: %w", err)
			}
		}()
	}
	logger.Info("serving", "grpc", lis.Addr().String(), "metrics", metricsAddr, "reflection", f.reflection)
	if ready != nil {
		ready(lis.Addr().String(), metricsAddr)
	}

	var serveErr error
	select {
	case <-ctx.Done():
		logger.Info("shutting down", "grace", f.shutdownTimeout.String())
	case serveErr = <-errc:
		logger.Error("server failed, shutting down", "error", serveErr)
	}
	stopped := make(chan struct{})
	go func() {
		srv.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(f.shutdownTimeout):
		logger.Warn("grace period over, cutting the remaining RPCs")
		srv.Stop()
		<-stopped
	}
	if metricsSrv != nil {
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := metricsSrv.Shutdown(shutdownCtx); err != nil {
			logger.Warn("metrics server shutdown", "error", err)
		}
	}
	logger.Info("stopped")
	return serveErr
}

func metricsMux(reg *prometheus.Registry) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// poolCollector exposes the application pool's connection counts.
func poolCollector(pool *pgxpool.Pool) prometheus.Collector {
	return &poolStats{
		pool:     pool,
		total:    prometheus.NewDesc("passnum_db_pool_connections", "Connections of the application pool, by state.", []string{"state"}, nil),
		max:      prometheus.NewDesc("passnum_db_pool_max_connections", "Size limit of the application pool.", nil, nil),
		waits:    prometheus.NewDesc("passnum_db_pool_acquire_waits_total", "Acquires that had to wait for a connection.", nil, nil),
		waitTime: prometheus.NewDesc("passnum_db_pool_acquire_wait_seconds_total", "Time spent waiting for a connection.", nil, nil),
	}
}

type poolStats struct {
	pool                        *pgxpool.Pool
	total, max, waits, waitTime *prometheus.Desc
}

func (p *poolStats) Describe(ch chan<- *prometheus.Desc) {
	ch <- p.total
	ch <- p.max
	ch <- p.waits
	ch <- p.waitTime
}

func (p *poolStats) Collect(ch chan<- prometheus.Metric) {
	s := p.pool.Stat()
	ch <- prometheus.MustNewConstMetric(p.total, prometheus.GaugeValue, float64(s.AcquiredConns()), "acquired")
	ch <- prometheus.MustNewConstMetric(p.total, prometheus.GaugeValue, float64(s.IdleConns()), "idle")
	ch <- prometheus.MustNewConstMetric(p.total, prometheus.GaugeValue, float64(s.ConstructingConns()), "constructing")
	ch <- prometheus.MustNewConstMetric(p.max, prometheus.GaugeValue, float64(s.MaxConns()))
	ch <- prometheus.MustNewConstMetric(p.waits, prometheus.CounterValue, float64(s.EmptyAcquireCount()))
	ch <- prometheus.MustNewConstMetric(p.waitTime, prometheus.CounterValue, s.EmptyAcquireWaitTime().Seconds())
}
