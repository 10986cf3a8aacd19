package loadtest

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Stage is one step of a ramping arrival rate, as k6's ramping-arrival-rate stages: over
// Duration the rate moves linearly to Rate, from the previous stage's Rate (the first stage's
// from 0). To hold a rate, repeat it: 5s:1000,30s:1000.
type Stage struct {
	Duration time.Duration `json:"duration_ns"`
	Rate     float64       `json:"rate"`
}

// ParseStages parses "10s:500,30s:2000": stages of DURATION:RATE, comma-separated, each
// duration positive (Go syntax: 500ms, 10s, 2m), each rate at least 0 and one above 0.
func ParseStages(s string) ([]Stage, error) {
	var stages []Stage
	peak := 0.0
	for part := range strings.SplitSeq(s, ",") {
		d, r, ok := strings.Cut(strings.TrimSpace(part), ":")
		if !ok {
			return nil, fmt.Errorf("stage %q: want DURATION:RATE, for example 30s:2000", part)
		}
		dur, err := time.ParseDuration(d)
		if err != nil || dur <= 0 {
			return nil, fmt.Errorf("stage %q: duration must be positive, for example 30s", part)
		}
		rate, err := strconv.ParseFloat(r, 64)
		if err != nil || rate < 0 || math.IsInf(rate, 0) || math.IsNaN(rate) {
			return nil, fmt.Errorf("stage %q: rate must be a number of requests per second, at least 0", part)
		}
		stages = append(stages, Stage{dur, rate})
		peak = max(peak, rate)
	}
	if peak == 0 {
		return nil, errors.New("stages: every rate is 0")
	}
	return stages, nil
}

// StagesDuration is the total duration of stages.
func StagesDuration(stages []Stage) time.Duration {
	var d time.Duration
	for _, s := range stages {
		d += s.Duration
	}
	return d
}

// PeakRate is the highest rate of stages.
func PeakRate(stages []Stage) float64 {
	peak := 0.0
	for _, s := range stages {
		peak = max(peak, s.Rate)
	}
	return peak
}

// arrivals is an open loop's schedule: request i is due at At(i); Count(d) requests are due
// in its first d.
type arrivals interface {
	At(i int64) time.Time
	Count(d time.Duration) int64
}

// Ramp is the arrival schedule of stages from Start; past the last stage it holds the last
// stage's rate. Like Schedule, each intended time is computed from Start, never from the
// previous send.
type Ramp struct {
	Start  time.Time
	Stages []Stage
}

// n returns the requests due in the first t seconds: the integral of the rate.
func (r Ramp) n(t float64) float64 {
	total, from, at := 0.0, 0.0, 0.0
	for _, s := range r.Stages {
		d := s.Duration.Seconds()
		if t <= at+d {
			x := t - at
			return total + from*x + (s.Rate-from)*x*x/(2*d)
		}
		total += (from + s.Rate) / 2 * d
		from, at = s.Rate, at+d
	}
	return total + from*(t-at)
}

// offset returns the seconds from Start at which request i is due: the t with n(t) = i.
func (r Ramp) offset(i int64) float64 {
	x := float64(i)
	total, from, at := 0.0, 0.0, 0.0
	for _, s := range r.Stages {
		d := s.Duration.Seconds()
		in := (from + s.Rate) / 2 * d
		if x < total+in {
			y := x - total
			a := (s.Rate - from) / (2 * d)
			if math.Abs(a) < 1e-12 {
				return at + y/from
			}
			// a t² + from t - y = 0, the root in [0, d].
			return at + (-from+math.Sqrt(from*from+4*a*y))/(2*a)
		}
		total += in
		from, at = s.Rate, at+d
	}
	if from == 0 {
		return math.Inf(1)
	}
	return at + (x-total)/from
}

// At returns the intended send time of request i (i from 0).
func (r Ramp) At(i int64) time.Time {
	off := r.offset(i)
	if math.IsInf(off, 1) || off > float64(math.MaxInt64/int64(time.Second)) {
		return r.Start.Add(math.MaxInt64)
	}
	return r.Start.Add(time.Duration(off * float64(time.Second)))
}

// Count returns how many requests are due in the first d: the number of i with
// At(i) < Start + d.
func (r Ramp) Count(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	n := int64(math.Ceil(r.n(d.Seconds())))
	// Correct float rounding so that the definition holds exactly.
	for n > 0 && r.At(n-1).Sub(r.Start) >= d {
		n--
	}
	for r.At(n).Sub(r.Start) < d {
		n++
	}
	return n
}
