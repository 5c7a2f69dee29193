package auth

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/google/uuid"
)

// mintClaims is the payload the minter signs. The verifier decodes it into tokenClaims.
type mintClaims struct {
	jwt.RegisteredClaims
	Org  string `json:"org"`
	Role string `json:"role"`
}

// Minter signs passnum tokens with one Ed25519 key.
type Minter struct {
	key      ed25519.PrivateKey
	kid      string
	issuer   string
	audience string
}

// NewMinter returns a minter signing with key under key id kid.
func NewMinter(key ed25519.PrivateKey, kid, issuer, audience string) *Minter {
	return &Minter{key: key, kid: kid, issuer: issuer, audience: audience}
}

// LoadMinter reads a PEM PKCS#8 Ed25519 private key; the key id is KeyID of its public key,
// as GenerateDevKeys writes it in the JWKS.
func LoadMinter(path, issuer, audience string) (*Minter, error) {
	key, err := LoadSigningKey(path)
	if err != nil {
		return nil, err
	}
	return NewMinter(key, KeyID(key.Public().(ed25519.PublicKey)), issuer, audience), nil
}

// KeyID returns the kid the minter puts in token headers.
func (m *Minter) KeyID() string { return m.kid }

// Mint returns a signed token for p, valid from now for ttl. It sets iss, aud, sub, nbf,
// iat, exp and a random jti.
func (m *Minter) Mint(p Principal, ttl time.Duration) (string, error) {
	if ttl <= 0 {
		return "", fmt.Errorf("token lifetime must be positive, got %s", ttl)
	}
	if p.Subject == "" {
		return "", errors.New("token subject is empty")
	}
	if p.Org == uuid.Nil {
		return "", errors.New("token organisation is the nil UUID")
	}
	if _, err := ParseRole(string(p.Role)); err != nil {
		return "", err
	}
	now := time.Now()
	t := jwt.NewWithClaims(jwt.SigningMethodEdDSA, mintClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    m.issuer,
			Subject:   p.Subject,
			Audience:  jwt.ClaimStrings{m.audience},
			ExpiresAt: jwt.NewNumericDate(now.Add(ttl)),
			NotBefore: jwt.NewNumericDate(now),
			IssuedAt:  jwt.NewNumericDate(now),
			ID:        uuid.NewString(),
		},
		Org:  p.Org.String(),
		Role: string(p.Role),
	})
	t.Header["kid"] = m.kid
	s, err := t.SignedString(m.key)
	if err != nil {
		return "", fmt.Errorf("sign token: %w", err)
	}
	return s, nil
}

// LoadSigningKey reads a PEM "PRIVATE KEY" (PKCS#8) block holding an Ed25519 key.
func LoadSigningKey(path string) (ed25519.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read signing key: %w", err)
	}
	key, err := ParseSigningKey(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return key, nil
}

// ParseSigningKey decodes a PEM PKCS#8 Ed25519 private key.
func ParseSigningKey(data []byte) (ed25519.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "PRIVATE KEY" {
		return nil, errors.New("no PEM PRIVATE KEY block (PKCS#8) found")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse PKCS#8 key: %w", err)
	}
	ed, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("signing key is %T, want Ed25519", k)
	}
	return ed, nil
}

// MarshalSigningKey encodes key as a PEM PKCS#8 block.
func MarshalSigningKey(key ed25519.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode PKCS#8 key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}
