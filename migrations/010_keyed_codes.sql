-- Vouchers are made from their books (internal/vcode, "Keyed codes").
--
-- A voucher's code is the FF1 encryption, under a key kept outside the database, of its slot:
-- the programme's code prefix, the book's number and the position. Codes are then unique by
-- construction and need neither drawing nor storing when a book is issued: an order of a
-- million vouchers writes its 100,000 books. A voucher gets its own row when its book is
-- handed out, the first time anything can happen to it alone; until then its state is its
-- book's (in stock, cancelled, expired).
--
-- Orders made before this migration keep their drawn codes in books.voucher_codes and their
-- voucher rows from issuance; book_orders.code_key is NULL for them.

CREATE SEQUENCE programme_code_prefixes AS integer MINVALUE 1 MAXVALUE 1048575; -- 2^20 - 1

ALTER TABLE programmes ADD COLUMN code_prefix integer;
UPDATE programmes p SET code_prefix = o.n
  FROM (SELECT id, row_number() OVER (ORDER BY created_at, id) AS n FROM programmes) o
 WHERE o.id = p.id;
SELECT setval('programme_code_prefixes', coalesce(max(code_prefix), 0) + 1, false) FROM programmes;
ALTER TABLE programmes
    ALTER COLUMN code_prefix SET DEFAULT nextval('programme_code_prefixes'),
    ALTER COLUMN code_prefix SET NOT NULL,
    ADD CONSTRAINT programmes_code_prefix_unique UNIQUE (code_prefix),
    ADD CONSTRAINT programmes_code_prefix_range CHECK (code_prefix BETWEEN 1 AND 1048575);
ALTER SEQUENCE programme_code_prefixes OWNED BY programmes.code_prefix;
GRANT USAGE ON SEQUENCE programme_code_prefixes TO passnum_app;

-- The key an order's codes were made with, by its fingerprint (the key never enters the database).
ALTER TABLE book_orders ADD COLUMN code_key text
    CHECK (code_key ~ '^k[0-9a-f]{16}$');

-- Books of keyed orders carry no codes; book numbers must fit in a slot (2^34 - 1).
ALTER TABLE books ALTER COLUMN voucher_codes DROP NOT NULL;
ALTER TABLE books ADD CONSTRAINT books_number_fits_code CHECK (number <= 17179869183);

-- The books' foreign key to their order was checked row by row: half the time of writing an
-- order's 100,000 books. Orders are never changed or deleted and a book never changes order,
-- so one set-based check of each INSERT statement's books holds the same rule.
ALTER TABLE books DROP CONSTRAINT books_order_id_fkey;

CREATE TRIGGER book_orders_append_only BEFORE UPDATE OR DELETE ON book_orders
    FOR EACH ROW EXECUTE FUNCTION ledger_reject_change();
CREATE TRIGGER book_orders_no_truncate BEFORE TRUNCATE ON book_orders
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_reject_change();

CREATE FUNCTION books_reject_identity_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'books: the programme, number, order and distributor of a book never change'
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER books_identity BEFORE UPDATE OF programme_id, number, order_id, distributor_id ON books
    FOR EACH ROW EXECUTE FUNCTION books_reject_identity_change();

CREATE FUNCTION books_check_orders() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
DECLARE
    missing uuid;
BEGIN
    SELECT n.order_id INTO missing
      FROM (SELECT DISTINCT order_id FROM new_books) n
     WHERE NOT EXISTS (SELECT 1 FROM book_orders o WHERE o.id = n.order_id)
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'books: order % does not exist', missing
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'books_order_exists';
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER books_order_exists AFTER INSERT ON books
    REFERENCING NEW TABLE AS new_books
    FOR EACH STATEMENT EXECUTE FUNCTION books_check_orders();

-- One row per slot: a book's vouchers are found (and expired at close-out) through it, and a
-- voucher can never be given a second row.
CREATE UNIQUE INDEX vouchers_slot ON vouchers (programme_id, book_number, position);

-- Reports: a keyed book that expires in stock has no voucher rows for report_vouchers_updated
-- to count; its whole face value expires with it (in a slot of report_spend, see 009). (A book expired in stock is one never
-- handed out: handed_out_at is NULL.)
CREATE FUNCTION report_keyed_books_expired() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public
SET enable_hashjoin = off SET enable_mergejoin = off AS $$
BEGIN
    WITH x AS MATERIALIZED (
        SELECT d.programme_id, report_month(p.valid_until + p.grace_days + 1) AS month, d.distributor_id,
               sum(d.sign) * p.vouchers_per_book * p.face_value_cents AS cents
          FROM (SELECT programme_id, distributor_id, 1 AS sign FROM new_books
                 WHERE status = 'expired' AND handed_out_at IS NULL AND voucher_codes IS NULL
                UNION ALL
                SELECT programme_id, distributor_id, -1 FROM old_books
                 WHERE status = 'expired' AND handed_out_at IS NULL AND voucher_codes IS NULL) d
          JOIN programmes p ON p.id = d.programme_id
         GROUP BY d.programme_id, p.valid_until, p.grace_days, p.vouchers_per_book, p.face_value_cents, d.distributor_id
        HAVING sum(d.sign) <> 0
    ), slots AS MATERIALIZED (
        SELECT q.programme_id, report_slot(q.programme_id) AS slot
          FROM (SELECT DISTINCT programme_id FROM x) q
    )
    INSERT INTO report_spend AS a (programme_id, month, distributor_id, site_id, territory, slot,
                                   expired_cents)
    SELECT x.programme_id, x.month, x.distributor_id, '00000000-0000-0000-0000-000000000000', '', slots.slot, x.cents
      FROM x JOIN slots ON slots.programme_id = x.programme_id
     ORDER BY 1, 2, 3
    ON CONFLICT (programme_id, month, distributor_id, site_id, territory, slot) DO UPDATE
       SET expired_cents = a.expired_cents + excluded.expired_cents;
    RETURN NULL;
END
$$;

CREATE TRIGGER report_keyed_books_expired AFTER UPDATE ON books
    REFERENCING OLD TABLE AS old_books NEW TABLE AS new_books
    FOR EACH STATEMENT EXECUTE FUNCTION report_keyed_books_expired();
