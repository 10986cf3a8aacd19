package loadtest

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Result is what one run measured. Durations are in microseconds (suffix _us), rates in
// requests per second.
type Result struct {
	Name string `json:"name"`
	// Mode is "open" (constant arrival rate) or "closed" (fixed concurrency).
	Mode       string  `json:"mode"`
	TargetRate float64 `json:"target_rate,omitempty"`
	Duration   float64 `json:"duration_s"`
	// Workers is the open loop's pool size or the closed loop's concurrency.
	Workers int `json:"workers"`
	// Scheduled is how many requests the open loop's schedule had in the measured window.
	Scheduled int64 `json:"scheduled,omitempty"`
	Completed int64 `json:"completed"`
	// Calls counts every call made, warm-up included.
	Calls        int64   `json:"calls"`
	Unsent       int64   `json:"unsent,omitempty"`
	Elapsed      float64 `json:"elapsed_s"`
	AchievedRate float64 `json:"achieved_rate"`
	// Latency is measured from the intended send time (open loop) or the send time (closed).
	Latency Percentiles `json:"latency"`
	// Service is completion minus actual send.
	Service Percentiles `json:"service"`
	// Lag is actual send minus intended send: waiting for a worker plus the generator's delay.
	Lag Percentiles `json:"lag"`
	// SchedulerLag is how late the open-loop scheduler woke up from its sleeps: its own
	// lateness, not counting waits for a free worker.
	SchedulerLag Percentiles `json:"scheduler_lag"`
	// PoolSaturated counts due requests that found every worker busy.
	PoolSaturated int64 `json:"pool_saturated,omitempty"`
	// Spectrum is the latency percentile spectrum; ServiceSpectrum that of service time.
	Spectrum        []SpectrumPoint  `json:"spectrum"`
	ServiceSpectrum []SpectrumPoint  `json:"service_spectrum"`
	ErrorCount      int64            `json:"error_count"`
	Errors          map[string]int64 `json:"errors"`
	Actions         map[string]int64 `json:"actions"`
	Degraded        int64            `json:"degraded"`
	// Phases, for a run with faults, split the run at each fault (Config.Faults).
	Phases        []PhaseResult   `json:"phases,omitempty"`
	DegradedShare float64         `json:"degraded_share"`
	Replayed      int64           `json:"replayed"`
	Timeline      []TimelinePoint `json:"timeline"`
	// SentTimeline is Timeline keyed by the actual send time instead of the intended one: in
	// an overloaded open loop the requests leave late, and this shows when they did.
	SentTimeline []TimelinePoint `json:"sent_timeline,omitempty"`
	// Throughput is, for each second of the measured window, the requests due, sent and
	// answered, and the errors among the answers.
	Throughput []ThroughputPoint `json:"throughput,omitempty"`
	// RPCs counts the measured calls by RPC, for a run that sent several kinds (--data-file).
	RPCs map[string]int64 `json:"rpcs,omitempty"`
	// WarmupS is the warm-up before the measured window, in seconds; its calls are not in
	// these figures.
	WarmupS float64 `json:"warmup_s,omitempty"`
	// Stages are the open loop's ramp of arrival rates, when it had one.
	Stages   []Stage  `json:"stages,omitempty"`
	Warnings []string `json:"warnings,omitempty"`
	// CPU is the CPU time per call, when measured.
	CPU *CPUCost `json:"cpu,omitempty"`
}

// TimelinePoint is one second of a run, by intended send time.
type TimelinePoint struct {
	Second int     `json:"second"`
	Count  int64   `json:"count"`
	Errors int64   `json:"errors"`
	P50Us  float64 `json:"p50_us"`
	P99Us  float64 `json:"p99_us"`
	MaxUs  float64 `json:"max_us"`
}

// ThroughputPoint is one second of a run's measured window: requests due (by intended send
// time), sent (by actual send time), answered and failed (by completion time).
type ThroughputPoint struct {
	Second    int   `json:"second"`
	Due       int64 `json:"due"`
	Sent      int64 `json:"sent"`
	Completed int64 `json:"completed"`
	Errors    int64 `json:"errors"`
}

// Machine describes where a report was measured.
type Machine struct {
	CPUs      int    `json:"cpus"`
	CPUModel  string `json:"cpu_model"`
	GoVersion string `json:"go_version"`
	OS        string `json:"os"`
	Arch      string `json:"arch"`
}

// ThisMachine describes the machine the process runs on.
func ThisMachine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	return m
}

// LoadAverage returns the 1-minute load average of the machine, or 0 where it is unknown.
func LoadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	var l float64
	if _, err := fmt.Sscan(string(b), &l); err != nil {
		return 0
	}
	return l
}

// Ratios compare Decide with the empty-handler baseline measured in the same run.
type Ratios struct {
	// P50, P99 and P999 are Decide's latency percentiles divided by the baseline's.
	P50  float64 `json:"p50"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	// MaxThroughput is Decide's maximum sustainable throughput divided by the baseline's.
	MaxThroughput float64 `json:"max_throughput,omitempty"`
	// ServerCPU is the server's CPU time per Decide divided by that per health Check, when
	// measured (open-loop runs). At a moderate rate much of it is the cost of waking up for
	// each call, so it does not predict the throughput ratio; CPUAtMax does.
	ServerCPU float64 `json:"server_cpu,omitempty"`
	// CPUAtMax is the CPU time per call at the maximum throughput, summed over the processes
	// measured in both (load generator, server, Redis; the server's is needed), of Decide
	// divided by that of the health Check. When they share the machine's CPUs and those run
	// out, the throughput ratio is about its inverse. CPUAtMaxOf names the processes summed.
	CPUAtMax   float64 `json:"cpu_at_max,omitempty"`
	CPUAtMaxOf string  `json:"cpu_at_max_of,omitempty"`
}

// Report is the outcome of one `arbiter loadtest` invocation.
type Report struct {
	Date    time.Time `json:"date"`
	Machine Machine   `json:"machine"`
	Addr    string    `json:"addr"`
	// Via is the path of the Decide requests: empty for the Decide RPC, "nats" for events
	// published to NATS JetStream (NATSTarget).
	Via        string  `json:"via,omitempty"`
	Seed       uint64  `json:"seed"`
	Customers  int     `json:"customers"`
	Duplicates float64 `json:"duplicates"`
	// ZipfS and ZipfV are the customers' Zipf distribution (see WithZipf).
	ZipfS       float64 `json:"zipf_s,omitempty"`
	ZipfV       float64 `json:"zipf_v,omitempty"`
	Connections int     `json:"connections"`
	// LoadBefore and LoadAfter are the machine's 1-minute load average before and after the
	// run: a load above the CPU count means other work competed with the test.
	LoadBefore float64 `json:"load_before"`
	LoadAfter  float64 `json:"load_after"`
	// StealPercent is the share of the machine's CPU time, over the whole invocation, that the
	// hypervisor gave to other guests (see StealPercent); -1 where unknown.
	StealPercent float64 `json:"steal_percent"`
	DeadlineMs   float64 `json:"deadline_ms"`
	Decide       Result  `json:"decide"`
	// Baseline is the open loop at the same rate against the empty health Check.
	Baseline *Result `json:"baseline,omitempty"`
	// MaxDecide and MaxBaseline are the closed-loop steps that found each maximum throughput.
	MaxDecide   *Result `json:"max_decide,omitempty"`
	MaxBaseline *Result `json:"max_baseline,omitempty"`
	Ratios      *Ratios `json:"ratios,omitempty"`
	// Resources are the server's goroutines, heap and Redis clients sampled during the
	// decide run, when watched.
	Resources *Resources `json:"resources,omitempty"`
	// Thresholds is how the decide run fared against its pass/fail thresholds.
	Thresholds *ThresholdReport `json:"thresholds,omitempty"`
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return float64(int64(a/b*100+0.5)) / 100
}

// ComputeRatios sets r.Ratios from the baseline and maximum-throughput results, when present.
func (r *Report) ComputeRatios() {
	if r.Baseline == nil {
		return
	}
	r.Ratios = &Ratios{
		P50:  ratio(r.Decide.Latency.P50Us, r.Baseline.Latency.P50Us),
		P99:  ratio(r.Decide.Latency.P99Us, r.Baseline.Latency.P99Us),
		P999: ratio(r.Decide.Latency.P999Us, r.Baseline.Latency.P999Us),
	}
	if d, b := r.Decide.CPU, r.Baseline.CPU; d != nil && b != nil && d.ServerUs > 0 && b.ServerUs > 0 {
		r.Ratios.ServerCPU = ratio(d.ServerUs, b.ServerUs)
	}
	if r.MaxDecide != nil && r.MaxBaseline != nil {
		r.Ratios.MaxThroughput = ratio(r.MaxDecide.AchievedRate, r.MaxBaseline.AchievedRate)
		// Without the server's CPU (no --watch-admin) the sum would say nothing about it.
		if d, b := r.MaxDecide.CPU, r.MaxBaseline.CPU; d != nil && b != nil && d.ServerUs >= 0 && b.ServerUs >= 0 {
			var sd, sb float64
			var of []string
			for _, p := range []struct {
				name string
				d, b float64
			}{{"generator", d.ClientUs, b.ClientUs}, {"server", d.ServerUs, b.ServerUs}, {"Redis", d.RedisUs, b.RedisUs}} {
				if p.d >= 0 && p.b >= 0 { // -1: not measured
					sd, sb, of = sd+p.d, sb+p.b, append(of, p.name)
				}
			}
			if sd > 0 && sb > 0 {
				r.Ratios.CPUAtMax, r.Ratios.CPUAtMaxOf = ratio(sd, sb), strings.Join(of, " + ")
			}
		}
	}
}

// WriteJSON writes r as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("encode report: %w", err)
	}
	return nil
}

// ReadReport reads a report written by WriteJSON.
func ReadReport(rd io.Reader) (*Report, error) {
	var r Report
	if err := json.NewDecoder(rd).Decode(&r); err != nil {
		return nil, fmt.Errorf("decode report: %w", err)
	}
	return &r, nil
}

// ReadReportFile reads the report in file path.
func ReadReportFile(path string) (*Report, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r, err := ReadReport(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return r, nil
}

// results returns the report's results in display order.
func (r *Report) results() []*Result {
	out := []*Result{&r.Decide}
	for _, x := range []*Result{r.Baseline, r.MaxDecide, r.MaxBaseline} {
		if x != nil {
			out = append(out, x)
		}
	}
	return out
}

// WriteSummary writes the human summary of r: one row per run, then errors by code, the
// action mix, the degraded share, the ratios and any warnings.
func (r *Report) WriteSummary(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "run\tmode\ttarget/s\tachieved/s\tp50\tp90\tp99\tp99.9\tmax\tservice p99\tlag p99\terrors\tdegraded\t\n")
	for _, x := range r.results() {
		target := "-"
		if x.TargetRate > 0 {
			target = fmt.Sprintf("%.0f", x.TargetRate)
		} else {
			target = fmt.Sprintf("c=%d", x.Workers)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%.0f\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%.1f%%\t\n", x.Name, x.Mode, target, x.AchievedRate,
			fmtUs(x.Latency.P50Us), fmtUs(x.Latency.P90Us), fmtUs(x.Latency.P99Us), fmtUs(x.Latency.P999Us),
			fmtUs(x.Latency.MaxUs), fmtUs(x.Service.P99Us), fmtUs(x.Lag.P99Us), x.ErrorCount, 100*x.DegradedShare)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	d := &r.Decide
	fmt.Fprintf(w, "\ndecide: %d completed in %.1fs; errors by code: %s\n", d.Completed, d.Elapsed, fmtCounts(d.Errors, d.Completed))
	fmt.Fprintf(w, "action mix: %s\n", fmtCounts(d.Actions, d.Completed-d.ErrorCount))
	fmt.Fprintf(w, "degraded: %d (%.2f%%), replayed: %d\n", d.Degraded, 100*d.DegradedShare, d.Replayed)
	if len(d.RPCs) > 0 {
		fmt.Fprintf(w, "rpc mix: %s\n", fmtCounts(d.RPCs, d.Completed))
	}
	WritePhases(w, d.Phases)
	if d.Unsent > 0 {
		fmt.Fprintf(w, "never sent: %d\n", d.Unsent)
	}
	if r.Ratios != nil {
		fmt.Fprintf(w, "ratio to the empty-handler baseline: p50 ×%.2f, p99 ×%.2f, p99.9 ×%.2f", r.Ratios.P50, r.Ratios.P99, r.Ratios.P999)
		if r.Ratios.MaxThroughput > 0 {
			fmt.Fprintf(w, "; max throughput %.0f/s vs %.0f/s = %.0f%%", r.MaxDecide.AchievedRate, r.MaxBaseline.AchievedRate, 100*r.Ratios.MaxThroughput)
		}
		fmt.Fprintln(w)
	}
	for _, x := range r.results() {
		if c := x.CPU; c != nil {
			fmt.Fprintf(w, "CPU per call, %s (%s): client %s, server %s, redis %s\n", x.Name, x.Mode,
				fmtCPU(c.ClientUs), fmtCPU(c.ServerUs), fmtCPU(c.RedisUs))
		}
	}
	if r.Ratios != nil && r.Ratios.CPUAtMax > 0 {
		fmt.Fprintf(w, "CPU per call at the maximum throughput, %s: Decide / health Check ×%.2f, "+
			"a CPU-bound throughput ratio of about %.0f%% (measured: %.0f%%)\n",
			r.Ratios.CPUAtMaxOf, r.Ratios.CPUAtMax, 100/r.Ratios.CPUAtMax, 100*r.Ratios.MaxThroughput)
	}
	if r.Ratios != nil && r.Ratios.ServerCPU > 0 {
		fmt.Fprintf(w, "server CPU per Decide / per health Check at the open-loop rate: ×%.2f\n", r.Ratios.ServerCPU)
		if r.Decide.DegradedShare > 0.1 {
			fmt.Fprintf(w, "WARNING: %.0f%% of the Decides were degraded (answered without the store): the CPU and throughput ratios are not those of served decisions\n",
				100*r.Decide.DegradedShare)
		}
	}
	if rs := r.Resources; rs != nil && len(rs.Samples) > 0 {
		first, last := rs.Samples[0], rs.Samples[len(rs.Samples)-1]
		var peak ResourceSample
		for _, x := range rs.Samples {
			peak.Goroutines = max(peak.Goroutines, x.Goroutines)
			peak.HeapInuse = max(peak.HeapInuse, x.HeapInuse)
			peak.RedisClients = max(peak.RedisClients, x.RedisClients)
		}
		fmt.Fprintf(w, "server resources (%d samples, first / last / max): goroutines %d / %d / %d, heap in use %.1f / %.1f / %.1f MiB",
			len(rs.Samples), first.Goroutines, last.Goroutines, peak.Goroutines,
			mib(first.HeapInuse), mib(last.HeapInuse), mib(peak.HeapInuse))
		if first.RedisClients >= 0 {
			fmt.Fprintf(w, ", Redis clients %d / %d / %d", first.RedisClients, last.RedisClients, peak.RedisClients)
		}
		fmt.Fprintln(w)
		if rs.Failures > 0 {
			fmt.Fprintf(w, "WARNING: %d resource readings failed\n", rs.Failures)
		}
		for _, g := range rs.Growth {
			fmt.Fprintf(w, "WARNING: %s\n", g)
		}
		if len(rs.Growth) == 0 && len(rs.Samples) >= 8 {
			fmt.Fprintln(w, "no growth of goroutines, heap or Redis clients")
		}
	}
	fmt.Fprintf(w, "machine: %d CPUs (%s), load average %.2f before, %.2f after", r.Machine.CPUs, r.Machine.CPUModel, r.LoadBefore, r.LoadAfter)
	if r.StealPercent >= 0 {
		fmt.Fprintf(w, ", %.1f%% of the CPU time stolen by the hypervisor", r.StealPercent)
	}
	fmt.Fprintln(w)
	if l := max(r.LoadBefore, r.LoadAfter); r.Machine.CPUs > 0 && l > float64(r.Machine.CPUs) {
		fmt.Fprintf(w, "WARNING: load average %.2f exceeds the %d CPUs: other work competed with this run\n", l, r.Machine.CPUs)
	}
	if r.StealPercent > stealWarnPercent {
		fmt.Fprintf(w, "WARNING: the hypervisor ran other guests for %.1f%% of this machine's CPU time (steal): the run had less than its %d CPUs, and its figures say as much about the neighbours as about the server\n", r.StealPercent, r.Machine.CPUs)
	}
	for _, x := range r.results() {
		for _, warn := range x.Warnings {
			fmt.Fprintf(w, "WARNING (%s): %s\n", x.Name, warn)
		}
	}
	if th := r.Thresholds; th != nil {
		writeThresholds(w, th)
	}
	return nil
}

// writeThresholds writes the verdict of the thresholds: one line when they passed, one per
// broken threshold otherwise.
func writeThresholds(w io.Writer, th *ThresholdReport) {
	limits := fmt.Sprintf("error rate %.2f%%, no limit", 100*th.ErrorRate)
	if th.MaxErrorRate != nil {
		limits = fmt.Sprintf("error rate %.2f%% ≤ %.2f%%", 100*th.ErrorRate, 100**th.MaxErrorRate)
	}
	if th.P99Ms != nil {
		limits += fmt.Sprintf(", p99 %s ≤ %s", fmtUs(1e3*th.MeasuredP99Ms), fmtUs(1e3**th.P99Ms))
	} else {
		limits += ", p99 not checked"
	}
	if th.Passed {
		fmt.Fprintf(w, "thresholds: passed (%s)\n", limits)
		return
	}
	for _, f := range th.Failures {
		fmt.Fprintf(w, "THRESHOLD FAILED: %s\n", f)
	}
}

func fmtCPU(us float64) string {
	if us < 0 {
		return "-"
	}
	return fmt.Sprintf("%.0fµs", us)
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// fmtCounts formats counts by key, largest first, with their share of total.
func fmtCounts(m map[string]int64, total int64) string {
	if len(m) == 0 {
		return "none"
	}
	keys := slices.SortedFunc(maps.Keys(m), func(a, b string) int {
		return cmp.Or(cmp.Compare(m[b], m[a]), cmp.Compare(a, b))
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		share := 0.0
		if total > 0 {
			share = 100 * float64(m[k]) / float64(total)
		}
		parts[i] = fmt.Sprintf("%s %d (%.1f%%)", k, m[k], share)
	}
	return strings.Join(parts, ", ")
}

// WriteCompare writes runs a and b side by side: the decide figures, the baselines, the
// maximum throughputs and the ratio b/a of each.
func WriteCompare(w io.Writer, a, b *Report) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "metric\tA\tB\tB/A\t\n")
	fmt.Fprintf(tw, "date\t%s\t%s\t\t\n", a.Date.UTC().Format(time.DateTime), b.Date.UTC().Format(time.DateTime))
	fmt.Fprintf(tw, "cpus\t%d\t%d\t\t\n", a.Machine.CPUs, b.Machine.CPUs)
	fmt.Fprintf(tw, "steal %%\t%s\t%s\t\t\n", fmtSteal(a.StealPercent), fmtSteal(b.StealPercent))
	row := func(name string, x, y float64, us bool) {
		f := func(v float64) string { return fmt.Sprintf("%.0f", v) }
		if us {
			f = fmtUs
		}
		r := "-"
		if x > 0 {
			r = fmt.Sprintf("%.2f", y/x)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t\n", name, f(x), f(y), r)
	}
	res := func(prefix string, x, y *Result) {
		if x == nil || y == nil {
			return
		}
		row(prefix+" target/s", x.TargetRate, y.TargetRate, false)
		row(prefix+" achieved/s", x.AchievedRate, y.AchievedRate, false)
		row(prefix+" p50", x.Latency.P50Us, y.Latency.P50Us, true)
		row(prefix+" p90", x.Latency.P90Us, y.Latency.P90Us, true)
		row(prefix+" p99", x.Latency.P99Us, y.Latency.P99Us, true)
		row(prefix+" p99.9", x.Latency.P999Us, y.Latency.P999Us, true)
		row(prefix+" max", x.Latency.MaxUs, y.Latency.MaxUs, true)
		row(prefix+" service p99", x.Service.P99Us, y.Service.P99Us, true)
		row(prefix+" errors", float64(x.ErrorCount), float64(y.ErrorCount), false)
		row(prefix+" degraded", float64(x.Degraded), float64(y.Degraded), false)
	}
	res("decide", &a.Decide, &b.Decide)
	res("baseline", a.Baseline, b.Baseline)
	if a.MaxDecide != nil && b.MaxDecide != nil {
		row("decide max/s", a.MaxDecide.AchievedRate, b.MaxDecide.AchievedRate, false)
	}
	if a.MaxBaseline != nil && b.MaxBaseline != nil {
		row("baseline max/s", a.MaxBaseline.AchievedRate, b.MaxBaseline.AchievedRate, false)
	}
	return tw.Flush()
}

// fmtSteal formats a steal share, "-" when unknown.
func fmtSteal(p float64) string {
	if p < 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f", p)
}
