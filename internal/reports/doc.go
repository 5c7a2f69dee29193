// Package reports answers the spend reports funders, distributors, sites and the operator ask
// for, as rows and as CSV for a French spreadsheet.
//
// # Where the figures come from
//
// Reports never scan the event tables. Statement-level triggers with transition tables (the
// reports migration) keep aggregate rows per (programme, month, distributor, site, territory)
// in report_spend, in the same transaction as every event and whatever path wrote it (API,
// COPY, batches, close-out, raw SQL). A key has one row per slot its writers used (migration
// 009: concurrent writers of a programme take different slots, so they never wait on each
// other's rows), and readers sum over slots. A report is then one grouped scan of those rows,
// read in one snapshot (ledger.RunInSnapshot, read-only), so it can run on a read replica.
//
// # Measures and their months
//
//   - Books issued: books ordered and not cancelled (a cancelled book never reached anyone and
//     its value went back to the budget), in the month the order was placed. A book is issued
//     to a distributor; it has no site and no territory yet, so a territory or site filter
//     shows none.
//   - Books handed out, and those that went to the target public: in the month of hand-out,
//     under the book's territory (the beneficiary's département, recorded at hand-out).
//   - Books started: books with at least one redemption, counted once, under the key of the
//     book's first redemption (month of its service date, its site), even if that redemption
//     is reversed later.
//   - Vouchers redeemed, minutes delivered, owed: redemptions net of reversals, in the month
//     of the service date, at the redeeming site, under the book's distributor and territory.
//     A reversal is subtracted under the key of the redemption it reverses, so a month's
//     figures stay true. Owed is the value of vouchers used: what sites are owed in total,
//     paid or not.
//   - Paid: statement lines of statements marked paid, in the month of payment, at the
//     statement's site, under each line's book distributor and territory (negative
//     clawback lines included).
//   - Expired: face value of vouchers that expired, in the month after the programme's
//     redeemable-until date (valid_until + grace_days), under the book's distributor and
//     territory (none if it was never handed out).
//   - Returned: value moved to the funders' "returned" ledger accounts (the close-out's return
//     transactions), in the month of the transaction's effective date; it belongs to the
//     programme, not to a distributor, site or territory.
//   - Target public share: books handed out to the target public × 10000 / books handed out,
//     in basis points, rounded down (0 when no book was handed out).
//
// Months are Europe/Paris civil months; a period filter keeps the months from From to To
// inclusive.
//
// # Funders
//
// A programme has one or more funders with shares in basis points (summing to 10000). When a
// report is grouped or filtered by funder, each programme's figures are split between its
// funders by share, measure by measure, with the largest-remainder method (each part is within
// one unit of its exact share and the parts add up exactly to the programme's figure, ties
// going to the smaller funder id); the row of a funder is its part. Totals therefore never
// count a programme twice.
//
// The funder share column is what each funder pays for the vouchers actually used (owed): its
// share of the used value, except that a funder with a ceiling (programme_funders.cap_cents,
// the State's 1.5 M€) pays at most that ceiling over the programme's whole life. Precisely,
// for a programme whose vouchers used so far are worth U (all months, sites and distributors):
//
//  1. every funder is given its share of U; a capped funder whose share exceeds its ceiling is
//     set to the ceiling, and what it leaves is given to the other, not yet capped, funders in
//     proportion to their shares; this repeats until no funder exceeds its ceiling, which
//     gives each funder a whole-programme amount A (cents, largest remainder again);
//  2. in a report row whose used value is u, a funder's share is u × A / U, split with the
//     largest-remainder method so that the funders' shares add up to u.
//
// If every funder is capped and the ceilings add up to less than U, the rest is nobody's
// share: the funder shares then add up to less than the owed amount.
//
// # Scope
//
// The caller's scope is part of the SQL: operators see everything, a funder only the
// programmes it funds, a distributor only rows of its own books, a site only rows of its own
// redemptions and payments. Filters can narrow a scope, never widen it.
package reports
