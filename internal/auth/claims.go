package auth

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// tokenClaims is the payload of a passnum token as the verifier decodes it. It implements
// jwt.Claims, so golang-jwt's validator still checks exp, nbf, iss and aud; it only
// replaces the decoding of the registered claims, which was half of the parser's cost:
// jwt.NumericDate goes through json.Number and a float for every date, and
// jwt.ClaimStrings through an `any`, each with a nested json.Unmarshal.
//
// golang-jwt decodes the payload before it checks the signature, so this is code that
// reads unauthenticated input: FuzzDecodeClaims compares it with the decoding it replaces
// (the RegisteredClaims-based mintClaims).
//
// What is accepted, compared with jwt.RegisteredClaims:
//
//   - exp, nbf, iat (numericDate): a JSON number of seconds since 1970, integer or not
//     (RFC 7519 allows fractions and exponents: 1.7e9 is accepted), rounded down to the
//     second as jwt.NumericDate did; null is the same as absent. Deliberately refused,
//     where NumericDate accepted them: a number in a string ("1700000000", an accident of
//     json.Number), a negative number, and anything after 9999-12-31T23:59:59Z (huge
//     values, which NumericDate silently wrapped to some other date). A refused date makes
//     the token malformed.
//   - aud: as jwt.ClaimStrings (a string or an array of strings); the one-audience forms
//     "x" and ["x"] are decoded without a nested json.Unmarshal.
//   - jti: must still be a string when present, but is not kept (nothing reads it).
//   - iss, sub, org, role: plain strings, as before.
//
// As with any struct, encoding/json matches member names case-insensitively and the last
// of duplicate members wins; that has not changed.
type tokenClaims struct {
	Issuer    string        `json:"iss"`
	Subject   string        `json:"sub"`
	Audience  audience      `json:"aud"`
	ExpiresAt numericDate   `json:"exp"`
	NotBefore numericDate   `json:"nbf"`
	IssuedAt  numericDate   `json:"iat"`
	ID        ignoredString `json:"jti"`
	Org       string        `json:"org"`
	Role      string        `json:"role"`
}

var _ jwt.Claims = (*tokenClaims)(nil)

// GetExpirationTime implements jwt.Claims.
func (c *tokenClaims) GetExpirationTime() (*jwt.NumericDate, error) { return c.ExpiresAt.get(), nil }

// GetNotBefore implements jwt.Claims.
func (c *tokenClaims) GetNotBefore() (*jwt.NumericDate, error) { return c.NotBefore.get(), nil }

// GetIssuedAt implements jwt.Claims.
func (c *tokenClaims) GetIssuedAt() (*jwt.NumericDate, error) { return c.IssuedAt.get(), nil }

// GetIssuer implements jwt.Claims.
func (c *tokenClaims) GetIssuer() (string, error) { return c.Issuer, nil }

// GetSubject implements jwt.Claims.
func (c *tokenClaims) GetSubject() (string, error) { return c.Subject, nil }

// GetAudience implements jwt.Claims.
func (c *tokenClaims) GetAudience() (jwt.ClaimStrings, error) {
	return jwt.ClaimStrings(c.Audience), nil
}

// maxNumericDate is the last second accepted in a date claim: 9999-12-31T23:59:59Z.
// Beyond it, time arithmetic (exp plus the leeway) is no longer trustworthy, and no real
// token needs it.
const maxNumericDate = 253402300799

// maxNumericDateDigits is the number of digits of maxNumericDate.
const maxNumericDateDigits = 12

// errBadDate marks the refusal of a date claim (FuzzDecodeClaims tells it from others).
var errBadDate = errors.New("date claim is not a number of seconds between 1970 and 9999")

// numericDate is a date claim, decoded without json.Number or reflection when it is a
// JSON integer (the only form passnum mints). It keeps a jwt.NumericDate so that the
// jwt.Claims getters return a pointer to it without allocating.
type numericDate struct {
	date jwt.NumericDate
	set  bool
}

func (d *numericDate) get() *jwt.NumericDate {
	if !d.set {
		return nil
	}
	return &d.date
}

// UnmarshalJSON implements json.Unmarshaler; see tokenClaims for what it accepts.
func (d *numericDate) UnmarshalJSON(b []byte) error {
	sec, present, err := parseNumericDate(b)
	if err != nil {
		return err
	}
	if !present {
		*d = numericDate{}
		return nil
	}
	*d = numericDate{date: jwt.NumericDate{Time: time.Unix(sec, 0)}, set: true}
	return nil
}

// parseNumericDate reads a JSON date value: null (absent), or a number of seconds in
// [0, maxNumericDate], rounded down. The error never quotes b: it comes from an
// unauthenticated token.
func parseNumericDate(b []byte) (sec int64, present bool, err error) {
	if string(b) == "null" {
		return 0, false, nil
	}
	n := 0
	for n < len(b) && '0' <= b[n] && b[n] <= '9' {
		n++
	}
	switch {
	case n == 0 && len(b) > 0 && b[0] == '-':
		return 0, false, fmt.Errorf("%w: negative", errBadDate)
	case n == 0:
		return 0, false, fmt.Errorf("%w: not a JSON number", errBadDate)
	case n > 1 && b[0] == '0':
		return 0, false, fmt.Errorf("%w: leading zero", errBadDate)
	case n == len(b): // a JSON integer: the fast path
		if n > maxNumericDateDigits {
			return 0, false, fmt.Errorf("%w: out of range", errBadDate)
		}
		for _, c := range b {
			sec = sec*10 + int64(c-'0')
		}
		if sec > maxNumericDate {
			return 0, false, fmt.Errorf("%w: out of range", errBadDate)
		}
		return sec, true, nil
	}
	// A fraction or an exponent: rare, so encoding/json checks the grammar and parses.
	var f float64
	if err := json.Unmarshal(b, &f); err != nil {
		return 0, false, fmt.Errorf("%w: not a JSON number", errBadDate)
	}
	if !(f >= 0 && f < maxNumericDate+1) {
		return 0, false, fmt.Errorf("%w: out of range", errBadDate)
	}
	return int64(f), true, nil // f ≥ 0: truncation rounds down
}

// audience is the aud claim. It decodes exactly as jwt.ClaimStrings, which it falls back
// to for anything but one plain string, alone or in an array.
type audience jwt.ClaimStrings

// UnmarshalJSON implements json.Unmarshaler.
func (a *audience) UnmarshalJSON(b []byte) error {
	s, ok := plainJSONString(b)
	if !ok && len(b) >= 2 && b[0] == '[' && b[len(b)-1] == ']' {
		s, ok = plainJSONString(b[1 : len(b)-1])
	}
	if ok {
		*a = audience{string(s)}
		return nil
	}
	return (*jwt.ClaimStrings)(a).UnmarshalJSON(b)
}

// plainJSONString returns the content of b if b is a JSON string of printable ASCII
// without escapes: the strings whose decoded value is their bytes as they stand.
func plainJSONString(b []byte) ([]byte, bool) {
	if len(b) < 2 || b[0] != '"' || b[len(b)-1] != '"' {
		return nil, false
	}
	s := b[1 : len(b)-1]
	for _, c := range s {
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return nil, false
		}
	}
	return s, true
}

// ignoredString accepts a JSON string or null and keeps nothing: for a claim that is not
// used but whose type was checked before.
type ignoredString struct{}

// UnmarshalJSON implements json.Unmarshaler. encoding/json has already checked that b is
// one valid JSON value.
func (*ignoredString) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' || string(b) == "null" {
		return nil
	}
	return errors.New("jti claim is not a string")
}
