package ledger_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/passnum/passnum/ledger"
)

// postAtKnownHeads posts entries the way the redemption path does: in one round trip after
// the heads l knows, else locking them first. It reports whether the heads were known.
func postAtKnownHeads(ctx context.Context, l *ledger.Ledger, pl *ledger.Pipeline, entries ...ledger.Entry) (bool, error) {
	pp, err := l.PreparePost(ctx, pl, entries...)
	if err != nil {
		return false, err
	}
	b := &pgx.Batch{}
	b.Queue("SELECT 1") // the caller's own statements go first
	if _, ok, err := pp.CommitAtKnownHeads(ctx, pl, b); ok || err != nil {
		return ok, err
	}
	pp.QueueLock(b)
	if err := pl.Send(ctx, b); err != nil {
		return false, err
	}
	b = &pgx.Batch{}
	if _, err := pp.QueueWrite(b); err != nil {
		return false, err
	}
	return false, pl.Commit(ctx, b)
}

// A writer chains onto the heads its process left in one round trip, and only if the
// database's heads are still those: a head moved by another process (another Ledger) fails
// the attempt with a serialization failure, writing nothing, and the retry locks the head.
func TestCommitAtKnownHeads(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	p := newProgramme(t, e, 1, 1)
	funder := p.Funders[0]
	returned := p.ref(ledger.FunderReturned, funder)
	give := func(amount int64) ledger.Entry {
		return p.entry(ledger.KindReturn, ledger.Move(p.unissued(), returned, amount))
	}
	p.fund(t, e, funder, 10_000)       // by e.l, which now knows the head
	other := ledger.New(e.db.App, nil) // another process, with heads of its own

	for _, c := range []struct {
		name      string
		l         *ledger.Ledger
		known     []bool // per attempt: whether the heads were known
		wantErr   string // SQLSTATE of the first attempt, "" when it succeeds
		wantMoved int64
	}{
		{"heads the process left", e.l, []bool{true}, "", 1},
		{"the process's heads again", e.l, []bool{true}, "", 2},
		{"heads unknown to the process", other, []bool{false}, "", 3},
		{"head moved by another process", e.l, []bool{true, false}, "40001", 4},
		{"the other process's heads are now stale", other, []bool{true, false}, "40001", 5},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := balanceOf(t, e, returned)
			var known []bool
			var firstErr error
			err := c.l.RunPipelined(ctx, "test_known_heads", func(ctx context.Context, pl *ledger.Pipeline) error {
				ok, err := postAtKnownHeads(ctx, c.l, pl, give(c.wantMoved))
				known = append(known, ok)
				if len(known) == 1 {
					firstErr = err
				}
				return err
			})
			if err != nil {
				t.Fatalf("err = %v", err)
			}
			var pgErr *pgconn.PgError
			if c.wantErr == "" && firstErr != nil || c.wantErr != "" && (!errors.As(firstErr, &pgErr) || pgErr.Code != c.wantErr) {
				t.Fatalf("first attempt: %v, want %q", firstErr, c.wantErr)
			}
			if fmt.Sprint(known) != fmt.Sprint(c.known) {
				t.Fatalf("heads known per attempt: %v, want %v", known, c.known)
			}
			if got := balanceOf(t, e, returned) - before; got != c.wantMoved {
				t.Fatalf("%d moved, want %d (a failed attempt wrote nothing)", got, c.wantMoved)
			}
		})
	}
	rep, err := e.l.Verify(ctx, p.ID)
	if err != nil || !rep.OK {
		t.Fatalf("verify: %v %+v", err, rep)
	}
}

// Writers of two processes, several goroutines each, chain onto one programme at once, each
// onto the heads its process knows, including heads of transactions still in flight: every
// post lands exactly once, in one unbroken chain.
func TestCommitAtKnownHeadsConcurrently(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	p := newProgramme(t, e, 1, 1)
	funder := p.Funders[0]
	p.fund(t, e, funder, 1_000_000)
	returned := p.ref(ledger.FunderReturned, funder)
	post(t, e, p.entry(ledger.KindReturn, ledger.Move(p.unissued(), returned, 1)))
	start := balanceOf(t, e, returned)

	const writers, posts = 4, 25
	processes := []*ledger.Ledger{e.l, ledger.New(e.db.App, nil)}
	var (
		wg    sync.WaitGroup
		moved atomic.Int64
		known atomic.Int64
		errs  = make(chan error, writers*len(processes))
	)
	for w := range writers * len(processes) {
		l := processes[w%len(processes)]
		wg.Go(func() {
			for i := range posts {
				amount := int64(w*posts + i + 1)
				err := l.RunPipelined(ctx, "test_known_heads", func(ctx context.Context, pl *ledger.Pipeline) error {
					ok, err := postAtKnownHeads(ctx, l, pl,
						p.entry(ledger.KindReturn, ledger.Move(p.unissued(), returned, amount)))
					if ok && err == nil {
						known.Add(1)
					}
					return err
				})
				if err != nil {
					errs <- err
					return
				}
				moved.Add(amount)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := balanceOf(t, e, returned) - start; got != moved.Load() {
		t.Fatalf("%d moved, want %d", got, moved.Load())
	}
	if known.Load() == 0 {
		t.Fatal("no post was written at known heads")
	}
	t.Logf("%d of %d posts written at known heads", known.Load(), writers*len(processes)*posts)
	rep, err := e.l.Verify(ctx, p.ID)
	if err != nil || !rep.OK {
		t.Fatalf("verify: %v %+v", err, rep)
	}
}
