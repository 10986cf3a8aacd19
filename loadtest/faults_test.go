package loadtest

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// faultyTarget answers request i for event "ev-(i mod 50)" with one decision id per event.
// Once broken, its events are "bad-(i mod 50)", and it answers every second call UNAVAILABLE
// and the others degraded, each with a new decision id: what a run's phases must show.
type faultyTarget struct {
	broken atomic.Bool
	n      atomic.Int64
}

func (f *faultyTarget) Prepare(i uint64) any { return i }

func (f *faultyTarget) Call(_ context.Context, req any) (Reply, error) {
	i := req.(uint64)
	ev := fmt.Sprintf("ev-%d", i%50)
	if !f.broken.Load() {
		return Reply{Action: "MESSAGE", EventID: ev, DecisionID: "d-" + ev}, nil
	}
	n := f.n.Add(1)
	if n%2 == 0 {
		return Reply{}, status.Error(codes.Unavailable, "down")
	}
	return Reply{Action: "SUPPRESS", Degraded: true, EventID: "bad-" + ev, DecisionID: fmt.Sprintf("x-%d", n)}, nil
}

func TestRunPhases(t *testing.T) {
	target := &faultyTarget{}
	cfg := Config{Rate: 1000, Duration: 400 * time.Millisecond, Faults: []Fault{
		{At: 200 * time.Millisecond, Name: "redis-kill", Do: func(context.Context) error { target.broken.Store(true); return nil }},
	}}
	res, err := Run(t.Context(), target, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Phases) != 2 {
		t.Fatalf("phases = %+v, want baseline and redis-kill", res.Phases)
	}
	base, fault := res.Phases[0], res.Phases[1]
	// A few calls due just before the fault are answered after it: the baseline may see a
	// stray error or degraded answer, never a split event.
	if base.Name != "baseline" || base.DegradedShare > 0.05 || base.Events < 50 || base.SplitEvents != 0 {
		t.Errorf("baseline = %+v, want its 50 events with one decision each, next to nothing degraded", base)
	}
	if fault.Name != "redis-kill" || fault.From != 0.2 || fault.Errors["Unavailable"] == 0 || fault.DegradedShare < 0.95 {
		t.Errorf("redis-kill phase = %+v, want UNAVAILABLE errors and the answers degraded", fault)
	}
	// The broken target gives each degraded answer its own id: split events.
	if fault.SplitEvents == 0 {
		t.Errorf("redis-kill phase: %d split events; want the degraded answers with several ids per event counted", fault.SplitEvents)
	}
	var out bytes.Buffer
	WritePhases(&out, res.Phases)
	for _, want := range []string{"baseline", "redis-kill", "Unavailable", "100.00%"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("phase table lacks %q:\n%s", want, out.String())
		}
	}
}
