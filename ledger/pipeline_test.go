package ledger_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/passnum/passnum/ledger"
)

// queuePost starts posting entries the way the redemption path does: the chain lock queued
// behind other statements and sent, then the ledger's writes queued on the batch it returns.
func queuePost(ctx context.Context, e *env, p *ledger.Pipeline, before string, entries ...ledger.Entry) (*pgx.Batch, error) {
	pp, err := e.l.PreparePost(ctx, p, entries...)
	if err != nil {
		return nil, err
	}
	b := &pgx.Batch{}
	if before != "" {
		b.Queue(before)
	}
	pp.QueueLock(b)
	if err := p.Send(ctx, b); err != nil {
		return nil, err
	}
	b = &pgx.Batch{}
	if _, err := pp.QueueWrite(b); err != nil {
		return nil, err
	}
	return b, nil
}

// pipelinePost posts entries and commits with the ledger's writes: each batch one round trip.
func pipelinePost(ctx context.Context, e *env, p *ledger.Pipeline, before string, entries ...ledger.Entry) error {
	b, err := queuePost(ctx, e, p, before, entries...)
	if err != nil {
		return err
	}
	return p.Commit(ctx, b)
}

// A pipelined transaction commits everything or nothing, whichever of its batches fails, and
// leaves its connection outside any transaction for the next user of the pool.
func TestRunPipelined(t *testing.T) {
	e := newEnv(t)
	p := newProgramme(t, e, 1, 1)
	ctx := context.Background()
	funder := p.Funders[0]
	p.fund(t, e, funder, 10_000)
	returned := p.ref(ledger.FunderReturned, funder)
	// Money handed back to the funder keeps every invariant of Verify without vouchers.
	give := func(amount int64) ledger.Entry {
		return p.entry(ledger.KindReturn, ledger.Move(p.unissued(), returned, amount))
	}
	post(t, e, give(1)) // opens the account

	for _, c := range []struct {
		name    string
		run     func(ctx context.Context, pl *ledger.Pipeline) error
		wantErr string // SQLSTATE, "" for success, "any" for a Go error
		moved   int64  // to the funder
	}{
		{"three round trips", func(ctx context.Context, pl *ledger.Pipeline) error {
			return pipelinePost(ctx, e, pl, "SELECT 1", give(100))
		}, "", 100},
		{"a query before any batch", func(ctx context.Context, pl *ledger.Pipeline) error {
			var one int
			if err := pl.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
				return err
			}
			return pipelinePost(ctx, e, pl, "", give(10))
		}, "", 10},
		{"committed by the runner", func(ctx context.Context, pl *ledger.Pipeline) error {
			b, err := queuePost(ctx, e, pl, "", give(1))
			if err != nil {
				return err
			}
			return pl.Send(ctx, b)
		}, "", 1},
		{"statement fails in the first batch", func(ctx context.Context, pl *ledger.Pipeline) error {
			return pipelinePost(ctx, e, pl, "SELECT 1/0", give(1_000))
		}, "22012", 0},
		{"statement fails in the committing batch", func(ctx context.Context, pl *ledger.Pipeline) error {
			return pipelinePost(ctx, e, pl, "", give(1_000_000)) // more than unissued holds
		}, "23514", 0},
		{"Go error after the writes", func(ctx context.Context, pl *ledger.Pipeline) error {
			b, err := queuePost(ctx, e, pl, "", give(1_000))
			if err != nil {
				return err
			}
			if err := pl.Send(ctx, b); err != nil {
				return err
			}
			return errors.New("changed my mind")
		}, "any", 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := balanceOf(t, e, returned)
			err := e.l.RunPipelined(ctx, "test_pipeline", c.run)
			var pgErr *pgconn.PgError
			switch {
			case c.wantErr == "" && err != nil:
				t.Fatalf("err = %v", err)
			case c.wantErr == "any" && err == nil, c.wantErr != "" && c.wantErr != "any" && (!errors.As(err, &pgErr) || pgErr.Code != c.wantErr):
				t.Fatalf("err = %v, want %s", err, c.wantErr)
			}
			if got := balanceOf(t, e, returned) - before; got != c.moved {
				t.Fatalf("%d moved, want %d", got, c.moved)
			}
			// Every pooled connection is idle, outside any transaction.
			var open int
			if err := e.db.Owner.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
				WHERE datname = current_database() AND state LIKE 'idle in transaction%'`).Scan(&open); err != nil {
				t.Fatal(err)
			}
			if open != 0 {
				t.Fatalf("%d connections left in a transaction", open)
			}
		})
	}
	rep, err := e.l.Verify(ctx, p.ID)
	if err != nil || !rep.OK {
		t.Fatalf("verify: %v %+v", err, rep)
	}
}

// A retryable failure runs the whole pipelined transaction again.
func TestRunPipelinedRetries(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	var attempts atomic.Int32
	err := e.l.RunPipelined(ctx, "test_pipeline_retry", func(ctx context.Context, pl *ledger.Pipeline) error {
		if attempts.Add(1) == 1 {
			b := &pgx.Batch{}
			b.Queue(`DO $$ BEGIN RAISE EXCEPTION 'conflict' USING ERRCODE = '40001'; END $$`)
			return pl.Send(ctx, b)
		}
		return pl.Commit(ctx, nil)
	})
	if err != nil || attempts.Load() != 2 {
		t.Fatalf("err = %v after %d attempts, want success after 2", err, attempts.Load())
	}
}

func balanceOf(t *testing.T, e *env, ref ledger.AccountRef) int64 {
	t.Helper()
	b, err := ledger.BalanceOf(context.Background(), e.db.App, ref)
	if err != nil {
		t.Fatalf("balance of %s: %v", ref, err)
	}
	return b
}
