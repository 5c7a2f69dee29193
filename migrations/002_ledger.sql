-- The double-entry ledger. The database, not only Go, enforces:
--   * every transaction's postings sum to zero, are written in one statement with nothing
--     added later, and a transaction has postings;
--   * transactions and postings are append-only (no UPDATE, DELETE, TRUNCATE);
--   * balances are derived from postings by trigger, never written by the application;
--   * "never negative" accounts never go below zero.
--
-- Every table is keyed by programme_id first so that it could be distributed by programme.
-- One hash chain per programme: programmes write in parallel, and within a programme the
-- chain head row serialises writers (batching amortises that, see ledger/doc.go).

-- One row per programme: the chain head. Created by ledger.OpenChain when a programme opens.
CREATE TABLE ledger_chains (
    programme_id uuid PRIMARY KEY,
    last_seq     bigint NOT NULL DEFAULT 0 CHECK (last_seq >= 0),
    last_hash    bytea  NOT NULL DEFAULT '\x0000000000000000000000000000000000000000000000000000000000000000'
                 CHECK (length(last_hash) = 32),
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- Accounts hold value of one kind in one programme, for one owner (funder or site) or, for
-- programme-wide accounts, for the nil UUID (not NULL, so lookups are plain equality joins).
-- normal_side: +1 debit-normal, -1 credit-normal; balance is kept in the normal direction.
-- funder_cash_in is the only credit-normal account: it is where value enters the programme
-- (its balance is what the funder paid in); every other account is a place value sits in.
CREATE TABLE accounts (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    programme_id uuid   NOT NULL REFERENCES ledger_chains (programme_id),
    kind         text   NOT NULL CHECK (kind IN ('funder_cash_in', 'fees', 'unissued', 'outstanding',
                                                 'site_payable', 'site_paid', 'funder_returned')),
    owner_id     uuid   NOT NULL,
    normal_side  smallint NOT NULL,
    non_negative boolean  NOT NULL,
    balance      bigint   NOT NULL DEFAULT 0,
    created_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT accounts_one_per_kind UNIQUE (programme_id, kind, owner_id),
    CONSTRAINT accounts_owner CHECK ((kind IN ('unissued', 'outstanding'))
                                    = (owner_id = '00000000-0000-0000-0000-000000000000')),
    CONSTRAINT accounts_side CHECK (normal_side = CASE kind WHEN 'funder_cash_in' THEN -1 ELSE 1 END),
    -- site_payable may go negative: a redemption reversed after it was paid is owed back by
    -- the site and rides as a negative line on its next statement.
    CONSTRAINT accounts_rule CHECK (non_negative = (kind <> 'site_payable')),
    CONSTRAINT accounts_balance_non_negative CHECK (NOT non_negative OR balance >= 0)
);

CREATE TABLE transactions (
    programme_id    uuid   NOT NULL REFERENCES ledger_chains (programme_id),
    seq             bigint NOT NULL CHECK (seq > 0),
    id              uuid   NOT NULL UNIQUE,
    kind            text   NOT NULL CHECK (kind IN ('funding', 'issuance', 'cancellation', 'redemption',
                                                    'reversal', 'payout', 'expiry', 'return', 'transfer')),
    effective_at    timestamptz NOT NULL,
    recorded_at     timestamptz NOT NULL,
    org_id          uuid   NOT NULL,
    idempotency_key text   CHECK (length(idempotency_key) BETWEEN 1 AND 200),
    request_hash    bytea  CHECK (length(request_hash) = 32),
    reverses        uuid   REFERENCES transactions (id),
    -- json, not jsonb: the hash covers the exact bytes written.
    metadata        json   NOT NULL DEFAULT '{}',
    prev_hash       bytea  NOT NULL CHECK (length(prev_hash) = 32),
    hash            bytea  NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (programme_id, seq),
    CHECK (reverses IS NULL OR reverses <> id)
);
-- At most one reversal per original.
CREATE UNIQUE INDEX transactions_one_reversal ON transactions (reverses) WHERE reverses IS NOT NULL;
-- Balance-as-of: find the last seq recorded before an instant.
CREATE INDEX transactions_recorded ON transactions (programme_id, recorded_at);

CREATE TABLE postings (
    programme_id uuid   NOT NULL,
    seq          bigint NOT NULL,
    account_id   bigint NOT NULL REFERENCES accounts (id),
    amount       bigint NOT NULL CHECK (amount <> 0), -- positive: debit, negative: credit
    PRIMARY KEY (programme_id, seq, account_id),
    FOREIGN KEY (programme_id, seq) REFERENCES transactions (programme_id, seq)
);
-- Balance as of any past seq with an index-only scan.
CREATE INDEX postings_account_seq ON postings (account_id, seq) INCLUDE (amount);

-- After each INSERT statement on postings: every transaction it touched must get ALL its
-- postings in this one statement (so none can be added to an old transaction later, not even
-- a balanced pair) and they must balance to zero; then the touched accounts' balances are
-- moved, in account id order so concurrent writers lock accounts in one fixed order.
-- SECURITY DEFINER: the application cannot write balances itself.
CREATE FUNCTION ledger_apply_postings() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
DECLARE
    bad record;
    delta record;
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

    FOR delta IN
        SELECT n.account_id, sum(n.amount) AS amount
          FROM new_postings n GROUP BY n.account_id ORDER BY n.account_id
    LOOP
        UPDATE accounts SET balance = balance + delta.amount * normal_side WHERE id = delta.account_id;
    END LOOP;
    RETURN NULL;
END
$$;

CREATE TRIGGER postings_apply AFTER INSERT ON postings
    REFERENCING NEW TABLE AS new_postings
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_apply_postings();

-- A transaction without postings is caught at commit.
CREATE FUNCTION ledger_check_has_postings() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM postings WHERE programme_id = NEW.programme_id AND seq = NEW.seq) THEN
        RAISE EXCEPTION 'ledger transaction %/% has no postings', NEW.programme_id, NEW.seq
            USING ERRCODE = 'check_violation', CONSTRAINT = 'transactions_have_postings';
    END IF;
    RETURN NULL;
END
$$;

CREATE CONSTRAINT TRIGGER transactions_have_postings AFTER INSERT ON transactions
    DEFERRABLE INITIALLY DEFERRED
    FOR EACH ROW EXECUTE FUNCTION ledger_check_has_postings();

-- Append-only: nothing in the journal is ever edited or deleted, only reversed.
CREATE FUNCTION ledger_reject_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused (post a reversal instead)', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER transactions_append_only BEFORE UPDATE OR DELETE ON transactions
    FOR EACH ROW EXECUTE FUNCTION ledger_reject_change();
CREATE TRIGGER transactions_no_truncate BEFORE TRUNCATE ON transactions
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_reject_change();
CREATE TRIGGER postings_append_only BEFORE UPDATE OR DELETE ON postings
    FOR EACH ROW EXECUTE FUNCTION ledger_reject_change();
CREATE TRIGGER postings_no_truncate BEFORE TRUNCATE ON postings
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_reject_change();

-- Accounts: only the posting trigger moves balances; identity columns never change.
CREATE FUNCTION ledger_guard_account() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR NEW.id <> OLD.id OR NEW.programme_id <> OLD.programme_id
       OR NEW.kind <> OLD.kind OR NEW.owner_id <> OLD.owner_id
       OR NEW.normal_side <> OLD.normal_side OR NEW.non_negative <> OLD.non_negative THEN
        RAISE EXCEPTION 'accounts: % of identity columns refused', TG_OP
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER accounts_guard BEFORE UPDATE OR DELETE ON accounts
    FOR EACH ROW EXECUTE FUNCTION ledger_guard_account();
CREATE TRIGGER accounts_no_truncate BEFORE TRUNCATE ON accounts
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_reject_change();

-- Idempotency: one row per (organisation, caller key), written in the same transaction as
-- the effect. The primary key is the last guard against a double effect.
CREATE TABLE idempotency_keys (
    org_id       uuid  NOT NULL,
    key          text  NOT NULL CHECK (length(key) BETWEEN 1 AND 200),
    operation    text  NOT NULL,
    request_hash bytea NOT NULL CHECK (length(request_hash) = 32),
    response     bytea NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (org_id, key)
);
CREATE TRIGGER idempotency_keys_append_only BEFORE UPDATE OR DELETE ON idempotency_keys
    FOR EACH ROW EXECUTE FUNCTION ledger_reject_change();

GRANT SELECT, INSERT ON ledger_chains, transactions, postings, idempotency_keys TO passnum_app;
GRANT UPDATE (last_seq, last_hash) ON ledger_chains TO passnum_app;
-- The application may open accounts but never choose a balance.
GRANT SELECT, INSERT (programme_id, kind, owner_id, normal_side, non_negative) ON accounts TO passnum_app;
