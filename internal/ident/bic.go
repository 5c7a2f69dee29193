package ident

// ReasonBICFormat is the fault reason for a malformed BIC.
const ReasonBICFormat = "BIC_FORMAT"

// NormalizeBIC returns a BIC (ISO 9362, also called SWIFT code) without spaces and in upper
// case: 4 letters for the bank, 2 for the country, 2 letters or digits for the location and an
// optional 3 for the branch, i.e. ^[A-Z]{4}[A-Z]{2}[A-Z0-9]{2}([A-Z0-9]{3})?$.
//
// Like the BICIdentifier type of the ISO 20022 schemas, the first location character may not be
// 0 or 1 (reserved for test and training BICs) and the second may not be the letter O (to avoid
// confusion with zero), so every BIC accepted here can go in a SEPA payment file.
func NormalizeBIC(s string) (string, error) {
	s = stripSpaces(s)
	ok := len(s) == 8 || len(s) == 11
	for i := 0; ok && i < len(s); i++ {
		c := s[i]
		switch {
		case i < 6:
			ok = isLetter(c)
		case i == 6:
			ok = isLetter(c) || c >= '2' && c <= '9'
		case i == 7:
			ok = isLetter(c) && c != 'O' || c >= '0' && c <= '9'
		default:
			ok = isLetter(c) || c >= '0' && c <= '9'
		}
	}
	if !ok {
		return "", invalid(ReasonBICFormat,
			"Un BIC (ou code SWIFT) compte 8 ou 11 caractères, par exemple BNPAFRPP ou BNPAFRPPXXX : "+
				"6 lettres pour la banque et le pays, puis des lettres ou des chiffres. Vérifiez-le sur le RIB.",
			"field", "bic")
	}
	return s, nil
}

// ValidBIC reports whether NormalizeBIC accepts s.
func ValidBIC(s string) error {
	_, err := NormalizeBIC(s)
	return err
}
