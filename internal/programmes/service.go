package programmes

import (
	"encoding/base64"
	"errors"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/passnum/passnum/internal/auth"
	"github.com/passnum/passnum/internal/civil"
	"github.com/passnum/passnum/internal/fault"
	"github.com/passnum/passnum/internal/vcode"
	"github.com/passnum/passnum/ledger"
)

// Options configures a Service; zero values take the defaults.
type Options struct {
	// Logger receives the redeemer's warnings; nil discards them.
	Logger *slog.Logger
	// Now is the clock (tests move it); nil is time.Now.
	Now func() time.Time
	// RedeemExecutors is the number of goroutines committing redemption batches (default 2).
	RedeemExecutors int
	// RedeemMaxBatch bounds the redemptions committed in one transaction (default 256).
	RedeemMaxBatch int
	// VoucherKeys makes and reads voucher codes (internal/vcode). nil is a new random key,
	// for tests and tools only: passnumd always loads its key file, since codes made with a
	// key that is gone can no longer be read.
	VoucherKeys *vcode.Keyring
}

// Service runs the voucher lifecycle over a ledger. It starts the redemption executors;
// Close stops them.
type Service struct {
	l        *ledger.Ledger
	log      *slog.Logger
	now      func() time.Time
	keys     *vcode.Keyring
	redeemer *redeemer
}

// New returns a Service over l and starts its redemption executors.
func New(l *ledger.Ledger, opts Options) *Service {
	s := &Service{l: l, log: opts.Logger, now: opts.Now, keys: opts.VoucherKeys}
	if s.keys == nil {
		s.keys = vcode.RandomKeyring()
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.redeemer = startRedeemer(s, opts.RedeemExecutors, opts.RedeemMaxBatch)
	return s
}

// Close stops the redemption executors after the batches they are committing; requests still
// queued fail. It is safe to call more than once.
func (s *Service) Close() { s.redeemer.close() }

// today is the current civil date in Paris.
func (s *Service) today() time.Time { return civil.DateOf(s.now()) }

// frTime writes an instant for people, in Paris: 22/11/2026 à 10 h 32.
func frTime(t time.Time) string { return t.In(civil.Paris).Format("02/01/2006 à 15 h 04") }

func encodeToken(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func decodeToken(tok string) (string, error) {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return "", badToken()
	}
	return string(b), nil
}

func badToken() error {
	return fault.InvalidField("page_token", "Le jeton de page n'est pas valide : reprenez la liste depuis le début.")
}

// requireRole refuses callers whose role is not among roles (the server's table already does;
// the domain repeats it for callers that do not go through the server, like the demo seed).
func requireRole(p auth.Principal, roles ...auth.Role) error {
	for _, r := range roles {
		if p.Role == r {
			return nil
		}
	}
	return fault.New(fault.PermissionDenied, "ROLE_NOT_ALLOWED",
		"Votre rôle ne permet pas cette opération.", "role", string(p.Role))
}

func notAllowed(kind, id string) error {
	return fault.New(fault.PermissionDenied, "OBJECT_NOT_ALLOWED",
		"Vous n'avez pas accès à cet objet, ou il n'existe pas.", "kind", kind, "id", id)
}

// pgConstraint returns the constraint a PostgreSQL error names and its SQLSTATE.
func pgConstraint(err error) (code, constraint string) {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code, pe.ConstraintName
	}
	return "", ""
}

// Faults shared by several operations.
func programmeNotFound(id uuid.UUID) error {
	return fault.New(fault.NotFound, "PROGRAMME_NOT_FOUND", "Ce programme n'existe pas.", "programme_id", id.String())
}
