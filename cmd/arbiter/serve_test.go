package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/arbiter-dev/arbiter/featurestore/redistest"
	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
)

// syncBuffer is a bytes.Buffer safe for a writer and a reader in different goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// logLine returns the first JSON log line whose msg is msg.
func logLine(logs, msg string) map[string]any {
	sc := bufio.NewScanner(strings.NewReader(logs))
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil && m["msg"] == msg {
			return m
		}
	}
	return nil
}

// startServe runs "arbiter serve" on free loopback ports and returns its addresses, a
// function that stops it and waits for run's result, and its log.
func startServe(t testing.TB, args ...string) (grpcAddr, httpAddr string, stop func() error, logs *syncBuffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	logs = &syncBuffer{}
	done := make(chan error, 1)
	// A generous store budget: under -race on a loaded 2-core machine the first store calls
	// can exceed the 50 ms default, and these tests are not about degrading.
	args = append([]string{"serve", "--grpc-addr", "127.0.0.1:0", "--http-addr", "127.0.0.1:0", "--store-budget", "10s", "--store-budget-min", "0"}, args...)
	go func() { done <- run(ctx, args, func(string) string { return "" }, nil, io.Discard, logs) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if m := logLine(logs.String(), "serving"); m != nil {
			grpcAddr, httpAddr = m["grpc_addr"].(string), m["http_addr"].(string)
			break
		}
		select {
		case err := <-done:
			cancel()
			t.Fatalf("arbiter serve exited early: %v\n%s", err, logs)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("arbiter serve did not log \"serving\" within 10s:\n%s", logs)
		}
	}
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(15 * time.Second):
				t.Fatalf("arbiter serve did not stop within 15s")
			}
		})
		return err
	}
	t.Cleanup(func() { stop() })
	return grpcAddr, httpAddr, stop, logs
}

const sampleEvent = `{
  "event": {"id": "evt-0001", "type": "EVENT_TYPE_INVOICE_OVERDUE", "source": "billing"},
  "customer": {
    "id": "cust-123",
    "timezone": "UTC",
    "consents": [{"channel": "CHANNEL_EMAIL", "purpose": "PURPOSE_COLLECTIONS", "granted": true}],
    "preferredChannels": ["CHANNEL_EMAIL"]
  }
}`

// TestServeSetsGCTarget: without GOGC in the environment, serve sets the collector's target to
// serveGCPercent.
func TestServeSetsGCTarget(t *testing.T) {
	prev := debug.SetGCPercent(100)
	_, _, stop, _ := startServe(t)
	got := debug.SetGCPercent(prev)
	if err := stop(); err != nil {
		t.Errorf("arbiter serve returned %v after cancel, want nil", err)
	}
	if got != serveGCPercent {
		t.Errorf("GC percent while serving = %d, want %d", got, serveGCPercent)
	}
}

func TestServe(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	grpcAddr, httpAddr, stop, logs := startServe(t)

	// The gRPC health service answers SERVING.
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("grpc.NewClient(%s): %v", grpcAddr, err)
	}
	defer conn.Close()
	hc, err := healthpb.NewHealthClient(conn).Check(t.Context(), &healthpb.HealthCheckRequest{})
	if err != nil || hc.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("Health.Check() = %v, %v, want SERVING", hc.GetStatus(), err)
	}

	// The admin endpoints answer.
	for _, tc := range []struct{ path, want string }{
		{"/healthz", "ok"},
		{"/readyz", `"ready":true`},
	} {
		resp, err := http.Get("http://" + httpAddr + tc.path)
		if err != nil {
			t.Fatalf("GET %s: %v", tc.path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), tc.want) {
			t.Errorf("GET %s = %d %q, want 200 containing %q", tc.path, resp.StatusCode, body, tc.want)
		}
	}

	// arbiter decide prints a decision; --json prints the response.
	file := filepath.Join(t.TempDir(), "event.json")
	if err := os.WriteFile(file, []byte(sampleEvent), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := run(t.Context(), []string{"decide", "--addr", grpcAddr, "--file", file, "--explain"}, func(string) string { return "" }, nil, &out, io.Discard); err != nil {
		t.Fatalf("arbiter decide error: %v", err)
	}
	for _, want := range []string{"action     MESSAGE by EMAIL", "reasons", "policy     arbiter-default", "explanation", "candidates:"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("arbiter decide output lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	if err := run(t.Context(), []string{"decide", "--addr", grpcAddr, "--json"}, func(string) string { return "" }, strings.NewReader(sampleEvent), &out, io.Discard); err != nil {
		t.Fatalf("arbiter decide --json error: %v", err)
	}
	var resp arbiterv1.DecideResponse
	if err := protojson.Unmarshal(out.Bytes(), &resp); err != nil {
		t.Fatalf("arbiter decide --json output is not a DecideResponse: %v\n%s", err, out.String())
	}
	if !resp.GetReplayed() || resp.GetAction() != arbiterv1.Action_ACTION_MESSAGE {
		t.Errorf("arbiter decide --json (same event again) = replayed %v action %v, want replayed ACTION_MESSAGE", resp.GetReplayed(), resp.GetAction())
	}

	// /metrics shows the decision counters.
	mresp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	metrics, _ := io.ReadAll(mresp.Body)
	mresp.Body.Close()
	if !strings.Contains(string(metrics), `arbiter_decisions_total{action="message"`) {
		t.Errorf("GET /metrics lacks arbiter_decisions_total{action=\"message\"}:\n%.2000s", metrics)
	}

	conn.Close()
	if err := stop(); err != nil {
		t.Errorf("arbiter serve returned %v after cancel, want nil", err)
	}
	if logLine(logs.String(), "stopped") == nil {
		t.Errorf("arbiter serve did not log \"stopped\":\n%s", logs)
	}
	// No customer data beyond ids in the logs.
	if strings.Contains(logs.String(), "CHANNEL_EMAIL") || strings.Contains(logs.String(), "Europe") {
		t.Errorf("arbiter serve logs hold request data:\n%s", logs)
	}
}

// TestServeAuditSpool: with Redis down, a decision is answered degraded and its record is in
// the --audit-spool directory, counted in /metrics.
func TestServeAuditSpool(t *testing.T) {
	// go-redis keeps retrying its dials for a second after the client closed.
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent(), goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).tryDial"))
	dir := filepath.Join(t.TempDir(), "spool")
	// Nothing listens on port 1.
	grpcAddr, httpAddr, stop, _ := startServe(t, "--redis", "127.0.0.1:1", "--audit-spool", dir, "--store-budget", "100ms")
	var out bytes.Buffer
	if err := run(t.Context(), []string{"decide", "--addr", grpcAddr, "--json"}, func(string) string { return "" }, strings.NewReader(sampleEvent), &out, io.Discard); err != nil {
		t.Fatalf("arbiter decide with Redis down = %v, want a degraded answer", err)
	}
	var resp arbiterv1.DecideResponse
	if err := protojson.Unmarshal(out.Bytes(), &resp); err != nil || !resp.GetDegraded() {
		t.Fatalf("arbiter decide with Redis down = %s, %v; want degraded", out.String(), err)
	}
	segs, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	if len(segs) != 1 {
		t.Errorf("audit spool segments = %v, want 1", segs)
	}
	mresp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	metrics, _ := io.ReadAll(mresp.Body)
	mresp.Body.Close()
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^arbiter_audit_spool_records_total(\{.*\})? 1$`),
		regexp.MustCompile(`(?m)^arbiter_audit_spool_pending_bytes(\{.*\})? [1-9][0-9]*$`),
	} {
		if !want.Match(metrics) {
			t.Errorf("GET /metrics lacks %q:\n%s", want, metrics)
		}
	}
	if err := stop(); err != nil {
		t.Errorf("arbiter serve returned %v after cancel, want nil", err)
	}
}

// TestServeRetention: --record-retention sets the decision records' expiry in Redis, and an
// audit stream keeps every entry younger than it, however many there are: nothing is trimmed
// before the exporter could ship it.
func TestServeRetention(t *testing.T) {
	addr := redistest.Start(t)
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	grpcAddr, _, stop, _ := startServe(t, "--redis", addr, "--record-retention", "2h",
		"--audit-spool", filepath.Join(t.TempDir(), "spool"))
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	dc := arbiterv1.NewDecisionServiceClient(conn)
	const n = 600 // one customer, so one bucket and one audit stream
	var last *arbiterv1.DecideResponse
	for i := range n {
		last, err = dc.Decide(t.Context(), &arbiterv1.DecideRequest{
			Event:    &arbiterv1.Event{Id: fmt.Sprintf("ret-%d", i), Type: arbiterv1.EventType_EVENT_TYPE_INVOICE_OVERDUE, Source: "billing"},
			Customer: &arbiterv1.Customer{Id: "cust-retention", Timezone: "UTC"},
		})
		if err != nil || last.GetDegraded() {
			t.Fatalf("Decide #%d = degraded %v, %v; want an answer from Redis", i, last.GetDegraded(), err)
		}
	}
	id := last.GetDecisionId()
	ttl, err := rdb.PTTL(t.Context(), "{b:"+id[:2]+"}:d:"+id).Result()
	if err != nil || ttl < 119*time.Minute || ttl > 2*time.Hour {
		t.Errorf("TTL of the decision record = %v, %v; want about 2h", ttl, err)
	}
	xlen, err := rdb.XLen(t.Context(), "{b:"+id[:2]+"}:audit").Result()
	if err != nil || xlen != n {
		t.Errorf("audit stream length after %d decisions = %d, %v; want %d", n, xlen, err, n)
	}
	if err := stop(); err != nil {
		t.Errorf("arbiter serve returned %v after cancel, want nil", err)
	}
}

func TestServeBadConfig(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown flag", []string{"serve", "--nope"}, "flag provided but not defined"},
		{"missing policy", []string{"serve", "--policy", "/does/not/exist"}, "policy"},
		{"bad log level", []string{"serve", "--log-level", "loud"}, "log-level"},
		{"bad env", []string{"serve"}, "ARBITER_SHUTDOWN_TIMEOUT"},
		// Nothing listens on port 1: the store is down, which is not fatal; the spool is.
		{"retention too short", []string{"serve", "--record-retention", "10s"}, "--record-retention"},
		{"negative shutdown delay", []string{"serve", "--shutdown-delay", "-1s"}, "--shutdown-delay"},
		{"audit spool without room", []string{"serve", "--audit-spool-max-mib", "0"}, "--audit-spool-max-mib"},
		{"nats ack wait too short", []string{"serve", "--nats", "nats://127.0.0.1:1", "--nats-ack-wait", "1s"}, "--nats-ack-wait"},
		{"nats without workers", []string{"serve", "--nats", "nats://127.0.0.1:1", "--nats-workers", "0"}, "--nats-workers"},
		// Nothing listens on port 1: without NATS the edge cannot check its streams.
		{"nats down", []string{"serve", "--http-addr", "127.0.0.1:0", "--grpc-addr", "127.0.0.1:0", "--nats", "nats://127.0.0.1:1"}, "nats nats://127.0.0.1:1"},
		{"audit spool not writable", []string{"serve", "--redis", "127.0.0.1:1", "--audit-spool", filepath.Join(file, "spool")}, "audit spool"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := func(k string) string {
				if tc.name == "bad env" && k == "ARBITER_SHUTDOWN_TIMEOUT" {
					return "soon"
				}
				return ""
			}
			var stderr bytes.Buffer
			err := run(t.Context(), tc.args, env, nil, io.Discard, &stderr)
			if err == nil || !strings.Contains(err.Error()+stderr.String(), tc.want) {
				t.Errorf("run(%q) = %v, want an error mentioning %q", tc.args, err, tc.want)
			}
		})
	}
}

func TestDefaultAuditSpool(t *testing.T) {
	tests := []struct{ stateDir, want string }{
		{"", "audit-spool"},
		{"/var/lib/arbiter", "/var/lib/arbiter/audit-spool"},
		{"/var/lib/arbiter:/var/lib/other", "/var/lib/arbiter/audit-spool"},
	}
	for _, tc := range tests {
		env := func(k string) string {
			if k == "STATE_DIRECTORY" {
				return tc.stateDir
			}
			return ""
		}
		if got := defaultAuditSpool(env); got != tc.want {
			t.Errorf("defaultAuditSpool(STATE_DIRECTORY=%q) = %q, want %q", tc.stateDir, got, tc.want)
		}
	}
}

func TestDecideBadInput(t *testing.T) {
	tests := []struct {
		name, input, want string
	}{
		{"not JSON", "{", "parse event"},
		{"unknown field", `{"nope": 1}`, "parse event"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := run(t.Context(), []string{"decide", "--addr", "127.0.0.1:1"}, func(string) string { return "" }, strings.NewReader(tc.input), io.Discard, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("arbiter decide(%q) = %v, want an error mentioning %q", tc.input, err, tc.want)
			}
		})
	}
}

func TestRenderDecision(t *testing.T) {
	var b bytes.Buffer
	resp := &arbiterv1.DecideResponse{
		DecisionId: "00-x",
		Action:     arbiterv1.Action_ACTION_ESCALATE,
		Detail: &arbiterv1.DecideResponse_Escalate{Escalate: &arbiterv1.EscalateAction{
			Queue: "hardship", Priority: 1, Context: map[string]string{"journey": "arrears"},
		}},
		Reasons:  []*arbiterv1.Reason{{Code: "VULNERABLE_CUSTOMER", RuleId: "guardrail:vulnerable", Message: "a human decides"}},
		Policy:   &arbiterv1.PolicyRef{Id: "p", Version: "1", Digest: "d"},
		Degraded: true,
	}
	if err := renderDecision(&b, resp); err != nil {
		t.Fatal(err)
	}
	want := `decision   00-x
action     ESCALATE to queue "hardship", priority 1
           context journey = arrears
reasons    VULNERABLE_CUSTOMER [guardrail:vulnerable]: a human decides
policy     p 1 (d)
decided at now
note       degraded (decided without the customer's stored state)
`
	if b.String() != want {
		t.Errorf("renderDecision() =\n%s\nwant\n%s", b.String(), want)
	}

	// A dry run of an event id already decided says so.
	b.Reset()
	resp.Degraded, resp.DryRun, resp.PriorDecisionId = false, true, "00-first"
	if err := renderDecision(&b, resp); err != nil {
		t.Fatal(err)
	}
	wantNotes := `note       dry run (nothing reserved or recorded)
           this event id was already decided as 00-first: evaluated afresh here; without --dry-run it replays that decision
`
	if !strings.HasSuffix(b.String(), wantNotes) {
		t.Errorf("renderDecision(dry run, prior) =\n%s\nwant it to end with\n%s", b.String(), wantNotes)
	}

	// A decision in an experiment names its arm.
	b.Reset()
	resp.Experiment = &arbiterv1.ExperimentArm{Id: "retry-backoff", Arm: "holdout"}
	if err := renderDecision(&b, resp); err != nil {
		t.Fatal(err)
	}
	if want := "experiment retry-backoff, arm holdout\n"; !strings.Contains(b.String(), want) {
		t.Errorf("renderDecision(in an experiment) =\n%s\nwant a line %q", b.String(), want)
	}
}

func TestNewTracerProvider(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		sdk  bool
	}{
		{"no collector", nil, false},
		{"OTLP endpoint", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"}, true},
		{"OTLP traces endpoint", map[string]string{"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4317"}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tp, err := newTracerProvider(t.Context(), func(k string) string { return tc.env[k] })
			if err != nil {
				t.Fatalf("newTracerProvider() error: %v", err)
			}
			sdk, ok := tp.(*sdktrace.TracerProvider)
			if ok != tc.sdk {
				t.Errorf("newTracerProvider(%v) = %T, want an SDK provider: %v", tc.env, tp, tc.sdk)
			}
			if ok {
				ctx, cancel := context.WithTimeout(t.Context(), time.Second)
				defer cancel()
				_ = sdk.Shutdown(ctx)
			}
		})
	}
}

// TestServeRedisClientLogsJSON: with Redis down at start, the client's own complaints (failed
// dials) reach the service's JSON log, not stderr as plain text.
func TestServeRedisClientLogsJSON(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := l.Addr().String()
	l.Close()
	_, httpAddr, stop, logs := startServe(t, "--redis", "redis://"+down, "--audit-spool", t.TempDir())
	// Unready while the store cannot be warmed.
	resp, err := http.Get("http://" + httpAddr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "warming up") {
		t.Errorf("GET /readyz with Redis down = %d %s, want 503 warming up", resp.StatusCode, body)
	}
	if err := stop(); err != nil {
		t.Fatalf("serve: %v", err)
	}
	sc := bufio.NewScanner(strings.NewReader(logs.String()))
	client := 0
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("a log line is not JSON: %q", sc.Text())
		}
		if m["component"] == "redis-client" {
			client++
		}
	}
	if client == 0 {
		t.Fatalf("no redis-client line in the log of a serve whose Redis is down:\n%s", logs)
	}
}

// TestServeWarmsBeforeServing: on a fresh Redis and the default 50 ms store budget, the first
// decision is not degraded, and Redis never had to compile a script on a decision's time
// (no EVAL: serve loaded the scripts before it reported ready).
func TestServeWarmsBeforeServing(t *testing.T) {
	addr := redistest.Start(t)
	grpcAddr, httpAddr, _, _ := startServe(t, "--redis", "redis://"+addr, "--audit-spool", t.TempDir(), "--store-budget", "50ms")
	resp, err := http.Get("http://" + httpAddr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /readyz after start = %d, want 200", resp.StatusCode)
	}
	file := filepath.Join(t.TempDir(), "event.json")
	if err := os.WriteFile(file, []byte(sampleEvent), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := run(t.Context(), []string{"decide", "--addr", grpcAddr, "--file", file, "--json"}, func(string) string { return "" }, nil, &out, io.Discard); err != nil {
		t.Fatalf("arbiter decide: %v", err)
	}
	if strings.Contains(out.String(), `"degraded"`) || !strings.Contains(out.String(), "ACTION_MESSAGE") {
		t.Errorf("first decision after start = %s, want a MESSAGE not degraded", out.String())
	}
	raw := redis.NewClient(&redis.Options{Addr: addr})
	defer raw.Close()
	stats, err := raw.Info(t.Context(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stats, "cmdstat_evalsha:") || strings.Contains(stats, "cmdstat_eval:") {
		t.Errorf("want the decision's scripts run by EVALSHA alone:\n%s", stats)
	}
}
