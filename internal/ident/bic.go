package ident

// ReasonBICFormat is the fault reason for a malformed BIC.
const ReasonBICFormat = "BIC_FORMAT"

// NormalizeBIC returns a BIC (ISO 9362, also called SWIFT code) without spaces and in upper
// case: 4 letters for the bank, 2 for the country, 2 letters or digits for the location and an
// optional 3 for the branch, i.e. ^[A-Z]{4}[A-Z]{2}[A-Z0-9]{2}([A-Z0-9]{3})?$.
func NormalizeBIC(s string) (string, error) {
	s = stripSpaces(s)
	ok := len(s) == 8 || len(s) == 11
	for i := 0; ok && i < len(s); i++ {
		c := s[i]
		ok = isLetter(c) || i >= 6 && c >= '0' && c <= '9'
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
