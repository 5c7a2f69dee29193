package main

import (
	"io"
	"strings"
	"testing"
)

func TestReportRefusesBadInput(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--database-url", ""}, "DATABASE_URL"},
		{[]string{"--database-url", "postgres://x/y", "--group-by", "programme,week"}, "week"},
		{[]string{"--database-url", "postgres://x/y", "--group-by", "month,month"}, "deux fois"},
		{[]string{"--database-url", "postgres://x/y", "--from", "2025-13"}, "AAAA-MM"},
		{[]string{"--database-url", "postgres://x/y", "--programme", "P1"}, "identifiant de programme"},
		{[]string{"--database-url", "postgres://x/y", "stray"}, "unexpected arguments"},
	} {
		err := runReport(c.args, io.Discard)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("report %q: %v, want an error mentioning %q", c.args, err, c.want)
		}
	}
}
