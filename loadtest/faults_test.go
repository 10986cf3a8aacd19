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
	cfg := Config{Rate: 500, Duration: 600 * time.Millisecond, Faults: []Fault{
		{At: 300 * time.Millisecond, Name: "redis-kill", Do: func(context.Context) error { target.broken.Store(true); return nil }},
	}}
	res, err := Run(t.Context(), target, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Phases) != 2 {
		t.Fatalf("phases = %+v, want baseline and redis-kill", res.Phases)
	}
	base, fault := res.Phases[0], res.Phases[1]
	// Calls are put in phases by their intended time, the target breaks when the fault
	// runs: on a loaded machine (the race detector) calls due before the fault may be answered
	// after it, and calls due after it before.
	if base.Name != "baseline" || base.Events < 50 || base.MaxDecisionsPerEvent != 1 {
		t.Errorf("baseline = %+v, want its 50 events with one store decision each", base)
	}
	if fault.Name != "redis-kill" || fault.From != 0.3 || fault.Errors["Unavailable"] == 0 || fault.DegradedShare == 0 {
		t.Errorf("redis-kill phase = %+v, want UNAVAILABLE errors and degraded answers", fault)
	}
	// The broken target gives each degraded answer its own id: split events.
	if base.SplitEvents+fault.SplitEvents == 0 {
		t.Errorf("no split events; want the degraded answers with several ids per event counted")
	}
	var out bytes.Buffer
	WritePhases(&out, res.Phases)
	for _, want := range []string{"baseline", "redis-kill", "Unavailable"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("phase table lacks %q:\n%s", want, out.String())
		}
	}
}
