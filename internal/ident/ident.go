// Package ident checks the French and European identifiers passnum stores: SIRET numbers of
// organisations and sites, IBAN and BIC of bank accounts, and département, INSEE commune and
// postal codes of territories.
//
// Each identifier has a NormalizeX function that accepts what people type or paste (spaces,
// lower case) and returns the canonical form to store, and a ValidX function that reports
// whether NormalizeX would succeed. Store the normalised value, never the raw input. Failures are
// faults of kind fault.Invalid with a stable reason and a French message.
package ident

import (
	"strings"
	"unicode"

	"github.com/passnum/passnum/internal/fault"
)

// stripSpaces removes every Unicode space (including the no-break and thin spaces that word
// processors and French typography insert) and upper-cases ASCII letters.
func stripSpaces(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case unicode.IsSpace(r):
			return -1
		case r >= 'a' && r <= 'z':
			return r - 'a' + 'A'
		}
		return r
	}, s)
}

func allDigits(s string) bool {
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func invalid(reason, message string, kv ...string) error {
	return fault.New(fault.Invalid, reason, message, kv...)
}
