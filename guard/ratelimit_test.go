package guard

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
)

// rlClock is a clock a test moves by hand.
type rlClock struct{ t time.Time }

func (c *rlClock) now() time.Time          { return c.t }
func (c *rlClock) advance(d time.Duration) { c.t = c.t.Add(d) }

func TestRateLimiterAllow(t *testing.T) {
	clk := &rlClock{t: time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)}
	rl, err := NewRateLimiter(RateLimit{PerSecond: 2, Burst: 3}, sdkmetric.NewMeterProvider(), WithRateLimitClock(clk.now))
	if err != nil {
		t.Fatal(err)
	}
	allowed := func(key string, lim *RateLimit, n int) int {
		got := 0
		for range n {
			if rl.Allow(key, lim) {
				got++
			}
		}
		return got
	}
	// The burst passes, the rest is refused until tokens refill.
	if got := allowed("a", nil, 10); got != 3 {
		t.Errorf("Allow(a) x10 at once = %d allowed, want burst 3", got)
	}
	// Another client has its own bucket.
	if got := allowed("b", nil, 10); got != 3 {
		t.Errorf("Allow(b) x10 at once = %d allowed, want 3", got)
	}
	clk.advance(time.Second)
	if got := allowed("a", nil, 10); got != 2 {
		t.Errorf("Allow(a) x10 after 1s = %d allowed, want 2 (2 per second)", got)
	}
	// A client's own limit replaces the default.
	own := &RateLimit{PerSecond: 100, Burst: 50}
	if got := allowed("c", own, 100); got != 50 {
		t.Errorf("Allow(c, own limit) x100 = %d allowed, want 50", got)
	}
	// A limit of 0 per second means unlimited, and tracks nothing.
	before := rl.Len()
	if got := allowed("d", &RateLimit{}, 1000); got != 1000 {
		t.Errorf("Allow(d, unlimited) x1000 = %d allowed, want 1000", got)
	}
	if rl.Len() != before {
		t.Errorf("Len() after unlimited client = %d, want %d", rl.Len(), before)
	}
	// A changed limit (token file reload) applies to the existing bucket.
	clk.advance(time.Minute)
	if got := allowed("a", &RateLimit{PerSecond: 1, Burst: 1}, 10); got != 1 {
		t.Errorf("Allow(a, lowered limit) x10 = %d allowed, want 1", got)
	}
}

func TestRateLimiterBoundedMemory(t *testing.T) {
	clk := &rlClock{t: time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)}
	rl, err := NewRateLimiter(RateLimit{PerSecond: 1, Burst: 1}, sdkmetric.NewMeterProvider(), WithRateLimitClock(clk.now), WithRateLimitMaxKeys(100))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10000 {
		rl.Allow(fmt.Sprintf("peer:10.0.%d.%d", i/256, i%256), nil)
	}
	if got := rl.Len(); got != 100 {
		t.Errorf("Len() after 10000 clients = %d, want 100 (the bound)", got)
	}
	// The most recent clients are the ones kept: the last one is still limited.
	if rl.Allow("peer:10.0.39.15", nil) {
		t.Errorf("Allow(most recent client) = true, want false (its bucket was kept)")
	}
}

func TestNewRateLimiterErrors(t *testing.T) {
	mp := sdkmetric.NewMeterProvider()
	if _, err := NewRateLimiter(RateLimit{PerSecond: -1}, mp); err == nil {
		t.Errorf("NewRateLimiter(negative rate) = nil error, want error")
	}
	if _, err := NewRateLimiter(RateLimit{PerSecond: 1}, mp, WithRateLimitMaxKeys(0)); err == nil {
		t.Errorf("NewRateLimiter(max keys 0) = nil error, want error")
	}
}

func TestRateLimiterInterceptor(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	clk := &rlClock{t: time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)}
	rl, err := NewRateLimiter(RateLimit{PerSecond: 1, Burst: 1}, mp, WithRateLimitClock(clk.now))
	if err != nil {
		t.Fatal(err)
	}
	a, err := NewAuthenticator(testAuthConfig(t), mp)
	if err != nil {
		t.Fatal(err)
	}
	ic := grpc.ChainUnaryInterceptor(a.UnaryInterceptor(), rl.UnaryInterceptor())
	svc := &identityDecisions{}
	conn := startSecServer(t, svc, ic)
	client := arbiterv1.NewDecisionServiceClient(conn)

	// The gateway's own limit is 5/s with a burst of 2 (testAuthConfig).
	gw := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer "+tokGateway)
	var codesSeen []codes.Code
	for range 4 {
		_, err := client.Decide(gw, &arbiterv1.DecideRequest{})
		codesSeen = append(codesSeen, status.Code(err))
	}
	want := []codes.Code{codes.OK, codes.OK, codes.ResourceExhausted, codes.ResourceExhausted}
	for i := range want {
		if codesSeen[i] != want[i] {
			t.Fatalf("Decide x4 over the limit = %v, want %v", codesSeen, want)
		}
	}
	if svc.calls != 2 {
		t.Errorf("handler calls = %d, want 2", svc.calls)
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	var rejected int64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name == "arbiter.ratelimit.rejected" {
				for _, dp := range m.Data.(metricdata.Sum[int64]).DataPoints {
					if c, _ := dp.Attributes.Value("client"); c.AsString() == "gateway" {
						rejected += dp.Value
					}
				}
			}
		}
	}
	if rejected != 2 {
		t.Errorf("arbiter.ratelimit.rejected{client=gateway} = %d, want 2", rejected)
	}
}

func TestRateKeyPeer(t *testing.T) {
	ctx := peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.ParseIP("127.0.0.7"), Port: 5555}})
	key, client, lim := rateKey(ctx)
	if key != "peer:127.0.0.7" || client != "" || lim != nil {
		t.Errorf("rateKey(peer 127.0.0.7:5555) = %q, %q, %v, want peer:127.0.0.7 keyed by IP without port", key, client, lim)
	}
	ctx = ContextWithClient(ctx, Identity{Name: "gw", Roles: []Role{RoleDecide}, RateLimit: &RateLimit{PerSecond: 3, Burst: 3}})
	key, client, lim = rateKey(ctx)
	if key != "client:gw" || client != "gw" || lim == nil || lim.PerSecond != 3 {
		t.Errorf("rateKey(client gw) = %q, %q, %v, want client:gw with its own limit", key, client, lim)
	}
}

func BenchmarkRateLimiterAllow(b *testing.B) {
	rl, err := NewRateLimiter(RateLimit{PerSecond: 1e9, Burst: 1e9}, sdkmetric.NewMeterProvider())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		rl.Allow("client:gateway", nil)
	}
}
