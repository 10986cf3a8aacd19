package loadtest

import (
	"bytes"
	"context"
	"encoding/xml"
	"io"
	"math"
	"net"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/arbiter-dev/arbiter/decision"
	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
	"github.com/google/go-cmp/cmp"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestSummarize(t *testing.T) {
	h := newHistogram()
	// 1..1000 µs, one sample each: the p-th percentile is p×10 µs.
	for v := 1; v <= 1000; v++ {
		recordDuration(h, time.Duration(v)*time.Microsecond)
	}
	got := summarize(h)
	want := Percentiles{Count: 1000, MeanUs: 500.5, P50Us: 500, P90Us: 900, P99Us: 990, P999Us: 999, MaxUs: 1000}
	// Three significant digits: allow 0.1% relative error.
	approx := cmp.Comparer(func(a, b float64) bool { return math.Abs(a-b) <= 0.001*math.Max(math.Abs(a), math.Abs(b))+0.1 })
	if diff := cmp.Diff(want, got, approx); diff != "" {
		t.Errorf("summarize(1..1000µs) mismatch (-want +got):\n%s", diff)
	}
	if got := summarize(newHistogram()); got != (Percentiles{}) {
		t.Errorf("summarize(empty) = %+v, want zero", got)
	}
}

func TestRecordDurationClamps(t *testing.T) {
	h := newHistogram()
	recordDuration(h, -time.Second)
	recordDuration(h, time.Hour)
	if h.TotalCount() != 2 {
		t.Fatalf("TotalCount() = %d after recording -1s and 1h, want 2 (nothing dropped)", h.TotalCount())
	}
	if got, want := h.Max(), int64(histHighest); !h.ValuesAreEquivalent(got, want) {
		t.Errorf("Max() = %d, want %d (clamped)", got, want)
	}
}

func TestSpectrum(t *testing.T) {
	h := newHistogram()
	for v := 1; v <= 10000; v++ {
		recordDuration(h, time.Duration(v)*time.Microsecond)
	}
	pts := spectrum(h)
	// 10,000 samples resolve up to the 99.99th percentile, then the maximum.
	last := pts[len(pts)-1]
	if last.Percentile != 100 || math.Abs(last.Us-10000) > 10 {
		t.Errorf("spectrum last point = %+v, want {100 10000}", last)
	}
	if p := pts[len(pts)-2].Percentile; p != 99.99 {
		t.Errorf("spectrum second-to-last percentile = %v, want 99.99", p)
	}
	for i := 1; i < len(pts); i++ {
		if pts[i].Percentile <= pts[i-1].Percentile || pts[i].Us < pts[i-1].Us {
			t.Errorf("spectrum not increasing at %d: %+v then %+v", i, pts[i-1], pts[i])
		}
	}
	if got := spectrum(newHistogram()); got != nil {
		t.Errorf("spectrum(empty) = %v, want nil", got)
	}
}

func TestSchedule(t *testing.T) {
	start := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	tests := []struct {
		name  string
		rate  float64
		i     int64
		want  time.Duration // At(i) − start
		d     time.Duration
		count int64 // Count(d)
	}{
		{"first request at start", 1000, 0, 0, time.Second, 1000},
		{"1000/s every millisecond", 1000, 7, 7 * time.Millisecond, 10 * time.Millisecond, 10},
		{"2000/s every 500µs", 2000, 3, 1500 * time.Microsecond, time.Millisecond, 2},
		{"fractional rate 3/s", 3, 2, 666666666, time.Second, 3},
		{"count includes a request due just before the end", 3, 3, time.Second, time.Second + 1, 4},
		{"zero duration has none", 1000, 1, time.Millisecond, 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := Schedule{Start: start, Rate: tc.rate}
			if got := s.At(tc.i).Sub(start); got != tc.want {
				t.Errorf("Schedule{Rate: %v}.At(%d) = start+%v, want start+%v", tc.rate, tc.i, got, tc.want)
			}
			if got := s.Count(tc.d); got != tc.count {
				t.Errorf("Schedule{Rate: %v}.Count(%v) = %d, want %d", tc.rate, tc.d, got, tc.count)
			}
		})
	}
}

func TestScheduleDoesNotDrift(t *testing.T) {
	s := Schedule{Start: time.Unix(0, 0), Rate: 3000}
	// Over an hour at 3000/s, the intended times stay on the grid: no accumulated rounding.
	n := int64(3000 * 3600)
	if got, want := s.At(n).Sub(s.Start), time.Hour; got != want {
		t.Errorf("At(%d) = start+%v, want start+%v", n, got, want)
	}
	if got := s.Count(time.Hour); got != n {
		t.Errorf("Count(1h) = %d, want %d", got, n)
	}
}

func TestMixDeterministic(t *testing.T) {
	a, err := NewMix(42, "run", 1000)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewMix(42, "run", 1000)
	c, _ := NewMix(43, "run", 1000)
	same, differ := 0, 0
	for i := range uint64(200) {
		if diff := cmp.Diff(a.Request(i), b.Request(i), protocmp.Transform()); diff != "" {
			t.Fatalf("Request(%d) differs between two mixes of seed 42 (-a +b):\n%s", i, diff)
		}
		if proto.Equal(a.Request(i), c.Request(i)) {
			same++
		} else {
			differ++
		}
	}
	if differ < 150 {
		t.Errorf("seeds 42 and 43 gave %d equal and %d different requests, want mostly different", same, differ)
	}
	// Order does not matter: a request is a function of its number.
	late := a.Request(150)
	fresh, _ := NewMix(42, "run", 1000)
	if diff := cmp.Diff(fresh.Request(150), late, protocmp.Transform()); diff != "" {
		t.Errorf("Request(150) depends on what was generated before (-fresh +after):\n%s", diff)
	}
}

func TestMixDistribution(t *testing.T) {
	const n = 20000
	m, err := NewMix(7, "run", 5000, WithDuplicates(0.05))
	if err != nil {
		t.Fatal(err)
	}
	codes := decision.DeclineCodes()
	known := map[string]bool{}
	for _, c := range codes {
		known[c.Code] = true
	}
	types := map[arbiterv1.EventType]int{}
	customers := map[string]int{}
	ids := map[string]*arbiterv1.DecideRequest{}
	dups := 0
	for i := range uint64(n) {
		r := m.Request(i)
		types[r.GetEvent().GetType()]++
		customers[r.GetCustomer().GetId()]++
		if prev, ok := ids[r.GetEvent().GetId()]; ok {
			dups++
			if !proto.Equal(prev, r) {
				t.Fatalf("Request(%d) repeats event id %s with different content", i, r.GetEvent().GetId())
			}
		}
		ids[r.GetEvent().GetId()] = r
		if r.GetEvent().GetType() == arbiterv1.EventType_EVENT_TYPE_PAYMENT_FAILED {
			if code := r.GetEvent().GetPayment().GetDeclineCode(); !known[code] {
				t.Fatalf("Request(%d) decline code %q is not in the reference table", i, code)
			}
		}
	}
	if share := float64(types[arbiterv1.EventType_EVENT_TYPE_PAYMENT_FAILED]) / n; share < 0.5 || share > 0.6 {
		t.Errorf("payment failure share = %.3f, want about 0.55", share)
	}
	if share := float64(dups) / n; share < 0.04 || share > 0.06 {
		t.Errorf("duplicate share = %.3f, want about 0.05", share)
	}
	// Zipf: the hottest customer gets far more than a uniform share (4 of 20,000 over 5,000;
	// about 60 with the default s = 1.1, v = 100).
	hottest := 0
	for _, c := range customers {
		hottest = max(hottest, c)
	}
	if hottest < 40 || hottest > 120 {
		t.Errorf("hottest customer has %d requests, want 40 to 120 (Zipf s = 1.1, v = 100)", hottest)
	}
	if len(customers) < 1000 {
		t.Errorf("%d distinct customers, want ≥ 1000 (a long tail)", len(customers))
	}
}

func TestNewMixRejects(t *testing.T) {
	tests := []struct {
		name      string
		customers int
		opts      []MixOption
	}{
		{"no customers", 0, nil},
		{"duplicates of 1", 10, []MixOption{WithDuplicates(1)}},
		{"negative duplicates", 10, []MixOption{WithDuplicates(-0.1)}},
		{"zipf s of 1", 10, []MixOption{WithZipf(1, 1)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewMix(1, "r", tc.customers, tc.opts...); err == nil {
				t.Errorf("NewMix(customers %d, %s) = nil error, want an error", tc.customers, tc.name)
			}
		})
	}
}

// stallServer is a DecisionService fake: it answers at once, except that call number stallAt
// holds every call (a stop-the-world pause) for stall.
type stallServer struct {
	arbiterv1.UnimplementedDecisionServiceServer
	mu      sync.Mutex
	calls   atomic.Int64
	stallAt int64
	stall   time.Duration
	fail    codes.Code
}

func (s *stallServer) Decide(ctx context.Context, req *arbiterv1.DecideRequest) (*arbiterv1.DecideResponse, error) {
	n := s.calls.Add(1)
	s.mu.Lock()
	if n == s.stallAt {
		time.Sleep(s.stall)
	}
	s.mu.Unlock()
	if s.fail != codes.OK && n%10 == 0 {
		return nil, status.Error(s.fail, "injected")
	}
	resp := &arbiterv1.DecideResponse{DecisionId: "d-" + req.GetEvent().GetId(), Action: arbiterv1.Action_ACTION_SUPPRESS}
	if req.GetCustomer().GetVulnerable() {
		resp.Action = arbiterv1.Action_ACTION_ESCALATE
	}
	resp.Degraded = n%4 == 0
	return resp, nil
}

// serve starts a gRPC server with srv and the health service on bufconn and returns a
// client connection to it.
func serve(t *testing.T, srv arbiterv1.DecisionServiceServer) *grpc.ClientConn {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	gs := grpc.NewServer()
	arbiterv1.RegisterDecisionServiceServer(gs, srv)
	healthpb.RegisterHealthServer(gs, health.NewServer())
	go gs.Serve(lis) //nolint:errcheck // returns when stopped
	cc, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close(); gs.Stop() })
	return cc
}

func TestOpenLoopShowsStall(t *testing.T) {
	fake := &stallServer{stallAt: 300, stall: 200 * time.Millisecond}
	cc := serve(t, fake)
	mix, _ := NewMix(1, "stall", 100)
	// One worker: like a client that waits for each answer. The requests due during the
	// stall queue up behind it; only one of them is slow to serve.
	res, err := Run(t.Context(), DecideTarget([]grpc.ClientConnInterface{cc}, mix), Config{
		Name: "decide", Rate: 1000, Workers: 1, Duration: time.Second, Warmup: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("latency %+v\nservice %+v\nlag %+v", res.Latency, res.Service, res.Lag)
	if res.Completed != res.Scheduled || res.Scheduled != 1000 {
		t.Errorf("completed %d of %d scheduled, want 1000 of 1000", res.Completed, res.Scheduled)
	}
	// ~200 requests were due during the stall, waiting 0..200 ms: the intended-time p90
	// (the 100th slowest) waited ≥ ~100 ms; p99 ≥ ~180 ms.
	if res.Latency.P90Us < 50_000 {
		t.Errorf("latency p90 = %s, want ≥ 50ms: the stall is hidden (coordinated omission)", fmtUs(res.Latency.P90Us))
	}
	if res.Latency.P99Us < 150_000 {
		t.Errorf("latency p99 = %s, want ≥ 150ms", fmtUs(res.Latency.P99Us))
	}
	// Service time saw the stall once: its max, not its p99.
	if res.Service.MaxUs < 190_000 {
		t.Errorf("service max = %s, want ≥ 190ms (the stalled call)", fmtUs(res.Service.MaxUs))
	}
	if res.Service.P99Us > res.Latency.P99Us/4 {
		t.Errorf("service p99 = %s, want < a quarter of latency p99 %s (only one call was slow to serve)",
			fmtUs(res.Service.P99Us), fmtUs(res.Latency.P99Us))
	}
	if res.PoolSaturated == 0 || len(res.Warnings) == 0 {
		t.Errorf("PoolSaturated = %d, warnings %q; want the saturated pool reported", res.PoolSaturated, res.Warnings)
	}
	// The timeline shows the stall in the second it happened and only there.
	worst := 0
	for i, s := range res.Timeline {
		if s.MaxUs > res.Timeline[worst].MaxUs {
			worst = i
		}
	}
	if res.Timeline[worst].MaxUs < 150_000 {
		t.Errorf("timeline max = %s, want the stall (≥ 150ms)", fmtUs(res.Timeline[worst].MaxUs))
	}
}

func TestOpenLoopCountsOutcomes(t *testing.T) {
	fake := &stallServer{fail: codes.Unavailable}
	cc := serve(t, fake)
	mix, _ := NewMix(1, "outcomes", 100, WithDuplicates(0))
	res, err := Run(t.Context(), DecideTarget([]grpc.ClientConnInterface{cc, cc}, mix), Config{
		Name: "decide", Rate: 2000, Duration: 500 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Completed != 1000 {
		t.Fatalf("Completed = %d, want 1000 (2000/s for 0.5s)", res.Completed)
	}
	// Every 10th call fails; calls are counted from the server's first, so allow one off.
	if n := res.Errors["Unavailable"]; n < 99 || n > 101 || res.ErrorCount != n {
		t.Errorf("Errors = %v (total %d), want about 100 Unavailable", res.Errors, res.ErrorCount)
	}
	var actions int64
	for _, n := range res.Actions {
		actions += n
	}
	if actions != res.Completed-res.ErrorCount {
		t.Errorf("action mix %v adds up to %d, want %d (every OK answer)", res.Actions, actions, res.Completed-res.ErrorCount)
	}
	if res.Actions["SUPPRESS"] == 0 {
		t.Errorf("action mix %v has no SUPPRESS", res.Actions)
	}
	if res.DegradedShare < 0.15 || res.DegradedShare > 0.35 {
		t.Errorf("DegradedShare = %.2f, want about 0.25 (every 4th answer)", res.DegradedShare)
	}
	// The achieved rate is completions over the time from the first send to the last answer:
	// at most the arrival rate (a little above it when the run ends early), lower when the
	// machine is too busy to keep up.
	if want := float64(res.Completed) / res.Elapsed; math.Abs(res.AchievedRate-want) > 1e-6 || res.AchievedRate > 2200 {
		t.Errorf("AchievedRate = %.0f, want Completed/Elapsed = %.0f and ≤ 2200", res.AchievedRate, want)
	}
}

func TestClosedLoopAndMaxThroughput(t *testing.T) {
	cc := serve(t, &stallServer{})
	target := HealthTarget([]grpc.ClientConnInterface{cc})
	res, err := MaxThroughput(t.Context(), target, Config{Name: "baseline"}, []int{1, 4}, 200*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if res.Mode != "closed" || res.Completed == 0 || res.ErrorCount != 0 {
		t.Errorf("MaxThroughput = mode %q, %d completed, %d errors; want closed, > 0, 0", res.Mode, res.Completed, res.ErrorCount)
	}
	if res.Workers != 1 && res.Workers != 4 {
		t.Errorf("MaxThroughput picked concurrency %d, want one of 1, 4", res.Workers)
	}
	if res.AchievedRate <= 0 || res.Latency.P50Us <= 0 {
		t.Errorf("AchievedRate = %v, p50 = %v; want both > 0", res.AchievedRate, res.Latency.P50Us)
	}
}

func TestRunStopsOnCancel(t *testing.T) {
	cc := serve(t, &stallServer{})
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := Run(ctx, HealthTarget([]grpc.ClientConnInterface{cc}), Config{Rate: 100, Duration: time.Hour})
	if err == nil {
		t.Fatal("Run with a cancelled context = nil error, want the context's error")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Run took %v after cancel, want it to stop promptly", d)
	}
}

func TestCheckLoopback(t *testing.T) {
	tests := []struct {
		addr string
		ok   bool
	}{
		{"127.0.0.1:50051", true},
		{"localhost:1", true},
		{"[::1]:80", true},
		{"10.0.0.1:50051", false},
		{"example.com:443", false},
		{"127.0.0.1", false},
	}
	for _, tc := range tests {
		if err := CheckLoopback(tc.addr); (err == nil) != tc.ok {
			t.Errorf("CheckLoopback(%q) = %v, want ok=%v", tc.addr, err, tc.ok)
		}
	}
}

// sampleReport is a report with every part filled, as a run would produce.
func sampleReport() *Report {
	h := newHistogram()
	for v := 1; v <= 2000; v++ {
		recordDuration(h, time.Duration(v*v)*time.Nanosecond+300*time.Microsecond)
	}
	res := func(name string, scale float64) *Result {
		r := &Result{
			Name: name, Mode: "open", TargetRate: 2000, Duration: 10, Workers: 256, Scheduled: 20000, Completed: 20000,
			Elapsed: 10, AchievedRate: 2000 * scale, Latency: summarize(h), Service: summarize(h), Lag: summarize(h),
			Spectrum: spectrum(h), ServiceSpectrum: spectrum(h),
			Errors: map[string]int64{"DeadlineExceeded": 3}, ErrorCount: 3,
			Actions:  map[string]int64{"RETRY": 9000, "MESSAGE": 6000, "SUPPRESS": 4000, "ESCALATE": 997},
			Degraded: 10, DegradedShare: 0.0005,
		}
		r.Latency.P50Us *= scale
		r.Latency.P99Us *= scale
		for s := range 10 {
			r.Timeline = append(r.Timeline, TimelinePoint{Second: s, Count: 2000, P50Us: 400 * scale, P99Us: 1500 * scale, MaxUs: 4000})
			r.SentTimeline = append(r.SentTimeline, TimelinePoint{Second: s, Count: 2000, P50Us: 400 * scale, P99Us: 1500 * scale, MaxUs: 4000})
			r.Throughput = append(r.Throughput, ThroughputPoint{Second: s, Due: 2000, Sent: 2000, Completed: 1999, Errors: int64(s % 2)})
		}
		return r
	}
	rep := &Report{
		Date: time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC), Machine: Machine{CPUs: 2, CPUModel: "AMD EPYC", GoVersion: "go1.26"},
		Addr: "127.0.0.1:50051", Seed: 1, Customers: 10000, Duplicates: 0.02, Connections: 4, DeadlineMs: 1000,
		Decide: *res("decide", 1), Baseline: res("baseline", 0.5),
	}
	rep.MaxDecide, rep.MaxBaseline = res("decide", 3), res("baseline", 6)
	rep.MaxDecide.Mode, rep.MaxBaseline.Mode = "closed", "closed"
	rep.Decide.Warnings = []string{"a <warning>"}
	rep.ComputeRatios()
	return rep
}

func TestReportJSONRoundTrip(t *testing.T) {
	rep := sampleReport()
	var buf bytes.Buffer
	if err := rep.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	got, err := ReadReport(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(rep, got); diff != "" {
		t.Errorf("ReadReport(WriteJSON(r)) mismatch (-want +got):\n%s", diff)
	}
	if _, err := ReadReport(strings.NewReader("{not json")); err == nil {
		t.Error("ReadReport(garbage) = nil error, want an error")
	}
}

func TestComputeRatios(t *testing.T) {
	rep := sampleReport()
	want := &Ratios{P50: 2, P99: 2, P999: 1, MaxThroughput: 0.5}
	if diff := cmp.Diff(want, rep.Ratios); diff != "" {
		t.Errorf("ComputeRatios() mismatch (-want +got):\n%s", diff)
	}
}

// TestCPUAtMax checks the machine-wide CPU ratio at the maximum throughput: summed over the
// processes measured in both runs, and stated in the summary as a throughput ratio.
func TestCPUAtMax(t *testing.T) {
	rep := sampleReport()
	// The figures of a 2,000/s run with Redis on the 2-core VM: the server's CPU per call
	// alone would predict 298/40, but the generator and Redis share the CPUs.
	rep.MaxDecide.CPU = &CPUCost{Calls: 100, ClientUs: 90, ServerUs: 298, RedisUs: 187}
	rep.MaxBaseline.CPU = &CPUCost{Calls: 100, ClientUs: 39, ServerUs: 40, RedisUs: 0}
	rep.ComputeRatios()
	if got, want := rep.Ratios.CPUAtMax, 575.0/79; math.Abs(got-want) > 0.005 { // ratios are rounded to 2 decimals
		t.Errorf("CPUAtMax = %v, want (90+298+187)/(39+40+0) = %v", got, want)
	}
	var buf bytes.Buffer
	if err := rep.WriteSummary(&buf); err != nil {
		t.Fatal(err)
	}
	if want := "generator + server + Redis: Decide / health Check ×7.28, a CPU-bound throughput ratio of about 14% (measured: 50%)"; !strings.Contains(buf.String(), want) {
		t.Errorf("WriteSummary() lacks %q; got:\n%s", want, buf.String())
	}

	// A process not measured in one of the runs (-1) is left out of both sums.
	rep.MaxBaseline.CPU.RedisUs = -1
	rep.ComputeRatios()
	if got, want := rep.Ratios.CPUAtMax, 388.0/79; math.Abs(got-want) > 0.005 || rep.Ratios.CPUAtMaxOf != "generator + server" {
		t.Errorf("CPUAtMax without Redis's baseline = %v of %q, want (90+298)/(39+40) = %v of generator + server", got, rep.Ratios.CPUAtMaxOf, want)
	}
	// Without the server's, none: the generator's alone predicts nothing of the server.
	rep.MaxDecide.CPU.ServerUs = -1
	rep.ComputeRatios()
	if rep.Ratios.CPUAtMax != 0 {
		t.Errorf("CPUAtMax without the server's CPU = %v, want none", rep.Ratios.CPUAtMax)
	}
	// Without CPU figures there is no ratio, and no line.
	rep.MaxDecide.CPU = nil
	rep.ComputeRatios()
	buf.Reset()
	if err := rep.WriteSummary(&buf); err != nil {
		t.Fatal(err)
	}
	if rep.Ratios.CPUAtMax != 0 || strings.Contains(buf.String(), "at the maximum throughput") {
		t.Errorf("without CPU figures: CPUAtMax %v, summary:\n%s", rep.Ratios.CPUAtMax, buf.String())
	}
}

func TestReportHTML(t *testing.T) {
	var buf bytes.Buffer
	if err := sampleReport().WriteHTML(&buf); err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	for _, want := range []string{
		"<!DOCTYPE html>",
		`aria-label="Latency by percentile (log axes)"`,
		`aria-label="Decide latency over time (per second of intended send)"`,
		`aria-label="Decide latency over time (per second of actual send)"`,
		`aria-label="Decide throughput (requests per second)"`,
		`aria-label="Decide error rate (per second of answer)"`,
		"due (target rate)", "answered", "errors / answers",
		"99.9%", "max",
		"decide: from intended send", "baseline (health Check): from intended send",
		"a &lt;warning&gt;",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("WriteHTML() output lacks %q", want)
		}
	}
	if n := strings.Count(page, "<svg"); n != 5 {
		t.Errorf("WriteHTML() has %d <svg> charts, want 5", n)
	}
	if n := strings.Count(page, `class="series"`); n != 13 {
		t.Errorf("WriteHTML() has %d plotted series, want 13 (3 spectra, 3 throughput, 1 error rate, 3+3 timeline lines)", n)
	}
	// Each chart is well-formed XML (a strict SVG viewer refuses anything else).
	for _, svg := range regexp.MustCompile(`(?s)<svg.*?</svg>`).FindAllString(page, -1) {
		dec := xml.NewDecoder(strings.NewReader(svg))
		for {
			if _, err := dec.Token(); err == io.EOF {
				break
			} else if err != nil {
				t.Fatalf("WriteHTML() chart is not well-formed XML: %v", err)
			}
		}
	}
	for _, banned := range []string{"<script", "http://", "https://cdn"} {
		if strings.Contains(strings.ReplaceAll(page, `xmlns="http://www.w3.org/2000/svg"`, ""), banned) {
			t.Errorf("WriteHTML() contains %q: the page must be self-contained", banned)
		}
	}
}

func TestWriteSummary(t *testing.T) {
	var buf bytes.Buffer
	if err := sampleReport().WriteSummary(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{
		"p99.9", "achieved/s", "DeadlineExceeded 3", "RETRY 9000 (45.0%)", "degraded: 10 (0.05%)",
		"p50 ×2.00", "max throughput 6000/s vs 12000/s = 50%", "WARNING (decide): a <warning>",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("WriteSummary() lacks %q; got:\n%s", want, out)
		}
	}
}

func TestWriteCompare(t *testing.T) {
	a := sampleReport()
	b := sampleReport()
	b.Decide.Latency.P99Us = 2 * a.Decide.Latency.P99Us
	b.Decide.AchievedRate = 1000
	var buf bytes.Buffer
	if err := WriteCompare(&buf, a, b); err != nil {
		t.Fatal(err)
	}
	rows := map[string][]string{}
	for line := range strings.Lines(buf.String()) {
		f := strings.Fields(line)
		// Metric names have one or two words; the last three fields are A, B and B/A.
		if len(f) >= 4 {
			rows[strings.Join(f[:len(f)-3], " ")] = f[len(f)-3:]
		}
	}
	tests := []struct {
		metric string
		ratio  string
	}{
		{"decide p99", "2.00"},
		{"decide achieved/s", "0.50"},
		{"decide p50", "1.00"},
		{"baseline p50", "1.00"},
		{"decide max/s", "1.00"},
	}
	for _, tc := range tests {
		got, ok := rows[tc.metric]
		if !ok {
			t.Errorf("WriteCompare() has no row %q; got:\n%s", tc.metric, buf.String())
			continue
		}
		if got[2] != tc.ratio {
			t.Errorf("WriteCompare() row %q = %v, want B/A %s", tc.metric, got, tc.ratio)
		}
	}
}

func TestDeclineCodesEmbedded(t *testing.T) {
	codes := decision.DeclineCodes()
	byCode := map[string]string{}
	for _, c := range codes {
		byCode[c.Code] = c.Class.String()
	}
	for code, class := range map[string]string{"05": "GENERIC", "51": "LATER", "54": "FIX_DATA", "04": "NEVER"} {
		if byCode[code] != class {
			t.Errorf("decision.DeclineCodes()[%q] = %q, want %q", code, byCode[code], class)
		}
	}
}

func BenchmarkMixRequest(b *testing.B) {
	m, err := NewMix(1, "bench", 100000)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	var i uint64
	for b.Loop() {
		m.Request(i)
		i++
	}
}

func TestMixCustomerMatchesProfile(t *testing.T) {
	for _, n := range []int{1000, maxCachedCustomers + 1} { // cached and uncached
		m, err := NewMix(3, "run", n)
		if err != nil {
			t.Fatal(err)
		}
		for i := range uint64(50) {
			req := m.Request(i)
			c := m.CustomerIndex(m.Original(i))
			if diff := cmp.Diff(NewProfile(3, c).Customer(), req.GetCustomer(), protocmp.Transform()); diff != "" {
				t.Fatalf("customers %d: Request(%d).customer mismatch (-profile +request):\n%s", n, i, diff)
			}
		}
	}
}

func TestMaxThroughputRejectsDegradedSteps(t *testing.T) {
	cc := serve(t, &stallServer{}) // every 4th answer is degraded
	mix, _ := NewMix(1, "max", 100)
	res, err := MaxThroughput(t.Context(), DecideTarget([]grpc.ClientConnInterface{cc}, mix), Config{Name: "decide"}, []int{1, 2}, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], "not a sustainable throughput") {
		t.Errorf("MaxThroughput over a server degrading 25%% of answers: warnings %q, want one saying the rate is not sustainable", res.Warnings)
	}
	if _, err := MaxThroughput(t.Context(), HealthTarget([]grpc.ClientConnInterface{cc}), Config{}, nil, time.Millisecond); err == nil {
		t.Error("MaxThroughput with no concurrency = nil error, want an error")
	}
}

// numberTarget records the request numbers it is asked to prepare.
type numberTarget struct {
	mu   sync.Mutex
	seen map[uint64]int // request number -> run
	run  int
}

func (n *numberTarget) Prepare(i uint64) any {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, ok := n.seen[i]; !ok {
		n.seen[i] = n.run
	}
	return nil
}

func (n *numberTarget) Call(context.Context, any) (Reply, error) {
	time.Sleep(100 * time.Microsecond)
	return Reply{Action: "SUPPRESS"}, nil
}

// TestMaxThroughputSendsNewRequests: the steps of MaxThroughput, and a run before them, send
// disjoint request numbers, so a Decide target never measures replays of earlier event ids.
func TestMaxThroughputSendsNewRequests(t *testing.T) {
	target := &numberTarget{seen: map[uint64]int{}}
	if _, err := Run(t.Context(), target, Config{Rate: 2000, Duration: 100 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	firstRun := len(target.seen)
	target.mu.Lock()
	target.run = 1
	target.mu.Unlock()
	before := len(target.seen)
	res, err := MaxThroughput(t.Context(), target, Config{Name: "decide"}, []int{1, 2}, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	fresh := len(target.seen) - before
	// Every call of the steps (warm-up included) had a number no earlier call had.
	if firstRun == 0 || res.Completed == 0 || fresh < int(res.Completed) {
		t.Errorf("first run prepared %d numbers; max steps completed %d calls with %d new numbers; want every step's numbers new",
			firstRun, res.Completed, fresh)
	}
	for i, run := range target.seen {
		if run == 1 && i < 1<<maxStepShift {
			t.Errorf("a max-throughput step used request number %d, inside the first run's range", i)
			break
		}
	}
}
