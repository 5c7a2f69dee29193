package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/passnum/passnum/proto/passnum/v1"
)

// callTimeout bounds one RedeemVoucher call, as a till would.
const callTimeout = 30 * time.Second

// outcome is what one redemption request got.
type outcome struct {
	done  bool
	ok    bool
	code  codes.Code
	why   string // ErrorInfo reason of a refusal
	tx    string // ledger transaction of the redemption
	round int32
}

// ambiguous reports whether the request may or may not have been committed.
func (o *outcome) ambiguous() bool {
	return o.done && !o.ok && (o.code == codes.DeadlineExceeded || o.code == codes.Unavailable || o.code == codes.Canceled)
}

// redeemer sends RedeemVoucher requests: request i redeems codes[i] at site i mod len(sites)
// with key prefix+i, so every request can be sent again identically.
type redeemer struct {
	api    *api
	sites  []site
	codes  []string
	prefix string
	out    []outcome
}

func newRedeemer(a *api, sites []site, codes []string, prefix string) *redeemer {
	return &redeemer{api: a, sites: sites, codes: codes, prefix: prefix, out: make([]outcome, len(codes))}
}

func (r *redeemer) request(i int) (*pb.RedeemVoucherRequest, string) {
	return &pb.RedeemVoucherRequest{IdempotencyKey: r.prefix + strconv.Itoa(i), Code: r.codes[i],
		Service: siteService, Minutes: redeemMinutes}, r.sites[i%len(r.sites)].token
}

// send sends request i over connection conn and records its outcome.
func (r *redeemer) send(ctx context.Context, conn, i int) *outcome {
	req, token := r.request(i)
	ctx, cancel := context.WithTimeout(as(ctx, token), callTimeout)
	resp, err := r.api.vouch[conn%len(r.api.vouch)].RedeemVoucher(ctx, req)
	cancel()
	o := &r.out[i]
	*o = outcomeOf(resp, err)
	return o
}

func outcomeOf(resp *pb.Redemption, err error) outcome {
	if err == nil {
		return outcome{done: true, ok: true, code: codes.OK, tx: resp.GetLedger().GetTransactionId(), round: resp.GetRound()}
	}
	st := status.Convert(err)
	o := outcome{done: true, code: st.Code()}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			o.why = info.GetReason()
		}
	}
	return o
}

// throughput is the result of a closed-loop run.
type throughput struct {
	perSecond float64
	measured  int // requests completed OK in the measured window
	window    time.Duration
	sent      int // requests sent in all, warm-up included
	latencies []time.Duration
	errors    map[string]int
	exhausted bool // the vouchers ran out before the end
}

// closedLoop runs workers goroutines that each send the next request as soon as their
// previous one is answered, for warmup and then the measured window, calling onStart and
// onEnd at the window's ends. Requests in flight at the end complete (and are accounted)
// before it returns.
func (r *redeemer) closedLoop(ctx context.Context, workers int, warmup, window time.Duration, onStart, onEnd func()) throughput {
	var (
		next      atomic.Int64
		okCount   atomic.Int64
		measuring atomic.Bool
		stop      atomic.Bool
		wg        sync.WaitGroup
		mu        sync.Mutex
		lat       []time.Duration
	)
	for k := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for !stop.Load() && ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= len(r.codes) {
					next.Add(-1)
					break
				}
				began := time.Now()
				o := r.send(ctx, k, i)
				if o.ok {
					okCount.Add(1)
					if measuring.Load() {
						mine = append(mine, time.Since(began))
					}
				}
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wait := func(d time.Duration) {
		select {
		case <-time.After(d):
		case <-ctx.Done():
		}
	}
	wait(warmup)
	onStart()
	startOK, start := okCount.Load(), time.Now()
	measuring.Store(true)
	// Stop early, with the window measured so far, if the vouchers run out.
	deadline := start.Add(window)
	for time.Now().Before(deadline) && ctx.Err() == nil && next.Load() < int64(len(r.codes)) {
		wait(min(100*time.Millisecond, time.Until(deadline)))
	}
	endOK, end := okCount.Load(), time.Now()
	onEnd()
	stop.Store(true)
	wg.Wait()
	t := throughput{measured: int(endOK - startOK), window: end.Sub(start), sent: int(next.Load()),
		latencies: lat, errors: r.errorCounts(0, int(next.Load())), exhausted: next.Load() >= int64(len(r.codes))}
	t.perSecond = float64(t.measured) / t.window.Seconds()
	return t
}

// latencyRun is the result of an open-loop run.
type latencyRun struct {
	rate      float64         // calls/s asked
	achieved  float64         // calls/s completed OK
	latencies []time.Duration // in the order the requests were scheduled
	errors    map[string]int
	sent      int
}

// timeline writes the run's latency second by second (of scheduled time) as CSV, and
// returns the second with the highest p99.
func (lr *latencyRun) timeline(w io.Writer) (worst int, worstP99 time.Duration, err error) {
	perSecond := int(math.Round(lr.rate))
	if _, err := fmt.Fprintln(w, "second,requests,p50_ms,p99_ms,max_ms"); err != nil {
		return 0, 0, err
	}
	for sec := 0; sec*perSecond < len(lr.latencies); sec++ {
		l := sortDurations(lr.latencies[sec*perSecond : min(len(lr.latencies), (sec+1)*perSecond)])
		p99 := percentile(l, 0.99)
		if p99 > worstP99 {
			worst, worstP99 = sec, p99
		}
		if _, err := fmt.Fprintf(w, "%d,%d,%.1f,%.1f,%.1f\n", sec, len(l), ms(percentile(l, 0.5)), ms(p99), ms(l[len(l)-1])); err != nil {
			return 0, 0, err
		}
	}
	return worst, worstP99, nil
}

// maxInFlight bounds the open-loop run's outstanding requests: past it the server cannot
// keep up with the rate and the run is meaningless.
const maxInFlight = 20000

// openLoopWorkers is the number of goroutines kept to send the open-loop requests; more
// are started when they are all busy, so that a slow server never delays a send.
const openLoopWorkers = 512

// openLoop sends requests first..first+n−1 at a constant rate, each at its scheduled time
// whatever happened to the previous ones, and measures each latency from its scheduled
// time, so that a stall delays the measured requests instead of hiding them. One goroutine
// keeps the schedule with one timer and hands the requests due to long-lived workers, whose
// stacks have grown once: a goroutine and a timer per request cost the load generator
// three times the CPU of the closed loop per call, on the cores the server needs.
func (r *redeemer) openLoop(ctx context.Context, first int, rate float64, d time.Duration) (latencyRun, error) {
	n := int(rate * d.Seconds())
	if first+n > len(r.codes) {
		return latencyRun{}, fmt.Errorf("open loop needs %d vouchers, %d left", n, len(r.codes)-first)
	}
	type job struct {
		k  int
		at time.Time
	}
	lat := make([]time.Duration, n)
	var (
		wg       sync.WaitGroup
		inFlight atomic.Int64
		okCount  atomic.Int64
	)
	do := func(j job) {
		if r.send(ctx, j.k, first+j.k).ok {
			okCount.Add(1)
		}
		lat[j.k] = time.Since(j.at)
		inFlight.Add(-1)
	}
	jobs := make(chan job)
	var workers sync.WaitGroup
	for range openLoopWorkers {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for j := range jobs {
				do(j)
			}
		}()
	}
	interval := time.Duration(float64(time.Second) / rate)
	timer := time.NewTimer(0)
	<-timer.C
	start := time.Now()
	sent := 0
	var err error
	for k := range n {
		at := start.Add(time.Duration(k) * interval)
		if wait := time.Until(at); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-ctx.Done():
			}
		}
		if ctx.Err() != nil {
			break
		}
		if inFlight.Load() > maxInFlight {
			err = fmt.Errorf("more than %d requests in flight at %.0f calls/s: the server cannot keep up", maxInFlight, rate)
			break
		}
		inFlight.Add(1)
		sent++
		select {
		case jobs <- job{k, at}:
		default: // every worker is busy
			wg.Add(1)
			go func() {
				defer wg.Done()
				do(job{k, at})
			}()
		}
	}
	close(jobs)
	workers.Wait()
	wg.Wait()
	if err != nil {
		return latencyRun{}, err
	}
	elapsed := time.Since(start)
	lr := latencyRun{rate: rate, achieved: float64(okCount.Load()) / elapsed.Seconds(), sent: sent,
		latencies: lat[:sent], errors: r.errorCounts(first, first+sent)}
	return lr, nil
}

// errorCounts counts the refusals among requests [from, to), by code and reason.
func (r *redeemer) errorCounts(from, to int) map[string]int {
	m := map[string]int{}
	for i := from; i < to; i++ {
		o := &r.out[i]
		if o.done && !o.ok {
			m[strings.TrimPrefix(o.code.String()+" "+o.why, " ")]++
		}
	}
	return m
}

// percentile returns the p-quantile (0..1) of sorted durations.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(p*float64(len(sorted))))]
}

func sortDurations(d []time.Duration) []time.Duration {
	s := slices.Clone(d)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func formatErrors(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s ×%d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}
