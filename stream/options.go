package stream

import (
	"context"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
)

// Defaults of the options.
const (
	// DefaultWorkers is how many messages an edge decides at once per consumer.
	DefaultWorkers = 64
	// DefaultMaxAckPending is the consumer's MaxAckPending: the most messages handed out and
	// not yet acknowledged, across every replica sharing the consumer.
	DefaultMaxAckPending = 1024
	// DefaultAckWait is how long JetStream waits for an acknowledgement before it redelivers.
	DefaultAckWait = 30 * time.Second
	// DefaultDuplicateWindow is the duplicate window of the decision and revocation streams
	// the edge creates: a decision republished within it (after a crash) is dropped.
	DefaultDuplicateWindow = 10 * time.Minute
	// DefaultMaxAge is how long the streams the edge creates keep messages (dead letters: 4
	// times as long).
	DefaultMaxAge = 7 * 24 * time.Hour
	// DefaultCallTimeout bounds one Decide or RecordOutcome call of the edge.
	DefaultCallTimeout = 5 * time.Second
	// DefaultMaxDeliver is how many deliveries of a message that fails for an unexpected reason
	// (not bad input, not an outage) the edge tries before it dead-letters it as
	// "undeliverable".
	DefaultMaxDeliver = 5
	// DefaultPauseProbe is the first interval at which a paused edge asks whether the service
	// is ready again; it doubles up to DefaultPauseProbeMax.
	DefaultPauseProbe = 250 * time.Millisecond
	// DefaultPauseProbeMax is the longest interval between readiness probes while paused.
	DefaultPauseProbeMax = 5 * time.Second
)

// DefaultRevokeCodes are the reason codes after which a decision publishes a revocation of the
// customer's pending actions: the customer opted out (OPTED_OUT), a fraud flag was raised or a
// fraud hold is in force (FRAUD_FLAG, FRAUD_HOLD), the customer is vulnerable
// (VULNERABLE_CUSTOMER), or a stop-payment code ended a recurring sequence (RECURRING_ENDED).
var DefaultRevokeCodes = []string{"OPTED_OUT", "FRAUD_FLAG", "FRAUD_HOLD", "VULNERABLE_CUSTOMER", "RECURRING_ENDED"}

// Option configures an Edge.
type Option func(*options)

type options struct {
	logger          *slog.Logger
	meterProvider   metric.MeterProvider
	ready           func(ctx context.Context) error
	workers         int
	maxAckPending   int
	ackWait         time.Duration
	duplicateWindow time.Duration
	maxAge          time.Duration
	replicas        int
	callTimeout     time.Duration
	maxDeliver      int
	pauseProbe      time.Duration
	pauseProbeMax   time.Duration
	degraded        bool
	encoding        format
	revokeCodes     []string
	now             func() time.Time
}

func defaultOptions() options {
	return options{
		logger:          slog.New(slog.DiscardHandler),
		meterProvider:   metricnoop.NewMeterProvider(),
		workers:         DefaultWorkers,
		maxAckPending:   DefaultMaxAckPending,
		ackWait:         DefaultAckWait,
		duplicateWindow: DefaultDuplicateWindow,
		maxAge:          DefaultMaxAge,
		replicas:        1,
		callTimeout:     DefaultCallTimeout,
		maxDeliver:      DefaultMaxDeliver,
		pauseProbe:      DefaultPauseProbe,
		pauseProbeMax:   DefaultPauseProbeMax,
		revokeCodes:     DefaultRevokeCodes,
		now:             time.Now,
	}
}

// WithLogger sets the structured logger (default: discard). The edge logs ids of streams and
// sequences, never payloads or customer ids.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithMeterProvider sets the provider of the edge's metrics (default: no-op).
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(o *options) { o.meterProvider = mp }
}

// WithReady sets the probe a paused edge calls to learn that the service can decide again
// (for example the server's readiness: the store answers). Default: none; a paused edge then
// resumes after the probe interval and pauses again if the outage lasts.
func WithReady(ready func(ctx context.Context) error) Option {
	return func(o *options) { o.ready = ready }
}

// WithWorkers sets how many messages are decided at once per consumer (default
// DefaultWorkers; values below 1 keep it).
func WithWorkers(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.workers = n
		}
	}
}

// WithMaxAckPending sets the consumers' MaxAckPending, the backpressure bound (default
// DefaultMaxAckPending; values below 1 keep it).
func WithMaxAckPending(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.maxAckPending = n
		}
	}
}

// WithAckWait sets the consumers' AckWait (default DefaultAckWait; values of a second or less
// keep it).
func WithAckWait(d time.Duration) Option {
	return func(o *options) {
		if d > time.Second {
			o.ackWait = d
		}
	}
}

// WithDuplicateWindow sets the duplicate window of the decision and revocation streams the edge
// creates (default DefaultDuplicateWindow; values below a second keep it). Exactly once out
// holds for a decision republished within it.
func WithDuplicateWindow(d time.Duration) Option {
	return func(o *options) {
		if d >= time.Second {
			o.duplicateWindow = d
		}
	}
}

// WithReplicas sets the replicas of the streams the edge creates, for a clustered JetStream
// (default 1).
func WithReplicas(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.replicas = n
		}
	}
}

// WithCallTimeout bounds each Decide or RecordOutcome call (default DefaultCallTimeout).
func WithCallTimeout(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.callTimeout = d
		}
	}
}

// WithPauseProbe sets the first and the longest interval between readiness probes while paused
// (defaults DefaultPauseProbe and DefaultPauseProbeMax).
func WithPauseProbe(first, longest time.Duration) Option {
	return func(o *options) {
		if first > 0 {
			o.pauseProbe = first
		}
		if longest >= o.pauseProbe {
			o.pauseProbeMax = longest
		}
	}
}

// WithDegraded makes the edge publish degraded decisions (made without the customer's state,
// SUPPRESS or ESCALATE) instead of pausing while the store is out (default: pause). A degraded
// decision has its own decision id: the event is not decided again once the store is back.
func WithDegraded(publish bool) Option { return func(o *options) { o.degraded = publish } }

// WithJSON makes the edge publish decisions, revocations and dead letters' errors in JSON
// (ContentTypeJSON) instead of protobuf. Messages in are read in either, by their Content-Type.
func WithJSON() Option { return func(o *options) { o.encoding = formatJSON } }

// WithRevokeCodes sets the reason codes after which a decision publishes a revocation (default
// DefaultRevokeCodes). None: decisions publish no revocations; Revoke still does.
func WithRevokeCodes(codes ...string) Option {
	return func(o *options) { o.revokeCodes = codes }
}

// WithClock sets the clock of revocation times and request time checks (default time.Now).
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }
