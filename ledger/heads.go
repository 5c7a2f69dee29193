package ledger

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// headCache holds, per programme, the chain head this process last wrote: the head after
// the last transaction it committed or is committing. It is a hint, never trusted: a writer
// that chains onto it checks the head under its lock in the same round trip
// (ledger_lock_heads_at, migrations/013_known_chain_heads.sql), and the first failed
// transaction of the process empties it (Ledger.retry).
type headCache struct {
	mu    sync.Mutex // held while a writer chains onto the heads and until its batch is sent
	heads map[uuid.UUID]knownHead
}

type knownHead struct {
	seq        int64
	hash       []byte
	recordedAt time.Time
}

// record notes the heads pp's writes leave, and takes them from pp: they hold its last
// entries' seq and hash, which a second write of pp would reuse. The caller holds c.mu.
func (c *headCache) record(pp *PendingPost, recordedAt time.Time) {
	if c.heads == nil {
		c.heads = make(map[uuid.UUID]knownHead)
	}
	for p, h := range pp.heads {
		c.heads[p] = knownHead{seq: h.seq, hash: h.hash, recordedAt: recordedAt}
	}
	pp.heads = nil
}

// forget drops every head: the transaction that was to leave one may not have committed.
func (c *headCache) forget() {
	c.mu.Lock()
	clear(c.heads)
	c.mu.Unlock()
}

// CommitAtKnownHeads sends b's statements, then the ledger's writes chained onto the heads
// this process last wrote (ledger_lock_heads_at checking them under their locks first),
// then COMMIT, in one round trip of p. So the chain heads, which serialise a programme's
// writers, are held for the ledger's statements and the commit only, not also for a round
// trip of the client.
//
// The heads may belong to a transaction of this process still in flight: its writes were
// sent before these (the cache stays locked until they are), so this one's lock waits for
// its commit. If it did not commit, or another writer went first, the check fails with a
// serialization failure and nothing is written; the retry (RunPipelined) finds no known head.
//
// ok is false, and nothing sent, when a programme's head is not known, or when p is a retry:
// the caller then locks the heads (QueueLock) and writes after them (QueueWrite), which
// makes them known. A retry always locks, so that writers racing on a busy chain, each
// chaining onto the others' heads in flight, cannot fail one another for ever.
func (pp *PendingPost) CommitAtKnownHeads(ctx context.Context, p *Pipeline, b *pgx.Batch) (posted []Posted, ok bool, err error) {
	if p.retry {
		return nil, false, nil
	}
	c := &pp.l.heads
	c.mu.Lock()
	unlocked := false
	unlock := func() {
		if !unlocked {
			unlocked = true
			c.mu.Unlock()
		}
	}
	defer unlock()
	var last time.Time
	for _, prog := range pp.programmes {
		h, known := c.heads[prog]
		if !known {
			return nil, false, nil
		}
		pp.heads[prog] = &chainHead{seq: h.seq, hash: h.hash}
		if h.recordedAt.After(last) {
			last = h.recordedAt
		}
	}
	expProg, expSeq, expHash := pp.headArrays() // before queueWrite advances the heads
	b.Queue(`SELECT ledger_lock_heads_at($1, $2, $3)`, expProg, expSeq, expHash)
	// recorded_at must not go back along a chain, even if the clock does.
	now := time.Now().UTC().Truncate(time.Microsecond)
	if now.Before(last) {
		now = last
	}
	if posted, err = pp.queueWrite(b, now); err != nil {
		return nil, true, err
	}
	c.record(pp, now)
	if err := p.commit(ctx, b, unlock); err != nil {
		c.forget() // at once, not only when the retry starts: the next writer may be waiting
		return nil, true, fmt.Errorf("post %d entries: %w", len(pp.entries), err)
	}
	return posted, true, nil
}
