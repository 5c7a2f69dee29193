package auth

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
)

// signRaw signs payload as it stands (duplicate members, odd number forms…).
func signRaw(k testKey, payload string) string {
	header := `{"alg":"EdDSA","kid":"` + k.kid + `","typ":"JWT"}`
	text := base64.RawURLEncoding.EncodeToString([]byte(header)) + "." +
		base64.RawURLEncoding.EncodeToString([]byte(payload))
	return text + "." + base64.RawURLEncoding.EncodeToString(ed25519.Sign(k.priv, []byte(text)))
}

// TestVerifyClaimForms pins what the claims decoder accepts and refuses, through the
// whole verifier so that the reasons callers see are checked too. "" means accepted.
func TestVerifyClaimForms(t *testing.T) {
	k := newTestKey(t)
	v := newVerifier(t, k)
	now := time.Now().Unix()
	future, past := now+3600, now-3600
	raw := func(name, value string) func(jwt.MapClaims) {
		return func(c jwt.MapClaims) {
			if value == "" {
				delete(c, name)
				return
			}
			c[name] = json.RawMessage(value)
		}
	}
	itoa := func(n int64) string { return strconv.FormatInt(n, 10) }
	cases := []struct {
		name   string
		edit   func(jwt.MapClaims)
		reason string
	}{
		{"exp integer", raw("exp", itoa(future)), ""},
		{"exp with a fraction", raw("exp", itoa(future)+".75"), ""},
		{"exp with an exponent", raw("exp", fmt.Sprintf("%.9e", float64(future))), ""},
		{"exp 1.7e9, in the past", raw("exp", "1.7e9"), ReasonTokenExpired},
		{"exp zero", raw("exp", "0"), ReasonTokenExpired},
		{"exp last second of 9999", raw("exp", "253402300799"), ""},
		{"exp after 9999", raw("exp", "253402300800"), ReasonTokenMalformed},
		{"exp huge integer", raw("exp", "99999999999999999999"), ReasonTokenMalformed},
		{"exp huge float", raw("exp", "1e300"), ReasonTokenMalformed},
		{"exp beyond float64", raw("exp", "1e400"), ReasonTokenMalformed},
		{"exp negative", raw("exp", "-1"), ReasonTokenMalformed},
		{"exp minus zero", raw("exp", "-0"), ReasonTokenMalformed},
		{"exp in a string", raw("exp", `"`+itoa(future)+`"`), ReasonTokenMalformed},
		{"exp null", raw("exp", "null"), ReasonTokenInvalid},
		{"exp missing", raw("exp", ""), ReasonTokenInvalid},
		{"exp true", raw("exp", "true"), ReasonTokenMalformed},
		{"exp array", raw("exp", "["+itoa(future)+"]"), ReasonTokenMalformed},
		{"exp object", raw("exp", `{"t":`+itoa(future)+`}`), ReasonTokenMalformed},
		{"nbf with a fraction", raw("nbf", itoa(past)+".5"), ""},
		{"nbf zero", raw("nbf", "0"), ""},
		{"nbf negative", raw("nbf", "-1"), ReasonTokenMalformed},
		{"nbf in a string", raw("nbf", `"`+itoa(past)+`"`), ReasonTokenMalformed},
		{"nbf null", raw("nbf", "null"), ReasonTokenInvalid},
		{"nbf in the future, with a fraction", raw("nbf", itoa(future)+".5"), ReasonTokenNotYetValid},
		{"iat missing", raw("iat", ""), ""},
		{"iat in a string", raw("iat", `"`+itoa(past)+`"`), ReasonTokenMalformed},
		{"iat negative", raw("iat", "-5"), ReasonTokenMalformed},
		{"aud a string", raw("aud", `"`+DefaultAudience+`"`), ""},
		{"aud among others", raw("aud", `["other-api", "`+DefaultAudience+`"]`), ""},
		{"aud escaped", raw("aud", `["passnum\u002dapi"]`), ""},
		{"aud with spaces", raw("aud", `[ "`+DefaultAudience+`" ]`), ""},
		{"aud and a non-ASCII one", raw("aud", `["`+DefaultAudience+`","médiation"]`), ""},
		{"aud null", raw("aud", "null"), ReasonTokenInvalid},
		{"aud empty string", raw("aud", `""`), ReasonTokenInvalid},
		{"aud empty array", raw("aud", "[]"), ReasonTokenInvalid},
		{"aud number", raw("aud", "42"), ReasonTokenMalformed},
		{"aud with a number", raw("aud", `["`+DefaultAudience+`",1]`), ReasonTokenMalformed},
		{"aud with a null", raw("aud", `["`+DefaultAudience+`",null]`), ReasonTokenMalformed},
		{"aud other, escaped quote", raw("aud", `"passnum-api\""`), ReasonTokenInvalid},
		{"jti string", raw("jti", `"abc"`), ""},
		{"jti null", raw("jti", "null"), ""},
		{"jti number", raw("jti", "42"), ReasonTokenMalformed},
		{"iss number", raw("iss", "42"), ReasonTokenMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := goodClaims()
			tc.edit(c)
			_, err := v.Verify(sign(t, k, c))
			if tc.reason == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			wantReason(t, err, tc.reason)
		})
	}

	// Duplicate members: the last one counts, as encoding/json has always done.
	body := func(exp1, exp2 int64) string {
		return fmt.Sprintf(`{"iss":%q,"aud":[%q],"sub":"alice","org":"0b8f4a52-51c4-4c55-9bb4-7d0ee4d3c1a2",`+
			`"role":"site","nbf":%d,"exp":%d,"exp":%d}`, DefaultIssuer, DefaultAudience, past, exp1, exp2)
	}
	_, err := v.Verify(signRaw(k, body(future, past)))
	wantReason(t, err, ReasonTokenExpired)
	if _, err := v.Verify(signRaw(k, body(past, future))); err != nil {
		t.Fatalf("last exp in the future refused: %v", err)
	}
}

func TestParseNumericDate(t *testing.T) {
	for _, tc := range []struct {
		in      string
		sec     int64
		present bool
		ok      bool
	}{
		{"null", 0, false, true},
		{"0", 0, true, true},
		{"7", 7, true, true},
		{"1700000000", 1700000000, true, true},
		{"1700000000.999", 1700000000, true, true},
		{"1.7e9", 1700000000, true, true},
		{"17E8", 1700000000, true, true},
		{"1700000000e-1", 170000000, true, true},
		{"0.5", 0, true, true},
		{"253402300799", maxNumericDate, true, true},
		{"253402300799.9", maxNumericDate, true, true},
		{"253402300800", 0, false, false},
		{"2.534023008e11", 0, false, false},
		{"1000000000000", 0, false, false},
		{"-1", 0, false, false},
		{"-0", 0, false, false},
		{"-0.0", 0, false, false},
		{"01", 0, false, false},
		{"00.5", 0, false, false},
		{"1.", 0, false, false},
		{".5", 0, false, false},
		{"1e", 0, false, false},
		{"+1", 0, false, false},
		{"0x10", 0, false, false},
		{"1_000", 0, false, false},
		{"Inf", 0, false, false},
		{"NaN", 0, false, false},
		{`"1700000000"`, 0, false, false},
		{"true", 0, false, false},
		{"[]", 0, false, false},
		{"", 0, false, false},
	} {
		sec, present, err := parseNumericDate([]byte(tc.in))
		if (err == nil) != tc.ok || sec != tc.sec || present != tc.present {
			t.Errorf("parseNumericDate(%q) = %d, %v, %v; want %d, %v, ok=%v", tc.in, sec, present, err, tc.sec, tc.present, tc.ok)
		}
		if err != nil && !errors.Is(err, errBadDate) {
			t.Errorf("parseNumericDate(%q): error %v is not errBadDate", tc.in, err)
		}
	}
}

// FuzzDecodeClaims compares tokenClaims with the decoding it replaced (mintClaims, built
// on jwt.RegisteredClaims). It must never accept a payload the old decoding refused, must
// read the same values from any payload both accept, and may refuse more only for the
// date forms it deliberately refuses (errBadDate).
func FuzzDecodeClaims(f *testing.F) {
	org := "0b8f4a52-51c4-4c55-9bb4-7d0ee4d3c1a2"
	for _, p := range []string{
		`{"iss":"passnum","sub":"alice","aud":["passnum-api"],"exp":1700003600,"nbf":1700000000,"iat":1700000000,"jti":"x","org":"` + org + `","role":"site"}`,
		`{"iss":"passnum","aud":"passnum-api","exp":1.7e9,"nbf":1700000000.5,"iat":null}`,
		`{"aud":["a","b"],"exp":"1700000000","nbf":-1,"iat":253402300800}`,
		`{"aud":["a\u0062",null],"exp":1e400,"jti":1}`,
		`{"aud":[ "x" ],"EXP":12,"exp":13,"Aud":"y","nbf":0.0000001}`,
		`{"aud":"é","exp":99999999999999999999,"nbf":01}`,
		`{"exp":{},"nbf":[],"aud":{}}`,
		`null`,
		`[]`,
	} {
		f.Add([]byte(p))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var got tokenClaims
		errNew := json.Unmarshal(data, &got)
		var ref mintClaims
		errOld := json.Unmarshal(data, &ref)
		switch {
		case errNew != nil && errOld != nil:
			return
		case errNew == nil && errOld != nil:
			t.Fatalf("accepted what RegisteredClaims refused (%v): %q", errOld, data)
		case errNew != nil:
			if !errors.Is(errNew, errBadDate) {
				t.Fatalf("refused (%v) what RegisteredClaims accepted, not for a date: %q", errNew, data)
			}
			return
		}
		sameDate := func(name string, d *numericDate, want *jwt.NumericDate) {
			if d.set != (want != nil) || d.set && !d.date.Equal(want.Time) {
				t.Fatalf("%s: got %v (set %v), RegisteredClaims %v: %q", name, d.date, d.set, want, data)
			}
		}
		sameDate("exp", &got.ExpiresAt, ref.ExpiresAt)
		sameDate("nbf", &got.NotBefore, ref.NotBefore)
		sameDate("iat", &got.IssuedAt, ref.IssuedAt)
		if got.Issuer != ref.Issuer || got.Subject != ref.Subject || got.Org != ref.Org || got.Role != ref.Role ||
			!slices.Equal(got.Audience, audience(ref.Audience)) {
			t.Fatalf("got %+v, RegisteredClaims %+v: %q", got, ref, data)
		}
		for _, d := range []*numericDate{&got.ExpiresAt, &got.NotBefore, &got.IssuedAt} {
			if d.set && (d.date.Unix() < 0 || d.date.Unix() > maxNumericDate || d.date.Nanosecond() != 0) {
				t.Fatalf("date %v outside [1970, 9999] or not whole seconds: %q", d.date, data)
			}
		}
	})
}

// BenchmarkDecodeClaims measures the payload decoding alone, the part of Verify this
// package controls, against the RegisteredClaims decoding it replaced.
func BenchmarkDecodeClaims(b *testing.B) {
	now := time.Now()
	payload, err := json.Marshal(mintClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer: DefaultIssuer, Subject: "bench", Audience: jwt.ClaimStrings{DefaultAudience},
			ExpiresAt: jwt.NewNumericDate(now.Add(time.Hour)), NotBefore: jwt.NewNumericDate(now),
			IssuedAt: jwt.NewNumericDate(now), ID: uuid.NewString(),
		},
		Org: uuid.NewString(), Role: string(RoleSite),
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Run("RegisteredClaims", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var c mintClaims
			if err := json.Unmarshal(payload, &c); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("tokenClaims", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var c tokenClaims
			if err := json.Unmarshal(payload, &c); err != nil {
				b.Fatal(err)
			}
		}
	})
}
