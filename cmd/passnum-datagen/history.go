package main

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/errgroup"

	"github.com/passnum/passnum/ledger"
)

// Draws are hashes of a running index (hashint8extended with a salt), so that one SQL
// statement can draw a book's or a voucher's fate and another draw it again identically.
const tempFunctions = `
CREATE OR REPLACE FUNCTION pg_temp.dg_u(k bigint, salt bigint) RETURNS float8
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT ((hashint8extended(k, salt) >> 11) & 9007199254740991)::float8 / 9007199254740992
$$;
CREATE OR REPLACE FUNCTION pg_temp.dg_code(i bigint, off bigint) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT (((i + off)::numeric * ` + "896523748238492917" + `) % 1152921504606846976)::bigint
$$`

// booksSQL writes a programme's books from its orders: handed out (target public, territory,
// date), cancelled or in stock, with their voucher codes.
const booksSQL = `
INSERT INTO books (programme_id, number, order_id, distributor_id, status, target_public, territory,
                   handed_out_at, closed_at, voucher_codes)
SELECT $1, n, o.id, o.distributor_id,
       CASE WHEN f.h THEN 'handed_out' WHEN f.c THEN 'cancelled' ELSE 'in_stock' END,
       CASE WHEN f.h THEN pg_temp.dg_u(k.k, $4 + 4) < $8 END,
       CASE WHEN f.h THEN ($5::text[])[1 + floor(pg_temp.dg_u(k.k, $4 + 5) * cardinality($5::text[]))::int] END,
       CASE WHEN f.h THEN least(o.created_at + pg_temp.dg_u(k.k, $4 + 6) * interval '120 days', $6) END,
       CASE WHEN NOT f.h AND f.c THEN o.created_at + interval '20 days' END,
       ARRAY(SELECT pg_temp.dg_code(k.k * 50 + pos, $7) FROM generate_series(1, $2::int) AS pos ORDER BY pos)
  FROM book_orders o
 CROSS JOIN LATERAL generate_series(o.first_number, o.first_number + o.books - 1) AS n
 CROSS JOIN LATERAL (SELECT $3::bigint + n AS k) k
 CROSS JOIN LATERAL (SELECT pg_temp.dg_u(k.k, $4 + 1) < $9 AS h, pg_temp.dg_u(k.k, $4 + 2) < $10 AS c) f
 WHERE o.programme_id = $1`

// vouchersPlanSQL draws every voucher's fate: used or not (books used at a rate drawn per
// book), reversed, redeemed again; its site (one of four near its distributor), service date
// (after hand-out, up to the last service day), minutes and service.
const vouchersPlanSQL = `
CREATE TEMP TABLE dg_v ON COMMIT DROP AS
SELECT book, pos, code, book_status, used, reversed,
       reversed AND pg_temp.dg_u(i, $3 + 10) < $10 AS rerun,
       site, d1, least(d1 + 1, $6::date) AS d2, minutes, service,
       (d1 + time '10:00' + pg_temp.dg_u(i, $3 + 14) * interval '8 hours') AT TIME ZONE 'Europe/Paris' AS at1
  FROM (SELECT b.number AS book, pos::smallint AS pos, b.voucher_codes[pos] AS code, b.status AS book_status, x.i,
               b.status = 'handed_out' AND pg_temp.dg_u(x.i, $3 + 7) < x.rate AS used,
               b.status = 'handed_out' AND pg_temp.dg_u(x.i, $3 + 7) < x.rate
                   AND pg_temp.dg_u(x.i, $3 + 9) < $9 AS reversed,
               ($4::uuid[])[1 + ((array_position($5::uuid[], b.distributor_id) - 1) * 3
                                 + floor(pg_temp.dg_u(x.i, $3 + 11) * 4)::int) % cardinality($4::uuid[])] AS site,
               x.hd + floor(pg_temp.dg_u(x.i, $3 + 12) ^ 1.5::float8 * greatest(0, $6::date - x.hd))::int AS d1,
               30 + floor(pg_temp.dg_u(x.i, $3 + 13) * 150)::int AS minutes,
               ($11::text[])[1 + floor(pg_temp.dg_u(x.i, $3 + 15) * cardinality($11::text[]))::int] AS service
          FROM books b
         CROSS JOIN LATERAL generate_series(1, cardinality(b.voucher_codes)) AS pos
         CROSS JOIN LATERAL (
               SELECT ($2::bigint + b.number) * 50 + pos AS i,
                      (b.handed_out_at AT TIME ZONE 'Europe/Paris')::date AS hd,
                      CASE WHEN pg_temp.dg_u($2::bigint + b.number, $3 + 3) < $7 THEN 0
                           ELSE 2 * $8::float8 - 1 + (2 - 2 * $8::float8) * pg_temp.dg_u($2::bigint + b.number, $3 + 8) END AS rate) x
         WHERE b.programme_id = $1) v`

const vouchersSQL = `
INSERT INTO vouchers (code, programme_id, book_number, position, face_value_cents, status, rounds)
SELECT code, $1, book, pos, $2,
       CASE book_status WHEN 'in_stock' THEN 'in_stock' WHEN 'cancelled' THEN 'voided'
            ELSE CASE WHEN used AND (NOT reversed OR rerun) THEN 'redeemed' ELSE 'available' END END,
       CASE WHEN rerun THEN 2 WHEN used THEN 1 ELSE 0 END
  FROM dg_v
 ORDER BY code`

// vouchers writes one programme's books, vouchers, redemptions and reversals, with their
// ledger transactions, in one transaction.
func (g *generator) vouchers(ctx context.Context, p *programme) error {
	salt := int64(g.o.seed) * 1000
	last := g.lastServiceDay(p)
	handOutLimit := time.Date(last.Year(), last.Month(), last.Day(), 16, 0, 0, 0, time.UTC).AddDate(0, 0, -7)
	return g.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, tempFunctions); err != nil {
			return fmt.Errorf("temporary functions: %w", err)
		}
		if _, err := tx.Exec(ctx, booksSQL, p.id, p.perBook, p.bookBase, salt, p.territories, handOutLimit,
			g.codeOffset, targetPublicRate, handOutRate, cancelRate); err != nil {
			return fmt.Errorf("books: %w", err)
		}
		if _, err := tx.Exec(ctx, vouchersPlanSQL, p.id, p.bookBase, salt, p.dep.sites, p.distributors, last,
			idleBookRate, usePerActiveBook, reversalRate, reRedeemRate, services); err != nil {
			return fmt.Errorf("voucher plan: %w", err)
		}
		if _, err := tx.Exec(ctx, vouchersSQL, p.id, int64(faceValueCents)); err != nil {
			return fmt.Errorf("vouchers: %w", err)
		}
		if err := g.redemptions(ctx, tx, p); err != nil {
			return err
		}
		var cancelled int64
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM books WHERE programme_id = $1 AND status = 'cancelled'`,
			p.id).Scan(&cancelled); err != nil {
			return fmt.Errorf("cancelled books: %w", err)
		}
		if cancelled > 0 {
			if _, err := g.l.Post(ctx, tx, ledger.Entry{Programme: p.id, Kind: ledger.KindCancellation, Org: g.operator,
				EffectiveAt: p.validFrom.AddDate(0, 7, 0),
				Postings: ledger.Move(ledger.AccountRef{Programme: p.id, Kind: ledger.Outstanding},
					ledger.AccountRef{Programme: p.id, Kind: ledger.Unissued}, cancelled*int64(p.perBook)*faceValueCents)}); err != nil {
				return fmt.Errorf("cancellation: %w", err)
			}
		}
		return nil
	})
}

// redemptions posts the redemption transactions (one per site and month, one per redemption
// that is reversed later) and the reversals, then writes redemptions, reversals and the
// redemptions that follow a reversal, in that order (a round 2 needs its reversed round 1).
func (g *generator) redemptions(ctx context.Context, tx pgx.Tx, p *programme) error {
	type group struct {
		site  uuid.UUID
		month time.Time
		n     int64
	}
	rows, err := tx.Query(ctx, `
		SELECT site, date_trunc('month', d)::date, count(*)
		  FROM (SELECT site, d1 AS d FROM dg_v WHERE used AND NOT reversed
		        UNION ALL
		        SELECT site, d2 FROM dg_v WHERE rerun) x
		 GROUP BY 1, 2 ORDER BY 1, 2`)
	if err != nil {
		return fmt.Errorf("redemption groups: %w", err)
	}
	groups, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (group, error) {
		var gr group
		return gr, r.Scan(&gr.site, &gr.month, &gr.n)
	})
	if err != nil {
		return fmt.Errorf("redemption groups: %w", err)
	}
	type single struct {
		code int64
		site uuid.UUID
		at   time.Time
	}
	rows, err = tx.Query(ctx, `SELECT code, site, at1 FROM dg_v WHERE reversed ORDER BY code`)
	if err != nil {
		return fmt.Errorf("reversed redemptions: %w", err)
	}
	singles, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (single, error) {
		var s single
		return s, r.Scan(&s.code, &s.site, &s.at)
	})
	if err != nil {
		return fmt.Errorf("reversed redemptions: %w", err)
	}

	outstanding := ledger.AccountRef{Programme: p.id, Kind: ledger.Outstanding}
	payable := func(site uuid.UUID) ledger.AccountRef {
		return ledger.AccountRef{Programme: p.id, Kind: ledger.SitePayable, Owner: site}
	}
	var entries []ledger.Entry
	for _, gr := range groups {
		effective := minTime(gr.month.AddDate(0, 1, -1), g.lastServiceDay(p)).Add(18 * time.Hour)
		entries = append(entries, ledger.Entry{Programme: p.id, Kind: ledger.KindRedemption, Org: gr.site, EffectiveAt: effective,
			Metadata: map[string]string{"redemptions": fmt.Sprint(gr.n), "month": gr.month.Format("2006-01")},
			Postings: ledger.Move(outstanding, payable(gr.site), gr.n*faceValueCents)})
	}
	for _, s := range singles {
		entries = append(entries, ledger.Entry{Programme: p.id, Kind: ledger.KindRedemption, Org: s.site, EffectiveAt: s.at,
			Postings: ledger.Move(outstanding, payable(s.site), faceValueCents)})
	}
	posted, err := postAll(ctx, g.l, tx, entries)
	if err != nil {
		return fmt.Errorf("redemption transactions: %w", err)
	}
	var reversals []ledger.Entry
	for i, s := range singles {
		reversals = append(reversals, ledger.Entry{Programme: p.id, Kind: ledger.KindReversal, Org: g.operator,
			EffectiveAt: s.at.Add(24 * time.Hour), Reverses: posted[len(groups)+i].ID,
			Metadata: map[string]string{"reason": "error"},
			Postings: ledger.Move(payable(s.site), outstanding, faceValueCents)})
	}
	reversed, err := postAll(ctx, g.l, tx, reversals)
	if err != nil {
		return fmt.Errorf("reversal transactions: %w", err)
	}

	if _, err := tx.Exec(ctx, `
		CREATE TEMP TABLE dg_tx (site uuid, month date, tx uuid) ON COMMIT DROP;
		CREATE TEMP TABLE dg_txr (code bigint PRIMARY KEY, tx uuid, rtx uuid) ON COMMIT DROP`); err != nil {
		return fmt.Errorf("transaction maps: %w", err)
	}
	txRows := make([][]any, len(groups))
	for i, gr := range groups {
		txRows[i] = []any{gr.site, gr.month, posted[i].ID}
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"dg_tx"}, []string{"site", "month", "tx"}, pgx.CopyFromRows(txRows)); err != nil {
		return fmt.Errorf("transaction map: %w", err)
	}
	txrRows := make([][]any, len(singles))
	for i, s := range singles {
		txrRows[i] = []any{s.code, posted[len(groups)+i].ID, reversed[i].ID}
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{"dg_txr"}, []string{"code", "tx", "rtx"}, pgx.CopyFromRows(txrRows)); err != nil {
		return fmt.Errorf("reversal map: %w", err)
	}
	if _, err := tx.Exec(ctx, `CREATE INDEX ON dg_tx (site, month); ANALYZE dg_tx; ANALYZE dg_txr; ANALYZE dg_v`); err != nil {
		return fmt.Errorf("transaction maps: %w", err)
	}
	if _, err := tx.Exec(ctx, `
		INSERT INTO redemptions (voucher_code, round, programme_id, site_id, service, minutes, service_date,
		                         amount_cents, redeemed_at, tx_id)
		SELECT v.code, 1, $1, v.site, v.service, v.minutes, v.d1, $2, v.at1, coalesce(r.tx, t.tx)
		  FROM dg_v v
		  LEFT JOIN dg_txr r ON r.code = v.code
		  LEFT JOIN dg_tx t ON NOT v.reversed AND t.site = v.site AND t.month = date_trunc('month', v.d1)::date
		 WHERE v.used`, p.id, int64(faceValueCents)); err != nil {
		return fmt.Errorf("redemptions: %w", err)
	}
	if _, err := tx.Exec(ctx, `
		INSERT INTO redemption_reversals (voucher_code, round, programme_id, site_id, reason, note, amount_cents,
		                                  reversed_at, reversed_by, tx_id)
		SELECT v.code, 1, $1, v.site, 'error', 'Code saisi sur le mauvais chèque', $2, v.at1 + interval '1 day', $3, r.rtx
		  FROM dg_v v JOIN dg_txr r ON r.code = v.code`, p.id, int64(faceValueCents), g.operator); err != nil {
		return fmt.Errorf("reversals: %w", err)
	}
	if _, err := tx.Exec(ctx, `
		INSERT INTO redemptions (voucher_code, round, programme_id, site_id, service, minutes, service_date,
		                         amount_cents, redeemed_at, tx_id)
		SELECT v.code, 2, $1, v.site, v.service, v.minutes, v.d2, $2, v.at1 + interval '25 hours', t.tx
		  FROM dg_v v JOIN dg_tx t ON t.site = v.site AND t.month = date_trunc('month', v.d2)::date
		 WHERE v.rerun`, p.id, int64(faceValueCents)); err != nil {
		return fmt.Errorf("redemptions after reversal: %w", err)
	}
	return nil
}

// postAll posts entries in calls of a few thousand.
func postAll(ctx context.Context, l *ledger.Ledger, tx pgx.Tx, entries []ledger.Entry) ([]ledger.Posted, error) {
	var out []ledger.Posted
	for len(entries) > 0 {
		n := min(len(entries), 2000)
		posted, err := l.Post(ctx, tx, entries[:n]...)
		if err != nil {
			return nil, err
		}
		out = append(out, posted...)
		entries = entries[n:]
	}
	return out, nil
}

// settle puts the month's redemptions of every site on a statement, with the reversals of the
// month whose redemption rides along or was paid already (clawbacks), approves and pays it
// (the payout ledger transactions, then the status, which the reports trigger sees). The
// départements' sites are shared between the workers, one transaction each: their
// statements, claims and aggregate rows are disjoint, and the programmes' chain heads, locked
// by the payout transactions at the end, are mostly different too.
func (g *generator) settle(cutoff, paidOn time.Time) error {
	prev := cutoff.AddDate(0, 0, 1).AddDate(0, -1, -1)
	groups := make([][]uuid.UUID, g.o.workers)
	for i, d := range g.deps {
		groups[i%len(groups)] = append(groups[i%len(groups)], d.sites...)
	}
	eg, ctx := errgroup.WithContext(g.ctx)
	for _, sites := range groups {
		if len(sites) > 0 {
			eg.Go(func() error { return g.settleSites(ctx, sites, prev, cutoff, paidOn) })
		}
	}
	return eg.Wait()
}

// settleSites settles the month for some sites. Redemptions are found through their site and
// redemption time: the generator redeems a voucher on its service day or, after a reversal,
// the next one.
func (g *generator) settleSites(ctx context.Context, sites []uuid.UUID, prev, cutoff, paidOn time.Time) error {
	return g.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `
			CREATE TEMP TABLE dg_l ON COMMIT DROP AS
			SELECT r.site_id, 'redemption'::text AS kind, r.voucher_code, r.round, r.programme_id, r.amount_cents AS amount
			  FROM redemptions r
			 WHERE r.site_id = ANY($3)
			   AND r.redeemed_at >= ($1::date + 1)::timestamp AT TIME ZONE 'Europe/Paris'
			   AND r.redeemed_at < ($2::date + 3)::timestamp AT TIME ZONE 'Europe/Paris'
			   AND r.service_date > $1 AND r.service_date <= $2`, prev, cutoff, sites); err != nil {
			return fmt.Errorf("redemption lines: %w", err)
		}
		if _, err := tx.Exec(ctx, `
			INSERT INTO dg_l
			SELECT v.site_id, 'reversal', v.voucher_code, v.round, v.programme_id, -v.amount_cents
			  FROM redemption_reversals v
			  JOIN redemptions r ON r.voucher_code = v.voucher_code AND r.round = v.round
			 WHERE v.site_id = ANY($3)
			   AND (v.reversed_at AT TIME ZONE 'Europe/Paris')::date > $1
			   AND (v.reversed_at AT TIME ZONE 'Europe/Paris')::date <= $2
			   AND ((r.service_date > $1 AND r.service_date <= $2)
			        OR EXISTS (SELECT 1 FROM statement_claims c JOIN statements s ON s.id = c.statement_id
			                    WHERE c.kind = 'redemption' AND c.voucher_code = v.voucher_code AND c.round = v.round
			                      AND s.status = 'paid'))`, prev, cutoff, sites); err != nil {
			return fmt.Errorf("clawback lines: %w", err)
		}
		if _, err := tx.Exec(ctx, `
			CREATE TEMP TABLE dg_s ON COMMIT DROP AS
			SELECT gen_random_uuid() AS id, site_id, sum(amount)::bigint AS total, count(*)::int AS n
			  FROM dg_l GROUP BY site_id HAVING sum(amount) > 0`); err != nil {
			return fmt.Errorf("statements: %w", err)
		}
		if _, err := tx.Exec(ctx, `
			INSERT INTO statements (id, number, site_id, cutoff, total_cents, line_count, created_at, created_by)
			SELECT id, 'RLV-' || to_char($1::date, 'YYYY-MM') || '-' || lpad(nextval('statement_numbers')::text, 6, '0'),
			       site_id, $1, total, n, ($1::date + time '20:00') AT TIME ZONE 'Europe/Paris', $2
			  FROM dg_s ORDER BY site_id`, cutoff, g.operator); err != nil {
			return fmt.Errorf("statements: %w", err)
		}
		if _, err := tx.Exec(ctx, `
			INSERT INTO statement_lines (statement_id, line_no, programme_id, kind, voucher_code, round, amount_cents)
			SELECT s.id, row_number() OVER (PARTITION BY s.id ORDER BY l.kind DESC, l.voucher_code, l.round),
			       l.programme_id, l.kind, l.voucher_code, l.round, l.amount
			  FROM dg_l l JOIN dg_s s USING (site_id)`); err != nil {
			return fmt.Errorf("statement lines: %w", err)
		}
		if _, err := tx.Exec(ctx, `
			UPDATE statements SET status = 'approved', approved_at = ($1::date + 3 + time '09:00') AT TIME ZONE 'Europe/Paris',
			       approved_by = $2
			 WHERE id IN (SELECT id FROM dg_s)`, cutoff, g.operator); err != nil {
			return fmt.Errorf("approve statements: %w", err)
		}
		type payout struct {
			statement, site, programme uuid.UUID
			amount                     int64
		}
		rows, err := tx.Query(ctx, `
			SELECT s.id, s.site_id, l.programme_id, sum(l.amount)::bigint
			  FROM dg_l l JOIN dg_s s USING (site_id)
			 GROUP BY 1, 2, 3 HAVING sum(l.amount) <> 0 ORDER BY 1, 3`)
		if err != nil {
			return fmt.Errorf("payouts: %w", err)
		}
		payouts, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (payout, error) {
			var po payout
			return po, r.Scan(&po.statement, &po.site, &po.programme, &po.amount)
		})
		if err != nil {
			return fmt.Errorf("payouts: %w", err)
		}
		entries := make([]ledger.Entry, len(payouts))
		for i, po := range payouts {
			entries[i] = ledger.Entry{Programme: po.programme, Kind: ledger.KindPayout, Org: g.operator,
				EffectiveAt: paidOn.Add(10 * time.Hour),
				Postings: ledger.Move(ledger.AccountRef{Programme: po.programme, Kind: ledger.SitePayable, Owner: po.site},
					ledger.AccountRef{Programme: po.programme, Kind: ledger.SitePaid, Owner: po.site}, po.amount)}
		}
		posted, err := postAll(ctx, g.l, tx, entries)
		if err != nil {
			return fmt.Errorf("payout transactions: %w", err)
		}
		rowsIn := make([][]any, len(payouts))
		for i, po := range payouts {
			rowsIn[i] = []any{po.statement, po.programme, posted[i].ID, po.amount}
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"statement_payouts"},
			[]string{"statement_id", "programme_id", "tx_id", "amount_cents"}, pgx.CopyFromRows(rowsIn)); err != nil {
			return fmt.Errorf("statement payouts: %w", err)
		}
		if _, err := tx.Exec(ctx, `
			UPDATE statements SET status = 'paid', paid_at = ($1::date + time '10:00') AT TIME ZONE 'Europe/Paris',
			       paid_by = $2, paid_on = $1, bank_reference = 'VIR-' || number
			 WHERE id IN (SELECT id FROM dg_s)`, paidOn, g.operator); err != nil {
			return fmt.Errorf("pay statements: %w", err)
		}
		return nil
	})
}

// closeOut expires the programmes past their grace period, as the close-out does: active
// vouchers expire and books close (one UPDATE each for all of them), then per programme an
// expiry transaction and the return of the whole unissued budget to its funders by share.
func (g *generator) closeOut() error {
	var ids []uuid.UUID
	var ats []time.Time
	byID := map[uuid.UUID]*programme{}
	for _, p := range g.programmes {
		if !p.expiresOn.IsZero() {
			ids = append(ids, p.id)
			ats = append(ats, p.expiresOn.Add(8*time.Hour))
			byID[p.id] = p
		}
	}
	if len(ids) == 0 {
		return nil
	}
	return g.inTx(g.ctx, func(tx pgx.Tx) error {
		type closed struct {
			vouchers, cents, books int64
		}
		res := map[uuid.UUID]*closed{}
		for _, id := range ids {
			res[id] = &closed{}
		}
		rows, err := tx.Query(g.ctx, `
			WITH e AS (UPDATE vouchers SET status = 'expired'
			            WHERE status IN ('in_stock', 'available') AND programme_id = ANY($1)
			           RETURNING programme_id, face_value_cents)
			SELECT programme_id, count(*), sum(face_value_cents)::bigint FROM e GROUP BY 1`, ids)
		if err != nil {
			return fmt.Errorf("expire vouchers: %w", err)
		}
		for rows.Next() {
			var id uuid.UUID
			var n, cents int64
			if err := rows.Scan(&id, &n, &cents); err != nil {
				rows.Close()
				return fmt.Errorf("expire vouchers: %w", err)
			}
			res[id].vouchers, res[id].cents = n, cents
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("expire vouchers: %w", err)
		}
		rows, err = tx.Query(g.ctx, `
			WITH b AS (UPDATE books b SET status = 'expired', closed_at = x.at
			             FROM unnest($1::uuid[], $2::timestamptz[]) AS x(p, at)
			            WHERE b.programme_id = x.p AND b.status IN ('in_stock', 'handed_out')
			           RETURNING b.programme_id)
			SELECT programme_id, count(*) FROM b GROUP BY 1`, ids, ats)
		if err != nil {
			return fmt.Errorf("expire books: %w", err)
		}
		for rows.Next() {
			var id uuid.UUID
			var n int64
			if err := rows.Scan(&id, &n); err != nil {
				rows.Close()
				return fmt.Errorf("expire books: %w", err)
			}
			res[id].books = n
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("expire books: %w", err)
		}
		if _, err := tx.Exec(g.ctx, `
			UPDATE programmes p SET status = 'expired', expired_at = x.at
			  FROM unnest($1::uuid[], $2::timestamptz[]) AS x(p, at) WHERE p.id = x.p`, ids, ats); err != nil {
			return fmt.Errorf("expire programmes: %w", err)
		}
		for i, id := range ids {
			p, c := byID[id], res[id]
			unissued := ledger.AccountRef{Programme: id, Kind: ledger.Unissued}
			if c.cents > 0 {
				if _, err := g.l.Post(g.ctx, tx, ledger.Entry{Programme: id, Kind: ledger.KindExpiry, Org: g.operator,
					EffectiveAt: ats[i], Postings: ledger.Move(ledger.AccountRef{Programme: id, Kind: ledger.Outstanding}, unissued, c.cents)}); err != nil {
					return fmt.Errorf("expiry: %w", err)
				}
			}
			left, err := ledger.BalanceOf(g.ctx, tx, unissued)
			if err != nil {
				return err
			}
			var returns []ledger.Entry
			given := int64(0)
			for j, f := range p.funders {
				part := left * p.shares[j] / 10000
				if j == len(p.funders)-1 {
					part = left - given
				}
				given += part
				if part > 0 {
					returns = append(returns, ledger.Entry{Programme: id, Kind: ledger.KindReturn, Org: g.operator,
						EffectiveAt: ats[i].Add(time.Hour),
						Postings:    ledger.Move(unissued, ledger.AccountRef{Programme: id, Kind: ledger.FunderReturned, Owner: f}, part)})
				}
			}
			if _, err := g.l.Post(g.ctx, tx, returns...); err != nil {
				return fmt.Errorf("returns: %w", err)
			}
			if _, err := tx.Exec(g.ctx, `
				INSERT INTO programme_closures (programme_id, vouchers_expired, books_expired, expired_cents, returned_cents,
				                                closed_at, closed_by)
				VALUES ($1, $2, $3, $4, $5, $6, $7)`, id, c.vouchers, c.books, c.cents, left, ats[i], g.operator); err != nil {
				return fmt.Errorf("closure: %w", err)
			}
		}
		return nil
	})
}
