-- Two findings from the ledger's own tests and benchmarks.
--
-- 1. transactions_recorded (programme_id, recorded_at) shared its leading column with the
--    primary key, and before a table is first analysed the planner could check the postings
--    -> transactions foreign key through it, scanning a programme's whole journal for every
--    posting. Balance-as-of reads walk the primary key backwards instead (recorded_at follows
--    seq within a programme: it is taken after the chain head is locked), which is fast for
--    recent instants and needs no second index on the hottest insert path.
DROP INDEX transactions_recorded;

-- 2. The application role may move a chain head (it must, to append), but only forward and
--    only onto a transaction that exists with exactly that hash: it can no longer rewind a
--    chain to hide its tail from verification.
CREATE FUNCTION ledger_guard_chain_head() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
BEGIN
    IF NEW.programme_id <> OLD.programme_id OR NEW.last_seq < OLD.last_seq
       OR NOT EXISTS (SELECT 1 FROM transactions
                       WHERE programme_id = NEW.programme_id AND seq = NEW.last_seq AND hash = NEW.last_hash) THEN
        RAISE EXCEPTION 'ledger chain %: head may only move forward onto a written transaction (% -> %)',
            OLD.programme_id, OLD.last_seq, NEW.last_seq
            USING ERRCODE = 'check_violation', CONSTRAINT = 'ledger_chains_forward';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER ledger_chains_forward BEFORE UPDATE ON ledger_chains
    FOR EACH ROW EXECUTE FUNCTION ledger_guard_chain_head();
