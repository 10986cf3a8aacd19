package loadtest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Reply is what a run keeps of one answer.
type Reply struct {
	// RPC names the RPC called ("Decide", "GetDecision", ...) when a target sends several
	// kinds; it is set on errors too. Empty: the run's one kind.
	RPC      string
	Action   string // "RETRY", "MESSAGE", "ESCALATE", "SUPPRESS"; empty for calls without one
	Degraded bool
	Replayed bool
	// EventID and DecisionID, when set, let a run with faults count the decision ids each
	// event id got.
	EventID, DecisionID string
}

// Target is what a run calls. Implementations are safe for concurrent use.
type Target interface {
	// Prepare builds request i. Its cost is the generator's, counted in lag, not in service
	// time.
	Prepare(i uint64) any
	// Call sends a prepared request and waits for the answer.
	Call(ctx context.Context, req any) (Reply, error)
}

// Config describes one run.
type Config struct {
	// Name labels the run in progress lines and reports, for example "decide" or "baseline".
	Name string
	// Rate is the open-loop arrival rate in requests per second. Zero selects the closed loop.
	Rate float64
	// Concurrency is the number of closed-loop workers, each sending its next request as soon
	// as the previous one is answered. Used only when Rate is zero. Default 16.
	Concurrency int
	// Workers bounds the open loop's requests in flight. When all are busy, due requests
	// wait, and their latency, measured from the intended time, includes the wait. Default 256.
	Workers int
	// Duration is the measured time. Required.
	Duration time.Duration
	// Warmup runs before Duration with the same load; its calls are not recorded.
	Warmup time.Duration
	// Deadline is each call's deadline. Default 1s.
	Deadline time.Duration
	// Progress receives a line a second (rate, p50, p99, errors); nil prints nothing.
	Progress io.Writer
	// Live rewrites one line in place (for a terminal) instead of printing a line a second.
	Live bool
	// Stages, when set, ramp the open loop's arrival rate (see Stage) instead of holding Rate,
	// which is then ignored. The schedule's first Warmup is not recorded; Duration defaults to
	// the stages' total less Warmup.
	Stages []Stage
	// Requests, when above 0, ends the measured window after this many requests instead of
	// after Duration: the open loop sends exactly Requests after the warm-up (at Rate, or past
	// the last stage at its rate), the closed loop stops once Requests have been sent.
	Requests int64
	// FirstRequest is the number of the run's first request (Target.Prepare numbers them
	// from it). Runs of one traffic mix that must not repeat each other's requests (a repeated
	// event id is a replay, far cheaper than a decision) start at different numbers.
	FirstRequest uint64
	// Faults are done to the system under test during the measured window, each starting a
	// phase of the report (Result.Phases).
	Faults []Fault
}

func (c *Config) defaults() error {
	if !slices.IsSortedFunc(c.Faults, func(a, b Fault) int { return cmp.Compare(a.At, b.At) }) {
		return errors.New("faults must be in time order")
	}
	if len(c.Stages) > 0 {
		c.Rate = PeakRate(c.Stages)
		if c.Duration <= 0 && c.Requests <= 0 {
			c.Duration = StagesDuration(c.Stages) - c.Warmup
		}
	}
	if c.Duration <= 0 && c.Requests <= 0 {
		return errors.New("duration must be > 0")
	}
	if len(c.Stages) > 0 && c.Requests > 0 && c.Stages[len(c.Stages)-1].Rate == 0 {
		return errors.New("with a request count, the last stage's rate must be above 0")
	}
	if c.Rate < 0 || c.Warmup < 0 || c.Deadline < 0 || c.Workers < 0 || c.Concurrency < 0 || c.Requests < 0 {
		return errors.New("rate, warmup, deadline, workers, concurrency and requests must not be negative")
	}
	if c.Deadline == 0 {
		c.Deadline = time.Second
	}
	if c.Workers == 0 {
		c.Workers = 256
	}
	if c.Concurrency == 0 {
		c.Concurrency = 16
	}
	return nil
}

// Run drives target with cfg's load and returns what it measured. It stops by itself: the open
// loop sends at most Rate × (Warmup + Duration) requests and gives up on requests still
// waiting for a worker two deadlines after the schedule ends (counted as unsent); the closed
// loop stops at the end of Duration. Cancelling ctx stops it early with ctx's error.
func Run(ctx context.Context, target Target, cfg Config) (Result, error) {
	if err := cfg.defaults(); err != nil {
		return Result{}, err
	}
	if cfg.Rate > 0 {
		return runOpen(ctx, target, cfg)
	}
	return runClosed(ctx, target, cfg)
}

type job struct {
	i        uint64
	intended time.Time
}

func runOpen(ctx context.Context, target Target, cfg Config) (Result, error) {
	start := time.Now().Add(10 * time.Millisecond) // let the workers start first
	var sched arrivals = Schedule{Start: start, Rate: cfg.Rate}
	if len(cfg.Stages) > 0 {
		sched = Ramp{Start: start, Stages: cfg.Stages}
	}
	measureFrom := start.Add(cfg.Warmup)
	warm := sched.Count(cfg.Warmup)
	total := sched.Count(cfg.Warmup + cfg.Duration)
	if cfg.Requests > 0 {
		total = warm + cfg.Requests
	}
	end := measureFrom.Add(cfg.Duration)
	if cfg.Requests > 0 {
		end = sched.At(total - 1).Add(time.Nanosecond) // just after the last request is due
	}
	giveUp := end.Add(2*cfg.Deadline + time.Second)
	rec := newRecorder(measureFrom)
	if len(cfg.Faults) > 0 {
		rec.setFaults(cfg.Faults)
		faultCtx, stopFaults := context.WithCancel(ctx)
		defer stopFaults()
		go runFaults(faultCtx, cfg.Faults, measureFrom, rec, cfg.Progress)
	}

	jobs := make(chan job, cfg.Workers)
	var unsent atomic.Int64
	var wg sync.WaitGroup
	for range cfg.Workers {
		wg.Go(func() {
			for j := range jobs {
				if ctx.Err() != nil || time.Now().After(giveUp) {
					if !j.intended.Before(measureFrom) {
						unsent.Add(1)
					}
					continue
				}
				call(ctx, target, cfg.Deadline, j, measureFrom, rec)
			}
		})
	}
	stopProgress := startProgress(cfg, rec)

	// The scheduler: one goroutine, sleeping until each request is due. schedLag is how late
	// it woke up when it did sleep: its own fault (timer, CPU), not the wait for a free worker
	// (which makes it late without sleeping).
	schedLag := newHistogram()
	var poolFull int64
	unpin := pinScheduler()
schedule:
	for i := range total {
		t := sched.At(i)
		slept := time.Until(t) > 0
		if !sleepUntil(ctx, t) {
			break
		}
		if slept && !t.Before(measureFrom) {
			recordDuration(schedLag, time.Since(t))
		}
		j := job{i: cfg.FirstRequest + uint64(i), intended: t}
		select {
		case jobs <- j:
			continue
		default:
		}
		if !t.Before(measureFrom) {
			poolFull++
		}
		select {
		case jobs <- j:
		case <-ctx.Done():
			break schedule
		}
	}
	unpin()
	close(jobs)
	wg.Wait()
	stopProgress()
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}

	res := rec.result()
	res.Name, res.Mode = cfg.Name, "open"
	res.TargetRate = cfg.Rate
	res.Duration = end.Sub(measureFrom).Seconds()
	res.Workers = cfg.Workers
	res.Scheduled = total - warm
	res.Stages = cfg.Stages
	res.WarmupS = cfg.Warmup.Seconds()
	res.Unsent = unsent.Load()
	res.SchedulerLag = summarize(schedLag)
	res.PoolSaturated = poolFull
	res.Warnings = openWarnings(res)
	return res, nil
}

// openWarnings explains when the figures say more about the load generator than the server.
func openWarnings(res Result) []string {
	var w []string
	if res.SchedulerLag.P99Us > 1000 {
		w = append(w, fmt.Sprintf("the load generator fell behind its own schedule (p99 scheduler lag %s): "+
			"the client, not the server, limited this run; latency figures include that lag", fmtUs(res.SchedulerLag.P99Us)))
	}
	if res.Scheduled > 0 && float64(res.Completed+res.Unsent) < 0.99*float64(res.Scheduled) {
		w = append(w, fmt.Sprintf("only %d of %d scheduled requests completed", res.Completed, res.Scheduled))
	}
	if res.PoolSaturated > 0 {
		w = append(w, fmt.Sprintf("all %d workers were busy when %d requests were due: the server did not keep up "+
			"with the arrival rate (their wait is part of the latency); raise --workers only if service time is low",
			res.Workers, res.PoolSaturated))
	}
	if res.Unsent > 0 {
		w = append(w, fmt.Sprintf("%d requests were never sent: still waiting for a worker long after the schedule ended", res.Unsent))
	}
	return w
}

func runClosed(ctx context.Context, target Target, cfg Config) (Result, error) {
	start := time.Now()
	measureFrom := start.Add(cfg.Warmup)
	end := measureFrom.Add(cfg.Duration)
	rec := newRecorder(measureFrom)
	if len(cfg.Faults) > 0 {
		rec.setFaults(cfg.Faults)
		faultCtx, stopFaults := context.WithCancel(ctx)
		defer stopFaults()
		go runFaults(faultCtx, cfg.Faults, measureFrom, rec, cfg.Progress)
	}
	var next atomic.Uint64
	var measured atomic.Int64 // measured requests started, for cfg.Requests
	var wg sync.WaitGroup
	for range cfg.Concurrency {
		wg.Go(func() {
			for ctx.Err() == nil {
				now := time.Now()
				if cfg.Requests > 0 {
					if !now.Before(measureFrom) && measured.Add(1) > cfg.Requests {
						return
					}
				} else if !now.Before(end) {
					return
				}
				call(ctx, target, cfg.Deadline, job{i: cfg.FirstRequest + next.Add(1) - 1, intended: now}, measureFrom, rec)
			}
		})
	}
	stopProgress := startProgress(cfg, rec)
	wg.Wait()
	stopProgress()
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	res := rec.result()
	res.Name, res.Mode = cfg.Name, "closed"
	res.Duration = cfg.Duration.Seconds()
	if cfg.Requests > 0 {
		res.Duration = res.Elapsed
	}
	res.WarmupS = cfg.Warmup.Seconds()
	res.Workers = cfg.Concurrency
	return res, nil
}

// call prepares and sends one request and records it when it was due in the measured window.
func call(ctx context.Context, target Target, deadline time.Duration, j job, measureFrom time.Time, rec *recorder) {
	rec.calls.Add(1)
	req := target.Prepare(j.i)
	cctx, cancel := context.WithTimeout(ctx, deadline)
	sent := time.Now()
	rep, err := target.Call(cctx, req)
	done := time.Now()
	cancel()
	code := codes.OK
	if err != nil {
		code = status.Code(err)
		if code == codes.Unknown && errors.Is(err, context.DeadlineExceeded) {
			code = codes.DeadlineExceeded
		}
	}
	if j.intended.Before(measureFrom) {
		rec.recordWarmup(done.Sub(j.intended), code) // progress lines only
		return
	}
	rec.record(j.intended, sent, done, rep, code)
}

// startProgress prints a progress line a second until the returned function is called.
func startProgress(cfg Config, rec *recorder) (stop func()) {
	if cfg.Progress == nil {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		elapsed := 0
		warmup := int(cfg.Warmup.Round(time.Second) / time.Second)
		for {
			select {
			case <-done:
				if cfg.Live {
					fmt.Fprintln(cfg.Progress)
				}
				return
			case <-t.C:
			}
			elapsed++
			p := rec.takeInterval()
			// Warm-up seconds are labelled: their calls are not in the results.
			phase := ""
			if elapsed <= warmup {
				phase = "warm-up"
			}
			line := fmt.Sprintf("%-8s %4ds %-7s  rate %7d/s  p50 %8s  p99 %8s  errors %d",
				cfg.Name, elapsed, phase, p.count, fmtDur(p.p50), fmtDur(p.p99), p.errors)
			if cfg.Live {
				fmt.Fprintf(cfg.Progress, "\r\033[K%s", line)
			} else {
				fmt.Fprintln(cfg.Progress, line)
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

func fmtDur(d time.Duration) string { return fmtUs(float64(d) / 1e3) }

// fmtUs formats microseconds for people: µs below a millisecond, ms with 2 decimals below a
// second, seconds above.
func fmtUs(us float64) string {
	switch {
	case us < 1000:
		return fmt.Sprintf("%.0fµs", us)
	case us < 1e6:
		return fmt.Sprintf("%.2fms", us/1e3)
	default:
		return fmt.Sprintf("%.2fs", us/1e6)
	}
}

// maxStepShift spaces the request numbers of MaxThroughput's steps (2^32 requests each).
const maxStepShift = 32

// MaxThroughput finds the maximum sustainable throughput of target: it runs a closed loop for
// step at each of the concurrencies (after a warm-up of a fifth of step) and returns the run
// with the highest achieved rate among the sustainable ones: no errors and at most 1% of
// degraded answers (a server that answers fast by skipping its store is not sustaining the
// load). When no step is sustainable it returns the fastest step with a warning. Deadline and
// Progress are taken from base.
func MaxThroughput(ctx context.Context, target Target, base Config, concurrencies []int, step time.Duration) (Result, error) {
	return MaxThroughputWith(func(cfg Config) (Result, error) { return Run(ctx, target, cfg) }, base, concurrencies, step)
}

// MaxThroughputWith is MaxThroughput with each step run by run, which may measure around Run
// (the CPU time each step cost, say) and add to its Result.
func MaxThroughputWith(run func(Config) (Result, error), base Config, concurrencies []int, step time.Duration) (Result, error) {
	if len(concurrencies) == 0 {
		return Result{}, errors.New("max throughput: no concurrency given")
	}
	var best, fastest *Result
	for k, c := range concurrencies {
		cfg := base
		// Each step sends requests of its own: repeating an earlier step's event ids would
		// measure replays.
		cfg.FirstRequest = base.FirstRequest + uint64(k+1)<<maxStepShift
		cfg.Rate, cfg.Stages, cfg.Requests = 0, nil, 0
		cfg.Concurrency = c
		cfg.Duration = step
		cfg.Warmup = step / 5
		cfg.Name = fmt.Sprintf("%s c=%d", base.Name, c)
		res, err := run(cfg)
		if err != nil {
			return Result{}, err
		}
		res.Name = base.Name
		if fastest == nil || res.AchievedRate > fastest.AchievedRate {
			fastest = &res
		}
		if res.ErrorCount == 0 && res.DegradedShare <= 0.01 && (best == nil || res.AchievedRate > best.AchievedRate) {
			best = &res
		}
	}
	if best == nil {
		best = fastest
		best.Warnings = append(best.Warnings, fmt.Sprintf("no concurrency step was free of errors and degraded answers "+
			"(this one: %d errors, %.1f%% degraded): its rate is not a sustainable throughput", best.ErrorCount, 100*best.DegradedShare))
	}
	return *best, nil
}
