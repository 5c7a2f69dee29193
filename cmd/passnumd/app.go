package main

import (
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/passnum/passnum/internal/access"
	"github.com/passnum/passnum/internal/orgs"
	"github.com/passnum/passnum/internal/payouts"
	"github.com/passnum/passnum/internal/programmes"
	"github.com/passnum/passnum/internal/reports"
	"github.com/passnum/passnum/internal/vcode"
	"github.com/passnum/passnum/ledger"
	"github.com/passnum/passnum/server"
)

// newApp wires the domain services over the application pool: one line per server.App
// field. stop releases what the services hold (the redemption executors); call it after
// the gRPC server has stopped.
func newApp(pool *pgxpool.Pool, logger *slog.Logger, voucherKeys *vcode.Keyring) (app server.App, stop func(), err error) {
	l := ledger.New(pool, logger)
	pay, err := payouts.New(l, payouts.ConfigFromEnv())
	if err != nil {
		return server.App{}, nil, fmt.Errorf("payouts: %w", err)
	}
	progs := programmes.New(l, programmes.Options{Logger: logger, VoucherKeys: voucherKeys})
	return server.App{
		Access:     access.NewResolver(pool),
		Orgs:       orgs.New(l),
		Programmes: progs,
		Payouts:    pay,
		Reports:    reports.New(l),
		Ledger:     l,
	}, progs.Close, nil
}
