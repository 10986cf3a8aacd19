package main

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
	"github.com/arbiter-dev/arbiter/loadtest"
)

// scriptedArbiter answers every RPC of the decision and feature services: Decide fails with
// DeadlineExceeded for failPercent of the calls and sleeps delay first; every call is counted
// by RPC, and the ids it was sent are kept.
type scriptedArbiter struct {
	arbiterv1.UnimplementedDecisionServiceServer
	arbiterv1.UnimplementedFeatureServiceServer
	failPercent int64
	delay       time.Duration
	decides     atomic.Int64
	mu          sync.Mutex
	calls       map[string]int
	eventIDs    []string
	decisionIDs []string
}

func (s *scriptedArbiter) count(rpc, id string, ids *[]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[rpc]++
	if ids != nil {
		*ids = append(*ids, id)
	}
}

func (s *scriptedArbiter) Decide(ctx context.Context, req *arbiterv1.DecideRequest) (*arbiterv1.DecideResponse, error) {
	n := s.decides.Add(1)
	s.count("Decide", req.GetEvent().GetId(), &s.eventIDs)
	time.Sleep(s.delay)
	if n%100 < s.failPercent {
		return nil, status.Error(codes.DeadlineExceeded, "injected")
	}
	return &arbiterv1.DecideResponse{DecisionId: "dec-" + req.GetEvent().GetId(), Action: arbiterv1.Action_ACTION_MESSAGE}, nil
}

func (s *scriptedArbiter) RecordOutcome(ctx context.Context, req *arbiterv1.RecordOutcomeRequest) (*arbiterv1.RecordOutcomeResponse, error) {
	s.count("RecordOutcome", req.GetDecisionId(), &s.decisionIDs)
	return &arbiterv1.RecordOutcomeResponse{}, nil
}

func (s *scriptedArbiter) GetDecision(ctx context.Context, req *arbiterv1.GetDecisionRequest) (*arbiterv1.GetDecisionResponse, error) {
	s.count("GetDecision", req.GetDecisionId(), &s.decisionIDs)
	return &arbiterv1.GetDecisionResponse{}, nil
}

func (s *scriptedArbiter) PutFeatures(ctx context.Context, req *arbiterv1.PutFeaturesRequest) (*arbiterv1.PutFeaturesResponse, error) {
	s.count("PutFeatures", "", nil)
	return &arbiterv1.PutFeaturesResponse{}, nil
}

func (s *scriptedArbiter) GetCustomerState(ctx context.Context, req *arbiterv1.GetCustomerStateRequest) (*arbiterv1.GetCustomerStateResponse, error) {
	s.count("GetCustomerState", "", nil)
	return &arbiterv1.GetCustomerStateResponse{}, nil
}

func startScripted(t *testing.T, s *scriptedArbiter) string {
	t.Helper()
	s.calls = map[string]int{}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	arbiterv1.RegisterDecisionServiceServer(gs, s)
	arbiterv1.RegisterFeatureServiceServer(gs, s)
	healthpb.RegisterHealthServer(gs, health.NewServer())
	go gs.Serve(lis) //nolint:errcheck // returns when stopped
	t.Cleanup(gs.Stop)
	return lis.Addr().String()
}

// TestLoadtestThresholds: a run with 42% DeadlineExceeded fails (exit 1) under the default
// --max-error-rate, after writing its reports with the verdict; a higher limit passes it; a
// --p99 below what was measured fails it.
func TestLoadtestThresholds(t *testing.T) {
	addr := startScripted(t, &scriptedArbiter{failPercent: 42})
	out := t.TempDir()
	args := []string{"loadtest", "--addr", addr, "--rate", "400", "--duration", "500ms", "--warmup", "0", "--customers", "10", "--out", out}
	var stdout, stderr bytes.Buffer
	err := run(t.Context(), args, noEnv, nil, &stdout, &stderr)
	if !errors.Is(err, errThresholds) || exitCode(err) != 1 || !strings.Contains(err.Error(), "error rate 42") {
		t.Fatalf("arbiter loadtest (42%% DeadlineExceeded) = %v (exit %d), want the error-rate threshold failed, exit 1", err, exitCode(err))
	}
	if !strings.Contains(stdout.String(), "THRESHOLD FAILED: error rate 42") {
		t.Errorf("stdout lacks the failed threshold:\n%s", stdout.String())
	}
	rep, err := loadtest.ReadReportFile(filepath.Join(out, "report.json"))
	if err != nil {
		t.Fatalf("report.json of a failed run: %v", err)
	}
	if th := rep.Thresholds; th == nil || th.Passed || th.MaxErrorRate == nil || *th.MaxErrorRate != 0.01 || th.P99Ms != nil {
		t.Errorf("report.json thresholds = %+v, want failed against max_error_rate 0.01, p99 null", th)
	}
	if _, err := os.Stat(filepath.Join(out, "report.html")); err != nil {
		t.Errorf("report.html of a failed run: %v", err)
	}

	stdout.Reset()
	if err := run(t.Context(), append(args, "--max-error-rate", "0.5"), noEnv, nil, &stdout, &stderr); err != nil {
		t.Errorf("arbiter loadtest --max-error-rate 0.5 (42%% errors) = %v, want nil", err)
	}
	if !strings.Contains(stdout.String(), "thresholds: passed") {
		t.Errorf("stdout lacks the passed thresholds:\n%s", stdout.String())
	}
	err = run(t.Context(), append(args, "--max-error-rate", "-1", "--p99", "1ns"), noEnv, nil, &stdout, &stderr)
	if !errors.Is(err, errThresholds) || !strings.Contains(err.Error(), "p99") {
		t.Errorf("arbiter loadtest --p99 1ns = %v, want the p99 threshold failed", err)
	}
}

// TestLoadtestUnsentFails: requests the load tester never sent (every worker busy until long
// after the schedule) count against --max-error-rate: the run fails even when the answers it
// got were OK.
func TestLoadtestUnsentFails(t *testing.T) {
	addr := startScripted(t, &scriptedArbiter{delay: 60 * time.Millisecond})
	var stdout, stderr bytes.Buffer
	err := run(t.Context(), []string{"loadtest", "--addr", addr, "--rate", "200", "--duration", "300ms", "--warmup", "0",
		"--workers", "1", "--deadline", "100ms", "--customers", "10", "--out", ""}, noEnv, nil, &stdout, &stderr)
	if !errors.Is(err, errThresholds) || !strings.Contains(err.Error(), "never sent") {
		t.Fatalf("arbiter loadtest (most requests never sent) = %v, want the error-rate threshold failed on unsent requests\n%s", err, stdout.String())
	}
	if !strings.Contains(stdout.String(), "never sent: ") {
		t.Errorf("stdout = %s, want the unsent requests", stdout.String())
	}
}

// TestLoadtestDataFile: --data-file sends the file's requests in order, every RPC kind, cycles
// through it for --requests, gives a Decide a new event id on each later pass, and fills an
// empty decision_id with the latest decision's.
func TestLoadtestDataFile(t *testing.T) {
	s := &scriptedArbiter{}
	addr := startScripted(t, s)
	data := filepath.Join(t.TempDir(), "requests.jsonl")
	lines := `# a comment, then a bare DecideRequest and one of each RPC
{"event": {"id": "e1", "type": "EVENT_TYPE_INVOICE_OVERDUE"}, "customer": {"id": "c1"}}
{"rpc": "RecordOutcome", "request": {"decision_id": "", "outcome": "OUTCOME_DELIVERED"}}
{"rpc": "GetDecision", "request": {"decision_id": "dec-fixed"}}
{"rpc": "PutFeatures", "request": {"customer_id": "c1", "features": {"days_past_due": 12}}}
{"rpc": "GetCustomerState", "request": {"customer_id": "c1"}}
{"rpc": "Decide", "request": {"event": {"id": "e2", "type": "EVENT_TYPE_INVOICE_OVERDUE"}, "customer": {"id": "c1"}}}
`
	if err := os.WriteFile(data, []byte(lines), 0o644); err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	var stdout, stderr bytes.Buffer
	// One worker keeps the order: each request is answered before the next is sent.
	if err := run(t.Context(), []string{"loadtest", "--addr", addr, "--data-file", data, "--rate", "100", "--requests", "14",
		"--warmup", "0", "--workers", "1", "--out", out}, noEnv, nil, &stdout, &stderr); err != nil {
		t.Fatalf("arbiter loadtest --data-file: %v\n%s", err, stderr.String())
	}
	want := map[string]int{"Decide": 5, "RecordOutcome": 3, "GetDecision": 2, "PutFeatures": 2, "GetCustomerState": 2}
	if diff := cmp.Diff(want, s.calls); diff != "" {
		t.Errorf("calls by RPC for 14 requests of a 6-line file (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"e1", "e2", "e1~1", "e2~1", "e1~2"}, s.eventIDs); diff != "" {
		t.Errorf("Decide event ids, in order (-want +got):\n%s", diff)
	}
	// RecordOutcome's empty decision_id is the latest decision's (e1's of each pass);
	// GetDecision's is as written.
	if diff := cmp.Diff([]string{"dec-e1", "dec-fixed", "dec-e1~1", "dec-fixed", "dec-e1~2"}, s.decisionIDs); diff != "" {
		t.Errorf("decision ids sent by RecordOutcome and GetDecision (-want +got):\n%s", diff)
	}
	rep, err := loadtest.ReadReportFile(filepath.Join(out, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Decide.Completed != 14 || rep.Decide.Scheduled != 14 || rep.Decide.RPCs["GetDecision"] != 2 {
		t.Errorf("report: completed %d scheduled %d rpcs %v, want 14 of each kind as sent", rep.Decide.Completed, rep.Decide.Scheduled, rep.Decide.RPCs)
	}

	// Bad lines are all named, with their numbers.
	if err := os.WriteFile(data, []byte("{\"rpc\": \"Nope\"}\n{\"event\": {\"id\": 3}}\nnot json\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	err = run(t.Context(), []string{"loadtest", "--addr", addr, "--data-file", data, "--out", ""}, noEnv, nil, &stdout, &stderr)
	for _, want := range []string{"line 1: rpc \"Nope\"", "line 2: Decide request", "line 3: not a JSON object"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("arbiter loadtest with a bad data file = %v, want it to name %q", err, want)
		}
	}
}

// TestLoadtestStages: --stages ramps the rate; the report holds the stages and what they
// scheduled.
func TestLoadtestStages(t *testing.T) {
	addr := startScripted(t, &scriptedArbiter{})
	out := t.TempDir()
	var stdout, stderr bytes.Buffer
	if err := run(t.Context(), []string{"loadtest", "--addr", addr, "--stages", "300ms:200,300ms:200", "--customers", "10", "--out", out},
		noEnv, nil, &stdout, &stderr); err != nil {
		t.Fatalf("arbiter loadtest --stages: %v", err)
	}
	rep, err := loadtest.ReadReportFile(filepath.Join(out, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	// 0 to 200/s over 0.3 s is 30 requests, then 60 at 200/s; no warm-up with stages.
	if d := rep.Decide; d.Scheduled != 90 || d.Completed != 90 || len(d.Stages) != 2 || d.WarmupS != 0 {
		t.Errorf("report decide = scheduled %d completed %d stages %v warm-up %vs, want 90, 90, two stages, none",
			d.Scheduled, d.Completed, d.Stages, d.WarmupS)
	}
	err = run(t.Context(), []string{"loadtest", "--addr", addr, "--stages", "10s", "--out", ""}, noEnv, nil, &stdout, &stderr)
	if exitCode(err) != 2 {
		t.Errorf("arbiter loadtest --stages 10s = %v (exit %d), want a usage error (exit 2)", err, exitCode(err))
	}
}

func TestFaultFlags(t *testing.T) {
	var f faultFlags
	for _, bad := range []string{"", "5s", "5s=name", "5s=:cmd", "x=name:cmd", "-1s=name:cmd", "5s=name: "} {
		if err := f.Set(bad); err == nil {
			t.Errorf("--fault %q accepted, want an error", bad)
		}
	}
	dir := t.TempDir()
	if err := f.Set("1s=touch:touch " + dir + "/done"); err != nil {
		t.Fatal(err)
	}
	if err := f.Set("500ms=early:true"); err == nil {
		t.Error("a fault before the previous one was accepted, want an error")
	}
	if err := f.Set("2s=fails:echo boom; exit 3"); err != nil {
		t.Fatal(err)
	}
	if len(f) != 2 || f[0].At != time.Second || f[0].Name != "touch" {
		t.Fatalf("faults = %+v", f)
	}
	if err := f[0].Do(t.Context()); err != nil {
		t.Fatalf("touch fault: %v", err)
	}
	if _, err := os.Stat(dir + "/done"); err != nil {
		t.Errorf("the fault's command did not run: %v", err)
	}
	if err := f[1].Do(t.Context()); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Errorf("failing fault = %v, want an error with its output", err)
	}
}
