// Package payouts pays mediation sites and closes programmes: statements (relevés de
// remboursement), SEPA payment files, expiry warnings, expiry and the funders' close-out.
// Every write is one database transaction run through the ledger, exactly-once per
// (organisation, idempotency key) (ledger.Do). The rules below are also enforced by the
// database (the payouts migration, migrations/*_payouts.sql), so no path around this code can break them.
//
// # Statements
//
// The pool is every redemption and every reversal that is not on a live (draft, approved or
// paid) statement. CreateStatements(cutoff) takes from the pool every redemption whose service
// date is on or before the cut-off and every reversal made on or before it (Paris time), and
// makes one draft statement per site:
//
//   - a redemption is a line of its face value; a reversal is a negative line of the same
//     amount (a clawback);
//   - a reversal rides only once its redemption was paid (the clawback then comes off the
//     site's next statement) or together with its redemption on the same statement (they
//     cancel out). While its redemption sits on a draft or approved statement, the reversal
//     waits: rejecting that statement puts both back in the pool. So a statement never
//     pays a programme's money back before the site received it;
//   - a statement's total is the sum of its lines, checked by the database in the same
//     transaction (otherwise nothing is written);
//   - a site whose lines would net to zero or less gets no statement: its lines stay in the
//     pool and ride on its next statement whose net is positive. A statement is a payment
//     order, and a transfer of zero or less cannot be made; the clawback stays visible
//     meanwhile as a negative balance of the site's payable account. (A site that never
//     redeems again keeps that debt there, to be settled outside passnum.)
//
// Statements are numbered RLV-<cut-off year>-<cut-off month>-<running number>, e.g.
// RLV-2026-11-000042, in site id order within one run.
//
// A draft is approved (ApproveStatement) or rejected (RejectStatement, with a reason). An
// approved statement is paid (MarkStatementPaid, with the bank reference and the transfer
// date) or rejected (e.g. the bank returned the transfer). A rejected statement's lines go
// back to the pool and ride on the next statement. Paying posts, per programme on the
// statement whose lines do not net to zero, one ledger transaction of kind payout moving that
// net from SitePayable[site] to SitePaid[site]; so for every site and programme, SitePaid is
// the sum of the lines of its paid statements and SitePayable what the pool and the live
// unpaid statements hold. A paid or rejected statement never changes and nothing is ever
// deleted; lines are append-only. Actions return the statement without its lines;
// GetStatement returns them.
//
// Visibility: the operator sees every statement; a site its own (filtered in SQL). Writes
// are the operator's.
//
// # Payment files
//
// ExportPaymentFile writes a SEPA credit transfer file (pain.001.001.03, internal/sepa) for
// approved statements: one transfer per statement, to the site's IBAN and BIC, for the
// statement's total, with the statement number as end-to-end id and in the remittance
// information. The debtor is the operator's account (Config, PASSNUM_DEBTOR_*). The file is
// stored and its message id recorded on its statements; without ids only approved statements
// not yet exported are taken, so the same statement does not go to the bank twice by
// accident. Exporting does not mark anything paid: MarkStatementPaid does, once the bank has
// executed the transfer.
//
// # Expiry and close-out
//
// ListExpiring reports open programmes whose validity ends within 30 days, with the
// threshold reached (30, 15 or 7 days left) until the last day, and where their books stand.
//
// ExpireProgramme closes a programme from the day after valid_until + grace_days (before that:
// PROGRAMME_NOT_YET_EXPIRABLE, with the date). Vouchers still in stock or available expire,
// books in stock or handed out expire, the programme becomes expired. In the ledger the
// expired face value moves Outstanding → Unissued (kind expiry), then the whole Unissued
// balance moves to the funders, Unissued → FunderReturned[funder] (kind return), one
// transaction per funder. Redemptions made before expiry are still paid to sites afterwards:
// SitePayable is not touched. Expiring an expired programme returns the recorded outcome.
//
// # Rounding: the pro-rata rule
//
// Amounts are split between a programme's funders in proportion to their net contributions
// (what each paid in minus its fees), which equal the agreed co-financing shares when every
// funder paid its share. The split is cent-exact by the largest-remainder method (Allocate):
// each funder first gets the floor of its exact share, then the cents left over go one by
// one to the funders with the largest remainders, ties to the smaller funder id. The parts
// always sum to the amount split, and no funder is more than one cent away from its exact
// share. The same rule splits returns at expiry and, in GetCloseOut, each funder's share of
// what sites were paid and are still owed.
package payouts
