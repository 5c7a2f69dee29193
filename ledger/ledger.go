package ledger

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Ledger posts transactions and reads balances over one PostgreSQL pool. The pool must work as
// the application role (internal/dbmigrate.OpenApp): it cannot change the journal, only add to it.
type Ledger struct {
	pool     *pgxpool.Pool
	log      *slog.Logger
	accounts accountCache
	heads    headCache
}

// New returns a ledger over pool; a nil logger discards logs.
func New(pool *pgxpool.Pool, log *slog.Logger) *Ledger {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Ledger{pool: pool, log: log}
}

// Pool is the ledger's connection pool, for domain packages that run their own queries in
// transactions started by RunInTx.
func (l *Ledger) Pool() *pgxpool.Pool { return l.pool }

// OpenChain starts the journal of a new programme (its hash chain head). Every account and
// transaction belongs to a programme opened this way.
func OpenChain(ctx context.Context, tx pgx.Tx, programme uuid.UUID) error {
	if _, err := tx.Exec(ctx, `INSERT INTO ledger_chains (programme_id) VALUES ($1)`, programme); err != nil {
		return fmt.Errorf("open chain %s: %w", programme, err)
	}
	return nil
}
