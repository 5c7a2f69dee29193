package payouts_test

import (
	"bytes"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/passnum/passnum/internal/auth"
	"github.com/passnum/passnum/internal/civil"
	"github.com/passnum/passnum/internal/payouts"
	"github.com/passnum/passnum/internal/programmes"
	"github.com/passnum/passnum/ledger"
)

// sortedFunders returns ids in the order close-outs list them.
func sortedFunders(ids ...uuid.UUID) []uuid.UUID {
	out := slices.Clone(ids)
	slices.SortFunc(out, func(a, b uuid.UUID) int { return bytes.Compare(a[:], b[:]) })
	return out
}

// Three funders at 33.34 / 33.33 / 33.33 %, awkward amounts: expiry returns exactly the
// unused value, pro rata to the net contributions, to the cent.
func TestExpireProgramme(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	f1, f2, f3 := w.funder("État"), w.funder("Département"), w.funder("Agglomération")
	p := w.programme("Drôme 2026", 1000, 10, "2026-12-31", share{f1, 3334}, share{f2, 3333}, share{f3, 3333})
	paidIn := map[uuid.UUID]int64{f1: 34_668, f2: 34_667, f3: 34_666}
	fees := map[uuid.UUID]int64{}
	for _, f := range []uuid.UUID{f1, f2, f3} {
		fees[f] = w.fund(p, f, paidIn[f])
	}
	// 4 % on top: ⌊34 668 × 400 / 10 400⌋ = 1 333 each, so net contributions of 33 335,
	// 33 334 and 33 333: 100 002 cents of budget.
	if fees[f1] != 1333 || fees[f2] != 1333 || fees[f3] != 1333 {
		t.Fatalf("fees %v", fees)
	}
	bs := w.order(p, 7) // 70 000 issued, 30 002 left unissued
	for _, b := range bs[:5] {
		w.handOut(p, b)
	}
	site := w.site("Médiathèque", 0)
	n := 0
	redeem := func(day string) {
		w.redeem(bs[n/10].codes[n%10], site, day)
		n++
	}
	for range 13 {
		redeem("2026-12-10")
	}
	redeem("2026-12-28") // after the cut-off below: still owed at close-out
	redeem("2026-12-29")
	w.clock.set("2027-01-05")
	st := w.create("2026-12-27")[site]
	w.approve(st.ID)
	w.pay(st.ID, "VIR-1", "2027-01-05")
	// One voucher held by a site on the last day.
	w.clock.set("2027-01-31")
	if _, err := w.progs.HoldVoucher(w.ctx, asSite(site), w.key(), programmes.HoldSpec{Code: bs[2].codes[5].String()}); err != nil {
		t.Fatal(err)
	}

	w.clock.set("2027-01-31") // the last day of grace
	_, err := w.svc.ExpireProgramme(w.ctx, w.operator, w.key(), p.id)
	f := wantFault(t, err, "PROGRAMME_NOT_YET_EXPIRABLE")
	if f.Metadata["expirable_from"] != "2027-02-01" {
		t.Fatalf("expirable from %q", f.Metadata["expirable_from"])
	}

	w.clock.set("2027-02-01")
	key := w.key()
	got, err := w.svc.ExpireProgramme(w.ctx, w.operator, key, p.id)
	if err != nil {
		t.Fatal(err)
	}
	// 70 vouchers issued, 15 redeemed: 55 expire (35 available, 20 in stock), worth 55 000.
	// Returned: 30 002 unissued + 55 000 expired = 85 002.
	if got.VouchersExpired != 55 || got.BooksExpired != 7 || got.ExpiredCents != 55_000 || got.ReturnedCents != 85_002 {
		t.Fatalf("expiry: %+v", got)
	}
	// 85 002 × 33 335 / 100 002 = 28 334.85, × 33 334 / 100 002 = 28 334 exactly and
	// × 33 333 / 100 002 = 28 333.15: the floors sum to 85 001 and the cent left goes to the
	// largest remainder, f1.
	wantReturned := map[uuid.UUID]int64{f1: 28_335, f2: 28_334, f3: 28_333}
	var returned int64
	for _, fu := range []uuid.UUID{f1, f2, f3} {
		if b := w.balance(p, ledger.FunderReturned, fu); b != wantReturned[fu] {
			t.Errorf("funder %s: returned %d, want %d", fu, b, wantReturned[fu])
		}
		returned += w.balance(p, ledger.FunderReturned, fu)
	}
	if returned != 85_002 || w.balance(p, ledger.Unissued, uuid.Nil) != 0 || w.balance(p, ledger.Outstanding, uuid.Nil) != 0 {
		t.Fatalf("returned %d; unissued %d, outstanding %d left", returned,
			w.balance(p, ledger.Unissued, uuid.Nil), w.balance(p, ledger.Outstanding, uuid.Nil))
	}
	var active, expiredBooks, heldLeft int
	if err := w.db.App.QueryRow(w.ctx, `
		SELECT (SELECT count(*) FROM vouchers WHERE programme_id = $1 AND status IN ('in_stock', 'available')),
		       (SELECT count(*) FROM books WHERE programme_id = $1 AND status = 'expired' AND closed_at IS NOT NULL),
		       (SELECT count(*) FROM vouchers WHERE programme_id = $1 AND held_by IS NOT NULL)`, p.id).
		Scan(&active, &expiredBooks, &heldLeft); err != nil {
		t.Fatal(err)
	}
	if active != 0 || expiredBooks != 7 || heldLeft != 0 {
		t.Fatalf("after expiry: %d active vouchers, %d expired books, %d holds", active, expiredBooks, heldLeft)
	}
	// The reports count the expired value too: the 35 vouchers with rows and the 20 of the
	// two books never handed out, which have none (keyed codes).
	var reported, reportedInStock int64
	if err := w.db.App.QueryRow(w.ctx, `
		SELECT coalesce(sum(expired_cents), 0)::bigint,
		       coalesce(sum(expired_cents) FILTER (WHERE territory = ''), 0)::bigint
		  FROM report_spend WHERE programme_id = $1`, p.id).Scan(&reported, &reportedInStock); err != nil {
		t.Fatal(err)
	}
	if reported != 55_000 || reportedInStock != 20_000 {
		t.Fatalf("reports: %d expired, %d of it in stock; want 55 000 and 20 000", reported, reportedInStock)
	}

	// Close-outs: shares of 13 000 paid and 2 000 owed, split by the same rule.
	ids := sortedFunders(f1, f2, f3)
	if len(got.CloseOuts) != 3 {
		t.Fatalf("%d close-outs", len(got.CloseOuts))
	}
	var paidSum, owedSum int64
	for i, co := range got.CloseOuts {
		if co.Funder != ids[i] || co.PaidInCents != paidIn[co.Funder] || co.FeesCents != fees[co.Funder] ||
			co.ReturnedCents != wantReturned[co.Funder] {
			t.Fatalf("close-out %d: %+v", i, co)
		}
		paidSum += co.RedeemedPaidCents
		owedSum += co.OwedToSitesCents
		if co.RedeemedPaidCents < 4333 || co.RedeemedPaidCents > 4334 || co.OwedToSitesCents < 666 || co.OwedToSitesCents > 667 {
			t.Fatalf("close-out %d: paid share %d, owed share %d", i, co.RedeemedPaidCents, co.OwedToSitesCents)
		}
	}
	if paidSum != 13_000 || owedSum != 2_000 {
		t.Fatalf("close-outs: paid %d, owed %d", paidSum, owedSum)
	}
	// Everything paid in, net of fees, is accounted for.
	var net int64
	for _, fu := range []uuid.UUID{f1, f2, f3} {
		net += paidIn[fu] - fees[fu]
	}
	if net != paidSum+owedSum+returned {
		t.Fatalf("paid in net of fees %d ≠ paid %d + owed %d + returned %d", net, paidSum, owedSum, returned)
	}

	// Idempotent: the same key replays, another key returns the recorded outcome.
	for _, k := range []string{key, w.key()} {
		again, err := w.svc.ExpireProgramme(w.ctx, w.operator, k, p.id)
		if err != nil {
			t.Fatal(err)
		}
		if again.VouchersExpired != 55 || again.ExpiredCents != 55_000 || again.ReturnedCents != 85_002 || len(again.CloseOuts) != 3 {
			t.Fatalf("second expiry: %+v", again)
		}
	}
	if b := w.balance(p, ledger.FunderReturned, f1); b != 28_335 {
		t.Fatalf("returned twice? %d", b)
	}

	// Sites are still paid after close-out.
	w.clock.set("2027-02-02")
	late := w.create("2027-01-31")[site]
	wantLines(t, w.get(late.ID), map[lineKey]int64{
		{payouts.KindRedemption, int64(bs[1].codes[3]), 1}: 1000, {payouts.KindRedemption, int64(bs[1].codes[4]), 1}: 1000})
	w.approve(late.ID)
	w.pay(late.ID, "VIR-2", "2027-02-02")
	all, err := w.svc.GetCloseOut(w.ctx, w.operator, p.id, uuid.Nil)
	if err != nil {
		t.Fatal(err)
	}
	if all.Funder != uuid.Nil || all.PaidInCents != 104_001 || all.FeesCents != 3_999 || all.RedeemedPaidCents != 15_000 ||
		all.OwedToSitesCents != 0 || all.ReturnedCents != 85_002 {
		t.Fatalf("programme close-out: %+v", all)
	}

	// A funder reads its own close-out only.
	asF2 := auth.Principal{Subject: "f2", Org: f2, Role: auth.RoleFunder}
	mine, err := w.svc.GetCloseOut(w.ctx, asF2, p.id, uuid.Nil)
	if err != nil {
		t.Fatal(err)
	}
	if mine.Funder != f2 || mine.ReturnedCents != 28_334 || mine.PaidInCents != 34_667 {
		t.Fatalf("f2's close-out: %+v", mine)
	}
	_, err = w.svc.GetCloseOut(w.ctx, asF2, p.id, f1)
	wantFault(t, err, "OBJECT_NOT_ALLOWED")
	_, err = w.svc.GetCloseOut(w.ctx, w.operator, p.id, w.funder("Autre"))
	wantFault(t, err, "FUNDER_NOT_IN_PROGRAMME")
	_, err = w.svc.GetCloseOut(w.ctx, w.operator, uuid.New(), uuid.Nil)
	wantFault(t, err, "PROGRAMME_NOT_FOUND")

	rep, err := w.l.Verify(w.ctx, p.id)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK {
		t.Fatalf("ledger verification after close-out: %+v", rep.Checks)
	}
}

// The smallest amounts: a one-cent face value and three equal funders of one cent each.
func TestExpireOneCent(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	f1, f2, f3 := w.funder("A"), w.funder("B"), w.funder("C")
	p := w.programme("Centimes", 1, 2, "2026-10-31", share{f1, 3334}, share{f2, 3333}, share{f3, 3333})
	for _, f := range []uuid.UUID{f1, f2, f3} {
		w.fund(p, f, 1)
	}
	b := w.order(p, 1)[0] // 2 vouchers of 1 cent: 1 cent left unissued
	w.handOut(p, b)
	site := w.site("Lieu", 0)
	w.redeem(b.codes[0], site, "2026-10-10")
	w.redeem(b.codes[1], site, "2026-10-11")

	w.clock.set("2026-12-02") // 31 days of grace after 31 October
	got, err := w.svc.ExpireProgramme(w.ctx, w.operator, w.key(), p.id)
	if err != nil {
		t.Fatal(err)
	}
	if got.VouchersExpired != 0 || got.ExpiredCents != 0 || got.ReturnedCents != 1 {
		t.Fatalf("expiry: %+v", got)
	}
	// Equal weights, equal remainders: the cent goes to the smallest funder id.
	ids := sortedFunders(f1, f2, f3)
	for i, id := range ids {
		want := int64(0)
		if i == 0 {
			want = 1
		}
		if b := w.balance(p, ledger.FunderReturned, id); b != want {
			t.Fatalf("funder %d: returned %d, want %d", i, b, want)
		}
	}
	if w.balance(p, ledger.Unissued, uuid.Nil) != 0 {
		t.Fatal("a cent left unissued")
	}
}

// A programme without any redemption gives everything back; nothing issued at all also works.
func TestExpireUnused(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	f1, f2 := w.funder("État"), w.funder("Ville")
	p := w.programme("Inutilisé", 1000, 10, "2026-10-31", share{f1, 5000}, share{f2, 5000})
	w.fund(p, f1, 52_000)
	w.fund(p, f2, 31_201) // paid less than its share: weights follow what was paid
	w.order(p, 3)
	empty := w.programme("Vide", 1000, 10, "2026-10-31", share{f1, 10000})
	w.clock.set("2026-12-02")
	got, err := w.svc.ExpireProgramme(w.ctx, w.operator, w.key(), p.id)
	if err != nil {
		t.Fatal(err)
	}
	if got.VouchersExpired != 30 || got.BooksExpired != 3 || got.ExpiredCents != 30_000 || got.ReturnedCents != 80_001 {
		t.Fatalf("expiry: %+v", got)
	}
	// Weights 50 000 and 30 001: 80 001 is returned exactly as paid in net of fees.
	if w.balance(p, ledger.FunderReturned, f1) != 50_000 || w.balance(p, ledger.FunderReturned, f2) != 30_001 {
		t.Fatalf("returned %d and %d", w.balance(p, ledger.FunderReturned, f1), w.balance(p, ledger.FunderReturned, f2))
	}

	got, err = w.svc.ExpireProgramme(w.ctx, w.operator, w.key(), empty.id)
	if err != nil || got.ReturnedCents != 0 || got.VouchersExpired != 0 {
		t.Fatalf("empty programme: %v %+v", err, got)
	}
	_, err = w.svc.ExpireProgramme(w.ctx, w.operator, w.key(), uuid.New())
	wantFault(t, err, "PROGRAMME_NOT_FOUND")
	asFunder := auth.Principal{Subject: "f", Org: f1, Role: auth.RoleFunder}
	_, err = w.svc.ExpireProgramme(w.ctx, asFunder, w.key(), p.id)
	wantFault(t, err, "ROLE_NOT_ALLOWED")
}

func TestListExpiring(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	f1, f2 := w.funder("État"), w.funder("Ville")
	progs := map[string]*programme{}
	for _, c := range []struct{ name, until string }{
		{"J+31", "2027-01-01"}, {"J+30", "2026-12-31"}, {"J+16", "2026-12-17"}, {"J+15", "2026-12-16"},
		{"J+8", "2026-12-09"}, {"J+7", "2026-12-08"}, {"J+1", "2026-12-02"}, {"J0", "2026-12-01"}, {"J-1", "2026-11-30"},
	} {
		funder := f1
		if c.name == "J+15" {
			funder = f2
		}
		progs[c.name] = w.programme(c.name, 1000, 10, c.until, share{funder, 10000})
	}
	// Books of J+7: 4 ordered, 3 handed out, 1 of them started.
	p := progs["J+7"]
	w.fund(p, f1, 52_000)
	bs := w.order(p, 4)
	for _, b := range bs[:3] {
		w.handOut(p, b)
	}
	site := w.site("Lieu", 0)
	w.redeem(bs[0].codes[0], site, "2026-11-20")
	w.redeem(bs[0].codes[1], site, "2026-11-21")

	w.clock.set("2026-12-01")
	got, err := w.svc.ListExpiring(w.ctx, w.operator, civil.DateOf(w.clock.now()))
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		name     string
		left, at int32
	}{{"J0", 0, 7}, {"J+1", 1, 7}, {"J+7", 7, 7}, {"J+8", 8, 15}, {"J+15", 15, 15}, {"J+16", 16, 30}, {"J+30", 30, 30}}
	if len(got) != len(want) {
		t.Fatalf("%d programmes expiring, want %d: %+v", len(got), len(want), got)
	}
	for i, e := range got {
		if e.Name != want[i].name || e.DaysLeft != want[i].left || e.Warning != want[i].at || e.Programme != progs[e.Name].id {
			t.Fatalf("expiring %d: %+v, want %+v", i, e, want[i])
		}
		if e.Name == "J+7" && (e.BooksIssued != 4 || e.BooksHandedOut != 3 || e.BooksNotHandedOut != 1 || e.BooksStarted != 1) {
			t.Fatalf("books of J+7: %+v", e)
		}
	}

	// A funder sees its own programmes; a distributor those it distributes.
	asF2 := auth.Principal{Subject: "f2", Org: f2, Role: auth.RoleFunder}
	mine, err := w.svc.ListExpiring(w.ctx, asF2, civil.DateOf(w.clock.now()))
	if err != nil || len(mine) != 1 || mine[0].Name != "J+15" {
		t.Fatalf("funder f2: %v %+v", err, mine)
	}
	mine, err = w.svc.ListExpiring(w.ctx, p.distributor, time.Time{})
	if err != nil || len(mine) != 1 || mine[0].Name != "J+7" || mine[0].BooksIssued != 4 {
		t.Fatalf("distributor: %v %+v", err, mine)
	}
	_, err = w.svc.ListExpiring(w.ctx, asSite(site), time.Time{})
	wantFault(t, err, "ROLE_NOT_ALLOWED")
}
