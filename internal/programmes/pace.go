package programmes

import (
	"sync"
	"time"
)

// maxPaceWait bounds how long pace makes the oldest request of a batch wait for its cut,
// whatever its estimates say.
const maxPaceWait = 10 * time.Millisecond

// pace decides when the executor collecting the next redemption batch cuts it.
//
// The executors write one at a time (redeemer.writing). A batch cut as soon as an executor
// is free reads, then waits for the previous batch's write to end; the requests that arrive
// during that wait miss it and wait for the batch after. So pace cuts the next batch when
// its read, at its recent duration, should end as the previous batch's write does: the
// requests already queued start writing no later than before, and the batch takes those
// that come meanwhile. Measured at half the peak: lower p50 and about a tenth less CPU for
// the same load (bench/README.md, session 9). A lone request, with no batch in flight, is
// cut at once; a full batch too.
type pace struct {
	mu    sync.Mutex
	read  time.Duration // moving averages of the batches' round trips (movingAverage)
	write time.Duration // from the write lock to the commit
	last  *batchClock   // the batch cut last
}

// batchClock is one batch's progress, as pace needs it.
type batchClock struct {
	p          *pace
	cut        time.Time // when it was cut: its read starts then
	writeStart time.Time // when it took the write lock; zero before
	ended      bool      // nothing more to write: committed, failed or refused
}

// cutAt is when the batch being collected should be cut, at the latest limit; a time not
// after now means at once.
func (p *pace) cutAt(now, limit time.Time) time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	b := p.last
	if b == nil || b.ended {
		return now
	}
	writeStart := b.writeStart
	if writeStart.IsZero() {
		writeStart = b.cut.Add(p.read)
		if writeStart.Before(now) {
			writeStart = now
		}
	}
	at := writeStart.Add(p.write - p.read)
	if at.After(limit) {
		return limit
	}
	return at
}

// cutNow records that a batch is cut at now and returns its clock.
func (p *pace) cutNow(now time.Time) *batchClock {
	p.mu.Lock()
	defer p.mu.Unlock()
	b := &batchClock{p: p, cut: now}
	p.last = b
	return b
}

// paceWeight is the weight of the latest round trip in the moving averages: 1/16, so that
// they follow a change of load within a few dozen batches and one slow batch barely moves them.
const paceWeight = 16

func movingAverage(avg *time.Duration, d time.Duration) {
	if *avg == 0 {
		*avg = d
		return
	}
	*avg += (d - *avg) / paceWeight
}

// readDone records a batch's read round trip. A nil clock (a batch run again item by
// item) records nothing.
func (b *batchClock) readDone(d time.Duration) {
	if b == nil {
		return
	}
	b.p.mu.Lock()
	movingAverage(&b.p.read, d)
	b.p.mu.Unlock()
}

// writing records that the batch took the write lock at t.
func (b *batchClock) writing(t time.Time) {
	if b == nil {
		return
	}
	b.p.mu.Lock()
	b.writeStart = t
	b.p.mu.Unlock()
}

// written records the end of the batch's write, at t.
func (b *batchClock) written(t time.Time) {
	if b == nil {
		return
	}
	b.p.mu.Lock()
	movingAverage(&b.p.write, t.Sub(b.writeStart))
	b.p.mu.Unlock()
}

// end records that the batch writes nothing more.
func (b *batchClock) end() {
	if b == nil {
		return
	}
	b.p.mu.Lock()
	b.ended = true
	b.p.mu.Unlock()
}
