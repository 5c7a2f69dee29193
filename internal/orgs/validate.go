package orgs

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/passnum/passnum/internal/fault"
	"github.com/passnum/passnum/internal/ident"
)

// textField describes a free-text field: its API name, the prefix of its fault reasons, how
// a French sentence names it, and its maximum length in characters.
type textField struct {
	name   string
	reason string
	label  string
	max    int
}

var (
	fieldName     = textField{"name", "NAME", "Le nom", 200}
	fieldExternal = textField{"external_id", "EXTERNAL_ID", "L'identifiant du lieu", 200}
	fieldLegalRep = textField{"legal_representative", "LEGAL_REPRESENTATIVE", "Le nom du représentant légal", 200}
	fieldCommune  = textField{"commune", "COMMUNE", "Le nom de la commune", 200}
	fieldAdresse  = textField{"adresse", "ADRESSE", "L'adresse", 300}
	fieldReason   = textField{"reason", "REASON", "Le motif", 500}
)

// Bounds of a site's catalogue of services.
const (
	maxServices    = 50
	maxServiceRune = 200
)

// clean trims s and checks it: no control characters (line breaks, tabulations), at most
// f.max characters, and not empty when required. An optional empty field returns "".
func (f textField) clean(s string, required bool) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		if required {
			return "", fault.New(fault.Invalid, f.reason+"_REQUIRED",
				f.label+" est obligatoire.", "field", f.name)
		}
		return "", nil
	}
	if !utf8.ValidString(s) || strings.ContainsFunc(s, unicode.IsControl) {
		return "", fault.New(fault.Invalid, f.reason+"_INVALID_CHARACTERS",
			f.label+" contient un caractère invisible (retour à la ligne, tabulation…) : retirez-le.",
			"field", f.name)
	}
	if n := utf8.RuneCountInString(s); n > f.max {
		return "", fault.New(fault.Invalid, f.reason+"_TOO_LONG",
			fmt.Sprintf("%s ne doit pas dépasser %d caractères (il en compte %d).", f.label, f.max, n),
			"field", f.name, "max", fmt.Sprint(f.max))
	}
	return s, nil
}

// serviceKey is how two service labels are compared: lower case, apostrophes unified, runs
// of spaces collapsed.
func serviceKey(s string) string {
	s = strings.ToLower(strings.Join(strings.Fields(s), " "))
	return apostrophes.Replace(s)
}

// apostrophes unifies the apostrophes of service labels. Built once: a Replacer is safe for
// concurrent use, and building one per label cost a redemption about 200 allocations.
var apostrophes = strings.NewReplacer("’", "'", "ʼ", "'", "‘", "'")

var nationalByKey = func() map[string]string {
	m := make(map[string]string, len(NationalServices))
	for _, l := range NationalServices {
		m[serviceKey(l)] = l
	}
	return m
}()

// normalizeServices cleans a catalogue of services: each label trimmed with its inner spaces
// collapsed, national labels in their national spelling, duplicates (up to case) dropped,
// empty labels skipped. The result must hold 1 to maxServices labels of at most
// maxServiceRune characters, without control characters or "|" (the separator of the
// national CSV format).
func normalizeServices(labels []string) ([]string, error) {
	var out []string
	seen := make(map[string]bool, len(labels))
	for _, l := range labels {
		l = strings.Join(strings.Fields(l), " ")
		if l == "" {
			continue
		}
		if !utf8.ValidString(l) || strings.ContainsFunc(l, unicode.IsControl) || strings.Contains(l, "|") {
			return nil, fault.New(fault.Invalid, "SERVICE_LABEL_INVALID",
				fmt.Sprintf("Le service « %s » contient un caractère interdit (barre verticale « | », retour à la ligne "+
					"ou tabulation) : séparez les services et retirez ces caractères.", truncate(l, 60)),
				"field", "services")
		}
		if n := utf8.RuneCountInString(l); n > maxServiceRune {
			return nil, fault.New(fault.Invalid, "SERVICE_LABEL_TOO_LONG",
				fmt.Sprintf("Le nom d'un service ne doit pas dépasser %d caractères (« %s… » en compte %d).",
					maxServiceRune, truncate(l, 40), n),
				"field", "services", "max", fmt.Sprint(maxServiceRune))
		}
		k := serviceKey(l)
		if seen[k] {
			continue
		}
		seen[k] = true
		if national, ok := nationalByKey[k]; ok {
			l = national
		}
		out = append(out, l)
	}
	if len(out) == 0 {
		return nil, fault.New(fault.Invalid, "SERVICES_REQUIRED",
			"Indiquez au moins un service proposé par le lieu, par exemple « Aide aux démarches administratives ».",
			"field", "services")
	}
	if len(out) > maxServices {
		return nil, fault.New(fault.Invalid, "SERVICES_TOO_MANY",
			fmt.Sprintf("Un lieu peut proposer au plus %d services (il y en a %d).", maxServices, len(out)),
			"field", "services", "max", fmt.Sprint(maxServices))
	}
	return out, nil
}

func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	return string([]rune(s)[:n])
}

// unknownSIRET is the placeholder the national data uses when a place's SIRET is unknown. It
// passes the Luhn check but names no establishment.
const unknownSIRET = "00000000000000"

// normalizeSIRET is ident.NormalizeSIRET, refusing the national data's "unknown" placeholder.
func normalizeSIRET(s string) (string, error) {
	v, err := ident.NormalizeSIRET(s)
	if err != nil {
		return "", err
	}
	if v == unknownSIRET {
		return "", fault.New(fault.Invalid, "SIRET_UNKNOWN",
			"Le SIRET 00000000000000 veut dire « SIRET inconnu » : indiquez le vrai numéro SIRET de la structure "+
				"(il figure sur annuaire-entreprises.data.gouv.fr).",
			"field", "siret")
	}
	return v, nil
}

// departementOfINSEE is the département of a normalised INSEE commune code: its first two
// characters, or three overseas (97x, 98x).
func departementOfINSEE(code string) string {
	if strings.HasPrefix(code, "97") || strings.HasPrefix(code, "98") {
		return code[:3]
	}
	return code[:2]
}

// departementOfPostalCode is the usual département of a normalised postal code: its first two
// digits, three overseas, and for Corsica (20xxx) 2A below 20200 and 2B from 20200. A few
// communes have the postal code of a neighbouring département, so the INSEE code is preferred
// whenever it is known.
func departementOfPostalCode(code string) string {
	switch {
	case strings.HasPrefix(code, "97"), strings.HasPrefix(code, "98"):
		return code[:3]
	case strings.HasPrefix(code, "20"):
		if code < "20200" {
			return "2A"
		}
		return "2B"
	}
	return code[:2]
}
