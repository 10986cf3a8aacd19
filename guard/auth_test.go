package guard

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
)

// Fixed test tokens. Real ones come from NewToken.
const (
	tokGateway = "arb_gateway-test-token-0123456789abcdefghijklmno"
	tokAnalyst = "arb_analyst-test-token-0123456789abcdefghijklmno"
	tokAdmin   = "arb_admin-test-token-0123456789abcdefghijklmnopq"
)

func testAuthConfig(t testing.TB) *AuthConfig {
	t.Helper()
	yml := "clients:\n" +
		"  - name: gateway\n    token_sha256: " + HashToken(tokGateway) + "\n    roles: [decide]\n    rate_limit: {per_second: 5, burst: 2}\n" +
		"  - name: analyst\n    token_sha256: " + strings.ToUpper(HashToken(tokAnalyst)) + "\n    roles: [read]\n" +
		"  - name: ops\n    token_sha256: " + HashToken(tokAdmin) + "\n    roles: [admin, read]\n"
	cfg, err := ParseAuthConfig([]byte(yml))
	if err != nil {
		t.Fatalf("ParseAuthConfig() = %v", err)
	}
	return cfg
}

func TestHashToken(t *testing.T) {
	// SHA-256 of "abc", FIPS 180-2 test vector.
	if got, want := HashToken("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"; got != want {
		t.Errorf("HashToken(abc) = %s, want %s", got, want)
	}
}

func TestNewToken(t *testing.T) {
	a, err := NewToken(nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewToken(nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(a, "arb_") || len(a) != 4+43 {
		t.Errorf("NewToken() = %q, want arb_ and 43 base64url characters", a)
	}
	if a == b {
		t.Errorf("NewToken() twice = %q both times", a)
	}
	if _, err := NewToken(bytes.NewReader(make([]byte, 10))); err == nil {
		t.Errorf("NewToken(short reader) = nil error, want error")
	}
}

func TestParseAuthConfig(t *testing.T) {
	h := HashToken("t1")
	tests := []struct {
		name    string
		in      string
		wantErr string // "" means it parses
	}{
		{"yaml", "clients:\n- {name: a, token_sha256: " + h + ", roles: [decide]}\n", ""},
		{"json", `{"clients":[{"name":"a","token_sha256":"` + h + `","roles":["read","admin"],"rate_limit":{"per_second":10}}]}`, ""},
		{"empty", "", "empty"},
		{"no clients", "clients: []\n", "no clients"},
		{"plain token field refused", "clients:\n- {name: a, token: secret, roles: [decide]}\n", "token"},
		{"unknown field", "clients:\n- {name: a, token_sha256: " + h + ", roles: [decide], extra: 1}\n", "extra"},
		{"missing name", "clients:\n- {token_sha256: " + h + ", roles: [decide]}\n", "name is empty"},
		{"name with space", "clients:\n- {name: 'a b', token_sha256: " + h + ", roles: [decide]}\n", "printable"},
		{"duplicate name", "clients:\n- {name: a, token_sha256: " + h + ", roles: [decide]}\n- {name: a, token_sha256: " + HashToken("t2") + ", roles: [read]}\n", "repeated"},
		{"shared hash", "clients:\n- {name: a, token_sha256: " + h + ", roles: [decide]}\n- {name: b, token_sha256: " + h + ", roles: [read]}\n", "shared"},
		{"short hash", "clients:\n- {name: a, token_sha256: abcd, roles: [decide]}\n", "64 hex"},
		{"not hex", "clients:\n- {name: a, token_sha256: " + strings.Repeat("z", 64) + ", roles: [decide]}\n", "64 hex"},
		{"empty token hash", "clients:\n- {name: a, token_sha256: " + HashToken("") + ", roles: [decide]}\n", "empty token"},
		{"no roles", "clients:\n- {name: a, token_sha256: " + h + "}\n", "no roles"},
		{"unknown role", "clients:\n- {name: a, token_sha256: " + h + ", roles: [root]}\n", "unknown role"},
		{"negative rate", "clients:\n- {name: a, token_sha256: " + h + ", roles: [read], rate_limit: {per_second: -1}}\n", "per_second"},
		{"negative burst", "clients:\n- {name: a, token_sha256: " + h + ", roles: [read], rate_limit: {per_second: 1, burst: -1}}\n", "burst"},
		{"not yaml", "clients: [", "auth config"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseAuthConfig([]byte(tt.in))
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("ParseAuthConfig() = %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("ParseAuthConfig() = %v, want error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestParseAuthConfigDefaultsBurst(t *testing.T) {
	cfg, err := ParseAuthConfig([]byte("clients:\n- {name: a, token_sha256: " + HashToken("x") + ", roles: [read], rate_limit: {per_second: 50}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := *cfg.Clients[0].RateLimit; got != (RateLimit{PerSecond: 50, Burst: 50}) {
		t.Errorf("rate_limit = %+v, want burst defaulted to 50", got)
	}
}

func TestMethodRole(t *testing.T) {
	tests := []struct {
		method   string
		wantRole Role
		wantOpen bool
		wantOK   bool
	}{
		{arbiterv1.DecisionService_Decide_FullMethodName, RoleDecide, false, true},
		{arbiterv1.DecisionService_RecordOutcome_FullMethodName, RoleDecide, false, true},
		{arbiterv1.DecisionService_GetDecision_FullMethodName, RoleRead, false, true},
		{arbiterv1.FeatureService_GetCustomerState_FullMethodName, RoleRead, false, true},
		{arbiterv1.FeatureService_PutFeatures_FullMethodName, RoleAdmin, false, true},
		{arbiterv1.PolicyService_ActivatePolicy_FullMethodName, RoleAdmin, false, true},
		{arbiterv1.PolicyService_ApprovePolicy_FullMethodName, RoleApprove, false, true},
		{arbiterv1.DecisionService_Confirm_FullMethodName, RoleDecide, false, true},
		{"/arbiter.v1.PolicyService/SomethingAddedLater", RoleAdmin, false, true},
		{"/grpc.health.v1.Health/Check", "", true, true},
		{"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", "", true, true},
		{"/arbiter.v1.DecisionService/Unknown", "", false, false},
		{"/other.Service/Method", "", false, false},
	}
	for _, tt := range tests {
		role, open, ok := MethodRole(tt.method)
		if role != tt.wantRole || open != tt.wantOpen || ok != tt.wantOK {
			t.Errorf("MethodRole(%s) = %q, %v, %v, want %q, %v, %v", tt.method, role, open, ok, tt.wantRole, tt.wantOpen, tt.wantOK)
		}
	}
}

func TestAuthorize(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	var logs bytes.Buffer
	a, err := NewAuthenticator(testAuthConfig(t), mp, WithAuthLogger(slog.New(slog.NewJSONHandler(&logs, nil))), WithAuthLogRate(1000))
	if err != nil {
		t.Fatal(err)
	}
	bearer := func(tok string) metadata.MD { return metadata.Pairs("authorization", "Bearer "+tok) }
	tests := []struct {
		name       string
		md         metadata.MD
		method     string
		wantCode   codes.Code
		wantClient string
	}{
		{"decide with decide role", bearer(tokGateway), arbiterv1.DecisionService_Decide_FullMethodName, codes.OK, "gateway"},
		{"record outcome with decide role", bearer(tokGateway), arbiterv1.DecisionService_RecordOutcome_FullMethodName, codes.OK, "gateway"},
		{"lower-case scheme", metadata.Pairs("authorization", "bearer "+tokGateway), arbiterv1.DecisionService_Decide_FullMethodName, codes.OK, "gateway"},
		{"read without read role", bearer(tokGateway), arbiterv1.DecisionService_GetDecision_FullMethodName, codes.PermissionDenied, ""},
		{"put features without admin", bearer(tokGateway), arbiterv1.FeatureService_PutFeatures_FullMethodName, codes.PermissionDenied, ""},
		{"read with read role", bearer(tokAnalyst), arbiterv1.FeatureService_GetCustomerState_FullMethodName, codes.OK, "analyst"},
		{"decide with read role", bearer(tokAnalyst), arbiterv1.DecisionService_Decide_FullMethodName, codes.PermissionDenied, ""},
		{"admin does not imply decide", bearer(tokAdmin), arbiterv1.DecisionService_Decide_FullMethodName, codes.PermissionDenied, ""},
		{"admin policy", bearer(tokAdmin), arbiterv1.PolicyService_PublishPolicy_FullMethodName, codes.OK, "ops"},
		{"admin put features", bearer(tokAdmin), arbiterv1.FeatureService_PutFeatures_FullMethodName, codes.OK, "ops"},
		{"policy without admin", bearer(tokAnalyst), arbiterv1.PolicyService_ListPolicies_FullMethodName, codes.PermissionDenied, ""},
		{"unknown method denied", bearer(tokAdmin), "/other.Service/Method", codes.PermissionDenied, ""},
		{"no metadata", nil, arbiterv1.DecisionService_Decide_FullMethodName, codes.Unauthenticated, ""},
		{"no authorization", metadata.Pairs("x-other", "1"), arbiterv1.DecisionService_Decide_FullMethodName, codes.Unauthenticated, ""},
		{"wrong token", bearer("arb_wrong"), arbiterv1.DecisionService_Decide_FullMethodName, codes.Unauthenticated, ""},
		{"empty token", bearer(""), arbiterv1.DecisionService_Decide_FullMethodName, codes.Unauthenticated, ""},
		{"basic scheme", metadata.Pairs("authorization", "Basic "+tokGateway), arbiterv1.DecisionService_Decide_FullMethodName, codes.Unauthenticated, ""},
		{"raw token without scheme", metadata.Pairs("authorization", tokGateway), arbiterv1.DecisionService_Decide_FullMethodName, codes.Unauthenticated, ""},
		{"two authorization entries", metadata.Pairs("authorization", "Bearer "+tokGateway, "authorization", "Bearer "+tokAdmin), arbiterv1.DecisionService_Decide_FullMethodName, codes.Unauthenticated, ""},
		{"health open without token", nil, "/grpc.health.v1.Health/Check", codes.OK, ""},
		{"health with bad token still open", bearer("nope"), "/grpc.health.v1.Health/Check", codes.OK, ""},
		{"health with good token names client", bearer(tokAnalyst), "/grpc.health.v1.Health/Check", codes.OK, "analyst"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			if tt.md != nil {
				ctx = metadata.NewIncomingContext(ctx, tt.md)
			}
			got, err := a.Authorize(ctx, tt.method)
			if code := status.Code(err); code != tt.wantCode {
				t.Fatalf("Authorize(%s) code = %v (%v), want %v", tt.method, code, err, tt.wantCode)
			}
			if err != nil {
				return
			}
			id, ok := ClientFromContext(got)
			if ok != (tt.wantClient != "") || id.Name != tt.wantClient {
				t.Errorf("ClientFromContext() = %q, %v, want %q", id.Name, ok, tt.wantClient)
			}
		})
	}
	for _, tok := range []string{tokGateway, tokAnalyst, tokAdmin, "arb_wrong"} {
		if strings.Contains(logs.String(), tok) {
			t.Errorf("denial logs hold token %s: %s", tok, logs.String())
		}
	}
	if !strings.Contains(logs.String(), `"client":"gateway"`) || !strings.Contains(logs.String(), `"reason":"bad_token"`) {
		t.Errorf("denial logs = %s, want the client name and the reason", logs.String())
	}

	// Every refusal is counted, by reason.
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	byReason := map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != "arbiter.auth.failures" {
				continue
			}
			for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
				r, _ := dp.Attributes.Value("reason")
				byReason[r.AsString()] += dp.Value
			}
		}
	}
	want := map[string]int64{"permission_denied": 5, "unknown_method": 1, "missing_token": 2, "bad_token": 5}
	if diff := cmp.Diff(want, byReason); diff != "" {
		t.Errorf("arbiter.auth.failures by reason (-want +got):\n%s", diff)
	}
}

func TestAuthenticatorSetConfig(t *testing.T) {
	a, err := NewAuthenticator(testAuthConfig(t), sdkmetric.NewMeterProvider())
	if err != nil {
		t.Fatal(err)
	}
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+tokGateway))
	if _, err := a.Authorize(ctx, arbiterv1.DecisionService_Decide_FullMethodName); err != nil {
		t.Fatalf("Authorize before revocation = %v", err)
	}
	// Revoke the gateway by reloading a file without it.
	cfg, err := ParseAuthConfig([]byte("clients:\n- {name: ops, token_sha256: " + HashToken(tokAdmin) + ", roles: [admin]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.SetConfig(cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Authorize(ctx, arbiterv1.DecisionService_Decide_FullMethodName); status.Code(err) != codes.Unauthenticated {
		t.Errorf("Authorize after revocation = %v, want Unauthenticated", err)
	}
	if err := a.SetConfig(&AuthConfig{}); err == nil {
		t.Errorf("SetConfig(empty) = nil, want error")
	}
}

// identityDecisions answers Decide with the caller's client name as decision id, so a test can
// see the identity reach the handler.
type identityDecisions struct {
	arbiterv1.UnimplementedDecisionServiceServer
	calls int
}

func (s *identityDecisions) Decide(ctx context.Context, _ *arbiterv1.DecideRequest) (*arbiterv1.DecideResponse, error) {
	s.calls++
	id, _ := ClientFromContext(ctx)
	return &arbiterv1.DecideResponse{DecisionId: "for-" + id.Name}, nil
}

// startSecServer serves svc and health on bufconn with the given server options.
func startSecServer(t *testing.T, svc arbiterv1.DecisionServiceServer, opts ...grpc.ServerOption) *grpc.ClientConn {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer(opts...)
	arbiterv1.RegisterDecisionServiceServer(srv, svc)
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func TestAuthInterceptorEndToEnd(t *testing.T) {
	a, err := NewAuthenticator(testAuthConfig(t), sdkmetric.NewMeterProvider())
	if err != nil {
		t.Fatal(err)
	}
	svc := &identityDecisions{}
	conn := startSecServer(t, svc, grpc.ChainUnaryInterceptor(a.UnaryInterceptor()), grpc.ChainStreamInterceptor(a.StreamInterceptor()))
	client := arbiterv1.NewDecisionServiceClient(conn)
	ctx := context.Background()

	if _, err := client.Decide(ctx, &arbiterv1.DecideRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("Decide(no token) = %v, want Unauthenticated", err)
	}
	analyst := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tokAnalyst)
	if _, err := client.Decide(analyst, &arbiterv1.DecideRequest{}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("Decide(read-only token) = %v, want PermissionDenied", err)
	}
	if svc.calls != 0 {
		t.Errorf("handler ran %d times for refused calls, want 0", svc.calls)
	}
	gw := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tokGateway)
	resp, err := client.Decide(gw, &arbiterv1.DecideRequest{})
	if err != nil || resp.GetDecisionId() != "for-gateway" {
		t.Errorf("Decide(gateway token) = %v, %v, want decision id for-gateway", resp, err)
	}
	// Health stays open, unary and streaming.
	hc := healthpb.NewHealthClient(conn)
	if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Errorf("Health.Check(no token) = %v, want nil", err)
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := hc.Watch(wctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Recv(); err != nil {
		t.Errorf("Health.Watch(no token).Recv() = %v, want nil", err)
	}
}

func BenchmarkAuthorize(b *testing.B) {
	a, err := NewAuthenticator(testAuthConfig(b), sdkmetric.NewMeterProvider())
	if err != nil {
		b.Fatal(err)
	}
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs("authorization", "Bearer "+tokGateway))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := a.Authorize(ctx, arbiterv1.DecisionService_Decide_FullMethodName); err != nil {
			b.Fatal(err)
		}
	}
}
