-- The references of redemptions (011) checked with the same plan whatever the size of the
-- first statement a session ran.
--
-- PL/pgSQL plans a trigger's query once per session, with the row count of the transition
-- table it has then. redemptions_check_references tested both references in one query, its
-- NOT EXISTS joined by OR, which PostgreSQL cannot turn into anti-joins: it plans them as
-- subplans and, for a large first statement, hashes the whole of sites instead of probing
-- its key per row. Sessions of passnumd's pool mostly start under load, with batches of
-- hundreds of redemptions, and then kept that plan for batches of a handful: 0.73 ms per
-- statement of 15 redemptions instead of 0.07 ms (a session that first inserted 250 rows,
-- then 2,000 statements of 15; 6,000 sites, 400,000 vouchers), about 0.6 ms of every batch
-- in make bench's latency run. One query per reference, each a NOT EXISTS that becomes an
-- anti-join, with hash and merge joins off (as in the report triggers, 009), is probed per
-- row whatever the first statement was: 0.07 ms for 15 rows, 0.59-0.74 ms for 250 (the old
-- query: 0.69 or 1.41 ms, depending on its first statement).

CREATE OR REPLACE FUNCTION redemptions_check_references() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public
SET enable_hashjoin = off SET enable_mergejoin = off AS $$
DECLARE
    bad record;
BEGIN
    SELECT n.voucher_code INTO bad
      FROM new_redemptions n
     WHERE NOT EXISTS (SELECT 1 FROM vouchers v WHERE v.code = n.voucher_code)
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'redemption of voucher %, which does not exist', bad.voucher_code
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'redemptions_voucher_exists';
    END IF;
    SELECT n.site_id INTO bad
      FROM new_redemptions n
     WHERE NOT EXISTS (SELECT 1 FROM sites s WHERE s.org_id = n.site_id)
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'redemption at site %, which does not exist', bad.site_id
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'redemptions_site_exists';
    END IF;
    RETURN NULL;
END
$$;
