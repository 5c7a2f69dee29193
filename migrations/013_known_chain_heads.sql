-- Writing after a chain head the writer already knows, in one round trip.
--
-- A writer locks its programme's chain head, reads its seq and hash, and chains its
-- transactions onto them: two round trips, and the head stays locked while the client
-- receives the first and sends the second. A process that wrote the head itself, or is
-- writing it in a transaction still in flight (ledger.PendingPost.CommitAtKnownHeads), knows
-- what the head will be when its own lock is granted; it sends its ledger writes together
-- with this check, which locks the heads (in programme order, as ledger.PendingPost.QueueLock
-- does) and fails the transaction with a serialization failure, retried by the ledger, when a
-- head is not the expected one: another writer went first, or the transaction the writer
-- counted on did not commit. Nothing is written on a head that was not checked under its lock.
--
-- Security invoker, without SET clauses: it runs with the caller's rights (the application
-- role may lock chain heads) and costs no configuration change per call. Names are qualified
-- instead.
CREATE FUNCTION ledger_lock_heads_at(programmes uuid[], seqs bigint[], hashes bytea[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    h      record;
    locked int := 0;
BEGIN
    FOR h IN SELECT c.programme_id, c.last_seq, c.last_hash, e.seq, e.hash
               FROM public.ledger_chains c
               JOIN unnest(programmes, seqs, hashes) AS e(programme_id, seq, hash)
                 ON e.programme_id = c.programme_id
              ORDER BY c.programme_id
                FOR NO KEY UPDATE OF c
    LOOP
        locked := locked + 1;
        IF h.last_seq <> h.seq OR h.last_hash <> h.hash THEN
            RAISE EXCEPTION 'ledger chain %: head at seq %, the writer expected seq %',
                h.programme_id, h.last_seq, h.seq
                USING ERRCODE = 'serialization_failure';
        END IF;
    END LOOP;
    IF locked <> cardinality(programmes) THEN
        RAISE EXCEPTION 'ledger chains: % of % programmes have a chain', locked, cardinality(programmes)
            USING ERRCODE = 'foreign_key_violation';
    END IF;
END
$$;
