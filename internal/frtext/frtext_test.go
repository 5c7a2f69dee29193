package frtext

import (
	"testing"
	"time"
)

func TestEuros(t *testing.T) {
	tests := []struct {
		cents int64
		want  string
	}{
		{0, "0\u00a0€"},
		{5, "0,05\u00a0€"},
		{1000, "10\u00a0€"},
		{123450, "1\u202f234,50\u00a0€"},
		{-99, "-0,99\u00a0€"},
		{100000000, "1\u202f000\u202f000\u00a0€"},
		{-123456789, "-1\u202f234\u202f567,89\u00a0€"},
	}
	for _, tc := range tests {
		if got := Euros(tc.cents); got != tc.want {
			t.Errorf("Euros(%d) = %q, want %q", tc.cents, got, tc.want)
		}
	}
}

func TestDate(t *testing.T) {
	if got := Date(time.Date(2026, 11, 3, 0, 0, 0, 0, time.UTC)); got != "03/11/2026" {
		t.Errorf("Date = %q", got)
	}
}
