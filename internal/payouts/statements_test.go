package payouts_test

import (
	"sync"
	"testing"

	"github.com/google/uuid"

	"github.com/passnum/passnum/internal/auth"
	"github.com/passnum/passnum/internal/fault"
	"github.com/passnum/passnum/internal/paging"
	"github.com/passnum/passnum/internal/payouts"
	"github.com/passnum/passnum/ledger"
)

func wantFault(t *testing.T, err error, reason string) *fault.Error {
	t.Helper()
	f, ok := fault.As(err)
	if !ok || f.Reason != reason {
		t.Fatalf("got %v, want fault %s", err, reason)
	}
	return f
}

// bySite indexes statements by site.
func bySite(t *testing.T, sts []payouts.Statement) map[uuid.UUID]payouts.Statement {
	t.Helper()
	m := make(map[uuid.UUID]payouts.Statement, len(sts))
	for _, st := range sts {
		if _, dup := m[st.Site]; dup {
			t.Fatalf("two statements for site %s", st.Site)
		}
		m[st.Site] = st
	}
	return m
}

func (w *world) get(id uuid.UUID) *payouts.Statement {
	w.t.Helper()
	st, err := w.svc.GetStatement(w.ctx, w.operator, id)
	if err != nil {
		w.t.Fatal(err)
	}
	return st
}

func (w *world) create(cutoff string) map[uuid.UUID]payouts.Statement {
	w.t.Helper()
	sts, err := w.svc.CreateStatements(w.ctx, w.operator, w.key(), date(cutoff))
	if err != nil {
		w.t.Fatal(err)
	}
	for _, st := range sts {
		if st.Status != payouts.StatusDraft || st.Cutoff != date(cutoff) {
			w.t.Fatalf("new statement %s: status %s cutoff %s", st.Number, st.Status, st.Cutoff)
		}
	}
	return bySite(w.t, sts)
}

func (w *world) approve(id uuid.UUID) {
	w.t.Helper()
	if _, err := w.svc.ApproveStatement(w.ctx, w.operator, w.key(), id); err != nil {
		w.t.Fatal(err)
	}
}

func (w *world) pay(id uuid.UUID, ref, on string) payouts.Statement {
	w.t.Helper()
	st, err := w.svc.MarkStatementPaid(w.ctx, w.operator, w.key(), id, ref, date(on))
	if err != nil {
		w.t.Fatal(err)
	}
	return st
}

// lineKey names a line by what it pays.
type lineKey struct {
	kind  string
	code  int64
	round int16
}

func linesOf(st *payouts.Statement) map[lineKey]int64 {
	m := make(map[lineKey]int64, len(st.Lines))
	for _, l := range st.Lines {
		m[lineKey{l.Kind, int64(l.VoucherCode), l.Round}] = l.AmountCents
	}
	return m
}

func wantLines(t *testing.T, st *payouts.Statement, want map[lineKey]int64) {
	t.Helper()
	got := linesOf(st)
	if len(got) != len(want) || len(st.Lines) != len(want) {
		t.Fatalf("statement %s: %d lines %v, want %v", st.Number, len(st.Lines), got, want)
	}
	var sum int64
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("statement %s: line %v is %d, want %d", st.Number, k, got[k], v)
		}
		sum += v
	}
	if st.TotalCents != sum || st.LineCount != int32(len(want)) {
		t.Fatalf("statement %s: total %d over %d lines, want %d over %d", st.Number, st.TotalCents, st.LineCount, sum, len(want))
	}
	for i, l := range st.Lines {
		if l.No != int32(i+1) {
			t.Fatalf("statement %s: line %d numbered %d", st.Number, i+1, l.No)
		}
	}
}

func red(r redemption) lineKey { return lineKey{payouts.KindRedemption, int64(r.code), r.round} }
func rev(r redemption) lineKey { return lineKey{payouts.KindReversal, int64(r.code), r.round} }

// A whole month, and the next: redemptions at three sites in two programmes, statements
// created, one rejected, the others paid; the next month carries the clawback of a paid
// redemption and the rejected lines, and every figure reconciles with the ledger.
func TestWholeMonth(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	state, dept := w.funder("État (ANCT)"), w.funder("Département de la Drôme")
	p1 := w.programme("Drôme 2026", 1000, 10, "2026-12-31", share{state, 5000}, share{dept, 5000})
	p2 := w.programme("Valence 2026", 2000, 5, "2026-12-31", share{dept, 10000})
	w.fund(p1, state, 104000)
	w.fund(p1, dept, 104000)
	w.fund(p2, dept, 52000)
	b1 := w.order(p1, 2)
	b2 := w.order(p2, 1)
	for _, b := range b1 {
		w.handOut(p1, b)
	}
	w.handOut(p2, b2[0])
	siteA, siteB, siteC := w.site("Espace numérique de Crest", 0), w.site("Médiathèque de Die", 1), w.site("France services Nyons", 2)

	// November.
	a1 := w.redeem(b1[0].codes[0], siteA, "2026-11-03")
	a2 := w.redeem(b1[0].codes[1], siteA, "2026-11-05")
	a3 := w.redeem(b1[0].codes[2], siteA, "2026-11-20")
	a4 := w.redeem(b2[0].codes[0], siteA, "2026-11-21")
	bb1 := w.redeem(b1[0].codes[3], siteB, "2026-11-10")
	bb2 := w.redeem(b1[0].codes[4], siteB, "2026-11-12")
	c1 := w.redeem(b1[1].codes[0], siteC, "2026-11-15")
	w.reverse(a2, "2026-11-25")                           // not paid yet: rides with its redemption
	late := w.redeem(b1[1].codes[1], siteC, "2026-12-01") // after the cut-off

	w.clock.set("2026-12-02")
	nov := w.create("2026-11-30")
	if len(nov) != 3 {
		t.Fatalf("%d statements for November, want 3", len(nov))
	}
	stA, stB, stC := w.get(nov[siteA].ID), w.get(nov[siteB].ID), w.get(nov[siteC].ID)
	wantLines(t, stA, map[lineKey]int64{red(a1): 1000, red(a2): 1000, rev(a2): -1000, red(a3): 1000, red(a4): 2000})
	wantLines(t, stB, map[lineKey]int64{red(bb1): 1000, red(bb2): 1000})
	wantLines(t, stC, map[lineKey]int64{red(c1): 1000})
	if stA.Number[:12] != "RLV-2026-11-" {
		t.Fatalf("number %q", stA.Number)
	}

	// Nothing is left for November: a second run makes nothing.
	if again := w.create("2026-11-30"); len(again) != 0 {
		t.Fatalf("second run made %d statements", len(again))
	}

	// C is rejected; A and B are approved, exported and paid.
	rejected, err := w.svc.RejectStatement(w.ctx, w.operator, w.key(), stC.ID, "IBAN du lieu à vérifier")
	if err != nil {
		t.Fatal(err)
	}
	if rejected.Status != payouts.StatusRejected || rejected.RejectionReason != "IBAN du lieu à vérifier" {
		t.Fatalf("rejected: %+v", rejected)
	}
	w.approve(stA.ID)
	w.approve(stB.ID)
	w.clock.set("2026-12-03")
	file, err := w.svc.ExportPaymentFile(w.ctx, w.operator, nil, date("2026-12-03"))
	if err != nil {
		t.Fatal(err)
	}
	if file.Transactions != 2 || file.ControlSumCents != stA.TotalCents+stB.TotalCents {
		t.Fatalf("payment file: %d transfers, %d cents", file.Transactions, file.ControlSumCents)
	}
	paidA := w.pay(stA.ID, "VIR-2026-12-03-001", "2026-12-03")
	w.pay(stB.ID, "VIR-2026-12-03-002", "2026-12-03")
	if paidA.Status != payouts.StatusPaid || len(paidA.Ledger) != 2 || paidA.PaymentMessageID != file.MessageID {
		t.Fatalf("paid statement: %+v", paidA)
	}

	// Per programme: A's P1 lines net 2000, its P2 line 2000.
	if got := w.balance(p1, ledger.SitePaid, siteA); got != 2000 {
		t.Fatalf("A paid in P1: %d", got)
	}
	if got := w.balance(p2, ledger.SitePaid, siteA); got != 2000 {
		t.Fatalf("A paid in P2: %d", got)
	}
	if got := w.balance(p1, ledger.SitePayable, siteA); got != 0 {
		t.Fatalf("A payable in P1: %d", got)
	}
	if got := w.balance(p1, ledger.SitePayable, siteC); got != 2000 { // c1 (rejected) and the late one
		t.Fatalf("C payable in P1: %d", got)
	}

	// December: B's paid redemption bb1 is reversed (clawback), B and C redeem again.
	w.reverse(bb1, "2026-12-05")
	bb3 := w.redeem(b1[1].codes[2], siteB, "2026-12-08")
	bb4 := w.redeem(b1[1].codes[3], siteB, "2026-12-09")
	bb5 := w.redeem(b2[0].codes[1], siteB, "2026-12-10")
	c2 := w.redeem(b1[1].codes[4], siteC, "2026-12-11")
	// A redeems the voucher reversed in November again (round 2).
	a2b := w.redeem(a2.code, siteA, "2026-12-12")
	if a2b.round != 2 {
		t.Fatalf("round %d", a2b.round)
	}

	w.clock.set("2027-01-04")
	dec := w.create("2026-12-31")
	if len(dec) != 3 {
		t.Fatalf("%d statements for December, want 3", len(dec))
	}
	decA, decB, decC := w.get(dec[siteA].ID), w.get(dec[siteB].ID), w.get(dec[siteC].ID)
	wantLines(t, decA, map[lineKey]int64{red(a2b): 1000})
	wantLines(t, decB, map[lineKey]int64{rev(bb1): -1000, red(bb3): 1000, red(bb4): 1000, red(bb5): 2000})
	wantLines(t, decC, map[lineKey]int64{red(c1): 1000, red(late): 1000, red(c2): 1000})
	for _, st := range []*payouts.Statement{decA, decB, decC} {
		w.approve(st.ID)
		w.pay(st.ID, "VIR-2027-01-"+st.Number[len(st.Number)-6:], "2027-01-04")
	}

	// Every site is paid in full: payable 0 everywhere, paid = sum of paid statements' lines.
	paid := map[uuid.UUID]map[uuid.UUID]int64{} // site → programme → cents
	for _, st := range []*payouts.Statement{stA, stB, decA, decB, decC} {
		for _, l := range st.Lines {
			if paid[st.Site] == nil {
				paid[st.Site] = map[uuid.UUID]int64{}
			}
			paid[st.Site][l.Programme] += l.AmountCents
		}
	}
	for _, site := range []uuid.UUID{siteA, siteB, siteC} {
		for _, p := range []*programme{p1, p2} {
			if got, want := w.balance(p, ledger.SitePaid, site), paid[site][p.id]; got != want {
				t.Errorf("site %s programme %s: paid %d, statements say %d", site, p.id, got, want)
			}
			if got := w.balance(p, ledger.SitePayable, site); got != 0 {
				t.Errorf("site %s programme %s: still payable %d", site, p.id, got)
			}
		}
	}
	// A site sees only its own statements.
	asB := auth.Principal{Subject: "b", Org: siteB, Role: auth.RoleSite}
	list, next, err := w.svc.ListStatements(w.ctx, asB, payouts.ListFilter{}, paging.Request{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || next != "" || list[0].ID != decB.ID || list[1].ID != stB.ID {
		t.Fatalf("site B lists %d statements", len(list))
	}
	if _, err := w.svc.GetStatement(w.ctx, asB, decA.ID); !fault.Is(err, "STATEMENT_NOT_FOUND") {
		t.Fatalf("site B reads site A's statement: %v", err)
	}
	if _, _, err := w.svc.ListStatements(w.ctx, asB, payouts.ListFilter{Site: siteA}, paging.Request{}); !fault.Is(err, "OBJECT_NOT_ALLOWED") {
		t.Fatalf("site B lists site A's statements: %v", err)
	}

	for _, p := range []*programme{p1, p2} {
		rep, err := w.l.Verify(w.ctx, p.id)
		if err != nil {
			t.Fatal(err)
		}
		if !rep.OK {
			t.Fatalf("ledger verification of %s: %+v", p.id, rep.Checks)
		}
	}
}

// A site whose lines would net to zero or less gets no statement; its clawback waits for the
// next statement with a positive net.
func TestNonPositiveNetCarriedOver(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	state := w.funder("État")
	p := w.programme("Drôme", 1000, 10, "2026-12-31", share{state, 10000})
	w.fund(p, state, 104000)
	b := w.order(p, 1)[0]
	w.handOut(p, b)
	site := w.site("Tiers-lieu", 0)

	r1 := w.redeem(b.codes[0], site, "2026-10-10")
	w.clock.set("2026-11-02")
	oct := w.create("2026-10-31")
	w.approve(oct[site].ID)
	w.pay(oct[site].ID, "VIR-1", "2026-11-02")

	w.reverse(r1, "2026-11-05")
	w.clock.set("2026-12-01")
	if nov := w.create("2026-11-30"); len(nov) != 0 {
		t.Fatalf("a statement with a negative net was made: %+v", nov)
	}
	if got := w.balance(p, ledger.SitePayable, site); got != -1000 {
		t.Fatalf("payable %d, want the clawback -1000", got)
	}

	r2 := w.redeem(b.codes[1], site, "2026-12-03")
	r3 := w.redeem(b.codes[2], site, "2026-12-04")
	w.clock.set("2027-01-02")
	dec := w.create("2026-12-31")
	st := w.get(dec[site].ID)
	wantLines(t, st, map[lineKey]int64{rev(r1): -1000, red(r2): 1000, red(r3): 1000})
	w.approve(st.ID)
	w.pay(st.ID, "VIR-2", "2027-01-02")
	if got := w.balance(p, ledger.SitePaid, site); got != 2000 {
		t.Fatalf("paid %d, want 2000", got)
	}
	if got := w.balance(p, ledger.SitePayable, site); got != 0 {
		t.Fatalf("payable %d, want 0", got)
	}
}

// A reversal waits while its redemption is on a live unpaid statement; rejecting that
// statement puts both in the pool and they ride together.
func TestReversalWaitsForItsRedemption(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	state := w.funder("État")
	p := w.programme("Drôme", 1000, 10, "2026-12-31", share{state, 10000})
	w.fund(p, state, 104000)
	b := w.order(p, 1)[0]
	w.handOut(p, b)
	site := w.site("Tiers-lieu", 0)
	r1 := w.redeem(b.codes[0], site, "2026-10-10")
	r2 := w.redeem(b.codes[1], site, "2026-10-11")
	w.clock.set("2026-11-02")
	oct := w.create("2026-10-31")
	w.approve(oct[site].ID)

	w.reverse(r1, "2026-11-03")
	r3 := w.redeem(b.codes[2], site, "2026-11-04")
	w.clock.set("2026-11-05")
	nov := w.create("2026-11-04")
	wantLines(t, w.get(nov[site].ID), map[lineKey]int64{red(r3): 1000}) // the reversal waits

	if _, err := w.svc.RejectStatement(w.ctx, w.operator, w.key(), oct[site].ID, "erreur de saisie"); err != nil {
		t.Fatal(err)
	}
	next := w.create("2026-11-04")
	wantLines(t, w.get(next[site].ID), map[lineKey]int64{red(r1): 1000, rev(r1): -1000, red(r2): 1000})
}

func TestStatementActionsRefused(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	state := w.funder("État")
	p := w.programme("Drôme", 1000, 10, "2026-12-31", share{state, 10000})
	w.fund(p, state, 104000)
	b := w.order(p, 1)[0]
	w.handOut(p, b)
	site := w.site("Tiers-lieu", 0)
	w.redeem(b.codes[0], site, "2026-11-10")
	w.clock.set("2026-12-01")

	if _, err := w.svc.CreateStatements(w.ctx, w.operator, w.key(), date("2026-12-02")); !fault.Is(err, "CUTOFF_IN_FUTURE") {
		t.Fatalf("future cut-off: %v", err)
	}
	asSite := auth.Principal{Subject: "s", Org: site, Role: auth.RoleSite}
	if _, err := w.svc.CreateStatements(w.ctx, asSite, w.key(), date("2026-11-30")); !fault.Is(err, "ROLE_NOT_ALLOWED") {
		t.Fatalf("site creates statements: %v", err)
	}
	if _, err := w.svc.CreateStatements(w.ctx, w.operator, "", date("2026-11-30")); !fault.Is(err, "IDEMPOTENCY_KEY_REQUIRED") {
		t.Fatalf("no key: %v", err)
	}

	key := w.key()
	first, err := w.svc.CreateStatements(w.ctx, w.operator, key, date("2026-11-30"))
	if err != nil {
		t.Fatal(err)
	}
	replay, err := w.svc.CreateStatements(w.ctx, w.operator, key, date("2026-11-30"))
	if err != nil || len(replay) != 1 || replay[0].ID != first[0].ID {
		t.Fatalf("replay: %v %+v", err, replay)
	}
	if _, err := w.svc.CreateStatements(w.ctx, w.operator, key, date("2026-11-29")); !fault.Is(err, "IDEMPOTENCY_KEY_REUSED") {
		t.Fatalf("key reused: %v", err)
	}
	id := first[0].ID

	_, err = w.svc.MarkStatementPaid(w.ctx, w.operator, w.key(), id, "VIR-1", date("2026-12-01"))
	wantFault(t, err, "STATEMENT_NOT_APPROVED")
	_, err = w.svc.RejectStatement(w.ctx, w.operator, w.key(), id, "  ")
	wantFault(t, err, "REJECTION_REASON_REQUIRED")
	_, err = w.svc.ApproveStatement(w.ctx, w.operator, w.key(), uuid.New())
	wantFault(t, err, "STATEMENT_NOT_FOUND")

	w.approve(id)
	_, err = w.svc.ApproveStatement(w.ctx, w.operator, w.key(), id)
	wantFault(t, err, "STATEMENT_NOT_DRAFT")
	_, err = w.svc.MarkStatementPaid(w.ctx, w.operator, w.key(), id, "", date("2026-12-01"))
	wantFault(t, err, "INVALID_BANK_REFERENCE")
	_, err = w.svc.MarkStatementPaid(w.ctx, w.operator, w.key(), id, "VIR-1", date("2026-12-02"))
	wantFault(t, err, "PAID_ON_IN_FUTURE")
	_, err = w.svc.MarkStatementPaid(w.ctx, w.operator, w.key(), id, "VIR-1", date("2026-11-29"))
	wantFault(t, err, "PAID_ON_BEFORE_CUTOFF")

	payKey := w.key()
	paid, err := w.svc.MarkStatementPaid(w.ctx, w.operator, payKey, id, "VIR-1", date("2026-12-01"))
	if err != nil {
		t.Fatal(err)
	}
	again, err := w.svc.MarkStatementPaid(w.ctx, w.operator, payKey, id, "VIR-1", date("2026-12-01"))
	if err != nil || !again.PaidAt.Equal(paid.PaidAt) || len(again.Ledger) != 1 || again.Ledger[0] != paid.Ledger[0] {
		t.Fatalf("replayed payment: %v %+v", err, again)
	}
	if got := w.balance(p, ledger.SitePaid, site); got != 1000 {
		t.Fatalf("paid twice? site paid %d", got)
	}
	_, err = w.svc.MarkStatementPaid(w.ctx, w.operator, w.key(), id, "VIR-1", date("2026-12-01"))
	wantFault(t, err, "STATEMENT_NOT_APPROVED")
	_, err = w.svc.RejectStatement(w.ctx, w.operator, w.key(), id, "trop tard")
	wantFault(t, err, "STATEMENT_NOT_REJECTABLE")
}

func TestListStatementsPages(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	state := w.funder("État")
	p := w.programme("Drôme", 1000, 10, "2026-12-31", share{state, 10000})
	w.fund(p, state, 104000)
	b := w.order(p, 1)[0]
	w.handOut(p, b)
	var sites []uuid.UUID
	for i := range 5 {
		site := w.site("Lieu", i)
		sites = append(sites, site)
		w.redeem(b.codes[i], site, "2026-11-10")
	}
	w.clock.set("2026-12-01")
	w.create("2026-11-30")

	var seen []uuid.UUID
	page := paging.Request{Size: 2}
	for {
		sts, next, err := w.svc.ListStatements(w.ctx, w.operator, payouts.ListFilter{Status: payouts.StatusDraft}, page)
		if err != nil {
			t.Fatal(err)
		}
		for _, st := range sts {
			seen = append(seen, st.ID)
		}
		if next == "" {
			break
		}
		page.Token = next
	}
	if len(seen) != 5 {
		t.Fatalf("paged through %d statements, want 5", len(seen))
	}
	for i := 1; i < len(seen); i++ {
		if seen[i].String() >= seen[i-1].String() {
			t.Fatalf("not newest first: %v", seen)
		}
	}
	sts, _, err := w.svc.ListStatements(w.ctx, w.operator, payouts.ListFilter{Site: sites[3]}, paging.Request{})
	if err != nil || len(sts) != 1 || sts[0].Site != sites[3] {
		t.Fatalf("filter by site: %v %+v", err, sts)
	}
	sts, _, err = w.svc.ListStatements(w.ctx, w.operator, payouts.ListFilter{Status: payouts.StatusPaid}, paging.Request{})
	if err != nil || len(sts) != 0 {
		t.Fatalf("filter by status: %v %+v", err, sts)
	}
	_, _, err = w.svc.ListStatements(w.ctx, w.operator, payouts.ListFilter{Status: "lost"}, paging.Request{})
	wantFault(t, err, "INVALID_STATUS")
	_, _, err = w.svc.ListStatements(w.ctx, w.operator, payouts.ListFilter{}, paging.Request{Token: "%%"})
	wantFault(t, err, "INVALID_PAGE_TOKEN")
}

// Concurrent runs and payments with different keys never put a line on two statements nor
// pay a statement twice.
func TestConcurrentRunsAndPayments(t *testing.T) {
	t.Parallel()
	w := newWorld(t)
	state := w.funder("État")
	p := w.programme("Drôme", 1000, 10, "2026-12-31", share{state, 10000})
	w.fund(p, state, 104000)
	b := w.order(p, 1)[0]
	w.handOut(p, b)
	var sites []uuid.UUID
	for i := range 4 {
		site := w.site("Lieu", i)
		sites = append(sites, site)
		w.redeem(b.codes[2*i], site, "2026-11-10")
		w.redeem(b.codes[2*i+1], site, "2026-11-11")
	}
	w.clock.set("2026-12-01")

	const runs = 4
	results := make([][]payouts.Statement, runs)
	errs := make([]error, runs)
	keys := make([]string, runs)
	for i := range keys {
		keys[i] = w.key()
	}
	var wg sync.WaitGroup
	for i := range runs {
		wg.Go(func() { results[i], errs[i] = w.svc.CreateStatements(w.ctx, w.operator, keys[i], date("2026-11-30")) })
	}
	wg.Wait()
	made := 0
	for i := range runs {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		made += len(results[i])
	}
	if made != len(sites) {
		t.Fatalf("%d statements made by %d concurrent runs, want %d", made, runs, len(sites))
	}

	all, _, err := w.svc.ListStatements(w.ctx, w.operator, payouts.ListFilter{}, paging.Request{})
	if err != nil {
		t.Fatal(err)
	}
	st := all[0]
	w.approve(st.ID)
	paidOK := make([]error, runs)
	for i := range keys {
		keys[i] = w.key()
	}
	for i := range runs {
		wg.Go(func() {
			_, paidOK[i] = w.svc.MarkStatementPaid(w.ctx, w.operator, keys[i], st.ID, "VIR-1", date("2026-12-01"))
		})
	}
	wg.Wait()
	won := 0
	for _, err := range paidOK {
		switch {
		case err == nil:
			won++
		case !fault.Is(err, "STATEMENT_NOT_APPROVED"):
			t.Fatal(err)
		}
	}
	if won != 1 {
		t.Fatalf("statement paid %d times", won)
	}
	if got := w.balance(p, ledger.SitePaid, st.Site); got != 2000 {
		t.Fatalf("site paid %d, want 2000", got)
	}
}
