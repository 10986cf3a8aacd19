package server

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/arbiter-dev/arbiter/auditfile"
	"github.com/arbiter-dev/arbiter/cardnumber"
	"github.com/arbiter-dev/arbiter/decision"
	"github.com/arbiter-dev/arbiter/featurestore"
	"github.com/arbiter-dev/arbiter/featurestore/redistest"
	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
	"github.com/arbiter-dev/arbiter/guard"
	"github.com/arbiter-dev/arbiter/rollout"
	"github.com/redis/go-redis/v9"
)

// TestCardNumberCanaries sends canary card numbers in every string of every request of the
// public API through a real server, with authentication, rate limits and the guard wired as in
// production, on a real redis-server; each request must be refused with INVALID_ARGUMENT, and
// no canary may then be found in the logs, spans, metrics, audit export or any Redis key or
// value.
func TestCardNumberCanaries(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server")
	}
	ctx := context.Background()
	addr := redistest.Start(t)
	rdb, err := featurestore.Dial(addr)
	if err != nil {
		t.Fatalf("Dial(%s) = %v", addr, err)
	}
	store := featurestore.NewRedis(rdb, featurestore.WithClock(func() time.Time { return canaryNow }))
	t.Cleanup(func() { _ = store.Close() })

	// Telemetry and logs are captured in memory, logs at the most verbose level.
	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	spans := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans))

	token := "arb_canary-test-token-0123456789abcdefghijklmno"
	cfg, err := guard.ParseAuthConfig([]byte("clients:\n- {name: canary, token_sha256: " + guard.HashToken(token) + ", roles: [decide, read, admin]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	auth, err := guard.NewAuthenticator(cfg, mp, guard.WithAuthLogger(logger))
	if err != nil {
		t.Fatal(err)
	}
	rl, err := guard.NewRateLimiter(guard.RateLimit{PerSecond: 1e6, Burst: 1e6}, mp)
	if err != nil {
		t.Fatal(err)
	}
	srv := New(store, rollout.NewHolder(decision.DefaultPolicy()),
		WithClock(func() time.Time { return canaryNow }),
		WithLogger(logger), WithMeterProvider(mp), WithTracerProvider(tp),
		WithGRPCOptions(
			guard.MaxRecvMsgSize(0),
			grpc.ChainUnaryInterceptor(auth.UnaryInterceptor(), rl.UnaryInterceptor(), guard.CardGuardUnaryInterceptor(),
				guard.RequestTimesUnaryInterceptor(func() time.Time { return canaryNow })),
		))
	conn := serveLoopback(t, srv)
	callCtx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)

	// The valid requests go through, so that Redis, the logs and the spans hold real data
	// for the search below to look through.
	var decisionID string
	for _, c := range canaryCalls() {
		resp := c.resp()
		if err := conn.Invoke(callCtx, c.method, c.valid(decisionID), resp); err != nil {
			t.Fatalf("%s(valid request) = %v, want success", c.method, err)
		}
		if d, ok := resp.(*arbiterv1.DecideResponse); ok {
			decisionID = d.GetDecisionId()
		}
	}
	if decisionID == "" {
		t.Fatal("Decide returned no decision id")
	}

	// Every string slot of every request, with every canary: refused, naming a field.
	sent := 0
	for _, c := range canaryCalls() {
		valid := c.valid(decisionID)
		for _, pan := range cardnumber.TestNumbers {
			for i, set := range stringSlots(valid.ProtoReflect().Descriptor(), pan, 5) {
				req := proto.Clone(valid)
				set(req.ProtoReflect())
				err := conn.Invoke(callCtx, c.method, req, c.resp())
				sent++
				st := status.Convert(err)
				if st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), "card number") {
					t.Errorf("%s(canary %q in slot %d) = %v, want INVALID_ARGUMENT from the card guard", c.method, pan, i, err)
				}
				if strings.Contains(st.Message(), canaryDigits(pan)) || strings.Contains(st.Message(), pan) {
					t.Errorf("%s(canary in slot %d): status message %q echoes the canary", c.method, i, st.Message())
				}
			}
		}
	}
	t.Logf("sent %d canary requests", sent)

	// Now search everything the service wrote.
	haystacks := map[string]string{
		"logs":    logs.String(),
		"spans":   dumpSpans(spans.Ended()),
		"metrics": dumpMetrics(t, reader),
		"redis":   dumpRedis(t, rdb),
		"audit":   dumpAuditExport(t, rdb),
	}
	if !strings.Contains(haystacks["redis"], "cus-000123456") || !strings.Contains(haystacks["audit"], decisionID) {
		t.Fatalf("the Redis or audit dump does not hold the valid requests' data: the search would prove nothing")
	}
	for where, hay := range haystacks {
		for _, pan := range cardnumber.TestNumbers {
			for _, needle := range []string{pan, canaryDigits(pan)} {
				if i := strings.Index(hay, needle); i >= 0 {
					t.Errorf("canary %q found in %s: ...%s...", needle, where, hay[max(0, i-80):min(len(hay), i+len(needle)+80)])
				}
			}
		}
	}
}

// canaryNow is the server's clock in the canary test; guardDecideRequest's event happened an
// hour before.
var canaryNow = time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)

// canaryCall is one RPC of the public API with its request type.
type canaryCall struct {
	method string
	valid  func(decisionID string) proto.Message // a request that the server accepts
	resp   func() proto.Message
}

func canaryCalls() []canaryCall {
	return []canaryCall{
		{arbiterv1.DecisionService_Decide_FullMethodName,
			func(string) proto.Message { return guardDecideRequest() },
			func() proto.Message { return &arbiterv1.DecideResponse{} }},
		{arbiterv1.FeatureService_PutFeatures_FullMethodName,
			func(string) proto.Message {
				return &arbiterv1.PutFeaturesRequest{CustomerId: "cus-000123456", Features: map[string]*structpb.Value{
					"risk_score": structpb.NewNumberValue(0.2),
					"tier":       structpb.NewStringValue("gold"),
				}}
			},
			func() proto.Message { return &arbiterv1.PutFeaturesResponse{} }},
		{arbiterv1.DecisionService_RecordOutcome_FullMethodName,
			func(id string) proto.Message {
				return &arbiterv1.RecordOutcomeRequest{DecisionId: id, Outcome: arbiterv1.Outcome_OUTCOME_DELIVERED, OccurredAt: timestamppb.New(canaryNow)}
			},
			func() proto.Message { return &arbiterv1.RecordOutcomeResponse{} }},
		{arbiterv1.DecisionService_GetDecision_FullMethodName,
			func(id string) proto.Message { return &arbiterv1.GetDecisionRequest{DecisionId: id} },
			func() proto.Message { return &arbiterv1.GetDecisionResponse{} }},
		{arbiterv1.FeatureService_GetCustomerState_FullMethodName,
			func(string) proto.Message { return &arbiterv1.GetCustomerStateRequest{CustomerId: "cus-000123456"} },
			func() proto.Message { return &arbiterv1.GetCustomerStateResponse{} }},
	}
}

// canaryDigits returns pan without separators.
func canaryDigits(pan string) string {
	return strings.NewReplacer(" ", "", "-", "").Replace(pan)
}

func dumpSpans(spans []sdktrace.ReadOnlySpan) string {
	var b strings.Builder
	for _, s := range spans {
		fmt.Fprintf(&b, "%s %v %v\n", s.Name(), s.Status(), s.Attributes())
		for _, e := range s.Events() {
			fmt.Fprintf(&b, "  event %s %v\n", e.Name, e.Attributes)
		}
		for _, l := range s.Links() {
			fmt.Fprintf(&b, "  link %v\n", l.Attributes)
		}
	}
	return b.String()
}

func dumpMetrics(t *testing.T, reader *sdkmetric.ManualReader) string {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%+v", rm)
}

// dumpRedis returns every key and value in Redis, each value read by its type and also as its
// DUMP serialisation.
func dumpRedis(t *testing.T, rdb redis.UniversalClient) string {
	t.Helper()
	ctx := context.Background()
	var b strings.Builder
	var cursor uint64
	for {
		keys, next, err := rdb.Scan(ctx, cursor, "*", 1000).Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			typ, err := rdb.Type(ctx, k).Result()
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&b, "key %q type %s\n", k, typ)
			var v any
			switch typ {
			case "string":
				v, err = rdb.Get(ctx, k).Result()
			case "hash":
				v, err = rdb.HGetAll(ctx, k).Result()
			case "list":
				v, err = rdb.LRange(ctx, k, 0, -1).Result()
			case "set":
				v, err = rdb.SMembers(ctx, k).Result()
			case "zset":
				v, err = rdb.ZRangeWithScores(ctx, k, 0, -1).Result()
			case "stream":
				v, err = rdb.XRange(ctx, k, "-", "+").Result()
			default:
				t.Errorf("key %q has type %s, which the search does not read", k, typ)
			}
			if err != nil {
				t.Fatalf("read %s %q: %v", typ, k, err)
			}
			dump, err := rdb.Dump(ctx, k).Result()
			if err != nil {
				t.Fatalf("DUMP %q: %v", k, err)
			}
			fmt.Fprintf(&b, "  %+v\n  dump %q\n", v, dump)
		}
		if next == 0 {
			break
		}
		cursor = next
	}
	return b.String()
}

// dumpAuditExport exports the audit trail to a JSON-lines file, as the audit exporter does in
// production, and returns the file.
func dumpAuditExport(t *testing.T, rdb redis.UniversalClient) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	sink, err := auditfile.OpenJSONLSink(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := featurestore.NewAuditExporter(rdb, sink).Drain(context.Background()); err != nil {
		t.Fatalf("audit Drain() = %v", err)
	}
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
