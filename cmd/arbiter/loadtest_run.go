package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"google.golang.org/grpc"

	"github.com/arbiter-dev/arbiter/loadtest"
)

// loadtestRun holds the flags of "arbiter loadtest" that shape the measured run and judge it:
// pass/fail thresholds, the caller's own requests, a request count and ramp stages.
type loadtestRun struct {
	maxErrorRate float64
	p99          time.Duration
	dataFile     string
	requests     int64
	stages       string

	faults    faultFlags             // --fault
	reqs      []loadtest.DataRequest // read from dataFile
	ramp      []loadtest.Stage       // parsed from stages
	warmupSet bool                   // --warmup given
}

// register adds the flags to fs.
func (r *loadtestRun) register(fs *flag.FlagSet) {
	fs.Float64Var(&r.maxErrorRate, "max-error-rate", loadtest.DefaultMaxErrorRate,
		"threshold: the run fails (exit 1) when more than this share of its Decide requests failed or were never sent; negative: no limit")
	fs.DurationVar(&r.p99, "p99", 0, "threshold: the run fails (exit 1) when its p99 latency (from the intended send) is above this; 0: not checked")
	fs.StringVar(&r.dataFile, "data-file", "", "send these requests instead of synthetic ones: JSON lines, each a DecideRequest or {\"rpc\": \"Decide|RecordOutcome|GetDecision|PutFeatures|GetCustomerState\", \"request\": {...}}; implies --skip-seed")
	fs.Int64Var(&r.requests, "requests", 0, "measure this many requests (after the warm-up) instead of --duration")
	fs.Var(&r.faults, "fault", "AT=NAME:COMMAND: at AT into the measured run, run COMMAND with sh -c (kill Redis, stall it, fail it over...) and report the calls from then on as phase NAME (errors by code, degraded share, p99, decision ids per event id); repeatable, in time order")
	fs.StringVar(&r.stages, "stages", "", "ramp the arrival rate instead of --rate: DURATION:RATE,... each moving linearly to RATE (the first from 0), e.g. 10s:500,30s:2000; --warmup then defaults to 0")
}

// check validates the flags once parsed, reads the data file and parses the stages.
func (r *loadtestRun) check(cmd string, fs *flag.FlagSet, c *loadtestConfig) error {
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "warmup" {
			r.warmupSet = true
		}
	})
	if r.maxErrorRate > 1 {
		return usagef(cmd, "loadtest: --max-error-rate %v: a share, at most 1 (0.01 is 1%%)", r.maxErrorRate)
	}
	if r.p99 < 0 || r.requests < 0 {
		return usagef(cmd, "loadtest: --p99 and --requests must not be negative")
	}
	if r.stages != "" {
		if c.concurrency > 0 {
			return usagef(cmd, "loadtest: --stages ramps the open loop's rate: not with --concurrency")
		}
		ramp, err := loadtest.ParseStages(r.stages)
		if err != nil {
			return usagef(cmd, "loadtest: --stages: %v", err)
		}
		r.ramp = ramp
		if !r.warmupSet {
			c.warmup = 0 // the ramp is its own warm-up
		}
		if r.requests == 0 && loadtest.StagesDuration(ramp) <= c.warmup {
			return usagef(cmd, "loadtest: --warmup %v is as long as the stages (%v)", c.warmup, loadtest.StagesDuration(ramp))
		}
	}
	if r.dataFile != "" {
		f, err := os.Open(r.dataFile)
		if err != nil {
			return fmt.Errorf("loadtest: %w", err)
		}
		defer f.Close()
		if r.reqs, err = loadtest.ReadDataFile(f); err != nil {
			return fmt.Errorf("loadtest: %s: %w", r.dataFile, err)
		}
		c.skipSeed = true
	}
	return nil
}

// apply sets the run's configuration from the flags.
func (r *loadtestRun) apply(cfg *loadtest.Config) {
	cfg.Requests = r.requests
	if len(r.ramp) > 0 {
		cfg.Stages, cfg.Duration = r.ramp, 0 // the stages' total
	}
}

// target returns the target of the measured run: the data file's requests when there is one,
// else synthetic.
func (r *loadtestRun) target(conns []grpc.ClientConnInterface, synthetic loadtest.Target) loadtest.Target {
	if r.reqs != nil {
		return loadtest.DataTarget(conns, r.reqs)
	}
	return synthetic
}

// errThresholds is the error of a run that broke a threshold: the command exits 1.
var errThresholds = errors.New("thresholds failed")

// judge checks the decide run of rep against the thresholds, records the verdict in rep, and
// returns an error naming every broken threshold.
func (r *loadtestRun) judge(rep *loadtest.Report) error {
	th := loadtest.Thresholds{MaxErrorRate: r.maxErrorRate, P99: r.p99}.Check(&rep.Decide)
	rep.Thresholds = &th
	if th.Passed {
		return nil
	}
	return fmt.Errorf("loadtest: %w: %s", errThresholds, strings.Join(th.Failures, "; "))
}

// faultFlags is the repeatable --fault AT=NAME:COMMAND.
type faultFlags []loadtest.Fault

func (f *faultFlags) String() string { return fmt.Sprintf("%d faults", len(*f)) }

func (f *faultFlags) Set(v string) error {
	at, rest, ok := strings.Cut(v, "=")
	name, command, ok2 := strings.Cut(rest, ":")
	if !ok || !ok2 || name == "" || strings.TrimSpace(command) == "" {
		return errors.New("want AT=NAME:COMMAND, e.g. 10s=redis-stall:kill -STOP $(cat redis.pid)")
	}
	d, err := time.ParseDuration(at)
	if err != nil || d < 0 {
		return fmt.Errorf("AT %q: want a duration such as 10s", at)
	}
	if n := len(*f); n > 0 && (*f)[n-1].At > d {
		return fmt.Errorf("fault %s at %v comes before the previous one: give them in time order", name, d)
	}
	*f = append(*f, loadtest.Fault{At: d, Name: name, Do: func(ctx context.Context) error {
		out, err := exec.CommandContext(ctx, "sh", "-c", command).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%w: %s", err, strings.TrimSpace(string(out)))
		}
		return nil
	}})
	return nil
}
