-- The redemption batch's hot path (bench/README.md, "Where the time goes now"): a batch of
-- 128 redemptions posts 256 postings on about 129 accounts (Outstanding and one payable
-- account per site) and inserts 128 redemptions, and the triggers below ran inside the
-- programme's critical section or made the two redemption executors wait for each other.
-- Nothing here changes what is refused or what any figure says.

-- 1. Balances: one UPDATE for all the accounts a posting statement touches, instead of one
--    UPDATE per account in a PL/pgSQL loop (about 24 µs each). Post already serialises the
--    writers of a programme on its chain head; the rows are still locked first in account id
--    order, as the loop did, so that postings written any other way (raw SQL, an account of
--    another programme) cannot deadlock either: the order in which UPDATE ... FROM reaches
--    its rows is the planner's choice (a hash join over the accounts follows their physical
--    order). FOR NO KEY UPDATE is the lock the UPDATE takes anyway, so it adds no conflict
--    with the KEY SHARE locks of foreign keys to accounts. The checks before it are those of
--    002_ledger.sql, unchanged.
CREATE OR REPLACE FUNCTION ledger_apply_postings() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
DECLARE
    bad record;
    ids bigint[];
    amounts numeric[];
BEGIN
    -- LATERAL: each touched transaction's postings are read through the primary key, however
    -- large the table and whatever the statistics were when this plan was cached.
    SELECT t.programme_id, t.seq, s.total, s.n, t.added INTO bad
      FROM (SELECT programme_id, seq, count(*) AS added FROM new_postings GROUP BY programme_id, seq) t
     CROSS JOIN LATERAL (SELECT sum(p.amount) AS total, count(*) AS n FROM postings p
                          WHERE p.programme_id = t.programme_id AND p.seq = t.seq) s
     WHERE s.total <> 0 OR s.n < 2 OR s.n <> t.added
     LIMIT 1;
    IF FOUND AND bad.n <> bad.added THEN
        RAISE EXCEPTION 'ledger transaction %/% already has % postings: % more refused (post a new transaction)',
            bad.programme_id, bad.seq, bad.n - bad.added, bad.added
            USING ERRCODE = 'check_violation', CONSTRAINT = 'postings_one_statement';
    END IF;
    IF FOUND THEN
        RAISE EXCEPTION 'unbalanced ledger transaction %/%: % postings sum to %',
            bad.programme_id, bad.seq, bad.n, bad.total
            USING ERRCODE = 'check_violation', CONSTRAINT = 'postings_balanced';
    END IF;

    SELECT array_agg(d.account_id ORDER BY d.account_id), array_agg(d.amount ORDER BY d.account_id)
      INTO ids, amounts
      FROM (SELECT n.account_id, sum(n.amount) AS amount FROM new_postings n GROUP BY n.account_id) d;
    -- Rows are locked in ORDER BY order (the locking step runs above the sort).
    PERFORM FROM accounts WHERE id = ANY (ids) ORDER BY id FOR NO KEY UPDATE;
    UPDATE accounts a SET balance = a.balance + d.amount * a.normal_side
      FROM unnest(ids, amounts) AS d(id, amount)
     WHERE a.id = d.id;
    RETURN NULL;
END
$$;

-- 2. The identity guard of accounts fired, as a PL/pgSQL call, for every balance update.
--    It now fires only for updates that name an identity column, and refuses them all, even
--    one that sets a column to its own value; deletes are refused by their own trigger.
--    The posting trigger's balance updates name balance only. (Writes of a BEFORE trigger
--    to NEW are not seen by column lists; accounts has no other BEFORE trigger.)
DROP TRIGGER accounts_guard ON accounts;
DROP FUNCTION ledger_guard_account();
CREATE FUNCTION ledger_refuse_account_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'accounts: % of identity columns refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER accounts_identity BEFORE UPDATE OF id, programme_id, kind, owner_id, normal_side, non_negative
    ON accounts FOR EACH ROW EXECUTE FUNCTION ledger_refuse_account_change();
CREATE TRIGGER accounts_no_delete BEFORE DELETE ON accounts
    FOR EACH ROW EXECUTE FUNCTION ledger_refuse_account_change();

-- 3. report_postings_inserted looked up the account of every posting (256 primary-key
--    look-ups and heap visits per batch, on rows the same statement has just updated) to
--    find the rare ones on funder_returned accounts (close-out). This index holds only those
--    accounts: the statement's account ids are looked up in it in one index scan, which in
--    the redemptions' case finds nothing and visits no heap, and the function leaves. It is
--    exact whatever programme the accounts belong to, like the join it replaces, which still
--    computes the figures when some posting does move a funder_returned account.
CREATE INDEX accounts_funder_returned ON accounts (id) WHERE kind = 'funder_returned';

-- 4. report_spend rows are keyed by site, so two transactions redeeming at the same sites of
--    a programme (the two redemption executors, consecutive batches) waited for each other's
--    rows until commit. Each row now also has a slot: a transaction writes a programme's
--    rows in the lowest slot of that programme no other open transaction holds (one advisory
--    transaction lock per programme and slot, taken without waiting), so concurrent writers
--    of a programme never share a row while at most eight of them write, and writers of
--    different programmes all keep slot 0: a key has a second row only where writers of its
--    programme overlapped. Readers sum over slots, as every reader of report_spend already
--    sums its rows.
ALTER TABLE report_spend ADD COLUMN slot smallint NOT NULL DEFAULT 0 CHECK (slot BETWEEN 0 AND 7);
ALTER TABLE report_spend DROP CONSTRAINT report_spend_pkey,
    ADD PRIMARY KEY (programme_id, month, distributor_id, site_id, territory, slot);

-- The calling transaction's slot for a programme: the lowest of 0-7 whose lock it holds or
-- can take at once (held until commit, like the rows then written). With all eight taken by
-- others it falls back on one chosen by backend, and waits for rows as before. The locks are
-- two-key advisory locks (the programme's hash, 0x72700000 'rp' + slot), a space apart from
-- the one-key advisory locks the application takes; programmes whose hashes collide only
-- share slots.
CREATE FUNCTION report_slot(programme uuid) RETURNS smallint
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    FOR s IN 0..7 LOOP
        IF pg_try_advisory_xact_lock(uuid_hash(programme), 1919942656 + s) THEN
            RETURN s;
        END IF;
    END LOOP;
    RETURN pg_backend_pid() % 8;
END
$$;

-- The report triggers of 007_reports.sql, with the same figures and keys: each computes its
-- rows as before (x), takes one slot per programme among them (slots), and upserts into
-- those slots. report_postings_inserted also leaves early through accounts_funder_returned (3).
CREATE OR REPLACE FUNCTION report_books_inserted() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public
SET enable_hashjoin = off SET enable_mergejoin = off AS $$
BEGIN
    WITH x AS MATERIALIZED (
        SELECT d.programme_id, d.month, d.distributor_id,
               '00000000-0000-0000-0000-000000000000'::uuid AS site_id, d.territory,
               sum(d.issued) AS issued, sum(d.handed_out) AS handed_out, sum(d.target_public) AS target_public
          FROM (SELECT b.programme_id, report_month(o.created_at) AS month, b.distributor_id,
                       '' AS territory, b.n AS issued, 0 AS handed_out, 0 AS target_public
                  FROM (SELECT programme_id, order_id, distributor_id, count(*) AS n
                          FROM new_books WHERE status <> 'cancelled'
                         GROUP BY 1, 2, 3) b
                  JOIN book_orders o ON o.id = b.order_id
                UNION ALL
                SELECT programme_id, report_month(handed_out_at), distributor_id,
                       coalesce(territory, ''), 0, 1, CASE WHEN target_public THEN 1 ELSE 0 END
                  FROM new_books WHERE handed_out_at IS NOT NULL) d
         GROUP BY 1, 2, 3, 5
    ), slots AS MATERIALIZED (
        SELECT q.programme_id, report_slot(q.programme_id) AS slot
          FROM (SELECT DISTINCT programme_id FROM x) q
    )
    INSERT INTO report_spend AS a (programme_id, month, distributor_id, site_id, territory, slot,
                                   books_issued, books_handed_out, books_target_public)
    SELECT x.programme_id, x.month, x.distributor_id, x.site_id, x.territory, slots.slot,
           x.issued, x.handed_out, x.target_public
      FROM x JOIN slots ON slots.programme_id = x.programme_id
     ORDER BY 1, 2, 3, 5
    ON CONFLICT (programme_id, month, distributor_id, site_id, territory, slot) DO UPDATE
       SET books_issued        = a.books_issued + excluded.books_issued,
           books_handed_out    = a.books_handed_out + excluded.books_handed_out,
           books_target_public = a.books_target_public + excluded.books_target_public;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION report_books_updated() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public
SET enable_hashjoin = off SET enable_mergejoin = off AS $$
BEGIN
    WITH x AS MATERIALIZED (
        SELECT d.programme_id, d.month, d.distributor_id,
               '00000000-0000-0000-0000-000000000000'::uuid AS site_id, d.territory,
               sum(d.issued) AS issued, sum(d.handed_out) AS handed_out, sum(d.target_public) AS target_public
          FROM (SELECT b.programme_id, report_month(o.created_at) AS month, b.distributor_id,
                       '' AS territory, b.n AS issued, 0 AS handed_out, 0 AS target_public
                  FROM (SELECT programme_id, order_id, distributor_id, sum(sign) AS n
                          FROM (SELECT programme_id, order_id, distributor_id, 1 AS sign
                                  FROM new_books WHERE status <> 'cancelled'
                                UNION ALL
                                SELECT programme_id, order_id, distributor_id, -1
                                  FROM old_books WHERE status <> 'cancelled') c
                         GROUP BY 1, 2, 3
                        HAVING sum(sign) <> 0) b
                  JOIN book_orders o ON o.id = b.order_id
                UNION ALL
                SELECT programme_id, month, distributor_id, territory, 0, sum(sign), sum(tp)
                  FROM (SELECT programme_id, report_month(handed_out_at) AS month, distributor_id,
                               coalesce(territory, '') AS territory, 1 AS sign,
                               CASE WHEN target_public THEN 1 ELSE 0 END AS tp
                          FROM new_books WHERE handed_out_at IS NOT NULL
                        UNION ALL
                        SELECT programme_id, report_month(handed_out_at), distributor_id,
                               coalesce(territory, ''), -1, CASE WHEN target_public THEN -1 ELSE 0 END
                          FROM old_books WHERE handed_out_at IS NOT NULL) h
                 GROUP BY 1, 2, 3, 4) d
         GROUP BY 1, 2, 3, 5
        HAVING sum(d.issued) <> 0 OR sum(d.handed_out) <> 0 OR sum(d.target_public) <> 0
    ), slots AS MATERIALIZED (
        SELECT q.programme_id, report_slot(q.programme_id) AS slot
          FROM (SELECT DISTINCT programme_id FROM x) q
    )
    INSERT INTO report_spend AS a (programme_id, month, distributor_id, site_id, territory, slot,
                                   books_issued, books_handed_out, books_target_public)
    SELECT x.programme_id, x.month, x.distributor_id, x.site_id, x.territory, slots.slot,
           x.issued, x.handed_out, x.target_public
      FROM x JOIN slots ON slots.programme_id = x.programme_id
     ORDER BY 1, 2, 3, 5
    ON CONFLICT (programme_id, month, distributor_id, site_id, territory, slot) DO UPDATE
       SET books_issued        = a.books_issued + excluded.books_issued,
           books_handed_out    = a.books_handed_out + excluded.books_handed_out,
           books_target_public = a.books_target_public + excluded.books_target_public;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION report_redemptions_inserted() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public
SET enable_hashjoin = off SET enable_mergejoin = off AS $$
BEGIN
    WITH r AS MATERIALIZED (
        SELECT n.programme_id, v.book_number, n.voucher_code, n.round, n.redeemed_at,
               report_month(n.service_date) AS month,
               coalesce(b.distributor_id, '00000000-0000-0000-0000-000000000000') AS distributor_id,
               n.site_id, coalesce(b.territory, '') AS territory, n.minutes, n.amount_cents
          FROM new_redemptions n
          JOIN vouchers v ON v.code = n.voucher_code
          LEFT JOIN books b ON b.programme_id = v.programme_id AND b.number = v.book_number
    ), started AS (
        INSERT INTO report_book_starts (programme_id, book_number, month, distributor_id, site_id, territory)
        SELECT DISTINCT ON (programme_id, book_number)
               programme_id, book_number, month, distributor_id, site_id, territory
          FROM r
         ORDER BY programme_id, book_number, redeemed_at, voucher_code, round
        ON CONFLICT (programme_id, book_number) DO NOTHING
        RETURNING programme_id, month, distributor_id, site_id, territory
    ), x AS MATERIALIZED (
        SELECT programme_id, month, distributor_id, site_id, territory,
               sum(started) AS started, sum(redeemed) AS redeemed, sum(minutes) AS minutes, sum(cents) AS cents
          FROM (SELECT programme_id, month, distributor_id, site_id, territory,
                       0 AS started, 1 AS redeemed, minutes, amount_cents AS cents
                  FROM r
                UNION ALL
                SELECT programme_id, month, distributor_id, site_id, territory, 1, 0, 0, 0
                  FROM started) y
         GROUP BY 1, 2, 3, 4, 5
    ), slots AS MATERIALIZED (
        SELECT q.programme_id, report_slot(q.programme_id) AS slot
          FROM (SELECT DISTINCT programme_id FROM x) q
    )
    INSERT INTO report_spend AS a (programme_id, month, distributor_id, site_id, territory, slot,
                                   books_started, vouchers_redeemed, minutes, redeemed_cents)
    SELECT x.programme_id, x.month, x.distributor_id, x.site_id, x.territory, slots.slot,
           x.started, x.redeemed, x.minutes, x.cents
      FROM x JOIN slots ON slots.programme_id = x.programme_id
     ORDER BY 1, 2, 3, 4, 5
    ON CONFLICT (programme_id, month, distributor_id, site_id, territory, slot) DO UPDATE
       SET books_started     = a.books_started + excluded.books_started,
           vouchers_redeemed = a.vouchers_redeemed + excluded.vouchers_redeemed,
           minutes           = a.minutes + excluded.minutes,
           redeemed_cents    = a.redeemed_cents + excluded.redeemed_cents;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION report_reversals_inserted() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public
SET enable_hashjoin = off SET enable_mergejoin = off AS $$
BEGIN
    WITH x AS MATERIALIZED (
        SELECT r.programme_id, report_month(r.service_date) AS month,
               coalesce(b.distributor_id, '00000000-0000-0000-0000-000000000000') AS distributor_id, r.site_id,
               coalesce(b.territory, '') AS territory, count(*) AS reversals, sum(r.minutes) AS minutes,
               sum(n.amount_cents) AS cents
          FROM new_reversals n
          JOIN redemptions r ON r.voucher_code = n.voucher_code AND r.round = n.round
          JOIN vouchers v ON v.code = n.voucher_code
          LEFT JOIN books b ON b.programme_id = v.programme_id AND b.number = v.book_number
         GROUP BY 1, 2, 3, 4, 5
    ), slots AS MATERIALIZED (
        SELECT q.programme_id, report_slot(q.programme_id) AS slot
          FROM (SELECT DISTINCT programme_id FROM x) q
    )
    INSERT INTO report_spend AS a (programme_id, month, distributor_id, site_id, territory, slot,
                                   reversals, reversed_minutes, reversed_cents)
    SELECT x.programme_id, x.month, x.distributor_id, x.site_id, x.territory, slots.slot,
           x.reversals, x.minutes, x.cents
      FROM x JOIN slots ON slots.programme_id = x.programme_id
     ORDER BY 1, 2, 3, 4, 5
    ON CONFLICT (programme_id, month, distributor_id, site_id, territory, slot) DO UPDATE
       SET reversals        = a.reversals + excluded.reversals,
           reversed_minutes = a.reversed_minutes + excluded.reversed_minutes,
           reversed_cents   = a.reversed_cents + excluded.reversed_cents;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION report_vouchers_updated() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public
SET enable_hashjoin = off SET enable_mergejoin = off AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM new_vouchers WHERE status = 'expired')
       AND NOT EXISTS (SELECT 1 FROM old_vouchers WHERE status = 'expired') THEN
        RETURN NULL;
    END IF;
    WITH x AS MATERIALIZED (
        SELECT d.programme_id, report_month(p.valid_until + p.grace_days + 1) AS month,
               coalesce(b.distributor_id, '00000000-0000-0000-0000-000000000000') AS distributor_id,
               '00000000-0000-0000-0000-000000000000'::uuid AS site_id, coalesce(b.territory, '') AS territory,
               sum(d.cents) AS cents
          FROM (SELECT programme_id, book_number, sum(cents) AS cents
                  FROM (SELECT programme_id, book_number, face_value_cents AS cents
                          FROM new_vouchers WHERE status = 'expired'
                        UNION ALL
                        SELECT programme_id, book_number, -face_value_cents
                          FROM old_vouchers WHERE status = 'expired') c
                 GROUP BY 1, 2
                HAVING sum(cents) <> 0) d
          JOIN programmes p ON p.id = d.programme_id
          LEFT JOIN books b ON b.programme_id = d.programme_id AND b.number = d.book_number
         GROUP BY 1, 2, 3, 5
        HAVING sum(d.cents) <> 0
    ), slots AS MATERIALIZED (
        SELECT q.programme_id, report_slot(q.programme_id) AS slot
          FROM (SELECT DISTINCT programme_id FROM x) q
    )
    INSERT INTO report_spend AS a (programme_id, month, distributor_id, site_id, territory, slot,
                                   expired_cents)
    SELECT x.programme_id, x.month, x.distributor_id, x.site_id, x.territory, slots.slot, x.cents
      FROM x JOIN slots ON slots.programme_id = x.programme_id
     ORDER BY 1, 2, 3, 5
    ON CONFLICT (programme_id, month, distributor_id, site_id, territory, slot) DO UPDATE
       SET expired_cents = a.expired_cents + excluded.expired_cents;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION report_postings_inserted() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public
SET enable_hashjoin = off SET enable_mergejoin = off AS $$
BEGIN
    -- The redemptions' case: one scan of accounts_funder_returned for the statement's
    -- account ids, no heap.
    IF NOT EXISTS (SELECT 1 FROM accounts ac
                    WHERE ac.kind = 'funder_returned'
                      AND ac.id = ANY (ARRAY(SELECT p.account_id FROM new_postings p))) THEN
        RETURN NULL;
    END IF;
    WITH x AS MATERIALIZED (
        SELECT p.programme_id, report_month(t.effective_at) AS month, sum(p.amount) AS cents
          FROM new_postings p
          JOIN accounts ac ON ac.id = p.account_id
          JOIN transactions t ON t.programme_id = p.programme_id AND t.seq = p.seq
         WHERE ac.kind = 'funder_returned'
         GROUP BY 1, 2
        HAVING sum(p.amount) <> 0
    ), slots AS MATERIALIZED (
        SELECT q.programme_id, report_slot(q.programme_id) AS slot
          FROM (SELECT DISTINCT programme_id FROM x) q
    )
    INSERT INTO report_spend AS a (programme_id, month, distributor_id, site_id, territory, slot,
                                   returned_cents)
    SELECT x.programme_id, x.month, '00000000-0000-0000-0000-000000000000',
           '00000000-0000-0000-0000-000000000000', '', slots.slot, x.cents
      FROM x JOIN slots ON slots.programme_id = x.programme_id
     ORDER BY 1, 2
    ON CONFLICT (programme_id, month, distributor_id, site_id, territory, slot) DO UPDATE
       SET returned_cents = a.returned_cents + excluded.returned_cents;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION report_statements_updated() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public
SET enable_hashjoin = off SET enable_mergejoin = off AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM new_statements WHERE status = 'paid')
       AND NOT EXISTS (SELECT 1 FROM old_statements WHERE status = 'paid') THEN
        RETURN NULL;
    END IF;
    WITH x AS MATERIALIZED (
        SELECT l.programme_id, report_month(s.paid_on) AS month,
               coalesce(b.distributor_id, '00000000-0000-0000-0000-000000000000') AS distributor_id, s.site_id,
               coalesce(b.territory, '') AS territory, sum(s.sign * l.amount_cents) AS cents
          FROM (SELECT id, site_id, paid_on, 1 AS sign FROM new_statements WHERE status = 'paid'
                UNION ALL
                SELECT id, site_id, paid_on, -1 FROM old_statements WHERE status = 'paid') s
          JOIN statement_lines l ON l.statement_id = s.id
          JOIN vouchers v ON v.code = l.voucher_code
          LEFT JOIN books b ON b.programme_id = v.programme_id AND b.number = v.book_number
         GROUP BY 1, 2, 3, 4, 5
        HAVING sum(s.sign * l.amount_cents) <> 0
    ), slots AS MATERIALIZED (
        SELECT q.programme_id, report_slot(q.programme_id) AS slot
          FROM (SELECT DISTINCT programme_id FROM x) q
    )
    INSERT INTO report_spend AS a (programme_id, month, distributor_id, site_id, territory, slot,
                                   paid_cents)
    SELECT x.programme_id, x.month, x.distributor_id, x.site_id, x.territory, slots.slot, x.cents
      FROM x JOIN slots ON slots.programme_id = x.programme_id
     ORDER BY 1, 2, 3, 4, 5
    ON CONFLICT (programme_id, month, distributor_id, site_id, territory, slot) DO UPDATE
       SET paid_cents = a.paid_cents + excluded.paid_cents;
    RETURN NULL;
END
$$;
