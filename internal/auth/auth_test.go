package auth

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"github.com/passnum/passnum/internal/fault"
)

type testKey struct {
	priv ed25519.PrivateKey
	pub  ed25519.PublicKey
	kid  string
}

func newTestKey(t testing.TB) testKey {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return testKey{priv: priv, pub: pub, kid: KeyID(pub)}
}

func newVerifier(t testing.TB, keys ...testKey) *Verifier {
	t.Helper()
	pks := make([]PublicKey, len(keys))
	for i, k := range keys {
		pks[i] = PublicKey{KID: k.kid, Key: k.pub}
	}
	ks, err := NewKeySet(pks...)
	if err != nil {
		t.Fatal(err)
	}
	return NewVerifier(ks, DefaultIssuer, DefaultAudience)
}

// goodClaims returns the claims of a valid token; tests delete or change entries.
func goodClaims() jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{
		"iss":  DefaultIssuer,
		"aud":  []string{DefaultAudience},
		"sub":  "alice",
		"org":  "0b8f4a52-51c4-4c55-9bb4-7d0ee4d3c1a2",
		"role": "site",
		"nbf":  now.Add(-time.Minute).Unix(),
		"iat":  now.Add(-time.Minute).Unix(),
		"exp":  now.Add(time.Hour).Unix(),
	}
}

func sign(t testing.TB, k testKey, c jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, c)
	tok.Header["kid"] = k.kid
	s, err := tok.SignedString(k.priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func wantReason(t *testing.T, err error, reason string) {
	t.Helper()
	if err == nil {
		t.Fatalf("accepted, want %s", reason)
	}
	f, ok := fault.As(err)
	if !ok {
		t.Fatalf("error %v is not a fault", err)
	}
	if f.Kind != fault.Unauthenticated || f.Reason != reason {
		t.Fatalf("got %s/%s (%v), want unauthenticated/%s", f.Kind, f.Reason, err, reason)
	}
	if f.Message == "" {
		t.Fatal("fault has no message for people")
	}
}

func TestMintVerify(t *testing.T) {
	k := newTestKey(t)
	v := newVerifier(t, k)
	p := Principal{Subject: "alice", Org: uuid.New(), Role: RoleDistributor}
	tok, err := NewMinter(k.priv, k.kid, DefaultIssuer, DefaultAudience).Mint(p, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	got, err := v.VerifyAuthorization("Bearer " + tok)
	if err != nil {
		t.Fatal(err)
	}
	if got != p {
		t.Fatalf("got %+v, want %+v", got, p)
	}
	// The scheme is case-insensitive (RFC 7235).
	if _, err := v.VerifyAuthorization("bearer " + tok); err != nil {
		t.Fatal(err)
	}
}

func TestMintRefusesBadPrincipal(t *testing.T) {
	k := newTestKey(t)
	m := NewMinter(k.priv, k.kid, DefaultIssuer, DefaultAudience)
	for name, tc := range map[string]struct {
		p   Principal
		ttl time.Duration
	}{
		"no subject": {Principal{Org: uuid.New(), Role: RoleSite}, time.Hour},
		"nil org":    {Principal{Subject: "a", Role: RoleSite}, time.Hour},
		"bad role":   {Principal{Subject: "a", Org: uuid.New(), Role: "admin"}, time.Hour},
		"zero ttl":   {Principal{Subject: "a", Org: uuid.New(), Role: RoleSite}, 0},
	} {
		if _, err := m.Mint(tc.p, tc.ttl); err == nil {
			t.Errorf("%s: minted", name)
		}
	}
}

func TestRotation(t *testing.T) {
	old, cur := newTestKey(t), newTestKey(t)
	v := newVerifier(t, old, cur)
	for _, k := range []testKey{old, cur} {
		if _, err := v.Verify(sign(t, k, goodClaims())); err != nil {
			t.Fatalf("key %s: %v", k.kid, err)
		}
	}
}

func TestVerifyRejects(t *testing.T) {
	k := newTestKey(t)
	v := newVerifier(t, k)
	now := time.Now()
	with := func(edit func(jwt.MapClaims)) string {
		c := goodClaims()
		edit(c)
		return sign(t, k, c)
	}
	other := newTestKey(t)
	impostor := testKey{priv: other.priv, pub: other.pub, kid: k.kid} // trusted kid, other key

	noneTok, err := jwt.NewWithClaims(jwt.SigningMethodNone, goodClaims()).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	// Key confusion: HS256 with the public key bytes as the HMAC secret. A verifier that
	// let the token choose the algorithm would accept it.
	hs := jwt.NewWithClaims(jwt.SigningMethodHS256, goodClaims())
	hs.Header["kid"] = k.kid
	hsTok, err := hs.SignedString([]byte(k.pub))
	if err != nil {
		t.Fatal(err)
	}
	noKid := jwt.NewWithClaims(jwt.SigningMethodEdDSA, goodClaims())
	noKidTok, err := noKid.SignedString(k.priv)
	if err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name, token, reason string
	}{
		{"expired", with(func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Minute).Unix() }), ReasonTokenExpired},
		{"nbf in the future", with(func(c jwt.MapClaims) { c["nbf"] = now.Add(5 * time.Minute).Unix() }), ReasonTokenNotYetValid},
		{"missing exp", with(func(c jwt.MapClaims) { delete(c, "exp") }), ReasonTokenInvalid},
		{"missing nbf", with(func(c jwt.MapClaims) { delete(c, "nbf") }), ReasonTokenInvalid},
		{"missing iss", with(func(c jwt.MapClaims) { delete(c, "iss") }), ReasonTokenInvalid},
		{"missing aud", with(func(c jwt.MapClaims) { delete(c, "aud") }), ReasonTokenInvalid},
		{"wrong iss", with(func(c jwt.MapClaims) { c["iss"] = "someone-else" }), ReasonTokenInvalid},
		{"wrong aud", with(func(c jwt.MapClaims) { c["aud"] = []string{"other-api"} }), ReasonTokenInvalid},
		{"missing sub", with(func(c jwt.MapClaims) { delete(c, "sub") }), ReasonTokenClaimsInvalid},
		{"garbage org", with(func(c jwt.MapClaims) { c["org"] = "not-a-uuid" }), ReasonTokenClaimsInvalid},
		{"braced org", with(func(c jwt.MapClaims) { c["org"] = "{0b8f4a52-51c4-4c55-9bb4-7d0ee4d3c1a2}" }), ReasonTokenClaimsInvalid},
		{"nil org", with(func(c jwt.MapClaims) { c["org"] = uuid.Nil.String() }), ReasonTokenClaimsInvalid},
		{"numeric org", with(func(c jwt.MapClaims) { c["org"] = 42 }), ReasonTokenMalformed},
		{"unknown role", with(func(c jwt.MapClaims) { c["role"] = "admin" }), ReasonTokenClaimsInvalid},
		{"missing role", with(func(c jwt.MapClaims) { delete(c, "role") }), ReasonTokenClaimsInvalid},
		{"unknown kid", sign(t, testKey{priv: other.priv, kid: other.kid}, goodClaims()), ReasonTokenUnknownKey},
		{"no kid", noKidTok, ReasonTokenUnknownKey},
		{"signed by another key", sign(t, impostor, goodClaims()), ReasonTokenInvalid},
		{"alg none", noneTok, ReasonTokenInvalid},
		{"HS256 with public key", hsTok, ReasonTokenInvalid},
		{"two parts", "abc.def", ReasonTokenMalformed},
		{"four parts", "a.b.c.d", ReasonTokenMalformed},
		{"empty parts", "..", ReasonTokenMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := v.VerifyAuthorization("Bearer " + tc.token)
			wantReason(t, err, tc.reason)
		})
	}
}

func TestVerifyWithinLeeway(t *testing.T) {
	k := newTestKey(t)
	v := newVerifier(t, k)
	now := time.Now()
	c := goodClaims()
	c["exp"] = now.Add(-10 * time.Second).Unix()
	c["nbf"] = now.Add(10 * time.Second).Unix()
	if _, err := v.Verify(sign(t, k, c)); err != nil {
		t.Fatalf("token within the %s leeway refused: %v", Leeway, err)
	}
}

func TestAuthorizationHeaderShape(t *testing.T) {
	k := newTestKey(t)
	v := newVerifier(t, k)
	tok := sign(t, k, goodClaims())
	for _, tc := range []struct{ header, reason string }{
		{"", ReasonTokenMissing},
		{"Basic " + base64.StdEncoding.EncodeToString([]byte("a:b")), ReasonTokenMalformed},
		{tok, ReasonTokenMalformed},
		{"Bearer", ReasonTokenMalformed},
		{"Bearer ", ReasonTokenMalformed},
	} {
		_, err := v.VerifyAuthorization(tc.header)
		wantReason(t, err, tc.reason)
	}
}

// A megabyte of junk full of dots must be refused on its length alone: constant work and
// no allocation whatever its size.
func TestJunkHeaderRefusedCheaply(t *testing.T) {
	v := newVerifier(t, newTestKey(t))
	huge := "Bearer " + strings.Repeat("a.", 1<<19)
	_, err := v.VerifyAuthorization(huge)
	wantReason(t, err, ReasonTokenTooLarge)

	// Just under the limit, still junk: refused by the dot count, before base64 or JSON.
	under := "Bearer " + strings.Repeat(".", MaxAuthorizationBytes-len("Bearer "))
	_, err = v.VerifyAuthorization(under)
	wantReason(t, err, ReasonTokenMalformed)

	for name, h := range map[string]string{"1 MiB": huge, "8 KiB of dots": under} {
		allocs := testing.AllocsPerRun(100, func() { _, _ = v.VerifyAuthorization(h) })
		if allocs != 0 {
			t.Errorf("%s: %.0f allocations per refusal, want none", name, allocs)
		}
	}
	start := time.Now()
	for range 1000 {
		_, _ = v.VerifyAuthorization(huge)
	}
	if per := time.Since(start) / 1000; per > time.Millisecond {
		t.Errorf("refusing a 1 MiB header takes %s, want well under a millisecond", per)
	}
}

func TestPrincipalContext(t *testing.T) {
	if _, ok := PrincipalFrom(context.Background()); ok {
		t.Fatal("principal in empty context")
	}
	p := Principal{Subject: "bob", Org: uuid.New(), Role: RoleFunder}
	got, ok := PrincipalFrom(WithPrincipal(context.Background(), p))
	if !ok || got != p {
		t.Fatalf("got %+v %v", got, ok)
	}
}

func TestParseRole(t *testing.T) {
	for _, r := range Roles() {
		if got, err := ParseRole(string(r)); err != nil || got != r {
			t.Errorf("ParseRole(%q) = %q, %v", r, got, err)
		}
	}
	for _, s := range []string{"", "Operator", "admin"} {
		if _, err := ParseRole(s); err == nil {
			t.Errorf("ParseRole(%q) accepted", s)
		}
	}
}

func TestJWKS(t *testing.T) {
	k1, k2 := newTestKey(t), newTestKey(t)
	ks, err := NewKeySet(PublicKey{KID: k1.kid, Key: k1.pub}, PublicKey{KID: k2.kid, Key: k2.pub})
	if err != nil {
		t.Fatal(err)
	}
	doc, err := ks.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseJWKS(doc)
	if err != nil {
		t.Fatal(err)
	}
	if !back.Contains(k1.kid, k1.pub) || !back.Contains(k2.kid, k2.pub) || len(back.KeyIDs()) != 2 {
		t.Fatalf("round trip lost keys: %s", doc)
	}

	x := base64.RawURLEncoding.EncodeToString(k1.pub)
	bad := map[string]string{
		"empty":        `{"keys":[]}`,
		"rsa":          `{"keys":[{"kty":"RSA","kid":"r","n":"AQAB","e":"AQAB"}]}`,
		"x25519":       `{"keys":[{"kty":"OKP","crv":"X25519","kid":"a","x":"` + x + `"}]}`,
		"private":      `{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"a","x":"` + x + `","d":"` + x + `"}]}`,
		"no kid":       `{"keys":[{"kty":"OKP","crv":"Ed25519","x":"` + x + `"}]}`,
		"duplicate":    `{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"a","x":"` + x + `"},{"kty":"OKP","crv":"Ed25519","kid":"a","x":"` + x + `"}]}`,
		"short x":      `{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"a","x":"AAAA"}]}`,
		"enc use":      `{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"a","use":"enc","x":"` + x + `"}]}`,
		"other alg":    `{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"a","alg":"ES256","x":"` + x + `"}]}`,
		"not json":     `keys`,
		"padded x b64": `{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"a","x":"` + base64.URLEncoding.EncodeToString(k1.pub) + `"}]}`,
	}
	for name, doc := range bad {
		if _, err := ParseJWKS([]byte(doc)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestGenerateDevKeys(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	created, err := GenerateDevKeys(dir)
	if err != nil || !created {
		t.Fatalf("first call: created=%v err=%v", created, err)
	}
	keyPath, jwksPath := filepath.Join(dir, SigningKeyFile), filepath.Join(dir, JWKSFile)
	st, err := os.Stat(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("signing key mode %v, want 0600", st.Mode().Perm())
	}
	pemBefore, _ := os.ReadFile(keyPath)

	created, err = GenerateDevKeys(dir)
	if err != nil || created {
		t.Fatalf("second call: created=%v err=%v", created, err)
	}
	pemAfter, _ := os.ReadFile(keyPath)
	if string(pemBefore) != string(pemAfter) {
		t.Fatal("existing key was replaced")
	}

	m, err := LoadMinter(keyPath, DefaultIssuer, DefaultAudience)
	if err != nil {
		t.Fatal(err)
	}
	ks, err := LoadJWKS(jwksPath)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := m.Mint(Principal{Subject: "dev", Org: uuid.New(), Role: RoleOperator}, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewVerifier(ks, DefaultIssuer, DefaultAudience).Verify(tok); err != nil {
		t.Fatalf("dev token refused by dev key set: %v", err)
	}
	var hdr struct{ Kid string }
	raw, _ := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[0])
	if err := json.Unmarshal(raw, &hdr); err != nil || hdr.Kid != m.KeyID() || len(hdr.Kid) != 11 {
		t.Fatalf("kid %q (%v), want %q of 11 characters", hdr.Kid, err, m.KeyID())
	}

	// A lost key set is rebuilt from the key.
	if err := os.Remove(jwksPath); err != nil {
		t.Fatal(err)
	}
	if created, err := GenerateDevKeys(dir); err != nil || !created {
		t.Fatalf("rebuild key set: created=%v err=%v", created, err)
	}
	if ks, err := LoadJWKS(jwksPath); err != nil || len(ks.KeyIDs()) != 1 || ks.KeyIDs()[0] != m.KeyID() {
		t.Fatalf("rebuilt key set wrong: %v", err)
	}

	// A key set without its private key is not silently replaced.
	if err := os.Remove(keyPath); err != nil {
		t.Fatal(err)
	}
	if _, err := GenerateDevKeys(dir); err == nil {
		t.Fatal("key set without signing key accepted")
	}

	// A key set that does not match the key is an error.
	other := t.TempDir()
	if _, err := GenerateDevKeys(other); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, pemBefore, 0o600); err != nil {
		t.Fatal(err)
	}
	otherJWKS, _ := os.ReadFile(filepath.Join(other, JWKSFile))
	if err := os.WriteFile(jwksPath, otherJWKS, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := GenerateDevKeys(dir); err == nil {
		t.Fatal("mismatched key set accepted")
	}
}

func TestParseSigningKeyRejects(t *testing.T) {
	for name, data := range map[string]string{
		"empty":     "",
		"not pem":   "hello",
		"wrong pem": "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
	} {
		if _, err := ParseSigningKey([]byte(data)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	k := newTestKey(b)
	v := newVerifier(b, k)
	tok, err := NewMinter(k.priv, k.kid, DefaultIssuer, DefaultAudience).
		Mint(Principal{Subject: "bench", Org: uuid.New(), Role: RoleSite}, time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	header := "Bearer " + tok
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.VerifyAuthorization(header); err != nil {
			b.Fatal(err)
		}
	}
}
