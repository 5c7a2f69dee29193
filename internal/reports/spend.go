package reports

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/passnum/passnum/internal/auth"
	"github.com/passnum/passnum/internal/fault"
	"github.com/passnum/passnum/ledger"
)

// MaxRows bounds the rows of a report returned in one answer (Spend). The CSV export has no
// bound: it streams.
const MaxRows = 20000

// Measures are a report row's figures.
type Measures struct {
	BooksIssued       int64
	BooksHandedOut    int64
	BooksStarted      int64
	BooksTargetPublic int64
	VouchersRedeemed  int64 // net of reversals
	MinutesDelivered  int64 // net of reversals
	OwedCents         int64 // value of the vouchers used: redeemed net of reversals
	PaidCents         int64 // paid to sites
	ExpiredCents      int64
	ReturnedCents     int64
	// FunderShareCents is filled when the report is grouped or filtered by funder: the
	// funder's share of OwedCents, ceilings applied (see the package documentation).
	FunderShareCents int64
}

// TargetPublicShareBps is the share of books handed out that went to the target public, in
// basis points, rounded down; 0 when no book was handed out.
func (m Measures) TargetPublicShareBps() int32 {
	if m.BooksHandedOut <= 0 {
		return 0
	}
	return int32(m.BooksTargetPublic * 10000 / m.BooksHandedOut)
}

// additive lists the measures that are split between funders by share.
func (m *Measures) additive() []*int64 {
	return []*int64{&m.BooksIssued, &m.BooksHandedOut, &m.BooksStarted, &m.BooksTargetPublic,
		&m.VouchersRedeemed, &m.MinutesDelivered, &m.OwedCents, &m.PaidCents, &m.ExpiredCents, &m.ReturnedCents}
}

func (m *Measures) add(o *Measures) {
	dst, src := m.additive(), o.additive()
	for i := range dst {
		*dst[i] += *src[i]
	}
	m.FunderShareCents += o.FunderShareCents
}

func (m *Measures) zero() bool {
	for _, v := range m.additive() {
		if *v != 0 {
			return false
		}
	}
	return m.FunderShareCents == 0
}

// Key is the values of a row's grouped dimensions; the others are zero.
type Key struct {
	Programme   uuid.UUID
	Funder      uuid.UUID
	Territory   string
	Distributor uuid.UUID
	Site        uuid.UUID
	Month       time.Time
}

// Row is one group of a report.
type Row struct {
	Key
	Measures
}

// Report is a computed spend report.
type Report struct {
	Query Query
	// Funders is true when the report is grouped or filtered by funder: figures are funder
	// parts and FunderShareCents is filled.
	Funders bool
	Rows    []Row // ordered by the grouped dimensions, in the order asked
	Total   Measures
}

// Service computes reports over the database of a ledger.
type Service struct {
	l *ledger.Ledger
}

// New returns the report service.
func New(l *ledger.Ledger) *Service { return &Service{l: l} }

// Spend computes a spend report for a caller, refusing one of more than MaxRows rows.
func (s *Service) Spend(ctx context.Context, scope Scope, q Query) (*Report, error) {
	var rep *Report
	err := s.l.RunInSnapshot(ctx, "report_spend", func(ctx context.Context, tx pgx.Tx) error {
		var err error
		rep, err = spend(ctx, tx, scope, q)
		return err
	})
	if err != nil {
		return nil, err
	}
	if len(rep.Rows) > MaxRows {
		return nil, fault.New(fault.ResourceExhausted, "REPORT_TOO_LARGE", fmt.Sprintf(
			"Ce rapport compte %d lignes, au-delà de %d : filtrez-le, regroupez-le moins finement ou exportez-le en CSV.",
			len(rep.Rows), MaxRows), "rows", strconv.Itoa(len(rep.Rows)))
	}
	return rep, nil
}

// dimColumn is the report_spend column of each dimension grouped in SQL (funders are split
// in Go).
var dimColumn = map[Dimension]string{
	Programme:   "a.programme_id",
	Territory:   "a.territory",
	Distributor: "a.distributor_id",
	Site:        "a.site_id",
	Month:       "a.month",
}

// measureSQL sums the aggregate columns into the Measures, in additive() order.
const measureSQL = `
	coalesce(sum(a.books_issued), 0)::bigint,
	coalesce(sum(a.books_handed_out), 0)::bigint,
	coalesce(sum(a.books_started), 0)::bigint,
	coalesce(sum(a.books_target_public), 0)::bigint,
	coalesce(sum(a.vouchers_redeemed - a.reversals), 0)::bigint,
	coalesce(sum(a.minutes - a.reversed_minutes), 0)::bigint,
	coalesce(sum(a.redeemed_cents - a.reversed_cents), 0)::bigint,
	coalesce(sum(a.paid_cents), 0)::bigint,
	coalesce(sum(a.expired_cents), 0)::bigint,
	coalesce(sum(a.returned_cents), 0)::bigint`

// scopeSQL is the one place where a caller's scope becomes SQL over report_spend a.
func scopeSQL(scope Scope, arg func(any) string) (string, error) {
	if err := scope.check(); err != nil {
		return "", err
	}
	switch scope.Role {
	case auth.RoleFunder:
		return "a.programme_id IN (SELECT f.programme_id FROM programme_funders f WHERE f.funder_id = " +
			arg(scope.Org) + ")", nil
	case auth.RoleDistributor:
		return "a.distributor_id = " + arg(scope.Org), nil
	case auth.RoleSite:
		return "a.site_id = " + arg(scope.Org), nil
	}
	return "true", nil
}

// spend computes a report in tx (a snapshot).
func spend(ctx context.Context, tx pgx.Tx, scope Scope, q Query) (*Report, error) {
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	scopeCond, err := scopeSQL(scope, arg)
	if err != nil {
		return nil, err
	}
	conds := []string{scopeCond}
	if q.Programme != uuid.Nil {
		conds = append(conds, "a.programme_id = "+arg(q.Programme))
	}
	if q.Funder != uuid.Nil {
		conds = append(conds, "a.programme_id IN (SELECT f.programme_id FROM programme_funders f WHERE f.funder_id = "+
			arg(q.Funder)+")")
	}
	if q.Territory != "" {
		conds = append(conds, "a.territory = "+arg(q.Territory))
	}
	if q.Distributor != uuid.Nil {
		conds = append(conds, "a.distributor_id = "+arg(q.Distributor))
	}
	if q.Site != uuid.Nil {
		conds = append(conds, "a.site_id = "+arg(q.Site))
	}
	if !q.From.IsZero() {
		conds = append(conds, "a.month >= "+arg(q.From)+"::date")
	}
	if !q.To.IsZero() {
		conds = append(conds, "a.month <= "+arg(q.To)+"::date")
	}

	funders := q.Funder != uuid.Nil || slices.Contains(q.GroupBy, Funder)
	var dims []Dimension // grouped in SQL
	for _, d := range q.GroupBy {
		if d != Funder {
			dims = append(dims, d)
		}
	}
	if funders && !slices.Contains(dims, Programme) {
		dims = append(dims, Programme) // shares are per programme
	}
	var sel, group []string
	for i, d := range dims {
		sel = append(sel, dimColumn[d])
		group = append(group, strconv.Itoa(i+1))
	}
	sel = append(sel, measureSQL)
	sql := "SELECT " + strings.Join(sel, ", ") + "\n  FROM report_spend a\n WHERE " + strings.Join(conds, "\n   AND ")
	if len(group) > 0 {
		sql += "\n GROUP BY " + strings.Join(group, ", ")
	}

	rows, err := tx.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("spend report: %w", err)
	}
	var groups []Row
	for rows.Next() {
		var r Row
		dest := make([]any, 0, len(dims)+10)
		for _, d := range dims {
			switch d {
			case Programme:
				dest = append(dest, &r.Programme)
			case Territory:
				dest = append(dest, &r.Territory)
			case Distributor:
				dest = append(dest, &r.Distributor)
			case Site:
				dest = append(dest, &r.Site)
			case Month:
				dest = append(dest, &r.Month)
			}
		}
		for _, m := range r.additive() {
			dest = append(dest, m)
		}
		if err := rows.Scan(dest...); err != nil {
			rows.Close()
			return nil, fmt.Errorf("spend report: %w", err)
		}
		r.Month = r.Month.UTC()
		groups = append(groups, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("spend report: %w", err)
	}

	rep := &Report{Query: q, Funders: funders}
	if funders {
		groups, err = funderParts(ctx, tx, q, groups)
		if err != nil {
			return nil, err
		}
	}
	for _, r := range groups {
		if r.zero() {
			continue
		}
		rep.Rows = append(rep.Rows, r)
		rep.Total.add(&r.Measures)
	}
	slices.SortFunc(rep.Rows, func(a, b Row) int { return compareKeys(q.GroupBy, a.Key, b.Key) })
	return rep, nil
}

// programmeShares are a programme's funders (by id, bytewise), their shares, and the weights
// of their part of the used value: their whole-programme amounts and, last, nobody's rest.
type programmeShares struct {
	funders []uuid.UUID
	shares  []int64
	used    []int64
}

// funderParts splits each group (grouped by programme among others) between the programme's
// funders and sums the parts by the asked dimensions.
func funderParts(ctx context.Context, tx pgx.Tx, q Query, groups []Row) ([]Row, error) {
	var progs []uuid.UUID
	for _, g := range groups {
		if !slices.Contains(progs, g.Programme) {
			progs = append(progs, g.Programme)
		}
	}
	if len(progs) == 0 {
		return nil, nil
	}
	shares := make(map[uuid.UUID]*programmeShares, len(progs))
	rows, err := tx.Query(ctx, `
		SELECT programme_id, funder_id, share_bps, coalesce(cap_cents, -1)
		  FROM programme_funders WHERE programme_id = ANY($1)`, progs)
	if err != nil {
		return nil, fmt.Errorf("spend report: funders: %w", err)
	}
	type funderRow struct {
		programme, funder uuid.UUID
		share, cap        int64
	}
	var frs []funderRow
	for rows.Next() {
		var f funderRow
		if err := rows.Scan(&f.programme, &f.funder, &f.share, &f.cap); err != nil {
			rows.Close()
			return nil, fmt.Errorf("spend report: funders: %w", err)
		}
		frs = append(frs, f)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("spend report: funders: %w", err)
	}
	slices.SortFunc(frs, func(a, b funderRow) int { return bytes.Compare(a.funder[:], b.funder[:]) })
	caps := make(map[uuid.UUID][]int64)
	for _, f := range frs {
		p := shares[f.programme]
		if p == nil {
			p = &programmeShares{}
			shares[f.programme] = p
		}
		p.funders = append(p.funders, f.funder)
		p.shares = append(p.shares, f.share)
		caps[f.programme] = append(caps[f.programme], f.cap)
	}

	// The used value of each programme over its whole life, whoever asks: the ceilings apply
	// to it.
	rows, err = tx.Query(ctx, `
		SELECT programme_id, sum(redeemed_cents - reversed_cents)::bigint
		  FROM report_spend WHERE programme_id = ANY($1) GROUP BY 1`, progs)
	if err != nil {
		return nil, fmt.Errorf("spend report: used value: %w", err)
	}
	used := make(map[uuid.UUID]int64, len(progs))
	for rows.Next() {
		var p uuid.UUID
		var u int64
		if err := rows.Scan(&p, &u); err != nil {
			rows.Close()
			return nil, fmt.Errorf("spend report: used value: %w", err)
		}
		used[p] = u
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("spend report: used value: %w", err)
	}
	for p, ps := range shares {
		if u := used[p]; u > 0 {
			amounts, rest := capped(u, ps.shares, caps[p])
			ps.used = append(amounts, rest)
		} else {
			ps.used = append(slices.Clone(ps.shares), 0)
		}
	}

	byFunder := slices.Contains(q.GroupBy, Funder)
	byProgramme := slices.Contains(q.GroupBy, Programme)
	out := make(map[Key]*Row)
	var order []Key
	for _, g := range groups {
		ps := shares[g.Programme]
		if ps == nil {
			return nil, fmt.Errorf("spend report: programme %s has no funder", g.Programme)
		}
		parts := make([][]int64, len(ps.funders))
		for i := range parts {
			parts[i] = make([]int64, 0, 10)
		}
		for _, m := range g.additive() {
			for i, p := range split(*m, ps.shares) {
				parts[i] = append(parts[i], p)
			}
		}
		owedShares := split(g.OwedCents, ps.used)
		for i, f := range ps.funders {
			if q.Funder != uuid.Nil && f != q.Funder {
				continue
			}
			k := g.Key
			if !byProgramme {
				k.Programme = uuid.Nil
			}
			if byFunder {
				k.Funder = f
			}
			r := out[k]
			if r == nil {
				r = &Row{Key: k}
				out[k] = r
				order = append(order, k)
			}
			for j, m := range r.additive() {
				*m += parts[i][j]
			}
			r.FunderShareCents += owedShares[i]
		}
	}
	res := make([]Row, 0, len(order))
	for _, k := range order {
		res = append(res, *out[k])
	}
	return res, nil
}

// compareKeys orders rows by the grouped dimensions, in the order asked.
func compareKeys(dims []Dimension, a, b Key) int {
	for _, d := range dims {
		var c int
		switch d {
		case Programme:
			c = bytes.Compare(a.Programme[:], b.Programme[:])
		case Funder:
			c = bytes.Compare(a.Funder[:], b.Funder[:])
		case Territory:
			c = strings.Compare(a.Territory, b.Territory)
		case Distributor:
			c = bytes.Compare(a.Distributor[:], b.Distributor[:])
		case Site:
			c = bytes.Compare(a.Site[:], b.Site[:])
		case Month:
			c = a.Month.Compare(b.Month)
		}
		if c != 0 {
			return c
		}
	}
	return 0
}
