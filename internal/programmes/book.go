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
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/passnum/passnum/internal/auth"
	"github.com/passnum/passnum/internal/civil"
	"github.com/passnum/passnum/internal/fault"
	"github.com/passnum/passnum/internal/frtext"
	"github.com/passnum/passnum/internal/paging"
	"github.com/passnum/passnum/internal/vcode"
	"github.com/passnum/passnum/ledger"
)

// Book statuses.
const (
	BookInStock   = "in_stock"
	BookHandedOut = "handed_out"
	BookCancelled = "cancelled"
	BookExpired   = "expired"
)

// MaxBooksPerOrder bounds one OrderBooks call.
const MaxBooksPerOrder = 100000

// BookRef names a book: its programme and its number in the programme.
type BookRef struct {
	Programme uuid.UUID `json:"programme_id"`
	Number    int64     `json:"number"`
}

func (r BookRef) String() string { return r.Programme.String() + "/" + strconv.FormatInt(r.Number, 10) }

// Book is a voucher book and the codes of its vouchers, in position order.
type Book struct {
	Programme      uuid.UUID    `json:"programme_id"`
	Number         int64        `json:"number"`
	Distributor    uuid.UUID    `json:"distributor_id"`
	Status         string       `json:"status"`
	TargetPublic   bool         `json:"target_public"`
	Territory      string       `json:"territory"`
	HandedOutAt    time.Time    `json:"handed_out_at"` // zero while in stock
	Codes          []vcode.Code `json:"codes"`
	FaceValueCents int64        `json:"face_value_cents"` // of the whole book
}

// OrderSpec orders books of a programme for a distributor.
type OrderSpec struct {
	Programme   uuid.UUID `json:"programme_id"`
	Distributor uuid.UUID `json:"distributor_id"`
	Books       int32     `json:"books"`
}

// Order is what an OrderBooks call issued.
type Order struct {
	ID             uuid.UUID  `json:"id"`
	Programme      uuid.UUID  `json:"programme_id"`
	Distributor    uuid.UUID  `json:"distributor_id"`
	FirstNumber    int64      `json:"first_number"`
	LastNumber     int64      `json:"last_number"`
	Vouchers       int64      `json:"vouchers"`
	FaceValueCents int64      `json:"face_value_cents"`
	Ledger         ledger.Ref `json:"ledger"`
}

// OrderBooks issues books for an eligible distributor, if their face value is already paid
// in (see the package doc). The operator may order for any programme, a funder for its own.
func (s *Service) OrderBooks(ctx context.Context, p auth.Principal, key string, spec OrderSpec) (*Order, error) {
	if err := requireRole(p, auth.RoleOperator, auth.RoleFunder); err != nil {
		return nil, err
	}
	switch {
	case spec.Programme == uuid.Nil:
		return nil, fault.InvalidField("programme_id", "Indiquez le programme.")
	case spec.Distributor == uuid.Nil:
		return nil, fault.InvalidField("distributor_id", "Indiquez le prescripteur qui recevra les chéquiers.")
	case spec.Books < 1 || spec.Books > MaxBooksPerOrder:
		return nil, fault.InvalidField("books", "Une commande compte de 1 à 100 000 chéquiers.")
	}
	op := ledger.Op{Name: "OrderBooks", Org: p.Org, Key: key, Request: spec}
	return ledger.Do(ctx, s.l, op, func(ctx context.Context, tx pgx.Tx, reqHash []byte) (*Order, error) {
		return s.orderBooks(ctx, tx, p, key, reqHash, &spec)
	})
}

func (s *Service) orderBooks(ctx context.Context, tx pgx.Tx, p auth.Principal, key string, reqHash []byte, sp *OrderSpec) (*Order, error) {
	// Allocating the numbers locks the programme's row: orders of a programme are serialised,
	// so the unissued budget read below cannot be spent by another order before this commits.
	var (
		last                         int64
		status                       string
		validUntil                   time.Time
		faceValue                    int64
		perBook                      int32
		callerIsFunder, distEligible bool
	)
	err := tx.QueryRow(ctx, `
		UPDATE programmes p SET books_ordered = books_ordered + $2 WHERE id = $1
		RETURNING books_ordered, status, valid_until, face_value_cents, vouchers_per_book,
		          EXISTS (SELECT 1 FROM programme_funders f WHERE f.programme_id = p.id AND f.funder_id = $3),
		          EXISTS (SELECT 1 FROM programme_distributors d WHERE d.programme_id = p.id AND d.distributor_id = $4)`,
		sp.Programme, sp.Books, p.Org, sp.Distributor).Scan(
		&last, &status, &validUntil, &faceValue, &perBook, &callerIsFunder, &distEligible)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, programmeNotFound(sp.Programme)
	}
	if err != nil {
		return nil, fmt.Errorf("order books: %w", err)
	}
	if p.Role == auth.RoleFunder && !callerIsFunder {
		return nil, notAllowed("programme", sp.Programme.String())
	}
	if status != ProgrammeOpen {
		return nil, programmeClosed(sp.Programme)
	}
	if s.today().After(validUntil) {
		return nil, validityEnded(validUntil)
	}
	if !distEligible {
		return nil, fault.New(fault.FailedPrecondition, "DISTRIBUTOR_NOT_ELIGIBLE",
			"Ce prescripteur ne fait pas partie des prescripteurs du programme.", "distributor_id", sp.Distributor.String())
	}
	vouchers := int64(sp.Books) * int64(perBook)
	needed := vouchers * faceValue
	unissued := ledger.AccountRef{Programme: sp.Programme, Kind: ledger.Unissued}
	available, err := ledger.BalanceOf(ctx, tx, unissued)
	if err != nil {
		return nil, fmt.Errorf("order books: %w", err)
	}
	if needed > available {
		return nil, notFunded(sp.Books, needed, available)
	}
	first := last - int64(sp.Books) + 1
	orderID, err := uuid.NewV7()
	if err != nil {
		return nil, err
	}
	posted, err := s.l.Post(ctx, tx, ledger.Entry{
		Programme: sp.Programme, Kind: ledger.KindIssuance, Org: p.Org,
		IdempotencyKey: key, RequestHash: reqHash,
		Metadata: map[string]string{"order_id": orderID.String(), "distributor_id": sp.Distributor.String(),
			"first_number": strconv.FormatInt(first, 10), "last_number": strconv.FormatInt(last, 10)},
		Postings: ledger.Move(unissued, ledger.AccountRef{Programme: sp.Programme, Kind: ledger.Outstanding}, needed),
	})
	if code, c := pgConstraint(err); code == "23514" && c == "accounts_balance_non_negative" {
		return nil, notFunded(sp.Books, needed, available)
	}
	if err != nil {
		return nil, fmt.Errorf("order books: %w", err)
	}
	if _, err := tx.Exec(ctx, `
		INSERT INTO book_orders (id, programme_id, distributor_id, first_number, books, face_value_cents, tx_id, ordered_by, code_key)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		orderID, sp.Programme, sp.Distributor, first, sp.Books, faceValue, posted[0].ID, p.Org, s.keys.Current().ID()); err != nil {
		return nil, fmt.Errorf("order books: %w", err)
	}
	// The books carry no codes: each voucher's code is its slot under the order's key
	// (internal/vcode), and its row is written when its book is handed out.
	prog := pgtype.UUID{Bytes: sp.Programme, Valid: true}
	order := pgtype.UUID{Bytes: orderID, Valid: true}
	dist := pgtype.UUID{Bytes: sp.Distributor, Valid: true}
	row := make([]any, 4)
	n, err := tx.CopyFrom(ctx, pgx.Identifier{"books"},
		[]string{"programme_id", "number", "order_id", "distributor_id"},
		pgx.CopyFromSlice(int(sp.Books), func(i int) ([]any, error) {
			row[0], row[1], row[2], row[3] = prog, first+int64(i), order, dist
			return row, nil
		}))
	if err != nil {
		return nil, fmt.Errorf("order books: copy books: %w", err)
	}
	if n != int64(sp.Books) {
		return nil, fmt.Errorf("order books: copied %d books, want %d", n, sp.Books)
	}
	return &Order{ID: orderID, Programme: sp.Programme, Distributor: sp.Distributor, FirstNumber: first,
		LastNumber: last, Vouchers: vouchers, FaceValueCents: needed, Ledger: posted[0].Ref()}, nil
}

func notFunded(books int32, needed, available int64) error {
	return fault.New(fault.FailedPrecondition, "PROGRAMME_NOT_FUNDED",
		fmt.Sprintf("Commande refusée : %d chéquier(s) représentent %s, mais le programme n'a que %s de fonds versés "+
			"et non encore engagés. Les chèques ne peuvent être émis qu'une fois leur valeur versée.",
			books, frtext.Euros(needed), frtext.Euros(available)),
		"needed_cents", strconv.FormatInt(needed, 10), "available_cents", strconv.FormatInt(available, 10))
}

func validityEnded(validUntil time.Time) error {
	return fault.New(fault.FailedPrecondition, "PROGRAMME_VALIDITY_ENDED",
		fmt.Sprintf("La période de validité du programme est terminée depuis le %s.", frtext.Date(validUntil)),
		"valid_until", civil.FormatDate(validUntil))
}

func bookNotFound(ref BookRef) error {
	return fault.New(fault.NotFound, "BOOK_NOT_FOUND", "Ce chéquier n'existe pas.", "book", ref.String())
}

// HandOutSpec activates a book for a beneficiary: no identity, only whether they belong to the
// target public and their département.
type HandOutSpec struct {
	Book         BookRef `json:"book"`
	TargetPublic bool    `json:"target_public"`
	Territory    string  `json:"territory"`
}

// HandOutBook activates a book in stock (its distributor only): the book is handed out, its
// vouchers become available. Refused once the programme's validity has ended.
func (s *Service) HandOutBook(ctx context.Context, p auth.Principal, key string, spec HandOutSpec) (*Book, error) {
	if err := requireRole(p, auth.RoleDistributor); err != nil {
		return nil, err
	}
	if spec.Book.Programme == uuid.Nil || spec.Book.Number < 1 {
		return nil, fault.InvalidField("book", "Indiquez le chéquier (programme et numéro).")
	}
	terr, err := normalizeTerritory(spec.Territory)
	if err != nil {
		return nil, err
	}
	spec.Territory = terr
	op := ledger.Op{Name: "HandOutBook", Org: p.Org, Key: key, Request: spec}
	return ledger.Do(ctx, s.l, op, func(ctx context.Context, tx pgx.Tx, _ []byte) (*Book, error) {
		var (
			dist               uuid.UUID
			status, progStatus string
			codes              []int64
			territories        []string
			validUntil         time.Time
			slots              bookSlots
			faceValue          int64
		)
		err := tx.QueryRow(ctx, `
			SELECT b.distributor_id, b.status, b.voucher_codes, p.territories, p.valid_until, p.status,
			       o.code_key, p.code_prefix, p.vouchers_per_book, p.face_value_cents
			  FROM books b JOIN programmes p ON p.id = b.programme_id JOIN book_orders o ON o.id = b.order_id
			 WHERE b.programme_id = $1 AND b.number = $2
			   FOR UPDATE OF b`, spec.Book.Programme, spec.Book.Number).Scan(
			&dist, &status, &codes, &territories, &validUntil, &progStatus,
			&slots.key, &slots.prefix, &slots.vouchers, &faceValue)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, bookNotFound(spec.Book)
		}
		if err != nil {
			return nil, fmt.Errorf("hand out book %s: %w", spec.Book, err)
		}
		if dist != p.Org {
			return nil, notAllowed("book", spec.Book.String())
		}
		if status != BookInStock {
			return nil, bookNotInStock(spec.Book, status)
		}
		if progStatus != ProgrammeOpen || s.today().After(validUntil) {
			return nil, validityEnded(validUntil)
		}
		if !slices.Contains(territories, spec.Territory) {
			return nil, fault.New(fault.Invalid, "TERRITORY_NOT_IN_PROGRAMME",
				fmt.Sprintf("Ce programme ne couvre pas le département %s : il couvre %s.", spec.Territory, strings.Join(territories, ", ")),
				"territory", spec.Territory)
		}
		now := s.now().UTC().Truncate(time.Microsecond)
		b := &pgx.Batch{}
		b.Queue(`UPDATE books SET status = 'handed_out', target_public = $3, territory = $4, handed_out_at = $5
		          WHERE programme_id = $1 AND number = $2`,
			spec.Book.Programme, spec.Book.Number, spec.TargetPublic, spec.Territory, now)
		if codes != nil {
			// Drawn codes (orders before keyed codes): the rows exist since issuance. They are
			// locked in code order, like redemption batches do.
			b.Queue(`SELECT code FROM vouchers WHERE code = ANY($1) ORDER BY code FOR UPDATE`, codes)
			b.Queue(`UPDATE vouchers SET status = 'available' WHERE code = ANY($1) AND status = 'in_stock'`, codes)
		} else {
			// Keyed codes: the vouchers get their rows now, the first time one can be used.
			slots.book = spec.Book.Number
			keyed, err := s.codesOf(slots)
			if err != nil {
				return nil, fmt.Errorf("hand out book %s: %w", spec.Book, err)
			}
			b.Queue(`
				INSERT INTO vouchers (code, programme_id, book_number, position, face_value_cents, status)
				SELECT u.code, $2, $3, u.position, $4, 'available'
				  FROM unnest($1::bigint[]) WITH ORDINALITY AS u(code, position)`,
				keyed, spec.Book.Programme, spec.Book.Number, faceValue)
		}
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return nil, fmt.Errorf("hand out book %s: %w", spec.Book, err)
		}
		return s.getBook(ctx, tx, spec.Book)
	})
}

func bookNotInStock(ref BookRef, status string) error {
	msg := map[string]string{
		BookHandedOut: "Ce chéquier a déjà été remis à un bénéficiaire.",
		BookCancelled: "Ce chéquier a été annulé.",
		BookExpired:   "Ce chéquier a expiré.",
	}[status]
	return fault.New(fault.FailedPrecondition, "BOOK_NOT_IN_STOCK", msg, "book", ref.String(), "status", status)
}

// CancelSpec cancels a book still in stock.
type CancelSpec struct {
	Book   BookRef `json:"book"`
	Reason string  `json:"reason"`
}

// CancelBook cancels a book still in stock (the operator, or the book's distributor): its
// vouchers are voided and their value returns to the unissued budget.
func (s *Service) CancelBook(ctx context.Context, p auth.Principal, key string, spec CancelSpec) (*Book, error) {
	if err := requireRole(p, auth.RoleOperator, auth.RoleDistributor); err != nil {
		return nil, err
	}
	if spec.Book.Programme == uuid.Nil || spec.Book.Number < 1 {
		return nil, fault.InvalidField("book", "Indiquez le chéquier (programme et numéro).")
	}
	spec.Reason = strings.TrimSpace(spec.Reason)
	if len([]rune(spec.Reason)) > 500 {
		return nil, fault.InvalidField("reason", "Le motif d'annulation ne doit pas dépasser 500 caractères.")
	}
	op := ledger.Op{Name: "CancelBook", Org: p.Org, Key: key, Request: spec}
	return ledger.Do(ctx, s.l, op, func(ctx context.Context, tx pgx.Tx, reqHash []byte) (*Book, error) {
		var (
			dist   uuid.UUID
			status string
			codes  []int64
			value  int64
		)
		err := tx.QueryRow(ctx, `
			SELECT b.distributor_id, b.status, b.voucher_codes,
			       p.face_value_cents * coalesce(cardinality(b.voucher_codes), p.vouchers_per_book)
			  FROM books b JOIN programmes p ON p.id = b.programme_id
			 WHERE b.programme_id = $1 AND b.number = $2 FOR UPDATE OF b`, spec.Book.Programme, spec.Book.Number).Scan(
			&dist, &status, &codes, &value)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil, bookNotFound(spec.Book)
		}
		if err != nil {
			return nil, fmt.Errorf("cancel book %s: %w", spec.Book, err)
		}
		if p.Role != auth.RoleOperator && dist != p.Org {
			return nil, notAllowed("book", spec.Book.String())
		}
		if status != BookInStock {
			return nil, bookNotInStock(spec.Book, status)
		}
		// A book in stock has had nothing happen to its vouchers: its whole face value returns.
		// Vouchers of keyed books have no rows yet (their status is the book's); those of books
		// with drawn codes are voided, locked in code order like redemption batches do.
		now := s.now().UTC().Truncate(time.Microsecond)
		b := &pgx.Batch{}
		if codes != nil {
			b.Queue(`SELECT code FROM vouchers WHERE code = ANY($1) ORDER BY code FOR UPDATE`, codes)
			b.Queue(`UPDATE vouchers SET status = 'voided', held_by = NULL, held_until = NULL
			          WHERE code = ANY($1) AND status = 'in_stock'`, codes)
		}
		b.Queue(`UPDATE books SET status = 'cancelled', closed_at = $3 WHERE programme_id = $1 AND number = $2`,
			spec.Book.Programme, spec.Book.Number, now)
		if err := tx.SendBatch(ctx, b).Close(); err != nil {
			return nil, fmt.Errorf("cancel book %s: %w", spec.Book, err)
		}
		if value > 0 {
			meta := map[string]string{"book": spec.Book.String(), "number": strconv.FormatInt(spec.Book.Number, 10)}
			if spec.Reason != "" {
				meta["reason"] = spec.Reason
			}
			if _, err := s.l.Post(ctx, tx, ledger.Entry{
				Programme: spec.Book.Programme, Kind: ledger.KindCancellation, Org: p.Org,
				IdempotencyKey: key, RequestHash: reqHash, Metadata: meta,
				Postings: ledger.Move(ledger.AccountRef{Programme: spec.Book.Programme, Kind: ledger.Outstanding},
					ledger.AccountRef{Programme: spec.Book.Programme, Kind: ledger.Unissued}, value),
			}); err != nil {
				return nil, fmt.Errorf("cancel book %s: %w", spec.Book, err)
			}
		}
		return s.getBook(ctx, tx, spec.Book)
	})
}

const bookSelect = `
	SELECT b.programme_id, b.number, b.distributor_id, b.status, coalesce(b.target_public, false),
	       coalesce(b.territory, ''), b.handed_out_at, b.voucher_codes,
	       o.code_key, p.code_prefix, p.vouchers_per_book,
	       p.face_value_cents * coalesce(cardinality(b.voucher_codes), p.vouchers_per_book)
	  FROM books b JOIN programmes p ON p.id = b.programme_id JOIN book_orders o ON o.id = b.order_id`

// bookScope is the SQL condition on book b for the caller in $1 (role) and $2 (org).
const bookScope = `
	($1::text = 'operator'
	 OR ($1 = 'distributor' AND b.distributor_id = $2)
	 OR ($1 = 'funder' AND EXISTS (SELECT 1 FROM programme_funders sf
	                                WHERE sf.programme_id = b.programme_id AND sf.funder_id = $2)))`

func (s *Service) scanBook(row pgx.Row) (*Book, error) {
	var (
		b     Book
		at    *time.Time
		codes []int64
		slots bookSlots
	)
	if err := row.Scan(&b.Programme, &b.Number, &b.Distributor, &b.Status, &b.TargetPublic, &b.Territory,
		&at, &codes, &slots.key, &slots.prefix, &slots.vouchers, &b.FaceValueCents); err != nil {
		return nil, err
	}
	if at != nil {
		b.HandedOutAt = at.UTC()
	}
	if codes == nil {
		slots.book = b.Number
		var err error
		if codes, err = s.codesOf(slots); err != nil {
			return nil, err
		}
	}
	b.Codes = make([]vcode.Code, len(codes))
	for i, c := range codes {
		b.Codes[i] = vcode.Code(c)
	}
	return &b, nil
}

func (s *Service) getBook(ctx context.Context, q ledger.Querier, ref BookRef) (*Book, error) {
	b, err := s.scanBook(q.QueryRow(ctx, bookSelect+` WHERE b.programme_id = $1 AND b.number = $2`, ref.Programme, ref.Number))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, bookNotFound(ref)
	}
	if err != nil {
		return nil, fmt.Errorf("get book %s: %w", ref, err)
	}
	return b, nil
}

// GetBook returns a book the caller may see (see the package doc), or BOOK_NOT_FOUND.
func (s *Service) GetBook(ctx context.Context, p auth.Principal, ref BookRef) (*Book, error) {
	b, err := s.scanBook(s.l.Pool().QueryRow(ctx, bookSelect+` WHERE b.programme_id = $3 AND b.number = $4 AND `+bookScope,
		string(p.Role), p.Org, ref.Programme, ref.Number))
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, bookNotFound(ref)
	}
	if err != nil {
		return nil, fmt.Errorf("get book %s: %w", ref, err)
	}
	return b, nil
}

// BookFilter narrows ListBooks; zero fields do not filter.
type BookFilter struct {
	Programme   uuid.UUID
	Distributor uuid.UUID
	Status      string
}

// ListBooks returns the books the caller may see that match f, by programme and number, and
// the token of the next page ("" after the last).
func (s *Service) ListBooks(ctx context.Context, p auth.Principal, f BookFilter, page paging.Request) ([]*Book, string, error) {
	n, err := page.Limit()
	if err != nil {
		return nil, "", err
	}
	if f.Status != "" && !slices.Contains([]string{BookInStock, BookHandedOut, BookCancelled, BookExpired}, f.Status) {
		return nil, "", fault.InvalidField("status", "Ce statut de chéquier n'existe pas.")
	}
	var (
		afterProg *uuid.UUID
		afterNum  int64
	)
	if page.Token != "" {
		t, err := decodeToken(page.Token)
		if err != nil {
			return nil, "", err
		}
		ps, ns, ok := strings.Cut(t, "/")
		id, perr := uuid.Parse(ps)
		num, nerr := strconv.ParseInt(ns, 10, 64)
		if !ok || perr != nil || nerr != nil {
			return nil, "", badToken()
		}
		afterProg, afterNum = &id, num
	}
	var prog, dist *uuid.UUID
	if f.Programme != uuid.Nil {
		prog = &f.Programme
	}
	if f.Distributor != uuid.Nil {
		dist = &f.Distributor
	}
	rows, err := s.l.Pool().Query(ctx, bookSelect+` WHERE `+bookScope+`
		   AND ($3::uuid IS NULL OR b.programme_id = $3)
		   AND ($4::uuid IS NULL OR b.distributor_id = $4)
		   AND ($5::text = '' OR b.status = $5)
		   AND ($6::uuid IS NULL OR (b.programme_id, b.number) > ($6, $7))
		 ORDER BY b.programme_id, b.number LIMIT $8`,
		string(p.Role), p.Org, prog, dist, f.Status, afterProg, afterNum, n+1)
	if err != nil {
		return nil, "", fmt.Errorf("list books: %w", err)
	}
	defer rows.Close()
	var out []*Book
	for rows.Next() {
		b, err := s.scanBook(rows)
		if err != nil {
			return nil, "", fmt.Errorf("list books: %w", err)
		}
		out = append(out, b)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("list books: %w", err)
	}
	next := ""
	if len(out) > n {
		out = out[:n]
		next = encodeToken(BookRef{Programme: out[n-1].Programme, Number: out[n-1].Number}.String())
	}
	return out, next, nil
}

// bookSlots is what makes the codes of a keyed book: its order's key, its programme's prefix,
// its number and how many vouchers it holds. key is nil for books with drawn codes.
type bookSlots struct {
	key      *string
	prefix   int32
	book     int64
	vouchers int32
}

// codesOf returns the codes of a keyed book, in position order.
func (s *Service) codesOf(b bookSlots) ([]int64, error) {
	if b.key == nil {
		return nil, fmt.Errorf("book %d of prefix %d has neither drawn nor keyed codes", b.book, b.prefix)
	}
	k, ok := s.keys.Key(*b.key)
	if !ok {
		return nil, fmt.Errorf("voucher key %q of book %d is not loaded (see passnumd -voucher-keys)", *b.key, b.book)
	}
	codes := make([]int64, b.vouchers)
	for i := range codes {
		c, err := k.Code(vcode.Slot{Prefix: uint32(b.prefix), Book: b.book, Position: i + 1})
		if err != nil {
			return nil, err
		}
		codes[i] = int64(c)
	}
	return codes, nil
}
