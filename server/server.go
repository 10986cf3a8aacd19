package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/arbiter-dev/arbiter/archive"
	"github.com/arbiter-dev/arbiter/breaker"
	"github.com/arbiter-dev/arbiter/decision"
	"github.com/arbiter-dev/arbiter/featurestore"
	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
	"github.com/arbiter-dev/arbiter/rollout"
	"github.com/arbiter-dev/arbiter/rpcstatus"
	"github.com/arbiter-dev/arbiter/spool"
)

// Store is what the server needs from the customer-state store: one round trip to read a
// customer before a decision, one atomic round trip to commit it, and the reads and writes
// of the other RPCs. Both featurestore stores satisfy it.
type Store interface {
	Load(ctx context.Context, customerID, eventID string, now time.Time) (featurestore.Loaded, error)
	Commit(ctx context.Context, c *featurestore.Commit) (featurestore.Committed, error)
	// AppendDecision records a degraded decision from the audit spool (see Spool.Drain).
	AppendDecision(ctx context.Context, d *featurestore.Decided) (duplicate bool, err error)
	GetDecision(ctx context.Context, decisionID string) ([]byte, []featurestore.StoredOutcome, error)
	// Confirm records a confirmation and releases a revoked decision's reservations; a prior
	// revocation, when there is one, stands and is returned.
	Confirm(ctx context.Context, c *featurestore.Confirmation) (*featurestore.StoredConfirmation, error)
	Confirmations(ctx context.Context, decisionID string) ([]featurestore.StoredConfirmation, error)
	RecordOutcome(ctx context.Context, o *featurestore.OutcomeCommit) (duplicate bool, err error)
	PutFeatures(ctx context.Context, customerID string, features map[string]any, ttl time.Duration) error
	State(ctx context.Context, customerID string, now time.Time) (decision.State, error)
	Ping(ctx context.Context) error
}

var _ Store = (*featurestore.Memory)(nil)

// ShardedStore is a Store whose customers live on several shards, such as the masters of a
// Redis Cluster. The server then keeps one circuit breaker per shard (see BreakerSet), and
// /readyz pings every shard. featurestore.Redis satisfies it; a store that does not is one
// shard, named "".
type ShardedStore interface {
	Store
	// ShardOf names the shard that holds customerID's keys, without I/O. The name may change
	// (a failover); "" is a valid shard.
	ShardOf(ctx context.Context, customerID string) string
	// ShardOfDecision names the shard that holds the decision decisionID, without I/O.
	ShardOfDecision(ctx context.Context, decisionID string) string
	// PingShards pings every shard and calls fn with each one's result (nil: it answered) as it
	// comes, one call at a time, until all answered or ctx is done.
	PingShards(ctx context.Context, fn func(shard string, err error)) error
}

var _ ShardedStore = (*featurestore.Redis)(nil)

// Server implements arbiterv1.DecisionServiceServer and arbiterv1.FeatureServiceServer over a
// Store and the active policy. It is safe for concurrent use; create it with New.
type Server struct {
	arbiterv1.UnimplementedDecisionServiceServer
	arbiterv1.UnimplementedFeatureServiceServer

	store    Store
	sharded  ShardedStore // store, when it is sharded
	narrow   narrowLoader // store, when it loads narrowed states
	policies *rollout.Holder
	opts     options
	metrics  *metrics
	tracer   trace.Tracer
	health   *health.Server
	draining atomic.Bool
	cold     atomic.Bool // Warm has not succeeded yet
	latency  latencies   // recent store-call latencies, which size the budget
	detach   bool        // store calls run detached (see detached): all but the embedded store
}

// budget is the store budget of a request now: the configured one, sized from the measured
// store latency when its Min is set.
func (s *Server) budget() Budget { return s.opts.budget.sized(s.latency.P99()) }

// Option configures a Server.
type Option func(*options)

type options struct {
	clock          func() time.Time
	logger         *slog.Logger
	meterProvider  metric.MeterProvider
	tracerProvider trace.TracerProvider
	budget         Budget
	breakers       *breaker.Set
	maxAttempts    int
	grpcOptions    []grpc.ServerOption
	shadow         *rollout.Shadow                                          // WithShadow: candidate policy evaluated beside the active one
	policySync     *rollout.Sync                                            // WithPolicySync: fleet policy status for /readyz
	spool          *spool.Spool                                             // WithAuditSpool: records of degraded decisions
	archive        Archive                                                  // WithArchive: decisions past the store's replay window
	admission      *admissions                                              // WithAdmission: adaptive limits of the store phase
	revoke         func(ctx context.Context, r *arbiterv1.Revocation) error // WithRevocations
}

func defaultOptions() options {
	return options{
		clock:          time.Now,
		logger:         slog.New(slog.DiscardHandler),
		meterProvider:  metricnoop.NewMeterProvider(),
		tracerProvider: tracenoop.NewTracerProvider(),
		maxAttempts:    3,
	}
}

// WithRevocations makes Confirm hand each decision it revokes to publish (for example
// (*stream.Edge).Revoke, which puts it on arbiter.revocations.<customer>), with scope
// REVOCATION_SCOPE_DECISION. A publish error is logged; the revocation itself is recorded
// in the store and answered either way.
func WithRevocations(publish func(ctx context.Context, r *arbiterv1.Revocation) error) Option {
	return func(o *options) { o.revoke = publish }
}

// WithClock sets the clock that gives each decision its time (default time.Now). Latency
// is always measured with the real clock.
func WithClock(now func() time.Time) Option { return func(o *options) { o.clock = now } }

// WithLogger sets the structured logger (default: discard).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithMeterProvider sets the provider of the service's metrics (default: no-op).
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(o *options) { o.meterProvider = mp }
}

// WithTracerProvider sets the provider of the service's spans: gRPC calls and store calls
// (default: no-op).
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(o *options) { o.tracerProvider = tp }
}

// Archive is what the server reads from the decision archive: *archive.Archive satisfies it.
type Archive interface {
	Get(ctx context.Context, decisionID string) (archive.Record, error)
	Outcomes(ctx context.Context, decisionID string) ([]archive.Outcome, error)
	CustomerHistory(ctx context.Context, customerID string, since time.Time) ([]archive.Record, error)
	OutcomesOf(ctx context.Context, decisionIDs []string) ([]archive.Outcome, error)
	Erase(ctx context.Context, e archive.Erasure) (archive.Erasure, error)
	Erasures(ctx context.Context, customerID string) ([]archive.Erasure, error)
}

var _ Archive = (*archive.Archive)(nil)

// WithArchive makes GetDecision read the decisions that the store no longer holds (past its
// replay window) from the archive (default: none; such decisions are NOT_FOUND), and Decide
// replay an event whose record the store archived and dropped. With a store that keeps a
// state marker (featurestore.WithStateMarker), Decide also rebuilds a customer's state from
// the archive when the store cannot vouch for it (Redis lost its data), before deciding.
func WithArchive(a Archive) Option { return func(o *options) { o.archive = a } }

// WithStoreBudget sets the time budget of a Decide call's store calls, derived from the
// caller's deadline (default: the zero Budget, 50 ms at most). When it is spent, the decision
// degrades instead of missing the caller's deadline.
func WithStoreBudget(b Budget) Option { return func(o *options) { o.budget = b } }

// WithAdmission sheds excess load before it reaches the store: per store shard, at most a
// learned number of decisions are in their store phase at once, between lo (zero:
// DefaultAdmissionMin) and hi, and a decision beyond it gets RESOURCE_EXHAUSTED with a retry
// delay instead of a degraded answer (see admission). Without it, every call is admitted.
func WithAdmission(lo, hi int) Option {
	return func(o *options) {
		if lo <= 0 {
			lo = DefaultAdmissionMin
		}
		o.admission = &admissions{min: lo, max: max(lo, hi)}
	}
}

// WithBreakers puts a circuit breaker in front of every store call (default: none), one per
// shard of a ShardedStore, so a dead store or a lost cluster master degrades the decisions it
// holds in microseconds instead of a timeout, and no others.
func WithBreakers(b *breaker.Set) Option { return func(o *options) { o.breakers = b } }

// WithMaxAttempts sets how many times Decide loads and decides again when its commit
// conflicts with a concurrent change (default 3); then it fails closed with STORE_CONFLICT.
func WithMaxAttempts(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.maxAttempts = n
		}
	}
}

// WithGRPCOptions adds gRPC server options, such as interceptors (authentication, card-number
// guard, rate limits, load shedding) or TLS credentials, to the server NewGRPCServer builds.
// Interceptors run in the order given, after the OpenTelemetry stats handler.
func WithGRPCOptions(opts ...grpc.ServerOption) Option {
	return func(o *options) { o.grpcOptions = append(o.grpcOptions, opts...) }
}

// New returns a Server that reads and writes customer state in store and decides under the
// policy policies holds. A nil policy in policies makes Decide answer UNAVAILABLE and /readyz
// fail until one is stored.
func New(store Store, policies *rollout.Holder, opts ...Option) *Server {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	m, err := newMetrics(o.meterProvider)
	if err != nil {
		// Only an invalid instrument definition fails, which is a bug caught by the tests;
		// serve without metrics rather than not at all.
		o.logger.Error("create metrics", "err", err)
		m, _ = newMetrics(metricnoop.NewMeterProvider())
	}
	sharded, _ := store.(ShardedStore)
	narrow, _ := store.(narrowLoader)
	_, inProcess := store.(*featurestore.Memory)
	return &Server{
		store:    store,
		sharded:  sharded,
		narrow:   narrow,
		detach:   !inProcess,
		policies: policies,
		opts:     o,
		metrics:  m,
		tracer:   o.tracerProvider.Tracer(instrumentationName),
		health:   health.NewServer(),
	}
}

// NewGRPCServer returns a gRPC server with the decision and feature services, the gRPC health
// service and server reflection registered, traced and measured through the OpenTelemetry
// stats handler, plus the options given with WithGRPCOptions.
func (s *Server) NewGRPCServer() *grpc.Server {
	opts := make([]grpc.ServerOption, 0, 2+len(s.opts.grpcOptions))
	opts = append(opts, grpc.StatsHandler(otelgrpc.NewServerHandler(
		otelgrpc.WithTracerProvider(s.opts.tracerProvider),
		otelgrpc.WithMeterProvider(s.opts.meterProvider),
		otelgrpc.WithPropagators(propagation.TraceContext{}),
	)))
	// A fixed set of workers serves the streams, so their stacks stay grown instead of each
	// call starting a goroutine whose stack grows again (4% of the CPU under load). A call
	// holds its worker while it waits for Redis, so there are as many as calls commonly in
	// flight; beyond that gRPC starts a goroutine per call, as without workers.
	opts = append(opts, grpc.NumStreamWorkers(streamWorkers))
	// Fixed flow-control windows: with the default dynamic window, gRPC measures the
	// bandwidth-delay product with a PING (and its ACK) after reads, which for small unary calls
	// means extra frames, syscalls and wake-ups on both sides for most calls. The security
	// layer's transport limits (guard.Transport, in WithGRPCOptions) replace these sizes.
	opts = append(opts, grpc.InitialWindowSize(flowWindow), grpc.InitialConnWindowSize(flowWindow))
	opts = append(opts, s.opts.grpcOptions...)
	gs := grpc.NewServer(opts...)
	s.Register(gs)
	registerReflection(gs)
	return gs
}

// Register registers the decision, feature and health services on r.
func (s *Server) Register(r grpc.ServiceRegistrar) {
	arbiterv1.RegisterDecisionServiceServer(r, s)
	arbiterv1.RegisterFeatureServiceServer(r, s)
	healthpb.RegisterHealthServer(r, s.health)
	s.setHealth(!s.draining.Load())
}

// Drain marks the server as shutting down: /readyz and the gRPC health service report not
// serving, so load balancers stop sending new calls while in-flight ones finish.
func (s *Server) Drain() {
	s.draining.Store(true)
	s.setHealth(false)
}

func (s *Server) setHealth(serving bool) {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if serving {
		st = healthpb.HealthCheckResponse_SERVING
	}
	for _, name := range [...]string{"", arbiterv1.DecisionService_ServiceDesc.ServiceName, arbiterv1.FeatureService_ServiceDesc.ServiceName} {
		s.health.SetServingStatus(name, st)
	}
}

// Ready reports whether the server should get traffic: not draining, a policy loaded and the
// store answering a ping within ctx; for a ShardedStore, at least one shard answering, since a
// lost cluster master degrades only its own customers' decisions, on every replica alike. The
// error says why not.
func (s *Server) Ready(ctx context.Context) (decision.PolicyRef, error) {
	if s.draining.Load() {
		return decision.PolicyRef{}, rpcstatus.ErrDraining
	}
	if s.cold.Load() {
		return decision.PolicyRef{}, errCold
	}
	p := s.policies.Load()
	if p == nil {
		return decision.PolicyRef{}, rpcstatus.ErrNoPolicy
	}
	return p.Ref(), s.ping(ctx)
}

// errCold is Ready's answer until Warm succeeded.
var errCold = errors.New("warming up")

// warmer is a store that can ready itself for its first decisions (featurestore.Redis loads
// its scripts and opens its connections).
type warmer interface {
	Warm(ctx context.Context) error
}

// Warm readies the store for the first decisions, so that none of them degrades for a cold
// start (a script's first run, a connection's dial), and keeps the server unready (Ready,
// /readyz) from its call until it succeeds: call it before serving, and again while it
// fails. A store that needs no warming is ready at once.
func (s *Server) Warm(ctx context.Context) error {
	w, ok := s.store.(warmer)
	if !ok {
		s.cold.Store(false)
		return nil
	}
	s.cold.Store(true)
	if err := w.Warm(ctx); err != nil {
		return err
	}
	s.cold.Store(false)
	return nil
}

// errNoShard is ping's answer when a sharded store names no shard.
var errNoShard = fmt.Errorf("%w: the store has no shard", featurestore.ErrUnavailable)

// ping pings the store: every shard of a ShardedStore, whatever the state of its breaker (each
// answer counts for it), until one answers.
func (s *Server) ping(ctx context.Context) error {
	if s.sharded == nil {
		_, err := storeCall(s, ctx, opPing, s.breaker(""), func(ctx context.Context) (struct{}, error) {
			return struct{}{}, s.store.Ping(ctx)
		})
		return err
	}
	ctx, span := s.tracer.Start(ctx, spanNames[opPing], trace.WithSpanKind(trace.SpanKindClient))
	defer span.End()
	ctx, heard := context.WithCancel(ctx)
	defer heard()
	start := time.Now()
	answered, failed := false, errNoShard
	err := s.sharded.PingShards(ctx, func(shard string, err error) {
		if answered && errors.Is(err, context.Canceled) {
			return // canceled below: says nothing about the shard
		}
		if b := s.breaker(shard); b != nil {
			b.Record(ctx, err)
		}
		s.metrics.recordStore(ctx, opPing, time.Since(start), err)
		if err == nil {
			answered = true
			heard() // one shard is enough
		} else if !answered {
			failed = err
		}
	})
	if err == nil && !answered {
		err = failed
	}
	if err != nil {
		span.SetStatus(codes.Error, "ping failed")
	}
	return err
}

// breaker returns the breaker of shard, nil without breakers.
func (s *Server) breaker(shard string) *breaker.Breaker {
	if s.opts.breakers == nil {
		return nil
	}
	return s.opts.breakers.Breaker(shard)
}

// storeDo runs one store call about customerID's keys with a span, its latency metric and the
// breaker of the customer's shard.
func storeDo[T any](s *Server, ctx context.Context, op storeOp, customerID string, call func(ctx context.Context) (T, error)) (T, error) {
	shard := ""
	if s.sharded != nil && s.opts.breakers != nil {
		shard = s.sharded.ShardOf(ctx, customerID)
	}
	return storeCall(s, ctx, op, s.breaker(shard), call)
}

// storeDoDecision runs one store call about the keys of the decision decisionID, as storeDo.
func storeDoDecision[T any](s *Server, ctx context.Context, op storeOp, decisionID string, call func(ctx context.Context) (T, error)) (T, error) {
	shard := ""
	if s.sharded != nil && s.opts.breakers != nil {
		shard = s.sharded.ShardOfDecision(ctx, decisionID)
	}
	return storeCall(s, ctx, op, s.breaker(shard), call)
}

// storeCall runs one store call with a span, its latency metric and breaker b (nil: none).
func storeCall[T any](s *Server, ctx context.Context, op storeOp, b *breaker.Breaker, call func(ctx context.Context) (T, error)) (T, error) {
	if b != nil {
		if err := b.Allow(ctx); err != nil {
			s.metrics.recordStore(ctx, op, 0, err)
			var zero T
			return zero, err
		}
	}
	ctx, span := s.tracer.Start(ctx, spanNames[op], trace.WithSpanKind(trace.SpanKindClient))
	start := time.Now()
	var (
		v   T
		err error
	)
	if s.detach {
		v, err = detached(ctx, call)
	} else {
		v, err = call(ctx) // the embedded store does no I/O: nothing to cut
	}
	elapsed := time.Since(start)
	if err != nil && !errors.Is(err, featurestore.ErrNotFound) {
		span.SetStatus(codes.Error, storeOpNames[op]+" failed")
	}
	span.End()
	if b != nil {
		b.Record(ctx, err)
	}
	// A call cut by its budget counts at the time it was given: a store that became slower
	// than the budget raises the p99, and with it the budget, instead of degrading for ever.
	if (op == opLoad || op == opCommit) && (err == nil || errors.Is(err, context.DeadlineExceeded)) {
		s.latency.observe(elapsed)
	}
	s.metrics.recordStore(ctx, op, elapsed, err)
	return v, err
}

// detached runs a store call so that a caller who stops waiting for it (its store budget
// spent, or gone) does not cut it on the wire: the call goes on in its own goroutine until
// its reply lands (the client bounds it by its read timeout), and its connection goes back to
// the pool healthy. A Redis client closes a connection whose read was interrupted, since the
// reply is still on its way: under load every budget overrun then cost a reconnection, and
// the reconnections fed the overload. ctx still bounds the wait for a pooled connection, so a
// call the caller gave up on before it was sent is never sent. The caller gets ctx's error.
func detached[T any](ctx context.Context, call func(ctx context.Context) (T, error)) (T, error) {
	var zero T
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	go func() {
		v, err := call(ctx)
		done <- result{v, err}
	}()
	select {
	case r := <-done:
		return r.v, r.err
	case <-ctx.Done():
		return zero, ctx.Err()
	}
}

// gRPC transport settings of NewGRPCServer.
const (
	// streamWorkers is the number of goroutines that serve streams and keep their grown stacks.
	streamWorkers = 64
	// flowWindow is the fixed HTTP/2 flow-control window of each stream and connection: far
	// above the largest request (--max-recv-bytes) times the calls in flight on a connection.
	flowWindow = 1 << 20
)

// WithPolicySync makes /readyz report the version the fleet should serve (policy_active) and,
// when this replica does not serve it, why (policy_error). Readiness itself is unchanged: a
// replica that keeps serving its last good version still serves.
func WithPolicySync(ps *rollout.Sync) Option { return func(o *options) { o.policySync = ps } }

// WithShadow makes Decide show every committed decision to sh, which evaluates its candidate
// policy on a share of them (default: no shadow). The answer and the store never see the
// candidate's result.
func WithShadow(sh *rollout.Shadow) Option { return func(o *options) { o.shadow = sh } }
