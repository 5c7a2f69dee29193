package payouts

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/passnum/passnum/internal/auth"
	"github.com/passnum/passnum/internal/civil"
	"github.com/passnum/passnum/internal/fault"
	"github.com/passnum/passnum/internal/frtext"
	"github.com/passnum/passnum/internal/paging"
	"github.com/passnum/passnum/internal/vcode"
	"github.com/passnum/passnum/ledger"
)

// Statement statuses.
const (
	StatusDraft    = "draft"
	StatusApproved = "approved"
	StatusPaid     = "paid"
	StatusRejected = "rejected"
)

// Line kinds.
const (
	KindRedemption = "redemption" // a voucher redeemed at the site: the site is owed its value
	KindReversal   = "reversal"   // a redemption reversed: a negative line (clawback)
)

var statusLabels = map[string]string{
	StatusDraft:    "brouillon",
	StatusApproved: "validé",
	StatusPaid:     "payé",
	StatusRejected: "rejeté",
}

// Line is one line of a statement.
type Line struct {
	No          int32      `json:"line_no"`
	Kind        string     `json:"kind"`
	VoucherCode vcode.Code `json:"voucher_code"`
	Round       int16      `json:"round"`
	Programme   uuid.UUID  `json:"programme_id"`
	Service     string     `json:"service"`
	Minutes     int32      `json:"minutes"`
	ServiceDate time.Time  `json:"service_date"` // of the redemption, also on its reversal's line
	AmountCents int64      `json:"amount_cents"`
}

// Statement is a relevé de remboursement: what one site is owed up to a cut-off date. Zero
// times, nil ids and empty strings are steps not taken yet.
type Statement struct {
	ID               uuid.UUID    `json:"id"`
	Number           string       `json:"number"`
	Site             uuid.UUID    `json:"site_id"`
	Cutoff           time.Time    `json:"cutoff"`
	Status           string       `json:"status"`
	TotalCents       int64        `json:"total_cents"`
	LineCount        int32        `json:"line_count"`
	Lines            []Line       `json:"lines,omitempty"` // GetStatement only
	CreatedAt        time.Time    `json:"created_at"`
	CreatedBy        uuid.UUID    `json:"created_by"`
	ApprovedAt       time.Time    `json:"approved_at"`
	ApprovedBy       uuid.UUID    `json:"approved_by"`
	PaidAt           time.Time    `json:"paid_at"`
	PaidBy           uuid.UUID    `json:"paid_by"`
	PaidOn           time.Time    `json:"paid_on"`
	BankReference    string       `json:"bank_reference"`
	RejectedAt       time.Time    `json:"rejected_at"`
	RejectedBy       uuid.UUID    `json:"rejected_by"`
	RejectionReason  string       `json:"rejection_reason"`
	PaymentMessageID string       `json:"payment_message_id"`
	Ledger           []ledger.Ref `json:"ledger,omitempty"` // the payout transactions, once paid
}

const statementColumns = `s.id, s.number, s.site_id, s.cutoff, s.status, s.total_cents, s.line_count,
	s.created_at, s.created_by, s.approved_at, s.approved_by, s.paid_at, s.paid_by, s.paid_on,
	s.bank_reference, s.rejected_at, s.rejected_by, s.rejection_reason, s.payment_message_id`

func scanStatement(row pgx.Row) (*Statement, error) {
	var (
		st                              Statement
		approvedAt, paidAt, rejectedAt  *time.Time
		paidOn                          *time.Time
		approvedBy, paidBy, rejectedBy  *uuid.UUID
		bankRef, rejectionReason, msgID *string
	)
	if err := row.Scan(&st.ID, &st.Number, &st.Site, &st.Cutoff, &st.Status, &st.TotalCents, &st.LineCount,
		&st.CreatedAt, &st.CreatedBy, &approvedAt, &approvedBy, &paidAt, &paidBy, &paidOn,
		&bankRef, &rejectedAt, &rejectedBy, &rejectionReason, &msgID); err != nil {
		return nil, err
	}
	st.ApprovedAt, st.PaidAt, st.RejectedAt, st.PaidOn = deref(approvedAt), deref(paidAt), deref(rejectedAt), deref(paidOn)
	st.ApprovedBy, st.PaidBy, st.RejectedBy = deref(approvedBy), deref(paidBy), deref(rejectedBy)
	st.BankReference, st.RejectionReason, st.PaymentMessageID = deref(bankRef), deref(rejectionReason), deref(msgID)
	return &st, nil
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}

func statementNotFound(id uuid.UUID) error {
	return fault.New(fault.NotFound, "STATEMENT_NOT_FOUND", "Ce relevé de remboursement n'existe pas.",
		"statement_id", id.String())
}

// statementsLock serialises statement creation: two runs never compete for the same lines
// (the claims' primary key would refuse the second anyway) and numbers follow creation.
const statementsLock = int64(0x7061_7373_6e75_6d02)

// CreateStatements makes one draft statement per site for every redemption whose service
// date is on or before cutoff and every reversal made on or before cutoff (Paris time) that
// is not on a live statement yet (see the package doc for which reversals may ride and for
// sites whose net is not positive). It returns the statements created, without their lines,
// in number order; none when there is nothing to pay. Operator only.
func (s *Service) CreateStatements(ctx context.Context, p auth.Principal, key string, cutoff time.Time) ([]Statement, error) {
	if err := requireRole(p, auth.RoleOperator); err != nil {
		return nil, err
	}
	if err := requireKey(key); err != nil {
		return nil, err
	}
	if cutoff.IsZero() {
		return nil, fault.InvalidField("cutoff", "La date d'arrêté des relevés est obligatoire.")
	}
	if today := s.today(); cutoff.After(today) {
		return nil, fault.New(fault.Invalid, "CUTOFF_IN_FUTURE",
			fmt.Sprintf("La date d'arrêté (%s) ne peut pas être après aujourd'hui (%s).", frtext.Date(cutoff), frtext.Date(today)),
			"field", "cutoff", "cutoff", civil.FormatDate(cutoff))
	}
	op := ledger.Op{Name: "payouts.CreateStatements", Org: p.Org, Key: key,
		Request: struct{ Cutoff string }{civil.FormatDate(cutoff)}}
	return ledger.Do(ctx, s.l, op, func(ctx context.Context, tx pgx.Tx, _ []byte) ([]Statement, error) {
		return createStatements(ctx, tx, p.Org, cutoff)
	})
}

type poolLine struct {
	kind      string
	code      int64
	round     int16
	programme uuid.UUID
	site      uuid.UUID
	amount    int64
	date      time.Time
}

func createStatements(ctx context.Context, tx pgx.Tx, by uuid.UUID, cutoff time.Time) ([]Statement, error) {
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, statementsLock); err != nil {
		return nil, fmt.Errorf("create statements: lock: %w", err)
	}
	// The pool: redemptions and reversals up to the cut-off without a live claim. A reversal
	// rides only after its redemption was paid, or together with it.
	rows, err := tx.Query(ctx, `
		WITH r AS (
		    SELECT r.voucher_code, r.round, r.programme_id, r.site_id, r.amount_cents, r.service_date
		      FROM redemptions r
		     WHERE r.service_date <= $1
		       AND NOT EXISTS (SELECT 1 FROM statement_claims c
		                        WHERE c.kind = 'redemption' AND c.voucher_code = r.voucher_code AND c.round = r.round))
		SELECT 'redemption', voucher_code, round, programme_id, site_id, amount_cents, service_date FROM r
		UNION ALL
		SELECT 'reversal', v.voucher_code, v.round, v.programme_id, v.site_id, -v.amount_cents,
		       (v.reversed_at AT TIME ZONE 'Europe/Paris')::date
		  FROM redemption_reversals v
		 WHERE (v.reversed_at AT TIME ZONE 'Europe/Paris')::date <= $1
		   AND NOT EXISTS (SELECT 1 FROM statement_claims c
		                    WHERE c.kind = 'reversal' AND c.voucher_code = v.voucher_code AND c.round = v.round)
		   AND (EXISTS (SELECT 1 FROM r WHERE r.voucher_code = v.voucher_code AND r.round = v.round)
		        OR EXISTS (SELECT 1 FROM statement_claims c JOIN statements s ON s.id = c.statement_id
		                    WHERE c.kind = 'redemption' AND c.voucher_code = v.voucher_code AND c.round = v.round
		                      AND s.status = 'paid'))`, cutoff)
	if err != nil {
		return nil, fmt.Errorf("create statements: read the pool: %w", err)
	}
	bySite := make(map[uuid.UUID][]poolLine)
	for rows.Next() {
		var l poolLine
		if err := rows.Scan(&l.kind, &l.code, &l.round, &l.programme, &l.site, &l.amount, &l.date); err != nil {
			rows.Close()
			return nil, fmt.Errorf("create statements: read the pool: %w", err)
		}
		bySite[l.site] = append(bySite[l.site], l)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("create statements: read the pool: %w", err)
	}

	sites := make([]uuid.UUID, 0, len(bySite))
	for site := range bySite {
		sites = append(sites, site)
	}
	slices.SortFunc(sites, func(a, b uuid.UUID) int { return bytes.Compare(a[:], b[:]) })

	var (
		stID, stSite           []uuid.UUID
		stTotal                []int64
		stCount                []int32
		lStatement, lProgramme []uuid.UUID
		lNo                    []int32
		lKind                  []string
		lCode, lAmount         []int64
		lRound                 []int16
	)
	for _, site := range sites {
		lines := bySite[site]
		var net int64
		for _, l := range lines {
			net += l.amount
		}
		if net <= 0 {
			continue // carried over: see the package doc
		}
		slices.SortFunc(lines, func(a, b poolLine) int {
			return cmp.Or(a.date.Compare(b.date), cmp.Compare(a.kind, b.kind), cmp.Compare(a.code, b.code),
				cmp.Compare(a.round, b.round))
		})
		id, err := uuid.NewV7()
		if err != nil {
			return nil, fmt.Errorf("create statements: %w", err)
		}
		stID, stSite, stTotal, stCount = append(stID, id), append(stSite, site), append(stTotal, net), append(stCount, int32(len(lines)))
		for i, l := range lines {
			lStatement, lNo, lProgramme = append(lStatement, id), append(lNo, int32(i+1)), append(lProgramme, l.programme)
			lKind, lCode, lRound, lAmount = append(lKind, l.kind), append(lCode, l.code), append(lRound, l.round), append(lAmount, l.amount)
		}
	}
	if len(stID) == 0 {
		return nil, nil
	}

	b := &pgx.Batch{}
	b.Queue(`
		INSERT INTO statements (id, number, site_id, cutoff, total_cents, line_count, created_by)
		SELECT t.id, 'RLV-' || to_char($5::date, 'YYYY-MM') || '-' || lpad(nextval('statement_numbers')::text, 6, '0'),
		       t.site, $5, t.total, t.n, $6
		  FROM unnest($1::uuid[], $2::uuid[], $3::bigint[], $4::int[]) WITH ORDINALITY AS t(id, site, total, n, o)
		 ORDER BY t.o`, stID, stSite, stTotal, stCount, cutoff, by)
	b.Queue(`
		INSERT INTO statement_lines (statement_id, line_no, programme_id, kind, voucher_code, round, amount_cents)
		SELECT * FROM unnest($1::uuid[], $2::int[], $3::uuid[], $4::text[], $5::bigint[], $6::smallint[], $7::bigint[])`,
		lStatement, lNo, lProgramme, lKind, lCode, lRound, lAmount)
	// Check every total against its lines now, in this transaction, rather than at commit.
	b.Queue(`SET CONSTRAINTS statements_consistent IMMEDIATE`)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return nil, fmt.Errorf("create statements: write %d statements of %d lines: %w", len(stID), len(lNo), err)
	}
	return loadStatements(ctx, tx, `s.id = ANY($1) ORDER BY s.number`, stID)
}

// loadStatements reads statement headers (no lines) with their ledger references.
func loadStatements(ctx context.Context, q ledger.Querier, where string, args ...any) ([]Statement, error) {
	rows, err := q.Query(ctx, `SELECT `+statementColumns+` FROM statements s WHERE `+where, args...)
	if err != nil {
		return nil, fmt.Errorf("read statements: %w", err)
	}
	var out []Statement
	for rows.Next() {
		st, err := scanStatement(rows)
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("read statements: %w", err)
		}
		out = append(out, *st)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read statements: %w", err)
	}
	if err := attachLedger(ctx, q, out); err != nil {
		return nil, err
	}
	return out, nil
}

// attachLedger fills the payout transactions of the paid statements among sts.
func attachLedger(ctx context.Context, q ledger.Querier, sts []Statement) error {
	var paid []uuid.UUID
	at := make(map[uuid.UUID]int, len(sts))
	for i := range sts {
		if sts[i].Status == StatusPaid {
			paid = append(paid, sts[i].ID)
			at[sts[i].ID] = i
		}
	}
	if len(paid) == 0 {
		return nil
	}
	rows, err := q.Query(ctx, `
		SELECT p.statement_id, p.tx_id, p.programme_id, t.seq
		  FROM statement_payouts p JOIN transactions t ON t.id = p.tx_id
		 WHERE p.statement_id = ANY($1)
		 ORDER BY p.statement_id, p.programme_id`, paid)
	if err != nil {
		return fmt.Errorf("read payout transactions: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			id  uuid.UUID
			ref ledger.Ref
		)
		if err := rows.Scan(&id, &ref.TransactionID, &ref.Programme, &ref.Seq); err != nil {
			return fmt.Errorf("read payout transactions: %w", err)
		}
		sts[at[id]].Ledger = append(sts[at[id]].Ledger, ref)
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read payout transactions: %w", err)
	}
	return nil
}

// lockStatement reads a statement for update.
func lockStatement(ctx context.Context, tx pgx.Tx, id uuid.UUID) (*Statement, error) {
	st, err := scanStatement(tx.QueryRow(ctx, `SELECT `+statementColumns+` FROM statements s WHERE s.id = $1 FOR UPDATE`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, statementNotFound(id)
	}
	if err != nil {
		return nil, fmt.Errorf("lock statement %s: %w", id, err)
	}
	return st, nil
}

func reloadStatement(ctx context.Context, tx pgx.Tx, id uuid.UUID) (Statement, error) {
	sts, err := loadStatements(ctx, tx, `s.id = $1`, id)
	if err != nil {
		return Statement{}, err
	}
	if len(sts) != 1 {
		return Statement{}, statementNotFound(id)
	}
	return sts[0], nil
}

func wrongStatus(reason, action string, st *Statement) error {
	return fault.New(fault.FailedPrecondition, reason,
		fmt.Sprintf("%s : le relevé %s est « %s ».", action, st.Number, statusLabels[st.Status]),
		"statement_id", st.ID.String(), "status", st.Status)
}

// ApproveStatement validates a draft statement for payment. Operator only.
func (s *Service) ApproveStatement(ctx context.Context, p auth.Principal, key string, id uuid.UUID) (Statement, error) {
	if err := requireRole(p, auth.RoleOperator); err != nil {
		return Statement{}, err
	}
	if err := requireKey(key); err != nil {
		return Statement{}, err
	}
	op := ledger.Op{Name: "payouts.ApproveStatement", Org: p.Org, Key: key, Request: struct{ ID uuid.UUID }{id}}
	return ledger.Do(ctx, s.l, op, func(ctx context.Context, tx pgx.Tx, _ []byte) (Statement, error) {
		st, err := lockStatement(ctx, tx, id)
		if err != nil {
			return Statement{}, err
		}
		if st.Status != StatusDraft {
			return Statement{}, wrongStatus("STATEMENT_NOT_DRAFT", "Seul un relevé en brouillon peut être validé", st)
		}
		if _, err := tx.Exec(ctx, `
			UPDATE statements SET status = 'approved', approved_at = now(), approved_by = $2 WHERE id = $1`,
			id, p.Org); err != nil {
			return Statement{}, fmt.Errorf("approve statement %s: %w", st.Number, err)
		}
		return reloadStatement(ctx, tx, id)
	})
}

// MaxReasonLength bounds a rejection reason, in characters.
const MaxReasonLength = 500

// RejectStatement rejects a draft or approved statement with a reason: its lines go back to
// the pool and will be on the next statement of the site. Operator only.
func (s *Service) RejectStatement(ctx context.Context, p auth.Principal, key string, id uuid.UUID, reason string) (Statement, error) {
	if err := requireRole(p, auth.RoleOperator); err != nil {
		return Statement{}, err
	}
	if err := requireKey(key); err != nil {
		return Statement{}, err
	}
	reason = strings.TrimSpace(reason)
	if reason == "" {
		return Statement{}, fault.New(fault.Invalid, "REJECTION_REASON_REQUIRED",
			"Indiquez pourquoi le relevé est rejeté.", "field", "reason")
	}
	if utf8.RuneCountInString(reason) > MaxReasonLength {
		return Statement{}, fault.New(fault.Invalid, "REJECTION_REASON_TOO_LONG",
			fmt.Sprintf("Le motif de rejet ne doit pas dépasser %d caractères.", MaxReasonLength), "field", "reason")
	}
	op := ledger.Op{Name: "payouts.RejectStatement", Org: p.Org, Key: key,
		Request: struct {
			ID     uuid.UUID
			Reason string
		}{id, reason}}
	return ledger.Do(ctx, s.l, op, func(ctx context.Context, tx pgx.Tx, _ []byte) (Statement, error) {
		st, err := lockStatement(ctx, tx, id)
		if err != nil {
			return Statement{}, err
		}
		if st.Status != StatusDraft && st.Status != StatusApproved {
			return Statement{}, wrongStatus("STATEMENT_NOT_REJECTABLE",
				"Seul un relevé en brouillon ou validé peut être rejeté", st)
		}
		if _, err := tx.Exec(ctx, `
			UPDATE statements SET status = 'rejected', rejected_at = now(), rejected_by = $2, rejection_reason = $3
			 WHERE id = $1`, id, p.Org, reason); err != nil {
			return Statement{}, fmt.Errorf("reject statement %s: %w", st.Number, err)
		}
		return reloadStatement(ctx, tx, id)
	})
}

// MaxBankReferenceLength bounds a bank reference, in characters.
const MaxBankReferenceLength = 140

// MarkStatementPaid records the bank transfer of an approved statement: for each programme on
// the statement whose lines do not net to zero, one payout ledger transaction moves that net
// from the site's payable account to its paid account; the statement becomes paid and never
// changes again. paidOn is the date of the transfer: not before the cut-off, not in the
// future. Operator only.
func (s *Service) MarkStatementPaid(ctx context.Context, p auth.Principal, key string, id uuid.UUID, bankReference string, paidOn time.Time) (Statement, error) {
	if err := requireRole(p, auth.RoleOperator); err != nil {
		return Statement{}, err
	}
	if err := requireKey(key); err != nil {
		return Statement{}, err
	}
	bankReference = strings.TrimSpace(bankReference)
	if bankReference == "" || utf8.RuneCountInString(bankReference) > MaxBankReferenceLength {
		return Statement{}, fault.New(fault.Invalid, "INVALID_BANK_REFERENCE",
			fmt.Sprintf("Indiquez la référence du virement donnée par la banque (%d caractères au plus).", MaxBankReferenceLength),
			"field", "bank_reference")
	}
	if paidOn.IsZero() {
		return Statement{}, fault.InvalidField("paid_on", "Indiquez la date du virement.")
	}
	if today := s.today(); paidOn.After(today) {
		return Statement{}, fault.New(fault.Invalid, "PAID_ON_IN_FUTURE",
			fmt.Sprintf("La date du virement (%s) ne peut pas être après aujourd'hui (%s).", frtext.Date(paidOn), frtext.Date(today)),
			"field", "paid_on")
	}
	op := ledger.Op{Name: "payouts.MarkStatementPaid", Org: p.Org, Key: key,
		Request: struct {
			ID            uuid.UUID
			BankReference string
			PaidOn        string
		}{id, bankReference, civil.FormatDate(paidOn)}}
	return ledger.Do(ctx, s.l, op, func(ctx context.Context, tx pgx.Tx, reqHash []byte) (Statement, error) {
		st, err := lockStatement(ctx, tx, id)
		if err != nil {
			return Statement{}, err
		}
		if st.Status != StatusApproved {
			return Statement{}, wrongStatus("STATEMENT_NOT_APPROVED", "Seul un relevé validé peut être marqué payé", st)
		}
		if paidOn.Before(st.Cutoff) {
			return Statement{}, fault.New(fault.Invalid, "PAID_ON_BEFORE_CUTOFF",
				fmt.Sprintf("La date du virement (%s) ne peut pas précéder la date d'arrêté du relevé (%s).",
					frtext.Date(paidOn), frtext.Date(st.Cutoff)), "field", "paid_on")
		}
		if err := s.postPayout(ctx, tx, p.Org, key, reqHash, st, bankReference, paidOn); err != nil {
			return Statement{}, err
		}
		return reloadStatement(ctx, tx, id)
	})
}

func (s *Service) postPayout(ctx context.Context, tx pgx.Tx, by uuid.UUID, key string, reqHash []byte,
	st *Statement, bankReference string, paidOn time.Time) error {
	rows, err := tx.Query(ctx, `
		SELECT programme_id, sum(amount_cents)::bigint FROM statement_lines
		 WHERE statement_id = $1 GROUP BY programme_id HAVING sum(amount_cents) <> 0 ORDER BY programme_id`, st.ID)
	if err != nil {
		return fmt.Errorf("pay statement %s: %w", st.Number, err)
	}
	var entries []ledger.Entry
	for rows.Next() {
		var (
			prog uuid.UUID
			net  int64
		)
		if err := rows.Scan(&prog, &net); err != nil {
			rows.Close()
			return fmt.Errorf("pay statement %s: %w", st.Number, err)
		}
		entries = append(entries, ledger.Entry{
			Programme:      prog,
			Kind:           ledger.KindPayout,
			EffectiveAt:    midnightParis(paidOn),
			Org:            by,
			IdempotencyKey: key,
			RequestHash:    reqHash,
			Metadata: map[string]string{
				"statement_id":     st.ID.String(),
				"statement_number": st.Number,
				"bank_reference":   bankReference,
			},
			Postings: ledger.Move(
				ledger.AccountRef{Programme: prog, Kind: ledger.SitePayable, Owner: st.Site},
				ledger.AccountRef{Programme: prog, Kind: ledger.SitePaid, Owner: st.Site},
				net),
		})
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("pay statement %s: %w", st.Number, err)
	}
	posted, err := s.l.Post(ctx, tx, entries...)
	if err != nil {
		return fmt.Errorf("pay statement %s: %w", st.Number, err)
	}
	progs := make([]uuid.UUID, len(posted))
	txIDs := make([]uuid.UUID, len(posted))
	amounts := make([]int64, len(posted))
	for i, e := range entries {
		progs[i], txIDs[i], amounts[i] = e.Programme, posted[i].ID, e.Postings[1].Amount
	}
	b := &pgx.Batch{}
	b.Queue(`
		INSERT INTO statement_payouts (statement_id, programme_id, tx_id, amount_cents)
		SELECT $1, * FROM unnest($2::uuid[], $3::uuid[], $4::bigint[])`, st.ID, progs, txIDs, amounts)
	b.Queue(`
		UPDATE statements SET status = 'paid', paid_at = now(), paid_by = $2, paid_on = $3, bank_reference = $4
		 WHERE id = $1`, st.ID, by, paidOn, bankReference)
	// The database checks the payouts against the lines now rather than at commit.
	b.Queue(`SET CONSTRAINTS statements_consistent, statement_payouts_for_paid IMMEDIATE`)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("pay statement %s: %w", st.Number, err)
	}
	return nil
}

// GetStatement returns a statement with its lines. The operator sees every statement, a site
// its own; any other is reported as not found.
func (s *Service) GetStatement(ctx context.Context, p auth.Principal, id uuid.UUID) (*Statement, error) {
	if err := requireRole(p, auth.RoleOperator, auth.RoleSite); err != nil {
		return nil, err
	}
	var st *Statement
	err := s.l.RunInSnapshot(ctx, "payouts.GetStatement", func(ctx context.Context, tx pgx.Tx) error {
		sts, err := loadStatements(ctx, tx, `s.id = $1 AND ($2::uuid IS NULL OR s.site_id = $2)`, id, siteScope(p))
		if err != nil {
			return err
		}
		if len(sts) == 0 {
			return statementNotFound(id)
		}
		st = &sts[0]
		st.Lines, err = readLines(ctx, tx, id)
		return err
	})
	if err != nil {
		return nil, err
	}
	return st, nil
}

// siteScope is the site a caller's statements are restricted to: nil for the operator.
func siteScope(p auth.Principal) *uuid.UUID {
	if p.Role == auth.RoleOperator {
		return nil
	}
	return &p.Org
}

func readLines(ctx context.Context, q ledger.Querier, id uuid.UUID) ([]Line, error) {
	rows, err := q.Query(ctx, `
		SELECT l.line_no, l.kind, l.voucher_code, l.round, l.programme_id, r.service, r.minutes, r.service_date,
		       l.amount_cents
		  FROM statement_lines l
		  JOIN redemptions r ON r.voucher_code = l.voucher_code AND r.round = l.round
		 WHERE l.statement_id = $1
		 ORDER BY l.line_no`, id)
	if err != nil {
		return nil, fmt.Errorf("read lines of statement %s: %w", id, err)
	}
	lines, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Line, error) {
		var l Line
		err := row.Scan(&l.No, &l.Kind, &l.VoucherCode, &l.Round, &l.Programme, &l.Service, &l.Minutes,
			&l.ServiceDate, &l.AmountCents)
		return l, err
	})
	if err != nil {
		return nil, fmt.Errorf("read lines of statement %s: %w", id, err)
	}
	return lines, nil
}

// ListFilter narrows ListStatements; zero fields do not filter.
type ListFilter struct {
	Site   uuid.UUID
	Status string
}

// ListStatements lists statements, newest first, without their lines. The operator sees
// every statement; a site only its own (the filter is in the query), and naming another site
// is refused.
func (s *Service) ListStatements(ctx context.Context, p auth.Principal, f ListFilter, page paging.Request) ([]Statement, string, error) {
	if err := requireRole(p, auth.RoleOperator, auth.RoleSite); err != nil {
		return nil, "", err
	}
	if p.Role != auth.RoleOperator && f.Site != uuid.Nil && f.Site != p.Org {
		return nil, "", fault.New(fault.PermissionDenied, "OBJECT_NOT_ALLOWED",
			"Vous ne pouvez consulter que les relevés de votre lieu.", "site_id", f.Site.String())
	}
	if _, ok := statusLabels[f.Status]; f.Status != "" && !ok {
		return nil, "", fault.InvalidField("status", "Ce statut de relevé n'existe pas.")
	}
	size, err := page.Limit()
	if err != nil {
		return nil, "", err
	}
	var after *uuid.UUID
	if page.Token != "" {
		id, err := decodeToken(page.Token)
		if err != nil {
			return nil, "", err
		}
		after = &id
	}
	var site *uuid.UUID
	if f.Site != uuid.Nil {
		site = &f.Site
	}
	var status *string
	if f.Status != "" {
		status = &f.Status
	}
	var out []Statement
	err = s.l.RunInSnapshot(ctx, "payouts.ListStatements", func(ctx context.Context, tx pgx.Tx) error {
		var err error
		out, err = loadStatements(ctx, tx, `
			    ($1::uuid IS NULL OR s.site_id = $1)
			AND ($2::uuid IS NULL OR s.site_id = $2)
			AND ($3::text IS NULL OR s.status = $3)
			AND ($4::uuid IS NULL OR s.id < $4)
			ORDER BY s.id DESC LIMIT $5`, siteScope(p), site, status, after, size+1)
		return err
	})
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(out) > size {
		out = out[:size]
		next = encodeToken(out[size-1].ID)
	}
	return out, next, nil
}
