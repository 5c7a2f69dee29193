package reports

import (
	"bytes"
	"context"
	"fmt"
	"math/big"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/passnum/passnum/internal/auth"
	"github.com/passnum/passnum/internal/fault"
	"github.com/passnum/passnum/internal/testdb"
)

func TestMain(m *testing.M) { os.Exit(testdb.Main(m)) }

// brute holds figures recomputed from the raw rows (books, vouchers, redemptions, reversals,
// postings), by the finest key, without the aggregate tables.
type brute struct {
	base    map[Key]*Measures // Funder unused
	funders map[uuid.UUID][]bruteFunder
	fundsOf map[uuid.UUID][]uuid.UUID // funder -> programmes
}

type bruteFunder struct {
	id    uuid.UUID
	share int64
	cap   *int64
}

func monthOf(t time.Time) time.Time {
	t = t.In(paris)
	return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
}

func monthOfDate(d time.Time) time.Time {
	return time.Date(d.Year(), d.Month(), 1, 0, 0, 0, 0, time.UTC)
}

func query[T any](t *testing.T, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, sql string, scan func(pgx.Row) (T, error)) []T {
	t.Helper()
	rows, err := q.Query(context.Background(), sql)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (T, error) { return scan(r) })
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return out
}

func loadBrute(t *testing.T, db *testdb.DB) *brute {
	t.Helper()
	b := &brute{base: map[Key]*Measures{}, funders: map[uuid.UUID][]bruteFunder{}, fundsOf: map[uuid.UUID][]uuid.UUID{}}
	at := func(k Key) *Measures {
		m := b.base[k]
		if m == nil {
			m = &Measures{}
			b.base[k] = m
		}
		return m
	}
	type book struct {
		programme, distributor uuid.UUID
		number                 int64
		status, territory      string
		handedOut              *time.Time
		targetPublic           bool
		ordered                time.Time
	}
	type bookRef struct {
		p uuid.UUID
		n int64
	}
	books := map[bookRef]book{}
	for _, bk := range query(t, db.Owner, `
		SELECT b.programme_id, b.number, b.distributor_id, b.status, coalesce(b.territory, ''), b.handed_out_at,
		       coalesce(b.target_public, false), o.created_at
		  FROM books b JOIN book_orders o ON o.id = b.order_id`, func(r pgx.Row) (book, error) {
		var x book
		return x, r.Scan(&x.programme, &x.number, &x.distributor, &x.status, &x.territory, &x.handedOut, &x.targetPublic, &x.ordered)
	}) {
		books[bookRef{bk.programme, bk.number}] = bk
		if bk.status != "cancelled" {
			at(Key{Programme: bk.programme, Distributor: bk.distributor, Month: monthOf(bk.ordered)}).BooksIssued++
		}
		if bk.handedOut != nil {
			m := at(Key{Programme: bk.programme, Distributor: bk.distributor, Territory: bk.territory, Month: monthOf(*bk.handedOut)})
			m.BooksHandedOut++
			if bk.targetPublic {
				m.BooksTargetPublic++
			}
		}
	}
	type voucher struct {
		code, book, face int64
		programme        uuid.UUID
		status           string
	}
	vouchers := map[int64]voucher{}
	for _, v := range query(t, db.Owner, `SELECT code, programme_id, book_number, face_value_cents, status FROM vouchers`,
		func(r pgx.Row) (voucher, error) {
			var x voucher
			return x, r.Scan(&x.code, &x.programme, &x.book, &x.face, &x.status)
		}) {
		vouchers[v.code] = v
	}
	type programme struct {
		id         uuid.UUID
		validUntil time.Time
		grace      int
	}
	for _, p := range query(t, db.Owner, `SELECT id, valid_until, grace_days FROM programmes`, func(r pgx.Row) (programme, error) {
		var x programme
		return x, r.Scan(&x.id, &x.validUntil, &x.grace)
	}) {
		expiry := monthOfDate(p.validUntil.AddDate(0, 0, p.grace+1))
		for _, v := range vouchers {
			if v.programme != p.id || v.status != "expired" {
				continue
			}
			bk := books[bookRef{v.programme, v.book}]
			at(Key{Programme: p.id, Distributor: bk.distributor, Territory: bk.territory, Month: expiry}).ExpiredCents += v.face
		}
	}
	type redemption struct {
		code       int64
		round      int16
		programme  uuid.UUID
		site       uuid.UUID
		minutes    int64
		date       time.Time
		amount     int64
		redeemedAt time.Time
	}
	keyOf := func(r redemption) Key {
		v := vouchers[r.code]
		bk := books[bookRef{v.programme, v.book}]
		return Key{Programme: r.programme, Distributor: bk.distributor, Site: r.site, Territory: bk.territory, Month: monthOfDate(r.date)}
	}
	redemptions := map[[2]int64]redemption{}
	first := map[bookRef]redemption{}
	for _, r := range query(t, db.Owner, `
		SELECT voucher_code, round, programme_id, site_id, minutes, service_date, amount_cents, redeemed_at FROM redemptions`,
		func(row pgx.Row) (redemption, error) {
			var x redemption
			return x, row.Scan(&x.code, &x.round, &x.programme, &x.site, &x.minutes, &x.date, &x.amount, &x.redeemedAt)
		}) {
		redemptions[[2]int64{r.code, int64(r.round)}] = r
		m := at(keyOf(r))
		m.VouchersRedeemed++
		m.MinutesDelivered += r.minutes
		m.OwedCents += r.amount
		v := vouchers[r.code]
		ref := bookRef{v.programme, v.book}
		f, ok := first[ref]
		if !ok || r.redeemedAt.Before(f.redeemedAt) ||
			(r.redeemedAt.Equal(f.redeemedAt) && (r.code < f.code || (r.code == f.code && r.round < f.round))) {
			first[ref] = r
		}
	}
	for _, r := range first {
		at(keyOf(r)).BooksStarted++
	}
	type reversal struct {
		code   int64
		round  int16
		amount int64
	}
	for _, rv := range query(t, db.Owner, `SELECT voucher_code, round, amount_cents FROM redemption_reversals`,
		func(row pgx.Row) (reversal, error) {
			var x reversal
			return x, row.Scan(&x.code, &x.round, &x.amount)
		}) {
		r := redemptions[[2]int64{rv.code, int64(rv.round)}]
		m := at(keyOf(r))
		m.VouchersRedeemed--
		m.MinutesDelivered -= r.minutes
		m.OwedCents -= rv.amount
	}
	type paid struct {
		programme, site uuid.UUID
		on              time.Time
		code, amount    int64
	}
	for _, l := range query(t, db.Owner, `
		SELECT l.programme_id, s.site_id, s.paid_on, l.voucher_code, l.amount_cents
		  FROM statement_lines l JOIN statements s ON s.id = l.statement_id
		 WHERE s.status = 'paid'`, func(row pgx.Row) (paid, error) {
		var x paid
		return x, row.Scan(&x.programme, &x.site, &x.on, &x.code, &x.amount)
	}) {
		v := vouchers[l.code]
		bk := books[bookRef{v.programme, v.book}]
		at(Key{Programme: l.programme, Distributor: bk.distributor, Site: l.site, Territory: bk.territory,
			Month: monthOfDate(l.on)}).PaidCents += l.amount
	}
	type ret struct {
		programme uuid.UUID
		at        time.Time
		amount    int64
	}
	for _, r := range query(t, db.Owner, `
		SELECT p.programme_id, t.effective_at, p.amount
		  FROM postings p JOIN accounts a ON a.id = p.account_id
		  JOIN transactions t ON t.programme_id = p.programme_id AND t.seq = p.seq
		 WHERE a.kind = 'funder_returned'`, func(row pgx.Row) (ret, error) {
		var x ret
		return x, row.Scan(&x.programme, &x.at, &x.amount)
	}) {
		at(Key{Programme: r.programme, Month: monthOf(r.at)}).ReturnedCents += r.amount
	}
	type pf struct {
		programme uuid.UUID
		f         bruteFunder
	}
	for _, f := range query(t, db.Owner, `SELECT programme_id, funder_id, share_bps, cap_cents FROM programme_funders`,
		func(row pgx.Row) (pf, error) {
			var x pf
			return x, row.Scan(&x.programme, &x.f.id, &x.f.share, &x.f.cap)
		}) {
		b.funders[f.programme] = append(b.funders[f.programme], f.f)
		b.fundsOf[f.f.id] = append(b.fundsOf[f.f.id], f.programme)
	}
	for p := range b.funders {
		slices.SortFunc(b.funders[p], func(x, y bruteFunder) int { return bytes.Compare(x.id[:], y.id[:]) })
	}
	return b
}

// largestRemainder splits x by weights, in arbitrary precision (an independent version of split).
func largestRemainder(x int64, weights []int64) []int64 {
	out := make([]int64, len(weights))
	total := new(big.Int)
	for _, w := range weights {
		total.Add(total, big.NewInt(w))
	}
	if x == 0 || total.Sign() == 0 {
		return out
	}
	ax := new(big.Int).Abs(big.NewInt(x))
	type rem struct {
		i int
		r *big.Int
	}
	var rems []rem
	left := new(big.Int).Set(ax)
	for i, w := range weights {
		q, r := new(big.Int).QuoRem(new(big.Int).Mul(ax, big.NewInt(w)), total, new(big.Int))
		out[i] = q.Int64()
		left.Sub(left, q)
		rems = append(rems, rem{i, r})
	}
	sort.SliceStable(rems, func(a, b int) bool { return rems[a].r.Cmp(rems[b].r) > 0 })
	for k := int64(0); k < left.Int64(); k++ {
		out[rems[k].i]++
	}
	if x < 0 {
		for i := range out {
			out[i] = -out[i]
		}
	}
	return out
}

// wholeAmounts is the whole-programme amount of each funder, one ceiling at a time (the
// funder furthest over its ceiling first), then the rest nobody takes.
func wholeAmounts(used int64, fs []bruteFunder) ([]int64, int64) {
	fixed := make([]bool, len(fs))
	out := make([]int64, len(fs))
	remaining := used
	for {
		var open int64
		for i, f := range fs {
			if !fixed[i] {
				open += f.share
			}
		}
		if open == 0 {
			return out, remaining
		}
		worst, worstOver := -1, new(big.Rat)
		for i, f := range fs {
			if fixed[i] || f.cap == nil {
				continue
			}
			exact := big.NewRat(remaining*f.share, open)
			over := new(big.Rat).Sub(exact, new(big.Rat).SetInt64(*f.cap))
			if over.Sign() > 0 && (worst < 0 || over.Cmp(worstOver) > 0) {
				worst, worstOver = i, over
			}
		}
		if worst < 0 {
			ws := make([]int64, len(fs))
			for i, f := range fs {
				if !fixed[i] {
					ws[i] = f.share
				}
			}
			for i, p := range largestRemainder(remaining, ws) {
				if !fixed[i] {
					out[i] = p
				}
			}
			return out, 0
		}
		fixed[worst] = true
		out[worst] = *fs[worst].cap
		remaining -= *fs[worst].cap
	}
}

func (b *brute) visible(scope Scope, k Key) bool {
	switch scope.Role {
	case auth.RoleFunder:
		return slices.Contains(b.fundsOf[scope.Org], k.Programme)
	case auth.RoleDistributor:
		return k.Distributor == scope.Org
	case auth.RoleSite:
		return k.Site == scope.Org
	}
	return true
}

func (b *brute) expect(scope Scope, q Query) map[Key]Measures {
	funders := q.Funder != uuid.Nil || slices.Contains(q.GroupBy, Funder)
	grouped := func(d Dimension) bool { return slices.Contains(q.GroupBy, d) }
	project := func(k Key, keepProgramme bool) Key {
		var out Key
		if grouped(Programme) || keepProgramme {
			out.Programme = k.Programme
		}
		if grouped(Territory) {
			out.Territory = k.Territory
		}
		if grouped(Distributor) {
			out.Distributor = k.Distributor
		}
		if grouped(Site) {
			out.Site = k.Site
		}
		if grouped(Month) {
			out.Month = k.Month
		}
		return out
	}
	groups := map[Key]*Measures{}
	for k, m := range b.base {
		switch {
		case !b.visible(scope, k),
			q.Programme != uuid.Nil && k.Programme != q.Programme,
			q.Funder != uuid.Nil && !slices.Contains(b.fundsOf[q.Funder], k.Programme),
			q.Territory != "" && k.Territory != q.Territory,
			q.Distributor != uuid.Nil && k.Distributor != q.Distributor,
			q.Site != uuid.Nil && k.Site != q.Site,
			!q.From.IsZero() && k.Month.Before(q.From),
			!q.To.IsZero() && k.Month.After(q.To):
			continue
		}
		g := project(k, funders)
		if groups[g] == nil {
			groups[g] = &Measures{}
		}
		groups[g].add(m)
	}
	out := map[Key]Measures{}
	addTo := func(k Key, m Measures) {
		cur := out[k]
		cur.add(&m)
		out[k] = cur
	}
	if !funders {
		for k, m := range groups {
			addTo(k, *m)
		}
	} else {
		used := map[uuid.UUID]int64{}
		for k, m := range b.base {
			used[k.Programme] += m.OwedCents
		}
		for k, m := range groups {
			fs := b.funders[k.Programme]
			shares := make([]int64, len(fs))
			for i, f := range fs {
				shares[i] = f.share
			}
			weights := append([]int64(nil), shares...)
			weights = append(weights, 0)
			if u := used[k.Programme]; u > 0 {
				amounts, rest := wholeAmounts(u, fs)
				weights = append(amounts, rest)
			}
			vals := []int64{m.BooksIssued, m.BooksHandedOut, m.BooksStarted, m.BooksTargetPublic, m.VouchersRedeemed,
				m.MinutesDelivered, m.OwedCents, m.PaidCents, m.ExpiredCents, m.ReturnedCents}
			parts := make([][]int64, len(vals))
			for j, v := range vals {
				parts[j] = largestRemainder(v, shares)
			}
			owed := largestRemainder(m.OwedCents, weights)
			for i, f := range fs {
				if q.Funder != uuid.Nil && f.id != q.Funder {
					continue
				}
				fk := k
				if !grouped(Programme) {
					fk.Programme = uuid.Nil
				}
				if grouped(Funder) {
					fk.Funder = f.id
				}
				addTo(fk, Measures{
					BooksIssued: parts[0][i], BooksHandedOut: parts[1][i], BooksStarted: parts[2][i],
					BooksTargetPublic: parts[3][i], VouchersRedeemed: parts[4][i], MinutesDelivered: parts[5][i],
					OwedCents: parts[6][i], PaidCents: parts[7][i], ExpiredCents: parts[8][i], ReturnedCents: parts[9][i],
					FunderShareCents: owed[i],
				})
			}
		}
	}
	for k, m := range out {
		if m == (Measures{}) {
			delete(out, k)
		}
	}
	return out
}

// check compares a report with the brute-force figures.
func (b *brute) check(t *testing.T, name string, scope Scope, q Query, rep *Report) {
	t.Helper()
	want := b.expect(scope, q)
	got := map[Key]Measures{}
	var total Measures
	for i, r := range rep.Rows {
		if _, dup := got[r.Key]; dup {
			t.Errorf("%s: row %+v twice", name, r.Key)
		}
		got[r.Key] = r.Measures
		total.add(&r.Measures)
		if i > 0 && !sortedKeys(q.GroupBy, rep.Rows[i-1].Key, r.Key) {
			t.Errorf("%s: rows %d and %d out of order", name, i-1, i)
		}
	}
	if total != rep.Total {
		t.Errorf("%s: total %+v, rows add up to %+v", name, rep.Total, total)
	}
	for k, w := range want {
		if g, ok := got[k]; !ok {
			t.Errorf("%s: missing row %s: want %+v", name, keyString(k), w)
		} else if g != w {
			t.Errorf("%s: row %s:\n got %+v\nwant %+v", name, keyString(k), g, w)
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s: unexpected row %s: %+v", name, keyString(k), g)
		}
	}
}

func sortedKeys(dims []Dimension, a, b Key) bool {
	for _, d := range dims {
		var less, greater bool
		switch d {
		case Programme:
			less, greater = a.Programme.String() < b.Programme.String(), a.Programme.String() > b.Programme.String()
		case Funder:
			less, greater = a.Funder.String() < b.Funder.String(), a.Funder.String() > b.Funder.String()
		case Territory:
			less, greater = a.Territory < b.Territory, a.Territory > b.Territory
		case Distributor:
			less, greater = a.Distributor.String() < b.Distributor.String(), a.Distributor.String() > b.Distributor.String()
		case Site:
			less, greater = a.Site.String() < b.Site.String(), a.Site.String() > b.Site.String()
		case Month:
			less, greater = a.Month.Before(b.Month), a.Month.After(b.Month)
		}
		if less {
			return true
		}
		if greater {
			return false
		}
	}
	return false
}

func keyString(k Key) string {
	var parts []string
	if k.Programme != uuid.Nil {
		parts = append(parts, "programme="+k.Programme.String()[:8])
	}
	if k.Funder != uuid.Nil {
		parts = append(parts, "funder="+k.Funder.String()[:8])
	}
	if k.Territory != "" {
		parts = append(parts, "territory="+k.Territory)
	}
	if k.Distributor != uuid.Nil {
		parts = append(parts, "distributor="+k.Distributor.String()[:8])
	}
	if k.Site != uuid.Nil {
		parts = append(parts, "site="+k.Site.String()[:8])
	}
	if !k.Month.IsZero() {
		parts = append(parts, "month="+k.Month.Format("2006-01"))
	}
	return "{" + strings.Join(parts, " ") + "}"
}

func builtWorld(t *testing.T, seed uint64) (*world, *Service, *brute) {
	t.Helper()
	w := newWorld(t, seed)
	w.build()
	return w, New(w.l), loadBrute(t, w.db)
}

func TestSpendMatchesRawRows(t *testing.T) {
	w, svc, b := builtWorld(t, 1)
	ctx := context.Background()
	p1, p2, p3 := w.programmes[0].id, w.programmes[1].id, w.programmes[2].id
	all := []Dimension{Programme, Funder, Territory, Distributor, Site, Month}
	cases := []struct {
		name  string
		scope Scope
		q     Query
	}{
		{"everything in one row", Everything, Query{}},
		{"by programme", Everything, Query{GroupBy: []Dimension{Programme}}},
		{"by month", Everything, Query{GroupBy: []Dimension{Month}}},
		{"by territory and month", Everything, Query{GroupBy: []Dimension{Territory, Month}}},
		{"by site then distributor", Everything, Query{GroupBy: []Dimension{Site, Distributor}}},
		{"every dimension", Everything, Query{GroupBy: all}},
		{"by funder", Everything, Query{GroupBy: []Dimension{Funder}}},
		{"by funder and programme", Everything, Query{GroupBy: []Dimension{Funder, Programme}}},
		{"capped State by month", Everything, Query{Filter: Filter{Funder: w.state}, GroupBy: []Dimension{Month}}},
		{"P1 by funder and site", Everything, Query{Filter: Filter{Programme: p1}, GroupBy: []Dimension{Funder, Site}}},
		{"P2 after close-out", Everything, Query{Filter: Filter{Programme: p2}, GroupBy: []Dimension{Month, Territory}}},
		{"P3 three funders", Everything, Query{Filter: Filter{Programme: p3}, GroupBy: []Dimension{Funder, Month}}},
		{"territory 07", Everything, Query{Filter: Filter{Territory: "07"}, GroupBy: []Dimension{Programme, Distributor}}},
		{"second quarter", Everything, Query{Filter: Filter{From: time.Date(2024, 4, 1, 0, 0, 0, 0, time.UTC),
			To: time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)}, GroupBy: []Dimension{Month, Programme}}},
		{"a distributor", Everything, Query{Filter: Filter{Distributor: w.distributors[0]}, GroupBy: []Dimension{Month}}},
		{"a site", Everything, Query{Filter: Filter{Site: w.sites[0]}, GroupBy: []Dimension{Programme, Month}}},
		{"funder scope", Scope{Role: auth.RoleFunder, Org: w.funders[1]}, Query{GroupBy: []Dimension{Programme, Funder}}},
		{"State scope", Scope{Role: auth.RoleFunder, Org: w.state}, Query{GroupBy: []Dimension{Programme, Month}}},
		{"distributor scope", Scope{Role: auth.RoleDistributor, Org: w.distributors[1]}, Query{GroupBy: []Dimension{Territory, Month}}},
		{"site scope", Scope{Role: auth.RoleSite, Org: w.sites[2]}, Query{GroupBy: []Dimension{Programme, Funder}}},
	}
	for _, c := range cases {
		rep, err := svc.Spend(ctx, c.scope, c.q)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		b.check(t, c.name, c.scope, c.q, rep)
	}

	rnd := rand.New(rand.NewPCG(7, 11))
	months := []time.Time{}
	for m := 1; m <= 14; m++ {
		months = append(months, time.Date(2024, time.Month(m), 1, 0, 0, 0, 0, time.UTC))
	}
	pick := func(ids []uuid.UUID) uuid.UUID { return ids[rnd.IntN(len(ids))] }
	funders := append([]uuid.UUID{w.state}, w.funders...)
	for i := range 300 {
		var scope Scope
		switch rnd.IntN(5) {
		case 0:
			scope = Scope{Role: auth.RoleFunder, Org: pick(funders)}
		case 1:
			scope = Scope{Role: auth.RoleDistributor, Org: pick(w.distributors)}
		case 2:
			scope = Scope{Role: auth.RoleSite, Org: pick(w.sites)}
		default:
			scope = Everything
		}
		var q Query
		if rnd.IntN(4) == 0 {
			q.Programme = pick(w.programmeIDs())
		}
		if rnd.IntN(5) == 0 {
			q.Funder = pick(funders)
		}
		if rnd.IntN(5) == 0 {
			q.Territory = []string{"07", "26", "33", "974", "2A"}[rnd.IntN(5)]
		}
		if rnd.IntN(5) == 0 {
			q.Distributor = pick(w.distributors)
		}
		if rnd.IntN(6) == 0 {
			q.Site = pick(w.sites)
		}
		if rnd.IntN(3) == 0 {
			q.From = months[rnd.IntN(len(months))]
		}
		if rnd.IntN(3) == 0 {
			q.To = months[rnd.IntN(len(months))]
			if q.To.Before(q.From) {
				q.From, q.To = q.To, q.From
			}
		}
		perm := rnd.Perm(len(all))
		for _, j := range perm[:rnd.IntN(5)] {
			q.GroupBy = append(q.GroupBy, all[j])
		}
		rep, err := svc.Spend(ctx, scope, q)
		if err != nil {
			t.Fatalf("random %d: %v", i, err)
		}
		b.check(t, fmt.Sprintf("random %d (%+v %+v)", i, scope, q), scope, q, rep)
	}
}

// TestWorldIsRich guards the test data: every measure and the State's ceiling must be
// exercised, or the comparisons above prove little.
func TestWorldIsRich(t *testing.T) {
	w, svc, _ := builtWorld(t, 2)
	rep, err := svc.Spend(context.Background(), Everything, Query{GroupBy: []Dimension{Programme, Funder}})
	if err != nil {
		t.Fatal(err)
	}
	tot := rep.Total
	for name, v := range map[string]int64{
		"issued": tot.BooksIssued, "handed out": tot.BooksHandedOut, "started": tot.BooksStarted,
		"target public": tot.BooksTargetPublic, "redeemed": tot.VouchersRedeemed, "minutes": tot.MinutesDelivered,
		"owed": tot.OwedCents, "paid": tot.PaidCents, "expired": tot.ExpiredCents, "returned": tot.ReturnedCents,
	} {
		if v <= 0 {
			t.Errorf("%s: %d, want some", name, v)
		}
	}
	var reversals int
	if err := w.db.Owner.QueryRow(context.Background(), `SELECT count(*) FROM redemption_reversals`).Scan(&reversals); err != nil {
		t.Fatal(err)
	}
	if reversals == 0 {
		t.Error("no reversal")
	}
	var clawbacks, unpaid int
	if err := w.db.Owner.QueryRow(context.Background(), `
		SELECT (SELECT count(*) FROM statement_lines l JOIN statements s ON s.id = l.statement_id
		         WHERE l.kind = 'reversal' AND s.status = 'paid'),
		       (SELECT count(*) FROM statements WHERE status = 'approved')`).Scan(&clawbacks, &unpaid); err != nil {
		t.Fatal(err)
	}
	if clawbacks == 0 || unpaid == 0 {
		t.Errorf("%d paid clawback lines and %d approved statements, want some of both", clawbacks, unpaid)
	}
	var p1State, p1Owed int64
	for _, r := range rep.Rows {
		if r.Programme == w.programmes[0].id {
			p1Owed += r.OwedCents
			if r.Funder == w.state {
				p1State = r.FunderShareCents
			}
		}
	}
	if p1State != 40_000 || p1Owed/2 <= 40_000 {
		t.Errorf("State's share of P1: %d of %d owed, want the 40 000 ceiling to bind", p1State, p1Owed)
	}
}

func TestScope(t *testing.T) {
	w, svc, _ := builtWorld(t, 3)
	ctx := context.Background()
	by := []Dimension{Programme, Distributor, Site, Month}

	fu := Scope{Role: auth.RoleFunder, Org: w.funders[1]} // funds P2 and P3 only
	rep, err := svc.Spend(ctx, fu, Query{GroupBy: by})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Rows) == 0 {
		t.Fatal("funder sees nothing")
	}
	for _, r := range rep.Rows {
		if r.Programme == w.programmes[0].id {
			t.Errorf("funder sees programme P1, which it does not fund: %+v", r)
		}
	}
	// Asking for another's programme narrows to nothing; it never widens.
	rep, err = svc.Spend(ctx, fu, Query{Filter: Filter{Programme: w.programmes[0].id}, GroupBy: by})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Rows) != 0 || rep.Total != (Measures{}) {
		t.Errorf("funder filtering on a programme it does not fund sees %d rows, total %+v", len(rep.Rows), rep.Total)
	}

	di := Scope{Role: auth.RoleDistributor, Org: w.distributors[0]}
	rep, err = svc.Spend(ctx, di, Query{GroupBy: by})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rep.Rows {
		if r.Distributor != w.distributors[0] {
			t.Errorf("distributor sees another's row: %+v", r)
		}
	}
	rep, err = svc.Spend(ctx, di, Query{Filter: Filter{Distributor: w.distributors[1]}})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Rows) != 0 {
		t.Errorf("distributor filtering on another sees %+v", rep.Rows)
	}

	si := Scope{Role: auth.RoleSite, Org: w.sites[1]}
	rep, err = svc.Spend(ctx, si, Query{GroupBy: by})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Rows) == 0 {
		t.Fatal("site sees nothing")
	}
	for _, r := range rep.Rows {
		if r.Site != w.sites[1] {
			t.Errorf("site sees another's row: %+v", r)
		}
		if r.BooksIssued != 0 || r.ReturnedCents != 0 {
			t.Errorf("site sees programme-wide figures: %+v", r)
		}
	}

	for _, bad := range []Scope{{Role: auth.RoleFunder}, {Role: "auditor", Org: uuid.New()}} {
		_, err := svc.Spend(ctx, bad, Query{})
		if f, ok := fault.As(err); !ok || f.Kind != fault.PermissionDenied {
			t.Errorf("scope %+v: %v, want a PermissionDenied fault", bad, err)
		}
	}
}

func TestParseRequest(t *testing.T) {
	id := uuid.New()
	q, err := Request{Programme: " " + id.String(), Territory: "2a", From: "2024-03", To: "2024-05-17",
		GroupBy: []Dimension{Month, Funder}}.Parse()
	if err != nil {
		t.Fatal(err)
	}
	if q.Programme != id || q.Territory != "2A" || !q.From.Equal(time.Date(2024, 3, 1, 0, 0, 0, 0, time.UTC)) ||
		!q.To.Equal(time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)) || !slices.Equal(q.GroupBy, []Dimension{Month, Funder}) {
		t.Errorf("parsed %+v", q)
	}
	for _, c := range []struct {
		r      Request
		reason string
	}{
		{Request{Programme: "P1"}, "INVALID_PROGRAMME_ID"},
		{Request{Site: nilID}, "INVALID_SITE_ID"},
		{Request{Territory: "20"}, "INVALID_TERRITORY"},
		{Request{From: "03/2024"}, "INVALID_FROM"},
		{Request{To: "2024-13"}, "INVALID_TO"},
		{Request{From: "2024-05", To: "2024-04"}, "INVALID_PERIOD"},
		{Request{GroupBy: []Dimension{Site, Site}}, "INVALID_GROUP_BY"},
		{Request{GroupBy: []Dimension{0}}, "INVALID_GROUP_BY"},
	} {
		_, err := c.r.Parse()
		f, ok := fault.As(err)
		if !ok || f.Kind != fault.Invalid || f.Reason != c.reason {
			t.Errorf("%+v: %v, want %s", c.r, err, c.reason)
		} else if f.Message == "" {
			t.Errorf("%+v: message %q is not for people", c.r, f.Message)
		}
	}
	if d, err := ParseDimension(" Month "); err != nil || d != Month {
		t.Errorf("ParseDimension: %v %v", d, err)
	}
	if _, err := ParseDimension("week"); !fault.Is(err, "INVALID_GROUP_BY") {
		t.Errorf("ParseDimension(week): %v", err)
	}
}

func TestSplit(t *testing.T) {
	rnd := rand.New(rand.NewPCG(3, 5))
	for range 5000 {
		n := 1 + rnd.IntN(5)
		ws := make([]int64, n)
		for i := range ws {
			ws[i] = rnd.Int64N(1 << uint(rnd.IntN(50)+1))
		}
		x := rnd.Int64N(1<<uint(rnd.IntN(62)+1)) - rnd.Int64N(1<<40)
		got, want := split(x, ws), largestRemainder(x, ws)
		if !slices.Equal(got, want) {
			t.Fatalf("split(%d, %v) = %v, want %v", x, ws, got, want)
		}
	}
	for range 2000 {
		n := 1 + rnd.IntN(4)
		fs := make([]bruteFunder, n)
		shares := make([]int64, n)
		caps := make([]int64, n)
		left := int64(10000)
		for i := range fs {
			s := left
			if i < n-1 {
				s = 1 + rnd.Int64N(left-int64(n-1-i))
			}
			left -= s
			shares[i], caps[i] = s, -1
			fs[i].share = s
			if rnd.IntN(2) == 0 {
				c := rnd.Int64N(1_000_000)
				caps[i], fs[i].cap = c, &c
			}
		}
		used := 1 + rnd.Int64N(3_000_000)
		got, gotRest := capped(used, shares, caps)
		want, wantRest := wholeAmounts(used, fs)
		if !slices.Equal(got, want) || gotRest != wantRest {
			t.Fatalf("capped(%d, %v, %v) = %v + %d, want %v + %d", used, shares, caps, got, gotRest, want, wantRest)
		}
	}
}
