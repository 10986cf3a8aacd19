package featurestore

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/arbiter-dev/arbiter/decision"
)

// TestMemoryExpiry checks that Memory expires keys on its injected clock.
func TestMemoryExpiry(t *testing.T) {
	ctx := context.Background()
	clock := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	m := NewMemory(WithClock(func() time.Time { return clock }), WithRetention(48*time.Hour))
	const cust = "c"
	c := &Commit{
		CustomerID: cust, EventID: "ev", DecisionID: NewDecisionID(cust, clock), Now: clock, Record: []byte("r"),
		Effects: decision.Effects{Stops: []decision.RetryStop{{CardRef: "card", Until: clock.Add(time.Hour)}}},
	}
	if _, err := m.Commit(ctx, c); err != nil {
		t.Fatalf("Commit() = %v", err)
	}
	if err := m.PutFeatures(ctx, cust, map[string]any{"a": 1}, 10*time.Hour); err != nil {
		t.Fatalf("PutFeatures() = %v", err)
	}
	tests := []struct {
		after                       time.Duration
		wantStops, wantFeat, wantRe bool
	}{
		{0, true, true, true},
		{2 * time.Hour, false, true, true},
		{11 * time.Hour, false, false, true},
		{49 * time.Hour, false, false, false},
	}
	for _, tt := range tests {
		clock = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(tt.after)
		_, stops := m.keys[keysOf(cust).stops]
		_, feat := m.keys[keysOf(cust).features]
		_, _, err := m.GetDecision(ctx, c.DecisionID)
		m.sweep()
		_, stopsAfter := m.keys[keysOf(cust).stops]
		if got := stops && stopsAfter; got != tt.wantStops {
			t.Errorf("after %v: stops key present = %v, want %v", tt.after, got, tt.wantStops)
		}
		_, featAfter := m.keys[keysOf(cust).features]
		if got := feat && featAfter; got != tt.wantFeat {
			t.Errorf("after %v: features key present = %v, want %v", tt.after, got, tt.wantFeat)
		}
		if got := err == nil; got != tt.wantRe {
			t.Errorf("after %v: GetDecision() = %v, want found %v", tt.after, err, tt.wantRe)
		}
		if !tt.wantRe && !errors.Is(err, ErrNotFound) {
			t.Errorf("after %v: GetDecision() = %v, want ErrNotFound", tt.after, err)
		}
	}
}
