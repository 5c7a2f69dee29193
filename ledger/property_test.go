package ledger_test

import (
	"context"
	"slices"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"pgregory.net/rapid"

	"github.com/passnum/passnum/ledger"
)

// voucherState is the model of one voucher.
type voucherState struct {
	code     int64
	redeemed bool
	round    int16
	site     uuid.UUID // of the live redemption
	txID     uuid.UUID // of the live redemption
}

// postedTx is the model of a transaction that may be reversed.
type postedTx struct {
	id       uuid.UUID
	postings []ledger.Posting
}

// ledgerModel is the in-memory model the database is compared with after every step.
type ledgerModel struct {
	e          *env
	p          *programme
	bal        map[ledger.AccountRef]int64
	vouchers   []voucherState
	reversible []postedTx // fundings and payouts not reversed yet
	reversed   []uuid.UUID
}

func (m *ledgerModel) apply(ps []ledger.Posting) {
	for _, p := range ps {
		m.bal[p.Account] += p.Amount * p.Account.Kind.NormalSide()
	}
}

// allows reports whether ps keeps every never-negative account at or above zero.
func (m *ledgerModel) allows(ps []ledger.Posting) bool {
	for _, p := range ps {
		if p.Account.Kind.NonNegative() && m.bal[p.Account]+p.Amount*p.Account.Kind.NormalSide() < 0 {
			return false
		}
	}
	return true
}

// run runs f in one database transaction.
func (m *ledgerModel) run(f func(ctx context.Context, tx pgx.Tx) error) error {
	return m.e.l.RunInTx(context.Background(), "test_model", f)
}

// postOne posts one entry in its own transaction.
func (m *ledgerModel) postOne(e ledger.Entry) (uuid.UUID, error) {
	var id uuid.UUID
	err := m.run(func(ctx context.Context, tx pgx.Tx) error {
		posted, err := m.e.l.Post(ctx, tx, e)
		if err == nil {
			id = posted[0].ID
		}
		return err
	})
	return id, err
}

// expectOverdraw fails unless err is the database refusing a negative balance.
func expectOverdraw(t *rapid.T, err error) {
	t.Helper()
	if pgCode(err) != "23514" || pgConstraint(err) != "accounts_balance_non_negative" {
		t.Fatalf("got %v, want accounts_balance_non_negative", err)
	}
}

func (m *ledgerModel) pickVoucher(t *rapid.T, redeemed bool) int {
	var idx []int
	for i, v := range m.vouchers {
		if v.redeemed == redeemed {
			idx = append(idx, i)
		}
	}
	if len(idx) == 0 {
		t.Skip("no such voucher")
	}
	return rapid.SampledFrom(idx).Draw(t, "voucher")
}

func (m *ledgerModel) fund(t *rapid.T) {
	f := rapid.SampledFrom(m.p.Funders).Draw(t, "funder")
	amount := rapid.Int64Range(1, 200_000).Draw(t, "amount")
	fee := rapid.Int64Range(0, amount/20).Draw(t, "fee")
	e := m.p.funding(f, amount, fee)
	id, err := m.postOne(e)
	if err != nil {
		t.Fatalf("fund: %v", err)
	}
	m.apply(e.Postings)
	m.reversible = append(m.reversible, postedTx{id: id, postings: e.Postings})
}

func (m *ledgerModel) issue(t *rapid.T) {
	books := rapid.IntRange(1, 3).Draw(t, "books")
	move := ledger.Move(m.p.unissued(), m.p.outstanding(), int64(books*m.p.PerBook)*m.p.FaceValue)
	var codes []int64
	err := m.run(func(ctx context.Context, tx pgx.Tx) error {
		var err error
		codes, err = m.p.issueBooks(ctx, m.e.l, tx, books)
		return err
	})
	if !m.allows(move) {
		expectOverdraw(t, err)
		return
	}
	if err != nil {
		t.Fatalf("issue: %v", err)
	}
	m.apply(move)
	for _, c := range codes {
		m.vouchers = append(m.vouchers, voucherState{code: c})
	}
}

func (m *ledgerModel) redeem(t *rapid.T) {
	i := m.pickVoucher(t, false)
	site := rapid.SampledFrom(m.p.Sites).Draw(t, "site")
	v := &m.vouchers[i]
	var (
		id    uuid.UUID
		round int16
	)
	err := m.run(func(ctx context.Context, tx pgx.Tx) error {
		var err error
		id, round, err = m.p.redeem(ctx, m.e.l, tx, v.code, site)
		return err
	})
	if err != nil {
		t.Fatalf("redeem: %v", err)
	}
	if round != v.round+1 {
		t.Fatalf("redeem: round %d after %d", round, v.round)
	}
	m.apply(ledger.Move(m.p.outstanding(), m.p.ref(ledger.SitePayable, site), m.p.FaceValue))
	v.redeemed, v.round, v.site, v.txID = true, round, site, id
}

func (m *ledgerModel) reverseRedemption(t *rapid.T) {
	v := &m.vouchers[m.pickVoucher(t, true)]
	err := m.run(func(ctx context.Context, tx pgx.Tx) error {
		return m.p.reverseRedemption(ctx, m.e.l, tx, v.code, v.round, v.site, v.txID)
	})
	if err != nil {
		t.Fatalf("reverse redemption: %v", err)
	}
	m.apply(ledger.Move(m.p.ref(ledger.SitePayable, v.site), m.p.outstanding(), m.p.FaceValue))
	m.reversed = append(m.reversed, v.txID)
	v.redeemed = false
}

// pay moves any amount from payable to paid: payable may go negative (a site paid ahead,
// recovered on its next statement).
func (m *ledgerModel) pay(t *rapid.T) {
	site := rapid.SampledFrom(m.p.Sites).Draw(t, "site")
	amount := rapid.Int64Range(1, 5_000).Draw(t, "amount")
	e := m.p.entry(ledger.KindPayout, ledger.Move(m.p.ref(ledger.SitePayable, site), m.p.ref(ledger.SitePaid, site), amount))
	id, err := m.postOne(e)
	if err != nil {
		t.Fatalf("pay: %v", err)
	}
	m.apply(e.Postings)
	m.reversible = append(m.reversible, postedTx{id: id, postings: e.Postings})
}

func (m *ledgerModel) giveBack(t *rapid.T) {
	left := m.bal[m.p.unissued()]
	if left == 0 {
		t.Skip("nothing unissued")
	}
	f := rapid.SampledFrom(m.p.Funders).Draw(t, "funder")
	e := m.p.entry(ledger.KindReturn, ledger.Move(m.p.unissued(), m.p.ref(ledger.FunderReturned, f),
		rapid.Int64Range(1, left).Draw(t, "amount")))
	if _, err := m.postOne(e); err != nil {
		t.Fatalf("return: %v", err)
	}
	m.apply(e.Postings)
}

// reverse reverses an earlier funding or payout with ReversalOf: refused when it would
// overdraw an account, as any other posting.
func (m *ledgerModel) reverse(t *rapid.T) {
	if len(m.reversible) == 0 {
		t.Skip("nothing to reverse")
	}
	i := rapid.IntRange(0, len(m.reversible)-1).Draw(t, "tx")
	orig := m.reversible[i]
	var rev ledger.Entry
	_, err := m.postOneBuilt(func(ctx context.Context, tx pgx.Tx) (ledger.Entry, error) {
		var err error
		rev, err = ledger.ReversalOf(ctx, tx, orig.id, m.p.Operator, map[string]string{"reason": "error"})
		return rev, err
	})
	want := make([]ledger.Posting, len(orig.postings))
	for j, p := range orig.postings {
		want[j] = ledger.Posting{Account: p.Account, Amount: -p.Amount}
	}
	if !m.allows(want) {
		expectOverdraw(t, err)
		return
	}
	if err != nil {
		t.Fatalf("reverse: %v", err)
	}
	if !samePostings(rev.Postings, want) || rev.Reverses != orig.id || rev.Kind != ledger.KindReversal {
		t.Fatalf("reversal of %s: %+v, want postings %+v", orig.id, rev, want)
	}
	m.apply(want)
	m.reversible = slices.Delete(m.reversible, i, i+1)
	m.reversed = append(m.reversed, orig.id)
}

// postOneBuilt builds an entry inside the transaction, then posts it.
func (m *ledgerModel) postOneBuilt(build func(ctx context.Context, tx pgx.Tx) (ledger.Entry, error)) (uuid.UUID, error) {
	var id uuid.UUID
	err := m.run(func(ctx context.Context, tx pgx.Tx) error {
		e, err := build(ctx, tx)
		if err != nil {
			return err
		}
		posted, err := m.e.l.Post(ctx, tx, e)
		if err == nil {
			id = posted[0].ID
		}
		return err
	})
	return id, err
}

// reverseAgain tries to reverse a transaction a second time: the database refuses.
func (m *ledgerModel) reverseAgain(t *rapid.T) {
	if len(m.reversed) == 0 {
		t.Skip("nothing reversed yet")
	}
	id := rapid.SampledFrom(m.reversed).Draw(t, "tx")
	_, err := m.postOneBuilt(func(ctx context.Context, tx pgx.Tx) (ledger.Entry, error) {
		return ledger.ReversalOf(ctx, tx, id, m.p.Operator, nil)
	})
	if pgCode(err) != "23505" || pgConstraint(err) != "transactions_one_reversal" {
		t.Fatalf("second reversal of %s: got %v, want transactions_one_reversal", id, err)
	}
}

// overdraw moves more than a never-negative account holds: refused, nothing changes.
func (m *ledgerModel) overdraw(t *rapid.T) {
	from := rapid.SampledFrom([]ledger.AccountRef{
		m.p.unissued(), m.p.outstanding(),
		m.p.ref(ledger.Fees, m.p.Funders[0]), m.p.ref(ledger.FunderReturned, m.p.Funders[0]),
		m.p.ref(ledger.SitePaid, m.p.Sites[0]),
	}).Draw(t, "from")
	amount := m.bal[from] + rapid.Int64Range(1, 10_000).Draw(t, "excess")
	_, err := m.postOne(m.p.entry(ledger.KindTransfer, ledger.Move(from, m.p.ref(ledger.SitePayable, m.p.Sites[0]), amount)))
	expectOverdraw(t, err)
}

// check compares every balance of the programme with the model.
func (m *ledgerModel) check(t *rapid.T) {
	got := balances(t, m.e.db.App, m.p.ID)
	for ref, cents := range got {
		if m.bal[ref] != cents {
			t.Fatalf("%s: database %d, model %d", ref, cents, m.bal[ref])
		}
	}
	for ref, cents := range m.bal {
		if _, ok := got[ref]; !ok && cents != 0 {
			t.Fatalf("%s: no account, model %d", ref, cents)
		}
	}
}

func samePostings(a, b []ledger.Posting) bool {
	key := func(ps []ledger.Posting) map[ledger.AccountRef]int64 {
		m := make(map[ledger.AccountRef]int64, len(ps))
		for _, p := range ps {
			m[p.Account] += p.Amount
		}
		return m
	}
	return len(a) == len(b) && mapsEqual(key(a), key(b))
}

// Random sequences of operations leave the database's balances equal to the model's after
// every step, and the ledger verifiable at the end. Each run uses a fresh programme in one
// database.
func TestLedgerMatchesModel(t *testing.T) {
	e := newEnv(t)
	rapid.Check(t, func(t *rapid.T) {
		m := &ledgerModel{e: e, p: newProgramme(t, e, 2, 2), bal: make(map[ledger.AccountRef]int64)}
		t.Repeat(map[string]func(*rapid.T){
			"fund":               m.fund,
			"issue":              m.issue,
			"redeem":             m.redeem,
			"reverse_redemption": m.reverseRedemption,
			"pay":                m.pay,
			"return":             m.giveBack,
			"reverse":            m.reverse,
			"reverse_again":      m.reverseAgain,
			"overdraw":           m.overdraw,
			"":                   m.check,
		})
		verifyOK(t, e, m.p.ID)
	})
	verifyOK(t, e, uuid.Nil)
}
