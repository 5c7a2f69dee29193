package ledger

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Names of the checks of a verification report.
const (
	CheckPostingsSumZero       = "postings_sum_zero"
	CheckBalancesMatchPostings = "balances_match_postings"
	CheckHashChain             = "hash_chain"
	CheckOutstanding           = "outstanding_equals_active_vouchers"
	CheckFullyBacked           = "fully_backed"
	CheckNoDoubleRedemption    = "no_double_redemption"
	CheckVouchersHaveBooks     = "vouchers_have_books"
	CheckStatementTotals       = "statement_totals"
)

// maxExamples bounds the failures a check names in its detail.
const maxExamples = 10

// Check is the outcome of one invariant: whether it holds, a French explanation for people,
// and the figures it was decided on (counts and amounts in cents).
type Check struct {
	Name    string
	OK      bool
	Detail  string
	Figures map[string]int64
}

// Report is the outcome of a verification: OK when every check is.
type Report struct {
	OK           bool
	Programme    uuid.UUID // uuid.Nil: every programme
	Checks       []Check
	Transactions int64
	Postings     int64
	VerifiedAt   time.Time // the snapshot's time for Verify, the reading's for VerifyExport
}

// Check returns the check of that name, or nil.
func (r *Report) Check(name string) *Check {
	for i := range r.Checks {
		if r.Checks[i].Name == name {
			return &r.Checks[i]
		}
	}
	return nil
}

// add appends a check and keeps OK the conjunction of all checks.
func (r *Report) add(c Check) {
	if len(r.Checks) == 0 {
		r.OK = true
	}
	r.Checks = append(r.Checks, c)
	r.OK = r.OK && c.OK
}

// examples collects up to maxExamples descriptions of failures, and counts the rest.
type examples struct {
	items []string
	more  int
}

func (e *examples) add(format string, args ...any) {
	if len(e.items) < maxExamples {
		e.items = append(e.items, fmt.Sprintf(format, args...))
		return
	}
	e.more++
}

// String joins the examples, noting how many were left out.
func (e *examples) String() string {
	s := strings.Join(e.items, " ; ")
	if e.more > 0 {
		s += fmt.Sprintf(" ; et %d autre(s)", e.more)
	}
	return s
}

// Verify checks the ledger's invariants for one programme (uuid.Nil: every programme) in one
// read-only REPEATABLE READ snapshot, so that every check sees the same state, and reports
// each check with its figures. A failed check is not an error: the report says what is
// wrong. Errors are database failures, or a NotFound fault for an unknown programme.
func (l *Ledger) Verify(ctx context.Context, programme uuid.UUID) (*Report, error) {
	var rep *Report
	err := l.RunInSnapshot(ctx, "verify", func(ctx context.Context, tx pgx.Tx) error {
		r := &Report{Programme: programme}
		if err := tx.QueryRow(ctx, `SELECT now()`).Scan(&r.VerifiedAt); err != nil {
			return err
		}
		r.VerifiedAt = r.VerifiedAt.UTC()
		heads, err := chainHeads(ctx, tx, programme)
		if err != nil {
			return err
		}
		v := verifier{tx: tx, programme: programme, scope: scope(programme), heads: heads, report: r}
		for _, check := range []func(context.Context) (Check, error){
			v.postingsSumZero,
			v.balancesMatchPostings,
			v.hashChain,
			v.outstandingEqualsActiveVouchers,
			v.fullyBacked,
			v.noDoubleRedemption,
			v.vouchersHaveBooks,
			v.statementTotals,
		} {
			c, err := check(ctx)
			if err != nil {
				return err
			}
			r.add(c)
		}
		rep = r
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("verify ledger: %w", err)
	}
	return rep, nil
}

type verifier struct {
	tx        pgx.Tx
	programme uuid.UUID
	scope     any // $1 of every query: NULL or the programme
	heads     []ChainHead
	report    *Report
}

// postingsSumZero: the sum of all postings is zero, and so is each transaction's, which has
// at least two postings.
func (v *verifier) postingsSumZero(ctx context.Context) (Check, error) {
	c := Check{Name: CheckPostingsSumZero}
	var txs, postings, sum, unbalanced, empty int64
	err := v.tx.QueryRow(ctx, `
		SELECT count(*), coalesce(sum(n), 0)::bigint, coalesce(sum(total), 0)::bigint,
		       count(*) FILTER (WHERE total <> 0 OR n = 1), count(*) FILTER (WHERE n = 0)
		  FROM (SELECT count(p.amount) AS n, coalesce(sum(p.amount), 0) AS total
		          FROM transactions t
		          LEFT JOIN postings p ON p.programme_id = t.programme_id AND p.seq = t.seq
		         WHERE $1::uuid IS NULL OR t.programme_id = $1
		         GROUP BY t.programme_id, t.seq) x`, v.scope).Scan(&txs, &postings, &sum, &unbalanced, &empty)
	if err != nil {
		return c, fmt.Errorf("%s: %w", c.Name, err)
	}
	v.report.Transactions, v.report.Postings = txs, postings
	c.Figures = map[string]int64{
		"transactions": txs, "postings": postings, "sum_cents": sum,
		"unbalanced_transactions": unbalanced, "transactions_without_postings": empty,
	}
	c.OK = sum == 0 && unbalanced == 0 && empty == 0
	if c.OK {
		c.Detail = fmt.Sprintf("%d écritures en %d transactions, toutes équilibrées ; somme totale nulle.", postings, txs)
		return c, nil
	}
	var ex examples
	rows, err := v.tx.Query(ctx, `
		SELECT t.programme_id, t.seq, count(p.amount), coalesce(sum(p.amount), 0)::bigint
		  FROM transactions t
		  LEFT JOIN postings p ON p.programme_id = t.programme_id AND p.seq = t.seq
		 WHERE $1::uuid IS NULL OR t.programme_id = $1
		 GROUP BY t.programme_id, t.seq
		HAVING coalesce(sum(p.amount), 0) <> 0 OR count(p.amount) < 2
		 ORDER BY t.programme_id, t.seq
		 LIMIT $2`, v.scope, maxExamples)
	if err != nil {
		return c, fmt.Errorf("%s: %w", c.Name, err)
	}
	var (
		prog     uuid.UUID
		seq, n   int64
		subtotal int64
	)
	_, err = pgx.ForEachRow(rows, []any{&prog, &seq, &n, &subtotal}, func() error {
		ex.add("transaction %s/%d : %d écriture(s), somme %d", prog, seq, n, subtotal)
		return nil
	})
	if err != nil {
		return c, fmt.Errorf("%s: %w", c.Name, err)
	}
	c.Detail = fmt.Sprintf("somme totale des écritures : %d centimes ; %d transaction(s) déséquilibrée(s), %d sans écriture : %s",
		sum, unbalanced, empty, ex.String())
	return c, nil
}

// balancesMatchPostings: every stored balance equals normal_side × the sum of the account's
// postings, and no posting moves an account of another programme.
func (v *verifier) balancesMatchPostings(ctx context.Context) (Check, error) {
	c := Check{Name: CheckBalancesMatchPostings}
	var accounts, foreign int64
	err := v.tx.QueryRow(ctx, `
		SELECT (SELECT count(*) FROM accounts WHERE $1::uuid IS NULL OR programme_id = $1),
		       (SELECT count(*) FROM postings p JOIN accounts a ON a.id = p.account_id
		         WHERE ($1::uuid IS NULL OR p.programme_id = $1 OR a.programme_id = $1)
		           AND a.programme_id <> p.programme_id)`, v.scope).Scan(&accounts, &foreign)
	if err != nil {
		return c, fmt.Errorf("%s: %w", c.Name, err)
	}
	// Each account's postings are summed with an index-only scan of postings_account_seq.
	rows, err := v.tx.Query(ctx, `
		SELECT id, programme_id, kind, owner_id, balance, derived, count(*) OVER ()
		  FROM (SELECT a.id, a.programme_id, a.kind, a.owner_id, a.balance,
		               (a.normal_side * coalesce((SELECT sum(p.amount) FROM postings p WHERE p.account_id = a.id), 0))::bigint
		                   AS derived
		          FROM accounts a
		         WHERE $1::uuid IS NULL OR a.programme_id = $1) x
		 WHERE balance <> derived
		 ORDER BY id
		 LIMIT $2`, v.scope, maxExamples)
	if err != nil {
		return c, fmt.Errorf("%s: %w", c.Name, err)
	}
	var (
		ex                                examples
		id, balance, derived, mismatching int64
		prog, owner                       uuid.UUID
		kind                              string
	)
	_, err = pgx.ForEachRow(rows, []any{&id, &prog, &kind, &owner, &balance, &derived, &mismatching}, func() error {
		ex.add("compte %d (%s) : solde enregistré %d, somme des écritures %d",
			id, AccountRef{Programme: prog, Kind: AccountKind(kind), Owner: owner}, balance, derived)
		return nil
	})
	if err != nil {
		return c, fmt.Errorf("%s: %w", c.Name, err)
	}
	ex.more = int(mismatching) - len(ex.items)
	c.Figures = map[string]int64{
		"accounts": accounts, "mismatched_accounts": mismatching, "postings_on_other_programme_accounts": foreign,
	}
	c.OK = mismatching == 0 && foreign == 0
	switch {
	case c.OK:
		c.Detail = fmt.Sprintf("les %d soldes enregistrés sont égaux à la somme de leurs écritures.", accounts)
	case mismatching > 0:
		c.Detail = fmt.Sprintf("%d compte(s) dont le solde diffère de la somme des écritures : %s", mismatching, ex.String())
		if foreign > 0 {
			c.Detail += fmt.Sprintf(" ; %d écriture(s) sur un compte d'un autre programme", foreign)
		}
	default:
		c.Detail = fmt.Sprintf("%d écriture(s) sur un compte d'un autre programme", foreign)
	}
	return c, nil
}

// hashChain recomputes every programme's chain from genesis in seq order, streaming the
// journal: seqs follow each other from 1, each prev_hash is the previous stored hash, each
// stored hash is ChainHash of the row, and the chain head names the last transaction.
func (v *verifier) hashChain(ctx context.Context) (Check, error) {
	c := Check{Name: CheckHashChain}
	var (
		ex                                examples
		walked, badHash, badLink, seqGaps int64
		badHeads                          int64
		cur                               uuid.UUID
		lastSeq                           int64
		lastHash                          = GenesisHash
		started                           bool
		ends                              = make(map[uuid.UUID]ChainHead, len(v.heads))
	)
	endChain := func() {
		if started {
			ends[cur] = ChainHead{Programme: cur, LastSeq: lastSeq, LastHash: lastHash}
		}
	}
	err := eachTransaction(ctx, v.tx, v.programme, func(e *JournalEntry) error {
		walked++
		if !started || e.Programme != cur {
			endChain()
			cur, lastSeq, lastHash, started = e.Programme, 0, GenesisHash, true
		}
		if e.Seq != lastSeq+1 {
			seqGaps++
			ex.add("programme %s : transaction n° %d après n° %d", e.Programme, e.Seq, lastSeq)
		}
		if !bytes.Equal(e.PrevHash, lastHash) {
			badLink++
			ex.add("programme %s, transaction n° %d : prev_hash %s ≠ empreinte précédente %s",
				e.Programme, e.Seq, short(e.PrevHash), short(lastHash))
		}
		if want := ChainHash(e.PrevHash, &e.Record); !bytes.Equal(want, e.Hash) {
			badHash++
			ex.add("programme %s, transaction n° %d : empreinte enregistrée %s, recalculée %s",
				e.Programme, e.Seq, short(e.Hash), short(want))
		}
		lastSeq, lastHash = e.Seq, bytes.Clone(e.Hash)
		return nil
	})
	if err != nil {
		return c, fmt.Errorf("%s: %w", c.Name, err)
	}
	endChain()
	for _, h := range v.heads {
		end, ok := ends[h.Programme]
		if !ok {
			end = ChainHead{Programme: h.Programme, LastHash: GenesisHash}
		}
		if h.LastSeq != end.LastSeq || !bytes.Equal(h.LastHash, end.LastHash) {
			badHeads++
			ex.add("programme %s : tête de chaîne n° %d %s, dernière transaction n° %d %s",
				h.Programme, h.LastSeq, short(h.LastHash), end.LastSeq, short(end.LastHash))
		}
	}
	c.Figures = map[string]int64{
		"chains": int64(len(v.heads)), "transactions": walked, "bad_hashes": badHash,
		"broken_links": badLink, "seq_gaps": seqGaps, "bad_heads": badHeads,
	}
	c.OK = badHash == 0 && badLink == 0 && seqGaps == 0 && badHeads == 0
	if c.OK {
		c.Detail = fmt.Sprintf("%d chaîne(s) intacte(s) : %d transactions recalculées depuis l'origine.", len(v.heads), walked)
	} else {
		c.Detail = "chaîne d'empreintes rompue : " + ex.String()
	}
	return c, nil
}

// short is the first 8 bytes of a hash in hex, enough to tell hashes apart in a message.
func short(h []byte) string {
	return hex.EncodeToString(h[:min(len(h), 8)])
}

// outstandingEqualsActiveVouchers: per programme, the Outstanding balance is the face value
// of the vouchers still usable (in stock or available).
func (v *verifier) outstandingEqualsActiveVouchers(ctx context.Context) (Check, error) {
	c := Check{Name: CheckOutstanding}
	rows, err := v.tx.Query(ctx, `
		WITH o AS (SELECT programme_id, sum(balance) AS cents FROM accounts
		            WHERE kind = 'outstanding' AND ($1::uuid IS NULL OR programme_id = $1)
		            GROUP BY programme_id),
		     a AS (SELECT programme_id, sum(cents) AS cents, sum(n) AS n
		             FROM (SELECT programme_id, face_value_cents AS cents, 1 AS n FROM vouchers
		                    WHERE status IN ('in_stock', 'available') AND ($1::uuid IS NULL OR programme_id = $1)
		                   UNION ALL -- keyed books in stock: their vouchers have no rows yet
		                   SELECT b.programme_id, p.face_value_cents * p.vouchers_per_book, p.vouchers_per_book
		                     FROM books b JOIN programmes p ON p.id = b.programme_id
		                    WHERE b.status = 'in_stock' AND b.voucher_codes IS NULL
		                      AND ($1::uuid IS NULL OR b.programme_id = $1)) x
		            GROUP BY programme_id)
		SELECT c.programme_id, coalesce(o.cents, 0)::bigint, coalesce(a.cents, 0)::bigint, coalesce(a.n, 0)
		  FROM ledger_chains c
		  LEFT JOIN o ON o.programme_id = c.programme_id
		  LEFT JOIN a ON a.programme_id = c.programme_id
		 WHERE $1::uuid IS NULL OR c.programme_id = $1
		 ORDER BY c.programme_id`, v.scope)
	if err != nil {
		return c, fmt.Errorf("%s: %w", c.Name, err)
	}
	var (
		ex                                    examples
		prog                                  uuid.UUID
		outstanding, active, n                int64
		programmes, bad, sumOut, sumAct, sumN int64
	)
	_, err = pgx.ForEachRow(rows, []any{&prog, &outstanding, &active, &n}, func() error {
		programmes++
		sumOut, sumAct, sumN = sumOut+outstanding, sumAct+active, sumN+n
		if outstanding != active {
			bad++
			ex.add("programme %s : encours %d centimes, chèques actifs %d centimes (%d chèques)", prog, outstanding, active, n)
		}
		return nil
	})
	if err != nil {
		return c, fmt.Errorf("%s: %w", c.Name, err)
	}
	c.Figures = map[string]int64{
		"programmes": programmes, "mismatched_programmes": bad, "outstanding_cents": sumOut,
		"active_vouchers_cents": sumAct, "active_vouchers": sumN,
	}
	c.OK = bad == 0
	if c.OK {
		c.Detail = fmt.Sprintf("encours égal à la valeur faciale des %d chèques actifs (%d centimes).", sumN, sumAct)
	} else {
		c.Detail = fmt.Sprintf("%d programme(s) dont l'encours diffère des chèques actifs : %s", bad, ex.String())
	}
	return c, nil
}

// fullyBacked: per programme, what funders paid in covers the vouchers outstanding, what is
// payable to sites and what they were paid.
func (v *verifier) fullyBacked(ctx context.Context) (Check, error) {
	c := Check{Name: CheckFullyBacked}
	rows, err := v.tx.Query(ctx, `
		SELECT c.programme_id,
		       coalesce(sum(a.balance) FILTER (WHERE a.kind = 'funder_cash_in'), 0)::bigint,
		       coalesce(sum(a.balance) FILTER (WHERE a.kind = 'outstanding'), 0)::bigint,
		       coalesce(sum(a.balance) FILTER (WHERE a.kind = 'site_payable'), 0)::bigint,
		       coalesce(sum(a.balance) FILTER (WHERE a.kind = 'site_paid'), 0)::bigint
		  FROM ledger_chains c
		  LEFT JOIN accounts a ON a.programme_id = c.programme_id
		 WHERE $1::uuid IS NULL OR c.programme_id = $1
		 GROUP BY c.programme_id
		 ORDER BY c.programme_id`, v.scope)
	if err != nil {
		return c, fmt.Errorf("%s: %w", c.Name, err)
	}
	var (
		ex                                        examples
		prog                                      uuid.UUID
		paidIn, outstanding, payable, paid        int64
		programmes, bad, tIn, tOut, tPayable, tPd int64
	)
	_, err = pgx.ForEachRow(rows, []any{&prog, &paidIn, &outstanding, &payable, &paid}, func() error {
		programmes++
		tIn, tOut, tPayable, tPd = tIn+paidIn, tOut+outstanding, tPayable+payable, tPd+paid
		if paidIn < outstanding+payable+paid {
			bad++
			ex.add("programme %s : versé %d < encours %d + à payer %d + payé %d", prog, paidIn, outstanding, payable, paid)
		}
		return nil
	})
	if err != nil {
		return c, fmt.Errorf("%s: %w", c.Name, err)
	}
	c.Figures = map[string]int64{
		"programmes": programmes, "programmes_not_backed": bad, "paid_in_cents": tIn,
		"outstanding_cents": tOut, "payable_cents": tPayable, "paid_cents": tPd,
	}
	c.OK = bad == 0
	if c.OK {
		c.Detail = fmt.Sprintf("versé %d ≥ encours %d + à payer %d + payé %d centimes, pour chaque programme.", tIn, tOut, tPayable, tPd)
	} else {
		c.Detail = fmt.Sprintf("%d programme(s) non couvert(s) par les versements : %s", bad, ex.String())
	}
	return c, nil
}

// noDoubleRedemption: no voucher has two live (unreversed) redemptions, a round > 1 only
// follows a reversed round, and a voucher is "redeemed" exactly when its latest redemption
// is live.
func (v *verifier) noDoubleRedemption(ctx context.Context) (Check, error) {
	c := Check{Name: CheckNoDoubleRedemption}
	var redemptions, reversed, twice, orphanRounds, redeemedNotLive, liveNotRedeemed int64
	err := v.tx.QueryRow(ctx, `
		WITH r AS (
		    SELECT r.voucher_code, r.round, x.voucher_code IS NOT NULL AS reversed
		      FROM redemptions r
		      LEFT JOIN redemption_reversals x ON x.voucher_code = r.voucher_code AND x.round = r.round
		     WHERE $1::uuid IS NULL OR r.programme_id = $1),
		     live AS (
		    SELECT DISTINCT ON (voucher_code) voucher_code, NOT reversed AS live FROM r
		     ORDER BY voucher_code, round DESC)
		SELECT (SELECT count(*) FROM r),
		       (SELECT count(*) FROM r WHERE reversed),
		       (SELECT count(*) FROM (SELECT 1 FROM r WHERE NOT reversed GROUP BY voucher_code HAVING count(*) > 1) t),
		       (SELECT count(*) FROM r WHERE round > 1 AND NOT EXISTS (
		            SELECT 1 FROM r p WHERE p.voucher_code = r.voucher_code AND p.round = r.round - 1 AND p.reversed)),
		       (SELECT count(*) FROM vouchers v LEFT JOIN live l ON l.voucher_code = v.code
		         WHERE ($1::uuid IS NULL OR v.programme_id = $1) AND v.status = 'redeemed' AND l.live IS NOT TRUE),
		       (SELECT count(*) FROM vouchers v JOIN live l ON l.voucher_code = v.code
		         WHERE ($1::uuid IS NULL OR v.programme_id = $1) AND v.status <> 'redeemed' AND l.live)`,
		v.scope).Scan(&redemptions, &reversed, &twice, &orphanRounds, &redeemedNotLive, &liveNotRedeemed)
	if err != nil {
		return c, fmt.Errorf("%s: %w", c.Name, err)
	}
	c.Figures = map[string]int64{
		"redemptions": redemptions, "reversed_redemptions": reversed, "vouchers_redeemed_twice": twice,
		"rounds_without_reversed_predecessor": orphanRounds, "redeemed_without_live_redemption": redeemedNotLive,
		"live_redemption_not_redeemed": liveNotRedeemed,
	}
	c.OK = twice == 0 && orphanRounds == 0 && redeemedNotLive == 0 && liveNotRedeemed == 0
	if c.OK {
		c.Detail = fmt.Sprintf("%d encaissement(s) dont %d annulé(s) ; aucun chèque encaissé deux fois.", redemptions, reversed)
		return c, nil
	}
	var parts []string
	if twice > 0 {
		parts = append(parts, fmt.Sprintf("%d chèque(s) encaissé(s) deux fois", twice))
	}
	if orphanRounds > 0 {
		parts = append(parts, fmt.Sprintf("%d encaissement(s) sans annulation du précédent", orphanRounds))
	}
	if redeemedNotLive > 0 {
		parts = append(parts, fmt.Sprintf("%d chèque(s) marqué(s) encaissé(s) sans encaissement en vigueur", redeemedNotLive))
	}
	if liveNotRedeemed > 0 {
		parts = append(parts, fmt.Sprintf("%d chèque(s) encaissé(s) mais non marqué(s) comme tel(s)", liveNotRedeemed))
	}
	c.Detail = strings.Join(parts, " ; ")
	return c, nil
}

// vouchersHaveBooks: every voucher's (programme, book) exists; vouchers carry no foreign key
// so that bulk issuance stays fast.
func (v *verifier) vouchersHaveBooks(ctx context.Context) (Check, error) {
	c := Check{Name: CheckVouchersHaveBooks}
	var vouchers, orphans int64
	err := v.tx.QueryRow(ctx, `
		SELECT count(*), count(*) FILTER (WHERE NOT EXISTS (
		           SELECT 1 FROM books b WHERE b.programme_id = v.programme_id AND b.number = v.book_number))
		  FROM vouchers v
		 WHERE $1::uuid IS NULL OR v.programme_id = $1`, v.scope).Scan(&vouchers, &orphans)
	if err != nil {
		return c, fmt.Errorf("%s: %w", c.Name, err)
	}
	c.Figures = map[string]int64{"vouchers": vouchers, "vouchers_without_book": orphans}
	c.OK = orphans == 0
	if c.OK {
		c.Detail = fmt.Sprintf("les %d chèques appartiennent à un carnet existant.", vouchers)
	} else {
		c.Detail = fmt.Sprintf("%d chèque(s) sur %d sans carnet correspondant.", orphans, vouchers)
	}
	return c, nil
}

// statementTotals: every payout statement's total is the sum of its lines, and its line count
// their number. Statements are per site, across programmes: a programme's verification looks
// at the statements with at least one line of that programme.
func (v *verifier) statementTotals(ctx context.Context) (Check, error) {
	c := Check{Name: CheckStatementTotals}
	const totals = `
		SELECT s.number, s.total_cents, s.line_count,
		       coalesce((SELECT sum(l.amount_cents) FROM statement_lines l WHERE l.statement_id = s.id), 0)::bigint
		           AS lines_total,
		       (SELECT count(*) FROM statement_lines l WHERE l.statement_id = s.id) AS lines
		  FROM statements s
		 WHERE $1::uuid IS NULL
		    OR EXISTS (SELECT 1 FROM statement_lines l WHERE l.statement_id = s.id AND l.programme_id = $1)`
	var statements, bad int64
	if err := v.tx.QueryRow(ctx, `
		SELECT count(*), count(*) FILTER (WHERE total_cents <> lines_total OR line_count <> lines) FROM (`+totals+`) x`,
		v.scope).Scan(&statements, &bad); err != nil {
		return c, fmt.Errorf("%s: %w", c.Name, err)
	}
	c.Figures = map[string]int64{"statements": statements, "mismatched_statements": bad}
	c.OK = bad == 0
	if c.OK {
		c.Detail = fmt.Sprintf("le total de chacun des %d relevés est la somme de ses lignes.", statements)
		return c, nil
	}
	rows, err := v.tx.Query(ctx, `
		SELECT number, total_cents, line_count, lines_total, lines FROM (`+totals+`) x
		 WHERE total_cents <> lines_total OR line_count <> lines
		 ORDER BY number
		 LIMIT $2`, v.scope, maxExamples)
	if err != nil {
		return c, fmt.Errorf("%s: %w", c.Name, err)
	}
	var (
		ex                                  examples
		number                              string
		total, count, linesTotal, lineCount int64
	)
	if _, err := pgx.ForEachRow(rows, []any{&number, &total, &count, &linesTotal, &lineCount}, func() error {
		ex.add("relevé %s : total %d centimes sur %d lignes, lignes %d centimes sur %d", number, total, count, linesTotal, lineCount)
		return nil
	}); err != nil {
		return c, fmt.Errorf("%s: %w", c.Name, err)
	}
	ex.more = int(bad) - len(ex.items)
	c.Detail = fmt.Sprintf("%d relevé(s) dont le total ne correspond pas aux lignes : %s", bad, ex.String())
	return c, nil
}
