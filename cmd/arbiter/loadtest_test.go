package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
	"github.com/arbiter-dev/arbiter/loadtest"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
)

// fakeArbiter is a hand-written stand-in for the server: it answers Decide at once and keeps
// every PutFeatures request.
type fakeArbiter struct {
	arbiterv1.UnimplementedDecisionServiceServer
	arbiterv1.UnimplementedFeatureServiceServer
	mu   sync.Mutex
	puts map[string]*arbiterv1.PutFeaturesRequest
}

func (f *fakeArbiter) Decide(ctx context.Context, req *arbiterv1.DecideRequest) (*arbiterv1.DecideResponse, error) {
	return &arbiterv1.DecideResponse{DecisionId: "d", Action: arbiterv1.Action_ACTION_MESSAGE}, nil
}

func (f *fakeArbiter) PutFeatures(ctx context.Context, req *arbiterv1.PutFeaturesRequest) (*arbiterv1.PutFeaturesResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.puts[req.GetCustomerId()] = req
	return &arbiterv1.PutFeaturesResponse{}, nil
}

// startFake serves a fakeArbiter and the health service on a loopback port.
func startFake(t *testing.T, opts ...grpc.ServerOption) (*fakeArbiter, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeArbiter{puts: map[string]*arbiterv1.PutFeaturesRequest{}}
	gs := grpc.NewServer(opts...)
	arbiterv1.RegisterDecisionServiceServer(gs, f)
	arbiterv1.RegisterFeatureServiceServer(gs, f)
	healthpb.RegisterHealthServer(gs, health.NewServer())
	go gs.Serve(lis) //nolint:errcheck // returns when stopped
	t.Cleanup(gs.Stop)
	return f, lis.Addr().String()
}

func noEnv(string) string { return "" }

func TestLoadtestCommand(t *testing.T) {
	f, addr := startFake(t)
	// The admin endpoint: every read of /metrics says the server used 10 ms more CPU.
	var cpuReads atomic.Int64
	admin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "go_goroutines 12\ngo_memstats_heap_inuse_bytes 4e+06\nprocess_cpu_seconds_total %g\n", 0.01*float64(cpuReads.Add(1)))
	}))
	defer admin.Close()
	dir := t.TempDir()
	var stdout, stderr bytes.Buffer
	err := run(t.Context(), []string{"loadtest", "--addr", addr, "--rate", "400", "--duration", "500ms", "--warmup", "100ms",
		"--customers", "30", "--zipf-s", "1.5", "--zipf-v", "2", "--baseline", "--max-step", "200ms", "--out", dir,
		"--watch-admin", admin.URL, "--watch-every", "50ms", "--cpuprofile", filepath.Join(dir, "client.prof")}, noEnv, nil, &stdout, &stderr)
	if err != nil {
		t.Fatalf("arbiter loadtest: %v\nstderr:\n%s", err, stderr.String())
	}
	if len(f.puts) != 30 {
		t.Errorf("seeded %d customers through PutFeatures, want 30", len(f.puts))
	}
	rep, err := loadtest.ReadReportFile(filepath.Join(dir, "report.json"))
	if err != nil {
		t.Fatal(err)
	}
	if rep.ZipfS != 1.5 || rep.ZipfV != 2 {
		t.Errorf("report zipf = s %v, v %v; want the flags' 1.5 and 2", rep.ZipfS, rep.ZipfV)
	}
	if rep.Decide.Completed != 200 || rep.Decide.Actions["MESSAGE"] != 200 {
		t.Errorf("report decide: completed %d, actions %v; want 200 MESSAGE (400/s for 0.5s)", rep.Decide.Completed, rep.Decide.Actions)
	}
	if rep.Baseline == nil || rep.MaxDecide == nil || rep.MaxBaseline == nil || rep.Ratios == nil {
		t.Fatalf("report lacks baseline parts: baseline %v, max %v/%v, ratios %v", rep.Baseline, rep.MaxDecide, rep.MaxBaseline, rep.Ratios)
	}
	if rep.Ratios.MaxThroughput <= 0 {
		t.Errorf("Ratios.MaxThroughput = %v, want > 0", rep.Ratios.MaxThroughput)
	}
	if rep.Resources == nil || len(rep.Resources.Samples) < 5 || rep.Resources.Samples[0].Goroutines != 12 {
		t.Errorf("report resources = %+v, want ≥ 5 samples of 12 goroutines", rep.Resources)
	}
	// 240 calls (warm-up included) between two reads of /metrics some reads apart.
	if c := rep.Decide.CPU; c == nil || c.Calls != 240 || c.ServerUs <= 0 || c.ClientUs <= 0 || c.RedisUs != -1 {
		t.Errorf("decide CPU = %+v, want 240 calls, server and client CPU > 0, redis unknown (-1)", c)
	}
	// The maximum-throughput steps measure their CPU too: the best step's calls, warm-up
	// included, at 10 ms of server CPU per pair of /metrics reads.
	for _, m := range []*loadtest.Result{rep.MaxDecide, rep.MaxBaseline} {
		if c := m.CPU; c == nil || c.Calls != m.Calls || c.ServerUs <= 0 || c.ClientUs <= 0 {
			t.Errorf("%s CPU = %+v, want the step's %d calls and server and client CPU > 0", m.Name, c, m.Calls)
		}
	}
	if !strings.Contains(stdout.String(), "CPU per call, decide max (closed)") {
		t.Errorf("stdout lacks the CPU per call of the maximum-throughput step:\n%s", stdout.String())
	}
	html, err := os.ReadFile(filepath.Join(dir, "report.html"))
	if err != nil || !bytes.Contains(html, []byte("<svg")) {
		t.Errorf("report.html: err %v, has chart %v", err, bytes.Contains(html, []byte("<svg")))
	}
	for _, want := range []string{"p99.9", "ratio to the empty-handler baseline", "action mix: MESSAGE 200 (100.0%)"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("stdout lacks %q; got:\n%s", want, stdout.String())
		}
	}

	// The load generator's own CPU profile: gzip'ed pprof, with its sample types.
	if prof, err := os.Open(filepath.Join(dir, "client.prof")); err != nil {
		t.Errorf("--cpuprofile: %v", err)
	} else {
		defer prof.Close()
		zr, err := gzip.NewReader(prof)
		if err != nil {
			t.Fatalf("--cpuprofile wrote no gzip'ed profile: %v", err)
		}
		b, err := io.ReadAll(zr)
		if err != nil || !bytes.Contains(b, []byte("nanoseconds")) {
			t.Errorf("--cpuprofile: %d bytes, err %v; want a CPU profile (sample unit nanoseconds)", len(b), err)
		}
	}

	// --compare of the report with itself: every ratio is 1.
	stdout.Reset()
	path := filepath.Join(dir, "report.json")
	if err := run(t.Context(), []string{"loadtest", "--compare", path, path}, noEnv, nil, &stdout, &stderr); err != nil {
		t.Fatalf("arbiter loadtest --compare: %v", err)
	}
	if !strings.Contains(stdout.String(), "decide p50") {
		t.Errorf("--compare output lacks the decide p50 row:\n%s", stdout.String())
	}
}

func TestLoadtestRefusesFlatZipf(t *testing.T) {
	var out bytes.Buffer
	err := run(t.Context(), []string{"loadtest", "--addr", "127.0.0.1:1", "--zipf-s", "1", "--duration", "1s"}, noEnv, nil, &out, &out)
	if err == nil || !strings.Contains(err.Error(), "zipf s = 1") {
		t.Errorf("arbiter loadtest --zipf-s 1 = %v, want an error naming zipf s", err)
	}
}

func TestLoadtestRefusesRemoteTarget(t *testing.T) {
	var out bytes.Buffer
	err := run(t.Context(), []string{"loadtest", "--addr", "10.1.2.3:50051", "--duration", "1s"}, noEnv, nil, &out, &out)
	if err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Errorf("arbiter loadtest --addr 10.1.2.3:50051 = %v, want a loopback error", err)
	}
}

func TestFeaturesImportRPC(t *testing.T) {
	f, addr := startFake(t)
	file := filepath.Join(t.TempDir(), "customers.jsonl")
	lines := `{"customer_id": "c1", "features": {"days_past_due": 12, "vulnerable": true}, "ttl": "720h"}

{"customer_id": "c2", "features": {"timezone": "Europe/London"}}
`
	if err := os.WriteFile(file, []byte(lines), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	if err := run(t.Context(), []string{"features", "import", "--file", file, "--addr", addr}, noEnv, nil, &stdout, &stderr); err != nil {
		t.Fatalf("arbiter features import: %v\n%s", err, stderr.String())
	}
	want := map[string]*arbiterv1.PutFeaturesRequest{
		"c1": {CustomerId: "c1", Ttl: durationpb.New(720 * 3600e9), Features: map[string]*structpb.Value{
			"days_past_due": structpb.NewNumberValue(12), "vulnerable": structpb.NewBoolValue(true)}},
		"c2": {CustomerId: "c2", Features: map[string]*structpb.Value{"timezone": structpb.NewStringValue("Europe/London")}},
	}
	if diff := cmp.Diff(want, f.puts, protocmp.Transform()); diff != "" {
		t.Errorf("PutFeatures calls mismatch (-want +got):\n%s", diff)
	}
	if !strings.Contains(stdout.String(), "imported 2 customers") {
		t.Errorf("stdout = %q, want it to say 2 customers were imported", stdout.String())
	}
}

func TestFeaturesImportBadLine(t *testing.T) {
	_, addr := startFake(t)
	tests := []struct {
		name, content, want string
	}{
		{"missing id", `{"features": {"a": 1}}`, "line 1: customer_id is required"},
		{"bad ttl", "{\"customer_id\": \"c\", \"features\": {\"a\": 1}}\n{\"customer_id\": \"d\", \"features\": {\"a\": 1}, \"ttl\": \"soon\"}", `line 2: ttl "soon"`},
		{"not json", `customer,features`, "line 1: invalid JSON"},
		{"unknown field", `{"customer_id": "c", "features": {"a": 1}, "card": "x"}`, "line 1: invalid JSON"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			err := run(t.Context(), []string{"features", "import", "--file", "-", "--addr", addr}, noEnv,
				strings.NewReader(tc.content), &out, &out)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("features import of %q = %v, want an error containing %q", tc.content, err, tc.want)
			}
		})
	}
}

// TestLoadtestToken runs the load test against a server that wants a bearer token on every
// Decide and PutFeatures: with --token (or ARBITER_TOKEN) every call is answered, without it
// the seeding is refused.
func TestLoadtestToken(t *testing.T) {
	const token = "lt-s3cret"
	f := &fakeArbiter{puts: map[string]*arbiterv1.PutFeaturesRequest{}}
	var unauthenticated atomic.Int64
	gs := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if strings.HasPrefix(info.FullMethod, "/arbiter.v1.") {
			md, _ := metadata.FromIncomingContext(ctx)
			if got := md.Get("authorization"); len(got) != 1 || got[0] != "Bearer "+token {
				unauthenticated.Add(1)
				return nil, status.Error(codes.Unauthenticated, "no token")
			}
		}
		return h(ctx, req)
	}))
	arbiterv1.RegisterDecisionServiceServer(gs, f)
	arbiterv1.RegisterFeatureServiceServer(gs, f)
	healthpb.RegisterHealthServer(gs, health.NewServer())
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go gs.Serve(lis) //nolint:errcheck // returns when stopped
	t.Cleanup(gs.Stop)

	args := []string{"loadtest", "--addr", lis.Addr().String(), "--rate", "200", "--duration", "250ms", "--warmup", "50ms",
		"--customers", "10", "--out", ""}
	for _, tt := range []struct {
		name string
		args []string
		env  func(string) string
	}{
		{"flag", append(slices.Clone(args), "--token", token), noEnv},
		{"environment", args, func(k string) string {
			if k == "ARBITER_TOKEN" {
				return token
			}
			return ""
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if err := run(t.Context(), tt.args, tt.env, nil, &stdout, &stderr); err != nil {
				t.Fatalf("arbiter loadtest: %v\n%s", err, stderr.String())
			}
			if n := unauthenticated.Load(); n != 0 {
				t.Errorf("%d calls without the token", n)
			}
			if !strings.Contains(stdout.String(), "errors by code: none") {
				t.Errorf("stdout lacks %q:\n%s", "errors by code: none", stdout.String())
			}
		})
	}
	var stdout, stderr bytes.Buffer
	err = run(t.Context(), args, noEnv, nil, &stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "Unauthenticated") {
		t.Errorf("arbiter loadtest without a token = %v, want the seeding refused (Unauthenticated)", err)
	}
}
