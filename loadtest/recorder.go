package loadtest

import (
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"google.golang.org/grpc/codes"
)

// timelineDigits is the precision of the per-second histograms: two significant digits keep
// a long run's timeline small.
const timelineDigits = 2

// second is the record of one second of the measured run, by intended send time.
type second struct {
	hist   *hdrhistogram.Histogram
	errors int64
}

// recorder collects the observations of a run. It is safe for concurrent use.
type recorder struct {
	calls     atomic.Int64 // every call, warm-up included
	mu        sync.Mutex
	start     time.Time // start of the measured window, by intended time
	latency   *hdrhistogram.Histogram
	service   *hdrhistogram.Histogram
	lag       *hdrhistogram.Histogram
	interval  *hdrhistogram.Histogram // since the last progress line
	intErrors int64
	errors    map[codes.Code]int64
	actions   map[string]int64
	degraded  int64
	replayed  int64
	timeline  []second
	first     time.Time // earliest send
	last      time.Time // latest completion
}

func newRecorder(start time.Time) *recorder {
	return &recorder{
		start:    start,
		latency:  newHistogram(),
		service:  newHistogram(),
		lag:      newHistogram(),
		interval: newHistogram(),
		errors:   map[codes.Code]int64{},
		actions:  map[string]int64{},
	}
}

// record adds one completed call. intended is when it was due, sent when it left, done when
// its answer (or error) came back.
func (r *recorder) record(intended, sent, done time.Time, rep Reply, code codes.Code) {
	latency := done.Sub(intended)
	r.mu.Lock()
	defer r.mu.Unlock()
	recordDuration(r.latency, latency)
	recordDuration(r.service, done.Sub(sent))
	recordDuration(r.lag, sent.Sub(intended))
	recordDuration(r.interval, latency)
	if r.first.IsZero() || sent.Before(r.first) {
		r.first = sent
	}
	if done.After(r.last) {
		r.last = done
	}
	sec := int(intended.Sub(r.start) / time.Second)
	if sec < 0 {
		sec = 0
	}
	for len(r.timeline) <= sec {
		r.timeline = append(r.timeline, second{hist: hdrhistogram.New(histLowest, histHighest, timelineDigits)})
	}
	recordDuration(r.timeline[sec].hist, latency)
	if code != codes.OK {
		r.errors[code]++
		r.intErrors++
		r.timeline[sec].errors++
		return
	}
	if rep.Action != "" {
		r.actions[rep.Action]++
	}
	if rep.Degraded {
		r.degraded++
	}
	if rep.Replayed {
		r.replayed++
	}
}

// progress is one live progress line's figures.
type progress struct {
	count  int64
	errors int64
	p50    time.Duration
	p99    time.Duration
}

// takeInterval returns the figures since the previous call and starts a new interval.
func (r *recorder) takeInterval() progress {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := progress{
		count:  r.interval.TotalCount(),
		errors: r.intErrors,
		p50:    time.Duration(r.interval.ValueAtPercentile(50)),
		p99:    time.Duration(r.interval.ValueAtPercentile(99)),
	}
	r.interval.Reset()
	r.intErrors = 0
	return p
}

// result summarises what was recorded.
func (r *recorder) result() Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	res := Result{
		Latency:         summarize(r.latency),
		Service:         summarize(r.service),
		Lag:             summarize(r.lag),
		Spectrum:        spectrum(r.latency),
		ServiceSpectrum: spectrum(r.service),
		Errors:          map[string]int64{},
		Actions:         maps.Clone(r.actions),
		Degraded:        r.degraded,
		Replayed:        r.replayed,
		Calls:           r.calls.Load(),
	}
	for c, n := range r.errors {
		res.Errors[c.String()] = n
		res.ErrorCount += n
	}
	res.Completed = r.latency.TotalCount()
	if !r.first.IsZero() && r.last.After(r.first) {
		res.Elapsed = r.last.Sub(r.first).Seconds()
		res.AchievedRate = float64(res.Completed) / res.Elapsed
	}
	if ok := res.Completed - res.ErrorCount; ok > 0 {
		res.DegradedShare = float64(r.degraded) / float64(ok)
	}
	for i, s := range r.timeline {
		res.Timeline = append(res.Timeline, TimelinePoint{
			Second: i,
			Count:  s.hist.TotalCount(),
			Errors: s.errors,
			P50Us:  micros(s.hist.ValueAtPercentile(50)),
			P99Us:  micros(s.hist.ValueAtPercentile(99)),
			MaxUs:  micros(s.hist.Max()),
		})
	}
	return res
}
