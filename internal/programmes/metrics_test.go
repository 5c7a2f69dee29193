package programmes

import (
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// histogramOf reads the sample count and sum of h so far.
func histogramOf(t *testing.T, h prometheus.Metric) (uint64, float64) {
	t.Helper()
	var m dto.Metric
	if err := h.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
}

// The batch metrics count every request once and every round trip. Three concurrent
// requests make one to three batches, the refusal one more; a retried batch would add round
// trips, hence the ranges. The fixture's own posts left the chain head known to the
// process, so batches write and commit in one round trip: the locked path (a write, then a
// commit) is for retries.
func TestRedeemBatchMetrics(t *testing.T) {
	f := newFixture(t, Options{})
	_, book := f.ready()
	type snapshot struct {
		batches, queued, reads, writes, commits, writeCommits uint64
		requests                                              float64
	}
	take := func() snapshot {
		var s snapshot
		s.batches, s.requests = histogramOf(t, batchSize)
		s.queued, _ = histogramOf(t, batchQueued)
		s.reads, _ = histogramOf(t, phaseRead.(prometheus.Metric))
		s.writes, _ = histogramOf(t, phaseWrite.(prometheus.Metric))
		s.commits, _ = histogramOf(t, phaseCommit.(prometheus.Metric))
		s.writeCommits, _ = histogramOf(t, phaseWriteCommit.(prometheus.Metric))
		return s
	}
	before := take()
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Go(func() {
			if _, err := f.redeem(f.sites[i], book.Codes[i].String()); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	// A refusal is read and decided, and writes nothing.
	if _, err := f.redeem(f.sites[0], book.Codes[0].String()); err == nil {
		t.Fatal("a voucher was redeemed twice")
	}
	after := take()
	batches := after.batches - before.batches
	for _, c := range []struct {
		name          string
		got, min, max uint64
	}{
		{"batches", batches, 2, 4},
		{"requests in batches", uint64(after.requests - before.requests), 4, 4},
		{"requests queued", after.queued - before.queued, 4, 4},
		{"read round trips", after.reads - before.reads, batches, 2 * batches},
		{"write and commit round trips", after.writeCommits - before.writeCommits, 1, batches - 1},
		{"write round trips", after.writes - before.writes, 0, batches - 1},
		{"commit round trips", after.commits - before.commits, after.writes - before.writes, after.writes - before.writes},
	} {
		if c.got < c.min || c.got > c.max {
			t.Errorf("%s: %d more, want %d to %d", c.name, c.got, c.min, c.max)
		}
	}
}
