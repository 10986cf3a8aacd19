package loadtest

import (
	"context"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"google.golang.org/grpc/codes"
)

// Fault is something done to the system under test during a run: a Redis killed, stalled,
// restarted or failed over. At At after the measured window starts, Do runs, and the calls due
// from then on count in a new phase named Name, so that the report shows, per phase, the
// errors by code, the degraded share, the p99 and how many decision ids each event id got.
type Fault struct {
	At   time.Duration
	Name string
	Do   func(ctx context.Context) error
}

// PhaseResult is one phase of a run with faults: from its fault's time (the first phase,
// "baseline", from the start) to the next fault's.
type PhaseResult struct {
	Name string  `json:"name"`
	From float64 `json:"from_s"`
	// Calls, Errors (by gRPC code) and DegradedShare (of the OK answers) count the calls due
	// in the phase.
	Calls         int64            `json:"calls"`
	Errors        map[string]int64 `json:"errors"`
	DegradedShare float64          `json:"degraded_share"`
	P99Us         float64          `json:"p99_us"`
	// Events is the number of distinct event ids first sent in the phase and answered at
	// least once; SplitEvents how many of them got more than one decision id from the store
	// over the whole run (each must get at most one), MaxDecisionsPerEvent the most any got.
	// Degraded answers are counted apart: they commit nothing, every degraded answer to an
	// event has the same id, and a resend once the store is back is decided from the store
	// (a degraded answer is never an event's stored answer): DegradedThenDecided counts the
	// events that got both.
	Events               int64 `json:"events"`
	SplitEvents          int64 `json:"split_events"`
	MaxDecisionsPerEvent int   `json:"max_decisions_per_event"`
	DegradedThenDecided  int64 `json:"degraded_then_decided"`
	// FaultError is the error of the fault's action, if it failed.
	FaultError string `json:"fault_error,omitempty"`
}

// phase is a recorder's tally of one phase.
type phase struct {
	name     string
	at       time.Duration
	calls    int64
	errors   map[codes.Code]int64
	ok       int64
	degraded int64
	latency  *hdrhistogram.Histogram
	faultErr string
}

// eventDecisions is what one event id got: the phase it was first sent in, its distinct
// decision ids from the store and those of its degraded answers.
type eventDecisions struct {
	phase    int
	ids      []string
	degraded []string
}

// setFaults makes r tally calls by the phases of faults (sorted by time).
func (r *recorder) setFaults(faults []Fault) {
	r.phases = []*phase{{name: "baseline", errors: map[codes.Code]int64{}, latency: newHistogram()}}
	for _, f := range faults {
		r.phases = append(r.phases, &phase{name: f.Name, at: f.At, errors: map[codes.Code]int64{}, latency: newHistogram()})
	}
	r.events = map[string]*eventDecisions{}
}

// recordPhase tallies one measured call by its phase; r.mu is held.
func (r *recorder) recordPhase(intended time.Time, latency time.Duration, rep Reply, code codes.Code) {
	if len(r.phases) == 0 {
		return
	}
	since := intended.Sub(r.start)
	i := 0
	for j, p := range r.phases {
		if since >= p.at {
			i = j
		}
	}
	p := r.phases[i]
	p.calls++
	recordDuration(p.latency, latency)
	if code != codes.OK {
		p.errors[code]++
		return
	}
	p.ok++
	if rep.Degraded {
		p.degraded++
	}
	if rep.EventID == "" || rep.DecisionID == "" {
		return
	}
	e := r.events[rep.EventID]
	if e == nil {
		e = &eventDecisions{phase: i}
		r.events[rep.EventID] = e
	}
	ids := &e.ids
	if rep.Degraded {
		ids = &e.degraded
	}
	if !slices.Contains(*ids, rep.DecisionID) {
		*ids = append(*ids, rep.DecisionID)
	}
}

// phaseResults summarises the phases; r.mu is held.
func (r *recorder) phaseResults() []PhaseResult {
	if len(r.phases) == 0 {
		return nil
	}
	out := make([]PhaseResult, len(r.phases))
	for i, p := range r.phases {
		pr := PhaseResult{Name: p.name, From: p.at.Seconds(), Calls: p.calls, Errors: map[string]int64{},
			P99Us: float64(p.latency.ValueAtQuantile(99)) / 1e3, FaultError: p.faultErr}
		for c, n := range p.errors {
			pr.Errors[c.String()] = n
		}
		if p.ok > 0 {
			pr.DegradedShare = float64(p.degraded) / float64(p.ok)
		}
		out[i] = pr
	}
	for _, e := range r.events {
		pr := &out[e.phase]
		pr.Events++
		if len(e.ids) > 1 {
			pr.SplitEvents++
		}
		pr.MaxDecisionsPerEvent = max(pr.MaxDecisionsPerEvent, len(e.ids))
		if len(e.degraded) > 1 {
			pr.SplitEvents++ // degraded answers to one event must share their id
		}
		if len(e.ids) > 0 && len(e.degraded) > 0 {
			pr.DegradedThenDecided++
		}
	}
	return out
}

// runFaults does each fault at its time after start, until ctx ends, and notes a failed
// action in its phase.
func runFaults(ctx context.Context, faults []Fault, start time.Time, rec *recorder, progress io.Writer) {
	for i, f := range faults {
		if !sleepUntil(ctx, start.Add(f.At)) {
			return
		}
		if progress != nil {
			fmt.Fprintf(progress, "fault %s at %v\n", f.Name, f.At)
		}
		if f.Do == nil {
			continue
		}
		if err := f.Do(ctx); err != nil {
			rec.mu.Lock()
			rec.phases[i+1].faultErr = err.Error()
			rec.mu.Unlock()
			if progress != nil {
				fmt.Fprintf(progress, "fault %s failed: %v\n", f.Name, err)
			}
		}
	}
}

// WritePhases prints the phases of a run with faults as a table.
func WritePhases(w io.Writer, phases []PhaseResult) {
	if len(phases) == 0 {
		return
	}
	fmt.Fprintf(w, "\n%-16s %7s %7s %-30s %9s %9s %7s %6s %10s %s\n", "phase", "from", "calls", "errors", "degraded", "p99", "events", "split", "decisions", "degraded, then decided")
	for _, p := range phases {
		errs := fmtCounts(p.Errors, p.Calls)
		fmt.Fprintf(w, "%-16s %6.1fs %7d %-30s %8.2f%% %9s %7d %6d %10s %d\n", p.Name, p.From, p.Calls, errs,
			100*p.DegradedShare, time.Duration(p.P99Us*1e3).Round(10*time.Microsecond), p.Events, p.SplitEvents,
			fmt.Sprintf("≤ %d", p.MaxDecisionsPerEvent), p.DegradedThenDecided)
		if p.FaultError != "" {
			fmt.Fprintf(w, "%-16s fault failed: %s\n", "", p.FaultError)
		}
	}
}
