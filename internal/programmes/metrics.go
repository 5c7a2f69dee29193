package programmes

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics of the redemption batches (group commit). Latency at moderate load follows the
// length of a batch and how long requests wait for one, so both are exposed, the batch by
// round trip: its reads and voucher locks, then either its writes, ledger entries and commit
// at once (write_commit, after a chain head the process knows), or its writes up to the
// programme's chain head (write) and the ledger's entries with the commit (commit).
// Package-level like the ledger's, registered by whoever serves them (Collectors).
var (
	batchSize = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "passnum_redeem_batch_size",
		Help:    "Redemption requests committed together in one transaction.",
		Buckets: prometheus.ExponentialBuckets(1, 2, 9), // 1 to 256, the largest batch
	})
	batchQueued = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "passnum_redeem_queue_seconds",
		Help:    "Time a redemption request waited for its batch to start.",
		Buckets: latencyBuckets,
	})
	batchPhase = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "passnum_redeem_batch_phase_seconds",
		Help:    "Duration of each round trip of a redemption batch: read (sites, voucher locks, idempotency records), then write_commit (vouchers, redemptions, records, ledger entries after the known chain head, COMMIT), or write (vouchers, redemptions, records, then the chain head's lock) and commit (ledger entries and COMMIT).",
		Buckets: latencyBuckets,
	}, []string{"phase"})
	phaseRead        = batchPhase.WithLabelValues("read")
	phaseWrite       = batchPhase.WithLabelValues("write")
	phaseCommit      = batchPhase.WithLabelValues("commit")
	phaseWriteCommit = batchPhase.WithLabelValues("write_commit")
)

// latencyBuckets run from 0.25 ms to 1 s; 25 ms, the latency target, is a bound.
var latencyBuckets = []float64{0.00025, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1}

// Collectors are the redemption batches' metrics, to register with the registry a server
// exposes.
func Collectors() []prometheus.Collector {
	return []prometheus.Collector{batchSize, batchQueued, batchPhase}
}

// since observes the time elapsed since start on o.
func since(o prometheus.Observer, start time.Time) { o.Observe(time.Since(start).Seconds()) }
