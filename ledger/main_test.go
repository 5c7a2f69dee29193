package ledger_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"math/big"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/passnum/passnum/internal/ident"
	"github.com/passnum/passnum/internal/testdb"
	"github.com/passnum/passnum/ledger"
)

func TestMain(m *testing.M) { os.Exit(testdb.Main(m)) }

// tb is what the helpers need of a test: *testing.T, *testing.B and *rapid.T all have it.
type tb interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Errorf(format string, args ...any)
	FailNow()
}

// env is one test's database and a ledger over its application pool.
type env struct {
	db *testdb.DB
	l  *ledger.Ledger
}

func newEnv(t testing.TB) *env {
	t.Helper()
	db := testdb.New(t)
	return &env{db: db, l: ledger.New(db.App, nil)}
}

// programme is a programme with the domain rows around it (organisations, funders, a
// distributor, sites), so that voucher-level checks of Verify have real data to look at.
type programme struct {
	ID          uuid.UUID
	Operator    uuid.UUID // the organisation that writes its transactions
	Funders     []uuid.UUID
	Distributor uuid.UUID
	Sites       []uuid.UUID
	FaceValue   int64
	PerBook     int
	nextBook    int64
}

// newProgramme opens a programme with the given numbers of funders (shares split evenly,
// the first taking the rest) and sites.
func newProgramme(t tb, e *env, funders, sites int) *programme {
	t.Helper()
	p := &programme{ID: uuid.New(), Operator: uuid.New(), Distributor: uuid.New(), FaceValue: 1000, PerBook: 2}
	err := e.l.RunInTx(context.Background(), "test_programme", func(ctx context.Context, tx pgx.Tx) error {
		if err := ledger.OpenChain(ctx, tx, p.ID); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO organisations (id, kind, name) VALUES ($1, 'operator', 'Opérateur')`,
			p.Operator); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `
			INSERT INTO programmes (id, name, face_value_cents, vouchers_per_book, valid_from, valid_until,
			                        grace_days, territories, target_public_quota_bps, fee_bps, created_by)
			VALUES ($1, 'Pass test', $2, $3, '2026-01-01', '2026-12-31', 30, '{75}', 5000, 100, $4)`,
			p.ID, p.FaceValue, p.PerBook, p.Operator); err != nil {
			return err
		}
		for i := range funders {
			f := uuid.New()
			p.Funders = append(p.Funders, f)
			share := 10000 / funders
			if i == 0 {
				share += 10000 % funders
			}
			if _, err := tx.Exec(ctx, `INSERT INTO organisations (id, kind, name) VALUES ($1, 'funder', $2)`,
				f, fmt.Sprintf("Financeur %d", i+1)); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `INSERT INTO programme_funders (programme_id, funder_id, share_bps) VALUES ($1, $2, $3)`,
				p.ID, f, share); err != nil {
				return err
			}
		}
		if _, err := tx.Exec(ctx, `INSERT INTO organisations (id, kind, name, departement) VALUES ($1, 'distributor', 'Prescripteur', '75')`,
			p.Distributor); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO programme_distributors (programme_id, distributor_id) VALUES ($1, $2)`,
			p.ID, p.Distributor); err != nil {
			return err
		}
		for i := range sites {
			s := uuid.New()
			p.Sites = append(p.Sites, s)
			if _, err := tx.Exec(ctx, `INSERT INTO organisations (id, kind, name, departement, siret) VALUES ($1, 'site', $2, '75', $3)`,
				s, fmt.Sprintf("Lieu %d", i+1), randomSIRET(t)); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, `INSERT INTO sites (org_id) VALUES ($1)`, s); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("create programme: %v", err)
	}
	return p
}

// randomSIRET is a random Luhn-valid SIRET outside La Poste's range.
func randomSIRET(t tb) string {
	t.Helper()
	n, err := rand.Int(rand.Reader, big.NewInt(9_000_000_000_000))
	if err != nil {
		t.Fatal(err)
	}
	body := strconv.FormatInt(1_000_000_000_000+n.Int64(), 10) // 13 digits, never 356000000...
	return ident.CompleteSIRET(body)
}

// ref names an account of the programme.
func (p *programme) ref(kind ledger.AccountKind, owner uuid.UUID) ledger.AccountRef {
	return ledger.AccountRef{Programme: p.ID, Kind: kind, Owner: owner}
}

func (p *programme) unissued() ledger.AccountRef    { return p.ref(ledger.Unissued, uuid.Nil) }
func (p *programme) outstanding() ledger.AccountRef { return p.ref(ledger.Outstanding, uuid.Nil) }

// entry is a transaction of the programme written by its operator.
func (p *programme) entry(kind ledger.TxKind, postings ...[]ledger.Posting) ledger.Entry {
	e := ledger.Entry{Programme: p.ID, Kind: kind, Org: p.Operator}
	for _, ps := range postings {
		e.Postings = append(e.Postings, ps...)
	}
	return e
}

// funding is the entry for a funder paying amount, fee of it going to fees.
func (p *programme) funding(funder uuid.UUID, amount, fee int64) ledger.Entry {
	e := p.entry(ledger.KindFunding, []ledger.Posting{
		{Account: p.ref(ledger.FunderCashIn, funder), Amount: -amount},
		{Account: p.unissued(), Amount: amount - fee},
	})
	if fee > 0 {
		e.Postings = append(e.Postings, ledger.Posting{Account: p.ref(ledger.Fees, funder), Amount: fee})
	}
	return e
}

// fund posts a funding in its own transaction.
func (p *programme) fund(t tb, e *env, funder uuid.UUID, amount int64) {
	t.Helper()
	post(t, e, p.funding(funder, amount, 0))
}

// post posts entries in one transaction and fails the test on error.
func post(t tb, e *env, entries ...ledger.Entry) []ledger.Posted {
	t.Helper()
	var posted []ledger.Posted
	err := e.l.RunInTx(context.Background(), "test_post", func(ctx context.Context, tx pgx.Tx) error {
		var err error
		posted, err = e.l.Post(ctx, tx, entries...)
		return err
	})
	if err != nil {
		t.Fatalf("post: %v", err)
	}
	return posted
}

// issueBooks orders n books in tx: the issuance moves their face value from unissued to
// outstanding, and the books and their available vouchers are written. It returns the codes.
func (p *programme) issueBooks(ctx context.Context, l *ledger.Ledger, tx pgx.Tx, n int) ([]int64, error) {
	total := int64(n*p.PerBook) * p.FaceValue
	posted, err := l.Post(ctx, tx, p.entry(ledger.KindIssuance, ledger.Move(p.unissued(), p.outstanding(), total)))
	if err != nil {
		return nil, err
	}
	order := uuid.New()
	if _, err := tx.Exec(ctx, `
		INSERT INTO book_orders (id, programme_id, distributor_id, first_number, books, face_value_cents, tx_id, ordered_by)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		order, p.ID, p.Distributor, p.nextBook+1, n, p.FaceValue, posted[0].ID, p.Operator); err != nil {
		return nil, err
	}
	var all []int64
	for b := range n {
		number := p.nextBook + 1 + int64(b)
		codes := make([]int64, p.PerBook)
		for i := range codes {
			codes[i] = randomCode()
		}
		if _, err := tx.Exec(ctx, `
			INSERT INTO books (programme_id, number, order_id, distributor_id, voucher_codes)
			VALUES ($1, $2, $3, $4, $5)`, p.ID, number, order, p.Distributor, codes); err != nil {
			return nil, err
		}
		if _, err := tx.Exec(ctx, `
			INSERT INTO vouchers (code, programme_id, book_number, position, face_value_cents, status)
			SELECT c, $2, $3, i, $4, 'available' FROM unnest($1::bigint[]) WITH ORDINALITY AS u(c, i)`,
			codes, p.ID, number, p.FaceValue); err != nil {
			return nil, err
		}
		all = append(all, codes...)
	}
	p.nextBook += int64(n)
	return all, nil
}

func randomCode() int64 {
	n, err := rand.Int(rand.Reader, big.NewInt(1<<60-1))
	if err != nil {
		panic(err)
	}
	return n.Int64() + 1
}

// redeem redeems a voucher at a site in tx (round = previous rounds + 1) and returns the
// redemption's transaction id.
func (p *programme) redeem(ctx context.Context, l *ledger.Ledger, tx pgx.Tx, code int64, site uuid.UUID) (uuid.UUID, int16, error) {
	var round int16
	if err := tx.QueryRow(ctx, `
		UPDATE vouchers SET status = 'redeemed', rounds = rounds + 1 WHERE code = $1 AND status = 'available'
		RETURNING rounds`, code).Scan(&round); err != nil {
		return uuid.Nil, 0, fmt.Errorf("redeem %d: %w", code, err)
	}
	posted, err := l.Post(ctx, tx, p.entry(ledger.KindRedemption,
		ledger.Move(p.outstanding(), p.ref(ledger.SitePayable, site), p.FaceValue)))
	if err != nil {
		return uuid.Nil, 0, err
	}
	if _, err := tx.Exec(ctx, `
		INSERT INTO redemptions (voucher_code, round, programme_id, site_id, service, minutes, service_date,
		                         amount_cents, redeemed_at, tx_id)
		VALUES ($1, $2, $3, $4, 'Initiation', 60, '2026-03-02', $5, now(), $6)`,
		code, round, p.ID, site, p.FaceValue, posted[0].ID); err != nil {
		return uuid.Nil, 0, err
	}
	return posted[0].ID, round, nil
}

// reverseRedemption undoes a redemption in tx: the exact reversal of its transaction, the
// reversal record, and the voucher available again.
func (p *programme) reverseRedemption(ctx context.Context, l *ledger.Ledger, tx pgx.Tx, code int64, round int16, site, txID uuid.UUID) error {
	rev, err := ledger.ReversalOf(ctx, tx, txID, p.Operator, map[string]string{"reason": "error"})
	if err != nil {
		return err
	}
	posted, err := l.Post(ctx, tx, rev)
	if err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `
		INSERT INTO redemption_reversals (voucher_code, round, programme_id, site_id, reason, note, amount_cents,
		                                  reversed_at, reversed_by, tx_id)
		VALUES ($1, $2, $3, $4, 'error', 'Saisie en double', $5, now(), $6, $7)`,
		code, round, p.ID, site, p.FaceValue, p.Operator, posted[0].ID); err != nil {
		return err
	}
	_, err = tx.Exec(ctx, `UPDATE vouchers SET status = 'available' WHERE code = $1`, code)
	return err
}

// balances reads the programme's balances by account.
func balances(t tb, q ledger.Querier, programme uuid.UUID) map[ledger.AccountRef]int64 {
	t.Helper()
	bs, err := ledger.Balances(context.Background(), q, programme)
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[ledger.AccountRef]int64, len(bs))
	for _, b := range bs {
		out[b.Account] = b.Cents
	}
	return out
}

// verifyOK runs Verify and fails the test with the failed checks unless the report is OK.
func verifyOK(t tb, e *env, programme uuid.UUID) *ledger.Report {
	t.Helper()
	rep, err := e.l.Verify(context.Background(), programme)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if !rep.OK {
		for _, c := range rep.Checks {
			if !c.OK {
				t.Errorf("check %s failed: %s %v", c.Name, c.Detail, c.Figures)
			}
		}
		t.FailNow()
	}
	return rep
}

// pgCode is the SQLSTATE of err, or "".
func pgCode(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// pgConstraint is the constraint name of err, or "".
func pgConstraint(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.ConstraintName
	}
	return ""
}

// ctxTimeout is a context for one test, bounded so that a hang fails instead of blocking.
func ctxTimeout(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
