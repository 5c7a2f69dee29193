package ledger_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/passnum/passnum/ledger"
)

// The bank test: 64 goroutines move money at random among the accounts of two programmes,
// some moves deliberately overdrawing, while readers check in REPEATABLE READ snapshots that
// the raw balances (balance × normal side) of each programme sum to zero and that no
// never-negative account is below zero. At the end every balance is its start plus the
// successful moves, exactly, and the ledger verifies.
func TestBank(t *testing.T) {
	const (
		writers   = 64
		moves     = 40 // per writer
		readers   = 4
		funded    = 1_000_000
		seedCents = 50_000
	)
	e := newEnv(t)
	ctx := ctxTimeout(t, 2*time.Minute)

	type bank struct {
		p        *programme
		accounts []ledger.AccountRef
	}
	var banks []bank
	for range 2 {
		p := newProgramme(t, e, 1, 2)
		f, s0, s1 := p.Funders[0], p.Sites[0], p.Sites[1]
		accounts := []ledger.AccountRef{
			p.unissued(), p.outstanding(), p.ref(ledger.Fees, f), p.ref(ledger.FunderReturned, f),
			p.ref(ledger.SitePaid, s0), p.ref(ledger.SitePaid, s1),
			p.ref(ledger.SitePayable, s0), p.ref(ledger.SitePayable, s1),
		}
		// Fund, then seed every account so that all exist before the race.
		seed := p.entry(ledger.KindTransfer)
		for _, a := range accounts[1:] {
			seed.Postings = append(seed.Postings, ledger.Posting{Account: a, Amount: seedCents})
		}
		seed.Postings = append(seed.Postings, ledger.Posting{Account: p.unissued(), Amount: -seedCents * int64(len(accounts)-1)})
		post(t, e, p.funding(f, funded, 0), seed)
		banks = append(banks, bank{p: p, accounts: accounts})
	}
	start := make(map[ledger.AccountRef]int64)
	for _, b := range banks {
		for ref, cents := range balances(t, e.db.App, b.p.ID) {
			start[ref] = cents
		}
	}

	var (
		mu                      sync.Mutex
		moved                   = make(map[ledger.AccountRef]int64) // successful moves, net
		ok, refused, deliberate atomic.Int64
		snapshots               atomic.Int64
		writersDone             = make(chan struct{})
		wg, rg                  sync.WaitGroup
		errs                    = make(chan error, writers+readers)
	)
	for w := range writers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 42))
			for range moves {
				b := banks[rng.IntN(len(banks))]
				from := b.accounts[rng.IntN(len(b.accounts))]
				to := b.accounts[rng.IntN(len(b.accounts))]
				for to == from {
					to = b.accounts[rng.IntN(len(b.accounts))]
				}
				amount := 1 + rng.Int64N(20_000)
				overdraw := from.Kind.NonNegative() && rng.IntN(10) == 0
				if overdraw {
					amount = 10 * funded // more than the programme holds
				}
				err := e.l.RunInTx(ctx, "test_bank", func(ctx context.Context, tx pgx.Tx) error {
					_, err := e.l.Post(ctx, tx, b.p.entry(ledger.KindTransfer, ledger.Move(from, to, amount)))
					return err
				})
				switch {
				case err == nil && overdraw:
					errs <- fmt.Errorf("overdraw of %d from %s accepted", amount, from)
					return
				case err == nil:
					ok.Add(1)
					mu.Lock()
					moved[from] -= amount * from.Kind.NormalSide()
					moved[to] += amount * to.Kind.NormalSide()
					mu.Unlock()
				case pgCode(err) == "23514" && pgConstraint(err) == "accounts_balance_non_negative":
					refused.Add(1)
					if overdraw {
						deliberate.Add(1)
					}
				default:
					errs <- err
					return
				}
			}
		})
	}
	programmes := []uuid.UUID{banks[0].p.ID, banks[1].p.ID}
	for range readers {
		rg.Go(func() {
			for {
				select {
				case <-writersDone:
					return
				default:
				}
				err := e.l.RunInSnapshot(ctx, "test_bank_read", func(ctx context.Context, tx pgx.Tx) error {
					for _, prog := range programmes {
						bs, err := ledger.Balances(ctx, tx, prog)
						if err != nil {
							return err
						}
						var raw int64
						for _, b := range bs {
							raw += b.Cents * b.Account.Kind.NormalSide()
							if b.Account.Kind.NonNegative() && b.Cents < 0 {
								return fmt.Errorf("%s is %d in a snapshot", b.Account, b.Cents)
							}
						}
						if raw != 0 {
							return fmt.Errorf("programme %s: raw balances sum to %d in a snapshot", prog, raw)
						}
					}
					return nil
				})
				if err != nil {
					errs <- err
					return
				}
				snapshots.Add(1)
			}
		})
	}
	wg.Wait()
	close(writersDone)
	rg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("%d moves, %d refused (%d deliberate overdraws), %d snapshots checked", ok.Load(), refused.Load(), deliberate.Load(), snapshots.Load())
	if ok.Load() == 0 || deliberate.Load() == 0 || snapshots.Load() == 0 {
		t.Fatalf("the race did not happen: %d moves, %d deliberate overdraws, %d snapshots", ok.Load(), deliberate.Load(), snapshots.Load())
	}

	for _, b := range banks {
		got := balances(t, e.db.App, b.p.ID)
		for _, a := range b.accounts {
			if want := start[a] + moved[a]; got[a] != want {
				t.Errorf("%s: %d, want %d (start %d + moves %d)", a, got[a], want, start[a], moved[a])
			}
		}
		// Outstanding carries no vouchers here: move it back before verifying.
		if left := got[b.p.outstanding()]; left > 0 {
			post(t, e, b.p.entry(ledger.KindCancellation, ledger.Move(b.p.outstanding(), b.p.unissued(), left)))
		}
	}
	verifyOK(t, e, uuid.Nil)
}
