package payouts

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/passnum/passnum/internal/auth"
	"github.com/passnum/passnum/internal/civil"
	"github.com/passnum/passnum/internal/fault"
	"github.com/passnum/passnum/internal/frtext"
	"github.com/passnum/passnum/ledger"
)

// Warning thresholds before the end of a programme's validity, in days.
const (
	Warning30 = 30
	Warning15 = 15
	Warning7  = 7
)

// Expiring is a programme nearing the end of its validity, with where its books stand.
type Expiring struct {
	Programme         uuid.UUID
	Name              string
	ValidUntil        time.Time
	DaysLeft          int32 // 0 on the last day of validity
	Warning           int32 // the threshold reached: 30, 15 or 7
	BooksIssued       int64 // ordered and not cancelled
	BooksHandedOut    int64
	BooksNotHandedOut int64 // still in stock at a distributor
	BooksStarted      int64 // with at least one voucher redeemed
}

// warningFor is the threshold a number of days left has reached.
func warningFor(daysLeft int32) int32 {
	switch {
	case daysLeft <= Warning7:
		return Warning7
	case daysLeft <= Warning15:
		return Warning15
	}
	return Warning30
}

// ListExpiring lists the open programmes whose validity ends within 30 days of today (zero:
// the current date in Paris), last day included, soonest first. The operator sees every
// programme; a funder the programmes it co-finances; a distributor the programmes it is
// eligible for, with the figures of its own books only.
func (s *Service) ListExpiring(ctx context.Context, p auth.Principal, today time.Time) ([]Expiring, error) {
	if err := requireRole(p, auth.RoleOperator, auth.RoleFunder, auth.RoleDistributor); err != nil {
		return nil, err
	}
	if today.IsZero() {
		today = s.today()
	}
	var funder, distributor *uuid.UUID
	switch p.Role {
	case auth.RoleFunder:
		funder = &p.Org
	case auth.RoleDistributor:
		distributor = &p.Org
	}
	var out []Expiring
	err := s.l.RunInSnapshot(ctx, "payouts.ListExpiring", func(ctx context.Context, tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `
			SELECT p.id, p.name, p.valid_until, p.valid_until - $1::date,
			       bk.issued, bk.handed_out, bk.in_stock, st.started
			  FROM programmes p
			 CROSS JOIN LATERAL (
			       SELECT count(*) FILTER (WHERE b.status <> 'cancelled') AS issued,
			              count(*) FILTER (WHERE b.status = 'handed_out') AS handed_out,
			              count(*) FILTER (WHERE b.status = 'in_stock') AS in_stock
			         FROM books b
			        WHERE b.programme_id = p.id AND ($3::uuid IS NULL OR b.distributor_id = $3)) bk
			 CROSS JOIN LATERAL (
			       SELECT count(DISTINCT v.book_number) AS started
			         FROM redemptions r
			         JOIN vouchers v ON v.code = r.voucher_code AND v.status = 'redeemed'
			         JOIN books b ON b.programme_id = v.programme_id AND b.number = v.book_number
			        WHERE r.programme_id = p.id AND ($3::uuid IS NULL OR b.distributor_id = $3)) st
			 WHERE p.status = 'open'
			   AND p.valid_until - $1::date BETWEEN 0 AND $4
			   AND ($2::uuid IS NULL OR EXISTS (
			        SELECT 1 FROM programme_funders f WHERE f.programme_id = p.id AND f.funder_id = $2))
			   AND ($3::uuid IS NULL OR EXISTS (
			        SELECT 1 FROM programme_distributors d WHERE d.programme_id = p.id AND d.distributor_id = $3))
			 ORDER BY p.valid_until, p.id`, today, funder, distributor, Warning30)
		if err != nil {
			return fmt.Errorf("list expiring programmes: %w", err)
		}
		out, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (Expiring, error) {
			var e Expiring
			err := row.Scan(&e.Programme, &e.Name, &e.ValidUntil, &e.DaysLeft,
				&e.BooksIssued, &e.BooksHandedOut, &e.BooksNotHandedOut, &e.BooksStarted)
			e.Warning = warningFor(e.DaysLeft)
			return e, err
		})
		if err != nil {
			return fmt.Errorf("list expiring programmes: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// CloseOut is one funder's close-out statement for a programme (or, with a nil Funder, the
// programme's totals over all its funders).
type CloseOut struct {
	Programme         uuid.UUID `json:"programme_id"`
	Funder            uuid.UUID `json:"funder_id"`
	PaidInCents       int64     `json:"paid_in_cents"`
	FeesCents         int64     `json:"fees_cents"`
	RedeemedPaidCents int64     `json:"redeemed_paid_cents"` // its share of what sites were paid
	OwedToSitesCents  int64     `json:"owed_to_sites_cents"` // its share of what sites are still owed
	ReturnedCents     int64     `json:"returned_cents"`
}

// Expiry is the outcome of a programme's expiry.
type Expiry struct {
	Programme       uuid.UUID  `json:"programme_id"`
	VouchersExpired int64      `json:"vouchers_expired"`
	BooksExpired    int64      `json:"books_expired"`
	ExpiredCents    int64      `json:"expired_cents"`
	ReturnedCents   int64      `json:"returned_cents"`
	CloseOuts       []CloseOut `json:"close_outs"`
}

func programmeNotFound(id uuid.UUID) error {
	return fault.New(fault.NotFound, "PROGRAMME_NOT_FOUND", "Ce programme n'existe pas.", "programme_id", id.String())
}

// ExpireProgramme closes a programme once its validity and grace period are over (from the
// day after valid_until + grace_days): its vouchers still in stock or available expire, its
// books in stock or handed out expire, the expired face value goes back to the unissued
// budget (ledger kind expiry), and the whole unissued budget is returned to the funders pro
// rata to their net contributions (kind return, see Allocate). A programme already expired
// returns the recorded outcome, whatever the idempotency key. Operator only.
func (s *Service) ExpireProgramme(ctx context.Context, p auth.Principal, key string, programme uuid.UUID) (Expiry, error) {
	if err := requireRole(p, auth.RoleOperator); err != nil {
		return Expiry{}, err
	}
	if err := requireKey(key); err != nil {
		return Expiry{}, err
	}
	op := ledger.Op{Name: "payouts.ExpireProgramme", Org: p.Org, Key: key,
		Request: struct{ Programme uuid.UUID }{programme}}
	return ledger.Do(ctx, s.l, op, func(ctx context.Context, tx pgx.Tx, reqHash []byte) (Expiry, error) {
		return s.expire(ctx, tx, p.Org, key, reqHash, programme)
	})
}

func (s *Service) expire(ctx context.Context, tx pgx.Tx, by uuid.UUID, key string, reqHash []byte, programme uuid.UUID) (Expiry, error) {
	var (
		validUntil time.Time
		grace      int32
		status     string
	)
	err := tx.QueryRow(ctx, `SELECT valid_until, grace_days, status FROM programmes WHERE id = $1 FOR UPDATE`,
		programme).Scan(&validUntil, &grace, &status)
	if errors.Is(err, pgx.ErrNoRows) {
		return Expiry{}, programmeNotFound(programme)
	}
	if err != nil {
		return Expiry{}, fmt.Errorf("expire programme %s: %w", programme, err)
	}
	if status == "expired" {
		return recordedExpiry(ctx, tx, programme)
	}
	expirableFrom := validUntil.AddDate(0, 0, int(grace)+1)
	if today := s.today(); today.Before(expirableFrom) {
		return Expiry{}, fault.New(fault.FailedPrecondition, "PROGRAMME_NOT_YET_EXPIRABLE",
			fmt.Sprintf("Le programme ne peut être clôturé qu'à partir du %s : ses chèques restent utilisables jusqu'au %s "+
				"(fin de validité le %s, plus %d jours de délai de grâce).",
				frtext.Date(expirableFrom), frtext.Date(expirableFrom.AddDate(0, 0, -1)), frtext.Date(validUntil), grace),
			"programme_id", programme.String(), "expirable_from", civil.FormatDate(expirableFrom))
	}

	// The chain head is locked by every ledger write of the programme: holding it, the
	// balances read below cannot move before this transaction posts.
	if _, err := tx.Exec(ctx, `SELECT 1 FROM ledger_chains WHERE programme_id = $1 FOR NO KEY UPDATE`, programme); err != nil {
		return Expiry{}, fmt.Errorf("expire programme %s: lock chain: %w", programme, err)
	}
	// Vouchers with rows of their own (handed out, or drawn codes) expire one by one; those of
	// keyed books never handed out have no rows and expire with their book.
	var vouchers, expired, unrowed, unrowedCents int64
	err = tx.QueryRow(ctx, `
		WITH v AS (
		    UPDATE vouchers SET status = 'expired', held_by = NULL, held_until = NULL
		     WHERE programme_id = $1 AND status IN ('in_stock', 'available')
		    RETURNING face_value_cents)
		SELECT count(*), coalesce(sum(face_value_cents), 0)::bigint FROM v`, programme).Scan(&vouchers, &expired)
	if err != nil {
		return Expiry{}, fmt.Errorf("expire programme %s: vouchers: %w", programme, err)
	}
	err = tx.QueryRow(ctx, `
		SELECT coalesce(sum(p.vouchers_per_book), 0)::bigint, coalesce(sum(p.vouchers_per_book * p.face_value_cents), 0)::bigint
		  FROM books b JOIN programmes p ON p.id = b.programme_id
		 WHERE b.programme_id = $1 AND b.status = 'in_stock' AND b.voucher_codes IS NULL`, programme).Scan(&unrowed, &unrowedCents)
	if err != nil {
		return Expiry{}, fmt.Errorf("expire programme %s: books in stock: %w", programme, err)
	}
	vouchers += unrowed
	expired += unrowedCents
	tag, err := tx.Exec(ctx, `
		UPDATE books SET status = 'expired', closed_at = now()
		 WHERE programme_id = $1 AND status IN ('in_stock', 'handed_out')`, programme)
	if err != nil {
		return Expiry{}, fmt.Errorf("expire programme %s: books: %w", programme, err)
	}
	books := tag.RowsAffected()

	bal, err := ledger.Balances(ctx, tx, programme)
	if err != nil {
		return Expiry{}, fmt.Errorf("expire programme %s: %w", programme, err)
	}
	totals := ledger.Totals(bal)
	if totals[ledger.Outstanding] != expired {
		return Expiry{}, fmt.Errorf("expire programme %s: outstanding is %d cents but the vouchers expiring are worth %d: "+
			"the books do not match the ledger, nothing was changed", programme, totals[ledger.Outstanding], expired)
	}
	funders, err := readContributions(ctx, tx, programme)
	if err != nil {
		return Expiry{}, err
	}
	toReturn := totals[ledger.Unissued] + expired
	parts, err := Allocate(toReturn, weightsOf(funders))
	if err != nil {
		return Expiry{}, fmt.Errorf("expire programme %s: %w", programme, err)
	}

	meta := map[string]string{"vouchers_expired": fmt.Sprint(vouchers), "books_expired": fmt.Sprint(books)}
	var entries []ledger.Entry
	if expired > 0 {
		entries = append(entries, ledger.Entry{
			Programme: programme, Kind: ledger.KindExpiry, Org: by, IdempotencyKey: key, RequestHash: reqHash,
			Metadata: meta,
			Postings: ledger.Move(
				ledger.AccountRef{Programme: programme, Kind: ledger.Outstanding},
				ledger.AccountRef{Programme: programme, Kind: ledger.Unissued}, expired),
		})
	}
	for i, f := range funders {
		if parts[i] == 0 {
			continue
		}
		entries = append(entries, ledger.Entry{
			Programme: programme, Kind: ledger.KindReturn, Org: by, IdempotencyKey: key, RequestHash: reqHash,
			Metadata: map[string]string{"funder_id": f.funder.String()},
			Postings: ledger.Move(
				ledger.AccountRef{Programme: programme, Kind: ledger.Unissued},
				ledger.AccountRef{Programme: programme, Kind: ledger.FunderReturned, Owner: f.funder}, parts[i]),
		})
	}
	if _, err := s.l.Post(ctx, tx, entries...); err != nil {
		return Expiry{}, fmt.Errorf("expire programme %s: %w", programme, err)
	}
	b := &pgx.Batch{}
	b.Queue(`UPDATE programmes SET status = 'expired', expired_at = now() WHERE id = $1`, programme)
	b.Queue(`
		INSERT INTO programme_closures (programme_id, vouchers_expired, books_expired, expired_cents, returned_cents, closed_by)
		VALUES ($1, $2, $3, $4, $5, $6)`, programme, vouchers, books, expired, toReturn, by)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return Expiry{}, fmt.Errorf("expire programme %s: %w", programme, err)
	}
	closeOuts, err := closeOuts(ctx, tx, programme)
	if err != nil {
		return Expiry{}, err
	}
	return Expiry{Programme: programme, VouchersExpired: vouchers, BooksExpired: books, ExpiredCents: expired,
		ReturnedCents: toReturn, CloseOuts: closeOuts}, nil
}

// recordedExpiry is the outcome of an earlier expiry, with the close-outs as they are now.
func recordedExpiry(ctx context.Context, q ledger.Querier, programme uuid.UUID) (Expiry, error) {
	e := Expiry{Programme: programme}
	err := q.QueryRow(ctx, `
		SELECT vouchers_expired, books_expired, expired_cents, returned_cents FROM programme_closures WHERE programme_id = $1`,
		programme).Scan(&e.VouchersExpired, &e.BooksExpired, &e.ExpiredCents, &e.ReturnedCents)
	if err != nil {
		return Expiry{}, fmt.Errorf("expiry of programme %s: %w", programme, err)
	}
	if e.CloseOuts, err = closeOuts(ctx, q, programme); err != nil {
		return Expiry{}, err
	}
	return e, nil
}

type contribution struct {
	funder uuid.UUID
	paidIn int64
	fees   int64
}

// readContributions returns what each funder of a programme paid in and was charged, in
// funder id order.
func readContributions(ctx context.Context, q ledger.Querier, programme uuid.UUID) ([]contribution, error) {
	rows, err := q.Query(ctx, `
		SELECT pf.funder_id, coalesce(sum(f.amount_cents), 0)::bigint, coalesce(sum(f.fee_cents), 0)::bigint
		  FROM programme_funders pf
		  LEFT JOIN fundings f ON f.programme_id = pf.programme_id AND f.funder_id = pf.funder_id
		 WHERE pf.programme_id = $1
		 GROUP BY pf.funder_id
		 ORDER BY pf.funder_id`, programme)
	if err != nil {
		return nil, fmt.Errorf("contributions to programme %s: %w", programme, err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (contribution, error) {
		var c contribution
		err := row.Scan(&c.funder, &c.paidIn, &c.fees)
		return c, err
	})
	if err != nil {
		return nil, fmt.Errorf("contributions to programme %s: %w", programme, err)
	}
	return out, nil
}

func weightsOf(cs []contribution) []Weight {
	ws := make([]Weight, len(cs))
	for i, c := range cs {
		ws[i] = Weight{Funder: c.funder, Cents: c.paidIn - c.fees}
	}
	return ws
}

// closeOuts computes every funder's close-out of a programme, in funder id order.
func closeOuts(ctx context.Context, q ledger.Querier, programme uuid.UUID) ([]CloseOut, error) {
	funders, err := readContributions(ctx, q, programme)
	if err != nil {
		return nil, err
	}
	bal, err := ledger.Balances(ctx, q, programme)
	if err != nil {
		return nil, fmt.Errorf("close-out of programme %s: %w", programme, err)
	}
	totals := ledger.Totals(bal)
	returned := make(map[uuid.UUID]int64)
	for _, b := range bal {
		if b.Account.Kind == ledger.FunderReturned {
			returned[b.Account.Owner] = b.Cents
		}
	}
	ws := weightsOf(funders)
	paid, err := Allocate(totals[ledger.SitePaid], ws)
	if err != nil {
		return nil, fmt.Errorf("close-out of programme %s: %w", programme, err)
	}
	owed, err := Allocate(totals[ledger.SitePayable], ws)
	if err != nil {
		return nil, fmt.Errorf("close-out of programme %s: %w", programme, err)
	}
	out := make([]CloseOut, len(funders))
	for i, f := range funders {
		out[i] = CloseOut{
			Programme: programme, Funder: f.funder,
			PaidInCents: f.paidIn, FeesCents: f.fees,
			RedeemedPaidCents: paid[i], OwedToSitesCents: owed[i],
			ReturnedCents: returned[f.funder],
		}
	}
	return out, nil
}

// GetCloseOut returns a funder's close-out statement for a programme: what it paid in, its
// fees, its share of what sites were paid and are still owed (split like returns, see
// Allocate), and what was returned to it. With a nil funder it returns the programme's
// totals (operator only). A funder may read only its own close-out, of a programme it
// co-finances.
func (s *Service) GetCloseOut(ctx context.Context, p auth.Principal, programme, funder uuid.UUID) (CloseOut, error) {
	if err := requireRole(p, auth.RoleOperator, auth.RoleFunder); err != nil {
		return CloseOut{}, err
	}
	if p.Role == auth.RoleFunder {
		if funder == uuid.Nil {
			funder = p.Org
		}
		if funder != p.Org {
			return CloseOut{}, fault.New(fault.PermissionDenied, "OBJECT_NOT_ALLOWED",
				"Un financeur ne peut consulter que son propre bilan de clôture.", "funder_id", funder.String())
		}
	}
	var out CloseOut
	err := s.l.RunInSnapshot(ctx, "payouts.GetCloseOut", func(ctx context.Context, tx pgx.Tx) error {
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM programmes WHERE id = $1)`, programme).Scan(&exists); err != nil {
			return fmt.Errorf("close-out of programme %s: %w", programme, err)
		}
		if !exists {
			return programmeNotFound(programme)
		}
		all, err := closeOuts(ctx, tx, programme)
		if err != nil {
			return err
		}
		if funder == uuid.Nil {
			out = CloseOut{Programme: programme}
			for _, c := range all {
				out.PaidInCents += c.PaidInCents
				out.FeesCents += c.FeesCents
				out.RedeemedPaidCents += c.RedeemedPaidCents
				out.OwedToSitesCents += c.OwedToSitesCents
				out.ReturnedCents += c.ReturnedCents
			}
			return nil
		}
		for _, c := range all {
			if c.Funder == funder {
				out = c
				return nil
			}
		}
		return fault.New(fault.NotFound, "FUNDER_NOT_IN_PROGRAMME",
			"Cet organisme ne finance pas ce programme.", "programme_id", programme.String(), "funder_id", funder.String())
	})
	if err != nil {
		return CloseOut{}, err
	}
	return out, nil
}
