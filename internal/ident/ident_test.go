package ident

import (
	"strings"
	"testing"

	"github.com/passnum/passnum/internal/fault"
)

// checkFault fails unless err is an invalid-input fault with the given reason and a message.
func checkFault(t *testing.T, call string, err error, reason string) {
	t.Helper()
	f, ok := fault.As(err)
	if !ok || f.Kind != fault.Invalid || f.Reason != reason || f.Message == "" {
		t.Errorf("%s = %v; want invalid fault %s", call, err, reason)
	}
}

func TestSIRET(t *testing.T) {
	valid := []struct{ in, want string }{
		{"11000101300017", "11000101300017"},                         // Services du Premier ministre
		{"110 014 016 00015", "11001401600015"},                      // Ministère de l'Intérieur
		{"130 026 032 00016", "13002603200016"},                      // ANCT
		{"732 829 320 00074", "73282932000074"},                      // INSEE's own example
		{"35600000000048", "35600000000048"},                         // La Poste head office: Luhn
		{"356000000 09075", "35600000009075"},                        // La Poste establishment: digit sum 35
		{"35600000049837", "35600000049837"},                         // digit sum 45, Luhn invalid
		{"\u00a0110\u202f001\u202f013\u00a000017", "11000101300017"}, // pasted with no-break spaces
	}
	for _, tc := range valid {
		got, err := NormalizeSIRET(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("NormalizeSIRET(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
		if err := ValidSIRET(tc.in); err != nil {
			t.Errorf("ValidSIRET(%q) = %v", tc.in, err)
		}
	}
	invalid := []struct{ in, reason string }{
		{"", ReasonSIRETFormat},
		{"1100010130001", ReasonSIRETFormat},   // 13 digits
		{"110001013000170", ReasonSIRETFormat}, // 15 digits
		{"1100010130001A", ReasonSIRETFormat},
		{"110-001-013-00017", ReasonSIRETFormat},
		{"11000101300018", ReasonSIRETChecksum}, // last digit changed
		{"11000110300017", ReasonSIRETChecksum}, // adjacent digits swapped
		{"73282932000075", ReasonSIRETChecksum},
		{"35600000000049", ReasonSIRETChecksum}, // near the head office, neither rule holds
		{"35600000009076", ReasonSIRETChecksum}, // La Poste digit sum 36
		{"35600000000113", ReasonSIRETChecksum}, // Luhn valid, but La Poste uses the digit sum (19)
	}
	for _, tc := range invalid {
		_, err := NormalizeSIRET(tc.in)
		checkFault(t, "NormalizeSIRET("+tc.in+")", err, tc.reason)
		if ValidSIRET(tc.in) == nil {
			t.Errorf("ValidSIRET(%q) = nil", tc.in)
		}
	}
}

func TestIBAN(t *testing.T) {
	valid := []struct{ in, want string }{
		{"FR14 2004 1010 0505 0001 3M02 606", "FR1420041010050500013M02606"},
		{"fr7630006000011234567890189", "FR7630006000011234567890189"},
		{"FR76 3000 1007 9412 3456 7890 185", "FR7630001007941234567890185"},
		{"MC58 1122 2000 0101 2345 6789 030", "MC5811222000010123456789030"},
		{"DE89 3704 0044 0532 0130 00", "DE89370400440532013000"},
		{"BE68 5390 0754 7034", "BE68539007547034"},
		{"ES91 2100 0418 4502 0005 1332", "ES9121000418450200051332"},
		{"IT60 X054 2811 1010 0000 0123 456", "IT60X0542811101000000123456"},
		{"LU28 0019 4006 4475 0000", "LU280019400644750000"},
		{"NL91 ABNA 0417 1643 00", "NL91ABNA0417164300"},
		{"PT50 0002 0123 1234 5678 9015 4", "PT50000201231234567890154"},
		{"GB29 NWBK 6016 1331 9268 19", "GB29NWBK60161331926819"},
		// French overseas codes with the French RIB layout (check digits and RIB key computed).
		{"GP0512345678900123456789A58", "GP0512345678900123456789A58"},
		{"MQ4512345678900123456789A58", "MQ4512345678900123456789A58"},
		{"RE3612345678900123456789A58", "RE3612345678900123456789A58"},
		{"GF3512345678900123456789A58", "GF3512345678900123456789A58"},
		{"YT2512345678900123456789A58", "YT2512345678900123456789A58"},
		{"NC7812345678900123456789A58", "NC7812345678900123456789A58"},
		{"PF5112345678900123456789A58", "PF5112345678900123456789A58"},
		{"PM3012345678900123456789A58", "PM3012345678900123456789A58"},
		{"DE02370400440000000024", "DE02370400440000000024"}, // smallest check digits
		{"DE98370400440000000042", "DE98370400440000000042"}, // largest check digits
	}
	for _, tc := range valid {
		got, err := NormalizeIBAN(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("NormalizeIBAN(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
		if err := ValidIBAN(tc.in); err != nil {
			t.Errorf("ValidIBAN(%q) = %v", tc.in, err)
		}
	}
	invalid := []struct{ in, reason string }{
		{"", ReasonIBANFormat},
		{"FR", ReasonIBANFormat},
		{"FRXX30006000011234567890189", ReasonIBANFormat},
		{"7630006000011234567890189FR", ReasonIBANFormat},
		{"FR76-3000-6000-0112-3456-7890-189", ReasonIBANCharacter},
		{"FR76 3000 6000 0112 3456 7890 18é", ReasonIBANCharacter},
		{"US64SVBKUS6S3300958879", ReasonIBANCountry},
		{"XK051212012345678906", ReasonIBANCountry},
		{"FR763000600001123456789018", ReasonIBANLength},
		{"FR76300060000112345678901890", ReasonIBANLength},
		{"DE8937040044053201300", ReasonIBANLength},
		{"FR7630006000011234567890188", ReasonIBANChecksum}, // one digit wrong
		{"FR7630006000011234567809189", ReasonIBANChecksum}, // two digits swapped
		{"FR1520041010050500013M02606", ReasonIBANChecksum},
		{"DE88370400440532013000", ReasonIBANChecksum},
		{"NL91ABNA0417164301", ReasonIBANChecksum},
		{"FR8420041010050500013M02607", ReasonIBANChecksum}, // mod 97 holds, RIB key wrong
		{"DE00370400440000000060", ReasonIBANChecksum},      // 00 ≡ 97 mod 97, never issued
		{"DE01370400440000000042", ReasonIBANChecksum},      // 01 ≡ 98
		{"DE99370400440000000024", ReasonIBANChecksum},      // 99 ≡ 02
		{"FR76300A6000011234567890189", ReasonIBANFormat},   // letter in a French bank code
	}
	for _, tc := range invalid {
		_, err := NormalizeIBAN(tc.in)
		checkFault(t, "NormalizeIBAN("+tc.in+")", err, tc.reason)
	}
	_, err := NormalizeIBAN("FR763000600001123456789018")
	if f, _ := fault.As(err); f == nil || f.Metadata["expected"] != "27" || f.Metadata["length"] != "26" ||
		!strings.Contains(f.Message, "27") {
		t.Errorf("length fault = %v", err)
	}
}

func TestFormatIBAN(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"FR7630006000011234567890189", "FR76 3000 6000 0112 3456 7890 189"},
		{"be68 5390 0754 7034", "BE68 5390 0754 7034"},
		{"NL91ABNA0417164300", "NL91 ABNA 0417 1643 00"},
		{"", ""},
		{"FR7", "FR7"},
	} {
		if got := FormatIBAN(tc.in); got != tc.want {
			t.Errorf("FormatIBAN(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestBIC(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"BNPAFRPP", "BNPAFRPP"},
		{"bnpafrppxxx", "BNPAFRPPXXX"},
		{"CEPA FR PP 751", "CEPAFRPP751"},
		{"PSSTFRPPPAR", "PSSTFRPPPAR"},
		{"DEUTDEFF", "DEUTDEFF"},
		{"AGRIFRPP882", "AGRIFRPP882"},
		{"BDFEFRPPCCT", "BDFEFRPPCCT"}, // Banque de France, Trésor public accounts
		{"NWBKGB2L", "NWBKGB2L"},
		{"ABCDFR20", "ABCDFR20"}, // location may be digits from 2, then 0 to 9
		{"ABCDFRP9ABC", "ABCDFRP9ABC"},
	} {
		got, err := NormalizeBIC(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("NormalizeBIC(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
		if err := ValidBIC(tc.in); err != nil {
			t.Errorf("ValidBIC(%q) = %v", tc.in, err)
		}
	}
	for _, in := range []string{
		"", "BNPAFRP", "BNPAFRPPX", "BNPAFRPPXX", "BNPAFRPPXXXX", "BNP1FRPP", "BNPAF1PP",
		"BNPA-FR-PP", "BNPAFRPÉ", "12345678",
		"BNPAFR0P", "BNPAFR1P", "BNPAFRPO", // test BIC location codes, O for zero
	} {
		checkFault(t, "NormalizeBIC("+in+")", ValidBIC(in), ReasonBICFormat)
	}
}

func TestDepartement(t *testing.T) {
	valid := []string{"01", "09", "19", "21", "2A", "2b", " 75 ", "95", "971", "972", "973", "974", "975",
		"976", "977", "978", "986", "987", "988"}
	for _, in := range valid {
		got, err := NormalizeDepartement(in)
		if err != nil || got != strings.ToUpper(strings.TrimSpace(in)) {
			t.Errorf("NormalizeDepartement(%q) = %q, %v", in, got, err)
		}
	}
	invalid := []string{"", "0", "1", "00", "20", "2C", "96", "97", "98", "99", "100", "970", "979",
		"980", "984", "985", "989", "9710", "A1", "001"}
	for _, in := range invalid {
		checkFault(t, "ValidDepartement("+in+")", ValidDepartement(in), ReasonDepartement)
	}
}

func TestINSEE(t *testing.T) {
	valid := map[string]string{
		"75056":  "75056", // Paris
		"75101":  "75101", // Paris 1er arrondissement
		"01001":  "01001", // L'Abergement-Clémenciat
		"2A004":  "2A004", // Ajaccio
		"2b033":  "2B033", // Bastia
		"13055":  "13055", // Marseille
		"97411":  "97411", // Saint-Denis (La Réunion)
		"97101":  "97101", // Les Abymes
		"97611":  "97611", // Mamoudzou
		"97502":  "97502", // Saint-Pierre
		"97701":  "97701", // Saint-Barthélemy
		"97801":  "97801", // Saint-Martin
		"98818":  "98818", // Nouméa
		"98735":  "98735", // Papeete
		"98613":  "98613", // Wallis-et-Futuna
		"26 362": "26362", // Valence
	}
	for in, want := range valid {
		got, err := NormalizeINSEE(in)
		if err != nil || got != want {
			t.Errorf("NormalizeINSEE(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	invalid := []string{"", "7505", "750560", "20004", "2C004", "00001", "96001", "75000", "97400",
		"97911", "98411", "98011", "9741A", "7505A", "2A00B", "75 05"}
	for _, in := range invalid {
		checkFault(t, "ValidINSEE("+in+")", ValidINSEE(in), ReasonINSEE)
	}
}

func TestPostalCode(t *testing.T) {
	valid := []string{"01000", "75001", "20000", "20090", "2 0 2 0 0", "69002", "95000", "97100", "97133",
		"97150", "97200", "97300", "97400", "97500", "97600", "98600", "98714", "98800"}
	for _, in := range valid {
		got, err := NormalizePostalCode(in)
		if err != nil || got != strings.ReplaceAll(in, " ", "") {
			t.Errorf("NormalizePostalCode(%q) = %q, %v", in, got, err)
		}
	}
	invalid := []string{"", "1000", "750001", "00100", "96000", "97000", "97700", "97800", "98000",
		"98400", "99000", "2A000", "7500A"}
	for _, in := range invalid {
		checkFault(t, "ValidPostalCode("+in+")", ValidPostalCode(in), ReasonPostalCode)
	}
}

func FuzzIBAN(f *testing.F) {
	for _, s := range []string{
		"FR76 3000 6000 0112 3456 7890 189", "FR1420041010050500013M02606", "de89370400440532013000",
		"", "FR", "FR00", "ZZ99", "FR76\u00a03000", "\xff",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := NormalizeIBAN(s)
		if err != nil {
			if _, ok := fault.As(err); !ok {
				t.Fatalf("NormalizeIBAN(%q): %v is not a fault", s, err)
			}
			return
		}
		if n2, err := NormalizeIBAN(n); err != nil || n2 != n {
			t.Fatalf("NormalizeIBAN(%q) = %q, but normalising again gives %q, %v", s, n, n2, err)
		}
		if n3, err := NormalizeIBAN(FormatIBAN(n)); err != nil || n3 != n {
			t.Fatalf("NormalizeIBAN(FormatIBAN(%q)) = %q, %v", n, n3, err)
		}
	})
}

func FuzzSIRET(f *testing.F) {
	for _, s := range []string{"11000101300017", "356 000 000 09075", "", "1", "\u00a0", "\xff"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := NormalizeSIRET(s)
		if err != nil {
			if _, ok := fault.As(err); !ok {
				t.Fatalf("NormalizeSIRET(%q): %v is not a fault", s, err)
			}
			return
		}
		if n2, err := NormalizeSIRET(n); err != nil || n2 != n {
			t.Fatalf("NormalizeSIRET(%q) = %q, but normalising again gives %q, %v", s, n, n2, err)
		}
	})
}

func TestCompleteSIRET(t *testing.T) {
	for _, body := range []string{"0000000000000", "1300252650001", "7123456789012", "9999999999999"} {
		s := CompleteSIRET(body)
		if len(s) != 14 || s[:13] != body {
			t.Fatalf("CompleteSIRET(%s) = %s", body, s)
		}
		if err := ValidSIRET(s); err != nil {
			t.Errorf("CompleteSIRET(%s) = %s, invalid: %v", body, s, err)
		}
	}
}
