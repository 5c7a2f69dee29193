// Package orgs registers the organisations of passnum (funders, distributors, mediation
// sites), qualifies sites, and imports sites from the national open data format "lieux de
// médiation numérique" (schema.data.gouv.fr, LaMednum/standard-mediation-num).
//
// # Who creates organisations
//
// CreateOrganization registers funders, distributors and sites. The operator's own
// organisation is never created through it: the deployment's bootstrap calls EnsureOperator
// once with the organisation id it puts in operator tokens. Role checks on writes live in
// the server's authorisation table (server/authz.go); the domain takes the actor for the
// idempotency scope and the audit trail (site_status_history.changed_by is the actor's
// organisation).
//
// # Who sees what
//
// Visibility is decided in one place, scopeOf, and applied in SQL by both Get and List:
//
//   - the operator sees every organisation with every detail;
//   - every organisation sees itself, with every detail;
//   - funders and distributors also see the public registry of qualified sites (status
//     qualified), without the site's bank details (IBAN, BIC) and legal representative:
//     they need to know where vouchers can be spent, not how the site is paid;
//   - sites see only themselves.
//
// An organisation outside the caller's scope is reported as not found. The server's
// object check on GetOrganization additionally restricts Get to the caller's own
// organisation for non-operators, so the registry is read through List.
//
// # Site statuses
//
//	pending ──QualifySite──▶ qualified ──SuspendSite──▶ suspended
//	                          ▲   │ ▲                      │
//	                          │   └─┘ QualifySite          │
//	                          │     (new label period)     │
//	                          └────────QualifySite─────────┘
//	pending, qualified, suspended ──WithdrawSite──▶ withdrawn (final)
//
// Qualification needs a legal representative, an IBAN and a BIC (given then or earlier) and a
// label period that has not already ended. Suspension and withdrawal need a reason. A withdrawn
// site is final: its SIRET stays taken (one qualification per SIRET, kept for the audit trail of
// what it was paid) and it can never be qualified again. Every change, creation included, is
// written to site_status_history. A site accepts vouchers on date D only while its status is
// qualified and D lies in its label period (SiteInfo.QualifiedOn): suspension stops redemptions
// at once, even for services delivered before it.
//
// # Site import
//
// ImportSites reads a CSV file in the national format (see ParseSitesCSV for what is
// accepted), validates every row in Go, then applies the valid rows in one idempotent
// operation where each row is all or nothing and a row the database refuses does not lose the
// others (savepoints around chunks of rows, split down to the refused row). A row is matched
// to an existing site by SIRET (the standard's "pivot"); the standard's "id" is kept as the
// site's external id. Importing never changes a site's status: new sites are pending (they
// still need a legal representative and bank details to be qualified) and existing sites keep
// theirs.
package orgs
