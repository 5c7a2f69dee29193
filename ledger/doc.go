// Package ledger is passnum's double-entry engine: accounts, transactions, postings, balances,
// idempotency, the per-programme hash chain, retries, verification and the auditors' export.
// It knows nothing of gRPC.
//
// # Model
//
// Every account belongs to a programme and has a kind (AccountKind). Value enters a programme
// on the funder's FunderCashIn account (credit-normal: its balance is what the funder paid in)
// and then sits in exactly one place: Fees, Unissued, Outstanding, SitePayable, SitePaid or
// FunderReturned (all debit-normal). A transaction is a set of postings (positive = debit)
// that sums to zero, so at any time
//
//	paid in = fees + unissued + outstanding + payable + paid + returned
//
// and, since every place but SitePayable is never negative, paid in ≥ outstanding + payable +
// paid: value in circulation is always backed by money already paid in.
//
// # What the database enforces (migrations/002_ledger.sql)
//
// Postings of a transaction are inserted in one statement; a statement trigger checks that
// every transaction it touched got all its postings in that statement (none can be added
// later) and sums to zero, and moves the stored balances; a deferred trigger refuses transactions without postings; transactions, postings
// and idempotency records refuse UPDATE, DELETE and TRUNCATE; balances carry CHECK constraints
// for never-negative kinds, so "no voucher without funding" holds even against raw SQL. The
// application role has no UPDATE on balances at all.
//
// # Proving the books
//
// Verify checks every invariant above, and the hash chain, in one read-only snapshot and
// reports each check with its figures (also `passnum verify` and LedgerService.VerifyLedger).
// Export streams a programme's journal, with its chain head and accounts, as JSON lines or
// CSV; VerifyExport checks such a file with no database (`passnum verify-export`), using the
// same ChainHash, so that a funder or an auditor can verify a programme's books from the
// export alone. export.go documents both formats.
//
// # Hot accounts and the chain
//
// All redemptions of a programme touch its one Outstanding account and its chain head. Post
// takes any number of entries and writes them in one round trip, locking each programme's
// chain head once (programmes in id order, so batches never deadlock) and moving each
// account's balance once per call (in account id order, inside the trigger). Callers that need
// throughput group concurrent requests into one Post (group commit); the hot rows are then
// locked once per batch instead of once per voucher. One hash chain per programme keeps
// programmes independent of each other.
//
// # Hot accounts: the choice, measured
//
// Within a programme, writers queue on the chain head, which Post locks (FOR NO KEY UPDATE,
// so that it does not conflict with the KEY SHARE locks of accounts being opened) until
// commit, and so across the commit's WAL flush. A programme's throughput is therefore
// bounded by commits per second, whatever the number of writers; sharding the Outstanding
// account into sub-accounts would not lift that bound, since the chain totally orders the
// programme's transactions anyway. So we keep one Outstanding account and one chain per
// programme, and amortise the commit by batching: one Post of many entries costs one chain
// lock, one balance update per account and one flush.
//
// BenchmarkHotOutstanding measures redemption-like moves (outstanding → one of four sites'
// payable) in one programme, by 8 or 32 goroutines each with its own connection, posting 1,
// 16 or 64 entries per database transaction, 20 000 entries per case, on a server with
// fsync on (withpg without -fast), after a warm-up and ANALYZE. Two runs on a shared 2-vCPU
// VM (load average 6 to 10 from other work), PostgreSQL 15, in entries per second:
//
//	entries per Post   8 writers      32 writers
//	1                  296, 297       216, 282
//	16                 2 607, 1 882   1 858, 2 522
//	64                 5 413, 4 627   3 563, 5 253
//
// BenchmarkPost (one writer, no contention) gives 176 entries/s one by one and 3 505
// entries/s in batches of 64. Conclusions: one entry per commit caps a programme at a few
// hundred redemptions a second (one fsync each, serialised by the chain head) and more
// writers do not help; batches of 16 give about 8 times that, batches of 64 about 18 times,
// and beyond 8 writers the figures only move with the noise. Redemptions should therefore be
// grouped into one Post per few milliseconds (16 to 64 entries) by a handful of writers per
// programme; separate programmes write in parallel. To reproduce:
//
//	go run ./cmd/withpg -- go test ./ledger -run '^$' -bench 'HotOutstanding|Post' -benchtime 20000x
//
// The benchmark ANALYZEs its tables first. An index on transactions (programme_id,
// recorded_at) once let PostgreSQL plan the postings → transactions foreign-key check
// through it on tables never analyzed, a scan of the programme's whole journal per posting;
// migrations/008_ledger_hardening.sql dropped it.
package ledger
