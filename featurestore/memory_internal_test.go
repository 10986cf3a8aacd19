package featurestore

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

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

// TestMemoryAuditTrimsByAge: the audit trail drops entries once they are older than the
// retention, and only then.
func TestMemoryAuditTrimsByAge(t *testing.T) {
	ctx := context.Background()
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := start
	m := NewMemory(WithClock(func() time.Time { return clock }), WithRetention(time.Hour))
	ids := func() []string {
		var out []string
		if err := m.ScanAudit(ctx, func(id string, _ []byte) error { out = append(out, id); return nil }); err != nil {
			t.Fatalf("ScanAudit() = %v", err)
		}
		return out
	}
	var want []string
	for i, after := range []time.Duration{0, 10 * time.Minute, 60 * time.Minute, 70 * time.Minute, 115 * time.Minute} {
		clock = start.Add(after)
		c := &Commit{CustomerID: "c", EventID: fmt.Sprintf("ev-%d", i), DecisionID: NewDecisionID("c", clock), Now: clock, Record: []byte("r")}
		if _, err := m.Commit(ctx, c); err != nil {
			t.Fatalf("Commit(#%d) = %v", i, err)
		}
		want = append(want, c.DecisionID)
	}
	// At 115 minutes, the entries of 0 and 10 minutes are older than the hour; 60 is not.
	if diff := cmp.Diff(want[2:], ids()); diff != "" {
		t.Errorf("audit entries after the retention passed (-want +got):\n%s", diff)
	}
}
