package auth

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"

	"github.com/passnum/passnum/internal/fault"
)

// MaxAuthorizationBytes bounds the authorization header value. A passnum token is about
// 400 bytes; anything much longer is refused before any decoding (the CVE-2025-30204
// class: a huge value full of dots must cost nothing).
const MaxAuthorizationBytes = 8 << 10

// Leeway is the clock skew tolerated on exp and nbf.
const Leeway = 30 * time.Second

// maxKIDBytes bounds the kid header we are willing to look up.
const maxKIDBytes = 128

// Reasons of the Unauthenticated faults returned by the verifier.
const (
	ReasonTokenMissing       = "TOKEN_MISSING"
	ReasonTokenTooLarge      = "TOKEN_TOO_LARGE"
	ReasonTokenMalformed     = "TOKEN_MALFORMED"
	ReasonTokenExpired       = "TOKEN_EXPIRED"
	ReasonTokenNotYetValid   = "TOKEN_NOT_YET_VALID"
	ReasonTokenUnknownKey    = "TOKEN_UNKNOWN_KEY"
	ReasonTokenInvalid       = "TOKEN_INVALID"
	ReasonTokenClaimsInvalid = "TOKEN_CLAIMS_INVALID"
)

var errUnknownKID = errors.New("unknown kid")

// Refusals decided on the header's shape alone are built once: refusing junk allocates
// nothing.
var (
	errMissing = reject(ReasonTokenMissing,
		"Jeton d'accès manquant : ajoutez l'en-tête « authorization: Bearer <jeton> ».", nil)
	errTooLarge = reject(ReasonTokenTooLarge, "Jeton d'accès trop long.",
		fmt.Errorf("authorization header longer than %d bytes", MaxAuthorizationBytes))
	errScheme = reject(ReasonTokenMalformed,
		"En-tête authorization incorrect : le format attendu est « Bearer <jeton> ».",
		errors.New("authorization scheme is not Bearer"))
	errParts = reject(ReasonTokenMalformed, "Jeton d'accès mal formé.",
		errors.New("token is not three dot-separated parts"))
)

// Verifier checks bearer tokens against a key set. It is safe for concurrent use.
type Verifier struct {
	// keys holds the key set's keys by kid, already boxed in the interface the Keyfunc
	// returns, so that choosing a key allocates nothing. The KeySet is immutable.
	keys     map[string]any
	parser   *jwt.Parser
	issuer   string
	audience string
}

// NewVerifier returns a verifier accepting EdDSA tokens signed by a key of keys, issued by
// issuer for audience.
func NewVerifier(keys *KeySet, issuer, audience string) *Verifier {
	boxed := make(map[string]any, len(keys.keys))
	for kid, k := range keys.keys {
		boxed[kid] = k
	}
	return &Verifier{
		keys:     boxed,
		issuer:   issuer,
		audience: audience,
		// One parser for every call. No WithJSONNumber: it only changes how numbers held
		// in `any` decode (tokenClaims has none; the header map is decoded without it)
		// and costs a json.Decoder per token. WithStrictDecoding is strict base64 (a
		// segment has one encoding); it costs nothing measurable.
		parser: jwt.NewParser(
			jwt.WithValidMethods([]string{jwt.SigningMethodEdDSA.Alg()}),
			jwt.WithExpirationRequired(),
			jwt.WithNotBeforeRequired(),
			jwt.WithIssuer(issuer),
			jwt.WithAudience(audience),
			jwt.WithLeeway(Leeway),
			jwt.WithStrictDecoding(),
		),
	}
}

// Issuer returns the issuer the verifier requires.
func (v *Verifier) Issuer() string { return v.issuer }

// Audience returns the audience the verifier requires.
func (v *Verifier) Audience() string { return v.audience }

// VerifyAuthorization checks the value of an authorization header ("Bearer <jwt>").
// Oversized values, another scheme and anything that is not three dot-separated parts are
// refused before any decoding.
func (v *Verifier) VerifyAuthorization(header string) (Principal, error) {
	if header == "" {
		return Principal{}, errMissing
	}
	if len(header) > MaxAuthorizationBytes {
		return Principal{}, errTooLarge
	}
	const scheme = "bearer "
	if len(header) <= len(scheme) || !strings.EqualFold(header[:len(scheme)], scheme) {
		return Principal{}, errScheme
	}
	return v.Verify(strings.TrimSpace(header[len(scheme):]))
}

// Verify checks a compact JWS token and returns its principal.
func (v *Verifier) Verify(token string) (Principal, error) {
	if len(token) > MaxAuthorizationBytes {
		return Principal{}, errTooLarge
	}
	if strings.Count(token, ".") != 2 {
		return Principal{}, errParts
	}
	// Every call parses and checks the signature: there is no cache of verified tokens.
	var c tokenClaims
	_, err := v.parser.ParseWithClaims(token, &c, v.key)
	if err != nil {
		return Principal{}, classify(err)
	}
	// WithNotBeforeRequired already demands nbf; keep the check explicit so that a change
	// of parser options cannot silently accept tokens without it.
	if !c.NotBefore.set {
		return Principal{}, reject(ReasonTokenInvalid, "Jeton d'accès invalide.", errors.New("token has no nbf claim"))
	}
	return principalOf(&c)
}

// key is the jwt.Keyfunc: the key named by the kid header, for EdDSA tokens only.
func (v *Verifier) key(t *jwt.Token) (any, error) {
	if _, ok := t.Method.(*jwt.SigningMethodEd25519); !ok {
		return nil, fmt.Errorf("signing method %v is not EdDSA", t.Header["alg"])
	}
	kid, ok := t.Header["kid"].(string)
	if !ok || kid == "" {
		return nil, fmt.Errorf("%w: token has no kid header", errUnknownKID)
	}
	if len(kid) > maxKIDBytes {
		return nil, fmt.Errorf("%w: kid of %d bytes", errUnknownKID, len(kid))
	}
	k, ok := v.keys[kid]
	if !ok {
		return nil, fmt.Errorf("%w %q", errUnknownKID, kid)
	}
	return k, nil
}

func classify(err error) error {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return reject(ReasonTokenMalformed, "Jeton d'accès mal formé.", err)
	case errors.Is(err, errUnknownKID):
		return reject(ReasonTokenUnknownKey,
			"Jeton d'accès signé par une clé inconnue : demandez un nouveau jeton.", err)
	case errors.Is(err, jwt.ErrTokenExpired):
		return reject(ReasonTokenExpired, "Jeton d'accès expiré : demandez un nouveau jeton.", err)
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return reject(ReasonTokenNotYetValid,
			"Jeton d'accès pas encore valide : vérifiez l'heure de votre appareil.", err)
	}
	return reject(ReasonTokenInvalid, "Jeton d'accès invalide.", err)
}

func principalOf(c *tokenClaims) (Principal, error) {
	if c.Subject == "" {
		return Principal{}, reject(ReasonTokenClaimsInvalid,
			"Jeton d'accès invalide : utilisateur absent.", errors.New("token has no sub claim"))
	}
	// Only the canonical 36-character form: uuid.Parse also takes braces and urn:uuid:.
	org, err := uuid.Parse(c.Org)
	if err != nil || len(c.Org) != 36 || org == uuid.Nil {
		return Principal{}, reject(ReasonTokenClaimsInvalid,
			"Jeton d'accès invalide : organisation incorrecte.", fmt.Errorf("org claim %q is not a UUID", c.Org))
	}
	role, err := ParseRole(c.Role)
	if err != nil {
		return Principal{}, reject(ReasonTokenClaimsInvalid,
			"Jeton d'accès invalide : rôle inconnu.", fmt.Errorf("role claim: %w", err))
	}
	return Principal{Subject: c.Subject, Org: org, Role: role}, nil
}

// reject builds the Unauthenticated fault, wrapping the technical cause for logs.
func reject(reason, message string, cause error) error {
	f := fault.New(fault.Unauthenticated, reason, message)
	if cause == nil {
		return f
	}
	return fmt.Errorf("%w: %w", f, cause)
}
