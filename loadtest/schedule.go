package loadtest

import "time"

// Schedule is a constant-rate arrival schedule: request i is due at Start + i/Rate seconds.
// Each intended time is computed from Start, never from the previous send, so a late send
// does not push back the ones after it.
type Schedule struct {
	Start time.Time
	Rate  float64 // requests per second; must be > 0
}

// At returns the intended send time of request i (i from 0).
func (s Schedule) At(i int64) time.Time {
	return s.Start.Add(s.offset(i))
}

func (s Schedule) offset(i int64) time.Duration {
	return time.Duration(float64(i) * float64(time.Second) / s.Rate)
}

// Count returns how many requests are due in the first d of the schedule: the number of i
// with At(i) < Start + d.
func (s Schedule) Count(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	n := int64(float64(d) / float64(time.Second) * s.Rate)
	// Correct float rounding so that the definition holds exactly.
	for n > 0 && s.offset(n-1) >= d {
		n--
	}
	for s.offset(n) < d {
		n++
	}
	return n
}
