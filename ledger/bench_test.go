package ledger_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/passnum/passnum/internal/dbmigrate"
	"github.com/passnum/passnum/ledger"
)

// hotProgramme is a programme whose outstanding account holds plenty for redemption-like
// moves, and entries that each move one voucher's value from it to a site's payable.
func hotProgramme(b *testing.B, e *env) (*programme, func(n int) []ledger.Entry) {
	b.Helper()
	p := newProgramme(b, e, 1, 4)
	const cents = 1 << 50
	post(b, e, p.funding(p.Funders[0], cents, 0),
		p.entry(ledger.KindIssuance, ledger.Move(p.unissued(), p.outstanding(), cents)))
	var site atomic.Int64
	entries := func(n int) []ledger.Entry {
		entries := make([]ledger.Entry, n)
		for i := range entries {
			s := p.Sites[int(site.Add(1))%len(p.Sites)]
			entries[i] = p.entry(ledger.KindRedemption, ledger.Move(p.outstanding(), p.ref(ledger.SitePayable, s), p.FaceValue))
		}
		return entries
	}
	// Measure a ledger in its steady state: with some history and statistics.
	for range 10 {
		post(b, e, entries(100)...)
	}
	if _, err := e.db.Owner.Exec(context.Background(), `ANALYZE ledger_chains, accounts, transactions, postings`); err != nil {
		b.Fatal(err)
	}
	return p, entries
}

// BenchmarkPost posts one transaction, or a batch of 64, per database transaction.
func BenchmarkPost(b *testing.B) {
	e := newEnv(b)
	_, entries := hotProgramme(b, e)
	for _, batch := range []int{1, 64} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			es := entries(batch)
			for b.Loop() {
				post(b, e, es...)
			}
			b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "entries/s")
		})
	}
}

// BenchmarkHotOutstanding measures redemption-like moves (outstanding → site payable) in
// one programme, all contending for its chain head and its outstanding account, posted
// one entry per database transaction or in batches (group commit), by several goroutines.
// b.N is the number of entries. The figures in doc.go come from a server with fsync on:
//
//	go run ./cmd/withpg -- go test ./ledger -run '^$' -bench 'HotOutstanding|Post' -benchtime 20000x
func BenchmarkHotOutstanding(b *testing.B) {
	e := newEnv(b)
	for _, workers := range []int{8, 32} {
		// One connection per goroutine: the pool must not be what limits concurrency.
		pool, err := dbmigrate.OpenApp(context.Background(), withParam(e.db.URL, "pool_max_conns", fmt.Sprint(workers)))
		if err != nil {
			b.Fatal(err)
		}
		l := ledger.New(pool, nil)
		for _, batch := range []int{1, 16, 64} {
			b.Run(fmt.Sprintf("workers=%d/batch=%d", workers, batch), func(b *testing.B) {
				_, entries := hotProgramme(b, e)
				shareOut(b, workers, batch, func(n int) error {
					es := entries(n)
					return l.RunInTx(context.Background(), "bench_hot", func(ctx context.Context, tx pgx.Tx) error {
						_, err := l.Post(ctx, tx, es...)
						return err
					})
				})
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "entries/s")
			})
		}
		pool.Close()
	}
}

// shareOut measures workers goroutines doing b.N items between them, each taking at most
// batch at a time and passing their number to do, and fails b on the first error.
func shareOut(b *testing.B, workers, batch int, do func(n int) error) {
	var (
		left = atomic.Int64{}
		wg   sync.WaitGroup
		errs = make(chan error, workers)
	)
	left.Store(int64(b.N))
	b.ResetTimer()
	for range workers {
		wg.Go(func() {
			for {
				n := min(int64(batch), left.Add(-int64(batch))+int64(batch))
				if n <= 0 {
					return
				}
				if err := do(int(n)); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
}

// withParam adds key=value to a connection string, URL or keyword/value.
func withParam(conn, key, value string) string {
	if strings.Contains(conn, "://") {
		sep := "?"
		if strings.Contains(conn, "?") {
			sep = "&"
		}
		return conn + sep + key + "=" + value
	}
	return conn + " " + key + "=" + value
}
