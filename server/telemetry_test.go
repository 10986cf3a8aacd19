package server

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/protobuf/proto"

	"github.com/arbiter-dev/arbiter/breaker"
	"github.com/arbiter-dev/arbiter/decision"
	"github.com/arbiter-dev/arbiter/featurestore"
	"github.com/arbiter-dev/arbiter/featurestore/redistest"
	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
	"github.com/arbiter-dev/arbiter/guard"
	"github.com/arbiter-dev/arbiter/rollout"
)

// collect returns the metric called name from reader.
func collect(t *testing.T, reader *sdkmetric.ManualReader, name string) (metricdata.Metrics, bool) {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatalf("Collect() error: %v", err)
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name == name {
				return m, true
			}
		}
	}
	return metricdata.Metrics{}, false
}

func TestMetricsAndSpans(t *testing.T) {
	ctx := t.Context()
	c := newClock(testNow)
	reader := sdkmetric.NewManualReader()
	spans := tracetest.NewSpanRecorder()
	h := newHarness(t, memoryStore(t, c), c,
		WithMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))),
		WithTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))))

	for _, ev := range []string{"ev-1", "ev-2", "ev-2"} { // the third call replays
		if _, err := h.dc.Decide(ctx, overdue(ev, "cust-"+ev)); err != nil {
			t.Fatalf("Decide(%s) error: %v", ev, err)
		}
	}

	m, ok := collect(t, reader, "arbiter.decisions")
	if !ok {
		t.Fatalf("metric arbiter.decisions not found")
	}
	sum := m.Data.(metricdata.Sum[int64])
	var messages int64
	for _, dp := range sum.DataPoints {
		if v, _ := dp.Attributes.Value(attribute.Key("action")); v.AsString() == "message" {
			messages += dp.Value
		}
	}
	if messages != 3 {
		t.Errorf("arbiter.decisions{action=message} = %d, want 3", messages)
	}
	if m, ok := collect(t, reader, "arbiter.decisions.replayed"); !ok || m.Data.(metricdata.Sum[int64]).DataPoints[0].Value != 1 {
		t.Errorf("arbiter.decisions.replayed = %v, want 1", m.Data)
	}
	hist, ok := collect(t, reader, "arbiter.decide.duration")
	if !ok {
		t.Fatalf("metric arbiter.decide.duration not found")
	}
	var count uint64
	for _, dp := range hist.Data.(metricdata.Histogram[float64]).DataPoints {
		count += dp.Count
		if len(dp.Bounds) != len(latencyBuckets) {
			t.Errorf("arbiter.decide.duration bounds = %v, want %v", dp.Bounds, latencyBuckets)
		}
	}
	if count != 3 {
		t.Errorf("arbiter.decide.duration count = %d, want 3", count)
	}
	if _, ok := collect(t, reader, "arbiter.store.duration"); !ok {
		t.Errorf("metric arbiter.store.duration not found")
	}

	// The server's RPC span ends after its response is sent, so the client can see the answer
	// first: wait a little for the last one.
	var names map[string]int
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		names = map[string]int{}
		for _, s := range spans.Ended() {
			names[s.Name()]++
		}
		if names["arbiter.v1.DecisionService/Decide"] >= 3 || time.Now().After(deadline) {
			break
		}
	}
	if names["store.load"] != 3 || names["store.commit"] != 2 || names["arbiter.v1.DecisionService/Decide"] != 3 {
		t.Errorf("spans = %v, want 3 store.load, 2 store.commit and 3 arbiter.v1.DecisionService/Decide", names)
	}
}

func TestMetricsDegraded(t *testing.T) {
	c := newClock(testNow)
	reader := sdkmetric.NewManualReader()
	store := memoryStore(t, c).(interface {
		Store
		Close() error
	})
	srv := New(store, rollout.NewHolder(decision.DefaultPolicy()), WithClock(c.Now), WithAuditSpool(openTestSpool(t)),
		WithMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))))
	store.Close()
	if _, err := srv.Decide(t.Context(), overdue("ev-1", "cust-1")); err != nil {
		t.Fatalf("Decide() error: %v", err)
	}
	m, ok := collect(t, reader, "arbiter.decisions.degraded")
	if !ok {
		t.Fatalf("metric arbiter.decisions.degraded not found")
	}
	// Both reasons are there from the start; one decision degraded on an unavailable store.
	got := map[string]int64{}
	for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
		reason, _ := dp.Attributes.Value("reason")
		got[reason.AsString()] = dp.Value
	}
	want := map[string]int64{ReasonStoreUnavailable: 1, ReasonStoreCorrupt: 0}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("arbiter.decisions.degraded by reason (-want +got):\n%s", diff)
	}
}

func TestAdminHandler(t *testing.T) {
	c := newClock(testNow)
	pol := decision.DefaultPolicy()
	srv := New(memoryStore(t, c), rollout.NewHolder(pol), WithClock(c.Now))
	h := srv.AdminHandler(AdminConfig{Metrics: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("metrics\n"))
	})})
	get := func(path string) (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec.Code, rec.Body.String()
	}
	if code, _ := get("/healthz"); code != http.StatusOK {
		t.Errorf("GET /healthz = %d, want 200", code)
	}
	if code, body := get("/metrics"); code != http.StatusOK || body != "metrics\n" {
		t.Errorf("GET /metrics = %d %q, want 200 from the metrics handler", code, body)
	}
	if code, _ := get("/debug/pprof/"); code != http.StatusNotFound {
		t.Errorf("GET /debug/pprof/ without Pprof = %d, want 404", code)
	}
	code, body := get("/readyz")
	var r readiness
	if err := json.Unmarshal([]byte(body), &r); err != nil {
		t.Fatalf("GET /readyz body %q: %v", body, err)
	}
	want := readiness{Ready: true, Policy: pol.Ref().ID, Version: pol.Ref().Version, Digest: pol.Ref().Digest}
	if code != http.StatusOK || r != want {
		t.Errorf("GET /readyz = %d %+v, want 200 %+v", code, r, want)
	}
	srv.Drain()
	if code, body := get("/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "draining") {
		t.Errorf("GET /readyz after Drain = %d %q, want 503 draining", code, body)
	}

	noPolicy := New(memoryStore(t, c), rollout.NewHolder(nil)).AdminHandler(AdminConfig{Pprof: true})
	rec := httptest.NewRecorder()
	noPolicy.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("GET /readyz with no policy = %d, want 503", rec.Code)
	}
	rec = httptest.NewRecorder()
	noPolicy.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/debug/pprof/", nil))
	if rec.Code != http.StatusOK {
		t.Errorf("GET /debug/pprof/ with Pprof = %d, want 200", rec.Code)
	}
	rec = httptest.NewRecorder()
	noPolicy.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/debug/pprof/cmdline", nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("GET /debug/pprof/cmdline = %d, want 404: the command line may hold secrets", rec.Code)
	}
}

// TestAdminHandlerAuth checks the admin endpoints with client tokens: health and readiness
// open, /metrics for the metrics role, profiles for the admin role, the command line never.
func TestAdminHandlerAuth(t *testing.T) {
	const opsToken, scraperToken, gatewayToken = "arb_ops-0123456789", "arb_scraper-0123456789", "arb_gateway-0123456789"
	ac, err := guard.ParseAuthConfig([]byte("clients:\n" +
		"- {name: ops, token_sha256: " + guard.HashToken(opsToken) + ", roles: [admin]}\n" +
		"- {name: prometheus, token_sha256: " + guard.HashToken(scraperToken) + ", roles: [metrics]}\n" +
		"- {name: gateway, token_sha256: " + guard.HashToken(gatewayToken) + ", roles: [decide, read]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	auth, err := guard.NewAuthenticator(ac, sdkmetric.NewMeterProvider())
	if err != nil {
		t.Fatal(err)
	}
	c := newClock(testNow)
	h := New(memoryStore(t, c), rollout.NewHolder(decision.DefaultPolicy()), WithClock(c.Now)).AdminHandler(AdminConfig{
		Metrics: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("metrics\n")) }),
		Pprof:   true,
		Auth:    auth,
	})
	tests := []struct {
		path, token string
		want        int
	}{
		{"/healthz", "", http.StatusOK},
		{"/readyz", "", http.StatusOK},
		{"/metrics", "", http.StatusUnauthorized},
		{"/metrics", "arb_wrong", http.StatusUnauthorized},
		{"/metrics", scraperToken, http.StatusOK},
		{"/metrics", gatewayToken, http.StatusForbidden},
		{"/metrics", opsToken, http.StatusForbidden},
		{"/debug/pprof/", "", http.StatusUnauthorized},
		{"/debug/pprof/", scraperToken, http.StatusForbidden},
		{"/debug/pprof/", opsToken, http.StatusOK},
		{"/debug/pprof/goroutine?debug=1", "", http.StatusUnauthorized},
		{"/debug/pprof/goroutine?debug=1", opsToken, http.StatusOK},
		{"/debug/pprof/symbol", scraperToken, http.StatusForbidden},
		{"/debug/pprof/cmdline", opsToken, http.StatusNotFound},
	}
	for _, tt := range tests {
		req := httptest.NewRequest(http.MethodGet, tt.path, nil)
		if tt.token != "" {
			req.Header.Set("Authorization", "Bearer "+tt.token)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != tt.want {
			t.Errorf("GET %s with token %q = %d, want %d", tt.path, tt.token, rec.Code, tt.want)
		}
		if rec.Code == http.StatusUnauthorized && rec.Header().Get("WWW-Authenticate") == "" {
			t.Errorf("GET %s: 401 without WWW-Authenticate", tt.path)
		}
	}
}

// TestReadyzRedis checks /readyz on a Redis store, a shard of its own: ready while it answers,
// 503 when it is down, and the failed ping counts for the shard's breaker.
func TestReadyzRedis(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := l.Addr().String()
	l.Close() // nothing listens there now
	for _, tt := range []struct {
		name, addr string
		wantCode   int
		wantState  breaker.State
	}{
		{"up", redistest.Start(t), http.StatusOK, breaker.Closed},
		{"down", down, http.StatusServiceUnavailable, breaker.Open},
	} {
		t.Run(tt.name, func(t *testing.T) {
			br, err := breaker.NewSet(breaker.WithThreshold(1))
			if err != nil {
				t.Fatal(err)
			}
			srv := New(dialStore(t, tt.addr), rollout.NewHolder(decision.DefaultPolicy()), WithBreakers(br))
			rec := httptest.NewRecorder()
			srv.AdminHandler(AdminConfig{}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
			if rec.Code != tt.wantCode {
				t.Errorf("GET /readyz with Redis %s = %d %s, want %d", tt.name, rec.Code, rec.Body.String(), tt.wantCode)
			}
			if got := br.State(tt.addr); got != tt.wantState {
				t.Errorf("breaker of %s after /readyz = %v, want %v", tt.addr, got, tt.wantState)
			}
		})
	}
}

// TestHealthService checks the gRPC health service: serving, then not serving after Drain.
func TestHealthService(t *testing.T) {
	c := newClock(testNow)
	h := newHarness(t, memoryStore(t, c), c)
	hc := healthClient(h)
	for _, tc := range []struct {
		name  string
		drain bool
		want  string
	}{{"serving", false, "SERVING"}, {"draining", true, "NOT_SERVING"}} {
		if tc.drain {
			h.srv.Drain()
		}
		got, err := hc.Check(t.Context(), &healthCheckRequest{Service: arbiterv1.DecisionService_ServiceDesc.ServiceName})
		if err != nil {
			t.Fatalf("%s: Check() error: %v", tc.name, err)
		}
		if got.GetStatus().String() != tc.want {
			t.Errorf("%s: Check(DecisionService) = %v, want %s", tc.name, got.GetStatus(), tc.want)
		}
	}
}

// TestMetricsSpoolDrain: the spool's drain is measured like any store call (op append_decision).
func TestMetricsSpoolDrain(t *testing.T) {
	ctx := t.Context()
	reader := sdkmetric.NewManualReader()
	sp := openTestSpool(t)
	srv := New(featurestore.NewMemory(), rollout.NewHolder(decision.DefaultPolicy()), WithAuditSpool(sp),
		WithMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))))
	rec, err := proto.Marshal(&arbiterv1.DecisionRecord{DecisionId: featurestore.NewDecisionID("cust-1", testNow),
		EventId: "ev-1", CustomerId: "cust-1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := sp.Append(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if n, err := sp.Drain(ctx, measuredAppender{srv}); n != 1 || err != nil {
		t.Fatalf("Drain() = %d, %v; want 1 record drained", n, err)
	}
	m, ok := collect(t, reader, "arbiter.store.duration")
	if !ok {
		t.Fatal("arbiter.store.duration not recorded")
	}
	found := false
	for _, dp := range m.Data.(metricdata.Histogram[float64]).DataPoints {
		if op, _ := dp.Attributes.Value("op"); op.AsString() == "append_decision" && dp.Count == 1 {
			found = true
		}
	}
	if !found {
		t.Errorf("arbiter.store.duration has no op=append_decision point with one call: %+v", m.Data)
	}
}
