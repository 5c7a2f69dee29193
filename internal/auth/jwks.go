package auth

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
)

// maxJWKSBytes bounds the key set file; a real one holds a handful of keys.
const maxJWKSBytes = 1 << 20

// PublicKey is one verification key of a key set.
type PublicKey struct {
	KID string
	Key ed25519.PublicKey
}

// KeySet holds the Ed25519 public keys that may sign tokens, by key id. It is immutable
// once built and safe for concurrent use.
type KeySet struct {
	keys map[string]ed25519.PublicKey
}

// jwk is the JSON form of an OKP key (RFC 8037).
type jwk struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	Kid string `json:"kid"`
	X   string `json:"x"`
	D   string `json:"d,omitempty"`
	Use string `json:"use,omitempty"`
	Alg string `json:"alg,omitempty"`
}

type jwks struct {
	Keys []jwk `json:"keys"`
}

// KeyID derives the key id passnum uses for a public key: base64url (no padding) of the
// first 8 bytes of its SHA-256.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return base64.RawURLEncoding.EncodeToString(sum[:8])
}

// NewKeySet builds a key set. Key ids must be non-empty and unique.
func NewKeySet(keys ...PublicKey) (*KeySet, error) {
	if len(keys) == 0 {
		return nil, errors.New("key set is empty")
	}
	ks := &KeySet{keys: make(map[string]ed25519.PublicKey, len(keys))}
	for _, k := range keys {
		if k.KID == "" {
			return nil, errors.New("key without kid")
		}
		if len(k.Key) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("key %q: Ed25519 public key must be %d bytes, got %d", k.KID, ed25519.PublicKeySize, len(k.Key))
		}
		if _, dup := ks.keys[k.KID]; dup {
			return nil, fmt.Errorf("duplicate kid %q", k.KID)
		}
		ks.keys[k.KID] = slices.Clone(k.Key)
	}
	return ks, nil
}

// ParseJWKS reads a JWKS document of Ed25519 keys:
//
//	{"keys":[{"kty":"OKP","crv":"Ed25519","kid":"...","x":"<base64url>"}]}
//
// Any other key type, a key with private material ("d"), or a key whose "use"/"alg" say it
// is not an EdDSA signing key is an error: the file must say exactly what is trusted.
func ParseJWKS(data []byte) (*KeySet, error) {
	var doc jwks
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("parse JWKS: %w", err)
	}
	keys := make([]PublicKey, 0, len(doc.Keys))
	for i, k := range doc.Keys {
		switch {
		case k.Kty != "OKP" || k.Crv != "Ed25519":
			return nil, fmt.Errorf("JWKS key %d (kid %q): only kty OKP with crv Ed25519 is supported, got kty %q crv %q", i, k.Kid, k.Kty, k.Crv)
		case k.D != "":
			return nil, fmt.Errorf("JWKS key %d (kid %q) contains a private key; publish only public keys", i, k.Kid)
		case k.Use != "" && k.Use != "sig":
			return nil, fmt.Errorf("JWKS key %d (kid %q): use %q is not sig", i, k.Kid, k.Use)
		case k.Alg != "" && k.Alg != "EdDSA":
			return nil, fmt.Errorf("JWKS key %d (kid %q): alg %q is not EdDSA", i, k.Kid, k.Alg)
		}
		x, err := base64.RawURLEncoding.DecodeString(k.X)
		if err != nil {
			return nil, fmt.Errorf("JWKS key %d (kid %q): x is not base64url: %w", i, k.Kid, err)
		}
		keys = append(keys, PublicKey{KID: k.Kid, Key: x})
	}
	ks, err := NewKeySet(keys...)
	if err != nil {
		return nil, fmt.Errorf("JWKS: %w", err)
	}
	return ks, nil
}

// LoadJWKS reads a JWKS file (see ParseJWKS).
func LoadJWKS(path string) (*KeySet, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open key set: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxJWKSBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read key set %s: %w", path, err)
	}
	if len(data) > maxJWKSBytes {
		return nil, fmt.Errorf("key set %s is larger than %d bytes", path, maxJWKSBytes)
	}
	ks, err := ParseJWKS(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return ks, nil
}

// KeyIDs returns the key ids of the set, sorted.
func (ks *KeySet) KeyIDs() []string {
	ids := make([]string, 0, len(ks.keys))
	for id := range ks.keys {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// Contains reports whether the set holds pub under kid.
func (ks *KeySet) Contains(kid string, pub ed25519.PublicKey) bool {
	k, ok := ks.keys[kid]
	return ok && k.Equal(pub)
}

// MarshalJSON writes the set as a JWKS document, keys sorted by kid.
func (ks *KeySet) MarshalJSON() ([]byte, error) {
	doc := jwks{Keys: make([]jwk, 0, len(ks.keys))}
	for _, id := range ks.KeyIDs() {
		doc.Keys = append(doc.Keys, jwk{
			Kty: "OKP", Crv: "Ed25519", Kid: id, Use: "sig", Alg: "EdDSA",
			X: base64.RawURLEncoding.EncodeToString(ks.keys[id]),
		})
	}
	return json.MarshalIndent(doc, "", "  ")
}
