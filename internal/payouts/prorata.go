package payouts

import (
	"bytes"
	"errors"
	"fmt"
	"math/big"
	"slices"

	"github.com/google/uuid"
)

// Weight is one funder's claim on a pro-rata split: its net contribution to the programme
// (paid in minus fees), in cents.
type Weight struct {
	Funder uuid.UUID
	Cents  int64
}

// Allocate splits total cents between the weights in proportion to them, exactly: the parts
// sum to total. It is the largest-remainder method (Hamilton's):
//
//  1. each funder gets ⌊|total| × w / W⌋ where W is the sum of the weights;
//  2. the k cents left over (k < number of funders with a non-zero weight) go one each to
//     the k funders with the largest remainders |total| × w mod W, ties going to the
//     smaller funder id (bytewise);
//  3. a negative total is split as its absolute value and every part negated.
//
// So every part is within one cent of its exact share |total| × w / W, and a funder with no
// weight gets nothing. Parts are returned in the order of weights. The products are computed
// in arbitrary precision, so no amount overflows. Weights must not be negative; if they are
// all zero, total must be zero.
func Allocate(total int64, weights []Weight) ([]int64, error) {
	parts := make([]int64, len(weights))
	var sum big.Int
	for _, w := range weights {
		if w.Cents < 0 {
			return nil, fmt.Errorf("allocate: funder %s has a negative weight %d", w.Funder, w.Cents)
		}
		sum.Add(&sum, big.NewInt(w.Cents))
	}
	if total == 0 {
		return parts, nil
	}
	if sum.Sign() == 0 {
		return nil, errors.New("allocate: no weight to split a non-zero amount by")
	}
	sign := int64(1)
	abs := new(big.Int).SetInt64(total)
	if total < 0 {
		sign = -1
		abs.Neg(abs)
	}
	type rem struct {
		i int
		r big.Int
	}
	rems := make([]rem, 0, len(weights))
	var given big.Int
	for i, w := range weights {
		if w.Cents == 0 {
			continue
		}
		var q, r, prod big.Int
		prod.Mul(abs, big.NewInt(w.Cents))
		q.QuoRem(&prod, &sum, &r)
		parts[i] = q.Int64() // at most |total|
		given.Add(&given, &q)
		rems = append(rems, rem{i: i, r: r})
	}
	left := new(big.Int).Sub(abs, &given).Int64() // fewer than len(rems)
	slices.SortFunc(rems, func(a, b rem) int {
		if c := b.r.Cmp(&a.r); c != 0 {
			return c
		}
		return bytes.Compare(weights[a.i].Funder[:], weights[b.i].Funder[:])
	})
	for k := int64(0); k < left; k++ {
		parts[rems[k].i]++
	}
	for i := range parts {
		parts[i] *= sign
	}
	return parts, nil
}
