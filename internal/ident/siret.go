package ident

// Fault reasons for SIRET numbers.
const (
	ReasonSIRETFormat   = "SIRET_FORMAT"
	ReasonSIRETChecksum = "SIRET_CHECKSUM"
)

const (
	// laPosteSIREN is La Poste's SIREN. All its establishments share it; their SIRET numbers are
	// checked by a digit sum that is a multiple of 5 instead of the Luhn formula, except the head
	// office, laPosteHeadOffice, which follows Luhn.
	laPosteSIREN      = "356000000"
	laPosteHeadOffice = "35600000000048"
)

// NormalizeSIRET returns the 14 digits of a SIRET number, with spaces removed. The last digit is
// a Luhn check over all 14 (for La Poste's establishments: the sum of the digits is a multiple
// of 5).
func NormalizeSIRET(s string) (string, error) {
	s = stripSpaces(s)
	if len(s) != 14 || !allDigits(s) {
		return "", invalid(ReasonSIRETFormat,
			"Un numéro SIRET compte exactement 14 chiffres (par exemple 110 001 013 00017).",
			"field", "siret")
	}
	ok := luhn(s)
	if s[:9] == laPosteSIREN && s != laPosteHeadOffice {
		ok = digitSum(s)%5 == 0
	}
	if !ok {
		return "", invalid(ReasonSIRETChecksum,
			"Ce numéro SIRET n'existe pas : un chiffre est sans doute mal recopié. "+
				"Vérifiez-le sur l'avis de situation Insee ou sur annuaire-entreprises.data.gouv.fr.",
			"field", "siret")
	}
	return s, nil
}

// ValidSIRET reports whether s is a SIRET number once spaces are removed.
func ValidSIRET(s string) error {
	_, err := NormalizeSIRET(s)
	return err
}

// luhn reports whether the decimal digits s pass the Luhn check: doubling every second digit
// from the right, the digits of the results and the other digits sum to a multiple of 10.
// CompleteSIRET appends to 13 digits the Luhn check digit that makes them a valid SIRET.
// Test fixtures, the demo seed and data generators use it to make numbers that pass
// ValidSIRET (and the database's siret_valid); it is not for La Poste's SIREN 356000000.
func CompleteSIRET(body string) string {
	for c := byte('0'); c <= '9'; c++ {
		if s := body + string(c); luhn(s) {
			return s
		}
	}
	panic("ident: one Luhn check digit always fits")
}

func luhn(s string) bool {
	sum := 0
	for i := range len(s) {
		d := int(s[len(s)-1-i] - '0')
		if i%2 == 1 {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	return sum%10 == 0
}

func digitSum(s string) int {
	sum := 0
	for i := range len(s) {
		sum += int(s[i] - '0')
	}
	return sum
}
