package programmes

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/passnum/passnum/internal/auth"
	"github.com/passnum/passnum/internal/civil"
	"github.com/passnum/passnum/internal/fault"
	"github.com/passnum/passnum/internal/ident"
	"github.com/passnum/passnum/internal/paging"
	"github.com/passnum/passnum/ledger"
)

// Defaults of a new programme.
const (
	DefaultFaceValueCents  = 1000 // 10 €
	DefaultVouchersPerBook = 10
	DefaultGraceDays       = 31 // one month to redeem after the end of validity
	DefaultTargetQuotaBps  = 5000
	sharesTotal            = 10000
)

// Programme statuses.
const (
	ProgrammeOpen    = "open"
	ProgrammeExpired = "expired"
)

// FunderShare is one funder's co-financing share of a programme.
type FunderShare struct {
	Funder   uuid.UUID `json:"funder_id"`
	ShareBps int32     `json:"share_bps"`
	// CapCents is an optional ceiling on the funder's share of vouchers used; 0 is none.
	CapCents int64 `json:"cap_cents"`
}

// Programme is a funding envelope and its rules.
type Programme struct {
	ID                   uuid.UUID     `json:"id"`
	Name                 string        `json:"name"`
	Funders              []FunderShare `json:"funders"`
	FaceValueCents       int64         `json:"face_value_cents"`
	VouchersPerBook      int32         `json:"vouchers_per_book"`
	ValidFrom            time.Time     `json:"valid_from"`
	ValidUntil           time.Time     `json:"valid_until"`
	GraceDays            int32         `json:"grace_days"`
	Territories          []string      `json:"territories"`
	Distributors         []uuid.UUID   `json:"distributor_ids"`
	TargetPublicQuotaBps int32         `json:"target_public_quota_bps"`
	FeeBps               int32         `json:"fee_bps"`
	Status               string        `json:"status"`
	CreatedAt            time.Time     `json:"created_at"`
	BooksOrdered         int64         `json:"books_ordered"`
}

// RedeemableUntil is the last day a voucher of the programme can be redeemed: the end of
// validity plus the grace days.
func (p *Programme) RedeemableUntil() time.Time {
	return p.ValidUntil.AddDate(0, 0, int(p.GraceDays))
}

// ProgrammeSpec is what CreateProgramme needs. Zero values of FaceValueCents,
// VouchersPerBook, GraceDays and TargetPublicQuotaBps take the defaults above.
type ProgrammeSpec struct {
	Name                 string        `json:"name"`
	Funders              []FunderShare `json:"funders"`
	FaceValueCents       int64         `json:"face_value_cents"`
	VouchersPerBook      int32         `json:"vouchers_per_book"`
	ValidFrom            time.Time     `json:"valid_from"`
	ValidUntil           time.Time     `json:"valid_until"`
	GraceDays            int32         `json:"grace_days"`
	Territories          []string      `json:"territories"`
	Distributors         []uuid.UUID   `json:"distributor_ids"`
	TargetPublicQuotaBps int32         `json:"target_public_quota_bps"`
	FeeBps               int32         `json:"fee_bps"`
}

// normalize applies the defaults and checks everything that needs no database.
func (sp *ProgrammeSpec) normalize() error {
	sp.Name = strings.TrimSpace(sp.Name)
	if n := len([]rune(sp.Name)); n < 1 || n > 200 {
		return fault.InvalidField("name", "Donnez un nom au programme (200 caractères au plus).")
	}
	if len(sp.Funders) == 0 {
		return fault.InvalidField("funders", "Un programme a au moins un financeur.")
	}
	var total int64
	seen := map[uuid.UUID]bool{}
	for _, f := range sp.Funders {
		if f.Funder == uuid.Nil {
			return fault.InvalidField("funders", "Chaque financeur doit être désigné par son identifiant.")
		}
		if seen[f.Funder] {
			return fault.New(fault.Invalid, "FUNDER_DUPLICATE",
				"Un même financeur figure deux fois dans le programme.", "funder_id", f.Funder.String())
		}
		seen[f.Funder] = true
		if f.ShareBps < 1 || f.ShareBps > sharesTotal {
			return fault.New(fault.Invalid, "FUNDER_SHARE",
				"La part de chaque financeur est comprise entre 1 et 10000 points de base (0,01 % à 100 %).",
				"funder_id", f.Funder.String())
		}
		if f.CapCents < 0 {
			return fault.New(fault.Invalid, "FUNDER_CAP",
				"Le plafond d'un financeur ne peut pas être négatif (0 : pas de plafond).", "funder_id", f.Funder.String())
		}
		total += int64(f.ShareBps)
	}
	if total != sharesTotal {
		return fault.New(fault.Invalid, "FUNDER_SHARES_TOTAL",
			fmt.Sprintf("Les parts des financeurs doivent faire 100 %% au total (10000 points de base) ; elles font %d.", total),
			"total_bps", fmt.Sprint(total))
	}
	if sp.FaceValueCents == 0 {
		sp.FaceValueCents = DefaultFaceValueCents
	}
	if sp.FaceValueCents < 1 || sp.FaceValueCents > 100000 {
		return fault.InvalidField("face_value_cents", "La valeur d'un chèque est comprise entre 1 centime et 1 000 €.")
	}
	if sp.VouchersPerBook == 0 {
		sp.VouchersPerBook = DefaultVouchersPerBook
	}
	if sp.VouchersPerBook < 1 || sp.VouchersPerBook > 50 {
		return fault.InvalidField("vouchers_per_book", "Un chéquier contient de 1 à 50 chèques.")
	}
	if sp.ValidFrom.IsZero() || sp.ValidUntil.IsZero() {
		return fault.InvalidField("valid_until", "Indiquez la période de validité du programme (début et fin).")
	}
	if sp.ValidUntil.Before(sp.ValidFrom) {
		return fault.InvalidField("valid_until", "La fin de validité ne peut pas précéder son début.")
	}
	if sp.GraceDays == 0 {
		sp.GraceDays = DefaultGraceDays
	}
	if sp.GraceDays < 0 || sp.GraceDays > 366 {
		return fault.InvalidField("grace_days", "Le délai de grâce est compris entre 0 et 366 jours.")
	}
	if len(sp.Territories) == 0 {
		return fault.InvalidField("territories", "Indiquez au moins un département où les chèques sont valables.")
	}
	terr := make([]string, 0, len(sp.Territories))
	for _, t := range sp.Territories {
		d, err := normalizeTerritory(t)
		if err != nil {
			return err
		}
		if !slices.Contains(terr, d) {
			terr = append(terr, d)
		}
	}
	slices.Sort(terr)
	sp.Territories = terr
	dist := slices.Clone(sp.Distributors)
	slices.SortFunc(dist, func(a, b uuid.UUID) int { return strings.Compare(a.String(), b.String()) })
	sp.Distributors = slices.Compact(dist)
	if slices.Contains(sp.Distributors, uuid.Nil) {
		return fault.InvalidField("distributor_ids", "Chaque prescripteur doit être désigné par son identifiant.")
	}
	if sp.TargetPublicQuotaBps == 0 {
		sp.TargetPublicQuotaBps = DefaultTargetQuotaBps
	}
	if sp.TargetPublicQuotaBps < 0 || sp.TargetPublicQuotaBps > 10000 {
		return fault.InvalidField("target_public_quota_bps", "Le quota de public cible est compris entre 0 et 10000 points de base.")
	}
	if sp.FeeBps < 0 || sp.FeeBps > 10000 {
		return fault.InvalidField("fee_bps", "Les frais sont compris entre 0 et 10000 points de base (0 à 100 %).")
	}
	return nil
}

// normalizeTerritory accepts the département codes of internal/ident (the database's
// departement_valid accepts the same).
func normalizeTerritory(s string) (string, error) { return ident.NormalizeDepartement(s) }

// CreateProgramme opens a programme and its ledger chain. The operator may create any
// programme; a funder only one it co-finances.
func (s *Service) CreateProgramme(ctx context.Context, p auth.Principal, key string, spec ProgrammeSpec) (*Programme, error) {
	if err := requireRole(p, auth.RoleOperator, auth.RoleFunder); err != nil {
		return nil, err
	}
	if err := spec.normalize(); err != nil {
		return nil, err
	}
	if p.Role == auth.RoleFunder && !slices.ContainsFunc(spec.Funders, func(f FunderShare) bool { return f.Funder == p.Org }) {
		return nil, fault.New(fault.PermissionDenied, "FUNDER_NOT_IN_PROGRAMME",
			"Un financeur ne peut créer qu'un programme dont il est l'un des financeurs.")
	}
	op := ledger.Op{Name: "CreateProgramme", Org: p.Org, Key: key, Request: spec}
	return ledger.Do(ctx, s.l, op, func(ctx context.Context, tx pgx.Tx, _ []byte) (*Programme, error) {
		return s.createProgramme(ctx, tx, p, &spec)
	})
}

func (s *Service) createProgramme(ctx context.Context, tx pgx.Tx, p auth.Principal, sp *ProgrammeSpec) (*Programme, error) {
	funders := make([]uuid.UUID, len(sp.Funders))
	for i, f := range sp.Funders {
		funders[i] = f.Funder
	}
	if err := checkKinds(ctx, tx, funders, "funder"); err != nil {
		return nil, err
	}
	if err := checkKinds(ctx, tx, sp.Distributors, "distributor"); err != nil {
		return nil, err
	}
	id, err := uuid.NewV7()
	if err != nil {
		return nil, err
	}
	if err := ledger.OpenChain(ctx, tx, id); err != nil {
		return nil, err
	}
	shares := make([]int32, len(sp.Funders))
	caps := make([]*int64, len(sp.Funders))
	for i, f := range sp.Funders {
		shares[i] = f.ShareBps
		if f.CapCents > 0 {
			caps[i] = &sp.Funders[i].CapCents
		}
	}
	b := &pgx.Batch{}
	b.Queue(`
		INSERT INTO programmes (id, name, face_value_cents, vouchers_per_book, valid_from, valid_until,
		                        grace_days, territories, target_public_quota_bps, fee_bps, created_by)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
		id, sp.Name, sp.FaceValueCents, sp.VouchersPerBook, sp.ValidFrom, sp.ValidUntil,
		sp.GraceDays, sp.Territories, sp.TargetPublicQuotaBps, sp.FeeBps, p.Org)
	b.Queue(`
		INSERT INTO programme_funders (programme_id, funder_id, share_bps, cap_cents)
		SELECT $1, f, s, c FROM unnest($2::uuid[], $3::int[], $4::bigint[]) AS t(f, s, c)`,
		id, funders, shares, caps)
	if len(sp.Distributors) > 0 {
		b.Queue(`
			INSERT INTO programme_distributors (programme_id, distributor_id)
			SELECT $1, d FROM unnest($2::uuid[]) AS d`, id, sp.Distributors)
	}
	// The deferred trigger programme_shares_total checks the shares again at commit.
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return nil, fmt.Errorf("create programme: %w", err)
	}
	return getProgramme(ctx, tx, id)
}

// checkKinds refuses ids that are not organisations of the given kind.
func checkKinds(ctx context.Context, tx pgx.Tx, ids []uuid.UUID, kind string) error {
	if len(ids) == 0 {
		return nil
	}
	var missing []uuid.UUID
	err := tx.QueryRow(ctx, `
		SELECT coalesce(array_agg(i), '{}') FROM unnest($1::uuid[]) AS i
		 WHERE NOT EXISTS (SELECT 1 FROM organisations o WHERE o.id = i AND o.kind = $2)`, ids, kind).Scan(&missing)
	if err != nil {
		return fmt.Errorf("check %s organisations: %w", kind, err)
	}
	if len(missing) == 0 {
		return nil
	}
	if kind == "funder" {
		return fault.New(fault.Invalid, "FUNDER_UNKNOWN",
			"Cet identifiant ne désigne aucune organisation enregistrée comme financeur.", "funder_id", missing[0].String())
	}
	return fault.New(fault.Invalid, "DISTRIBUTOR_UNKNOWN",
		"Cet identifiant ne désigne aucune organisation enregistrée comme prescripteur.", "distributor_id", missing[0].String())
}

// programmeSelect reads a programme with its funders and distributors in one row.
const programmeSelect = `
	SELECT p.id, p.name, p.face_value_cents, p.vouchers_per_book, p.valid_from, p.valid_until,
	       p.grace_days, p.territories, p.target_public_quota_bps, p.fee_bps, p.status,
	       p.created_at, p.books_ordered,
	       ARRAY(SELECT f.funder_id FROM programme_funders f WHERE f.programme_id = p.id ORDER BY f.funder_id),
	       ARRAY(SELECT f.share_bps FROM programme_funders f WHERE f.programme_id = p.id ORDER BY f.funder_id),
	       ARRAY(SELECT coalesce(f.cap_cents, 0) FROM programme_funders f WHERE f.programme_id = p.id ORDER BY f.funder_id),
	       ARRAY(SELECT d.distributor_id FROM programme_distributors d WHERE d.programme_id = p.id ORDER BY d.distributor_id)
	  FROM programmes p`

func scanProgramme(row pgx.Row) (*Programme, error) {
	var (
		pr     Programme
		funder []uuid.UUID
		shares []int32
		caps   []int64
	)
	err := row.Scan(&pr.ID, &pr.Name, &pr.FaceValueCents, &pr.VouchersPerBook, &pr.ValidFrom, &pr.ValidUntil,
		&pr.GraceDays, &pr.Territories, &pr.TargetPublicQuotaBps, &pr.FeeBps, &pr.Status,
		&pr.CreatedAt, &pr.BooksOrdered, &funder, &shares, &caps, &pr.Distributors)
	if err != nil {
		return nil, err
	}
	pr.Funders = make([]FunderShare, len(funder))
	for i := range funder {
		pr.Funders[i] = FunderShare{Funder: funder[i], ShareBps: shares[i], CapCents: caps[i]}
	}
	pr.CreatedAt = pr.CreatedAt.UTC()
	return &pr, nil
}

func getProgramme(ctx context.Context, q ledger.Querier, id uuid.UUID) (*Programme, error) {
	pr, err := scanProgramme(q.QueryRow(ctx, programmeSelect+` WHERE p.id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, programmeNotFound(id)
	}
	if err != nil {
		return nil, fmt.Errorf("get programme %s: %w", id, err)
	}
	return pr, nil
}

// scopeFilter is the SQL condition on programme p for the caller in $1 (role) and $2 (org).
const scopeFilter = `
	($1::text = 'operator'
	 OR ($1 = 'funder' AND EXISTS (SELECT 1 FROM programme_funders sf WHERE sf.programme_id = p.id AND sf.funder_id = $2))
	 OR ($1 = 'distributor' AND EXISTS (SELECT 1 FROM programme_distributors sd
	                                     WHERE sd.programme_id = p.id AND sd.distributor_id = $2))
	 OR ($1 = 'site' AND p.status = 'open'))`

// GetProgramme returns a programme the caller may see (see the package doc), or
// PROGRAMME_NOT_FOUND.
func (s *Service) GetProgramme(ctx context.Context, p auth.Principal, id uuid.UUID) (*Programme, error) {
	pr, err := scanProgramme(s.l.Pool().QueryRow(ctx, programmeSelect+` WHERE p.id = $3 AND `+scopeFilter,
		string(p.Role), p.Org, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, programmeNotFound(id)
	}
	if err != nil {
		return nil, fmt.Errorf("get programme %s: %w", id, err)
	}
	return pr, nil
}

// ListProgrammes returns the programmes the caller may see, oldest first, and the token of
// the next page ("" after the last).
func (s *Service) ListProgrammes(ctx context.Context, p auth.Principal, page paging.Request) ([]*Programme, string, error) {
	n, err := page.Limit()
	if err != nil {
		return nil, "", err
	}
	var after *uuid.UUID
	if page.Token != "" {
		t, err := decodeToken(page.Token)
		if err != nil {
			return nil, "", err
		}
		id, err := uuid.Parse(t)
		if err != nil {
			return nil, "", badToken()
		}
		after = &id
	}
	rows, err := s.l.Pool().Query(ctx, programmeSelect+` WHERE `+scopeFilter+`
		   AND ($3::uuid IS NULL OR p.id > $3) ORDER BY p.id LIMIT $4`,
		string(p.Role), p.Org, after, n+1)
	if err != nil {
		return nil, "", fmt.Errorf("list programmes: %w", err)
	}
	defer rows.Close()
	var out []*Programme
	for rows.Next() {
		pr, err := scanProgramme(rows)
		if err != nil {
			return nil, "", fmt.Errorf("list programmes: %w", err)
		}
		out = append(out, pr)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("list programmes: %w", err)
	}
	next := ""
	if len(out) > n {
		out = out[:n]
		next = encodeToken(out[n-1].ID.String())
	}
	return out, next, nil
}

// FundingSpec is one payment received from a funder.
type FundingSpec struct {
	Programme     uuid.UUID `json:"programme_id"`
	Funder        uuid.UUID `json:"funder_id"`
	AmountCents   int64     `json:"amount_cents"`
	BankReference string    `json:"bank_reference"`
	ReceivedOn    time.Time `json:"received_on"`
}

// Funding is a payment booked on a programme.
type Funding struct {
	ID            uuid.UUID  `json:"id"`
	Programme     uuid.UUID  `json:"programme_id"`
	Funder        uuid.UUID  `json:"funder_id"`
	AmountCents   int64      `json:"amount_cents"`
	FeeCents      int64      `json:"fee_cents"`
	BudgetCents   int64      `json:"budget_cents"`
	BankReference string     `json:"bank_reference"`
	ReceivedOn    time.Time  `json:"received_on"`
	Ledger        ledger.Ref `json:"ledger"`
}

// FeeOf splits an amount paid in into the operator's fee and the budget it makes available:
// fee = ⌊amount × feeBps / (10000 + feeBps)⌋, budget = amount − fee (see the package doc).
func FeeOf(amount int64, feeBps int32) (fee, budget int64) {
	fee = amount * int64(feeBps) / (10000 + int64(feeBps))
	return fee, amount - fee
}

// RecordFunding books money received from one funder of an open programme (operator only):
// one funding transaction with the fee line. The same bank reference cannot be booked twice
// for a funder.
func (s *Service) RecordFunding(ctx context.Context, p auth.Principal, key string, spec FundingSpec) (*Funding, error) {
	if err := requireRole(p, auth.RoleOperator); err != nil {
		return nil, err
	}
	spec.BankReference = strings.TrimSpace(spec.BankReference)
	switch {
	case spec.Programme == uuid.Nil:
		return nil, fault.InvalidField("programme_id", "Indiquez le programme financé.")
	case spec.Funder == uuid.Nil:
		return nil, fault.InvalidField("funder_id", "Indiquez le financeur qui a versé les fonds.")
	case spec.AmountCents <= 0:
		return nil, fault.InvalidField("amount_cents", "Le montant versé doit être positif.")
	case spec.AmountCents > 1e13:
		return nil, fault.InvalidField("amount_cents", "Le montant versé dépasse 100 milliards d'euros : vérifiez la saisie.")
	case len([]rune(spec.BankReference)) < 1 || len([]rune(spec.BankReference)) > 140:
		return nil, fault.InvalidField("bank_reference", "Indiquez la référence bancaire du virement (140 caractères au plus).")
	case spec.ReceivedOn.IsZero():
		return nil, fault.InvalidField("received_on", "Indiquez la date de réception des fonds.")
	case spec.ReceivedOn.After(s.today()):
		return nil, fault.InvalidField("received_on", "La date de réception des fonds ne peut pas être dans le futur.")
	}
	op := ledger.Op{Name: "RecordFunding", Org: p.Org, Key: key, Request: spec}
	return ledger.Do(ctx, s.l, op, func(ctx context.Context, tx pgx.Tx, reqHash []byte) (*Funding, error) {
		return s.recordFunding(ctx, tx, p, key, reqHash, &spec)
	})
}

func (s *Service) recordFunding(ctx context.Context, tx pgx.Tx, p auth.Principal, key string, reqHash []byte, sp *FundingSpec) (*Funding, error) {
	var (
		status   string
		feeBps   int32
		isFunder bool
	)
	err := tx.QueryRow(ctx, `
		SELECT p.status, p.fee_bps,
		       EXISTS (SELECT 1 FROM programme_funders f WHERE f.programme_id = p.id AND f.funder_id = $2)
		  FROM programmes p WHERE p.id = $1`, sp.Programme, sp.Funder).Scan(&status, &feeBps, &isFunder)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, programmeNotFound(sp.Programme)
	}
	if err != nil {
		return nil, fmt.Errorf("record funding: %w", err)
	}
	if !isFunder {
		return nil, fault.New(fault.FailedPrecondition, "FUNDER_NOT_IN_PROGRAMME",
			"Cette organisation ne fait pas partie des financeurs du programme.", "funder_id", sp.Funder.String())
	}
	if status != ProgrammeOpen {
		return nil, programmeClosed(sp.Programme)
	}
	fee, budget := FeeOf(sp.AmountCents, feeBps)
	id, err := uuid.NewV7()
	if err != nil {
		return nil, err
	}
	postings := []ledger.Posting{
		{Account: ledger.AccountRef{Programme: sp.Programme, Kind: ledger.FunderCashIn, Owner: sp.Funder}, Amount: -sp.AmountCents},
		{Account: ledger.AccountRef{Programme: sp.Programme, Kind: ledger.Unissued}, Amount: budget},
	}
	if fee > 0 {
		postings = append(postings, ledger.Posting{
			Account: ledger.AccountRef{Programme: sp.Programme, Kind: ledger.Fees, Owner: sp.Funder}, Amount: fee})
	}
	posted, err := s.l.Post(ctx, tx, ledger.Entry{
		Programme: sp.Programme, Kind: ledger.KindFunding, Org: p.Org,
		EffectiveAt:    time.Date(sp.ReceivedOn.Year(), sp.ReceivedOn.Month(), sp.ReceivedOn.Day(), 0, 0, 0, 0, civil.Paris),
		IdempotencyKey: key, RequestHash: reqHash,
		Metadata: map[string]string{"funding_id": id.String(), "funder_id": sp.Funder.String(),
			"bank_reference": sp.BankReference, "received_on": civil.FormatDate(sp.ReceivedOn)},
		Postings: postings,
	})
	if err != nil {
		return nil, fmt.Errorf("record funding: %w", err)
	}
	_, err = tx.Exec(ctx, `
		INSERT INTO fundings (id, programme_id, funder_id, amount_cents, fee_cents, bank_reference, received_on, tx_id)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		id, sp.Programme, sp.Funder, sp.AmountCents, fee, sp.BankReference, sp.ReceivedOn, posted[0].ID)
	if code, c := pgConstraint(err); code == "23505" && c == "fundings_funder_id_bank_reference_key" {
		return nil, fault.New(fault.AlreadyExists, "FUNDING_ALREADY_RECORDED",
			fmt.Sprintf("Le virement de référence « %s » de ce financeur est déjà enregistré.", sp.BankReference),
			"bank_reference", sp.BankReference)
	}
	if err != nil {
		return nil, fmt.Errorf("record funding: %w", err)
	}
	return &Funding{ID: id, Programme: sp.Programme, Funder: sp.Funder, AmountCents: sp.AmountCents,
		FeeCents: fee, BudgetCents: budget, BankReference: sp.BankReference, ReceivedOn: sp.ReceivedOn,
		Ledger: posted[0].Ref()}, nil
}

func programmeClosed(id uuid.UUID) error {
	return fault.New(fault.FailedPrecondition, "PROGRAMME_CLOSED",
		"Ce programme est clos : il n'accepte plus d'opération de ce type.", "programme_id", id.String())
}

// Balance is a programme's balances: totals per account kind and every account.
type Balance struct {
	Programme uuid.UUID
	AsOf      time.Time // zero: now
	Totals    map[ledger.AccountKind]int64
	Accounts  []ledger.Balance
}

// ProgrammeBalance returns a programme's balances now, or as of an instant when asOf is not
// zero. The caller must be allowed to see the programme (GetProgramme's scope).
func (s *Service) ProgrammeBalance(ctx context.Context, p auth.Principal, id uuid.UUID, asOf time.Time) (*Balance, error) {
	if _, err := s.GetProgramme(ctx, p, id); err != nil {
		return nil, err
	}
	var (
		bs  []ledger.Balance
		err error
	)
	if asOf.IsZero() {
		bs, err = ledger.Balances(ctx, s.l.Pool(), id)
	} else {
		bs, err = ledger.BalancesAt(ctx, s.l.Pool(), id, asOf)
	}
	if err != nil {
		return nil, err
	}
	return &Balance{Programme: id, AsOf: asOf, Totals: ledger.Totals(bs), Accounts: bs}, nil
}
