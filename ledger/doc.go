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
// every transaction it touched sums to zero over all its postings and moves the stored
// balances; a deferred trigger refuses transactions without postings; transactions, postings
// and idempotency records refuse UPDATE, DELETE and TRUNCATE; balances carry CHECK constraints
// for never-negative kinds, so "no voucher without funding" holds even against raw SQL. The
// application role has no UPDATE on balances at all.
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
package ledger
