// Package frtext writes amounts and dates the way French readers expect them, for messages
// shown to people (volunteers at mediation sites, funders). Machine formats (CSV for
// spreadsheets, ISO dates in the API) live with their callers.
package frtext

import (
	"strconv"
	"strings"
	"time"
)

// Date writes a civil date: 30/11/2026.
func Date(t time.Time) string { return t.Format("02/01/2006") }

// Euros writes cents with French separators: 1 234,50 € (narrow no-break space between
// thousands, no-break space before the sign; whole euros without decimals: 10 €).
func Euros(cents int64) string {
	neg := cents < 0
	if neg {
		cents = -cents
	}
	units := strconv.FormatInt(cents/100, 10)
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, c := range units {
		if i > 0 && (len(units)-i)%3 == 0 {
			b.WriteString("\u202f")
		}
		b.WriteRune(c)
	}
	if r := cents % 100; r != 0 {
		b.WriteByte(',')
		if r < 10 {
			b.WriteByte('0')
		}
		b.WriteString(strconv.FormatInt(r, 10))
	}
	b.WriteString("\u00a0€")
	return b.String()
}
