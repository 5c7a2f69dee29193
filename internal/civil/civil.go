// Package civil handles the calendar dates of the programme: validity ends, service dates,
// cut-offs. They are civil dates in Paris, carried as midnight UTC (the way PostgreSQL's date
// type is read and written) and exchanged in the API as "YYYY-MM-DD".
package civil

import (
	"fmt"
	"strings"
	"time"
	_ "time/tzdata" // Europe/Paris must resolve on hosts without a zoneinfo database

	"github.com/passnum/passnum/internal/fault"
)

// Paris is the time zone of civil dates and of the times shown to people.
var Paris = func() *time.Location {
	loc, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		panic(fmt.Sprintf("civil: load Europe/Paris: %v", err))
	}
	return loc
}()

// DateOf is the civil date (in Paris) of an instant, as midnight UTC.
func DateOf(t time.Time) time.Time {
	y, m, d := t.In(Paris).Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

// ParseDate reads a calendar date "YYYY-MM-DD" given in field; the fault names the field.
func ParseDate(field, s string) (time.Time, error) {
	t, err := time.Parse(time.DateOnly, strings.TrimSpace(s))
	if err != nil {
		return time.Time{}, fault.InvalidField(field,
			fmt.Sprintf("La date « %s » n'est pas valide : écrivez-la AAAA-MM-JJ, par exemple 2026-12-31.", s))
	}
	return t, nil
}

// FormatDate writes a civil date as "YYYY-MM-DD" ("" for the zero time).
func FormatDate(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.Format(time.DateOnly)
}
