package server

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestBudgetFor(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name     string
		budget   Budget
		deadline time.Duration // from now; 0 means no deadline
		want     time.Duration
	}{
		{"no deadline gives the default max", Budget{}, 0, 50 * time.Millisecond},
		{"no deadline gives the configured max", Budget{Max: 20 * time.Millisecond}, 0, 20 * time.Millisecond},
		{"long deadline is capped by max", Budget{}, time.Second, 50 * time.Millisecond},
		{"short deadline gets the fraction", Budget{}, 20 * time.Millisecond, 15 * time.Millisecond},
		{"custom fraction", Budget{Fraction: 0.5}, 20 * time.Millisecond, 10 * time.Millisecond},
		{"reserve wins near the deadline", Budget{Fraction: 1}, 20 * time.Millisecond, 18 * time.Millisecond},
		{"custom reserve", Budget{Fraction: 1, Reserve: 5 * time.Millisecond}, 20 * time.Millisecond, 15 * time.Millisecond},
		{"negative reserve means none", Budget{Fraction: 1, Reserve: -1}, 20 * time.Millisecond, 20 * time.Millisecond},
		{"out-of-range fraction means the default", Budget{Fraction: 3}, 20 * time.Millisecond, 15 * time.Millisecond},
		{"no time left for the store", Budget{}, 2 * time.Millisecond, 0},
		{"deadline already passed", Budget{}, -time.Millisecond, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			if tt.deadline != 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithDeadline(ctx, now.Add(tt.deadline))
				defer cancel()
			}
			if got := tt.budget.For(ctx, now); got != tt.want {
				t.Errorf("%+v.For(deadline now+%v) = %v, want %v", tt.budget, tt.deadline, got, tt.want)
			}
		})
	}
}

func TestBudgetContext(t *testing.T) {
	t.Run("deadline is now plus the budget", func(t *testing.T) {
		now := time.Now()
		ctx, cancel := context.WithDeadline(t.Context(), now.Add(time.Second))
		defer cancel()
		sctx, scancel := Budget{Max: 30 * time.Millisecond}.Context(ctx, now)
		defer scancel()
		got, ok := sctx.Deadline()
		if want := now.Add(30 * time.Millisecond); !ok || !got.Equal(want) {
			t.Errorf("Context(ctx, now).Deadline() = %v, %v; want %v, true", got, ok, want)
		}
	})
	t.Run("zero budget is done at once", func(t *testing.T) {
		now := time.Now()
		ctx, cancel := context.WithDeadline(t.Context(), now.Add(time.Millisecond))
		defer cancel()
		sctx, scancel := Budget{}.Context(ctx, now)
		defer scancel()
		if err := sctx.Err(); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Context(ctx 1ms from now).Err() = %v, want context.DeadlineExceeded", err)
		}
	})
}

func TestBudgetForNoAllocs(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	now := time.Now()
	if n := testing.AllocsPerRun(100, func() { _ = Budget{}.For(ctx, now) }); n != 0 {
		t.Errorf("Budget.For allocates %v times, want 0", n)
	}
}

func TestBudgetSized(t *testing.T) {
	ms := time.Millisecond
	for _, tt := range []struct {
		budget Budget
		p99    time.Duration
		want   time.Duration
	}{
		{Budget{Max: 50 * ms}, 2 * ms, 50 * ms},               // no Min: not sized
		{Budget{Max: 50 * ms, Min: 10 * ms}, 0, 50 * ms},      // nothing measured yet
		{Budget{Max: 50 * ms, Min: 10 * ms}, ms, 10 * ms},     // a fast store: the floor
		{Budget{Max: 50 * ms, Min: 10 * ms}, 5 * ms, 20 * ms}, // headroom × p99
		{Budget{Max: 50 * ms, Min: 10 * ms}, 30 * ms, 50 * ms},
		{Budget{Min: 10 * ms}, 30 * ms, DefaultStoreBudgetMax},
	} {
		if got := tt.budget.sized(tt.p99).Max; got != tt.want {
			t.Errorf("%+v.sized(p99 %v).Max = %v, want %v", tt.budget, tt.p99, got, tt.want)
		}
	}
}

func TestLatenciesP99(t *testing.T) {
	var l latencies
	if l.P99() != 0 {
		t.Fatal("P99 before any call is not zero")
	}
	for i := range 2 * latencyWindow {
		d := time.Millisecond
		if i%50 == 0 {
			d = 40 * time.Millisecond // 2% of calls are slow: the p99 is one of them
		}
		l.observe(d)
	}
	if got := l.P99(); got != 40*time.Millisecond {
		t.Errorf("P99() = %v, want 40ms", got)
	}
	for range latencyWindow {
		l.observe(2 * time.Millisecond)
	}
	if got := l.P99(); got != 2*time.Millisecond {
		t.Errorf("P99() after a window of 2ms calls = %v, want 2ms (old calls forgotten)", got)
	}
}
