package ledger

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Pipeline is a READ COMMITTED transaction whose statements travel in batches, BEGIN in
// front of the first and COMMIT behind the last: a transaction of three batches costs three
// round trips instead of five. Each round trip wakes the server and the client up, which at
// moderate load costs more than most statements of a small batch; and COMMIT right behind the
// last writes releases their row locks without waiting for the client.
type Pipeline struct {
	conn      *pgx.Conn
	begun     bool
	committed bool
	retry     bool // an earlier attempt of the same transaction failed
}

var errPipelineCommitted = errors.New("pipeline: transaction already committed")

// Send runs b's statements in the transaction, in one round trip.
func (p *Pipeline) Send(ctx context.Context, b *pgx.Batch) error { return p.send(ctx, b, nil) }

// send runs b like Send, calling sent, if not nil, once b is written to the connection and
// before its results are read.
func (p *Pipeline) send(ctx context.Context, b *pgx.Batch, sent func()) error {
	if p.committed {
		return errPipelineCommitted
	}
	if !p.begun {
		withBegin := &pgx.Batch{QueuedQueries: make([]*pgx.QueuedQuery, 0, len(b.QueuedQueries)+1)}
		withBegin.Queue("BEGIN")
		withBegin.QueuedQueries = append(withBegin.QueuedQueries, b.QueuedQueries...)
		b = withBegin
		p.begun = true
	}
	br := p.conn.SendBatch(ctx, b)
	if sent != nil {
		sent()
	}
	return br.Close()
}

// Commit runs b's statements, if any, then commits, in one round trip. It queues COMMIT on b.
func (p *Pipeline) Commit(ctx context.Context, b *pgx.Batch) error { return p.commit(ctx, b, nil) }

// commit runs b and commits like Commit, calling sent as send does.
func (p *Pipeline) commit(ctx context.Context, b *pgx.Batch, sent func()) error {
	if p.committed {
		return errPipelineCommitted
	}
	if b == nil {
		b = &pgx.Batch{}
	}
	if !p.begun && b.Len() == 0 {
		p.committed = true // nothing ran: nothing to commit
		return nil
	}
	var rolledBack bool
	b.Queue("COMMIT").Exec(func(ct pgconn.CommandTag) error {
		rolledBack = ct.String() == "ROLLBACK"
		return nil
	})
	if err := p.send(ctx, b, sent); err != nil {
		return err
	}
	p.committed = true
	if rolledBack {
		return pgx.ErrTxCommitRollback
	}
	return nil
}

func (p *Pipeline) begin(ctx context.Context) error {
	if p.committed {
		return errPipelineCommitted
	}
	if p.begun {
		return nil
	}
	if _, err := p.conn.Exec(ctx, "BEGIN"); err != nil {
		return err
	}
	p.begun = true
	return nil
}

// Query runs one query in the transaction.
func (p *Pipeline) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	if err := p.begin(ctx); err != nil {
		return nil, err
	}
	return p.conn.Query(ctx, sql, args...)
}

// QueryRow runs one query in the transaction; errors are deferred to Scan.
func (p *Pipeline) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	if err := p.begin(ctx); err != nil {
		return errRow{err}
	}
	return p.conn.QueryRow(ctx, sql, args...)
}

// Exec runs one statement in the transaction.
func (p *Pipeline) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	if err := p.begin(ctx); err != nil {
		return pgconn.CommandTag{}, err
	}
	return p.conn.Exec(ctx, sql, args...)
}

// QueueGenericPlans queues on b the statements that queue adds, planned with generic plans.
// With an array parameter (= ANY($1), unnest) PostgreSQL makes a custom plan on every call
// while the arrays are small, its custom plans looking cheaper than a generic plan costed for
// ten elements (pg_stat_statements with track_planning: plans = calls); for the hot path's
// key lookups the generic plan is the same index scan, without the planning. SET LOCAL keeps
// the mode to those statements: triggers fired by the statements queued after keep theirs.
func QueueGenericPlans(b *pgx.Batch, queue func()) {
	b.Queue(`SET LOCAL plan_cache_mode = force_generic_plan`)
	queue()
	b.Queue(`SET LOCAL plan_cache_mode TO DEFAULT`)
}

type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

// rollbackTimeout bounds the ROLLBACK of a failed pipeline, which runs even when the caller's
// context is done.
const rollbackTimeout = 5 * time.Second

// RunPipelined runs fn in one Pipeline and commits it (when fn has not), with the retries of
// RunInTx. If fn fails, the transaction is rolled back.
func (l *Ledger) RunPipelined(ctx context.Context, op string, fn func(ctx context.Context, p *Pipeline) error) error {
	attempts := 0
	return l.retry(ctx, op, func() error {
		attempts++
		c, err := l.pool.Acquire(ctx)
		if err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
		defer c.Release()
		p := &Pipeline{conn: c.Conn(), retry: attempts > 1}
		err = fn(ctx, p)
		if err == nil && !p.committed {
			err = p.Commit(ctx, nil)
		}
		conn := c.Conn()
		if !conn.IsClosed() && conn.PgConn().TxStatus() != 'I' {
			rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
			defer cancel()
			if _, rbErr := conn.Exec(rctx, "ROLLBACK"); rbErr != nil {
				// A connection in an unknown transaction state must not go back to the pool.
				conn.Close(rctx)
			}
		}
		return err
	})
}
