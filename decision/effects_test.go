package decision

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// TestEffectsMatchDecide: the effects recomputed from a recorded decision are those Decide
// committed, for every event type, so that a rebuilt state holds the same caps, ledgers and
// stops.
func TestEffectsMatchDecide(t *testing.T) {
	p := DefaultPolicy()
	seen := map[Action]bool{}
	var inputs []*Input
	for typ := EventType(1); typ < eventTypeCount; typ++ {
		inputs = append(inputs, testInput(typ))
	}
	inputs = append(inputs, payInput(t), msgInput(t))
	for _, in := range inputs {
		typ := in.Event.Type
		res, err := p.Decide(context.Background(), in)
		if err != nil {
			t.Fatal(err)
		}
		seen[res.Action] = true
		got := p.Effects(in, res)
		want := res.Effects
		want.CapChecks, want.LedgerChecks, want.StopChecks = nil, nil, nil
		got.CapChecks, got.LedgerChecks, got.StopChecks = nil, nil, nil
		if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("Effects(%s) mismatch with Decide's (-decide +effects):\n%s", bundleEventTypeName(typ), diff)
		}
	}
	if !seen[ActionMessage] || !seen[ActionRetry] {
		t.Errorf("the cases decided %v: want a MESSAGE and a RETRY among them", seen)
	}
	in := testInput(EventPaymentFailed)
	in.Degraded = true
	res, _ := p.Decide(context.Background(), in)
	if e := p.Effects(in, res); e.Message != nil || len(e.Ledger) > 0 {
		t.Errorf("Effects(degraded) = %+v, want none", e)
	}
}
