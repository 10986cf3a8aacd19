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
	bySent    []second     // timeline by actual send time
	flow      []flowSecond // throughput per second
	rpcs      map[string]int64
	first     time.Time // earliest send
	last      time.Time // latest completion
	phases    []*phase  // with faults: the calls by phase (setFaults)
	events    map[string]*eventDecisions
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
		rpcs:     map[string]int64{},
	}
}

// flowSecond counts one second's requests due, sent, answered and failed.
type flowSecond struct{ due, sent, done, errors int64 }

// secondOf returns the second of the measured window that t falls in, 0 for earlier.
func (r *recorder) secondOf(t time.Time) int {
	return max(0, int(t.Sub(r.start)/time.Second))
}

// grow returns tl with at least sec+1 seconds.
func grow(tl []second, sec int) []second {
	for len(tl) <= sec {
		tl = append(tl, second{hist: hdrhistogram.New(histLowest, histHighest, timelineDigits)})
	}
	return tl
}

// recordWarmup adds one warm-up call to the progress lines only.
func (r *recorder) recordWarmup(latency time.Duration, code codes.Code) {
	r.mu.Lock()
	defer r.mu.Unlock()
	recordDuration(r.interval, latency)
	if code != codes.OK {
		r.intErrors++
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
	sec, sentSec, doneSec := r.secondOf(intended), r.secondOf(sent), r.secondOf(done)
	r.timeline = grow(r.timeline, sec)
	r.bySent = grow(r.bySent, sentSec)
	for len(r.flow) <= max(sec, sentSec, doneSec) {
		r.flow = append(r.flow, flowSecond{})
	}
	recordDuration(r.timeline[sec].hist, latency)
	recordDuration(r.bySent[sentSec].hist, latency)
	r.flow[sec].due++
	r.flow[sentSec].sent++
	r.flow[doneSec].done++
	if rep.RPC != "" {
		r.rpcs[rep.RPC]++
	}
	r.recordPhase(intended, latency, rep, code)
	if code != codes.OK {
		r.errors[code]++
		r.intErrors++
		r.timeline[sec].errors++
		r.bySent[sentSec].errors++
		r.flow[doneSec].errors++
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
	res.Timeline, res.SentTimeline = timeline(r.timeline), timeline(r.bySent)
	for i, f := range r.flow {
		res.Throughput = append(res.Throughput, ThroughputPoint{Second: i, Due: f.due, Sent: f.sent, Completed: f.done, Errors: f.errors})
	}
	if len(r.rpcs) > 0 {
		res.RPCs = maps.Clone(r.rpcs)
	}
	res.Phases = r.phaseResults()
	return res
}

// timeline summarises the seconds of tl.
func timeline(tl []second) []TimelinePoint {
	var out []TimelinePoint
	for i, s := range tl {
		out = append(out, TimelinePoint{
			Second: i,
			Count:  s.hist.TotalCount(),
			Errors: s.errors,
			P50Us:  micros(s.hist.ValueAtPercentile(50)),
			P99Us:  micros(s.hist.ValueAtPercentile(99)),
			MaxUs:  micros(s.hist.Max()),
		})
	}
	return out
}
