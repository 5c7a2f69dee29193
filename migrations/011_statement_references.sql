-- References checked once per statement on the redemption path.
--
-- Each redemption fired seven row-by-row foreign-key checks (a trigger event and a
-- SELECT ... FOR KEY SHARE each): its voucher and its site, its ledger transaction's chain,
-- and for each of its two postings the account and the transaction. pg_stat_statements put
-- them at about a fifth of PostgreSQL's time per redemption. Postings and redemptions already
-- have a statement-level trigger that reads what the statement inserted; the references of
-- postings (accounts, transactions) and of redemptions (vouchers, sites) are now checked
-- there, set-based, with the same SQLSTATE (23503) as the foreign keys.
--
-- A foreign key also locks the referenced row so that it cannot be deleted or lose its key
-- before commit. None of these rows can: transactions are append-only (002), accounts refuse
-- DELETE and changes of identity (009), and vouchers and sites get the same guards below.

ALTER TABLE postings DROP CONSTRAINT postings_account_id_fkey,
                     DROP CONSTRAINT postings_programme_id_seq_fkey;
ALTER TABLE redemptions DROP CONSTRAINT redemptions_voucher_code_fkey,
                        DROP CONSTRAINT redemptions_site_id_fkey;

CREATE FUNCTION refuse_key_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '%: % refused: rows are referenced and keep their key for ever', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER vouchers_keep_key BEFORE UPDATE OF code OR DELETE ON vouchers
    FOR EACH ROW EXECUTE FUNCTION refuse_key_change();
CREATE TRIGGER vouchers_no_truncate BEFORE TRUNCATE ON vouchers
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_key_change();
CREATE TRIGGER sites_keep_key BEFORE UPDATE OF org_id OR DELETE ON sites
    FOR EACH ROW EXECUTE FUNCTION refuse_key_change();
CREATE TRIGGER sites_no_truncate BEFORE TRUNCATE ON sites
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_key_change();

-- ledger_apply_postings of 009, plus: every posting's transaction exists (one primary-key
-- probe per transaction, in the query that already reads each transaction's postings), and
-- every account exists (the balance UPDATE must reach as many rows as there are accounts).
CREATE OR REPLACE FUNCTION ledger_apply_postings() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
DECLARE
    bad record;
    ids bigint[];
    amounts numeric[];
    moved bigint;
BEGIN
    -- LATERAL: each touched transaction's postings are read through the primary key, however
    -- large the table and whatever the statistics were when this plan was cached.
    -- The transaction is probed inside the LATERAL too: a join would let the planner scan
    -- the whole journal.
    SELECT t.programme_id, t.seq, s.total, s.n, t.added, NOT s.known AS orphan INTO bad
      FROM (SELECT programme_id, seq, count(*) AS added FROM new_postings GROUP BY programme_id, seq) t
     CROSS JOIN LATERAL (SELECT sum(p.amount) AS total, count(*) AS n,
                                EXISTS (SELECT 1 FROM transactions x
                                         WHERE x.programme_id = t.programme_id AND x.seq = t.seq) AS known
                           FROM postings p
                          WHERE p.programme_id = t.programme_id AND p.seq = t.seq) s
     WHERE NOT s.known OR s.total <> 0 OR s.n < 2 OR s.n <> t.added
     ORDER BY s.known
     LIMIT 1;
    IF FOUND AND bad.orphan THEN
        RAISE EXCEPTION 'postings of ledger transaction %/%, which does not exist', bad.programme_id, bad.seq
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'postings_transaction_exists';
    END IF;
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
    GET DIAGNOSTICS moved = ROW_COUNT;
    IF moved <> cardinality(ids) THEN
        RAISE EXCEPTION 'postings to % account(s) that do not exist', cardinality(ids) - moved
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'postings_account_exists';
    END IF;
    RETURN NULL;
END
$$;

CREATE FUNCTION redemptions_check_references() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
DECLARE
    bad record;
BEGIN
    SELECT n.voucher_code, n.site_id,
           NOT EXISTS (SELECT 1 FROM vouchers v WHERE v.code = n.voucher_code) AS no_voucher INTO bad
      FROM new_redemptions n
     WHERE NOT EXISTS (SELECT 1 FROM vouchers v WHERE v.code = n.voucher_code)
        OR NOT EXISTS (SELECT 1 FROM sites s WHERE s.org_id = n.site_id)
     LIMIT 1;
    IF FOUND AND bad.no_voucher THEN
        RAISE EXCEPTION 'redemption of voucher %, which does not exist', bad.voucher_code
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'redemptions_voucher_exists';
    END IF;
    IF FOUND THEN
        RAISE EXCEPTION 'redemption at site %, which does not exist', bad.site_id
            USING ERRCODE = 'foreign_key_violation', CONSTRAINT = 'redemptions_site_exists';
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER redemptions_references AFTER INSERT ON redemptions
    REFERENCING NEW TABLE AS new_redemptions
    FOR EACH STATEMENT EXECUTE FUNCTION redemptions_check_references();
