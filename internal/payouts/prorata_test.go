package payouts_test

import (
	"math/big"
	"testing"

	"github.com/google/uuid"
	"pgregory.net/rapid"

	"github.com/passnum/passnum/internal/payouts"
)

func TestAllocateExamples(t *testing.T) {
	t.Parallel()
	a, b, c := uuid.MustParse("00000000-0000-0000-0000-00000000000a"),
		uuid.MustParse("00000000-0000-0000-0000-00000000000b"),
		uuid.MustParse("00000000-0000-0000-0000-00000000000c")
	thirds := []payouts.Weight{{Funder: c, Cents: 3333}, {Funder: a, Cents: 3334}, {Funder: b, Cents: 3333}}
	for _, tc := range []struct {
		name    string
		total   int64
		weights []payouts.Weight
		want    []int64
	}{
		{"one cent, three equal funders: the smallest id", 1,
			[]payouts.Weight{{Funder: c, Cents: 100}, {Funder: b, Cents: 100}, {Funder: a, Cents: 100}}, []int64{0, 0, 1}},
		{"two cents, three equal funders", 2,
			[]payouts.Weight{{Funder: c, Cents: 100}, {Funder: b, Cents: 100}, {Funder: a, Cents: 100}}, []int64{0, 1, 1}},
		// 100 € over 33.33 / 33.34 / 33.33 %: 3333, 3334, 3333 exactly.
		{"33.33 % each", 10000, thirds, []int64{3333, 3334, 3333}},
		// 1 € over the same: 33.33, 33.34, 33.33 → 33, 33, 33 + 1 to the largest remainder (a).
		{"one euro over thirds", 100, thirds, []int64{33, 34, 33}},
		{"nothing", 0, thirds, []int64{0, 0, 0}},
		{"negative: what sites owe back", -100, thirds, []int64{-33, -34, -33}},
		{"a funder that paid nothing gets nothing", 999,
			[]payouts.Weight{{Funder: a, Cents: 0}, {Funder: b, Cents: 5}}, []int64{0, 999}},
		{"half and half, odd cent to the smaller id", 101,
			[]payouts.Weight{{Funder: b, Cents: 50}, {Funder: a, Cents: 50}}, []int64{50, 51}},
	} {
		got, err := payouts.Allocate(tc.total, tc.weights)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Fatalf("%s: got %v, want %v", tc.name, got, tc.want)
			}
		}
	}
	if _, err := payouts.Allocate(1, []payouts.Weight{{Funder: a}}); err == nil {
		t.Fatal("split by no weight accepted")
	}
	if _, err := payouts.Allocate(1, []payouts.Weight{{Funder: a, Cents: -1}, {Funder: b, Cents: 2}}); err == nil {
		t.Fatal("negative weight accepted")
	}
}

// Random amounts and weights: the parts sum exactly to the total, and each is within one
// cent of its exact share total × w / W (never more than one cent above or below).
func TestAllocateProperties(t *testing.T) {
	t.Parallel()
	rapid.Check(t, func(t *rapid.T) {
		n := rapid.IntRange(1, 12).Draw(t, "funders")
		ws := make([]payouts.Weight, n)
		var sum int64
		for i := range ws {
			ws[i] = payouts.Weight{
				Funder: uuid.UUID(rapid.SliceOfN(rapid.Byte(), 16, 16).Draw(t, "id")),
				Cents:  rapid.Int64Range(0, 1_000_000_000_000).Draw(t, "weight"),
			}
			sum += ws[i].Cents
		}
		if sum == 0 {
			ws[0].Cents = 1
			sum = 1
		}
		total := rapid.Int64Range(-1_000_000_000_000, 1_000_000_000_000).Draw(t, "total")
		parts, err := payouts.Allocate(total, ws)
		if err != nil {
			t.Fatal(err)
		}
		var got int64
		for i, p := range parts {
			got += p
			// |p × W − total × w| < W, i.e. p is within one cent of the exact share.
			diff := new(big.Int).Sub(new(big.Int).Mul(big.NewInt(p), big.NewInt(sum)),
				new(big.Int).Mul(big.NewInt(total), big.NewInt(ws[i].Cents)))
			if diff.CmpAbs(big.NewInt(sum)) >= 0 {
				t.Fatalf("funder %d: %d cents, exact share %d×%d/%d", i, p, total, ws[i].Cents, sum)
			}
			if ws[i].Cents == 0 && p != 0 {
				t.Fatalf("funder %d without weight got %d", i, p)
			}
			if (total > 0 && p < 0) || (total < 0 && p > 0) {
				t.Fatalf("funder %d: part %d has the wrong sign for %d", i, p, total)
			}
		}
		if got != total {
			t.Fatalf("parts sum to %d, want %d", got, total)
		}
	})
}
