// Package auth authenticates API callers.
//
// Callers present `authorization: Bearer <jwt>`. Tokens are signed with Ed25519 (JWS alg
// EdDSA) and nothing else; the verifying key is chosen by the token's `kid` header from a
// JWKS key set, so several keys may be valid at once during a rotation. A token must carry
// exp, nbf, iss and aud, and the passnum claims `sub`, `org` (a UUID) and `role`.
//
// Every rejection is a *fault.Error of kind Unauthenticated (with a French message for
// people) wrapping the technical cause (for logs).
package auth

import (
	"context"
	"fmt"

	"github.com/google/uuid"
)

// Defaults for the iss and aud claims.
const (
	DefaultIssuer   = "passnum"
	DefaultAudience = "passnum-api"
)

// Role is what a caller's organisation does in the programme.
type Role string

// The four roles; see docs/design.md and shared/domain.md.
const (
	RoleOperator    Role = "operator"    // runs passnum, sees everything
	RoleFunder      Role = "funder"      // pays a programme in, follows spend
	RoleDistributor Role = "distributor" // hands books out to beneficiaries
	RoleSite        Role = "site"        // mediation site: checks and redeems vouchers
)

// Roles lists every role, in a stable order.
func Roles() []Role {
	return []Role{RoleOperator, RoleFunder, RoleDistributor, RoleSite}
}

// ParseRole returns the role named s, or an error if s is not one of Roles().
func ParseRole(s string) (Role, error) {
	for _, r := range Roles() {
		if string(r) == s {
			return r, nil
		}
	}
	return "", fmt.Errorf("unknown role %q (want operator, funder, distributor or site)", s)
}

// Principal is an authenticated caller: a user (Subject) acting for an organisation (Org)
// in a role.
type Principal struct {
	Subject string
	Org     uuid.UUID
	Role    Role
}

type principalKey struct{}

// WithPrincipal returns a context carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the principal stored by WithPrincipal, if any.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}
