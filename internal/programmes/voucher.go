package programmes

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/passnum/passnum/internal/auth"
	"github.com/passnum/passnum/internal/civil"
	"github.com/passnum/passnum/internal/fault"
	"github.com/passnum/passnum/internal/frtext"
	"github.com/passnum/passnum/internal/orgs"
	"github.com/passnum/passnum/internal/vcode"
	"github.com/passnum/passnum/ledger"
)

// Voucher statuses.
const (
	VoucherInStock   = "in_stock"
	VoucherAvailable = "available"
	VoucherRedeemed  = "redeemed"
	VoucherExpired   = "expired"
	VoucherVoided    = "voided"
)

// Hold durations, in minutes.
const (
	DefaultHoldMinutes = 10
	MaxHoldMinutes     = 30
)

// Voucher is what a site sees of a voucher.
type Voucher struct {
	Code            vcode.Code `json:"code"`
	Programme       uuid.UUID  `json:"programme_id"`
	Book            int64      `json:"book_number"`
	Status          string     `json:"status"`
	FaceValueCents  int64      `json:"face_value_cents"`
	ValidUntil      time.Time  `json:"valid_until"`
	RedeemableUntil time.Time  `json:"redeemable_until"`
	Territories     []string   `json:"territories"`
	HeldBy          uuid.UUID  `json:"held_by"`    // uuid.Nil when not held
	HeldUntil       time.Time  `json:"held_until"` // zero when not held
}

// voucherRow is a voucher with what the checks need of its programme, book and last
// redemption.
type voucherRow struct {
	code        vcode.Code
	programme   uuid.UUID
	book        int64
	faceValue   int64
	status      string
	rounds      int16
	heldBy      *uuid.UUID
	heldUntil   *time.Time
	validUntil  time.Time
	graceDays   int32
	territories []string
	progStatus  string
	handedOutAt *time.Time
	last        *lastRedemption // set for redeemed vouchers
}

// lastRedemption is the redemption that makes a voucher redeemed.
type lastRedemption struct {
	at       time.Time
	site     uuid.UUID
	siteName string
}

func (v *voucherRow) redeemableUntil() time.Time { return v.validUntil.AddDate(0, 0, int(v.graceDays)) }

// heldByOther reports whether a site other than site holds v at instant now.
func (v *voucherRow) heldByOther(site uuid.UUID, now time.Time) bool {
	return v.heldBy != nil && *v.heldBy != site && v.heldUntil != nil && v.heldUntil.After(now)
}

// view is what a site sees at instant now: a voucher that can no longer be redeemed shows
// as expired even before close-out marks it, and a hold that has run out is not shown.
func (v *voucherRow) view(now time.Time) *Voucher {
	out := &Voucher{Code: v.code, Programme: v.programme, Book: v.book, Status: v.status, FaceValueCents: v.faceValue,
		ValidUntil: v.validUntil, RedeemableUntil: v.redeemableUntil(), Territories: v.territories}
	if (v.status == VoucherAvailable || v.status == VoucherInStock) &&
		(v.progStatus == ProgrammeExpired || civil.DateOf(now).After(out.RedeemableUntil)) {
		out.Status = VoucherExpired
	}
	if v.heldBy != nil && v.heldUntil != nil && v.heldUntil.After(now) && out.Status == VoucherAvailable {
		out.HeldBy, out.HeldUntil = *v.heldBy, v.heldUntil.UTC()
	}
	return out
}

const voucherSelect = `
	SELECT v.code, v.programme_id, v.book_number, v.face_value_cents, v.status, v.rounds, v.held_by, v.held_until,
	       p.valid_until, p.grace_days, p.territories, p.status, b.handed_out_at
	  FROM vouchers v
	  JOIN programmes p ON p.id = v.programme_id
	  LEFT JOIN books b ON b.programme_id = v.programme_id AND b.number = v.book_number`

func scanVoucher(row pgx.Row) (*voucherRow, error) {
	var v voucherRow
	var code int64
	if err := row.Scan(&code, &v.programme, &v.book, &v.faceValue, &v.status, &v.rounds, &v.heldBy, &v.heldUntil,
		&v.validUntil, &v.graceDays, &v.territories, &v.progStatus, &v.handedOutAt); err != nil {
		return nil, err
	}
	v.code = vcode.Code(code)
	return &v, nil
}

// lockVoucher reads one voucher for update, with its last redemption if it is redeemed. A
// voucher without a row of its own is its book's (bookVoucher): nothing of it can change.
func (s *Service) lockVoucher(ctx context.Context, tx pgx.Tx, code vcode.Code) (*voucherRow, error) {
	v, err := scanVoucher(tx.QueryRow(ctx, voucherSelect+` WHERE v.code = $1 FOR UPDATE OF v`, int64(code)))
	if errors.Is(err, pgx.ErrNoRows) {
		return s.bookVoucher(ctx, tx, code)
	}
	if err != nil {
		return nil, fmt.Errorf("lock voucher %s: %w", code, err)
	}
	if err := loadLastRedemptions(ctx, tx, []*voucherRow{v}); err != nil {
		return nil, err
	}
	return v, nil
}

// lastRedemptionSelect reads the redemption that made voucher v redeemed.
const lastRedemptionSelect = `
	SELECT r.voucher_code, r.redeemed_at, r.site_id, r.name
	  FROM vouchers v
	 CROSS JOIN LATERAL (SELECT r.voucher_code, r.redeemed_at, r.site_id, o.name
	                       FROM redemptions r JOIN organisations o ON o.id = r.site_id
	                      WHERE r.voucher_code = v.code AND r.round = v.rounds) r`

// loadLastRedemptions fills last for the redeemed vouchers among vs. It must run in a
// statement after the one that locked them: under READ COMMITTED a new statement sees the
// redemption committed by the transaction the lock waited for.
func loadLastRedemptions(ctx context.Context, q ledger.Querier, vs []*voucherRow) error {
	var codes []int64
	byCode := make(map[vcode.Code]*voucherRow)
	for _, v := range vs {
		if v.status == VoucherRedeemed {
			codes = append(codes, int64(v.code))
			byCode[v.code] = v
		}
	}
	if len(codes) == 0 {
		return nil
	}
	rows, err := q.Query(ctx, lastRedemptionSelect+` WHERE v.code = ANY($1) AND v.status = 'redeemed'`, codes)
	if err != nil {
		return fmt.Errorf("read redemptions: %w", err)
	}
	if err := scanLastRedemptions(rows, byCode); err != nil {
		return fmt.Errorf("read redemptions: %w", err)
	}
	for _, v := range byCode {
		if v.last == nil {
			return fmt.Errorf("voucher %s is redeemed %d times but has no redemption row", v.code, v.rounds)
		}
	}
	return nil
}

// scanLastRedemptions reads rows of lastRedemptionSelect into the vouchers they belong to.
func scanLastRedemptions(rows pgx.Rows, vouchers map[vcode.Code]*voucherRow) error {
	defer rows.Close()
	for rows.Next() {
		var (
			code int64
			last lastRedemption
		)
		if err := rows.Scan(&code, &last.at, &last.site, &last.siteName); err != nil {
			return err
		}
		last.at = last.at.UTC()
		if v := vouchers[vcode.Code(code)]; v != nil {
			v.last = &last
		}
	}
	return rows.Err()
}

// bookVoucher reads a voucher that has no row of its own: a keyed voucher of a book that was
// never handed out, whose status is its book's (in stock, cancelled or expired). Its code is
// tried against each key; VOUCHER_NOT_FOUND when no book holds it.
func (s *Service) bookVoucher(ctx context.Context, q ledger.Querier, c vcode.Code) (*voucherRow, error) {
	for _, k := range s.keys.Keys() {
		slot, ok, err := k.Slot(c)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		v := voucherRow{code: c}
		var bookStatus string
		err = q.QueryRow(ctx, `
			SELECT b.programme_id, b.number, p.face_value_cents, b.status,
			       p.valid_until, p.grace_days, p.territories, p.status, b.handed_out_at
			  FROM programmes p
			  JOIN books b ON b.programme_id = p.id AND b.number = $2
			  JOIN book_orders o ON o.id = b.order_id
			 WHERE p.code_prefix = $1 AND $3 <= p.vouchers_per_book
			   AND o.code_key = $4 AND b.voucher_codes IS NULL`,
			int32(slot.Prefix), slot.Book, slot.Position, k.ID()).Scan(
			&v.programme, &v.book, &v.faceValue, &bookStatus,
			&v.validUntil, &v.graceDays, &v.territories, &v.progStatus, &v.handedOutAt)
		if errors.Is(err, pgx.ErrNoRows) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("voucher %s: read its book: %w", c, err)
		}
		switch bookStatus {
		case BookInStock:
			v.status = VoucherInStock
		case BookCancelled:
			v.status = VoucherVoided
		case BookExpired:
			v.status = VoucherExpired
		default:
			return nil, fmt.Errorf("voucher %s: book %d is %s but the voucher has no row", c, v.book, bookStatus)
		}
		return &v, nil
	}
	return nil, voucherNotFound(c)
}

// Refusals of a redemption or a hold; see the package doc for their order.

func voucherNotFound(code vcode.Code) error {
	return fault.New(fault.NotFound, "VOUCHER_NOT_FOUND",
		"Ce code ne correspond à aucun chèque Pass numérique. Vérifiez le code, ou scannez le QR code du chèque.",
		"code", code.String())
}

func siteNotQualified(site *orgs.SiteInfo, date time.Time) error {
	var why string
	switch site.Status {
	case orgs.StatusPending:
		why = "son habilitation est en attente"
	case orgs.StatusSuspended:
		why = "son habilitation est suspendue"
	case orgs.StatusWithdrawn:
		why = "son habilitation a été retirée"
	default:
		why = fmt.Sprintf("son habilitation ne couvre pas cette date (du %s au %s)", frtext.Date(site.ValidFrom), frtext.Date(site.ValidUntil))
	}
	return fault.New(fault.FailedPrecondition, "SITE_NOT_QUALIFIED",
		fmt.Sprintf("Votre lieu ne peut pas encaisser de chèques pour un service rendu le %s : %s. "+
			"Contactez l'opérateur du Pass numérique.", frtext.Date(date), why),
		"site_id", site.ID.String(), "site_status", string(site.Status), "service_date", civil.FormatDate(date))
}

func serviceNotInCatalogue(site *orgs.SiteInfo, service string) error {
	return fault.New(fault.Invalid, "SERVICE_NOT_IN_CATALOGUE",
		fmt.Sprintf("Le service « %s » ne fait pas partie des services de votre lieu. Choisissez l'un d'eux : %s.",
			service, strings.Join(site.Services, " ; ")),
		"service", service)
}

func alreadyRedeemed(code vcode.Code, last *lastRedemption) error {
	return fault.New(fault.FailedPrecondition, "VOUCHER_ALREADY_REDEEMED",
		fmt.Sprintf("Ce chèque a déjà été encaissé le %s par %s.", frTime(last.at), last.siteName),
		"code", code.String(), "redeemed_at", last.at.UTC().Format(time.RFC3339Nano),
		"site_id", last.site.String(), "site_name", last.siteName)
}

func notActive(code vcode.Code, status string) error {
	msg := "Ce chèque n'est pas encore activé : son chéquier n'a pas été remis à un bénéficiaire. Il ne peut pas être encaissé."
	if status == VoucherVoided {
		msg = "Ce chèque a été annulé : il ne peut pas être encaissé."
	}
	return fault.New(fault.FailedPrecondition, "VOUCHER_NOT_ACTIVE", msg, "code", code.String(), "status", status)
}

func expired(code vcode.Code, until time.Time) error {
	return fault.New(fault.FailedPrecondition, "VOUCHER_EXPIRED",
		fmt.Sprintf("Ce chèque n'est plus valable : il pouvait être encaissé jusqu'au %s.", frtext.Date(until)),
		"code", code.String(), "redeemable_until", civil.FormatDate(until))
}

func servedAfterValidity(code vcode.Code, date, validUntil time.Time) error {
	return fault.New(fault.FailedPrecondition, "VOUCHER_EXPIRED",
		fmt.Sprintf("Ce chèque n'était plus valable le %s, date du service : il couvrait les services rendus jusqu'au %s.",
			frtext.Date(date), frtext.Date(validUntil)),
		"code", code.String(), "valid_until", civil.FormatDate(validUntil), "service_date", civil.FormatDate(date))
}

func outOfTerritory(code vcode.Code, site *orgs.SiteInfo, territories []string) error {
	return fault.New(fault.FailedPrecondition, "VOUCHER_OUT_OF_TERRITORY",
		fmt.Sprintf("Ce chèque n'est valable que dans le(s) département(s) %s : il ne peut pas être encaissé par un lieu du %s.",
			strings.Join(territories, ", "), site.Departement),
		"code", code.String(), "departement", site.Departement, "territories", strings.Join(territories, ","))
}

func heldElsewhere(code vcode.Code, until time.Time) error {
	return fault.New(fault.FailedPrecondition, "VOUCHER_HELD",
		fmt.Sprintf("Ce chèque est réservé par un autre lieu jusqu'à %s. Réessayez après cette heure.",
			until.In(civil.Paris).Format("15 h 04")),
		"code", code.String(), "held_until", until.UTC().Format(time.RFC3339))
}

func beforeHandOut(code vcode.Code, date, handedOut time.Time) error {
	return fault.New(fault.Invalid, "SERVICE_DATE_BEFORE_HAND_OUT",
		fmt.Sprintf("La date du service (%s) précède la remise du chéquier au bénéficiaire (%s) : vérifiez la date.",
			frtext.Date(date), frtext.Date(civil.DateOf(handedOut))),
		"field", "service_date", "code", code.String())
}

// voucherRefusal checks a voucher for site at instant now. serviceDate is the date of the
// service for a redemption, zero for a hold. nil means the voucher may be redeemed (held).
func voucherRefusal(site *orgs.SiteInfo, v *voucherRow, serviceDate, now time.Time) error {
	switch v.status {
	case VoucherRedeemed:
		return alreadyRedeemed(v.code, v.last)
	case VoucherInStock, VoucherVoided:
		return notActive(v.code, v.status)
	case VoucherExpired:
		return expired(v.code, v.redeemableUntil())
	}
	if v.progStatus == ProgrammeExpired || civil.DateOf(now).After(v.redeemableUntil()) {
		return expired(v.code, v.redeemableUntil())
	}
	if !serviceDate.IsZero() && serviceDate.After(v.validUntil) {
		return servedAfterValidity(v.code, serviceDate, v.validUntil)
	}
	if !slices.Contains(v.territories, site.Departement) {
		return outOfTerritory(v.code, site, v.territories)
	}
	if v.heldByOther(site.ID, now) {
		return heldElsewhere(v.code, *v.heldUntil)
	}
	if !serviceDate.IsZero() && v.handedOutAt != nil && serviceDate.Before(civil.DateOf(*v.handedOutAt)) {
		return beforeHandOut(v.code, serviceDate, *v.handedOutAt)
	}
	return nil
}

// siteFor reads the calling site (role site only).
func (s *Service) siteFor(ctx context.Context, p auth.Principal) (*orgs.SiteInfo, error) {
	if err := requireRole(p, auth.RoleSite); err != nil {
		return nil, err
	}
	site, err := orgs.SiteForRedemption(ctx, s.l.Pool(), p.Org)
	if err != nil {
		return nil, err
	}
	return &site, nil
}

// CheckVoucher tells a site (or the operator) what a code is worth, whether and until when it
// can be redeemed, and whether it is held. It writes nothing.
func (s *Service) CheckVoucher(ctx context.Context, p auth.Principal, code string) (*Voucher, error) {
	if err := requireRole(p, auth.RoleSite, auth.RoleOperator); err != nil {
		return nil, err
	}
	c, err := vcode.Parse(code)
	if err != nil {
		return nil, err
	}
	v, err := scanVoucher(s.l.Pool().QueryRow(ctx, voucherSelect+` WHERE v.code = $1`, int64(c)))
	if errors.Is(err, pgx.ErrNoRows) {
		v, err = s.bookVoucher(ctx, s.l.Pool(), c)
	}
	if err != nil {
		return nil, fmt.Errorf("check voucher %s: %w", c, err)
	}
	return v.view(s.now()), nil
}

// HoldSpec holds a voucher for a while.
type HoldSpec struct {
	Code    string
	Minutes int32 // 1 to 30; 0 is the default 10
}

// HoldVoucher reserves an available voucher for the calling site for a few minutes, so that
// no other site can hold or redeem it meanwhile; holding it again extends the hold. The site
// must be qualified today and the voucher redeemable there.
func (s *Service) HoldVoucher(ctx context.Context, p auth.Principal, key string, spec HoldSpec) (*Voucher, error) {
	site, err := s.siteFor(ctx, p)
	if err != nil {
		return nil, err
	}
	c, err := vcode.Parse(spec.Code)
	if err != nil {
		return nil, err
	}
	if spec.Minutes == 0 {
		spec.Minutes = DefaultHoldMinutes
	}
	if spec.Minutes < 1 || spec.Minutes > MaxHoldMinutes {
		return nil, fault.InvalidField("minutes", "Un chèque peut être réservé de 1 à 30 minutes.")
	}
	req := struct {
		Code    int64 `json:"code"`
		Minutes int32 `json:"minutes"`
	}{int64(c), spec.Minutes}
	op := ledger.Op{Name: "HoldVoucher", Org: p.Org, Key: key, Request: req}
	return ledger.Do(ctx, s.l, op, func(ctx context.Context, tx pgx.Tx, _ []byte) (*Voucher, error) {
		now := s.now().UTC().Truncate(time.Microsecond)
		today := civil.DateOf(now)
		if !site.QualifiedOn(today) {
			return nil, siteNotQualified(site, today)
		}
		v, err := s.lockVoucher(ctx, tx, c)
		if err != nil {
			return nil, err
		}
		if err := voucherRefusal(site, v, time.Time{}, now); err != nil {
			return nil, err
		}
		until := now.Add(time.Duration(spec.Minutes) * time.Minute)
		if _, err := tx.Exec(ctx, `UPDATE vouchers SET held_by = $2, held_until = $3 WHERE code = $1`,
			int64(c), site.ID, until); err != nil {
			return nil, fmt.Errorf("hold voucher %s: %w", c, err)
		}
		v.heldBy, v.heldUntil = &site.ID, &until
		return v.view(now), nil
	})
}

// Reversal reasons.
const (
	ReasonError = "error"
	ReasonFraud = "fraud"
)

// ReverseSpec reverses the last redemption of a voucher.
type ReverseSpec struct {
	Code   string `json:"code"`
	Reason string `json:"reason"` // ReasonError or ReasonFraud
	Note   string `json:"note"`
}

// Reversal is what ReverseRedemption recorded.
type Reversal struct {
	Code          vcode.Code `json:"code"`
	Round         int32      `json:"round"`
	Reason        string     `json:"reason"`
	Note          string     `json:"note"`
	AmountCents   int64      `json:"amount_cents"`
	Site          uuid.UUID  `json:"site_id"`
	ReversedAt    time.Time  `json:"reversed_at"`
	Ledger        ledger.Ref `json:"ledger"`
	VoucherStatus string     `json:"voucher_status"`
}

// ReverseRedemption reverses a voucher's redemption (operator only) with a new ledger
// transaction; see the package doc for what happens to the voucher and its value.
func (s *Service) ReverseRedemption(ctx context.Context, p auth.Principal, key string, spec ReverseSpec) (*Reversal, error) {
	if err := requireRole(p, auth.RoleOperator); err != nil {
		return nil, err
	}
	c, err := vcode.Parse(spec.Code)
	if err != nil {
		return nil, err
	}
	spec.Code = c.String()
	if spec.Reason != ReasonError && spec.Reason != ReasonFraud {
		return nil, fault.InvalidField("reason", "Indiquez le motif de l'annulation : erreur ou fraude.")
	}
	spec.Note = strings.TrimSpace(spec.Note)
	if n := len([]rune(spec.Note)); n < 1 || n > 500 {
		return nil, fault.InvalidField("note", "Expliquez l'annulation en quelques mots (500 caractères au plus).")
	}
	op := ledger.Op{Name: "ReverseRedemption", Org: p.Org, Key: key, Request: spec}
	return ledger.Do(ctx, s.l, op, func(ctx context.Context, tx pgx.Tx, reqHash []byte) (*Reversal, error) {
		return s.reverse(ctx, tx, p, key, reqHash, c, &spec)
	})
}

func (s *Service) reverse(ctx context.Context, tx pgx.Tx, p auth.Principal, key string, reqHash []byte, c vcode.Code, sp *ReverseSpec) (*Reversal, error) {
	v, err := s.lockVoucher(ctx, tx, c)
	if err != nil {
		return nil, err
	}
	if v.status != VoucherRedeemed {
		return nil, fault.New(fault.FailedPrecondition, "VOUCHER_NOT_REDEEMED",
			"Ce chèque n'est pas encaissé : il n'y a pas d'encaissement à annuler.", "code", c.String(), "status", v.status)
	}
	var (
		site   uuid.UUID
		amount int64
		txID   uuid.UUID
	)
	if err := tx.QueryRow(ctx, `SELECT site_id, amount_cents, tx_id FROM redemptions WHERE voucher_code = $1 AND round = $2`,
		int64(c), v.rounds).Scan(&site, &amount, &txID); err != nil {
		return nil, fmt.Errorf("reverse %s round %d: %w", c, v.rounds, err)
	}
	meta := map[string]string{"code": c.String(), "round": strconv.Itoa(int(v.rounds)), "reason": sp.Reason}
	rev, err := ledger.ReversalOf(ctx, tx, txID, p.Org, meta)
	if err != nil {
		return nil, err
	}
	rev.IdempotencyKey, rev.RequestHash = key, reqHash
	entries := []ledger.Entry{rev}
	outstanding := ledger.AccountRef{Programme: v.programme, Kind: ledger.Outstanding}
	unissued := ledger.AccountRef{Programme: v.programme, Kind: ledger.Unissued}
	status := VoucherAvailable
	switch {
	case sp.Reason == ReasonFraud:
		status = VoucherVoided
		entries = append(entries, ledger.Entry{Programme: v.programme, Kind: ledger.KindCancellation, Org: p.Org,
			Metadata: meta, Postings: ledger.Move(outstanding, unissued, v.faceValue)})
	case v.progStatus == ProgrammeExpired || s.today().After(v.redeemableUntil()):
		status = VoucherExpired
		entries = append(entries, ledger.Entry{Programme: v.programme, Kind: ledger.KindExpiry, Org: p.Org,
			Metadata: meta, Postings: ledger.Move(outstanding, unissued, v.faceValue)})
	}
	posted, err := s.l.Post(ctx, tx, entries...)
	if err != nil {
		return nil, fmt.Errorf("reverse %s round %d: %w", c, v.rounds, err)
	}
	now := s.now().UTC().Truncate(time.Microsecond)
	b := &pgx.Batch{}
	b.Queue(`UPDATE vouchers SET status = $2, held_by = NULL, held_until = NULL WHERE code = $1`, int64(c), status)
	b.Queue(`
		INSERT INTO redemption_reversals (voucher_code, round, programme_id, site_id, reason, note, amount_cents,
		                                  reversed_at, reversed_by, tx_id)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		int64(c), v.rounds, v.programme, site, sp.Reason, sp.Note, amount, now, p.Org, posted[0].ID)
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return nil, fmt.Errorf("reverse %s round %d: %w", c, v.rounds, err)
	}
	return &Reversal{Code: c, Round: int32(v.rounds), Reason: sp.Reason, Note: sp.Note, AmountCents: amount, Site: site,
		ReversedAt: now, Ledger: posted[0].Ref(), VoucherStatus: status}, nil
}
