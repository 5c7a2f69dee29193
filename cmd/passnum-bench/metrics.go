package main

import (
	"context"
	"fmt"
	"net/http"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	pb "github.com/passnum/passnum/proto/passnum/v1"
)

// durationMetric is passnumd's histogram of RPC durations, measured from the first
// interceptor to the handler's return: it leaves out the network, gRPC's transport and
// the client's own delays.
const durationMetric = "passnum_grpc_request_duration_seconds"

// serverHistogram is passnumd's own histogram of RedeemVoucher durations so far: cumulative
// counts by upper bound in seconds, and the total.
type serverHistogram struct {
	count   uint64
	buckets map[float64]uint64
}

// redeemHistogram reads RedeemVoucher's duration histogram from passnumd's /metrics.
func (d *daemon) redeemHistogram(ctx context.Context) (serverHistogram, error) {
	h := serverHistogram{buckets: map[float64]uint64{}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+d.metricsAddr+"/metrics", nil)
	if err != nil {
		return h, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return h, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return h, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return h, fmt.Errorf("parse passnumd's metrics: %w", err)
	}
	f := families[durationMetric]
	if f == nil {
		return h, nil // no RPC timed yet
	}
	for _, m := range f.GetMetric() {
		if !hasLabel(m.GetLabel(), "method", pb.VoucherService_RedeemVoucher_FullMethodName) {
			continue
		}
		hist := m.GetHistogram()
		h.count = hist.GetSampleCount()
		for _, b := range hist.GetBucket() {
			h.buckets[b.GetUpperBound()] = b.GetCumulativeCount()
		}
	}
	return h, nil
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
