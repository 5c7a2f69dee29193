package main

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// pgbench -R -l writes one line per transaction: client, transaction number, run time (µs),
// script, epoch seconds, epoch µs, schedule lag (µs); one file per thread.
func TestPgbenchLatencies(t *testing.T) {
	for _, c := range []struct {
		name    string
		files   map[string]string
		want    []time.Duration // sorted
		wantErr bool
	}{
		{"two threads", map[string]string{
			"pgbench_log.1":   "0 1 1500 0 1795356732 816942 500\n0 2 800 0 1795356732 819575 0\n",
			"pgbench_log.1.1": "4 1 10000 0 1795356733 100 90000\n",
		}, []time.Duration{800 * time.Microsecond, 2 * time.Millisecond, 100 * time.Millisecond}, false},
		{"no transactions", map[string]string{"pgbench_log.1": ""}, nil, true},
		{"line without schedule lag", map[string]string{"pgbench_log.1": "0 1 1500 0 1795356732 816942\n"}, nil, true},
		{"not a number", map[string]string{"pgbench_log.1": "0 1 1.5 0 1795356732 816942 3\n"}, nil, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, text := range c.files {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			got, err := pgbenchLatencies(dir)
			if (err != nil) != c.wantErr {
				t.Fatalf("err = %v, want error %v", err, c.wantErr)
			}
			if !slices.Equal(got, c.want) {
				t.Fatalf("latencies %v, want %v", got, c.want)
			}
		})
	}
}

// passnumd's duration histogram as /metrics serves it, with count calls of which within25
// took at most 25 ms, and a busier other method that must not count.
func durationMetrics(count, within25 int) string {
	return fmt.Sprintf(`# HELP passnum_grpc_request_duration_seconds gRPC request duration, by full method.
# TYPE passnum_grpc_request_duration_seconds histogram
passnum_grpc_request_duration_seconds_bucket{method="/passnum.v1.VoucherService/RedeemVoucher",le="0.01"} %[2]d
passnum_grpc_request_duration_seconds_bucket{method="/passnum.v1.VoucherService/RedeemVoucher",le="0.025"} %[2]d
passnum_grpc_request_duration_seconds_bucket{method="/passnum.v1.VoucherService/RedeemVoucher",le="+Inf"} %[1]d
passnum_grpc_request_duration_seconds_sum{method="/passnum.v1.VoucherService/RedeemVoucher"} 1
passnum_grpc_request_duration_seconds_count{method="/passnum.v1.VoucherService/RedeemVoucher"} %[1]d
passnum_grpc_request_duration_seconds_bucket{method="/passnum.v1.BookService/HandOutBook",le="0.01"} 0
passnum_grpc_request_duration_seconds_bucket{method="/passnum.v1.BookService/HandOutBook",le="0.025"} 0
passnum_grpc_request_duration_seconds_bucket{method="/passnum.v1.BookService/HandOutBook",le="+Inf"} 99999
passnum_grpc_request_duration_seconds_sum{method="/passnum.v1.BookService/HandOutBook"} 1
passnum_grpc_request_duration_seconds_count{method="/passnum.v1.BookService/HandOutBook"} 99999
`, count, within25)
}

// metricsSampler serves a /metrics page and returns a function that sets the page's text and
// reads it as the harness reads passnumd's.
func metricsSampler(t *testing.T) func(text string) serverSample {
	var page string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, page)
	}))
	t.Cleanup(srv.Close)
	d := &daemon{metricsAddr: srv.Listener.Addr().String()}
	return func(text string) serverSample {
		t.Helper()
		page = text
		s, err := d.sample(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
}

func TestRedeemHistogram(t *testing.T) {
	sample := metricsSampler(t)

	before := sample(durationMetrics(1000, 990)).redeem
	after := sample(durationMetrics(3000, 2890)).redeem // 2,000 calls, 1,900 within 25 ms
	for _, c := range []struct {
		name    string
		bound   float64
		want    float64
		wantErr bool
	}{
		{"at the target's limit", 0.025, 0.05, false},
		{"a smaller bound", 0.01, 0.05, false},
		{"no such bucket", 0.02, 0, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := after.slowerThan(before, c.bound)
			if (err != nil) != c.wantErr {
				t.Fatalf("err = %v, want error %v", err, c.wantErr)
			}
			if got != c.want {
				t.Errorf("slower than %g s: %v, want %v", c.bound, got, c.want)
			}
		})
	}
	if _, err := after.slowerThan(after, 0.025); err == nil {
		t.Error("no calls between two samples: want an error")
	}
	if s := sample("# no metrics yet\n"); s.redeem.count != 0 || s.batches.size.count != 0 {
		t.Errorf("no histogram yet: counts %d and %d, want 0", s.redeem.count, s.batches.size.count)
	}
}

// passnumd's batch metrics as /metrics serves them: batches of size on average, each phase
// and each request's wait taking ms milliseconds in total.
func batchMetrics(batches int, size, ms float64) string {
	var b strings.Builder
	hist := func(name, labels string, count int, sum float64) {
		fmt.Fprintf(&b, "%s_bucket{%sle=\"+Inf\"} %d\n%s_sum{%s} %g\n%s_count{%s} %d\n",
			name, labels, count, name, strings.TrimSuffix(labels, ","), sum, name, strings.TrimSuffix(labels, ","), count)
	}
	b.WriteString("# TYPE passnum_redeem_batch_size histogram\n")
	hist("passnum_redeem_batch_size", "", batches, float64(batches)*size)
	b.WriteString("# TYPE passnum_redeem_queue_seconds histogram\n")
	hist("passnum_redeem_queue_seconds", "", int(float64(batches)*size), ms/1000)
	b.WriteString("# TYPE passnum_redeem_batch_phase_seconds histogram\n")
	for _, p := range batchPhases {
		hist("passnum_redeem_batch_phase_seconds", `phase="`+p+`",`, batches, ms/1000)
	}
	return b.String()
}

func TestBatchSample(t *testing.T) {
	read := metricsSampler(t)
	sample := func(text string) batchSample { return read(text).batches }
	empty := sample("# no metrics yet\n")
	before := sample(batchMetrics(100, 4, 500))
	for _, c := range []struct {
		name    string
		a, b    batchSample
		window  time.Duration
		want    string
		wantErr bool
	}{
		{"from the start", empty, before, 3 * time.Second, "100 batches of 4.0 requests on average; round trips on average (how many): " +
			"read 5.00 ms (100), write_commit 5.00 ms (100), write 5.00 ms (100), commit 5.00 ms (100); " +
			"requests waited 1.25 ms on average for their batch to start; the writes, one batch at a time, filled 50 % of the 3s", false},
		// 200 more batches with 1,100 more requests, and 2,000 ms more in each phase and in waits.
		{"between two samples", before, sample(batchMetrics(300, 5, 2500)), 10 * time.Second, "200 batches of 5.5 requests on average; " +
			"round trips on average (how many): read 10.00 ms (200), write_commit 10.00 ms (200), write 10.00 ms (200), " +
			"commit 10.00 ms (200); requests waited 1.82 ms on average for their batch to start; " +
			"the writes, one batch at a time, filled 60 % of the 10s", false},
		{"no batch between them", before, before, time.Second, "", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := c.b.since(c.a, c.window)
			if (err != nil) != c.wantErr {
				t.Fatalf("err = %v, want error %v", err, c.wantErr)
			}
			if got != c.want {
				t.Errorf("got  %s\nwant %s", got, c.want)
			}
		})
	}
}
