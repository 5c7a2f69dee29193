package ident

// Fault reasons for territory codes.
const (
	ReasonDepartement = "DEPARTEMENT_CODE"
	ReasonINSEE       = "INSEE_CODE"
	ReasonPostalCode  = "POSTAL_CODE"
)

// overseas lists the three-digit territory codes of the INSEE Code officiel géographique that
// passnum accepts as départements. 971 Guadeloupe, 972 Martinique, 973 Guyane, 974 La Réunion
// and 976 Mayotte are départements. The collectivités d'outre-mer 975 Saint-Pierre-et-Miquelon,
// 977 Saint-Barthélemy, 978 Saint-Martin, 986 Wallis-et-Futuna, 987 Polynésie française and
// 988 Nouvelle-Calédonie are accepted too: their communes carry INSEE codes under these prefixes
// and a programme may be restricted to them. 984 (TAAF) and 989 (Clipperton) have no
// inhabitants and are refused.
var overseas = map[string]bool{
	"971": true, "972": true, "973": true, "974": true, "975": true, "976": true,
	"977": true, "978": true, "986": true, "987": true, "988": true,
}

// metropolitan reports whether s is a two-character département code: 01 to 95 except 20,
// which became 2A and 2B in 1976.
func metropolitan(s string) bool {
	if s == "2A" || s == "2B" {
		return true
	}
	return len(s) == 2 && allDigits(s) && s != "00" && s != "20" && s <= "95"
}

// NormalizeDepartement returns a département code without spaces and in upper case: 01 to 95
// (20 excluded), 2A, 2B, or a three-digit overseas code (see the overseas list: 971 to 976 and
// the collectivités 975, 977, 978, 986, 987, 988).
func NormalizeDepartement(s string) (string, error) {
	s = stripSpaces(s)
	if !metropolitan(s) && !overseas[s] {
		return "", invalid(ReasonDepartement,
			"Ce code de département n'existe pas : utilisez deux chiffres de 01 à 95, 2A ou 2B pour la Corse, "+
				"ou trois chiffres outre-mer (971 Guadeloupe à 976 Mayotte).",
			"field", "departement")
	}
	return s, nil
}

// ValidDepartement reports whether NormalizeDepartement accepts s.
func ValidDepartement(s string) error {
	_, err := NormalizeDepartement(s)
	return err
}

// NormalizeINSEE returns an INSEE commune code (code officiel géographique) without spaces and
// in upper case: a département code (two characters, 2A and 2B included) followed by a 3-digit
// commune number, or an overseas three-digit code followed by 2 digits. Commune numbers start
// at 001 (01 overseas).
func NormalizeINSEE(s string) (string, error) {
	s = stripSpaces(s)
	if !validINSEE(s) {
		return "", invalid(ReasonINSEE,
			"Ce code commune Insee n'existe pas : il compte 5 caractères, le département puis le numéro "+
				"de la commune (par exemple 75056 pour Paris, 2A004 pour Ajaccio, 97411 pour Saint-Denis de La Réunion). "+
				"Attention, ce n'est pas le code postal.",
			"field", "code_insee")
	}
	return s, nil
}

func validINSEE(s string) bool {
	if len(s) != 5 {
		return false
	}
	if s[:2] == "97" || s[:2] == "98" {
		return overseas[s[:3]] && allDigits(s[3:]) && s[3:] != "00"
	}
	return metropolitan(s[:2]) && allDigits(s[2:]) && s[2:] != "000"
}

// ValidINSEE reports whether NormalizeINSEE accepts s.
func ValidINSEE(s string) error {
	_, err := NormalizeINSEE(s)
	return err
}

// NormalizePostalCode returns a French postal code without spaces: 5 digits starting with 01 to
// 95 (Corsica keeps 20) or with an overseas prefix 971 to 976 (Saint-Barthélemy and Saint-Martin
// use 971, Saint-Pierre-et-Miquelon 975) or 986 to 988. Monaco's 980 codes are not French.
func NormalizePostalCode(s string) (string, error) {
	s = stripSpaces(s)
	ok := len(s) == 5 && allDigits(s)
	if ok {
		switch s[:2] {
		case "00", "96", "99":
			ok = false
		case "97", "98":
			ok = overseas[s[:3]] && s[:3] != "977" && s[:3] != "978"
		}
	}
	if !ok {
		return "", invalid(ReasonPostalCode,
			"Ce code postal n'existe pas : il compte 5 chiffres, par exemple 01000 ou 97400. "+
				"S'il commence par 0, vérifiez que le tableur n'a pas supprimé ce zéro.",
			"field", "code_postal")
	}
	return s, nil
}

// ValidPostalCode reports whether NormalizePostalCode accepts s.
func ValidPostalCode(s string) error {
	_, err := NormalizePostalCode(s)
	return err
}
