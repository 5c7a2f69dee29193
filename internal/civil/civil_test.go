package civil

import (
	"testing"
	"time"

	"github.com/passnum/passnum/internal/fault"
)

func TestDateOf(t *testing.T) {
	tests := []struct {
		instant time.Time
		want    string
	}{
		// 23:30 UTC on 31 December is already 1 January in Paris (UTC+1 in winter).
		{time.Date(2026, 12, 31, 23, 30, 0, 0, time.UTC), "2027-01-01"},
		// 21:59 UTC on 30 June is 23:59 in Paris (UTC+2 in summer): still 30 June.
		{time.Date(2026, 6, 30, 21, 59, 0, 0, time.UTC), "2026-06-30"},
		{time.Date(2026, 6, 30, 22, 0, 0, 0, time.UTC), "2026-07-01"},
	}
	for _, tc := range tests {
		if got := FormatDate(DateOf(tc.instant)); got != tc.want {
			t.Errorf("DateOf(%s) = %s, want %s", tc.instant, got, tc.want)
		}
	}
}

func TestParseDate(t *testing.T) {
	d, err := ParseDate("valid_until", " 2026-12-31 ")
	if err != nil || FormatDate(d) != "2026-12-31" {
		t.Fatalf("ParseDate = %v, %v", d, err)
	}
	for _, bad := range []string{"", "31/12/2026", "2026-02-30", "2026-12-31T00:00:00Z"} {
		_, err := ParseDate("valid_until", bad)
		f, ok := fault.As(err)
		if !ok || f.Kind != fault.Invalid || f.Metadata["field"] != "valid_until" {
			t.Errorf("ParseDate(%q) = %v, want an invalid valid_until fault", bad, err)
		}
	}
	if FormatDate(time.Time{}) != "" {
		t.Error("zero time must format as empty")
	}
}
