-- Programmes, books and vouchers: what the voucher lifecycle (internal/programmes) needs on top
-- of 003_domain.sql.

-- A book carries the codes of its vouchers, in position order. Hand-out and cancellation then
-- reach a book's vouchers through the vouchers' primary key, so vouchers need no second index
-- and issuing a million of them with COPY maintains one index only.
ALTER TABLE books ADD COLUMN voucher_codes bigint[] NOT NULL
    CHECK (cardinality(voucher_codes) BETWEEN 1 AND 50);

-- Scoped lists: a funder's programmes, a distributor's programmes.
CREATE INDEX programme_funders_funder ON programme_funders (funder_id);
CREATE INDEX programme_distributors_distributor ON programme_distributors (distributor_id);

-- A redemption batch writes its redemptions before the ledger transactions they reference, so
-- that the programme's chain head and Outstanding account are locked only for the ledger's own
-- statements and the commit (internal/programmes, redeemBatch). The reference is checked at
-- commit instead.
ALTER TABLE redemptions ALTER CONSTRAINT redemptions_tx_id_fkey DEFERRABLE INITIALLY DEFERRED;
