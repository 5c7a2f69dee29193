-- Payouts to sites and programme close-out: statements (relevés de remboursement) and their
-- lines, the claims that keep a redemption or reversal on at most one live statement, the
-- payout ledger transactions of paid statements, the SEPA payment files, and the record of
-- each programme's expiry. The database, not only Go, enforces:
--   * a statement's total_cents is the sum of its lines and line_count their number (checked
--     at commit, so a statement written with a wrong total leaves nothing behind);
--   * every statement can be paid: total_cents > 0 (internal/payouts leaves the lines of a
--     site whose net would be <= 0 in the pool for a later statement);
--   * a line matches its redemption or reversal exactly (site, programme, amount, cut-off), is
--     added only to a draft statement, and lines are append-only;
--   * a redemption, and a reversal, is on at most one live (non-rejected) statement: its claim
--     is written with the line and removed only when that statement is rejected;
--   * a reversal line (a clawback) rides on a statement only with its redemption or after the
--     redemption was paid, so that no programme ever pays a site back more than it paid it;
--   * status moves only draft -> approved | rejected and approved -> paid | rejected, each
--     step's fields are written once, a paid or rejected statement never changes, and no
--     statement is ever deleted;
--   * a paid statement has exactly one payout ledger transaction per programme whose lines do
--     not net to zero, moving that net from the site's payable account to its paid account.

CREATE FUNCTION payout_reject_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

-- Every SEPA credit transfer file exported, as sent to the bank.
CREATE TABLE payment_files (
    message_id        text   PRIMARY KEY CHECK (message_id ~ '^[A-Za-z0-9/?:().,''+-]{1,35}$'),
    execution_date    date   NOT NULL,
    transactions      int    NOT NULL CHECK (transactions > 0),
    control_sum_cents bigint NOT NULL CHECK (control_sum_cents > 0),
    xml               bytea  NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    created_by        uuid   NOT NULL
);
CREATE TRIGGER payment_files_append_only BEFORE UPDATE OR DELETE ON payment_files
    FOR EACH ROW EXECUTE FUNCTION payout_reject_change();
CREATE TRIGGER payment_files_no_truncate BEFORE TRUNCATE ON payment_files
    FOR EACH STATEMENT EXECUTE FUNCTION payout_reject_change();

-- Statement numbers: RLV-<cut-off year>-<cut-off month>-<running number>.
CREATE SEQUENCE statement_numbers AS bigint;

CREATE TABLE statements (
    id                 uuid   PRIMARY KEY,
    number             text   NOT NULL UNIQUE CHECK (number ~ '^RLV-[0-9]{4}-(0[1-9]|1[0-2])-[0-9]{6,}$'),
    site_id            uuid   NOT NULL REFERENCES sites (org_id),
    cutoff             date   NOT NULL,
    status             text   NOT NULL DEFAULT 'draft' CHECK (status IN ('draft', 'approved', 'paid', 'rejected')),
    total_cents        bigint NOT NULL CHECK (total_cents > 0),
    line_count         int    NOT NULL CHECK (line_count > 0),
    created_at         timestamptz NOT NULL DEFAULT now(),
    created_by         uuid   NOT NULL,
    approved_at        timestamptz,
    approved_by        uuid,
    paid_at            timestamptz,
    paid_by            uuid,
    paid_on            date,
    bank_reference     text   CHECK (length(btrim(bank_reference)) BETWEEN 1 AND 140),
    rejected_at        timestamptz,
    rejected_by        uuid,
    rejection_reason   text   CHECK (length(btrim(rejection_reason)) BETWEEN 1 AND 500),
    payment_message_id text   REFERENCES payment_files (message_id),
    CHECK ((approved_at IS NULL) = (approved_by IS NULL)),
    CHECK ((paid_at IS NULL) = (paid_by IS NULL) AND (paid_at IS NULL) = (paid_on IS NULL)
           AND (paid_at IS NULL) = (bank_reference IS NULL)),
    CHECK ((rejected_at IS NULL) = (rejected_by IS NULL) AND (rejected_at IS NULL) = (rejection_reason IS NULL)),
    CHECK (CASE status
           WHEN 'draft'    THEN approved_at IS NULL AND paid_at IS NULL AND rejected_at IS NULL
           WHEN 'approved' THEN approved_at IS NOT NULL AND paid_at IS NULL AND rejected_at IS NULL
           WHEN 'paid'     THEN approved_at IS NOT NULL AND paid_at IS NOT NULL AND rejected_at IS NULL
           ELSE rejected_at IS NOT NULL AND paid_at IS NULL
           END),
    -- Only an approved statement goes into a payment file.
    CHECK (payment_message_id IS NULL OR approved_at IS NOT NULL),
    -- The transfer pays redemptions up to the cut-off: it cannot be dated before it.
    CHECK (paid_on >= cutoff)
);
CREATE INDEX statements_site ON statements (site_id, created_at);
CREATE INDEX statements_status ON statements (status, created_at);

CREATE TABLE statement_lines (
    statement_id uuid     NOT NULL REFERENCES statements (id),
    line_no      int      NOT NULL CHECK (line_no >= 1),
    programme_id uuid     NOT NULL,
    kind         text     NOT NULL CHECK (kind IN ('redemption', 'reversal')),
    voucher_code bigint   NOT NULL,
    round        smallint NOT NULL,
    amount_cents bigint   NOT NULL CHECK (amount_cents <> 0),
    PRIMARY KEY (statement_id, line_no),
    FOREIGN KEY (voucher_code, round) REFERENCES redemptions (voucher_code, round),
    -- A redemption is owed to the site; a reversal is a clawback.
    CHECK ((kind = 'redemption') = (amount_cents > 0))
);
CREATE TRIGGER statement_lines_append_only BEFORE UPDATE OR DELETE ON statement_lines
    FOR EACH ROW EXECUTE FUNCTION payout_reject_change();
CREATE TRIGGER statement_lines_no_truncate BEFORE TRUNCATE ON statement_lines
    FOR EACH STATEMENT EXECUTE FUNCTION payout_reject_change();

-- One row per redemption or reversal on a live statement. Written by the lines trigger,
-- removed by the statement trigger when the statement is rejected; the application can only
-- read it. The primary key is the guarantee: never on two live statements.
CREATE TABLE statement_claims (
    kind         text     NOT NULL CHECK (kind IN ('redemption', 'reversal')),
    voucher_code bigint   NOT NULL,
    round        smallint NOT NULL,
    statement_id uuid     NOT NULL REFERENCES statements (id),
    PRIMARY KEY (kind, voucher_code, round)
);
CREATE INDEX statement_claims_statement ON statement_claims (statement_id);

CREATE FUNCTION statement_claims_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND EXISTS (
        SELECT 1 FROM statements WHERE id = OLD.statement_id AND status = 'rejected') THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'statement_claims: % refused (a claim goes only when its statement is rejected)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER statement_claims_guard BEFORE UPDATE OR DELETE ON statement_claims
    FOR EACH ROW EXECUTE FUNCTION statement_claims_guard();
CREATE TRIGGER statement_claims_no_truncate BEFORE TRUNCATE ON statement_claims
    FOR EACH STATEMENT EXECUTE FUNCTION payout_reject_change();

-- The payout ledger transaction of each programme of a paid statement.
CREATE TABLE statement_payouts (
    statement_id uuid   NOT NULL REFERENCES statements (id),
    programme_id uuid   NOT NULL,
    tx_id        uuid   NOT NULL UNIQUE REFERENCES transactions (id),
    amount_cents bigint NOT NULL CHECK (amount_cents <> 0),
    PRIMARY KEY (statement_id, programme_id)
);
CREATE TRIGGER statement_payouts_append_only BEFORE UPDATE OR DELETE ON statement_payouts
    FOR EACH ROW EXECUTE FUNCTION payout_reject_change();
CREATE TRIGGER statement_payouts_no_truncate BEFORE TRUNCATE ON statement_payouts
    FOR EACH STATEMENT EXECUTE FUNCTION payout_reject_change();

-- After each INSERT statement on statement_lines: every line matches its redemption or
-- reversal and a draft statement, is claimed, and its statement's totals are re-checked at
-- commit (the no-op UPDATE queues the deferred check below). Set-based, so a statement of
-- thousands of lines written in one INSERT costs a few joins.
CREATE FUNCTION statement_lines_apply() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
DECLARE
    bad record;
BEGIN
    SELECT n.statement_id, n.line_no, s.status INTO bad
      FROM new_lines n
      JOIN statements s ON s.id = n.statement_id
      JOIN redemptions r ON r.voucher_code = n.voucher_code AND r.round = n.round
      LEFT JOIN redemption_reversals v
             ON n.kind = 'reversal' AND v.voucher_code = n.voucher_code AND v.round = n.round
     WHERE s.status <> 'draft'
        OR r.site_id <> s.site_id
        OR r.programme_id <> n.programme_id
        OR (n.kind = 'redemption' AND (n.amount_cents <> r.amount_cents OR r.service_date > s.cutoff))
        OR (n.kind = 'reversal' AND (v.voucher_code IS NULL OR n.amount_cents <> -v.amount_cents
                                     OR (v.reversed_at AT TIME ZONE 'Europe/Paris')::date > s.cutoff))
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'statement % line %: does not match its redemption or reversal, or the statement is %',
            bad.statement_id, bad.line_no, bad.status
            USING ERRCODE = 'check_violation', CONSTRAINT = 'statement_lines_match';
    END IF;

    INSERT INTO statement_claims (kind, voucher_code, round, statement_id)
    SELECT kind, voucher_code, round, statement_id FROM new_lines;

    SELECT n.statement_id, n.line_no INTO bad
      FROM new_lines n
     WHERE n.kind = 'reversal'
       AND NOT EXISTS (
           SELECT 1 FROM statement_claims c JOIN statements s ON s.id = c.statement_id
            WHERE c.kind = 'redemption' AND c.voucher_code = n.voucher_code AND c.round = n.round
              AND (c.statement_id = n.statement_id OR s.status = 'paid'))
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'statement % line %: a reversal rides only with its redemption or after it was paid',
            bad.statement_id, bad.line_no
            USING ERRCODE = 'check_violation', CONSTRAINT = 'statement_lines_reversal_after_payment';
    END IF;

    UPDATE statements SET line_count = line_count
     WHERE id IN (SELECT DISTINCT statement_id FROM new_lines);
    RETURN NULL;
END
$$;
CREATE TRIGGER statement_lines_apply AFTER INSERT ON statement_lines
    REFERENCING NEW TABLE AS new_lines
    FOR EACH STATEMENT EXECUTE FUNCTION statement_lines_apply();

-- Status transitions and immutability. Identity and totals never change; each step's fields
-- are written by that step only; paid and rejected are final.
CREATE FUNCTION statements_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'statement %: DELETE refused (reject it instead)', OLD.number
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF OLD.status IN ('paid', 'rejected') THEN
        RAISE EXCEPTION 'statement % is %: it never changes', OLD.number, OLD.status
            USING ERRCODE = 'insufficient_privilege', CONSTRAINT = 'statements_final';
    END IF;
    IF NEW.id <> OLD.id OR NEW.number <> OLD.number OR NEW.site_id <> OLD.site_id
       OR NEW.cutoff <> OLD.cutoff OR NEW.total_cents <> OLD.total_cents OR NEW.line_count <> OLD.line_count
       OR NEW.created_at <> OLD.created_at OR NEW.created_by <> OLD.created_by THEN
        RAISE EXCEPTION 'statement %: identity and totals never change', OLD.number
            USING ERRCODE = 'insufficient_privilege', CONSTRAINT = 'statements_identity';
    END IF;
    IF NEW.status <> OLD.status AND NOT (
           (OLD.status = 'draft' AND NEW.status IN ('approved', 'rejected'))
        OR (OLD.status = 'approved' AND NEW.status IN ('paid', 'rejected'))) THEN
        RAISE EXCEPTION 'statement %: % -> % refused', OLD.number, OLD.status, NEW.status
            USING ERRCODE = 'check_violation', CONSTRAINT = 'statements_transition';
    END IF;
    IF (ROW(NEW.approved_at, NEW.approved_by) IS DISTINCT FROM ROW(OLD.approved_at, OLD.approved_by)
            AND NOT (OLD.status = 'draft' AND NEW.status = 'approved'))
       OR (ROW(NEW.paid_at, NEW.paid_by, NEW.paid_on, NEW.bank_reference)
               IS DISTINCT FROM ROW(OLD.paid_at, OLD.paid_by, OLD.paid_on, OLD.bank_reference)
            AND NEW.status <> 'paid')
       OR (ROW(NEW.rejected_at, NEW.rejected_by, NEW.rejection_reason)
               IS DISTINCT FROM ROW(OLD.rejected_at, OLD.rejected_by, OLD.rejection_reason)
            AND NEW.status <> 'rejected')
       OR (NEW.payment_message_id IS DISTINCT FROM OLD.payment_message_id
            AND NOT (OLD.status = 'approved' AND NEW.status = 'approved')) THEN
        RAISE EXCEPTION 'statement %: a field of another step changed on % -> %', OLD.number, OLD.status, NEW.status
            USING ERRCODE = 'check_violation', CONSTRAINT = 'statements_transition';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER statements_guard BEFORE UPDATE OR DELETE ON statements
    FOR EACH ROW EXECUTE FUNCTION statements_guard();
CREATE TRIGGER statements_no_truncate BEFORE TRUNCATE ON statements
    FOR EACH STATEMENT EXECUTE FUNCTION payout_reject_change();

-- A rejected statement's lines go back to the pool.
CREATE FUNCTION statements_release_claims() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
BEGIN
    DELETE FROM statement_claims WHERE statement_id = NEW.id;
    RETURN NULL;
END
$$;
CREATE TRIGGER statements_release_claims AFTER UPDATE OF status ON statements
    FOR EACH ROW WHEN (NEW.status = 'rejected' AND OLD.status <> 'rejected')
    EXECUTE FUNCTION statements_release_claims();

-- At commit: the statement's totals match its lines, and a paid statement has exactly the
-- payout transactions its lines call for. Reads the row as it is at commit, not as it was
-- when the event was queued.
CREATE FUNCTION statements_check() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
DECLARE
    s statements;
    n bigint;
    total bigint;
    bad record;
BEGIN
    SELECT * INTO s FROM statements WHERE id = NEW.id;
    SELECT count(*), coalesce(sum(amount_cents), 0) INTO n, total FROM statement_lines WHERE statement_id = s.id;
    IF n <> s.line_count OR total <> s.total_cents THEN
        RAISE EXCEPTION 'statement %: total % cents over % lines, but its lines sum to % cents over % lines',
            s.number, s.total_cents, s.line_count, total, n
            USING ERRCODE = 'check_violation', CONSTRAINT = 'statements_total_matches_lines';
    END IF;
    IF s.status = 'paid' THEN
        SELECT coalesce(l.programme_id, p.programme_id) AS programme_id, l.net, p.amount_cents INTO bad
          FROM (SELECT programme_id, sum(amount_cents) AS net FROM statement_lines
                 WHERE statement_id = s.id GROUP BY programme_id HAVING sum(amount_cents) <> 0) l
          FULL JOIN (SELECT * FROM statement_payouts WHERE statement_id = s.id) p
                 ON p.programme_id = l.programme_id
         WHERE l.net IS DISTINCT FROM p.amount_cents
            OR NOT EXISTS (
               SELECT 1 FROM transactions t
                WHERE t.id = p.tx_id AND t.programme_id = p.programme_id AND t.kind = 'payout'
                  AND (SELECT count(*) FROM postings x WHERE x.programme_id = t.programme_id AND x.seq = t.seq) = 2
                  AND EXISTS (SELECT 1 FROM postings x JOIN accounts a ON a.id = x.account_id
                               WHERE x.programme_id = t.programme_id AND x.seq = t.seq
                                 AND a.kind = 'site_paid' AND a.owner_id = s.site_id AND x.amount = p.amount_cents)
                  AND EXISTS (SELECT 1 FROM postings x JOIN accounts a ON a.id = x.account_id
                               WHERE x.programme_id = t.programme_id AND x.seq = t.seq
                                 AND a.kind = 'site_payable' AND a.owner_id = s.site_id AND x.amount = -p.amount_cents))
         LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'statement %: programme % nets % cents but its payout transaction moves % cents',
                s.number, bad.programme_id, bad.net, bad.amount_cents
                USING ERRCODE = 'check_violation', CONSTRAINT = 'statements_paid_in_ledger';
        END IF;
    END IF;
    RETURN NULL;
END
$$;
CREATE CONSTRAINT TRIGGER statements_consistent AFTER INSERT OR UPDATE OF total_cents, line_count, status ON statements
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION statements_check();

-- Payout transactions are recorded only for a statement that is paid at commit.
CREATE FUNCTION statement_payouts_check() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM statements WHERE id = NEW.statement_id AND status = 'paid') THEN
        RAISE EXCEPTION 'statement %: payout transaction % recorded but the statement is not paid',
            NEW.statement_id, NEW.tx_id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'statement_payouts_paid';
    END IF;
    RETURN NULL;
END
$$;
CREATE CONSTRAINT TRIGGER statement_payouts_for_paid AFTER INSERT ON statement_payouts
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION statement_payouts_check();

-- One row per expired programme: what its close-out expired and returned.
CREATE TABLE programme_closures (
    programme_id     uuid   PRIMARY KEY REFERENCES programmes (id),
    vouchers_expired bigint NOT NULL CHECK (vouchers_expired >= 0),
    books_expired    bigint NOT NULL CHECK (books_expired >= 0),
    expired_cents    bigint NOT NULL CHECK (expired_cents >= 0),
    returned_cents   bigint NOT NULL CHECK (returned_cents >= 0),
    closed_at        timestamptz NOT NULL DEFAULT now(),
    closed_by        uuid   NOT NULL
);
CREATE TRIGGER programme_closures_append_only BEFORE UPDATE OR DELETE ON programme_closures
    FOR EACH ROW EXECUTE FUNCTION payout_reject_change();
CREATE TRIGGER programme_closures_no_truncate BEFORE TRUNCATE ON programme_closures
    FOR EACH STATEMENT EXECUTE FUNCTION payout_reject_change();

GRANT SELECT, INSERT ON payment_files, statements, statement_lines, statement_payouts, programme_closures
    TO passnum_app;
GRANT SELECT ON statement_claims TO passnum_app;
GRANT UPDATE (status, approved_at, approved_by, paid_at, paid_by, paid_on, bank_reference,
              rejected_at, rejected_by, rejection_reason, payment_message_id) ON statements TO passnum_app;
GRANT USAGE ON SEQUENCE statement_numbers TO passnum_app;
