-- Spend report aggregates (internal/reports), kept by statement-level triggers with transition
-- tables on the event tables. Every write path (the API, a 100k-book order written with COPY,
-- batched redemptions, close-out, raw SQL) therefore updates them in its own transaction, with
-- one grouped upsert per statement and no per-row trigger. The application never writes them:
-- it has SELECT only, and the trigger functions are SECURITY DEFINER.
--
-- One row per (programme, month, distributor, site, territory). A key part that does not apply
-- to an event is the nil UUID (distributor, site) or '' (territory).
--
--   measure               event                                  key
--   books_issued          books INSERT +1 unless cancelled;      month the order was placed
--                         UPDATE to cancelled −1: a cancelled     (book_orders.created_at),
--                         book is no longer issued (it reached    distributor, no site, no
--                         nobody, its value went back to the      territory (unknown until
--                         budget), so the figure is "books        hand-out)
--                         ordered that month, not cancelled"
--   books_handed_out,     books INSERT or UPDATE setting          month of handed_out_at,
--   books_target_public   handed_out_at (target_public = true)    distributor, no site, the
--                                                                 book's territory
--   books_started         a book's first redemption (first by     that redemption's key
--                         redeemed_at, code, round within a
--                         statement), once per book even if
--                         that redemption is reversed later
--                         (report_book_starts)
--   vouchers_redeemed,    redemptions INSERT                      month of service_date, site,
--   minutes,                                                      the book's distributor and
--   redeemed_cents                                                territory
--   reversals,            redemption_reversals INSERT             the reversed redemption's key,
--   reversed_minutes,                                             so a month's net figures stay
--   reversed_cents                                                true
--   expired_cents         vouchers UPDATE to (or from) expired,   month of the day after the
--                         face value                              programme's redeemable-until
--                                                                 date (valid_until + grace_days
--                                                                 + 1), the book's distributor
--                                                                 and territory ('' if never
--                                                                 handed out), no site
--   returned_cents        postings on funder_returned accounts:   month of the transaction's
--                         the close-out's "return" transactions   effective_at, no distributor,
--                         (unissued → funder returned), net of    site or territory
--                         any reversal
--   paid_cents            statements UPDATE to paid: the          month of paid_on, the
--                         statement's lines (clawback lines       statement's site, each line's
--                         negative)                               book distributor and territory
--
-- Months of instants are Europe/Paris civil months. The territory is the book's département,
-- set when the book is handed out (the beneficiary's territory).
--
-- Every trigger function pins nested-loop joins: PL/pgSQL keeps one plan per statement for the
-- session, made with the first call's transition table size, and the only joins are look-ups
-- by primary key, which are right for one row as for a million.

CREATE TABLE report_spend (
    programme_id        uuid   NOT NULL,
    month               date   NOT NULL CHECK (extract(day FROM month) = 1),
    distributor_id      uuid   NOT NULL,
    site_id             uuid   NOT NULL,
    territory           text   NOT NULL,
    books_issued        bigint NOT NULL DEFAULT 0,
    books_handed_out    bigint NOT NULL DEFAULT 0,
    books_target_public bigint NOT NULL DEFAULT 0,
    books_started       bigint NOT NULL DEFAULT 0,
    vouchers_redeemed   bigint NOT NULL DEFAULT 0,
    minutes             bigint NOT NULL DEFAULT 0,
    redeemed_cents      bigint NOT NULL DEFAULT 0,
    reversals           bigint NOT NULL DEFAULT 0,
    reversed_minutes    bigint NOT NULL DEFAULT 0,
    reversed_cents      bigint NOT NULL DEFAULT 0,
    paid_cents          bigint NOT NULL DEFAULT 0,
    expired_cents       bigint NOT NULL DEFAULT 0,
    returned_cents      bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (programme_id, month, distributor_id, site_id, territory)
) WITH (fillfactor = 80); -- room for HOT updates: measures change, keys never do
-- Scoped reads: a distributor's or a site's own rows.
CREATE INDEX report_spend_distributor ON report_spend (distributor_id, month);
CREATE INDEX report_spend_site ON report_spend (site_id, month);

-- Books with at least one redemption, with the key their start was counted under.
CREATE TABLE report_book_starts (
    programme_id   uuid   NOT NULL,
    book_number    bigint NOT NULL,
    month          date   NOT NULL,
    distributor_id uuid   NOT NULL,
    site_id        uuid   NOT NULL,
    territory      text   NOT NULL,
    PRIMARY KEY (programme_id, book_number)
);

GRANT SELECT ON report_spend, report_book_starts TO passnum_app;

CREATE FUNCTION report_month(t timestamptz) RETURNS date
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT date_trunc('month', t AT TIME ZONE 'Europe/Paris')::date
$$;

CREATE FUNCTION report_month(d date) RETURNS date
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT date_trunc('month', d::timestamp)::date
$$;

-- books INSERT: each new book's contribution.
CREATE FUNCTION report_books_inserted() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public
SET enable_hashjoin = off SET enable_mergejoin = off AS $$
BEGIN
    INSERT INTO report_spend AS a (programme_id, month, distributor_id, site_id, territory,
                                   books_issued, books_handed_out, books_target_public)
    SELECT d.programme_id, d.month, d.distributor_id, '00000000-0000-0000-0000-000000000000',
           d.territory, sum(d.issued), sum(d.handed_out), sum(d.target_public)
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
     ORDER BY 1, 2, 3, 5
    ON CONFLICT (programme_id, month, distributor_id, site_id, territory) DO UPDATE
       SET books_issued        = a.books_issued + excluded.books_issued,
           books_handed_out    = a.books_handed_out + excluded.books_handed_out,
           books_target_public = a.books_target_public + excluded.books_target_public;
    RETURN NULL;
END
$$;

-- books UPDATE: the new rows' contribution minus the old rows'. No join between the two
-- transition tables: unchanged contributions cancel out in the grouping.
CREATE FUNCTION report_books_updated() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public
SET enable_hashjoin = off SET enable_mergejoin = off AS $$
BEGIN
    INSERT INTO report_spend AS a (programme_id, month, distributor_id, site_id, territory,
                                   books_issued, books_handed_out, books_target_public)
    SELECT d.programme_id, d.month, d.distributor_id, '00000000-0000-0000-0000-000000000000',
           d.territory, sum(d.issued), sum(d.handed_out), sum(d.target_public)
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
     ORDER BY 1, 2, 3, 5
    ON CONFLICT (programme_id, month, distributor_id, site_id, territory) DO UPDATE
       SET books_issued        = a.books_issued + excluded.books_issued,
           books_handed_out    = a.books_handed_out + excluded.books_handed_out,
           books_target_public = a.books_target_public + excluded.books_target_public;
    RETURN NULL;
END
$$;

CREATE TRIGGER report_books_inserted AFTER INSERT ON books
    REFERENCING NEW TABLE AS new_books
    FOR EACH STATEMENT EXECUTE FUNCTION report_books_inserted();
CREATE TRIGGER report_books_updated AFTER UPDATE ON books
    REFERENCING OLD TABLE AS old_books NEW TABLE AS new_books
    FOR EACH STATEMENT EXECUTE FUNCTION report_books_updated();

-- redemptions INSERT: redeemed vouchers, minutes and cents, and the books they start.
CREATE FUNCTION report_redemptions_inserted() RETURNS trigger
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
    )
    INSERT INTO report_spend AS a (programme_id, month, distributor_id, site_id, territory,
                                   books_started, vouchers_redeemed, minutes, redeemed_cents)
    SELECT programme_id, month, distributor_id, site_id, territory,
           sum(started), sum(redeemed), sum(minutes), sum(cents)
      FROM (SELECT programme_id, month, distributor_id, site_id, territory,
                   0 AS started, 1 AS redeemed, minutes, amount_cents AS cents
              FROM r
            UNION ALL
            SELECT programme_id, month, distributor_id, site_id, territory, 1, 0, 0, 0
              FROM started) x
     GROUP BY 1, 2, 3, 4, 5
     ORDER BY 1, 2, 3, 4, 5
    ON CONFLICT (programme_id, month, distributor_id, site_id, territory) DO UPDATE
       SET books_started     = a.books_started + excluded.books_started,
           vouchers_redeemed = a.vouchers_redeemed + excluded.vouchers_redeemed,
           minutes           = a.minutes + excluded.minutes,
           redeemed_cents    = a.redeemed_cents + excluded.redeemed_cents;
    RETURN NULL;
END
$$;

CREATE TRIGGER report_redemptions_inserted AFTER INSERT ON redemptions
    REFERENCING NEW TABLE AS new_redemptions
    FOR EACH STATEMENT EXECUTE FUNCTION report_redemptions_inserted();

-- redemption_reversals INSERT: counted under the reversed redemption's key.
CREATE FUNCTION report_reversals_inserted() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public
SET enable_hashjoin = off SET enable_mergejoin = off AS $$
BEGIN
    INSERT INTO report_spend AS a (programme_id, month, distributor_id, site_id, territory,
                                   reversals, reversed_minutes, reversed_cents)
    SELECT r.programme_id, report_month(r.service_date),
           coalesce(b.distributor_id, '00000000-0000-0000-0000-000000000000'), r.site_id,
           coalesce(b.territory, ''), count(*), sum(r.minutes), sum(n.amount_cents)
      FROM new_reversals n
      JOIN redemptions r ON r.voucher_code = n.voucher_code AND r.round = n.round
      JOIN vouchers v ON v.code = n.voucher_code
      LEFT JOIN books b ON b.programme_id = v.programme_id AND b.number = v.book_number
     GROUP BY 1, 2, 3, 4, 5
     ORDER BY 1, 2, 3, 4, 5
    ON CONFLICT (programme_id, month, distributor_id, site_id, territory) DO UPDATE
       SET reversals        = a.reversals + excluded.reversals,
           reversed_minutes = a.reversed_minutes + excluded.reversed_minutes,
           reversed_cents   = a.reversed_cents + excluded.reversed_cents;
    RETURN NULL;
END
$$;

CREATE TRIGGER report_reversals_inserted AFTER INSERT ON redemption_reversals
    REFERENCING NEW TABLE AS new_reversals
    FOR EACH STATEMENT EXECUTE FUNCTION report_reversals_inserted();

-- vouchers UPDATE: face value entering (or, were it ever undone, leaving) the expired status.
-- Redemptions and holds update vouchers all the time: they leave after one scan of the
-- transition tables.
CREATE FUNCTION report_vouchers_updated() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public
SET enable_hashjoin = off SET enable_mergejoin = off AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM new_vouchers WHERE status = 'expired')
       AND NOT EXISTS (SELECT 1 FROM old_vouchers WHERE status = 'expired') THEN
        RETURN NULL;
    END IF;
    INSERT INTO report_spend AS a (programme_id, month, distributor_id, site_id, territory,
                                   expired_cents)
    SELECT d.programme_id, report_month(p.valid_until + p.grace_days + 1),
           coalesce(b.distributor_id, '00000000-0000-0000-0000-000000000000'),
           '00000000-0000-0000-0000-000000000000', coalesce(b.territory, ''), sum(d.cents)
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
     ORDER BY 1, 2, 3, 5
    ON CONFLICT (programme_id, month, distributor_id, site_id, territory) DO UPDATE
       SET expired_cents = a.expired_cents + excluded.expired_cents;
    RETURN NULL;
END
$$;

CREATE TRIGGER report_vouchers_updated AFTER UPDATE ON vouchers
    REFERENCING OLD TABLE AS old_vouchers NEW TABLE AS new_vouchers
    FOR EACH STATEMENT EXECUTE FUNCTION report_vouchers_updated();

-- postings INSERT: value moved into (or, by a reversal, out of) a funder_returned account.
-- Runs for every ledger post; the filter on the account's kind is one primary-key look-up
-- per posting.
CREATE FUNCTION report_postings_inserted() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public
SET enable_hashjoin = off SET enable_mergejoin = off AS $$
BEGIN
    INSERT INTO report_spend AS a (programme_id, month, distributor_id, site_id, territory,
                                   returned_cents)
    SELECT p.programme_id, report_month(t.effective_at), '00000000-0000-0000-0000-000000000000',
           '00000000-0000-0000-0000-000000000000', '', sum(p.amount)
      FROM new_postings p
      JOIN accounts ac ON ac.id = p.account_id
      JOIN transactions t ON t.programme_id = p.programme_id AND t.seq = p.seq
     WHERE ac.kind = 'funder_returned'
     GROUP BY 1, 2
    HAVING sum(p.amount) <> 0
     ORDER BY 1, 2
    ON CONFLICT (programme_id, month, distributor_id, site_id, territory) DO UPDATE
       SET returned_cents = a.returned_cents + excluded.returned_cents;
    RETURN NULL;
END
$$;

CREATE TRIGGER report_postings_inserted AFTER INSERT ON postings
    REFERENCING NEW TABLE AS new_postings
    FOR EACH STATEMENT EXECUTE FUNCTION report_postings_inserted();

-- statements UPDATE to paid: the lines of the statements that became paid. A paid statement
-- never changes again (statements_guard), so old rows are never paid; subtracting them keeps
-- the function right whatever that guard becomes. Other updates (approval, the lines
-- trigger's no-op touch) leave after one scan of the transition tables.
CREATE FUNCTION report_statements_updated() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public
SET enable_hashjoin = off SET enable_mergejoin = off AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM new_statements WHERE status = 'paid')
       AND NOT EXISTS (SELECT 1 FROM old_statements WHERE status = 'paid') THEN
        RETURN NULL;
    END IF;
    INSERT INTO report_spend AS a (programme_id, month, distributor_id, site_id, territory,
                                   paid_cents)
    SELECT l.programme_id, report_month(s.paid_on),
           coalesce(b.distributor_id, '00000000-0000-0000-0000-000000000000'), s.site_id,
           coalesce(b.territory, ''), sum(s.sign * l.amount_cents)
      FROM (SELECT id, site_id, paid_on, 1 AS sign FROM new_statements WHERE status = 'paid'
            UNION ALL
            SELECT id, site_id, paid_on, -1 FROM old_statements WHERE status = 'paid') s
      JOIN statement_lines l ON l.statement_id = s.id
      JOIN vouchers v ON v.code = l.voucher_code
      LEFT JOIN books b ON b.programme_id = v.programme_id AND b.number = v.book_number
     GROUP BY 1, 2, 3, 4, 5
    HAVING sum(s.sign * l.amount_cents) <> 0
     ORDER BY 1, 2, 3, 4, 5
    ON CONFLICT (programme_id, month, distributor_id, site_id, territory) DO UPDATE
       SET paid_cents = a.paid_cents + excluded.paid_cents;
    RETURN NULL;
END
$$;

CREATE TRIGGER report_statements_updated AFTER UPDATE ON statements
    REFERENCING OLD TABLE AS old_statements NEW TABLE AS new_statements
    FOR EACH STATEMENT EXECUTE FUNCTION report_statements_updated();
