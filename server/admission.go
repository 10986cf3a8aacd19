package server

import (
	"sync"
	"time"
)

// Admission defaults (WithAdmission).
const (
	// DefaultAdmissionMin is the least number of decisions a shard always admits to its store
	// phase at once, so that a shard that overran keeps being probed.
	DefaultAdmissionMin = 4
	// admissionCutEvery is the least time between two cuts of a limit: one overload is one
	// cut, however many calls it overran.
	admissionCutEvery = 50 * time.Millisecond
	// admissionCut is the factor a limit is cut by on an overrun.
	admissionCut = 0.5
	// admissionStart is a shard's first limit (at most the maximum): a store's capacity is
	// learned upwards from it, which takes a fraction of a second at a few hundred calls a
	// second, rather than downwards from the maximum through overruns.
	admissionStart = 32
	// admissionRetryAfter is the retry delay a shed call is given.
	admissionRetryAfter = 50 * time.Millisecond
)

// admission limits, per store shard, the decisions in their store phase at once, and learns
// the limit from what the store phase does (additive increase, multiplicative decrease, as
// TCP's congestion control): each decision that read and wrote the store within its budget
// in under half its budget raises the limit by 1/limit (about one a round of calls); a
// decision whose store call overran its budget, or waited in vain for a pooled connection,
// halves it, at most once per admissionCutEvery. A decision beyond the limit is refused at once with
// RESOURCE_EXHAUSTED and a retry delay: under overload, the excess is shed before it costs
// anything, instead of every admitted call overrunning its budget and degrading. A store that
// is down (refused, breaker open) neither raises nor cuts: those calls degrade at once, at no
// cost.
type admission struct {
	mu       sync.Mutex
	limit    float64
	min, max float64
	inFlight int
	lastCut  time.Time
}

// admissionSignal is what a finished decision tells its shard's admission.
type admissionSignal uint8

const (
	admissionNone    admissionSignal = iota // the store phase said nothing of load
	admissionOK                             // the store answered within the budget
	admissionOverrun                        // a store call overran the budget or the pool
)

func newAdmission(lo, hi int) *admission {
	return &admission{limit: float64(min(hi, max(lo, admissionStart))), min: float64(lo), max: float64(hi)}
}

// acquire admits a decision, or reports false when the shard is at its limit.
func (a *admission) acquire() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if float64(a.inFlight) >= a.limit {
		return false
	}
	a.inFlight++
	return true
}

// release ends an admitted decision, which tells sig.
func (a *admission) release(sig admissionSignal, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.inFlight--
	switch sig {
	case admissionOK:
		a.limit = min(a.max, a.limit+1/a.limit)
	case admissionOverrun:
		if now.Sub(a.lastCut) >= admissionCutEvery {
			a.limit = max(a.min, a.limit*admissionCut)
			a.lastCut = now
		}
	}
}

// Limit returns the current limit, for metrics and tests.
func (a *admission) Limit() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return int(a.limit)
}

// admissions holds the admission of every shard, created on first use.
type admissions struct {
	min, max int
	shards   sync.Map // shard → *admission
}

func (as *admissions) of(shard string) *admission {
	if a, ok := as.shards.Load(shard); ok {
		return a.(*admission)
	}
	a, _ := as.shards.LoadOrStore(shard, newAdmission(as.min, as.max))
	return a.(*admission)
}
