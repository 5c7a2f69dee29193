package paging

import (
	"testing"

	"github.com/passnum/passnum/internal/fault"
)

func TestLimit(t *testing.T) {
	tests := []struct {
		size int32
		want int
	}{{0, DefaultSize}, {1, 1}, {MaxSize, MaxSize}, {MaxSize + 1, MaxSize}}
	for _, tc := range tests {
		if got, err := (Request{Size: tc.size}).Limit(); err != nil || got != tc.want {
			t.Errorf("Limit(%d) = %d, %v; want %d", tc.size, got, err, tc.want)
		}
	}
	if _, err := (Request{Size: -1}).Limit(); !fault.Is(err, "INVALID_PAGE_SIZE") {
		t.Errorf("Limit(-1) = %v, want INVALID_PAGE_SIZE", err)
	}
}
