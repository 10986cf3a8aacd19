package guard

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/arbiter-dev/arbiter/rpcstatus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health/grpc_health_v1"
)

// DefaultMaxInFlight is the default limit of concurrent requests before shedding.
const DefaultMaxInFlight = 1024

// shedRetryAfter is the retry pushback of a shed request: long enough for the calls in flight
// to finish, short enough that a caller does not give up on a replica that is busy for a moment.
const shedRetryAfter = 100 * time.Millisecond

// errShed is the error of a shed request; it is built once, so shedding does not allocate.
var errShed = rpcstatus.ResourceExhausted("server overloaded: too many requests in flight; retry with back-off", shedRetryAfter)

// Shedder sheds load: beyond a limit of concurrent requests it answers RESOURCE_EXHAUSTED at
// once, without queueing, so an overloaded server stays fast for the requests it accepts and
// callers fall back or retry elsewhere instead of waiting out their deadlines. It is an atomic
// counter of in-flight requests; it is safe for concurrent use.
type Shedder struct {
	limit    int64
	inFlight atomic.Int64
	exempt   map[string]bool
	shed     metric.Int64Counter
}

// ShedOption configures a Shedder.
type ShedOption func(*shedOptions)

type shedOptions struct {
	exempt []string
	meter  metric.MeterProvider
}

// WithShedExempt names full gRPC methods ("/package.Service/Method") that are never shed nor
// counted. The health service's Check and Watch are always exempt, so probes see the truth
// about an overloaded server instead of a refusal.
func WithShedExempt(fullMethods ...string) ShedOption {
	return func(o *shedOptions) { o.exempt = append(o.exempt, fullMethods...) }
}

// WithShedMeterProvider sets the meter provider for the shedder's instruments: the counter
// arbiter.requests.shed (attribute "method") and the gauge arbiter.requests.in_flight.
// Default: no metrics.
func WithShedMeterProvider(mp metric.MeterProvider) ShedOption {
	return func(o *shedOptions) { o.meter = mp }
}

// NewShedder returns a Shedder that admits at most maxInFlight concurrent requests; zero or
// less means DefaultMaxInFlight. It fails only when the meter provider refuses to create its
// instruments.
func NewShedder(maxInFlight int, opts ...ShedOption) (*Shedder, error) {
	o := shedOptions{meter: noop.NewMeterProvider()}
	for _, opt := range opts {
		opt(&o)
	}
	if maxInFlight <= 0 {
		maxInFlight = DefaultMaxInFlight
	}
	s := &Shedder{
		limit: int64(maxInFlight),
		exempt: map[string]bool{
			grpc_health_v1.Health_Check_FullMethodName: true,
			grpc_health_v1.Health_Watch_FullMethodName: true,
		},
	}
	for _, m := range o.exempt {
		s.exempt[m] = true
	}
	m := o.meter.Meter(instrumentationName)
	var err error
	s.shed, err = m.Int64Counter("arbiter.requests.shed",
		metric.WithDescription("Requests refused with RESOURCE_EXHAUSTED because too many were in flight."))
	if err != nil {
		return nil, fmt.Errorf("shedder metrics: %w", err)
	}
	_, err = m.Int64ObservableGauge("arbiter.requests.in_flight",
		metric.WithDescription("Requests being served (health checks excluded)."),
		metric.WithInt64Callback(func(_ context.Context, obs metric.Int64Observer) error {
			obs.Observe(s.inFlight.Load())
			return nil
		}))
	if err != nil {
		return nil, fmt.Errorf("shedder metrics: %w", err)
	}
	return s, nil
}

// Limit returns the maximum number of requests in flight.
func (s *Shedder) Limit() int { return int(s.limit) }

// InFlight returns the number of requests being served now.
func (s *Shedder) InFlight() int { return int(s.inFlight.Load()) }

// Acquire admits one request and returns true, or returns false when the limit is reached. An
// admitted request must call Release when it is done.
func (s *Shedder) Acquire() bool {
	if s.inFlight.Add(1) > s.limit {
		s.inFlight.Add(-1)
		return false
	}
	return true
}

// Release ends a request that Acquire admitted.
func (s *Shedder) Release() { s.inFlight.Add(-1) }

// UnaryServerInterceptor returns an interceptor that sheds unary calls beyond the limit with
// RESOURCE_EXHAUSTED before any other work. Install it first in the chain, so an overload costs
// as little as possible.
func (s *Shedder) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if s.exempt[info.FullMethod] {
			return handler(ctx, req)
		}
		if !s.Acquire() {
			s.shed.Add(ctx, 1, metric.WithAttributes(attribute.String("method", info.FullMethod)))
			return nil, errShed
		}
		defer s.Release()
		return handler(ctx, req)
	}
}

// StreamServerInterceptor returns the streaming counterpart of UnaryServerInterceptor: a stream
// holds its slot for its whole life.
func (s *Shedder) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if s.exempt[info.FullMethod] {
			return handler(srv, ss)
		}
		if !s.Acquire() {
			s.shed.Add(ss.Context(), 1, metric.WithAttributes(attribute.String("method", info.FullMethod)))
			return errShed
		}
		defer s.Release()
		return handler(srv, ss)
	}
}
