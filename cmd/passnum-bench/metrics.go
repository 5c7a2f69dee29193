package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	pb "github.com/passnum/passnum/proto/passnum/v1"
)

// durationMetric is passnumd's histogram of RPC durations, measured from the first
// interceptor to the handler's return: it leaves out the network, gRPC's transport and
// the client's own delays.
const durationMetric = "passnum_grpc_request_duration_seconds"

// serverSample is what passnumd's /metrics says about redemptions so far.
type serverSample struct {
	redeem  serverHistogram
	batches batchSample
}

// serverHistogram is passnumd's own histogram of RedeemVoucher durations so far: cumulative
// counts by upper bound in seconds, and the total.
type serverHistogram struct {
	count   uint64
	buckets map[float64]uint64
}

// countSum is a histogram's sample count and sum.
type countSum struct {
	count uint64
	sum   float64
}

// batchSample is the redemption batches' metrics (internal/programmes/metrics.go): batch
// sizes, requests' waits, and each round trip's durations by phase.
type batchSample struct {
	size, queued countSum
	phases       map[string]countSum
}

// Batch metrics' names, as internal/programmes/metrics.go registers them.
const (
	batchSizeMetric   = "passnum_redeem_batch_size"
	batchQueuedMetric = "passnum_redeem_queue_seconds"
	batchPhaseMetric  = "passnum_redeem_batch_phase_seconds"
)

// writePhases are the round trips made under the redeemer's write lock, one batch at a time:
// write_commit after a chain head the process knows, else write and commit. Their share of a
// window is how busy the programme's one writer was.
var writePhases = []string{"write_commit", "write", "commit"}

// batchPhases are the round trips of a batch: read, then its writes.
var batchPhases = append([]string{"read"}, writePhases...)

// sample reads passnumd's /metrics.
func (d *daemon) sample(ctx context.Context) (serverSample, error) {
	s := serverSample{redeem: serverHistogram{buckets: map[float64]uint64{}}, batches: batchSample{phases: map[string]countSum{}}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+d.metricsAddr+"/metrics", nil)
	if err != nil {
		return s, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return s, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return s, fmt.Errorf("parse passnumd's metrics: %w", err)
	}
	// A family is missing until its first sample: nothing timed yet.
	for _, m := range families[durationMetric].GetMetric() {
		if !hasLabel(m.GetLabel(), "method", pb.VoucherService_RedeemVoucher_FullMethodName) {
			continue
		}
		hist := m.GetHistogram()
		s.redeem.count = hist.GetSampleCount()
		for _, b := range hist.GetBucket() {
			s.redeem.buckets[b.GetUpperBound()] = b.GetCumulativeCount()
		}
	}
	for _, m := range families[batchSizeMetric].GetMetric() {
		s.batches.size = countSumOf(m)
	}
	for _, m := range families[batchQueuedMetric].GetMetric() {
		s.batches.queued = countSumOf(m)
	}
	for _, m := range families[batchPhaseMetric].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "phase" {
				s.batches.phases[l.GetValue()] = countSumOf(m)
			}
		}
	}
	return s, nil
}

func countSumOf(m *dto.Metric) countSum {
	return countSum{m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()}
}

// since describes the batches between a and b, window apart: how many, how large, how long
// each round trip took and how long requests waited for their batch, on average, and the
// share of the window the writes filled.
func (b batchSample) since(a batchSample, window time.Duration) (string, error) {
	batches := b.size.count - a.size.count
	if batches == 0 {
		return "", fmt.Errorf("passnumd counted no redemption batch")
	}
	meanMS := func(x, y countSum) float64 {
		if x.count == y.count {
			return 0
		}
		return 1000 * (x.sum - y.sum) / float64(x.count-y.count)
	}
	var phases []string
	for _, p := range batchPhases {
		if n := b.phases[p].count - a.phases[p].count; n > 0 {
			phases = append(phases, fmt.Sprintf("%s %.2f ms (%d)", p, meanMS(b.phases[p], a.phases[p]), n))
		}
	}
	var writing float64
	for _, p := range writePhases {
		writing += b.phases[p].sum - a.phases[p].sum
	}
	return fmt.Sprintf("%d batches of %.1f requests on average; round trips on average (how many): %s; "+
		"requests waited %.2f ms on average for their batch to start; the writes, one batch at a time, "+
		"filled %.0f %% of the %v",
		batches, (b.size.sum-a.size.sum)/float64(batches), strings.Join(phases, ", "), meanMS(b.queued, a.queued),
		100*writing/window.Seconds(), window), nil
}

func hasLabel(labels []*dto.LabelPair, name, value string) bool {
	for _, l := range labels {
		if l.GetName() == name && l.GetValue() == value {
			return true
		}
	}
	return false
}

// slowerThan is the share of the calls timed between a and h that took longer than
// bound seconds, one of the histogram's bucket bounds.
func (h serverHistogram) slowerThan(a serverHistogram, bound float64) (float64, error) {
	calls := h.count - a.count
	if calls == 0 {
		return 0, fmt.Errorf("passnumd timed no RedeemVoucher call")
	}
	within, ok := h.buckets[bound]
	if !ok {
		return 0, fmt.Errorf("passnumd's %s has no bucket at %g s", durationMetric, bound)
	}
	return float64(calls-(within-a.buckets[bound])) / float64(calls), nil
}
