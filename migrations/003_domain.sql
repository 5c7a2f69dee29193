-- The voucher domain: organisations, qualified sites, programmes, funding, books, vouchers,
-- redemptions. Money in bigint cents, durations in integer minutes. Identifier checks (Luhn,
-- mod-97) are repeated here so that no path around the Go code can store a bad one.

-- Luhn over 14 digits: from the right, every second digit is doubled. La Poste's
-- establishments (SIREN 356000000) use a digit sum multiple of 5 instead, except its head
-- office 35600000000048. Same rule as internal/ident.
CREATE FUNCTION siret_valid(s text) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT s ~ '^[0-9]{14}$' AND (
        CASE WHEN left(s, 9) = '356000000' AND s <> '35600000000048'
             THEN (SELECT sum(substr(s, i, 1)::int) FROM generate_series(1, 14) i) % 5 = 0
             ELSE (SELECT sum(CASE WHEN i % 2 = 0 THEN (d * 2) / 10 + (d * 2) % 10 ELSE d END)
                     FROM (SELECT i, substr(reverse(s), i, 1)::int AS d
                             FROM generate_series(1, 14) i) x) % 10 = 0
        END)
$$;

CREATE FUNCTION iban_valid(s text) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE AS $$
DECLARE
    r text;
    c text;
    rem int := 0;
    i int;
BEGIN
    IF s !~ '^[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}$' THEN
        RETURN false;
    END IF;
    r := substr(s, 5) || left(s, 4);
    FOR i IN 1 .. length(r) LOOP
        c := substr(r, i, 1);
        IF c BETWEEN '0' AND '9' THEN
            rem := (rem * 10 + c::int) % 97;
        ELSE
            rem := (rem * 100 + ascii(c) - 55) % 97;
        END IF;
    END LOOP;
    RETURN rem = 1;
END
$$;

CREATE FUNCTION departement_valid(s text) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    -- Metropolitan 01-95 (20 split into 2A/2B), overseas 971-976, and the collectivités
    -- 975, 977, 978, 986-988 whose communes have INSEE codes. Same rule as internal/ident.
    SELECT s ~ '^(0[1-9]|1[0-9]|[3-8][0-9]|9[0-5]|2[1-9]|2A|2B|97[1-8]|98[678])$'
$$;

CREATE TABLE organisations (
    id          uuid PRIMARY KEY,
    kind        text NOT NULL CHECK (kind IN ('operator', 'funder', 'distributor', 'site')),
    name        text NOT NULL CHECK (length(btrim(name)) BETWEEN 1 AND 200),
    -- National bodies (the operator, the State) have no département.
    departement text CHECK (departement_valid(departement)),
    siret       text CHECK (siret_valid(siret)),
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (departement IS NOT NULL OR kind IN ('operator', 'funder')),
    CHECK (siret IS NOT NULL OR kind <> 'site'),
    -- Lets other tables require an organisation of a given kind with a plain foreign key.
    UNIQUE (id, kind)
);
-- One qualification per SIRET.
CREATE UNIQUE INDEX organisations_site_siret ON organisations (siret) WHERE kind = 'site';

CREATE TABLE sites (
    org_id               uuid PRIMARY KEY,
    org_kind             text NOT NULL DEFAULT 'site' CHECK (org_kind = 'site'),
    external_id          text UNIQUE,          -- id in the national "lieux de médiation numérique" data
    legal_representative text CHECK (length(btrim(legal_representative)) BETWEEN 1 AND 200),
    iban                 text CHECK (iban_valid(iban)),
    bic                  text CHECK (bic ~ '^[A-Z]{4}[A-Z]{2}[A-Z0-9]{2}([A-Z0-9]{3})?$'),
    services             text[] NOT NULL DEFAULT '{}',
    commune              text,
    code_postal          text CHECK (code_postal ~ '^[0-9]{5}$'),
    code_insee           text CHECK (code_insee ~ '^([0-9]{2}|2A|2B)[0-9]{3}$'),
    adresse              text,
    status               text NOT NULL DEFAULT 'pending'
                         CHECK (status IN ('pending', 'qualified', 'suspended', 'withdrawn')),
    valid_from           date,
    valid_until          date,
    updated_at           timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (org_id, org_kind) REFERENCES organisations (id, kind),
    CHECK (valid_from IS NULL OR valid_until IS NULL OR valid_from <= valid_until),
    -- A qualified site can be paid and has a label period.
    CHECK (status <> 'qualified' OR (iban IS NOT NULL AND bic IS NOT NULL
           AND legal_representative IS NOT NULL AND valid_from IS NOT NULL AND valid_until IS NOT NULL))
);

-- Every status change of a site, for audit.
CREATE TABLE site_status_history (
    site_id     uuid NOT NULL REFERENCES sites (org_id),
    changed_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    status      text NOT NULL CHECK (status IN ('pending', 'qualified', 'suspended', 'withdrawn')),
    valid_from  date,
    valid_until date,
    reason      text,
    changed_by  uuid NOT NULL,
    PRIMARY KEY (site_id, changed_at)
);

CREATE TABLE programmes (
    id                      uuid PRIMARY KEY REFERENCES ledger_chains (programme_id),
    name                    text   NOT NULL CHECK (length(btrim(name)) BETWEEN 1 AND 200),
    face_value_cents        bigint NOT NULL CHECK (face_value_cents BETWEEN 1 AND 100000),
    vouchers_per_book       int    NOT NULL CHECK (vouchers_per_book BETWEEN 1 AND 50),
    valid_from              date   NOT NULL,
    valid_until             date   NOT NULL,
    grace_days              int    NOT NULL CHECK (grace_days BETWEEN 0 AND 366),
    territories             text[] NOT NULL CHECK (cardinality(territories) > 0),
    target_public_quota_bps int    NOT NULL CHECK (target_public_quota_bps BETWEEN 0 AND 10000),
    fee_bps                 int    NOT NULL CHECK (fee_bps BETWEEN 0 AND 10000),
    status                  text   NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'expired')),
    books_ordered           bigint NOT NULL DEFAULT 0 CHECK (books_ordered >= 0), -- last book number
    expired_at              timestamptz,
    created_at              timestamptz NOT NULL DEFAULT now(),
    created_by              uuid   NOT NULL,
    CHECK (valid_from <= valid_until),
    CHECK ((status = 'expired') = (expired_at IS NOT NULL))
);

CREATE TABLE programme_funders (
    programme_id uuid NOT NULL REFERENCES programmes (id),
    funder_id    uuid NOT NULL,
    funder_kind  text NOT NULL DEFAULT 'funder' CHECK (funder_kind = 'funder'),
    share_bps    int  NOT NULL CHECK (share_bps BETWEEN 1 AND 10000),
    -- Optional ceiling on what this funder pays for vouchers used (the State's 1.5 M€ cap).
    cap_cents    bigint CHECK (cap_cents >= 0),
    PRIMARY KEY (programme_id, funder_id),
    FOREIGN KEY (funder_id, funder_kind) REFERENCES organisations (id, kind)
);

-- Shares of a programme's funders sum to exactly 100 %, checked at commit.
CREATE FUNCTION programme_check_shares() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    total bigint;
BEGIN
    SELECT coalesce(sum(share_bps), 0) INTO total FROM programme_funders WHERE programme_id = NEW.id;
    IF total <> 10000 THEN
        RAISE EXCEPTION 'programme %: funder shares sum to % basis points, not 10000', NEW.id, total
            USING ERRCODE = 'check_violation', CONSTRAINT = 'programme_shares_total';
    END IF;
    RETURN NULL;
END
$$;
CREATE CONSTRAINT TRIGGER programme_shares_total AFTER INSERT ON programmes
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION programme_check_shares();

CREATE TABLE programme_distributors (
    programme_id      uuid NOT NULL REFERENCES programmes (id),
    distributor_id    uuid NOT NULL,
    distributor_kind  text NOT NULL DEFAULT 'distributor' CHECK (distributor_kind = 'distributor'),
    PRIMARY KEY (programme_id, distributor_id),
    FOREIGN KEY (distributor_id, distributor_kind) REFERENCES organisations (id, kind)
);

CREATE TABLE fundings (
    id             uuid   PRIMARY KEY,
    programme_id   uuid   NOT NULL,
    funder_id      uuid   NOT NULL,
    amount_cents   bigint NOT NULL CHECK (amount_cents > 0),
    fee_cents      bigint NOT NULL CHECK (fee_cents >= 0 AND fee_cents < amount_cents),
    bank_reference text   NOT NULL CHECK (length(btrim(bank_reference)) BETWEEN 1 AND 140),
    received_on    date   NOT NULL,
    tx_id          uuid   NOT NULL REFERENCES transactions (id),
    recorded_at    timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (programme_id, funder_id) REFERENCES programme_funders (programme_id, funder_id),
    -- The same bank transfer cannot be booked twice.
    UNIQUE (funder_id, bank_reference)
);

CREATE TABLE book_orders (
    id               uuid   PRIMARY KEY,
    programme_id     uuid   NOT NULL REFERENCES programmes (id),
    distributor_id   uuid   NOT NULL,
    first_number     bigint NOT NULL CHECK (first_number > 0),
    books            int    NOT NULL CHECK (books BETWEEN 1 AND 100000),
    face_value_cents bigint NOT NULL CHECK (face_value_cents > 0),
    tx_id            uuid   NOT NULL REFERENCES transactions (id),
    ordered_by       uuid   NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    FOREIGN KEY (programme_id, distributor_id) REFERENCES programme_distributors (programme_id, distributor_id)
);

-- Books are numbered 1, 2, ... within their programme.
CREATE TABLE books (
    programme_id   uuid    NOT NULL,
    number         bigint  NOT NULL CHECK (number > 0),
    order_id       uuid    NOT NULL REFERENCES book_orders (id),
    distributor_id uuid    NOT NULL,
    status         text    NOT NULL DEFAULT 'in_stock'
                   CHECK (status IN ('in_stock', 'handed_out', 'cancelled', 'expired')),
    target_public  boolean,
    territory      text    CHECK (departement_valid(territory)),
    handed_out_at  timestamptz,
    closed_at      timestamptz, -- cancelled or expired
    PRIMARY KEY (programme_id, number),
    CHECK ((handed_out_at IS NULL) = (target_public IS NULL)),
    CHECK ((handed_out_at IS NULL) = (territory IS NULL)),
    CHECK (status <> 'handed_out' OR handed_out_at IS NOT NULL),
    CHECK (status <> 'cancelled' OR handed_out_at IS NULL),
    CHECK ((status IN ('cancelled', 'expired')) = (closed_at IS NOT NULL))
);
CREATE INDEX books_distributor ON books (distributor_id, programme_id, number);

-- code: the 60 random bits of the voucher code (internal/vcode); the check character is
-- derived. status: in_stock (book not handed out), available, redeemed, expired, voided.
-- No foreign key to books: issuing 1 M vouchers with one COPY must not pay a million
-- referential checks; the ledger verification checks every voucher has its book instead.
CREATE TABLE vouchers (
    code             bigint   PRIMARY KEY CHECK (code > 0 AND code < 1152921504606846976), -- 2^60
    programme_id     uuid     NOT NULL,
    book_number      bigint   NOT NULL,
    position         smallint NOT NULL CHECK (position BETWEEN 1 AND 50),
    face_value_cents bigint   NOT NULL CHECK (face_value_cents > 0),
    status           text     NOT NULL DEFAULT 'in_stock'
                     CHECK (status IN ('in_stock', 'available', 'redeemed', 'expired', 'voided')),
    rounds           smallint NOT NULL DEFAULT 0 CHECK (rounds >= 0), -- redemptions so far, reversed ones included
    held_by          uuid,
    held_until       timestamptz,
    CHECK ((held_by IS NULL) = (held_until IS NULL))
);

-- One row per redemption. round 1 is the first; a later round exists only after the previous
-- one was reversed for an error, so (voucher_code, round) makes "redeemed twice" impossible.
CREATE TABLE redemptions (
    voucher_code    bigint   NOT NULL REFERENCES vouchers (code),
    round           smallint NOT NULL CHECK (round >= 1),
    programme_id    uuid     NOT NULL,
    site_id         uuid     NOT NULL REFERENCES sites (org_id),
    service         text     NOT NULL CHECK (length(btrim(service)) BETWEEN 1 AND 200),
    minutes         int      NOT NULL CHECK (minutes BETWEEN 1 AND 480),
    service_date    date     NOT NULL,
    amount_cents    bigint   NOT NULL CHECK (amount_cents > 0),
    redeemed_at     timestamptz NOT NULL,
    tx_id           uuid     NOT NULL REFERENCES transactions (id),
    PRIMARY KEY (voucher_code, round)
);
CREATE INDEX redemptions_site ON redemptions (site_id, redeemed_at);
CREATE INDEX redemptions_programme ON redemptions (programme_id, redeemed_at);

CREATE TABLE redemption_reversals (
    voucher_code bigint   NOT NULL,
    round        smallint NOT NULL,
    programme_id uuid     NOT NULL,
    site_id      uuid     NOT NULL,
    reason       text     NOT NULL CHECK (reason IN ('error', 'fraud')),
    note         text     NOT NULL CHECK (length(btrim(note)) BETWEEN 1 AND 500),
    amount_cents bigint   NOT NULL CHECK (amount_cents > 0),
    reversed_at  timestamptz NOT NULL,
    reversed_by  uuid     NOT NULL,
    tx_id        uuid     NOT NULL REFERENCES transactions (id),
    PRIMARY KEY (voucher_code, round),
    FOREIGN KEY (voucher_code, round) REFERENCES redemptions (voucher_code, round)
);
CREATE INDEX redemption_reversals_site ON redemption_reversals (site_id, reversed_at);

-- A new round may only follow a reversed one.
CREATE FUNCTION redemption_check_round() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.round > 1 AND NOT EXISTS (
        SELECT 1 FROM redemption_reversals
         WHERE voucher_code = NEW.voucher_code AND round = NEW.round - 1) THEN
        RAISE EXCEPTION 'voucher %: round % without reversal of round %', NEW.voucher_code, NEW.round, NEW.round - 1
            USING ERRCODE = 'check_violation', CONSTRAINT = 'redemptions_one_live';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER redemptions_one_live BEFORE INSERT ON redemptions
    FOR EACH ROW WHEN (NEW.round > 1) EXECUTE FUNCTION redemption_check_round();

CREATE TRIGGER redemptions_append_only BEFORE UPDATE OR DELETE ON redemptions
    FOR EACH ROW EXECUTE FUNCTION ledger_reject_change();
CREATE TRIGGER redemption_reversals_append_only BEFORE UPDATE OR DELETE ON redemption_reversals
    FOR EACH ROW EXECUTE FUNCTION ledger_reject_change();
CREATE TRIGGER fundings_append_only BEFORE UPDATE OR DELETE ON fundings
    FOR EACH ROW EXECUTE FUNCTION ledger_reject_change();

GRANT SELECT, INSERT ON organisations, sites, site_status_history, programmes, programme_funders,
    programme_distributors, fundings, book_orders, books, vouchers, redemptions,
    redemption_reversals TO passnum_app;
GRANT UPDATE ON sites, programmes, books, vouchers TO passnum_app;
