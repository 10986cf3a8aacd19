package server

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/test/bufconn"

	"github.com/arbiter-dev/arbiter/decision"
	"github.com/arbiter-dev/arbiter/featurestore"
	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
	"github.com/arbiter-dev/arbiter/rollout"
)

// testNow is a weekday noon in London: outside every quiet period of the default policy.
var testNow = time.Date(2026, time.March, 10, 12, 0, 0, 0, time.UTC)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock(t time.Time) *clock { return &clock{t: t} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// storeFactory makes a fresh, empty store for one test.
type storeFactory struct {
	name string
	make func(t testing.TB, c *clock) Store
}

func memoryStore(t testing.TB, c *clock) Store {
	m := featurestore.NewMemory(featurestore.WithClock(c.Now))
	t.Cleanup(func() { m.Close() })
	return m
}

// stores lists the stores every end-to-end test runs against: the embedded one and a real
// redis-server (see redis_test.go).
func stores() []storeFactory {
	return append([]storeFactory{{"memory", memoryStore}}, extraStores...)
}

// harness is a Server behind a real gRPC transport (bufconn) with clients.
type harness struct {
	srv   *Server
	clock *clock
	dc    arbiterv1.DecisionServiceClient
	fc    arbiterv1.FeatureServiceClient
	conn  *grpc.ClientConn
}

func newHarness(t *testing.T, store Store, c *clock, opts ...Option) *harness {
	t.Helper()
	// A generous store budget: these tests are about the pipeline, not about degrading on a
	// slow store, and a loaded 2-core machine under -race can take tens of milliseconds to
	// open 20 Redis connections.
	opts = append([]Option{WithClock(c.Now), WithStoreBudget(Budget{Max: 10 * time.Second}), WithAuditSpool(openTestSpool(t))}, opts...)
	srv := New(store, rollout.NewHolder(decision.DefaultPolicy()), opts...)
	gs := srv.NewGRPCServer()
	lis := bufconn.Listen(1 << 20)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = gs.Serve(lis)
	}()
	conn, err := grpc.NewClient("passthrough:///bufnet",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("grpc.NewClient: %v", err)
	}
	t.Cleanup(func() {
		conn.Close()
		gs.Stop()
		<-done
	})
	return &harness{
		srv: srv, clock: c, conn: conn,
		dc: arbiterv1.NewDecisionServiceClient(conn),
		fc: arbiterv1.NewFeatureServiceClient(conn),
	}
}

// overdue is an invoice-overdue event for customer with e-mail consent for collections: the
// default policy answers it with an e-mail reminder.
func overdue(eventID, customerID string) *arbiterv1.DecideRequest {
	return &arbiterv1.DecideRequest{
		Event: &arbiterv1.Event{Id: eventID, Type: arbiterv1.EventType_EVENT_TYPE_INVOICE_OVERDUE, Source: "billing"},
		Customer: &arbiterv1.Customer{
			Id:       customerID,
			Timezone: "Europe/London",
			Consents: []*arbiterv1.Consent{
				{Channel: arbiterv1.Channel_CHANNEL_EMAIL, Purpose: arbiterv1.Purpose_PURPOSE_COLLECTIONS, Granted: true},
			},
			PreferredChannels: []arbiterv1.Channel{arbiterv1.Channel_CHANNEL_EMAIL},
		},
	}
}

// declined is a Visa insufficient-funds decline.
func declined(eventID, customerID string) *arbiterv1.DecideRequest {
	return &arbiterv1.DecideRequest{
		Event: &arbiterv1.Event{
			Id: eventID, Type: arbiterv1.EventType_EVENT_TYPE_PAYMENT_FAILED,
			Payment: &arbiterv1.PaymentFailure{
				DeclineCode: "51", Network: arbiterv1.CardNetwork_CARD_NETWORK_VISA, AmountMinor: 1999,
				Currency: "GBP", Acquirer: "acq-a", CardRef: "tok_abc", Initiator: arbiterv1.Initiator_INITIATOR_MERCHANT,
				MerchantId: "m-1",
			},
		},
		Customer: &arbiterv1.Customer{Id: customerID, Timezone: "Europe/London"},
	}
}

type healthCheckRequest = healthpb.HealthCheckRequest

func healthClient(h *harness) healthpb.HealthClient { return healthpb.NewHealthClient(h.conn) }
