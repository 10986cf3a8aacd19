package loadtest

import (
	"fmt"
	"time"
)

// DefaultMaxErrorRate is the error rate above which a run fails unless told otherwise: 1%.
const DefaultMaxErrorRate = 0.01

// Thresholds are the pass/fail criteria of a run, as k6's thresholds: a run that breaks one
// has failed, and `arbiter loadtest` then exits 1 (after writing its reports).
type Thresholds struct {
	// MaxErrorRate is the highest ErrorRate a run may have, 0 to 1 (DefaultMaxErrorRate by
	// default on the command line). Negative: no limit.
	MaxErrorRate float64
	// P99 is the highest p99 latency (from the intended send time) a run may have; 0: no
	// limit.
	P99 time.Duration
}

// ErrorRate is the share of the measured requests that failed: answered with any status but
// OK (DeadlineExceeded, Unavailable, ...) or never sent, over those due (the open loop's
// schedule) or made. A run that made no request at all has an error rate of 1.
func (res *Result) ErrorRate() float64 {
	failed := res.ErrorCount + res.Unsent
	due := max(res.Scheduled, res.Completed+res.Unsent)
	if due == 0 {
		return 1
	}
	return float64(failed) / float64(due)
}

// ThresholdReport is how a run fared against its thresholds.
type ThresholdReport struct {
	// MaxErrorRate and P99Ms are the limits; null when there was none.
	MaxErrorRate *float64 `json:"max_error_rate"`
	P99Ms        *float64 `json:"p99_ms"`
	// ErrorRate and MeasuredP99Ms are what the run measured.
	ErrorRate     float64 `json:"error_rate"`
	MeasuredP99Ms float64 `json:"measured_p99_ms"`
	// Passed is false when a threshold was broken; Failures then say which, and by how much.
	Passed   bool     `json:"passed"`
	Failures []string `json:"failures,omitempty"`
}

// Check returns how res fares against t.
func (t Thresholds) Check(res *Result) ThresholdReport {
	rep := ThresholdReport{ErrorRate: res.ErrorRate(), MeasuredP99Ms: res.Latency.P99Us / 1e3, Passed: true}
	if t.MaxErrorRate >= 0 {
		limit := t.MaxErrorRate
		rep.MaxErrorRate = &limit
		if rep.ErrorRate > limit {
			rep.Failures = append(rep.Failures, fmt.Sprintf("error rate %.2f%% (%d errors, %d never sent, of %d due) is above --max-error-rate %.2f%%",
				100*rep.ErrorRate, res.ErrorCount, res.Unsent, max(res.Scheduled, res.Completed+res.Unsent), 100*limit))
		}
	}
	if t.P99 > 0 {
		limit := float64(t.P99) / float64(time.Millisecond)
		rep.P99Ms = &limit
		if res.Completed == 0 || res.Latency.P99Us > limit*1e3 {
			rep.Failures = append(rep.Failures, fmt.Sprintf("p99 latency %s is above --p99 %s", fmtUs(res.Latency.P99Us), t.P99))
		}
	}
	rep.Passed = len(rep.Failures) == 0
	return rep
}
