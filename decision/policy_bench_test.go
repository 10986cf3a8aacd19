package decision

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/arbiter-dev/arbiter/policies"
)

// corpusInputs returns the inputs of the bundle's test cases.
func corpusInputs(tb testing.TB, p *Policy) []*Input {
	tb.Helper()
	ins := make([]*Input, 0, len(p.Tests()))
	for i := range p.Tests() {
		in, err := p.Tests()[i].Input()
		if err != nil {
			tb.Fatalf("Input(%q) error = %v", p.Tests()[i].Name, err)
		}
		ins = append(ins, in)
	}
	return ins
}

// benchDecide decides the inputs round-robin, one decision per iteration, under a context
// with a deadline as an RPC's would be. Besides ns/op (wall time) it reports cpu-ns/op, the
// process's CPU time per decision (garbage collection included), which a machine shared with
// other work inflates less than wall time.
func benchDecide(b *testing.B, p *Policy, ins []*Input) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	b.ReportAllocs()
	i := 0
	cpu0 := processCPU()
	for b.Loop() {
		if _, err := p.Decide(ctx, ins[i%len(ins)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
	if i > 0 {
		b.ReportMetric(float64(processCPU()-cpu0)/float64(i), "cpu-ns/op")
	}
}

// processCPU returns the user and system CPU time of the process so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkDefaultPolicy decides the default policy's test cases (engine only, no I/O):
// "all" cycles through every case; the others through the cases of one event type.
func BenchmarkDefaultPolicy(b *testing.B) {
	p := DefaultPolicy()
	ins := corpusInputs(b, p)
	b.Run("all", func(b *testing.B) { benchDecide(b, p, ins) })
	for t := EventType(1); t < eventTypeCount; t++ {
		var sub []*Input
		for _, in := range ins {
			if in.Event.Type == t {
				sub = append(sub, in)
			}
		}
		if len(sub) > 0 {
			b.Run(bundleEventTypeName(t), func(b *testing.B) { benchDecide(b, p, sub) })
		}
	}
}

// BenchmarkDefaultPolicyExplain is BenchmarkDefaultPolicy/all with explanations on.
func BenchmarkDefaultPolicyExplain(b *testing.B) {
	p := DefaultPolicy()
	ins := corpusInputs(b, p)
	for _, in := range ins {
		c := *in
		c.Explain = true
		*in = c
	}
	benchDecide(b, p, ins)
}

// BenchmarkLargePolicy decides the default cases under the default bundle grown to 1,000
// rules: the extra rules are spread over every event type with priorities across the whole
// range and conditions that do not match these customers, as a large bank's segment and
// merchant rules would be.
func BenchmarkLargePolicy(b *testing.B) {
	p := largePolicy(b, 1000)
	benchDecide(b, p, corpusInputs(b, p))
}

// largePolicy returns the default bundle plus synthetic rules up to n rules in all.
func largePolicy(tb testing.TB, n int) *Policy {
	tb.Helper()
	files := map[string][]byte{}
	entries, err := policies.Default.ReadDir("default")
	if err != nil {
		tb.Fatal(err)
	}
	for _, e := range entries {
		if !e.IsDir() {
			files[e.Name()], _ = policies.Default.ReadFile("default/" + e.Name())
		}
	}
	tests, _ := policies.Default.ReadDir("default/tests")
	for _, e := range tests {
		files["tests/"+e.Name()], _ = policies.Default.ReadFile("default/tests/" + e.Name())
	}
	base, err := ParsePolicy(files)
	if err != nil {
		tb.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var b strings.Builder
	b.WriteString("rules:\n")
	actions := []string{"RETRY", "MESSAGE", "ESCALATE", "SUPPRESS"}
	for i := base.RuleCount(); i < n; i++ {
		ev := bundleEventNames[1+i%(int(eventTypeCount)-1)]
		act := actions[rng.IntN(len(actions))]
		fmt.Fprintf(&b, "  - id: synthetic-%d\n    on: [%s]\n    when: customer.segment == \"seg-%d\" && features.?tier.orValue(0) >= %d\n    priority: %d\n    action: %s\n",
			i, ev, i, rng.IntN(5), rng.IntN(1100), act)
		switch act {
		case "MESSAGE":
			b.WriteString("    message: {channels: [EMAIL], template: synthetic, purpose: SERVICE}\n")
		case "ESCALATE":
			b.WriteString("    escalate: {queue: synthetic}\n")
		}
		b.WriteString("    reasons: [SYNTHETIC]\n")
	}
	files["zz-synthetic.yaml"] = []byte(b.String())
	p, err := ParsePolicy(files)
	if err != nil {
		tb.Fatal(err)
	}
	if p.RuleCount() != n {
		tb.Fatalf("largePolicy RuleCount() = %d, want %d", p.RuleCount(), n)
	}
	return p
}

// BenchmarkExperimentPolicy decides the test cases of policies/examples/champion-challenger,
// whose payment events run in an experiment with a champion, a challenger and a holdout:
// compare with BenchmarkDefaultPolicy/PAYMENT_FAILED for what an experiment costs.
func BenchmarkExperimentPolicy(b *testing.B) {
	p, err := LoadPolicy(exampleBundle)
	if err != nil {
		b.Fatal(err)
	}
	benchDecide(b, p, corpusInputs(b, p))
}
