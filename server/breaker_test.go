package server

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"
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

// breakerStep is one step of a breaker scenario: advance the clock, then either call Allow
// (checking its result) or Record a result.
type breakerStep struct {
	advance time.Duration
	allow   bool  // call Allow and expect wantErr
	wantErr error // for allow steps: nil or ErrCircuitOpen
	record  bool  // call Record(err)
	err     error
	want    BreakerState // state after the step
}

func TestBreaker(t *testing.T) {
	allowOK := func(want BreakerState) breakerStep { return breakerStep{allow: true, want: want} }
	refused := func(want BreakerState) breakerStep {
		return breakerStep{allow: true, wantErr: ErrCircuitOpen, want: want}
	}
	rec := func(err error, want BreakerState) breakerStep { return breakerStep{record: true, err: err, want: want} }
	wait := func(d time.Duration, s breakerStep) breakerStep { s.advance = d; return s }

	tests := []struct {
		name  string
		steps []breakerStep
	}{
		{"successes keep it closed", []breakerStep{
			allowOK(BreakerClosed), rec(nil, BreakerClosed),
			allowOK(BreakerClosed), rec(featurestore.ErrNotFound, BreakerClosed),
			allowOK(BreakerClosed), rec(featurestore.ErrCorrupt, BreakerClosed),
		}},
		{"three consecutive failures open it", []breakerStep{
			rec(errDown, BreakerClosed), rec(errTimeout, BreakerClosed), rec(errDown, BreakerOpen),
			refused(BreakerOpen),
		}},
		{"a success in between resets the count", []breakerStep{
			rec(errDown, BreakerClosed), rec(errDown, BreakerClosed), rec(nil, BreakerClosed),
			rec(errDown, BreakerClosed), rec(errDown, BreakerClosed), allowOK(BreakerClosed),
		}},
		{"canceled callers count as nothing", []breakerStep{
			rec(errDown, BreakerClosed), rec(errDown, BreakerClosed),
			rec(context.Canceled, BreakerClosed), rec(errDown, BreakerOpen),
		}},
		{"waiting in vain for a pooled connection counts as nothing", []breakerStep{
			rec(errDown, BreakerClosed), rec(errDown, BreakerClosed),
			rec(fmt.Errorf("load k: %w: %w", featurestore.ErrUnavailable, redis.ErrPoolTimeout), BreakerClosed),
			rec(errDown, BreakerOpen),
		}},
		{"still open just before the cool-down", []breakerStep{
			rec(errDown, BreakerClosed), rec(errDown, BreakerClosed), rec(errDown, BreakerOpen),
			wait(time.Second-time.Nanosecond, refused(BreakerOpen)),
		}},
		{"probe after the cool-down closes it on success", []breakerStep{
			rec(errDown, BreakerClosed), rec(errDown, BreakerClosed), rec(errDown, BreakerOpen),
			wait(time.Second, allowOK(BreakerHalfOpen)),
			refused(BreakerHalfOpen), // only one probe at a time
			rec(nil, BreakerClosed),
			allowOK(BreakerClosed),
			rec(errDown, BreakerClosed), rec(errDown, BreakerClosed), // count restarted at zero
		}},
		{"failed probe re-opens it for another cool-down", []breakerStep{
			rec(errDown, BreakerClosed), rec(errDown, BreakerClosed), rec(errDown, BreakerOpen),
			wait(time.Second, allowOK(BreakerHalfOpen)),
			rec(errTimeout, BreakerOpen),
			wait(500*time.Millisecond, refused(BreakerOpen)),
			wait(500*time.Millisecond, allowOK(BreakerHalfOpen)),
			rec(nil, BreakerClosed),
		}},
		{"a probe that never reports is replaced after a cool-down", []breakerStep{
			rec(errDown, BreakerClosed), rec(errDown, BreakerClosed), rec(errDown, BreakerOpen),
			wait(time.Second, allowOK(BreakerHalfOpen)),
			wait(999*time.Millisecond, refused(BreakerHalfOpen)),
			wait(time.Millisecond, allowOK(BreakerHalfOpen)),
			rec(nil, BreakerClosed),
		}},
		{"late success while open does not close it", []breakerStep{
			rec(errDown, BreakerClosed), rec(errDown, BreakerClosed), rec(errDown, BreakerOpen),
			rec(nil, BreakerOpen),
			refused(BreakerOpen),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newFakeClock()
			b, err := NewBreaker(WithBreakerThreshold(3), WithBreakerCoolDown(time.Second), WithBreakerClock(clock.now))
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
	b, err := NewBreaker(WithBreakerThreshold(1))
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
	if got := b.State(); got != BreakerClosed {
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
	b, err := NewBreaker(WithBreakerThreshold(1), WithBreakerCoolDown(time.Second), WithBreakerClock(clock.now))
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
	b, err := NewBreaker(
		WithBreakerThreshold(1), WithBreakerCoolDown(time.Second), WithBreakerClock(clock.now),
		WithBreakerMeterProvider(mp),
		WithBreakerOnChange(func(from, to BreakerState) { changes = append(changes, from.String()+">"+to.String()) }),
	)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	b.Record(ctx, errDown) // closed > open
	clock.advance(time.Second)
	_ = b.Allow(ctx)       // open > half-open
	b.Record(ctx, errDown) // half-open > open
	clock.advance(time.Second)
	_ = b.Allow(ctx)   // open > half-open
	b.Record(ctx, nil) // half-open > closed
	b.Record(ctx, errDown)

	want := []string{"closed>open", "open>half-open", "half-open>open", "open>half-open", "half-open>closed", "closed>open"}
	if diff := cmp.Diff(want, changes); diff != "" {
		t.Errorf("state changes (-want +got):\n%s", diff)
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(ctx, &rm); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	var gauge int64 = -1
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				if m.Name == "arbiter.store.breaker.transitions" {
					for _, p := range d.DataPoints {
						to, _ := p.Attributes.Value("to")
						got[to.AsString()] += p.Value
					}
				}
			case metricdata.Gauge[int64]:
				if m.Name == "arbiter.store.breaker.state" {
					gauge = d.DataPoints[0].Value
				}
			}
		}
	}
	if diff := cmp.Diff(map[string]int64{"open": 3, "half-open": 2, "closed": 1}, got); diff != "" {
		t.Errorf("arbiter.store.breaker.transitions by state (-want +got):\n%s", diff)
	}
	if gauge != int64(BreakerOpen) {
		t.Errorf("arbiter.store.breaker.state = %d, want %d (open)", gauge, BreakerOpen)
	}
}

func TestBreakerNoAllocs(t *testing.T) {
	b, err := NewBreaker(WithBreakerThreshold(2))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if n := testing.AllocsPerRun(100, func() {
		if b.Allow(ctx) == nil {
			b.Record(ctx, nil)
		}
	}); n != 0 {
		t.Errorf("closed Allow+Record allocates %v times, want 0", n)
	}
	b.Record(ctx, errDown)
	b.Record(ctx, errDown)
	if n := testing.AllocsPerRun(100, func() { _ = b.Allow(ctx) }); n != 0 {
		t.Errorf("open Allow allocates %v times, want 0", n)
	}
}

func BenchmarkBreakerClosed(b *testing.B) {
	br, err := NewBreaker()
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
	br, err := NewBreaker(WithBreakerThreshold(1), WithBreakerCoolDown(time.Hour))
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
