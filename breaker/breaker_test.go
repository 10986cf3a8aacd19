package breaker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/arbiter-dev/arbiter/featurestore"
)

// fakeClock is a manual clock for breaker tests.
type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }
func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}

var (
	errDown    = fmt.Errorf("load customer: %w", featurestore.ErrUnavailable)
	errTimeout = fmt.Errorf("commit: %w", context.DeadlineExceeded)
)

// newBreaker returns the breaker of shard "" of a new Set.
func newBreaker(opts ...Option) (*Breaker, error) {
	s, err := NewSet(opts...)
	if err != nil {
		return nil, err
	}
	return s.Breaker(""), nil
}

// breakerStep is one step of a breaker scenario: advance the clock, then either call Allow
// (checking its result) or Record a result.
type breakerStep struct {
	advance time.Duration
	allow   bool  // call Allow and expect wantErr
	wantErr error // for allow steps: nil or ErrCircuitOpen
	record  bool  // call Record(err)
	err     error
	want    State // state after the step
}

func TestBreaker(t *testing.T) {
	allowOK := func(want State) breakerStep { return breakerStep{allow: true, want: want} }
	refused := func(want State) breakerStep {
		return breakerStep{allow: true, wantErr: ErrCircuitOpen, want: want}
	}
	rec := func(err error, want State) breakerStep { return breakerStep{record: true, err: err, want: want} }
	wait := func(d time.Duration, s breakerStep) breakerStep { s.advance = d; return s }

	tests := []struct {
		name  string
		steps []breakerStep
	}{
		{"successes keep it closed", []breakerStep{
			allowOK(Closed), rec(nil, Closed),
			allowOK(Closed), rec(featurestore.ErrNotFound, Closed),
			allowOK(Closed), rec(featurestore.ErrCorrupt, Closed),
		}},
		{"three consecutive failures open it", []breakerStep{
			rec(errDown, Closed), rec(errTimeout, Closed), rec(errDown, Open),
			refused(Open),
		}},
		{"a success in between resets the count", []breakerStep{
			rec(errDown, Closed), rec(errDown, Closed), rec(nil, Closed),
			rec(errDown, Closed), rec(errDown, Closed), allowOK(Closed),
		}},
		{"canceled callers count as nothing", []breakerStep{
			rec(errDown, Closed), rec(errDown, Closed),
			rec(context.Canceled, Closed), rec(errDown, Open),
		}},
		{"waiting in vain for a pooled connection counts as nothing", []breakerStep{
			rec(errDown, Closed), rec(errDown, Closed),
			rec(fmt.Errorf("load k: %w: %w", featurestore.ErrUnavailable, featurestore.ErrBusy), Closed),
			rec(errDown, Open),
		}},
		{"still open just before the cool-down", []breakerStep{
			rec(errDown, Closed), rec(errDown, Closed), rec(errDown, Open),
			wait(time.Second-time.Nanosecond, refused(Open)),
		}},
		{"probe after the cool-down closes it on success", []breakerStep{
			rec(errDown, Closed), rec(errDown, Closed), rec(errDown, Open),
			wait(time.Second, allowOK(HalfOpen)),
			refused(HalfOpen), // only one probe at a time
			rec(nil, Closed),
			allowOK(Closed),
			rec(errDown, Closed), rec(errDown, Closed), // count restarted at zero
		}},
		{"failed probe re-opens it for another cool-down", []breakerStep{
			rec(errDown, Closed), rec(errDown, Closed), rec(errDown, Open),
			wait(time.Second, allowOK(HalfOpen)),
			rec(errTimeout, Open),
			wait(500*time.Millisecond, refused(Open)),
			wait(500*time.Millisecond, allowOK(HalfOpen)),
			rec(nil, Closed),
		}},
		{"a probe that never reports is replaced after a cool-down", []breakerStep{
			rec(errDown, Closed), rec(errDown, Closed), rec(errDown, Open),
			wait(time.Second, allowOK(HalfOpen)),
			wait(999*time.Millisecond, refused(HalfOpen)),
			wait(time.Millisecond, allowOK(HalfOpen)),
			rec(nil, Closed),
		}},
		{"late success while open does not close it", []breakerStep{
			rec(errDown, Closed), rec(errDown, Closed), rec(errDown, Open),
			rec(nil, Open),
			refused(Open),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			b, err := newBreaker(WithThreshold(3), WithCoolDown(time.Second), WithClock(clock.now))
			if err != nil {
				t.Fatal(err)
			}
			ctx := t.Context()
			for i, s := range tt.steps {
				clock.advance(s.advance)
				switch {
				case s.allow:
					if err := b.Allow(ctx); !errors.Is(err, s.wantErr) || (err == nil) != (s.wantErr == nil) {
						t.Fatalf("step %d: Allow() = %v, want %v", i, err, s.wantErr)
					}
				case s.record:
					b.Record(ctx, s.err)
				}
				if got := b.State(); got != s.want {
					t.Fatalf("step %d: State() = %v, want %v", i, got, s.want)
				}
			}
		})
	}
}

// TestBreakerDoneContext checks that calls whose context is already done (a zero store budget)
// are refused without being counted: they cannot open the breaker.
func TestBreakerDoneContext(t *testing.T) {
	b, err := newBreaker(WithThreshold(1))
	if err != nil {
		t.Fatal(err)
	}
	expired, cancel := context.WithDeadline(t.Context(), time.Now().Add(-time.Millisecond))
	defer cancel()
	for range 10 {
		if err := b.Allow(expired); !errors.Is(err, ErrNoStoreTime) || !errors.Is(err, featurestore.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Allow(expired context) = %v, want ErrNoStoreTime", err)
		}
	}
	canceled, cancel2 := context.WithCancel(t.Context())
	cancel2()
	if err := b.Allow(canceled); !errors.Is(err, context.Canceled) || !errors.Is(err, featurestore.ErrUnavailable) {
		t.Errorf("Allow(canceled context) = %v, want an unavailable, canceled error", err)
	}
	if got := b.State(); got != Closed {
		t.Errorf("State() after refused done contexts = %v, want closed", got)
	}
	if err := b.Allow(t.Context()); err != nil {
		t.Errorf("Allow(live context) = %v, want nil", err)
	}
}

func TestErrCircuitOpenIsUnavailable(t *testing.T) {
	if !errors.Is(ErrCircuitOpen, featurestore.ErrUnavailable) {
		t.Errorf("errors.Is(ErrCircuitOpen, featurestore.ErrUnavailable) = false, want true")
	}
}

// TestBreakerOneProbe checks that of many concurrent callers after the cool-down exactly one
// becomes the probe.
func TestBreakerOneProbe(t *testing.T) {
	clock := newFakeClock()
	b, err := newBreaker(WithThreshold(1), WithCoolDown(time.Second), WithClock(clock.now))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	b.Record(ctx, errDown)
	clock.advance(time.Second)
	var allowed atomic.Int32
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			if b.Allow(ctx) == nil {
				allowed.Add(1)
			}
		})
	}
	wg.Wait()
	if got := allowed.Load(); got != 1 {
		t.Errorf("concurrent Allow() after the cool-down let %d calls through, want 1", got)
	}
}

func TestBreakerMetricsAndOnChange(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	clock := newFakeClock()
	var changes []string
	set, err := NewSet(
		WithThreshold(1), WithCoolDown(time.Second), WithClock(clock.now),
		WithMeterProvider(mp),
		WithOnChange(func(shard string, from, to State) {
			changes = append(changes, shard+":"+from.String()+">"+to.String())
		}),
	)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	b := set.Breaker("10.0.0.1:6379")
	set.Breaker("10.0.0.2:6379").Record(ctx, nil) // another shard, closed throughout
	b.Record(ctx, errDown)                        // closed > open
	clock.advance(time.Second)
	_ = b.Allow(ctx)       // open > half-open
	b.Record(ctx, errDown) // half-open > open
	clock.advance(time.Second)
	_ = b.Allow(ctx)   // open > half-open
	b.Record(ctx, nil) // half-open > closed
	b.Record(ctx, errDown)

	want := []string{"closed>open", "open>half-open", "half-open>open", "open>half-open", "half-open>closed", "closed>open"}
	for i := range want {
		want[i] = "10.0.0.1:6379:" + want[i]
	}
	if diff := cmp.Diff(want, changes); diff != "" {
		t.Errorf("state changes (-want +got):\n%s", diff)
	}

	transitions, states := collectBreakerMetrics(t, reader)
	// A shard's transitions start at zero from its first use, so the closed-throughout shard
	// has them too.
	wantTransitions := map[string]int64{"10.0.0.1:6379 open": 3, "10.0.0.1:6379 half-open": 2, "10.0.0.1:6379 closed": 1,
		"10.0.0.2:6379 open": 0, "10.0.0.2:6379 half-open": 0, "10.0.0.2:6379 closed": 0}
	if diff := cmp.Diff(wantTransitions, transitions); diff != "" {
		t.Errorf("arbiter.store.breaker.transitions by shard and state (-want +got):\n%s", diff)
	}
	wantStates := map[string]int64{"10.0.0.1:6379": int64(Open), "10.0.0.2:6379": int64(Closed)}
	if diff := cmp.Diff(wantStates, states); diff != "" {
		t.Errorf("arbiter.store.breaker.state by shard (-want +got):\n%s", diff)
	}
}

// collectBreakerMetrics returns the breaker transitions by "shard to" and the breaker states by
// shard.
func collectBreakerMetrics(t *testing.T, reader *sdkmetric.ManualReader) (transitions, states map[string]int64) {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(t.Context(), &rm); err != nil {
		t.Fatal(err)
	}
	transitions, states = map[string]int64{}, map[string]int64{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				if m.Name == "arbiter.store.breaker.transitions" {
					for _, p := range d.DataPoints {
						shard, _ := p.Attributes.Value("shard")
						to, _ := p.Attributes.Value("to")
						transitions[shard.AsString()+" "+to.AsString()] += p.Value
					}
				}
			case metricdata.Gauge[int64]:
				if m.Name == "arbiter.store.breaker.state" {
					for _, p := range d.DataPoints {
						shard, _ := p.Attributes.Value("shard")
						states[shard.AsString()] = p.Value
					}
				}
			}
		}
	}
	return transitions, states
}

// TestBreakerSetShards checks that each shard has its own breaker: failures of one shard (a
// lost cluster master) do not open another's, and a new address (the promoted replica) starts
// closed.
func TestBreakerSetShards(t *testing.T) {
	clock := newFakeClock()
	set, err := NewSet(WithThreshold(2), WithCoolDown(time.Second), WithClock(clock.now))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	const lost, other, promoted = "10.0.0.1:6379", "10.0.0.2:6379", "10.0.0.4:6379"
	if set.Breaker(lost) != set.Breaker(lost) {
		t.Fatalf("Breaker(%q) twice gave two breakers, want one", lost)
	}
	for range 2 {
		b := set.Breaker(lost)
		if err := b.Allow(ctx); err != nil {
			t.Fatalf("Allow() on %s before its failures = %v", lost, err)
		}
		b.Record(ctx, errDown)
		if b := set.Breaker(other); b.Allow(ctx) == nil {
			b.Record(ctx, nil)
		}
	}
	if err := set.Breaker(lost).Allow(ctx); !errors.Is(err, ErrCircuitOpen) {
		t.Errorf("Allow() on %s after 2 failures = %v, want ErrCircuitOpen", lost, err)
	}
	for _, shard := range []string{other, promoted, ""} {
		if err := set.Breaker(shard).Allow(ctx); err != nil {
			t.Errorf("Allow() on %s while %s is open = %v, want nil", shard, lost, err)
		}
	}
	want := map[string]State{lost: Open, other: Closed, promoted: Closed, "": Closed, "unknown:1": Closed}
	for shard, st := range want {
		if got := set.State(shard); got != st {
			t.Errorf("State(%q) = %v, want %v", shard, got, st)
		}
	}
	if _, ok := (*set.breakers.Load())["unknown:1"]; ok {
		t.Errorf("State(%q) added a breaker, want none", "unknown:1")
	}
}

// TestBreakerSetBounded checks that breakers of shards no longer used are dropped: after a
// minute without use (the old master's address after a failover), and the least recently used
// when the set is full.
func TestBreakerSetBounded(t *testing.T) {
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	clock := newFakeClock()
	set, err := NewSet(WithThreshold(1), WithClock(clock.now), WithMeterProvider(mp))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	const old, promoted = "10.0.0.1:6379", "10.0.0.4:6379"
	set.Breaker(old).Record(ctx, errDown)
	set.Breaker(promoted).Record(ctx, nil)
	for range 70 { // the promoted master is used, the old one no longer
		clock.advance(time.Second)
		set.Breaker(promoted)
	}
	// An idle breaker is no longer reported.
	if _, states := collectBreakerMetrics(t, reader); len(states) != 1 || states[promoted] != int64(Closed) {
		t.Errorf("arbiter.store.breaker.state after %s was idle 70 s = %v, want only %s closed", old, states, promoted)
	}
	// And the next new shard drops it.
	set.Breaker("10.0.0.5:6379")
	if got := len(*set.breakers.Load()); got != 2 {
		t.Errorf("breakers after a new shard = %d, want 2 (the idle one dropped)", got)
	}
	if got := set.State(old); got != Closed {
		t.Errorf("State(%q) after it was dropped = %v, want closed", old, got)
	}

	// Full: the least recently used goes.
	set.max = 4
	for i := range 10 {
		clock.advance(time.Second)
		set.Breaker(promoted) // busy throughout
		set.Breaker(fmt.Sprintf("10.0.1.%d:6379", i))
	}
	m := *set.breakers.Load()
	if len(m) > set.max {
		t.Errorf("breakers in a set of at most %d = %d", set.max, len(m))
	}
	for _, shard := range []string{promoted, "10.0.1.9:6379"} {
		if m[shard] == nil {
			t.Errorf("breaker of %s, used last, was dropped; want the least recently used dropped", shard)
		}
	}
}

func TestBreakerNoAllocs(t *testing.T) {
	set, err := NewSet(WithThreshold(2))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	const shard = "10.0.0.1:6379"
	set.Breaker(shard)
	if n := testing.AllocsPerRun(100, func() {
		if b := set.Breaker(shard); b.Allow(ctx) == nil {
			b.Record(ctx, nil)
		}
	}); n != 0 {
		t.Errorf("closed Breaker+Allow+Record allocates %v times, want 0", n)
	}
	set.Breaker(shard).Record(ctx, errDown)
	set.Breaker(shard).Record(ctx, errDown)
	if n := testing.AllocsPerRun(100, func() { _ = set.Breaker(shard).Allow(ctx) }); n != 0 {
		t.Errorf("open Breaker+Allow allocates %v times, want 0", n)
	}
}

func BenchmarkBreakerClosed(b *testing.B) {
	br, err := newBreaker()
	if err != nil {
		b.Fatal(err)
	}
	ctx := b.Context()
	b.ReportAllocs()
	for b.Loop() {
		if br.Allow(ctx) == nil {
			br.Record(ctx, nil)
		}
	}
}

// BenchmarkBreakerOpen is what a request pays for the store while Redis is down and the
// breaker open.
func BenchmarkBreakerOpen(b *testing.B) {
	br, err := newBreaker(WithThreshold(1), WithCoolDown(time.Hour))
	if err != nil {
		b.Fatal(err)
	}
	ctx := b.Context()
	br.Record(ctx, errDown)
	b.ReportAllocs()
	for b.Loop() {
		_ = br.Allow(ctx)
	}
}

// TestBreakerMinSpan: with a minimum span, a burst of failures at one moment (every call in
// flight overrunning its budget through one stall of the server) does not open the breaker;
// failures that go on for the span do, and a success in between starts the count again.
func TestBreakerMinSpan(t *testing.T) {
	clock := newFakeClock()
	b, err := newBreaker(WithThreshold(3), WithCoolDown(time.Second), WithMinSpan(100*time.Millisecond), WithClock(clock.now))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	for range 8 { // one stall: eight calls in flight time out together
		b.Record(ctx, errTimeout)
	}
	if got := b.State(); got != Closed {
		t.Fatalf("after a burst of 8 failures within 0s: %v, want closed", got)
	}
	clock.advance(60 * time.Millisecond)
	b.Record(ctx, errDown)
	if got := b.State(); got != Closed {
		t.Fatalf("after failures over 60ms: %v, want closed", got)
	}
	clock.advance(40 * time.Millisecond)
	b.Record(ctx, errDown)
	if got := b.State(); got != Open {
		t.Fatalf("after failures over 100ms: %v, want open", got)
	}

	b.Reset(ctx)
	for range 5 {
		b.Record(ctx, errTimeout)
	}
	clock.advance(90 * time.Millisecond)
	b.Record(ctx, nil) // the store answered: the run is over
	clock.advance(20 * time.Millisecond)
	for range 5 {
		b.Record(ctx, errTimeout)
	}
	if got := b.State(); got != Closed {
		t.Fatalf("two bursts 110ms apart with a success between: %v, want closed", got)
	}
}
