// Package programmes is the voucher lifecycle: programmes and their funding, books ordered for
// distributors and handed out to beneficiaries, and vouchers checked, held, redeemed and
// reversed at mediation sites. Every operation is one database transaction run through the
// ledger (ledger.RunInTx), and every write is exactly-once per (organisation, idempotency key)
// (ledger.Do, or ledger.Claim/Remember for redemptions, which are batched).
//
// # Money moves
//
// All amounts are cents in the programme's ledger chain, opened when the programme is created.
//
//	funding       FunderCashIn[funder] −amount, Unissued +budget, Fees[funder] +fee
//	issuance      Unissued → Outstanding          books × vouchers per book × face value
//	cancellation  Outstanding → Unissued          a cancelled book's vouchers, or a voucher
//	                                              voided for fraud after its redemption is reversed
//	redemption    Outstanding → SitePayable[site] one voucher's face value
//	reversal      the exact opposite of a redemption (ledger.ReversalOf)
//	expiry        Outstanding → Unissued          a redemption reversed for an error once the
//	                                              voucher can no longer be redeemed
//
// So "outstanding = face value of the vouchers in stock or available" holds after every
// operation, and since Unissued may never go negative (a CHECK in the database), no voucher
// exists whose value was not paid in first.
//
// # Rules
//
// Funding fee. A programme's fee_bps is charged on the value made available to the programme,
// not on the amount paid in: paying amount A buys a budget B and a fee F with
// F = B × fee_bps / 10000 and A = B + F, so F = ⌊A × fee_bps / (10000 + fee_bps)⌋ (rounded
// down, in the funder's favour) and B = A − F. With the historical 4 %, 10 400 € paid in
// makes 10 000 € of vouchers available and 400 € of fees. A fee of zero posts no fee line.
//
// Ordering books. The operator or a funder of the programme orders 1 to 100 000 books for an
// eligible distributor while the programme is open and its validity has not ended. The order
// is refused with PROGRAMME_NOT_FUNDED unless its face value fits in the programme's unissued
// budget. Orders of a programme are serialised by the lock on the programme's row (taken by
// the UPDATE that allocates the book numbers), which gives the budget read "for update"
// semantics: nothing else spends the unissued budget without that lock except close-out, and
// the never-negative CHECK on accounts is the last guard. The books are written with COPY and
// carry no codes: a voucher's code is its slot (programme prefix, book number, position)
// encrypted under the order's key (internal/vcode, "Keyed codes"), unique by construction.
//
// Books. A book is in stock until its distributor hands it out (only a target-public flag and
// a département among the programme's territories are kept, never an identity), which makes
// its vouchers available; this is refused once the programme's validity has ended. Hand-out
// is when a keyed book's vouchers get their rows; before it, a code is found through its
// slot and reads as its book's status. The operator or the distributor may cancel a book
// still in stock: the book is cancelled, its vouchers voided and their value returns to the
// unissued budget. Books ordered before keyed codes (migration 009) keep their drawn codes in
// books.voucher_codes and their voucher rows from issuance.
//
// Vouchers. Any site may check a code (no write). A site may hold an available voucher for 1
// to 30 minutes (default 10); while the hold runs no other site can hold or redeem it, and the
// same site holding again extends it. A voucher can be redeemed until its programme's
// valid_until plus grace_days (the "redeemable until" date), for a service given on or before
// valid_until, not in the future and not before its book was handed out.
//
// Redemptions. A redemption is refused, writing nothing, with one reason each, checked in
// this order so that a request always gets the same answer for the same state: input faults
// (code, minutes 1 to 480, service date in the future), SITE_NOT_QUALIFIED (the site's label
// does not cover the service date), SERVICE_NOT_IN_CATALOGUE, VOUCHER_NOT_FOUND,
// VOUCHER_ALREADY_REDEEMED, VOUCHER_NOT_ACTIVE (book not handed out, or voucher voided),
// VOUCHER_EXPIRED (past redeemable-until, service date after valid_until, or expired at
// close-out), VOUCHER_OUT_OF_TERRITORY (the site's département is not among the programme's
// territories), VOUCHER_HELD (held by another site), and SERVICE_DATE_BEFORE_HAND_OUT. Every loser of a race on one voucher gets the same VOUCHER_ALREADY_REDEEMED fault,
// built from the winning redemption (its time, site and site name) whether the winner
// committed earlier or in the same batch.
//
// Group commit. Every redemption of a programme moves its one Outstanding account and
// extends its one hash chain, so a programme's redemptions are serialised by those rows.
// RedeemVoucher therefore queues requests for two executors; the one collecting takes
// everything queued, up to a maximum, until the batch is cut, and redeems it in one database
// transaction (redeemBatch) of two round trips whatever its size (a ledger.Pipeline: BEGIN travels with
// the first batch of statements and COMMIT with the last): one to lock the vouchers in code
// order and then read the idempotency records and last redemptions; one to write the
// vouchers, redemptions and idempotency records of the winners (each item is decided in Go
// in between), then the ledger entries (one per winner) chained onto the programme's chain
// head as the previous batch left it, checked under the head's lock, and the commit
// (ledger.PendingPost.CommitAtKnownHeads). When the head is not known to the process (its
// first batch, after a failure, or on a retry) the head is locked and read at the end of the
// writes and the ledger entries go with the commit in a third round trip. One executor reads
// while the other writes; they write one at a time, so a batch chains onto a committed head.
// A batch is cut when its read should end as the write before it does (pace.go): at once
// when nothing is being written, so a lone request waits for nothing.
// The hot rows are locked for the ledger's statements and the commit only, once per batch
// instead of once per voucher.
// Exactly-once rests on the voucher lock taken before the idempotency records are read (a
// retry names the same voucher, so it waits for the first attempt and replays it) and on the
// records' primary key (see redeemBatch). A request whose key already appears in a batch
// waits for the next batch, where it replays the first one's answer. If a batch fails as a
// whole for an unexpected reason its items are run again one by one, so one bad item never
// fails the others. The sites of a batch are read in its first round trip, once each. A
// redemption's idempotency record holds only its voucher code and round; a replay reads the
// answer back from the redemption row and its ledger transaction, both append-only. The
// batches' size, waits and round trips are exported as metrics (metrics.go).
//
// Reversals. The operator reverses a redemption with a reason and a note. For an error the
// voucher becomes available again (its round counter stays, so the next redemption is round
// + 1), unless it can no longer be redeemed: then it is marked expired and its value moves
// Outstanding → Unissued (expiry). For fraud the voucher is voided and its value moves
// Outstanding → Unissued (cancellation) in the same transaction.
//
// # Who sees what
//
// Programmes: the operator sees all; a funder the programmes it co-finances; a distributor the
// programmes it is eligible for; a site every open programme (it needs their territories and
// validity to know which vouchers it may take). Books: the operator sees all; a funder the
// books of its programmes; a distributor its own books; sites none. The filters are in SQL.
package programmes
