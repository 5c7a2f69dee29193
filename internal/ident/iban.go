package ident

import (
	"fmt"
	"strings"
)

// Fault reasons for IBANs.
const (
	ReasonIBANCharacter = "IBAN_CHARACTER"
	ReasonIBANCountry   = "IBAN_COUNTRY"
	ReasonIBANLength    = "IBAN_LENGTH"
	ReasonIBANFormat    = "IBAN_FORMAT"
	ReasonIBANChecksum  = "IBAN_CHECKSUM"
)

// ibanLength is the IBAN length of each country of the SEPA scheme (from the SWIFT IBAN
// registry), plus the French overseas territories that the registry lists under their own code
// although their banks use the French account format.
var ibanLength = map[string]int{
	"AD": 24, "AT": 20, "BE": 16, "BG": 22, "CH": 21, "CY": 28, "CZ": 24, "DE": 22, "DK": 18,
	"EE": 20, "ES": 24, "FI": 18, "FR": 27, "GB": 22, "GI": 23, "GR": 27, "HR": 21, "HU": 28,
	"IE": 22, "IS": 26, "IT": 27, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MT": 31,
	"NL": 18, "NO": 15, "PL": 28, "PT": 25, "RO": 24, "SE": 24, "SI": 19, "SK": 24, "SM": 27,
	"VA": 22,
	// French overseas: départements, collectivités and New Caledonia.
	"BL": 27, "GF": 27, "GP": 27, "MF": 27, "MQ": 27, "NC": 27, "PF": 27, "PM": 27, "RE": 27,
	"TF": 27, "WF": 27, "YT": 27,
}

// frenchAccount lists the countries whose BBAN is a French RIB: bank code (5 digits), branch
// code (5 digits), account number (11 letters or digits) and a 2-digit RIB key.
var frenchAccount = map[string]bool{
	"FR": true, "MC": true, "BL": true, "GF": true, "GP": true, "MF": true, "MQ": true,
	"NC": true, "PF": true, "PM": true, "RE": true, "TF": true, "WF": true, "YT": true,
}

// NormalizeIBAN returns an IBAN without spaces and in upper case after checking its characters,
// its country, its length for that country, its check digits (ISO 7064 mod 97-10) and, for
// French accounts, the RIB key.
func NormalizeIBAN(s string) (string, error) {
	s = stripSpaces(s)
	for i := range len(s) {
		if c := s[i]; !(c >= '0' && c <= '9' || c >= 'A' && c <= 'Z') {
			return "", invalid(ReasonIBANCharacter,
				"Un IBAN ne contient que des lettres et des chiffres : retirez les autres caractères.",
				"field", "iban")
		}
	}
	if len(s) < 4 || !isLetter(s[0]) || !isLetter(s[1]) || !allDigits(s[2:4]) {
		return "", invalid(ReasonIBANFormat,
			"Un IBAN commence par les deux lettres du pays puis deux chiffres, par exemple FR76 pour un compte en France.",
			"field", "iban")
	}
	country := s[:2]
	want, ok := ibanLength[country]
	if !ok {
		return "", invalid(ReasonIBANCountry,
			fmt.Sprintf("Les IBAN commençant par %s ne sont pas acceptés : seuls les comptes de la zone SEPA "+
				"peuvent recevoir un virement. Vérifiez les deux premières lettres (FR pour un compte en France).", country),
			"field", "iban", "country", country)
	}
	if len(s) != want {
		return "", invalid(ReasonIBANLength,
			fmt.Sprintf("Un IBAN commençant par %s compte %d caractères, celui-ci en compte %d : "+
				"vérifiez qu'il n'en manque pas et qu'il n'y en a pas en trop.", country, want, len(s)),
			"field", "iban", "country", country, "length", fmt.Sprint(len(s)), "expected", fmt.Sprint(want))
	}
	if frenchAccount[country] && !(allDigits(s[4:14]) && allDigits(s[25:27])) {
		return "", invalid(ReasonIBANFormat,
			"Dans un IBAN français, les codes banque et guichet et la clé RIB ne contiennent que des chiffres : "+
				"vérifiez l'IBAN sur le RIB.",
			"field", "iban", "country", country)
	}
	// Check digits 00, 01 and 99 are never issued (the algorithm yields 02 to 98) but would pass
	// mod 97 as 97, 98 and 02 do.
	cd := s[2:4]
	if ibanMod97(s) != 1 || cd == "00" || cd == "01" || cd == "99" ||
		frenchAccount[country] && !ribKeyValid(s[4:]) {
		return "", invalid(ReasonIBANChecksum,
			"Cet IBAN contient une erreur : un caractère est sans doute mal recopié. Vérifiez-le sur le RIB.",
			"field", "iban", "country", country)
	}
	return s, nil
}

// ValidIBAN reports whether NormalizeIBAN accepts s.
func ValidIBAN(s string) error {
	_, err := NormalizeIBAN(s)
	return err
}

// FormatIBAN returns s without spaces, in upper case, in groups of four characters separated by
// spaces, as printed on a RIB. It does not check s.
func FormatIBAN(s string) string {
	s = stripSpaces(s)
	var b strings.Builder
	b.Grow(len(s) + len(s)/4)
	for i := 0; i < len(s); i += 4 {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(s[i:min(i+4, len(s))])
	}
	return b.String()
}

func isLetter(c byte) bool { return c >= 'A' && c <= 'Z' }

// ibanMod97 returns the IBAN, with its first four characters moved to the end and each letter
// replaced by its value A=10 … Z=35, read as a decimal number modulo 97. s holds only digits and
// upper-case letters.
func ibanMod97(s string) int {
	r := 0
	for i := range len(s) {
		c := s[(i+4)%len(s)]
		if c <= '9' {
			r = (r*10 + int(c-'0')) % 97
		} else {
			r = (r*100 + int(c-'A'+10)) % 97
		}
	}
	return r
}

// ribKeyValid checks the key of a French RIB (bank 5 digits, branch 5 digits, account 11
// characters, key 2 digits): key = 97 − (89·bank + 15·branch + 3·account) mod 97, where letters
// of the account number count as digits A,J→1 B,K,S→2 … I,R,Z→9.
func ribKeyValid(bban string) bool {
	num := func(s string) int64 {
		var n int64
		for i := range len(s) {
			c := s[i]
			var d byte
			switch {
			case c <= '9':
				d = c - '0'
			case c <= 'I':
				d = c - 'A' + 1
			case c <= 'R':
				d = c - 'J' + 1
			default:
				d = c - 'S' + 2
			}
			n = n*10 + int64(d)
		}
		return n
	}
	bank, branch, account, key := num(bban[:5]), num(bban[5:10]), num(bban[10:21]), num(bban[21:23])
	return key == 97-(89*bank+15*branch+3*account)%97
}
