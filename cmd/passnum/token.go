package main

import (
	"crypto/ed25519"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/google/uuid"

	"github.com/passnum/passnum/internal/auth"
)

const defaultKeysDir = "var/keys"

func runToken(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	role := fs.String("role", "", "operator, funder, distributor or site (required)")
	org := fs.String("org", "", "organisation id, a UUID (required)")
	sub := fs.String("sub", defaultSubject(), "user the token is for")
	ttl := fs.Duration("ttl", 8*time.Hour, "lifetime")
	key := fs.String("key", envOr("PASSNUM_SIGNING_KEY", filepath.Join(defaultKeysDir, auth.SigningKeyFile)),
		"Ed25519 private key, PEM PKCS#8 (PASSNUM_SIGNING_KEY)")
	kid := fs.String("kid", "", "key id for the token header; default: derived from the key, as in passnum keygen's JWKS")
	issuer := fs.String("issuer", envOr("PASSNUM_ISSUER", auth.DefaultIssuer), "iss claim (PASSNUM_ISSUER)")
	audience := fs.String("audience", envOr("PASSNUM_AUDIENCE", auth.DefaultAudience), "aud claim (PASSNUM_AUDIENCE)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *role == "" || *org == "" {
		fs.Usage()
		return errors.New("token: --role and --org are required")
	}
	r, err := auth.ParseRole(*role)
	if err != nil {
		return err
	}
	orgID, err := uuid.Parse(*org)
	if err != nil {
		return fmt.Errorf("--org %q is not a UUID", *org)
	}
	signing, err := auth.LoadSigningKey(*key)
	if err != nil {
		return err
	}
	if *kid == "" {
		*kid = auth.KeyID(signing.Public().(ed25519.PublicKey))
	}
	tok, err := auth.NewMinter(signing, *kid, *issuer, *audience).
		Mint(auth.Principal{Subject: *sub, Org: orgID, Role: r}, *ttl)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, tok)
	return err
}

func defaultSubject() string {
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	return "passnum-cli"
}

func runKeygen(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("keygen", flag.ContinueOnError)
	dir := fs.String("dir", defaultKeysDir, "directory for "+auth.SigningKeyFile+" (private, 0600) and "+auth.JWKSFile)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	created, err := auth.GenerateDevKeys(*dir)
	if err != nil {
		return err
	}
	signing, err := auth.LoadSigningKey(filepath.Join(*dir, auth.SigningKeyFile))
	if err != nil {
		return err
	}
	kid := auth.KeyID(signing.Public().(ed25519.PublicKey))
	state := "déjà présentes, laissées telles quelles"
	if created {
		state = "écrites"
	}
	_, err = fmt.Fprintf(stdout, "Clés %s (kid %s)\n  clé privée :      %s\n  jeu de clés JWKS : %s\n", state, kid,
		filepath.Join(*dir, auth.SigningKeyFile), filepath.Join(*dir, auth.JWKSFile))
	return err
}
