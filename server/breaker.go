package server

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/arbiter-dev/arbiter/featurestore"
)

// ErrCircuitOpen is returned by Breaker.Allow while the breaker is open. It wraps
// featurestore.ErrUnavailable, so a caller that degrades on an unavailable store degrades on it
// too, without a timeout.
var ErrCircuitOpen = fmt.Errorf("%w: circuit breaker open", featurestore.ErrUnavailable)

// ErrNoStoreTime is returned by Breaker.Allow when the call's context is already done (for
// example a zero store budget: the caller's deadline leaves no time for the store). The call
// is not made and not counted, so callers with impossible deadlines cannot open the breaker
// for everyone. It wraps featurestore.ErrUnavailable and context.DeadlineExceeded.
var ErrNoStoreTime = fmt.Errorf("%w: no time left for the store: %w", featurestore.ErrUnavailable, context.DeadlineExceeded)

// errStoreCallCanceled is Allow's answer when the call's context was canceled.
var errStoreCallCanceled = fmt.Errorf("%w: %w", featurestore.ErrUnavailable, context.Canceled)

// BreakerState is the state of a Breaker.
type BreakerState int32

// Breaker states.
const (
	// BreakerClosed lets every call through and counts consecutive failures.
	BreakerClosed BreakerState = iota
	// BreakerOpen refuses every call until the cool-down has passed.
	BreakerOpen
	// BreakerHalfOpen lets one probe call through; its result closes or re-opens the breaker.
	BreakerHalfOpen
)

// String returns "closed", "open" or "half-open".
func (s BreakerState) String() string {
	switch s {
	case BreakerClosed:
		return "closed"
	case BreakerOpen:
		return "open"
	case BreakerHalfOpen:
		return "half-open"
	}
	return fmt.Sprintf("BreakerState(%d)", int32(s))
}

// Breaker defaults.
const (
	// DefaultBreakerThreshold is how many consecutive store failures open the breaker.
	DefaultBreakerThreshold = 5
	// DefaultBreakerCoolDown is how long an open breaker refuses calls before it lets one
	// probe through.
	DefaultBreakerCoolDown = 500 * time.Millisecond
)

// Breaker is a circuit breaker for store calls, so that a dead or hung store costs a request
// microseconds instead of a timeout. It is closed at first; Threshold consecutive failures
// (see Record) open it; while open, Allow refuses at once with ErrCircuitOpen; after the
// cool-down, Allow lets a single probe through (half-open) and the probe's result closes the
// breaker or opens it for another cool-down.
//
// A Breaker is safe for concurrent use and takes no lock: the state, the failure count and the
// times are atomics. Its zero value is not usable; call NewBreaker.
type Breaker struct {
	threshold int32
	coolDown  int64 // nanoseconds
	now       func() time.Time

	state    atomic.Int32 // a BreakerState
	failures atomic.Int32 // consecutive failures while closed
	since    atomic.Int64 // unix nanoseconds: when it opened, or when the last probe went out

	transitions metric.Int64Counter
	onChange    func(from, to BreakerState)
}

// BreakerOption configures a Breaker.
type BreakerOption func(*breakerOptions)

type breakerOptions struct {
	threshold int
	coolDown  time.Duration
	now       func() time.Time
	meter     metric.MeterProvider
	onChange  func(from, to BreakerState)
}

// WithBreakerThreshold sets how many consecutive failures open the breaker (default 5; values
// below 1 mean 1).
func WithBreakerThreshold(n int) BreakerOption {
	return func(o *breakerOptions) { o.threshold = max(n, 1) }
}

// WithBreakerCoolDown sets how long the breaker stays open before a probe (default 500 ms).
func WithBreakerCoolDown(d time.Duration) BreakerOption {
	return func(o *breakerOptions) { o.coolDown = d }
}

// WithBreakerClock sets the clock (default time.Now); tests pass a fake one.
func WithBreakerClock(now func() time.Time) BreakerOption {
	return func(o *breakerOptions) { o.now = now }
}

// WithBreakerMeterProvider sets the meter provider for the breaker's instruments: the counter
// arbiter.store.breaker.transitions (attribute "to": closed, open, half-open) and the gauge
// arbiter.store.breaker.state (0 closed, 1 open, 2 half-open). Default: no metrics.
func WithBreakerMeterProvider(mp metric.MeterProvider) BreakerOption {
	return func(o *breakerOptions) { o.meter = mp }
}

// WithBreakerOnChange sets a function called after each state change, for example to log it.
// It runs on the goroutine of the call that caused the change and must be quick.
func WithBreakerOnChange(f func(from, to BreakerState)) BreakerOption {
	return func(o *breakerOptions) { o.onChange = f }
}

// NewBreaker returns a closed Breaker. It fails only when the meter provider refuses to create
// its instruments.
func NewBreaker(opts ...BreakerOption) (*Breaker, error) {
	o := breakerOptions{
		threshold: DefaultBreakerThreshold,
		coolDown:  DefaultBreakerCoolDown,
		now:       time.Now,
		meter:     noop.NewMeterProvider(),
	}
	for _, opt := range opts {
		opt(&o)
	}
	b := &Breaker{
		threshold: int32(min(o.threshold, 1<<30)),
		coolDown:  int64(o.coolDown),
		now:       o.now,
		onChange:  o.onChange,
	}
	m := o.meter.Meter("github.com/arbiter-dev/arbiter/server")
	var err error
	b.transitions, err = m.Int64Counter("arbiter.store.breaker.transitions",
		metric.WithDescription("Store circuit breaker state changes, by new state."))
	if err != nil {
		return nil, fmt.Errorf("breaker metrics: %w", err)
	}
	_, err = m.Int64ObservableGauge("arbiter.store.breaker.state",
		metric.WithDescription("Store circuit breaker state: 0 closed, 1 open, 2 half-open."),
		metric.WithInt64Callback(func(_ context.Context, obs metric.Int64Observer) error {
			obs.Observe(int64(b.state.Load()))
			return nil
		}))
	if err != nil {
		return nil, fmt.Errorf("breaker metrics: %w", err)
	}
	return b, nil
}

// State returns the breaker's current state.
func (b *Breaker) State() BreakerState { return BreakerState(b.state.Load()) }

// Allow reports whether a store call may go ahead: nil when closed, nil for the one probe of
// a half-open breaker, ErrCircuitOpen otherwise. When ctx, the call's context, is already done
// it returns ErrNoStoreTime (or an error wrapping context.Canceled) whatever the state: such a
// call must not be made, and says nothing about the store. A call that was allowed must report
// its result with Record. Allow does not allocate.
func (b *Breaker) Allow(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		if errors.Is(err, context.Canceled) {
			return errStoreCallCanceled
		}
		return ErrNoStoreTime
	}
	switch BreakerState(b.state.Load()) {
	case BreakerClosed:
		return nil
	case BreakerOpen:
		since := b.since.Load()
		now := b.now().UnixNano()
		if now-since < b.coolDown {
			return ErrCircuitOpen
		}
		// The first caller after the cool-down becomes the probe.
		if b.state.CompareAndSwap(int32(BreakerOpen), int32(BreakerHalfOpen)) {
			b.since.Store(now)
			b.changed(ctx, BreakerOpen, BreakerHalfOpen)
			return nil
		}
		return ErrCircuitOpen
	default: // half-open: a probe is out
		since := b.since.Load()
		now := b.now().UnixNano()
		// A probe that never reported (its caller gave up) must not keep the breaker
		// half-open forever: after another cool-down, send a new probe.
		if now-since >= b.coolDown && b.since.CompareAndSwap(since, now) {
			return nil
		}
		return ErrCircuitOpen
	}
}

// Record reports the result of a call that Allow let through. A failure is an error that says
// the store could not be used: one wrapping featurestore.ErrUnavailable or
// context.DeadlineExceeded. context.Canceled (the caller went away) counts as nothing. Any
// other result, including nil, featurestore.ErrNotFound and featurestore.ErrCorrupt, is a
// success: the store answered.
func (b *Breaker) Record(ctx context.Context, err error) {
	switch {
	case err == nil:
		b.success(ctx)
	case errors.Is(err, redis.ErrPoolTimeout):
		// Waiting in vain for a pooled connection says the server is busy, not that Redis is
		// sick: it does not count.
	case errors.Is(err, featurestore.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		b.failure(ctx)
	case errors.Is(err, context.Canceled):
	default:
		b.success(ctx)
	}
}

func (b *Breaker) success(ctx context.Context) {
	switch BreakerState(b.state.Load()) {
	case BreakerClosed:
		if b.failures.Load() != 0 {
			b.failures.Store(0)
		}
	case BreakerHalfOpen:
		if b.state.CompareAndSwap(int32(BreakerHalfOpen), int32(BreakerClosed)) {
			b.failures.Store(0)
			b.changed(ctx, BreakerHalfOpen, BreakerClosed)
		}
	case BreakerOpen:
		// A late answer to a call made before the breaker opened: the cool-down decides.
	}
}

func (b *Breaker) failure(ctx context.Context) {
	switch BreakerState(b.state.Load()) {
	case BreakerClosed:
		if b.failures.Add(1) < b.threshold {
			return
		}
		b.since.Store(b.now().UnixNano())
		if b.state.CompareAndSwap(int32(BreakerClosed), int32(BreakerOpen)) {
			b.changed(ctx, BreakerClosed, BreakerOpen)
		}
	case BreakerHalfOpen:
		b.since.Store(b.now().UnixNano())
		if b.state.CompareAndSwap(int32(BreakerHalfOpen), int32(BreakerOpen)) {
			b.changed(ctx, BreakerHalfOpen, BreakerOpen)
		}
	case BreakerOpen:
	}
}

// Reset closes the breaker and clears its failure count, for example after an operator
// repaired the store.
func (b *Breaker) Reset(ctx context.Context) {
	if from := BreakerState(b.state.Swap(int32(BreakerClosed))); from != BreakerClosed {
		b.changed(ctx, from, BreakerClosed)
	}
	b.failures.Store(0)
}

var breakerStateAttrs = [...]metric.AddOption{
	BreakerClosed:   metric.WithAttributeSet(attribute.NewSet(attribute.String("to", "closed"))),
	BreakerOpen:     metric.WithAttributeSet(attribute.NewSet(attribute.String("to", "open"))),
	BreakerHalfOpen: metric.WithAttributeSet(attribute.NewSet(attribute.String("to", "half-open"))),
}

func (b *Breaker) changed(ctx context.Context, from, to BreakerState) {
	b.transitions.Add(ctx, 1, breakerStateAttrs[to])
	if b.onChange != nil {
		b.onChange(from, to)
	}
}
