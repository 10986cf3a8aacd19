package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"github.com/arbiter-dev/arbiter/featurestore"
	"github.com/arbiter-dev/arbiter/loadtest"
	"golang.org/x/term"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// loadtestConfig is the configuration of "arbiter loadtest".
type loadtestConfig struct {
	addr        string
	token       string
	rate        float64
	duration    time.Duration
	warmup      time.Duration
	connections int
	concurrency int
	workers     int
	deadline    time.Duration
	customers   int
	duplicates  float64
	zipfS       float64
	zipfV       float64
	seed        uint64
	runID       string
	seedRedis   string
	skipSeed    bool
	baseline    bool
	maxStep     time.Duration
	out         string
	compare     bool
	watchAdmin  string
	watchRedis  string
	watchEvery  time.Duration
	cpuProfile  string
	via         string
	natsURL     string
	tls         *clientTLS
	run         loadtestRun
}

func loadtestHelp() help {
	return help{
		summary: "drive load against a server and report latency",
		usage:   []string{"loadtest [flags]", "loadtest --compare A.json B.json"},
		detail: `Seeds synthetic customers (through PutFeatures, or directly into Redis with --seed-redis),
drives Decide at a constant arrival rate (or with --concurrency workers in a closed loop, or
ramping through --stages), optionally measures the empty health check as a baseline, prints
a summary and writes report.json and report.html to --out. --data-file sends your own
requests instead (any of Decide, RecordOutcome, GetDecision, PutFeatures, GetCustomerState).
--via nats publishes the events to arbiter.events.loadtest on NATS JetStream instead and
measures from the publish to the decision on arbiter.decisions.> (arbiter serve --nats; seeding
still goes through --addr).
Like k6, the run has thresholds: it exits 1 when more than --max-error-rate (default 1%) of
its Decide requests failed or were never sent, or when its p99 is above --p99 (not checked
by default), after writing the reports. The target must be a loopback address. See
docs/performance.md.`,
		examples: []string{
			"arbiter loadtest --rate 1000 --duration 10s",
			"arbiter loadtest --stages 10s:500,30s:2000 --p99 50ms      # ramp, fail above 50 ms p99",
			"arbiter loadtest --data-file requests.jsonl --rate 200 --requests 5000",
			"arbiter loadtest --rate 2000 --baseline --out run-1",
			"arbiter loadtest --via nats --concurrency 64 --duration 20s   # through arbiter serve --nats",
			"arbiter loadtest --compare run-1/report.json run-2/report.json",
		},
	}
}

// runLoadtest is the "loadtest" command: seed synthetic customers, drive Decide at a constant
// arrival rate, optionally measure the empty-handler baseline, print a summary and write the
// JSON and HTML reports. With --compare A.json B.json it prints two reports side by side.
func runLoadtest(ctx context.Context, args []string, env func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	// Config.
	const cmd = "arbiter loadtest"
	var c loadtestConfig
	fs := newFlagSet(cmd)
	fs.StringVar(&c.addr, "addr", "127.0.0.1:50051", "gRPC address of the server under test (loopback only)")
	fs.StringVar(&c.token, "token", "", "bearer token of a client with the decide role (and admin, to seed through PutFeatures), when the server requires one (ARBITER_TOKEN)")
	fs.Float64Var(&c.rate, "rate", 2000, "open-loop arrival rate, Decide calls per second")
	fs.DurationVar(&c.duration, "duration", 30*time.Second, "measured duration")
	fs.DurationVar(&c.warmup, "warmup", 5*time.Second, "warm-up before the measured duration (not recorded)")
	fs.IntVar(&c.connections, "connections", 4, "gRPC connections to spread calls over")
	fs.IntVar(&c.concurrency, "concurrency", 0, "closed loop with this many workers instead of the open loop")
	fs.IntVar(&c.workers, "workers", 256, "open loop: most calls in flight")
	fs.DurationVar(&c.deadline, "deadline", time.Second, "deadline of each call")
	fs.IntVar(&c.customers, "customers", 10000, "synthetic customers to seed and draw from (Zipf)")
	fs.Float64Var(&c.duplicates, "duplicates", 0.02, "share of requests repeating an earlier event id (gateway retries)")
	fs.Float64Var(&c.zipfS, "zipf-s", 1.1, "skew of the customers' Zipf distribution (> 1; larger: hotter hot customers)")
	fs.Float64Var(&c.zipfV, "zipf-v", 100, "offset of the customers' Zipf distribution (>= 1; larger: flatter head)")
	fs.Uint64Var(&c.seed, "seed", 1, "seed of the synthetic customers and the traffic")
	fs.StringVar(&c.runID, "run-id", "", "prefix of event ids (default: from the clock, so reruns are not replays)")
	fs.StringVar(&c.seedRedis, "seed-redis", "", "seed customers directly into this Redis (redis://host:port) instead of through PutFeatures")
	fs.BoolVar(&c.skipSeed, "skip-seed", false, "do not seed customers (they are already stored)")
	fs.BoolVar(&c.baseline, "baseline", false, "also measure the empty gRPC health Check at the same rate and the maximum throughput of both")
	fs.DurationVar(&c.maxStep, "max-step", 5*time.Second, "with --baseline: duration of each closed-loop step that finds a maximum throughput")
	fs.StringVar(&c.out, "out", "loadtest-report", "directory for report.json and report.html (empty: none)")
	fs.BoolVar(&c.compare, "compare", false, "print two reports side by side: arbiter loadtest --compare A.json B.json")
	fs.StringVar(&c.watchAdmin, "watch-admin", "", "sample the server's goroutines and heap from this admin URL's /debug/pprof during the run (serve --pprof), e.g. http://127.0.0.1:8080")
	fs.StringVar(&c.watchRedis, "watch-redis", "", "with --watch-admin: also sample this Redis's connected clients (INFO clients)")
	fs.DurationVar(&c.watchEvery, "watch-every", 5*time.Second, "interval of --watch-admin samples")
	fs.StringVar(&c.via, "via", "grpc", "path of the Decide requests: grpc (the Decide RPC) or nats (events published to arbiter.events.loadtest, decisions read from arbiter.decisions.>; docs/streams.md)")
	fs.StringVar(&c.natsURL, "nats", "nats://127.0.0.1:4222", "with --via nats: the NATS server of arbiter serve --nats (loopback only)")
	c.tls = clientTLSFlags(fs, env)
	fs.StringVar(&c.cpuProfile, "cpuprofile", "", "write the load generator's own CPU profile to this file (go tool pprof), to see what the client spends")
	c.run.register(fs)
	pos, err := parseArgs(fs, loadtestHelp(), args, env, stdout)
	if err != nil {
		return err
	}
	if !c.compare {
		if err := c.run.check(cmd, fs, &c); err != nil {
			return err
		}
	}
	if c.compare {
		if len(pos) != 2 {
			return usagef(cmd, "loadtest --compare: want two report files, got %d", len(pos))
		}
		return compareReports(pos, stdout)
	}
	if len(pos) > 0 {
		return unexpectedArgs(cmd, pos)
	}
	switch {
	case c.via != "grpc" && c.via != "nats":
		return usagef(cmd, "loadtest: --via %q: want grpc or nats", c.via)
	case c.via == "nats" && (c.run.dataFile != "" || c.baseline):
		return usagef(cmd, "loadtest: --via nats sends synthetic Decide requests: not with --data-file or --baseline (which measure the gRPC path)")
	}
	if c.runID == "" {
		// Base 36 keeps decimal digits in the run id rare (see loadtest.Mix.Request).
		c.runID = "lt" + strconv.FormatInt(time.Now().UnixNano(), 36)
	}
	mix, err := loadtest.NewMix(c.seed, c.runID, c.customers, loadtest.WithDuplicates(c.duplicates),
		loadtest.WithZipf(c.zipfS, c.zipfV))
	if err != nil {
		return fmt.Errorf("loadtest: %w", err)
	}
	live := isTerminal(stderr)

	// Connections, once the server answers its health check.
	creds, err := c.tls.credentials()
	if err != nil {
		return fmt.Errorf("loadtest: %w", err)
	}
	conns, err := loadtest.Dial(c.addr, c.connections, c.token, creds)
	if err != nil {
		return fmt.Errorf("loadtest: %w", err)
	}
	defer loadtest.CloseAll(conns)
	cis := loadtest.Interfaces(conns)
	if err := waitHealthy(ctx, conns[0], 10*time.Second); err != nil {
		if err = callError(ctx, c.addr, "", err); isServerDown(err) {
			return fmt.Errorf("loadtest: %w", err)
		}
		return fmt.Errorf("loadtest: server %s: %w", c.addr, err)
	}

	// Seed.
	if !c.skipSeed {
		if err := seedCustomers(ctx, c, cis, stderr, live); err != nil {
			return fmt.Errorf("loadtest: seed: %w", err)
		}
	}

	if c.cpuProfile != "" {
		stop, err := startCPUProfile(c.cpuProfile)
		if err != nil {
			return fmt.Errorf("loadtest: %w", err)
		}
		defer stop()
	}

	// Load.
	base := loadtest.Config{
		Rate: c.rate, Concurrency: c.concurrency, Workers: c.workers, Duration: c.duration,
		Warmup: c.warmup, Deadline: c.deadline, Progress: stderr, Live: live,
	}
	if c.concurrency > 0 {
		base.Rate = 0
	}
	c.run.apply(&base)
	rep := &loadtest.Report{
		Date: time.Now().UTC(), Machine: loadtest.ThisMachine(), Addr: c.addr, Seed: c.seed,
		Customers: c.customers, Duplicates: c.duplicates, ZipfS: c.zipfS, ZipfV: c.zipfV, Connections: c.connections,
		DeadlineMs: float64(c.deadline) / float64(time.Millisecond), LoadBefore: loadtest.LoadAverage(),
	}
	statBefore := loadtest.ReadCPUStat()
	decide, health := c.run.target(cis, loadtest.DecideTarget(cis, mix)), loadtest.HealthTarget(cis)
	if c.via == "nats" {
		nt, err := loadtest.NewNATSTarget(c.natsURL, mix)
		if err != nil {
			return fmt.Errorf("loadtest: --nats %s: %w", redactDSN(c.natsURL), err)
		}
		defer nt.Close()
		decide, rep.Via = nt, "nats"
	}
	watcher, closeWatcher, err := newWatcher(c)
	if err != nil {
		return fmt.Errorf("loadtest: %w", err)
	}
	defer closeWatcher()
	// measure runs one open or closed loop and adds the CPU time per call it cost.
	measure := func(t loadtest.Target, cfg loadtest.Config) (loadtest.Result, error) {
		before := loadtest.TakeCPU(ctx, watcher)
		res, err := loadtest.Run(ctx, t, cfg)
		if err == nil {
			res.CPU = loadtest.Cost(before, loadtest.TakeCPU(ctx, watcher), res.Calls)
		}
		return res, err
	}
	cfg := base
	cfg.Name = "decide"
	if c.via == "nats" {
		cfg.Name = "decide via nats"
	}
	cfg.Faults = c.run.faults // the decide run only
	stopWatch := watchDuring(ctx, watcher, rep)
	rep.Decide, err = measure(decide, cfg)
	stopWatch()
	if err != nil {
		return fmt.Errorf("loadtest: decide: %w", err)
	}
	if c.baseline {
		cfg.Name = "baseline"
		res, err := measure(health, cfg)
		if err != nil {
			return fmt.Errorf("loadtest: baseline: %w", err)
		}
		rep.Baseline = &res
		steps := []int{2 * c.connections, 8 * c.connections, 32 * c.connections}
		for _, m := range []struct {
			name   string
			target loadtest.Target
			dst    **loadtest.Result
		}{{"decide max", decide, &rep.MaxDecide}, {"baseline max", health, &rep.MaxBaseline}} {
			cfg := base
			cfg.Name = m.name
			// Each step measures its own CPU time per call: at the maximum, it says which
			// process ran out of CPU.
			res, err := loadtest.MaxThroughputWith(func(cfg loadtest.Config) (loadtest.Result, error) {
				return measure(m.target, cfg)
			}, cfg, steps, c.maxStep)
			if err != nil {
				return fmt.Errorf("loadtest: %s: %w", m.name, err)
			}
			*m.dst = &res
		}
		rep.ComputeRatios()
	}
	rep.LoadAfter = loadtest.LoadAverage()
	rep.StealPercent = loadtest.StealPercent(statBefore, loadtest.ReadCPUStat())
	verdict := c.run.judge(rep) // reported below, returned last

	// Report.
	fmt.Fprintln(stdout)
	if err := rep.WriteSummary(stdout); err != nil {
		return err
	}
	if c.out != "" {
		if err := writeReports(rep, c.out); err != nil {
			return fmt.Errorf("loadtest: %w", err)
		}
		fmt.Fprintf(stdout, "reports: %s, %s\n", filepath.Join(c.out, "report.json"), filepath.Join(c.out, "report.html"))
	}
	return verdict
}

// seedCustomers writes the synthetic customers' features to Redis or through PutFeatures.
func seedCustomers(ctx context.Context, c loadtestConfig, conns []grpc.ClientConnInterface, stderr io.Writer, live bool) error {
	var sink loadtest.Sink
	if c.seedRedis != "" {
		rs, closeSink, err := redisSink(ctx, c.seedRedis)
		if err != nil {
			return err
		}
		defer closeSink()
		sink = rs
	} else {
		sink = loadtest.RPCSink(conns)
	}
	bar := newProgressBar(stderr, "seed", int64(c.customers), live)
	start := time.Now()
	n, err := loadtest.Seed(ctx, sink, c.seed, c.customers, loadtest.SeedOptions{
		Progress: func(records, _ int64) { bar.update(records, records) },
	})
	bar.done(n)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "seeded %d customers in %s (%.0f/s)\n", n, time.Since(start).Round(time.Millisecond),
		float64(n)/time.Since(start).Seconds())
	return nil
}

// newWatcher returns the watcher of the server's resources when --watch-admin is set (else
// nil) and the function that releases it.
func newWatcher(c loadtestConfig) (*loadtest.Watcher, func(), error) {
	if c.watchAdmin == "" {
		return nil, func() {}, nil
	}
	var info loadtest.RedisInfo
	closeRedis := func() {}
	if c.watchRedis != "" {
		if err := checkRedisURL(c.watchRedis); err != nil {
			return nil, nil, err
		}
		client, err := featurestore.Dial(c.watchRedis)
		if err != nil {
			return nil, nil, err
		}
		info = func(ctx context.Context, section string) (string, error) { return client.Info(ctx, section).Result() }
		closeRedis = func() { _ = client.Close() }
	}
	w, err := loadtest.NewWatcher(c.watchAdmin, info, c.watchEvery)
	if err != nil {
		closeRedis()
		return nil, nil, err
	}
	return w, closeRedis, nil
}

// watchDuring samples the server's resources until the returned function is called, which
// stores what was seen in rep.Resources. A nil watcher does nothing.
func watchDuring(ctx context.Context, w *loadtest.Watcher, rep *loadtest.Report) (stop func()) {
	if w == nil {
		return func() {}
	}
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { w.Run(wctx); close(done) }()
	return func() {
		cancel()
		<-done
		res := w.Result()
		rep.Resources = &res
	}
}

// waitHealthy polls the server's health Check until it answers SERVING or wait passes.
func waitHealthy(ctx context.Context, cc grpc.ClientConnInterface, wait time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	client := healthpb.NewHealthClient(cc)
	var last error
	for {
		resp, err := client.Check(ctx, &healthpb.HealthCheckRequest{})
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return nil
		}
		if err == nil {
			err = fmt.Errorf("health status %s", resp.GetStatus())
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("not healthy after %s: %w", wait, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func writeReports(rep *loadtest.Report, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, f := range []struct {
		name  string
		write func(io.Writer) error
	}{{"report.json", rep.WriteJSON}, {"report.html", rep.WriteHTML}} {
		path := filepath.Join(dir, f.name)
		out, err := os.Create(path)
		if err != nil {
			return err
		}
		if err := f.write(out); err != nil {
			out.Close()
			return fmt.Errorf("write %s: %w", path, err)
		}
		if err := out.Close(); err != nil {
			return err
		}
	}
	return nil
}

func compareReports(files []string, stdout io.Writer) error {
	if len(files) != 2 {
		return fmt.Errorf("loadtest --compare: want two report files, got %d", len(files))
	}
	a, err := loadtest.ReadReportFile(files[0])
	if err != nil {
		return fmt.Errorf("loadtest --compare: %w", err)
	}
	b, err := loadtest.ReadReportFile(files[1])
	if err != nil {
		return fmt.Errorf("loadtest --compare: %w", err)
	}
	fmt.Fprintf(stdout, "A: %s\nB: %s\n\n", files[0], files[1])
	return loadtest.WriteCompare(stdout, a, b)
}

// isTerminal reports whether w is a terminal (then progress is drawn in place).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// progressBar draws progress on a terminal, or prints a plain line every few seconds when
// the output is not one.
type progressBar struct {
	w       io.Writer
	label   string
	total   int64
	live    bool
	start   time.Time
	lastOut time.Time
}

func newProgressBar(w io.Writer, label string, total int64, live bool) *progressBar {
	now := time.Now()
	return &progressBar{w: w, label: label, total: total, live: live, start: now, lastOut: now}
}

// update shows done of total units (bytes or records), count records so far. It is called
// often and draws at most ten times a second on a terminal, every 5 s otherwise.
func (p *progressBar) update(done, count int64) {
	now := time.Now()
	every := 5 * time.Second
	if p.live {
		every = 100 * time.Millisecond
	}
	if now.Sub(p.lastOut) < every {
		return
	}
	p.lastOut = now
	frac := 0.0
	if p.total > 0 {
		frac = min(1, float64(done)/float64(p.total))
	}
	rate := float64(count) / now.Sub(p.start).Seconds()
	if p.live {
		const width = 30
		filled := int(frac * width)
		fmt.Fprintf(p.w, "\r\033[K%s [%s%s] %3.0f%% %d records %.0f/s", p.label,
			strings.Repeat("=", filled), strings.Repeat(" ", width-filled), 100*frac, count, rate)
		return
	}
	fmt.Fprintf(p.w, "%s: %.0f%%, %d records, %.0f/s\n", p.label, 100*frac, count, rate)
}

// done ends the bar.
func (p *progressBar) done(count int64) {
	if p.live {
		fmt.Fprintln(p.w)
	}
}

// startCPUProfile profiles this process into path until the returned stop is called.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
