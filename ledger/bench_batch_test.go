package ledger_test

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/passnum/passnum/internal/dbmigrate"
	"github.com/passnum/passnum/ledger"
)

// batchSites is the number of sites of the batch benchmarks: a batch of RedeemVoucher's
// size touches about one site payable account per redemption, as in production, where
// thousands of sites redeem.
const batchSites = 128

// manySitesProgramme is a funded programme with batchSites sites and an outstanding balance
// for any number of redemption-like moves.
func manySitesProgramme(b *testing.B, e *env) *programme {
	b.Helper()
	p := newProgramme(b, e, 1, batchSites)
	const cents = 1 << 50
	post(b, e, p.funding(p.Funders[0], cents, 0),
		p.entry(ledger.KindIssuance, ledger.Move(p.unissued(), p.outstanding(), cents)))
	return p
}

// siteEntries returns n redemption-like entries (outstanding → site payable), each to the
// next site in turn, so that a batch of batchSites entries touches every site once.
func siteEntries(p *programme, next *atomic.Int64, n int) []ledger.Entry {
	es := make([]ledger.Entry, n)
	for i := range es {
		s := p.Sites[int(next.Add(1))%len(p.Sites)]
		es[i] = p.entry(ledger.KindRedemption, ledger.Move(p.outstanding(), p.ref(ledger.SitePayable, s), p.FaceValue))
	}
	return es
}

// BenchmarkPostManySites posts a batch of 128 redemption-like entries to 128 different site
// accounts per database transaction, as a RedeemVoucher batch does: one posting insert, then
// the balance of 129 accounts moved by the postings trigger, in the programme's critical
// section.
func BenchmarkPostManySites(b *testing.B) {
	e := newEnv(b)
	p := manySitesProgramme(b, e)
	var next atomic.Int64
	for range 10 {
		post(b, e, siteEntries(p, &next, batchSites)...)
	}
	if _, err := e.db.Owner.Exec(context.Background(), `ANALYZE ledger_chains, accounts, transactions, postings`); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		es := siteEntries(p, &next, batchSites)
		post(b, e, es...)
	}
	b.ReportMetric(float64(b.N*batchSites)/b.Elapsed().Seconds(), "entries/s")
}

// BenchmarkPostingsTriggers measures, with PostgreSQL's own function statistics
// (track_functions = pl, read from pg_stat_xact_user_functions in the posting transaction),
// the time the postings' statement triggers take for one insert of 128 redemption-like
// entries (256 postings, 129 accounts): ledger_apply_postings (balances) and
// report_postings_inserted (the returned-to-funders report measure, which redemptions never
// touch). It runs as the owner, which may set track_functions; figures are µs per batch,
// median and minimum over the batches.
func BenchmarkPostingsTriggers(b *testing.B) {
	// others: accounts of other programmes (sites' payable accounts, 1 in 20 returned to a
	// funder), so that plans meet a table of a production's size, not only the few rows
	// of one test programme.
	for _, others := range []int{0, 50_000} {
		b.Run(fmt.Sprintf("others=%d", others), func(b *testing.B) { benchmarkPostingsTriggers(b, others) })
	}
}

func benchmarkPostingsTriggers(b *testing.B, others int) {
	e := newEnv(b)
	p := manySitesProgramme(b, e)
	ctx := context.Background()
	if others > 0 {
		const perProgramme = 100
		_, err := e.db.Owner.Exec(ctx, `
			WITH c AS (INSERT INTO ledger_chains (programme_id)
			           SELECT gen_random_uuid() FROM generate_series(1, $1::int / $2::int) RETURNING programme_id)
			INSERT INTO accounts (programme_id, kind, owner_id, normal_side, non_negative)
			SELECT c.programme_id, CASE WHEN i % 20 = 0 THEN 'funder_returned' ELSE 'site_payable' END,
			       gen_random_uuid(), 1, i % 20 = 0
			  FROM c, generate_series(1, $2::int) AS i`, others, perProgramme)
		if err != nil {
			b.Fatal(err)
		}
	}
	var next atomic.Int64
	for range 10 {
		post(b, e, siteEntries(p, &next, batchSites)...)
	}
	if _, err := e.db.Owner.Exec(ctx, `ANALYZE ledger_chains, accounts, transactions, postings`); err != nil {
		b.Fatal(err)
	}
	conn, err := e.db.Owner.Acquire(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `SET track_functions = 'pl'`); err != nil {
		b.Skipf("cannot track functions: %v", err)
	}
	var apply, report []float64 // ms per batch
	for b.Loop() {
		es := siteEntries(p, &next, batchSites)
		tx, err := conn.Begin(ctx)
		if err != nil {
			b.Fatal(err)
		}
		before, err := functionTimes(ctx, tx)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := e.l.Post(ctx, tx, es...); err != nil {
			b.Fatal(err)
		}
		after, err := functionTimes(ctx, tx)
		if err != nil {
			b.Fatal(err)
		}
		a, r := after["ledger_apply_postings"]-before["ledger_apply_postings"],
			after["report_postings_inserted"]-before["report_postings_inserted"]
		apply, report = append(apply, a), append(report, r)
		if err := tx.Commit(ctx); err != nil {
			b.Fatal(err)
		}
	}
	// Medians and minimums: the mean of a shared machine is mostly its neighbours.
	for _, f := range []struct {
		name string
		ms   []float64
	}{{"apply", apply}, {"report", report}} {
		slices.Sort(f.ms)
		b.ReportMetric(f.ms[len(f.ms)/2]*1000, f.name+"-p50-µs")
		b.ReportMetric(f.ms[0]*1000, f.name+"-min-µs")
	}
}

// BenchmarkRedemptionBatches writes redemption batches much as RedeemVoucher's executor does
// (internal/programmes, redeemBatch, before it wrote at known chain heads): in one transaction, the vouchers marked redeemed and
// the redemptions inserted (whose report trigger upserts the report_spend rows of their
// sites), then the ledger post (the programme's chain head, locked until commit), then the
// commit. With two workers, as the two executors of sessions 3 to 6, a worker's redemption
// insert overlaps the other's post and commit unless they wait for each other's report rows. b.N is the number
// of redemptions; insert-ms/batch is the time of the redemptions insert as the client sees
// it (waits included).
func BenchmarkRedemptionBatches(b *testing.B) {
	for _, workers := range []int{1, 2} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			e := newEnv(b)
			p := manySitesProgramme(b, e)
			ctx := context.Background()
			pool, err := dbmigrate.OpenApp(ctx, withParam(e.db.URL, "pool_max_conns", fmt.Sprint(workers)))
			if err != nil {
				b.Fatal(err)
			}
			defer pool.Close()
			l := ledger.New(pool, nil)

			const batch = 128
			warm := 10 * batch
			codes := handOutVouchers(b, e, p, warm+b.N)
			var (
				nextCode, nextSite atomic.Int64
				insertTime         atomic.Int64
				batches            atomic.Int64
			)
			take := func(n int) []int64 {
				end := int(nextCode.Add(int64(n)))
				return codes[end-n : end]
			}
			redeem := func(cs []int64) error {
				n := len(cs)
				var (
					rounds = make([]int16, n)
					progs  = make([]pgtype.UUID, n)
					sites  = make([]pgtype.UUID, n)
					txIDs  = make([]pgtype.UUID, n)
					es     = siteEntries(p, &nextSite, n)
				)
				for i := range cs {
					id, err := uuid.NewV7()
					if err != nil {
						return err
					}
					es[i].ID = id
					rounds[i] = 1
					progs[i] = pgtype.UUID{Bytes: p.ID, Valid: true}
					sites[i] = pgtype.UUID{Bytes: es[i].Postings[1].Account.Owner, Valid: true}
					txIDs[i] = pgtype.UUID{Bytes: id, Valid: true}
				}
				return l.RunInTx(ctx, "bench_redeem", func(ctx context.Context, tx pgx.Tx) error {
					if _, err := tx.Exec(ctx, `UPDATE vouchers SET status = 'redeemed', rounds = rounds + 1 WHERE code = ANY($1)`, cs); err != nil {
						return err
					}
					began := time.Now()
					if _, err := tx.Exec(ctx, `
						INSERT INTO redemptions (voucher_code, round, programme_id, site_id, service, minutes, service_date,
						                         amount_cents, redeemed_at, tx_id)
						SELECT c, r, pr, s, 'Initiation', 60, '2026-03-02', $5, now(), t
						  FROM unnest($1::bigint[], $2::smallint[], $3::uuid[], $4::uuid[], $6::uuid[]) AS u(c, r, pr, s, t)`,
						cs, rounds, progs, sites, p.FaceValue, txIDs); err != nil {
						return err
					}
					insertTime.Add(int64(time.Since(began)))
					batches.Add(1)
					_, err := l.Post(ctx, tx, es...)
					return err
				})
			}
			for range warm / batch {
				if err := redeem(take(batch)); err != nil {
					b.Fatal(err)
				}
			}
			if _, err := e.db.Owner.Exec(ctx, `ANALYZE`); err != nil {
				b.Fatal(err)
			}
			insertTime.Store(0)
			batches.Store(0)

			shareOut(b, workers, batch, func(n int) error { return redeem(take(n)) })
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "redemptions/s")
			if n := batches.Load(); n > 0 {
				b.ReportMetric(float64(insertTime.Load())/float64(n)/1e6, "insert-ms/batch")
			}
		})
	}
}

// handOutVouchers issues and hands out books holding at least n available vouchers of p,
// in a few statements (their value is already in manySitesProgramme's outstanding balance;
// the order references a token transfer), and returns their codes, book by book.
func handOutVouchers(b *testing.B, e *env, p *programme, n int) []int64 {
	b.Helper()
	ctx := context.Background()
	books := (n + p.PerBook - 1) / p.PerBook
	codes := make([]int64, 0, books*p.PerBook)
	for range books * p.PerBook {
		codes = append(codes, randomCode())
	}
	err := e.l.RunInTx(ctx, "bench_books", func(ctx context.Context, tx pgx.Tx) error {
		posted, err := e.l.Post(ctx, tx, p.entry(ledger.KindTransfer, ledger.Move(p.outstanding(), p.unissued(), 1)))
		if err != nil {
			return err
		}
		order := uuid.New()
		if _, err := tx.Exec(ctx, `
			INSERT INTO book_orders (id, programme_id, distributor_id, first_number, books, face_value_cents, tx_id, ordered_by)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
			order, p.ID, p.Distributor, p.nextBook+1, books, p.FaceValue, posted[0].ID, p.Operator); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `
			INSERT INTO books (programme_id, number, order_id, distributor_id, voucher_codes, status,
			                   target_public, territory, handed_out_at)
			SELECT $1, $2 + i, $3, $4, ($5::bigint[])[$6 * i + 1:$6 * (i + 1)], 'handed_out', i % 2 = 0, '75', now()
			  FROM generate_series(0, $7 - 1) AS i`,
			p.ID, p.nextBook+1, order, p.Distributor, codes, p.PerBook, books); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `
			INSERT INTO vouchers (code, programme_id, book_number, position, face_value_cents, status)
			SELECT c, $2, $3 + (i - 1) / $4, (i - 1) % $4 + 1, $5, 'available'
			  FROM unnest($1::bigint[]) WITH ORDINALITY AS u(c, i)`,
			codes, p.ID, p.nextBook+1, p.PerBook, p.FaceValue)
		return err
	})
	if err != nil {
		b.Fatalf("hand out vouchers: %v", err)
	}
	p.nextBook += int64(books)
	return codes
}

// functionTimes reads the time spent in the postings triggers' functions by this backend
// since its statistics were last flushed (PostgreSQL 15 reports pending figures, which
// span transactions: callers take differences within one transaction), in milliseconds.
func functionTimes(ctx context.Context, tx pgx.Tx) (map[string]float64, error) {
	rows, err := tx.Query(ctx, `
		SELECT funcname, total_time FROM pg_stat_xact_user_functions
		 WHERE funcname IN ('ledger_apply_postings', 'report_postings_inserted')`)
	if err != nil {
		return nil, err
	}
	times := make(map[string]float64)
	for rows.Next() {
		var name string
		var ms float64
		if err := rows.Scan(&name, &ms); err != nil {
			return nil, err
		}
		times[name] = ms
	}
	return times, rows.Err()
}
