// Package vcode makes, formats and parses voucher codes.
//
// A voucher code is 60 bits that look random — drawn at random, or the keyed encryption of a
// voucher's place (keyed.go) — written as 12 Crockford base-32 characters followed by one
// check character, in groups that are easy to read aloud and type on a phone:
//
//	PN-7K3M-Q9TZ-4HXW-R
//
// The alphabet is Crockford's: the digits and the letters without I, L, O and U. People may
// type I or L for 1 and O for 0; Parse repairs those. U is never used (Crockford leaves it out)
// and is rejected with its own message.
//
// # Check character
//
// The check character comes from the same 32 symbols, so a printed code never contains a
// character that is hard to find on a phone keyboard or that a QR code in alphanumeric mode
// cannot hold. It is computed in the finite field GF(32) = GF(2)[x]/(x⁵+x²+1), where a symbol's
// 5-bit value is a field element, addition is XOR and α = x (the value 2) is multiplied by a
// shift and a conditional XOR. Running
//
//	r₀ = 0,  rᵢ = α·(rᵢ₋₁ ⊕ sᵢ)
//
// over the 12 data symbols s₁…s₁₂ gives r₁₂, which is the check symbol s₁₃. This is Damm's
// algorithm over the quasigroup x∘y = α·(x ⊕ y), which is totally anti-symmetric because α ≠ 1.
// Unrolled, a 13-symbol string is valid exactly when
//
//	Σᵢ α^(14−i)·sᵢ = 0   (i = 1…13, sums are XOR)
//
// so each position i carries the weight α^(14−i), one of α¹…α¹³. Because x⁵+x²+1 is
// irreducible and 31 is prime, α has multiplicative order 31, so these 13 weights are non-zero
// and pairwise distinct. Then:
//
//   - Changing one symbol sᵢ into sᵢ⊕e (e ≠ 0) changes the sum by α^(14−i)·e, and a product of
//     non-zero field elements is non-zero, so the error is always detected. This includes an
//     error in the check symbol itself.
//   - Swapping two different symbols a ≠ b at positions i < j changes the sum by
//     (α^(14−i) ⊕ α^(14−j))·(a ⊕ b) = α^(14−j)·(α^(j−i) ⊕ 1)·(a ⊕ b). Since 0 < j−i ≤ 12 < 31,
//     α^(j−i) ≠ 1, so all three factors are non-zero and the swap is detected. This covers
//     adjacent transpositions, transpositions with the check symbol, and swaps at any distance.
//
// A random wrong code is accepted with probability 1/32. Crockford's own mod-37 check would
// lower that to 1/37 but needs five extra symbols (*~$=U) that volunteers would have to find on
// a phone keyboard; the tests check the properties above exhaustively.
package vcode

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"unicode"
	"unicode/utf8"

	"github.com/passnum/passnum/internal/fault"
)

// Code is a voucher code: a value in [0, 2⁶⁰). It is an int64 so that it maps directly to the
// database's bigint column; every value in the range is a valid code, and values outside it
// (negative, or 2⁶⁰ and above) are never produced by Generate, a Key or Parse.
type Code int64

// Bits is the number of data bits in a code.
const Bits = 60

// Max is one more than the largest code.
const Max Code = 1 << Bits

const (
	dataLen  = Bits / 5    // 12 data symbols
	codeLen  = dataLen + 1 // plus the check symbol
	prefix   = "PN"        // printed before every code
	textLen  = len("PN-XXXX-XXXX-XXXX-C")
	mask     = uint64(1)<<Bits - 1 // low 60 bits
	poly     = 0b100101            // x⁵+x²+1
	maxInput = 64                  // longest significant input kept before giving up on length
)

// Fault reasons returned by Parse and Normalize.
const (
	ReasonLength    = "VOUCHER_CODE_LENGTH"
	ReasonCharacter = "VOUCHER_CODE_CHARACTER"
	ReasonCheck     = "VOUCHER_CODE_CHECK"
)

const alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

// decode maps an input byte to its symbol value, or to one of the negative markers below.
var decode = func() [256]int8 {
	var t [256]int8
	for i := range t {
		t[i] = invalid
	}
	for v, c := range []byte(alphabet) {
		t[c] = int8(v)
		t[c|0x20] = int8(v) // lower-case letter; a digit already has the 0x20 bit
	}
	t['O'], t['o'] = 0, 0
	t['I'], t['i'], t['L'], t['l'] = 1, 1, 1, 1
	t['U'], t['u'] = letterU, letterU
	for _, c := range []byte(" \t\n\v\f\r-.") {
		t[c] = separator
	}
	return t
}()

const (
	invalid   int8 = -1
	letterU   int8 = -2
	separator int8 = -3
)

// mulAlpha multiplies a field element by α.
func mulAlpha(r byte) byte {
	r <<= 1
	if r&0x20 != 0 {
		r ^= poly
	}
	return r
}

// check returns the check symbol value of the 60-bit value v.
func check(v uint64) byte {
	var r byte
	for i := dataLen - 1; i >= 0; i-- {
		r = mulAlpha(r ^ byte(v>>(5*i)&31))
	}
	return r
}

// Valid reports whether c is in the range of codes.
func (c Code) Valid() bool { return c >= 0 && c < Max }

// String returns the printed form PN-XXXX-XXXX-XXXX-C. A value outside the range of codes
// prints as vcode.Code(n), which Parse rejects.
func (c Code) String() string {
	if !c.Valid() {
		return fmt.Sprintf("vcode.Code(%d)", int64(c))
	}
	var b [textLen]byte
	return string(c.appendText(b[:0]))
}

func (c Code) appendText(b []byte) []byte {
	v := uint64(c)
	b = append(b, prefix...)
	for i := dataLen - 1; i >= 0; i-- {
		if i%4 == 3 {
			b = append(b, '-')
		}
		b = append(b, alphabet[v>>(5*i)&31])
	}
	return append(b, '-', alphabet[check(v)])
}

// Generate returns n random codes, reading the system's random source in large chunks. Books
// get keyed codes (keyed.go); drawn codes are what books ordered before keyed codes carry, and
// what the benchmark's baseline and the tests need (codes that no book holds, with high
// probability: they are not checked for uniqueness).
func Generate(n int) ([]Code, error) {
	if n < 0 {
		return nil, fmt.Errorf("vcode: negative count %d", n)
	}
	const chunk = 8192 // codes per read: 64 KiB
	codes := make([]Code, n)
	buf := make([]byte, 8*min(n, chunk))
	for done := 0; done < n; {
		k := min(n-done, chunk)
		b := buf[:8*k]
		if _, err := rand.Read(b); err != nil {
			return nil, fmt.Errorf("vcode: read random bits: %w", err)
		}
		for i := range k {
			codes[done+i] = Code(binary.LittleEndian.Uint64(b[8*i:]) & mask)
		}
		done += k
	}
	return codes, nil
}

// Parse reads a code as people type it: case does not matter; spaces, dashes and dots are
// ignored; the PN prefix is optional; O is read as 0 and I or L as 1. It fails with a fault of
// kind fault.Invalid and reason ReasonCharacter (a character that no code contains),
// ReasonLength (too few or too many characters) or ReasonCheck (a typing error that the check
// character caught).
func Parse(s string) (Code, error) {
	var sym [maxInput]int8
	n := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			i++
			switch v := decode[c]; v {
			case separator:
			case invalid:
				return 0, characterFault(rune(c))
			case letterU:
				return 0, fault.New(fault.Invalid, ReasonCharacter,
					"Le code ne contient jamais la lettre U : il s'agit sans doute d'un V.",
					"character", "U")
			default:
				if n < maxInput {
					sym[n] = v
				}
				n++
			}
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		if unicode.IsSpace(r) || unicode.Is(unicode.Pd, r) || r == '−' {
			continue
		}
		return 0, characterFault(r)
	}
	// Thirteen symbols are a code typed without its prefix, even if it starts with P and N.
	// Otherwise a leading PN is the prefix, and the length reported is the one after it.
	data := sym[:min(n, maxInput)]
	if n != codeLen && len(data) >= len(prefix) && data[0] == decode['P'] && data[1] == decode['N'] {
		data = data[len(prefix):]
		n -= len(prefix)
	}
	if n != codeLen {
		return 0, fault.New(fault.Invalid, ReasonLength,
			"Le code n'a pas le bon nombre de caractères : après « PN », un code compte 13 chiffres "+
				"ou lettres (PN-XXXX-XXXX-XXXX-X). Vérifiez qu'il n'en manque pas et qu'il n'y en a pas en trop.",
			"length", fmt.Sprint(n), "expected", fmt.Sprint(codeLen))
	}
	var v uint64
	for _, d := range data[:dataLen] {
		v = v<<5 | uint64(d)
	}
	if check(v) != byte(data[dataLen]) {
		return 0, fault.New(fault.Invalid, ReasonCheck,
			"Le code saisi contient une erreur de frappe : vérifiez-le caractère par caractère.")
	}
	return Code(v), nil
}

func characterFault(r rune) error {
	if r == utf8.RuneError || !unicode.IsPrint(r) {
		return fault.New(fault.Invalid, ReasonCharacter,
			"Le code contient un caractère invisible ou inconnu : retapez-le avec seulement des chiffres et des lettres.")
	}
	return fault.New(fault.Invalid, ReasonCharacter,
		fmt.Sprintf("Le code contient le caractère « %c », qui n'existe dans aucun code : "+
			"seuls les chiffres et les lettres sont utilisés.", r),
		"character", string(r))
}

// Normalize returns the canonical printed form of a code typed by a person, or the fault Parse
// reports.
func Normalize(s string) (string, error) {
	c, err := Parse(s)
	if err != nil {
		return "", err
	}
	return c.String(), nil
}
