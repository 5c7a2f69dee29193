package ledger_test

import (
	"bytes"
	"context"
	"encoding/json"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/passnum/passnum/internal/fault"
	"github.com/passnum/passnum/ledger"
)

type fundRequest struct {
	Programme uuid.UUID
	Funder    uuid.UUID
	Cents     int64
}

type fundResponse struct {
	TxID uuid.UUID
	Seq  int64
	Hash []byte
}

// fundOnce is an idempotent funding operation; effects counts the runs of its body.
func fundOnce(e *env, p *programme, key string, req fundRequest, effects *atomic.Int64) (fundResponse, error) {
	op := ledger.Op{Name: "test.fund", Org: p.Operator, Key: key, Request: req}
	return ledger.Do(context.Background(), e.l, op, func(ctx context.Context, tx pgx.Tx, reqHash []byte) (fundResponse, error) {
		effects.Add(1)
		entry := p.funding(req.Funder, req.Cents, 0)
		entry.IdempotencyKey, entry.RequestHash = key, reqHash
		posted, err := e.l.Post(ctx, tx, entry)
		if err != nil {
			return fundResponse{}, err
		}
		return fundResponse{TxID: posted[0].ID, Seq: posted[0].Seq, Hash: posted[0].Hash}, nil
	})
}

// One key, replayed sequentially or concurrently, has exactly one effect and always the
// same response; the key reused for another request is refused and writes nothing.
func TestIdempotentReplay(t *testing.T) {
	e := newEnv(t)
	p := newProgramme(t, e, 1, 1)
	req := fundRequest{Programme: p.ID, Funder: p.Funders[0], Cents: 12_345}

	tests := []struct {
		name       string
		key        string
		concurrent bool
	}{
		{"sequential", "fund-sequential", false},
		{"concurrent", "fund-concurrent", true},
	}
	var unissued int64
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			const replays = 100
			var (
				effects   atomic.Int64
				responses = make([][]byte, replays)
				errs      = make([]error, replays)
				wg        sync.WaitGroup
			)
			call := func(i int) {
				resp, err := fundOnce(e, p, tc.key, req, &effects)
				errs[i] = err
				responses[i], _ = json.Marshal(resp)
			}
			for i := range replays {
				if tc.concurrent {
					wg.Go(func() { call(i) })
				} else {
					call(i)
				}
			}
			wg.Wait()
			for i := range replays {
				if errs[i] != nil {
					t.Fatalf("replay %d: %v", i, errs[i])
				}
				if !bytes.Equal(responses[i], responses[0]) {
					t.Fatalf("replay %d answered %s, first %s", i, responses[i], responses[0])
				}
			}
			if n := effects.Load(); n != 1 {
				t.Fatalf("the operation ran %d times", n)
			}
			var rows int
			if err := e.db.App.QueryRow(context.Background(),
				`SELECT count(*) FROM transactions WHERE org_id = $1 AND idempotency_key = $2`, p.Operator, tc.key).Scan(&rows); err != nil {
				t.Fatal(err)
			}
			if rows != 1 {
				t.Fatalf("%d transactions for the key", rows)
			}
			unissued += req.Cents
			if got := balances(t, e.db.App, p.ID)[p.unissued()]; got != unissued {
				t.Fatalf("unissued %d, want %d: balances moved more than once", got, unissued)
			}
		})
	}

	t.Run("same key, another request", func(t *testing.T) {
		var effects atomic.Int64
		if _, err := fundOnce(e, p, "fund-reused", req, &effects); err != nil {
			t.Fatal(err)
		}
		before := balances(t, e.db.App, p.ID)
		other := req
		other.Cents++
		_, err := fundOnce(e, p, "fund-reused", other, &effects)
		if f, ok := fault.As(err); !ok || f.Kind != fault.Conflict || f.Reason != "IDEMPOTENCY_KEY_REUSED" {
			t.Fatalf("got %v, want IDEMPOTENCY_KEY_REUSED", err)
		}
		if effects.Load() != 1 {
			t.Fatal("the operation ran for the other request")
		}
		if after := balances(t, e.db.App, p.ID); !mapsEqual(before, after) {
			t.Fatalf("balances moved: %v -> %v", before, after)
		}
		var rows int
		if err := e.db.App.QueryRow(context.Background(),
			`SELECT count(*) FROM transactions WHERE org_id = $1 AND idempotency_key = 'fund-reused'`, p.Operator).Scan(&rows); err != nil {
			t.Fatal(err)
		}
		if rows != 1 {
			t.Fatalf("%d transactions for the key, want 1", rows)
		}
	})
	verifyOK(t, e, p.ID)
}
