package breaker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"

	"github.com/arbiter-dev/arbiter/featurestore"
)

// ErrCircuitOpen is returned by Breaker.Allow while the shard's breaker is open. It wraps
// featurestore.ErrUnavailable, so a caller that degrades on an unavailable store degrades on it
// too, without a timeout.
var ErrCircuitOpen = fmt.Errorf("%w: circuit breaker open", featurestore.ErrUnavailable)

// ErrNoStoreTime is returned by Breaker.Allow when the call's context is already done (for
// example a zero store budget: the caller's deadline leaves no time for the store). The call
// is not made and not counted, so callers with impossible deadlines cannot open a shard's
// breaker for everyone else. It wraps featurestore.ErrUnavailable and context.DeadlineExceeded.
var ErrNoStoreTime = fmt.Errorf("%w: no time left for the store: %w", featurestore.ErrUnavailable, context.DeadlineExceeded)

// errStoreCallCanceled is Allow's answer when the call's context was canceled.
var errStoreCallCanceled = fmt.Errorf("%w: %w", featurestore.ErrUnavailable, context.Canceled)

// State is the state of a Breaker.
type State int32

// Breaker states.
const (
	// Closed lets every call through and counts consecutive failures.
	Closed State = iota
	// Open refuses every call until the cool-down has passed.
	Open
	// HalfOpen lets one probe call through; its result closes or re-opens the breaker.
	HalfOpen
)

// String returns "closed", "open" or "half-open".
func (s State) String() string {
	switch s {
	case Closed:
		return "closed"
	case Open:
		return "open"
	case HalfOpen:
		return "half-open"
	}
	return fmt.Sprintf("State(%d)", int32(s))
}

// Breaker defaults.
const (
	// DefaultThreshold is how many consecutive store failures open a breaker.
	DefaultThreshold = 5
	// DefaultCoolDown is how long an open breaker refuses calls before it lets one
	// probe through.
	DefaultCoolDown = 500 * time.Millisecond
	// DefaultMinSpan is how long a run of consecutive failures must last before it opens a
	// breaker: zero, so that Threshold failures open it however close together they came.
	// arbiter serve sets 100 ms (--breaker-min-span).
	DefaultMinSpan = 0
)

// Bounds of a Set. A breaker not used for breakerIdle is forgotten (its shard's next
// call gets a closed breaker): after a failover the old master's address is no longer used, and
// its open breaker must neither stay in memory nor be reported for ever. A set never holds more
// than maxBreakers: the live shards are at most 257 (one per bucket, and "").
const (
	breakerIdle = time.Minute
	maxBreakers = 512
	// usedEvery is the resolution of a breaker's last use, so that a busy breaker is not
	// written on every call.
	usedEvery = int64(time.Second)
)

// Breaker is the circuit breaker of one store shard, so that a dead or hung shard costs a
// request microseconds instead of a timeout. It is closed at first; Threshold consecutive
// failures (see Record), lasting at least the minimum span (WithMinSpan), open it; while open, Allow refuses at once with ErrCircuitOpen; after
// the cool-down, Allow lets a single probe through (half-open) and the probe's result closes
// the breaker or opens it for another cool-down.
//
// A Breaker is safe for concurrent use and takes no lock: the state, the failure count and the
// times are atomics. Get one from a Set.
type Breaker struct {
	threshold int32
	coolDown  int64 // nanoseconds
	minSpan   int64 // nanoseconds
	now       func() time.Time
	shard     string

	state    atomic.Int32 // a State
	failures atomic.Int32 // consecutive failures while closed
	streak   atomic.Int64 // unix nanoseconds: the first of the consecutive failures
	since    atomic.Int64 // unix nanoseconds: when it opened, or when the last probe went out
	used     atomic.Int64 // unix nanoseconds, to usedEvery: when the set last handed it out

	transitions metric.Int64Counter
	attrs       [HalfOpen + 1]metric.AddOption // by new state: "to" and "shard"
	observe     metric.ObserveOption           // "shard"
	onChange    func(shard string, from, to State)
}

// Set holds one Breaker per store shard: one per Redis Cluster master (named by its
// address), or a single one, named "", for a store that is not sharded. A lost master then
// degrades the decisions of its own customers only, and after a failover the promoted replica,
// a new address, starts with a closed breaker. Breakers not used for a minute are dropped, and
// a set holds at most 512.
//
// A Set is safe for concurrent use; finding a shard's breaker takes no lock and does not
// allocate. Create it with NewSet.
type Set struct {
	opts        options
	transitions metric.Int64Counter
	idle        int64 // nanoseconds
	max         int

	mu       sync.Mutex                          // held to add or drop breakers
	breakers atomic.Pointer[map[string]*Breaker] // copied on write under mu
}

// Option configures the breakers of a Set.
type Option func(*options)

type options struct {
	threshold int
	coolDown  time.Duration
	minSpan   time.Duration
	now       func() time.Time
	meter     metric.MeterProvider
	onChange  func(shard string, from, to State)
}

// WithThreshold sets how many consecutive failures of a shard open its breaker (default
// 5; values below 1 mean 1).
func WithThreshold(n int) Option {
	return func(o *options) { o.threshold = max(n, 1) }
}

// WithCoolDown sets how long a breaker stays open before a probe (default 500 ms).
func WithCoolDown(d time.Duration) Option {
	return func(o *options) { o.coolDown = d }
}

// WithMinSpan sets how long a run of consecutive failures must last, from its first failure,
// before it opens the breaker (default 0: Threshold failures open it at once). A stall of the
// server itself (a garbage collection, a busy machine) makes every call in flight overrun its
// budget at the same moment: those are one event, not Threshold of them, and opening the
// breaker on it would degrade every call of the cool-down while the store is healthy. A store
// that is really down goes on failing, and opens the breaker once the span has passed.
func WithMinSpan(d time.Duration) Option {
	return func(o *options) { o.minSpan = max(d, 0) }
}

// WithClock sets the clock (default time.Now); tests pass a fake one.
func WithClock(now func() time.Time) Option {
	return func(o *options) { o.now = now }
}

// WithMeterProvider sets the meter provider for the breakers' instruments: the counter
// arbiter.store.breaker.transitions (attributes "to": closed, open, half-open, and "shard") and
// the gauge arbiter.store.breaker.state (0 closed, 1 open, 2 half-open; attribute "shard", for
// the breakers used in the last minute). Default: no metrics.
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(o *options) { o.meter = mp }
}

// WithOnChange sets a function called after each state change of a shard's breaker, for
// example to log it. It runs on the goroutine of the call that caused the change and must be
// quick.
func WithOnChange(f func(shard string, from, to State)) Option {
	return func(o *options) { o.onChange = f }
}

// NewSet returns an empty Set. It fails only when the meter provider refuses to
// create its instruments.
func NewSet(opts ...Option) (*Set, error) {
	o := options{
		threshold: DefaultThreshold,
		coolDown:  DefaultCoolDown,
		now:       time.Now,
		meter:     noop.NewMeterProvider(),
	}
	for _, opt := range opts {
		opt(&o)
	}
	s := &Set{opts: o, idle: int64(breakerIdle), max: maxBreakers}
	s.breakers.Store(&map[string]*Breaker{})
	m := o.meter.Meter(instrumentationName)
	var err error
	s.transitions, err = m.Int64Counter("arbiter.store.breaker.transitions",
		metric.WithDescription("Store circuit breaker state changes, by shard and new state."))
	if err != nil {
		return nil, fmt.Errorf("breaker metrics: %w", err)
	}
	_, err = m.Int64ObservableGauge("arbiter.store.breaker.state",
		metric.WithDescription("Store circuit breaker state, by shard: 0 closed, 1 open, 2 half-open."),
		metric.WithInt64Callback(func(_ context.Context, obs metric.Int64Observer) error {
			now := s.opts.now().UnixNano()
			for _, b := range *s.breakers.Load() {
				if now-b.used.Load() <= s.idle {
					obs.Observe(int64(b.state.Load()), b.observe)
				}
			}
			return nil
		}))
	if err != nil {
		return nil, fmt.Errorf("breaker metrics: %w", err)
	}
	return s, nil
}

// Breaker returns the breaker of shard, a closed one for a shard the set does not hold.
func (s *Set) Breaker(shard string) *Breaker {
	now := s.opts.now().UnixNano()
	if b := (*s.breakers.Load())[shard]; b != nil {
		if now-b.used.Load() >= usedEvery {
			b.used.Store(now)
		}
		return b
	}
	return s.add(shard, now)
}

// State returns the state of shard's breaker: closed for a shard the set does not hold.
func (s *Set) State(shard string) State {
	if b := (*s.breakers.Load())[shard]; b != nil {
		return b.State()
	}
	return Closed
}

// add adds a closed breaker for shard, dropping the breakers idle for longer than s.idle and,
// when the set is still full, the least recently used.
func (s *Set) add(shard string, now int64) *Breaker {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := *s.breakers.Load()
	if b := old[shard]; b != nil {
		return b
	}
	m := make(map[string]*Breaker, len(old)+1)
	for k, b := range old {
		if now-b.used.Load() <= s.idle {
			m[k] = b
		}
	}
	for len(m) >= s.max {
		var lru string
		first := true
		for k, b := range m {
			if first || b.used.Load() < m[lru].used.Load() {
				lru, first = k, false
			}
		}
		delete(m, lru)
	}
	b := s.newBreaker(shard)
	b.used.Store(now)
	m[shard] = b
	s.breakers.Store(&m)
	return b
}

func (s *Set) newBreaker(shard string) *Breaker {
	o := &s.opts
	b := &Breaker{
		threshold:   int32(min(o.threshold, 1<<30)),
		coolDown:    int64(o.coolDown),
		minSpan:     int64(o.minSpan),
		now:         o.now,
		shard:       shard,
		transitions: s.transitions,
		observe:     metric.WithAttributeSet(attribute.NewSet(attribute.String("shard", shard))),
		onChange:    o.onChange,
	}
	for to := range b.attrs {
		b.attrs[to] = metric.WithAttributeSet(attribute.NewSet(
			attribute.String("to", State(to).String()), attribute.String("shard", shard)))
		// The shard's transitions start at zero, so that they are scraped from the shard's
		// first use; a measurement's context only carries exemplars and baggage.
		b.transitions.Add(context.Background(), 0, b.attrs[to])
	}
	return b
}

// State returns the breaker's current state.
func (b *Breaker) State() State { return State(b.state.Load()) }

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
	switch State(b.state.Load()) {
	case Closed:
		return nil
	case Open:
		since := b.since.Load()
		now := b.now().UnixNano()
		if now-since < b.coolDown {
			return ErrCircuitOpen
		}
		// The first caller after the cool-down becomes the probe.
		if b.state.CompareAndSwap(int32(Open), int32(HalfOpen)) {
			b.since.Store(now)
			b.changed(ctx, Open, HalfOpen)
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
	case errors.Is(err, featurestore.ErrBusy):
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
	switch State(b.state.Load()) {
	case Closed:
		if b.failures.Load() != 0 {
			b.failures.Store(0)
		}
	case HalfOpen:
		if b.state.CompareAndSwap(int32(HalfOpen), int32(Closed)) {
			b.failures.Store(0)
			b.changed(ctx, HalfOpen, Closed)
		}
	case Open:
		// A late answer to a call made before the breaker opened: the cool-down decides.
	}
}

func (b *Breaker) failure(ctx context.Context) {
	switch State(b.state.Load()) {
	case Closed:
		n := b.failures.Add(1)
		if n == 1 && b.minSpan > 0 {
			b.streak.Store(b.now().UnixNano())
		}
		if n < b.threshold {
			return
		}
		now := b.now().UnixNano()
		if b.minSpan > 0 && now-b.streak.Load() < b.minSpan {
			return
		}
		b.since.Store(now)
		if b.state.CompareAndSwap(int32(Closed), int32(Open)) {
			b.changed(ctx, Closed, Open)
		}
	case HalfOpen:
		b.since.Store(b.now().UnixNano())
		if b.state.CompareAndSwap(int32(HalfOpen), int32(Open)) {
			b.changed(ctx, HalfOpen, Open)
		}
	case Open:
	}
}

// Reset closes the breaker and clears its failure count, for example after an operator
// repaired the store.
func (b *Breaker) Reset(ctx context.Context) {
	if from := State(b.state.Swap(int32(Closed))); from != Closed {
		b.changed(ctx, from, Closed)
	}
	b.failures.Store(0)
}

func (b *Breaker) changed(ctx context.Context, from, to State) {
	b.transitions.Add(ctx, 1, b.attrs[to])
	if b.onChange != nil {
		b.onChange(b.shard, from, to)
	}
}
