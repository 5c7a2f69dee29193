package ledger

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/prometheus/client_golang/prometheus"
)

// The ledger's metrics are package-level, shared by every Ledger of the process, and
// registered by whoever serves them (Collectors): nothing goes to the global registry, which
// passnumd does not serve.
var (
	retriesTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "passnum_db_tx_retries_total",
		Help: "Database transactions retried after a serialization failure, deadlock or idempotency race.",
	}, []string{"op", "sqlstate"})
	txTotal = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "passnum_db_tx_total",
		Help: "Database transactions run, by operation and outcome.",
	}, []string{"op", "outcome"})
)

// Collectors are the ledger's metrics, to register with the registry a server exposes.
func Collectors() []prometheus.Collector { return []prometheus.Collector{retriesTotal, txTotal} }

const (
	maxAttempts  = 8
	retryBase    = 2 * time.Millisecond
	retryCeiling = 250 * time.Millisecond
)

// retryable reports whether a failed transaction can simply be run again: serialization
// failures (40001), deadlocks (40P01), and a concurrent first use of the same idempotency key
// (23505 on its primary key), after which the replay finds the committed result.
func retryable(err error) (string, bool) {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return "", false
	}
	switch {
	case pgErr.Code == "40001", pgErr.Code == "40P01":
		return pgErr.Code, true
	case pgErr.Code == "23505" && pgErr.ConstraintName == "idempotency_keys_pkey":
		return pgErr.Code, true
	}
	return "", false
}

// RunInTx runs fn in one database transaction (READ COMMITTED, with explicit row locks in
// the domain code) and commits it. It is the only retry loop of the code base: retryable
// failures are retried with full-jitter exponential backoff, each retry logged and counted.
func (l *Ledger) RunInTx(ctx context.Context, op string, fn func(ctx context.Context, tx pgx.Tx) error) error {
	return l.runInTx(ctx, op, pgx.TxOptions{}, fn)
}

// RunInSnapshot runs fn in a read-only REPEATABLE READ transaction: every query sees one
// consistent snapshot (verification, reports, exports).
func (l *Ledger) RunInSnapshot(ctx context.Context, op string, fn func(ctx context.Context, tx pgx.Tx) error) error {
	return l.runInTx(ctx, op, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, fn)
}

func (l *Ledger) runInTx(ctx context.Context, op string, opts pgx.TxOptions, fn func(ctx context.Context, tx pgx.Tx) error) error {
	return l.retry(ctx, op, func() error {
		return pgx.BeginTxFunc(ctx, l.pool, opts, func(tx pgx.Tx) error { return fn(ctx, tx) })
	})
}

// retry runs attempt, one whole transaction, until it succeeds, fails for good or runs out
// of attempts.
func (l *Ledger) retry(ctx context.Context, op string, attempt func() error) error {
	for n := 1; ; n++ {
		err := attempt()
		if err == nil {
			txTotal.WithLabelValues(op, "ok").Inc()
			return nil
		}
		// The heads this attempt chained onto or left may not be the database's.
		l.heads.forget()
		code, again := retryable(err)
		if !again || n == maxAttempts {
			txTotal.WithLabelValues(op, "error").Inc()
			if again {
				return fmt.Errorf("%s: gave up after %d attempts: %w", op, n, err)
			}
			return err
		}
		retriesTotal.WithLabelValues(op, code).Inc()
		wait := min(retryCeiling, retryBase<<(n-1))
		wait = time.Duration(rand.Int64N(int64(wait)) + 1)
		l.log.LogAttrs(ctx, slog.LevelWarn, "retrying transaction",
			slog.String("op", op), slog.String("sqlstate", code), slog.Int("attempt", n), slog.Duration("backoff", wait))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}
