package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// File names used by GenerateDevKeys.
const (
	SigningKeyFile = "signing.pem"
	JWKSFile       = "jwks.json"
)

// GenerateDevKeys makes sure dir holds a signing key (SigningKeyFile, mode 0600) and the
// matching key set (JWKSFile). Missing files are created: a new Ed25519 key when there is
// none, the key set from the existing key otherwise. Existing files are never overwritten;
// a key set without the private key, or a key set that does not hold the key, is an error.
// created reports whether anything was written.
func GenerateDevKeys(dir string) (created bool, err error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return false, fmt.Errorf("create key directory: %w", err)
	}
	keyPath := filepath.Join(dir, SigningKeyFile)
	jwksPath := filepath.Join(dir, JWKSFile)
	keyExists, err := exists(keyPath)
	if err != nil {
		return false, err
	}
	jwksExists, err := exists(jwksPath)
	if err != nil {
		return false, err
	}

	var key ed25519.PrivateKey
	switch {
	case keyExists:
		if key, err = LoadSigningKey(keyPath); err != nil {
			return false, err
		}
	case jwksExists:
		return false, fmt.Errorf("%s exists without %s: remove it or restore the signing key", jwksPath, keyPath)
	default:
		if _, key, err = ed25519.GenerateKey(rand.Reader); err != nil {
			return false, fmt.Errorf("generate Ed25519 key: %w", err)
		}
		pemBytes, err := MarshalSigningKey(key)
		if err != nil {
			return false, err
		}
		if err := writeNew(keyPath, pemBytes, 0o600); err != nil {
			return false, err
		}
		created = true
	}

	pub := key.Public().(ed25519.PublicKey)
	kid := KeyID(pub)
	if jwksExists {
		ks, err := LoadJWKS(jwksPath)
		if err != nil {
			return created, err
		}
		if !ks.Contains(kid, pub) {
			return created, fmt.Errorf("%s does not hold the public key of %s (kid %s)", jwksPath, keyPath, kid)
		}
		return created, nil
	}
	ks, err := NewKeySet(PublicKey{KID: kid, Key: pub})
	if err != nil {
		return created, err
	}
	doc, err := ks.MarshalJSON()
	if err != nil {
		return created, err
	}
	if err := writeNew(jwksPath, append(doc, '\n'), 0o644); err != nil {
		return created, err
	}
	return true, nil
}

func exists(path string) (bool, error) {
	_, err := os.Stat(path)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	}
	return false, fmt.Errorf("stat %s: %w", path, err)
}

// writeNew writes data to a temporary file and links it to path, failing if path exists,
// so a crash never leaves a half-written key behind and nothing is ever overwritten.
func writeNew(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return fmt.Errorf("chmod %s: %w", tmp.Name(), err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("sync %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp.Name(), err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		return fmt.Errorf("create %s: %w", path, err)
	}
	return nil
}
