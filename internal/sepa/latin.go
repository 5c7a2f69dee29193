package sepa

import (
	"strings"
	"unicode"
)

// The SEPA character set (EPC guidelines, "Latin character set"): the only characters every
// bank in the chain must carry.
func sepaChar(c rune) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.ContainsRune("/-?:().,'+ ", c)
}

// fold maps the characters French (and most European) names contain to SEPA characters.
var fold = func() map[rune]string {
	m := map[rune]string{
		'Æ': "AE", 'æ': "ae", 'Œ': "OE", 'œ': "oe", 'ß': "ss", 'Þ': "TH", 'þ': "th",
		'Ĳ': "IJ", 'ĳ': "ij", 'ª': "a", 'º': "o", '°': "o", '€': "EUR", '&': "+", '_': "-",
		';': ",", '!': ".", '«': "", '»': "", '"': "", '“': "", '”': "", '„': "",
	}
	for _, group := range []struct{ from, to string }{
		{"ÀÁÂÃÄÅĀĂĄǍ", "A"}, {"àáâãäåāăąǎ", "a"},
		{"ÇĆĈĊČ", "C"}, {"çćĉċč", "c"},
		{"ĎĐÐ", "D"}, {"ďđð", "d"},
		{"ÈÉÊËĒĔĖĘĚ", "E"}, {"èéêëēĕėęě", "e"},
		{"ĜĞĠĢ", "G"}, {"ĝğġģ", "g"},
		{"ĤĦ", "H"}, {"ĥħ", "h"},
		{"ÌÍÎÏĨĪĬĮİ", "I"}, {"ìíîïĩīĭįı", "i"},
		{"Ĵ", "J"}, {"ĵ", "j"}, {"Ķ", "K"}, {"ķ", "k"},
		{"ĹĻĽĿŁ", "L"}, {"ĺļľŀł", "l"},
		{"ÑŃŅŇ", "N"}, {"ñńņň", "n"},
		{"ÒÓÔÕÖØŌŎŐ", "O"}, {"òóôõöøōŏő", "o"},
		{"ŔŖŘ", "R"}, {"ŕŗř", "r"},
		{"ŚŜŞŠȘ", "S"}, {"śŝşšș", "s"},
		{"ŢŤŦȚ", "T"}, {"ţťŧț", "t"},
		{"ÙÚÛÜŨŪŬŮŰŲ", "U"}, {"ùúûüũūŭůűų", "u"},
		{"Ŵ", "W"}, {"ŵ", "w"},
		{"ÝŶŸ", "Y"}, {"ýÿŷ", "y"},
		{"ŹŻŽ", "Z"}, {"źżž", "z"},
		{"’‘‚‛′`´", "'"},
		{"‐‑‒–—―−", "-"},
	} {
		for _, r := range group.from {
			m[r] = group.to
		}
	}
	return m
}()

// latin returns free text (a name, a remittance line) in the SEPA character set: accented
// letters lose their accents, typographic quotes and dashes become plain ones, other characters
// become spaces; runs of spaces collapse to one and the ends are trimmed.
func latin(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	space := false
	emit := func(t string) {
		for _, c := range t {
			if c == ' ' {
				space = b.Len() > 0
				continue
			}
			if space {
				b.WriteByte(' ')
				space = false
			}
			b.WriteRune(c)
		}
	}
	for _, c := range s {
		switch t, ok := fold[c]; {
		case ok:
			emit(t)
		case sepaChar(c):
			emit(string(c))
		case unicode.IsMark(c):
			// A combining accent typed after its letter (decomposed text): drop it.
		default:
			emit(" ")
		}
	}
	return b.String()
}

// validID reports whether s can be a SEPA reference: 1 to 35 SEPA characters without spaces,
// not starting or ending with '/' and without "//" (EPC rule for identifiers).
func validID(s string) bool {
	if len(s) == 0 || len(s) > 35 || s[0] == '/' || s[len(s)-1] == '/' || strings.Contains(s, "//") {
		return false
	}
	for _, c := range s {
		if c == ' ' || !sepaChar(c) {
			return false
		}
	}
	return true
}
