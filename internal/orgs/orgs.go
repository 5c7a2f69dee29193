package orgs

import (
	"time"

	"github.com/google/uuid"

	"github.com/passnum/passnum/internal/civil"
	"github.com/passnum/passnum/ledger"
)

// Kind is what an organisation does in passnum.
type Kind string

// The kinds of organisation (organisations.kind).
const (
	KindOperator    Kind = "operator"
	KindFunder      Kind = "funder"
	KindDistributor Kind = "distributor"
	KindSite        Kind = "site"
)

// Status is a site's qualification status (sites.status).
type Status string

// Site statuses; see the package documentation for the transitions.
const (
	StatusPending   Status = "pending"
	StatusQualified Status = "qualified"
	StatusSuspended Status = "suspended"
	StatusWithdrawn Status = "withdrawn"
)

// Organization is a registered organisation. Site is set for sites only.
type Organization struct {
	ID          uuid.UUID
	Kind        Kind
	Name        string
	Departement string // empty for national bodies
	SIRET       string // empty when not known (required for sites)
	Site        *Site
	CreatedAt   time.Time
}

// Site holds what only mediation sites have. LegalRepresentative, IBAN and BIC are empty
// until known, and also when the viewer may not see them (see the package documentation).
type Site struct {
	ExternalID          string // id in the national "lieux de médiation numérique" data
	LegalRepresentative string
	IBAN                string
	BIC                 string
	Services            []string
	Commune             string
	CodePostal          string
	CodeINSEE           string
	Adresse             string
	Status              Status
	ValidFrom           time.Time // label period, civil dates at UTC midnight; zero when unset
	ValidUntil          time.Time
}

// NationalServices are the service labels of the national "lieux de médiation numérique"
// standard and of the Pass numérique catalogue. Any other non-empty label is accepted too; a
// label that matches one of these up to case, spacing and apostrophe style is stored with
// the spelling below, so that reports group them.
var NationalServices = []string{
	"Aide aux démarches administratives",
	"Maîtrise des outils numériques du quotidien",
	"Prise en main d'un smartphone ou d'une tablette",
	"Accompagnement aux démarches en ligne",
	"Insertion professionnelle via le numérique",
	"Utilisation sécurisée du numérique",
	"Parentalité et éducation avec le numérique",
	"Loisirs et créations numériques",
	"Compréhension et culture numérique",
	"Accès internet et matériel informatique",
	"Acquisition de matériel informatique à prix solidaire",
}

// Service registers organisations and qualifies sites. Writes go through ledger.Do: one
// transaction each, idempotent per (caller's organisation, idempotency key).
type Service struct {
	ledger *ledger.Ledger
	now    func() time.Time
}

// New returns the service over l.
func New(l *ledger.Ledger) *Service {
	return &Service{ledger: l, now: time.Now}
}

// dateOnly returns t's calendar date (in t's own location) at UTC midnight.
func dateOnly(t time.Time) time.Time {
	y, m, d := t.Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

// today is the current civil date in Paris.
func (s *Service) today() time.Time {
	return civil.DateOf(s.now())
}
