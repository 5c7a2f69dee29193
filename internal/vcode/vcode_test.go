package vcode

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/passnum/passnum/internal/fault"
)

// gfMul multiplies two elements of GF(32) = GF(2)[x]/(x⁵+x²+1): a carry-less product reduced by
// the polynomial. It is a reference independent of mulAlpha, used to check the package against
// the closed form in the package comment.
func gfMul(a, b byte) byte {
	var p uint16
	for i := range 5 {
		if b>>i&1 != 0 {
			p ^= uint16(a) << i
		}
	}
	for i := 8; i >= 5; i-- {
		if p>>i&1 != 0 {
			p ^= 0b100101 << (i - 5)
		}
	}
	return byte(p)
}

func gfPow(a byte, k int) byte {
	p := byte(1)
	for range k {
		p = gfMul(p, a)
	}
	return p
}

// symbols returns the 13 symbol values of a code's printed form.
func symbols(t testing.TB, s string) []byte {
	t.Helper()
	s = strings.ReplaceAll(strings.TrimPrefix(s, "PN-"), "-", "")
	out := make([]byte, len(s))
	for i := range len(s) {
		out[i] = byte(strings.IndexByte(alphabet, s[i]))
	}
	return out
}

func text(sym []byte) string {
	b := make([]byte, len(sym))
	for i, v := range sym {
		b[i] = alphabet[v]
	}
	return string(b)
}

func TestKnownCodes(t *testing.T) {
	// Pinned values: changing the alphabet, the field or the layout breaks every printed voucher.
	for _, tc := range []struct {
		code Code
		text string
	}{
		{0, "PN-0000-0000-0000-0"},
		{1, "PN-0000-0000-0001-2"},
		{1000000007, "PN-0000-00XS-NJG7-9"},
		{0x123456789ABCDEF, "PN-28T5-CY4T-QKFF-4"},
		{Max - 1, "PN-ZZZZ-ZZZZ-ZZZZ-R"},
	} {
		if got := tc.code.String(); got != tc.text {
			t.Errorf("Code(%d).String() = %q, want %q", tc.code, got, tc.text)
		}
		got, err := Parse(tc.text)
		if err != nil || got != tc.code {
			t.Errorf("Parse(%q) = %d, %v; want %d", tc.text, got, err, tc.code)
		}
	}
}

func TestStringOutOfRange(t *testing.T) {
	for _, c := range []Code{-1, Max, Max + 5} {
		if c.Valid() {
			t.Errorf("Code(%d).Valid() = true", c)
		}
		s := c.String()
		if _, err := Parse(s); err == nil {
			t.Errorf("Parse(%q) of out-of-range code succeeded", s)
		}
	}
}

// TestFieldAndQuasigroup checks the algebra the detection proof rests on, over every element.
func TestFieldAndQuasigroup(t *testing.T) {
	// α = 2 has order 31: α^k ≠ 1 for 0 < k < 31, α^31 = 1.
	for k := 1; k < 31; k++ {
		if gfPow(2, k) == 1 {
			t.Fatalf("α^%d = 1: α is not of order 31", k)
		}
	}
	if gfPow(2, 31) != 1 {
		t.Fatal("α^31 ≠ 1")
	}
	op := func(x, y byte) byte { return mulAlpha(x ^ y) }
	for x := range byte(32) {
		var row, col [32]bool
		for y := range byte(32) {
			row[op(x, y)] = true
			col[op(y, x)] = true
		}
		for v := range 32 {
			if !row[v] || !col[v] {
				t.Fatalf("x∘y is not a quasigroup: row or column %d misses %d", x, v)
			}
		}
		if op(x, x) != 0 {
			t.Fatalf("x∘x = %d for x = %d, want 0", op(x, x), x)
		}
	}
	// Total anti-symmetry: (c∘x)∘y = (c∘y)∘x implies x = y.
	for c := range byte(32) {
		for x := range byte(32) {
			for y := range byte(32) {
				if x != y && op(op(c, x), y) == op(op(c, y), x) {
					t.Fatalf("(%d∘%d)∘%d = (%d∘%d)∘%d", c, x, y, c, y, x)
				}
			}
		}
	}
}

// TestClosedForm checks that every printed code satisfies Σ α^(14−i)·sᵢ = 0.
func TestClosedForm(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 10000 {
		c := Code(rng.Int64N(int64(Max)))
		var sum byte
		for i, s := range symbols(t, c.String()) {
			sum ^= gfMul(gfPow(2, codeLen-i), s)
		}
		if sum != 0 {
			t.Fatalf("%s: weighted sum %d, want 0", c, sum)
		}
	}
}

// TestDetectsEverySingleErrorAndTransposition tries, for many random codes, every substitution
// of one symbol by another of the 32 (check symbol included) and every swap of two different
// symbols at any distance (adjacent ones included, and swaps with the check symbol).
func TestDetectsEverySingleErrorAndTransposition(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	codes := []Code{0, 1, Max - 1}
	for range 3000 {
		codes = append(codes, Code(rng.Int64N(int64(Max))))
	}
	mustFail := func(c Code, s, what string) {
		t.Helper()
		got, err := Parse(s)
		if !fault.Is(err, ReasonCheck) {
			t.Fatalf("%s: %s gives %q: Parse = %v, %v; want %s", c, what, s, got, err, ReasonCheck)
		}
	}
	substitutions, swaps := 0, 0
	for _, c := range codes {
		orig := symbols(t, c.String())
		sym := make([]byte, codeLen)
		for i := range codeLen {
			for v := range byte(32) {
				if v == orig[i] {
					continue
				}
				copy(sym, orig)
				sym[i] = v
				mustFail(c, text(sym), "substitution")
				substitutions++
			}
			for j := i + 1; j < codeLen; j++ {
				if orig[i] == orig[j] {
					continue
				}
				copy(sym, orig)
				sym[i], sym[j] = sym[j], sym[i]
				mustFail(c, text(sym), "transposition")
				swaps++
			}
		}
	}
	t.Logf("%d codes: %d substitutions and %d transpositions all detected", len(codes), substitutions, swaps)
}

func TestParse(t *testing.T) {
	const canon = "PN-28T5-CY4T-QKFF-4"
	const want = Code(0x123456789ABCDEF)
	ok := []struct{ name, in string }{
		{"canonical", canon},
		{"lower case", "pn-28t5-cy4t-qkff-4"},
		{"no prefix", "28T5-CY4T-QKFF-4"},
		{"no separators", "PN28T5CY4TQKFF4"},
		{"bare", "28t5cy4tqkff4"},
		{"spaces", "  PN 28T5 CY4T QKFF 4 "},
		{"dots", "PN.28T5.CY4T.QKFF.4"},
		{"mixed separators", "pn - 28t5.cy4t qkff-4"},
		{"tab and newline", "PN-28T5-CY4T\tQKFF-4\n"},
		{"no-break spaces", "PN\u00a028T5\u202fCY4T\u2009QKFF 4"},
		{"typographic dashes", "PN\u201328T5\u2014CY4T\u2212QKFF\u20104"},
		{"prefix with separator", "P N-28T5-CY4T-QKFF-4"},
	}
	for _, tc := range ok {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse(tc.in)
			if err != nil || got != want {
				t.Fatalf("Parse(%q) = %d, %v; want %d", tc.in, got, err, want)
			}
		})
	}

	// O, I and L are repaired to 0, 1 and 1 anywhere, check symbol included.
	repairs := []struct{ in, want string }{
		{"PN-OOOO-OOOO-OOOO-O", "PN-0000-0000-0000-0"},
		{"pn-oooo-oooo-oooi-2", "PN-0000-0000-0001-2"},
		{"PN-0000-0000-000L-2", "PN-0000-0000-0001-2"},
		{"PN-0000-0000-000l-2", "PN-0000-0000-0001-2"},
	}
	for _, tc := range repairs {
		got, err := Normalize(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("Normalize(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}

	// A code whose data starts with P and N, typed without its prefix, has 13 symbols and is read
	// as data, not as a prefix.
	pn := Code(uint64(strings.IndexByte(alphabet, 'P'))<<55 | uint64(strings.IndexByte(alphabet, 'N'))<<50 | 12345)
	bare := strings.ReplaceAll(strings.TrimPrefix(pn.String(), "PN-"), "-", "")
	if !strings.HasPrefix(bare, "PN") {
		t.Fatalf("test code %s does not start with PN", pn)
	}
	for _, in := range []string{bare, pn.String()} {
		if got, err := Parse(in); err != nil || got != pn {
			t.Errorf("Parse(%q) = %d, %v; want %d", in, got, err, pn)
		}
	}

	bad := []struct {
		name, in, reason string
	}{
		{"empty", "", ReasonLength},
		{"only separators", " - . ", ReasonLength},
		{"prefix only", "PN-", ReasonLength},
		{"one missing", "PN-28T5-CY4T-QKF-4", ReasonLength},
		{"check missing", "PN-28T5-CY4T-QKFF", ReasonLength},
		{"one extra", "PN-28T5-CY4T-QKFF0-4", ReasonLength},
		{"fifteen without prefix", "XX28T5CY4TQKFF4", ReasonLength},
		{"doubled prefix", "PN-PN-28T5-CY4T-QKFF-4", ReasonLength},
		{"very long", strings.Repeat("A", 1000), ReasonLength},
		{"letter U", "PN-28T5-CY4T-QKFU-4", ReasonCharacter},
		{"hash", "PN-28T5-CY4T-QKFF-#", ReasonCharacter},
		{"underscore", "PN_28T5_CY4T_QKFF_4", ReasonCharacter},
		{"accented letter", "PN-28T5-CY4T-QKFÉ-4", ReasonCharacter},
		{"Crockford mod-37 symbol", "PN-28T5-CY4T-QKFF-*", ReasonCharacter},
		{"control character", "PN-28T5-CY4T-QKFF-4\x00", ReasonCharacter},
		{"invalid UTF-8", "PN-28T5-CY4T-QKFF-\xff", ReasonCharacter},
		{"bad character before bad length", "PN-28#", ReasonCharacter},
		{"check symbol wrong", "PN-28T5-CY4T-QKFF-5", ReasonCheck},
		{"adjacent swap", "PN-82T5-CY4T-QKFF-4", ReasonCheck},
		{"swap with check", "PN-28T5-CY4T-QKF4-F", ReasonCheck},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse(tc.in)
			f, ok := fault.As(err)
			if !ok || f.Reason != tc.reason {
				t.Fatalf("Parse(%q) = %d, %v; want fault %s", tc.in, got, err, tc.reason)
			}
			if f.Kind != fault.Invalid || f.Message == "" {
				t.Fatalf("Parse(%q): fault %+v, want kind invalid with a message", tc.in, f)
			}
			if _, err := Normalize(tc.in); !fault.Is(err, tc.reason) {
				t.Fatalf("Normalize(%q) = %v, want %s", tc.in, err, tc.reason)
			}
		})
	}
}

func TestFaultMessages(t *testing.T) {
	_, err := Parse("PN-28T5-CY4T-QKFF-5")
	if f, _ := fault.As(err); f == nil || f.Message != "Le code saisi contient une erreur de frappe : vérifiez-le caractère par caractère." {
		t.Errorf("check fault = %v", err)
	}
	_, err = Parse("PN-28T5-CY4T-QKFU-4")
	if f, _ := fault.As(err); f == nil || !strings.Contains(f.Message, "V") || f.Metadata["character"] != "U" {
		t.Errorf("U fault = %v", err)
	}
	_, err = Parse("PN-28T5-CY4T-QKF#-4")
	if f, _ := fault.As(err); f == nil || !strings.Contains(f.Message, "« # »") || f.Metadata["character"] != "#" {
		t.Errorf("character fault = %v", err)
	}
	_, err = Parse("PN-28T5-CY4T-QKF-4")
	if f, _ := fault.As(err); f == nil || f.Metadata["length"] != "12" || f.Metadata["expected"] != "13" {
		t.Errorf("length fault = %v", err)
	}
}

func TestGenerate(t *testing.T) {
	for _, n := range []int{0, 1, 8191, 8192, 8193, 20000} {
		codes, err := Generate(n)
		if err != nil {
			t.Fatal(err)
		}
		if len(codes) != n {
			t.Fatalf("Generate(%d) returned %d codes", n, len(codes))
		}
		seen := make(map[Code]bool, n)
		var or Code
		for _, c := range codes {
			if !c.Valid() {
				t.Fatalf("Generate(%d): code %d out of range", n, c)
			}
			seen[c] = true
			or |= c
		}
		if len(seen) != n {
			t.Fatalf("Generate(%d): %d distinct codes", n, len(seen))
		}
		// With thousands of codes every one of the 60 bits is set somewhere.
		if n >= 1000 && or != Max-1 {
			t.Fatalf("Generate(%d): bits never set: %x", n, uint64(Max-1-or))
		}
	}
	if _, err := Generate(-1); err == nil {
		t.Fatal("Generate(-1) succeeded")
	}
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"PN-28T5-CY4T-QKFF-4", "pn 28t5 cy4t qkff 4", "PN-OOOO-OOOO-OOOO-O", "28T5CY4TQKFF4",
		"PN-28T5-CY4T-QKFU-4", "", "PN", "PN-PN-PN", "\u00a0\u2013", "\xff\xfe",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := Parse(s)
		n1, nerr := Normalize(s)
		if (err == nil) != (nerr == nil) {
			t.Fatalf("Parse and Normalize disagree on %q: %v, %v", s, err, nerr)
		}
		if err != nil {
			f, ok := fault.As(err)
			if !ok || f.Kind != fault.Invalid {
				t.Fatalf("Parse(%q): %v is not an invalid-input fault", s, err)
			}
			switch f.Reason {
			case ReasonLength, ReasonCharacter, ReasonCheck:
			default:
				t.Fatalf("Parse(%q): unexpected reason %s", s, f.Reason)
			}
			return
		}
		if !c.Valid() {
			t.Fatalf("Parse(%q) = %d, out of range", s, c)
		}
		if back, err := Parse(c.String()); err != nil || back != c {
			t.Fatalf("Parse(%q) = %d but Parse(%q) = %d, %v", s, c, c.String(), back, err)
		}
		if n1 != c.String() {
			t.Fatalf("Normalize(%q) = %q, want %q", s, n1, c.String())
		}
		if n2, err := Normalize(n1); err != nil || n2 != n1 {
			t.Fatalf("Normalize(Normalize(%q)) = %q, %v; want %q", s, n2, err, n1)
		}
	})
}

func FuzzRoundTrip(f *testing.F) {
	for _, x := range []uint64{0, 1, uint64(Max - 1), 0x123456789ABCDEF, ^uint64(0)} {
		f.Add(x)
	}
	f.Fuzz(func(t *testing.T, x uint64) {
		c := Code(x & mask)
		s := c.String()
		if len(s) != textLen {
			t.Fatalf("Code(%d).String() = %q, want %d characters", c, s, textLen)
		}
		got, err := Parse(s)
		if err != nil || got != c {
			t.Fatalf("Parse(%q) = %d, %v; want %d", s, got, err, c)
		}
		if got, err := Parse(strings.ToLower(s)); err != nil || got != c {
			t.Fatalf("Parse(lower %q) = %d, %v; want %d", s, got, err, c)
		}
	})
}

var sink Code

func BenchmarkParse(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		c, err := Parse("pn-28t5 cy4t-qkff-4")
		if err != nil {
			b.Fatal(err)
		}
		sink = c
	}
}

var sinkString string

func BenchmarkFormat(b *testing.B) {
	b.ReportAllocs()
	c := Code(0x123456789ABCDEF)
	for b.Loop() {
		sinkString = c.String()
	}
}

func BenchmarkGenerate(b *testing.B) {
	const n = 1_000_000
	b.ReportAllocs()
	b.SetBytes(8 * n)
	for b.Loop() {
		codes, err := Generate(n)
		if err != nil {
			b.Fatal(err)
		}
		sink = codes[n-1]
	}
}
