package payouts

import (
	"encoding/base64"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/passnum/passnum/internal/auth"
	"github.com/passnum/passnum/internal/civil"
	"github.com/passnum/passnum/internal/fault"
	"github.com/passnum/passnum/internal/ident"
	"github.com/passnum/passnum/ledger"
)

// Environment variables read by ConfigFromEnv: the account that pays the sites.
const (
	EnvDebtorName = "PASSNUM_DEBTOR_NAME"
	EnvDebtorIBAN = "PASSNUM_DEBTOR_IBAN"
	EnvDebtorBIC  = "PASSNUM_DEBTOR_BIC"
)

// Development defaults of the debtor account: a well-formed French account (the Banque de
// France's published example), so that payment files can be produced and checked locally.
// Production sets the three environment variables.
const (
	DevDebtorName = "Operateur Pass numerique (developpement)"
	DevDebtorIBAN = "FR7630001007941234567890185"
	DevDebtorBIC  = "BDFEFRPPCCT"
)

// Config configures a Service.
type Config struct {
	// DebtorName, DebtorIBAN and DebtorBIC are the operator's account, debited by payment
	// files. Empty fields take the development defaults.
	DebtorName string
	DebtorIBAN string
	DebtorBIC  string
	// Now is the clock (tests move it); nil is time.Now.
	Now func() time.Time
}

// ConfigFromEnv reads the debtor account from PASSNUM_DEBTOR_NAME, PASSNUM_DEBTOR_IBAN and
// PASSNUM_DEBTOR_BIC; unset variables take the development defaults.
func ConfigFromEnv() Config {
	return Config{
		DebtorName: os.Getenv(EnvDebtorName),
		DebtorIBAN: os.Getenv(EnvDebtorIBAN),
		DebtorBIC:  os.Getenv(EnvDebtorBIC),
	}
}

// Service runs payouts, payment files, expiry and close-out over a ledger.
type Service struct {
	l      *ledger.Ledger
	now    func() time.Time
	debtor debtor
}

type debtor struct{ name, iban, bic string }

// New returns a Service over l. It refuses a debtor account whose IBAN or BIC is invalid, so
// that a misconfigured server fails at start rather than at the first payment file.
func New(l *ledger.Ledger, cfg Config) (*Service, error) {
	d := debtor{name: cfg.DebtorName, iban: cfg.DebtorIBAN, bic: cfg.DebtorBIC}
	if d.name == "" {
		d.name = DevDebtorName
	}
	if d.iban == "" {
		d.iban = DevDebtorIBAN
	}
	if d.bic == "" {
		d.bic = DevDebtorBIC
	}
	var err error
	if d.iban, err = ident.NormalizeIBAN(d.iban); err != nil {
		return nil, fmt.Errorf("payouts: debtor IBAN (%s): %w", EnvDebtorIBAN, err)
	}
	if d.bic, err = ident.NormalizeBIC(d.bic); err != nil {
		return nil, fmt.Errorf("payouts: debtor BIC (%s): %w", EnvDebtorBIC, err)
	}
	if strings.TrimSpace(d.name) == "" {
		return nil, fmt.Errorf("payouts: debtor name (%s) is blank", EnvDebtorName)
	}
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	return &Service{l: l, now: now, debtor: d}, nil
}

// today is the current civil date in Paris.
func (s *Service) today() time.Time { return civil.DateOf(s.now()) }

// midnightParis is the instant a civil date starts in Paris.
func midnightParis(d time.Time) time.Time {
	y, m, day := d.Date()
	return time.Date(y, m, day, 0, 0, 0, 0, civil.Paris)
}

// Page tokens are the last statement id of the previous page, base64url-encoded.
func encodeToken(id uuid.UUID) string { return base64.RawURLEncoding.EncodeToString(id[:]) }

func decodeToken(tok string) (uuid.UUID, error) {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(b) != 16 {
		return uuid.Nil, fault.InvalidField("page_token",
			"Le jeton de page n'est pas valide : reprenez la liste depuis le début.")
	}
	return uuid.UUID(b), nil
}

// requireRole refuses callers whose role is not among roles. The server's table already
// does; the domain repeats it for callers that do not go through the server.
func requireRole(p auth.Principal, roles ...auth.Role) error {
	for _, r := range roles {
		if p.Role == r {
			return nil
		}
	}
	return fault.New(fault.PermissionDenied, "ROLE_NOT_ALLOWED",
		"Votre rôle ne permet pas cette opération.", "role", string(p.Role))
}

func requireKey(key string) error {
	if key == "" {
		return ledger.ErrKeyRequired
	}
	return nil
}
