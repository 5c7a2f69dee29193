package main

import (
	"bytes"
	"errors"
	"flag"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/passnum/passnum/internal/auth"
)

func TestKeygenThenToken(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys")
	var out bytes.Buffer
	if err := dispatch([]string{"keygen", "--dir", dir}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "écrites") {
		t.Fatalf("keygen said %q", out.String())
	}
	out.Reset()
	if err := dispatch([]string{"keygen", "--dir", dir}, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "déjà présentes") {
		t.Fatalf("second keygen said %q", out.String())
	}

	org := uuid.New()
	out.Reset()
	err := dispatch([]string{"token", "--role", "site", "--org", org.String(), "--sub", "claire", "--ttl", "1h",
		"--key", filepath.Join(dir, auth.SigningKeyFile)}, &out)
	if err != nil {
		t.Fatal(err)
	}
	ks, err := auth.LoadJWKS(filepath.Join(dir, auth.JWKSFile))
	if err != nil {
		t.Fatal(err)
	}
	p, err := auth.NewVerifier(ks, auth.DefaultIssuer, auth.DefaultAudience).Verify(strings.TrimSpace(out.String()))
	if err != nil {
		t.Fatalf("minted token refused: %v", err)
	}
	if p != (auth.Principal{Subject: "claire", Org: org, Role: auth.RoleSite}) {
		t.Fatalf("principal %+v", p)
	}
}

func TestTokenRefusesBadInput(t *testing.T) {
	dir := t.TempDir()
	if err := dispatch([]string{"keygen", "--dir", dir}, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dir, auth.SigningKeyFile)
	for name, args := range map[string][]string{
		"no role":     {"token", "--org", uuid.NewString(), "--key", key},
		"no org":      {"token", "--role", "site", "--key", key},
		"bad role":    {"token", "--role", "admin", "--org", uuid.NewString(), "--key", key},
		"bad org":     {"token", "--role", "site", "--org", "acme", "--key", key},
		"no key":      {"token", "--role", "site", "--org", uuid.NewString(), "--key", filepath.Join(dir, "missing.pem")},
		"zero ttl":    {"token", "--role", "site", "--org", uuid.NewString(), "--key", key, "--ttl", "0s"},
		"stray arg":   {"token", "--role", "site", "--org", uuid.NewString(), "--key", key, "extra"},
		"unknown cmd": {"frobnicate"},
		"no cmd":      {},
	} {
		var out bytes.Buffer
		if err := dispatch(args, &out); err == nil || errors.Is(err, flag.ErrHelp) {
			t.Errorf("%s: accepted (%v), printed %q", name, err, out.String())
		}
	}
}
