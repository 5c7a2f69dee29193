package reports

import (
	"math/bits"
	"slices"
)

// split divides x into parts proportional to weights with the largest-remainder method: each
// part is ⌊|x| × w / W⌋ (W the sum of the weights), the cents left over go one each to the
// largest remainders |x| × w mod W, ties to the smaller index, and a negative x is split as
// |x| with every part negated. The parts add up to x exactly. Weights must not be negative and
// their sum must fit in 63 bits; with all weights zero every part is zero.
func split(x int64, weights []int64) []int64 {
	parts := make([]int64, len(weights))
	var total uint64
	for _, w := range weights {
		total += uint64(w)
	}
	if x == 0 || total == 0 {
		return parts
	}
	ax := uint64(x)
	if x < 0 {
		ax = uint64(-x)
	}
	rems := make([]uint64, len(weights))
	var given uint64
	for i, w := range weights {
		hi, lo := bits.Mul64(ax, uint64(w))
		q, r := bits.Div64(hi, lo, total) // q ≤ ax because w ≤ total, so no overflow
		parts[i], rems[i] = int64(q), r
		given += q
	}
	order := make([]int, len(weights))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		switch {
		case rems[a] > rems[b]:
			return -1
		case rems[a] < rems[b]:
			return 1
		}
		return 0
	})
	for _, i := range order[:ax-given] {
		parts[i]++
	}
	if x < 0 {
		for i := range parts {
			parts[i] = -parts[i]
		}
	}
	return parts
}

// capped gives each funder its whole-programme amount of the used value: shares of used,
// except that a funder whose share exceeds its ceiling (caps[i] >= 0; -1 is no ceiling) gets
// the ceiling and the rest is shared among the others in proportion to their shares, until no
// one exceeds its ceiling. rest is what nobody takes when every funder is capped.
func capped(used int64, shares, caps []int64) (amounts []int64, rest int64) {
	n := len(shares)
	amounts = make([]int64, n)
	fixed := make([]bool, n)
	remaining := used
	for {
		var open int64
		for i, s := range shares {
			if !fixed[i] {
				open += s
			}
		}
		if open == 0 {
			return amounts, remaining
		}
		// A funder over its ceiling at this level stays over it at any later one (fixing
		// others only raises the level), so all of them are fixed at once.
		var over []int
		for i, s := range shares {
			if !fixed[i] && caps[i] >= 0 && greater(remaining, s, caps[i], open) {
				over = append(over, i)
			}
		}
		if len(over) == 0 {
			weights := make([]int64, n)
			for i, s := range shares {
				if !fixed[i] {
					weights[i] = s
				}
			}
			for i, p := range split(remaining, weights) {
				if !fixed[i] {
					amounts[i] = p
				}
			}
			return amounts, 0
		}
		for _, i := range over {
			fixed[i] = true
			amounts[i] = caps[i]
			remaining -= caps[i]
		}
	}
}

// greater reports whether a × b > c × d for non-negative a, b, c, d, without overflow.
func greater(a, b, c, d int64) bool {
	h1, l1 := bits.Mul64(uint64(a), uint64(b))
	h2, l2 := bits.Mul64(uint64(c), uint64(d))
	return h1 > h2 || (h1 == h2 && l1 > l2)
}
