package loadtest

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
)

func TestParseStages(t *testing.T) {
	got, err := ParseStages("10s:500, 30s:2000,500ms:0")
	if err != nil {
		t.Fatal(err)
	}
	want := []Stage{{10 * time.Second, 500}, {30 * time.Second, 2000}, {500 * time.Millisecond, 0}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ParseStages() mismatch (-want +got):\n%s", diff)
	}
	for _, bad := range []string{"", "10s", "10s:x", "0s:10", "-1s:10", "10s:-1", "10s:0", "10s:1,:2"} {
		if _, err := ParseStages(bad); err == nil {
			t.Errorf("ParseStages(%q) = nil error, want one", bad)
		}
	}
}

// TestRamp: the ramp's schedule holds the integral of its rate: 0 to 100/s over 1 s is 50
// requests, then 100/s held for 1 s is 100 more, then down to 0 over 2 s is 100 more; past the
// last stage (rate 0) nothing is due.
func TestRamp(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	r := Ramp{Start: start, Stages: []Stage{{time.Second, 100}, {time.Second, 100}, {2 * time.Second, 0}}}
	for _, tc := range []struct {
		d    time.Duration
		want int64
	}{{0, 0}, {500 * time.Millisecond, 13}, {time.Second, 50}, {2 * time.Second, 150}, {4 * time.Second, 250}, {time.Hour, 250}} {
		if got := r.Count(tc.d); got != tc.want {
			t.Errorf("Ramp.Count(%v) = %d, want %d", tc.d, got, tc.want)
		}
	}
	prev := time.Duration(-1)
	for i := range int64(250) {
		at := r.At(i).Sub(start)
		if at <= prev && i > 0 || at < 0 || at > 4*time.Second {
			t.Fatalf("Ramp.At(%d) = %v after %v: want increasing within the 4 s", i, at, prev)
		}
		prev = at
	}
	// Request 50 starts the held second: due at 1 s, the next ones every 10 ms.
	if got := r.At(50).Sub(start); got.Round(time.Microsecond) != time.Second {
		t.Errorf("Ramp.At(50) = %v, want 1s", got)
	}
	if got := r.At(51).Sub(r.At(50)); math.Abs(float64(got-10*time.Millisecond)) > float64(time.Microsecond) {
		t.Errorf("Ramp.At(51) - At(50) = %v, want 10ms", got)
	}
}

// TestOpenLoopStagesAndRequests: a ramped run sends what its stages schedule, and a request
// count ends the measured window after exactly that many requests.
func TestOpenLoopStagesAndRequests(t *testing.T) {
	cc := serve(t, &stallServer{})
	mix, _ := NewMix(1, "stages", 100)
	target := DecideTarget([]grpc.ClientConnInterface{cc}, mix)
	res, err := Run(t.Context(), target, Config{Name: "decide", Stages: []Stage{{300 * time.Millisecond, 200}, {200 * time.Millisecond, 200}}})
	if err != nil {
		t.Fatal(err)
	}
	// 0 to 200/s over 0.3 s is 30, then 200/s for 0.2 s is 40.
	if res.Scheduled != 70 || res.Completed != 70 || res.TargetRate != 200 || len(res.Stages) != 2 {
		t.Errorf("Run(stages) = scheduled %d completed %d target %v stages %v, want 70, 70, 200, the two stages",
			res.Scheduled, res.Completed, res.TargetRate, res.Stages)
	}
	res, err = Run(t.Context(), target, Config{Name: "decide", Rate: 500, Requests: 123, Warmup: 50 * time.Millisecond, FirstRequest: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if res.Scheduled != 123 || res.Completed != 123 {
		t.Errorf("Run(rate 500, requests 123) = scheduled %d completed %d, want 123 and 123", res.Scheduled, res.Completed)
	}
	res, err = Run(t.Context(), target, Config{Name: "decide", Concurrency: 4, Requests: 57, FirstRequest: 1 << 21})
	if err != nil {
		t.Fatal(err)
	}
	if res.Completed != 57 {
		t.Errorf("Run(closed loop, requests 57) completed %d, want 57", res.Completed)
	}
}

// TestWarmupProgressLabelled: the progress lines of the warm-up say so, and show its calls;
// the measured seconds' lines do not.
func TestWarmupProgressLabelled(t *testing.T) {
	cc := serve(t, &stallServer{})
	mix, _ := NewMix(1, "warm", 100)
	var progress bytes.Buffer
	if _, err := Run(t.Context(), DecideTarget([]grpc.ClientConnInterface{cc}, mix), Config{
		Name: "decide", Rate: 200, Warmup: 1100 * time.Millisecond, Duration: 1100 * time.Millisecond, Progress: &progress,
	}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(progress.String()), "\n")
	if len(lines) < 2 {
		t.Fatalf("progress = %q, want a line a second", progress.String())
	}
	if !strings.Contains(lines[0], "warm-up") || strings.Contains(lines[0], "rate       0/s") {
		t.Errorf("first progress line = %q, want it labelled warm-up, with the warm-up's calls", lines[0])
	}
	if last := lines[len(lines)-1]; strings.Contains(last, "warm-up") {
		t.Errorf("last progress line = %q, want no warm-up label", last)
	}
}

// TestRecorderTimelines: the timeline by actual send time and the throughput per second
// place a late request where it was sent and answered, not where it was due.
func TestRecorderTimelines(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	rec := newRecorder(start)
	s := func(x float64) time.Time { return start.Add(time.Duration(x * float64(time.Second))) }
	rec.record(s(0.1), s(0.1), s(0.2), Reply{RPC: RPCDecide}, codes.OK)
	rec.record(s(0.5), s(2.5), s(3.5), Reply{RPC: RPCDecide}, codes.DeadlineExceeded) // due at 0, sent at 2, failed at 3
	rec.record(s(1.2), s(1.3), s(1.4), Reply{RPC: RPCGetDecision}, codes.OK)
	res := rec.result()
	counts := func(tl []TimelinePoint) []int64 {
		var out []int64
		for _, p := range tl {
			out = append(out, p.Count)
		}
		return out
	}
	if diff := cmp.Diff([]int64{2, 1}, counts(res.Timeline)); diff != "" {
		t.Errorf("Timeline counts by intended second (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]int64{1, 1, 1}, counts(res.SentTimeline)); diff != "" {
		t.Errorf("SentTimeline counts by send second (-want +got):\n%s", diff)
	}
	want := []ThroughputPoint{
		{Second: 0, Due: 2, Sent: 1, Completed: 1},
		{Second: 1, Due: 1, Sent: 1, Completed: 1},
		{Second: 2, Sent: 1},
		{Second: 3, Completed: 1, Errors: 1},
	}
	if diff := cmp.Diff(want, res.Throughput); diff != "" {
		t.Errorf("Throughput (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]int64{RPCDecide: 2, RPCGetDecision: 1}, res.RPCs); diff != "" {
		t.Errorf("RPCs (-want +got):\n%s", diff)
	}
}

// TestThresholds: the error rate counts errors and requests never sent; a run over a limit
// fails with a reason; no limit, no failure.
func TestThresholds(t *testing.T) {
	res := &Result{Scheduled: 1000, Completed: 800, ErrorCount: 336, Unsent: 200, Latency: Percentiles{P99Us: 80_000}}
	if got := res.ErrorRate(); math.Abs(got-0.536) > 1e-9 {
		t.Errorf("ErrorRate() = %v, want 0.536 ((336 errors + 200 unsent) / 1000)", got)
	}
	th := Thresholds{MaxErrorRate: DefaultMaxErrorRate, P99: 50 * time.Millisecond}.Check(res)
	if th.Passed || len(th.Failures) != 2 || !strings.Contains(th.Failures[0], "200 never sent") || !strings.Contains(th.Failures[1], "p99") {
		t.Errorf("Check(53.6%% errors, p99 80ms) = %+v, want both thresholds broken", th)
	}
	if th := (Thresholds{MaxErrorRate: -1}).Check(res); !th.Passed || th.MaxErrorRate != nil || th.P99Ms != nil {
		t.Errorf("Check(no limits) = %+v, want passed, no limits", th)
	}
	if th := (Thresholds{MaxErrorRate: 0.01}).Check(&Result{}); th.Passed {
		t.Errorf("Check(nothing sent) = %+v, want failed: no request made", th)
	}
	ok := &Result{Scheduled: 1000, Completed: 1000, ErrorCount: 10, Latency: Percentiles{P99Us: 1000}}
	if th := (Thresholds{MaxErrorRate: 0.01, P99: time.Millisecond}).Check(ok); !th.Passed {
		t.Errorf("Check(1%% errors, p99 1ms) = %+v, want passed (limits are inclusive)", th)
	}
}

// TestReportJSONUnknownIsNull: unknown figures (-1 in memory) are null in the JSON report, and
// read back as unknown.
func TestReportJSONUnknownIsNull(t *testing.T) {
	rep := &Report{StealPercent: -1, Decide: Result{CPU: &CPUCost{Calls: 5, ClientUs: 12, ServerUs: -1, RedisUs: -1}},
		Resources: &Resources{Samples: []ResourceSample{{Second: 1, Goroutines: 9, RedisClients: -1, ServerCPU: 0.5, RedisCPU: -1}}}}
	var buf bytes.Buffer
	if err := rep.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	if err := json.Unmarshal(buf.Bytes(), &raw); err != nil {
		t.Fatal(err)
	}
	cpu := raw["decide"].(map[string]any)["cpu"].(map[string]any)
	sample := raw["resources"].(map[string]any)["samples"].([]any)[0].(map[string]any)
	for name, v := range map[string]any{
		"steal_percent": raw["steal_percent"], "cpu.server_us": cpu["server_us"], "cpu.redis_us": cpu["redis_us"],
		"sample.redis_clients": sample["redis_clients"], "sample.redis_cpu_s": sample["redis_cpu_s"],
	} {
		if v != nil {
			t.Errorf("JSON %s = %v, want null", name, v)
		}
	}
	if cpu["client_us"] != 12.0 || sample["server_cpu_s"] != 0.5 || strings.Contains(buf.String(), "-1") {
		t.Errorf("JSON report = %s, want the known figures kept and no -1", buf.String())
	}
	back, err := ReadReport(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(rep, back); diff != "" {
		t.Errorf("ReadReport(WriteJSON(r)) mismatch (-want +got):\n%s", diff)
	}
}
