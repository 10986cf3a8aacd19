package decision

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// exampleBundle is the champion/challenger example shipped under policies/examples.
const exampleBundle = "../policies/examples/champion-challenger"

// exampleExperiment is the id of the example bundle's experiment.
const exampleExperiment = "retry-backoff-2026q4"

func loadExample(t testing.TB) *Policy {
	t.Helper()
	p, err := LoadPolicy(exampleBundle)
	if err != nil {
		t.Fatalf("LoadPolicy(%s) error = %v", exampleBundle, err)
	}
	return p
}

// customerIn returns the first customer id "c-N" that p assigns to arm of experiment id.
func customerIn(t testing.TB, p *Policy, id, arm string) string {
	t.Helper()
	for i := range 100_000 {
		c := fmt.Sprintf("c-%d", i)
		if got, ok := p.Assign(id, c); ok && got == arm {
			return c
		}
	}
	t.Fatalf("no customer among 100000 lands in arm %s of %s", arm, id)
	return ""
}

// TestChampionChallengerExample loads the example bundle, lints it and runs its test cases.
func TestChampionChallengerExample(t *testing.T) {
	p := loadExample(t)
	if got := p.Lint(); len(got) != 0 {
		t.Errorf("Lint() = %q, want no findings", got)
	}
	if n := len(p.Tests()); n < 10 {
		t.Errorf("the example ships %d test cases, want at least 10", n)
	}
	runBundleTests(t, p)
}

// TestExperimentBucket pins the assignment scheme: changing it moves customers between arms
// of running experiments, so it must only ever change on purpose.
func TestExperimentBucket(t *testing.T) {
	tests := []struct {
		experiment, customer string
		want                 int
	}{
		{exampleExperiment, "c-1001", 4373},
		{exampleExperiment, "c-1004", 6081},
		{exampleExperiment, "c-1010", 844},
		{"other", "c-1001", bucketOf("other", "c-1001")},
		{exampleExperiment, strings.Repeat("x", 1000), bucketOf(exampleExperiment, strings.Repeat("x", 1000))},
	}
	for _, tc := range tests {
		if got := ExperimentBucket(tc.experiment, tc.customer); got != tc.want {
			t.Errorf("ExperimentBucket(%q, %.20q) = %d, want %d", tc.experiment, tc.customer, got, tc.want)
		}
	}
}

// bucketOf is the documented scheme, written out.
func bucketOf(id, customer string) int {
	sum := sha256.Sum256([]byte("arbiter experiment\x00" + id + "\x00" + customer))
	return int(binary.BigEndian.Uint64(sum[:8]) % 10_000)
}

// TestAssignStable: two separately loaded copies of the bundle, as two replicas or a restart
// would load it, put every customer in the same arm, and Decide reports that arm.
func TestAssignStable(t *testing.T) {
	a := loadExample(t)
	b, err := ParsePolicy(a.Files())
	if err != nil {
		t.Fatalf("ParsePolicy(example files) error = %v", err)
	}
	ctx := context.Background()
	for i := range 300 {
		c := fmt.Sprintf("cust-%d", i)
		armA, okA := a.Assign(exampleExperiment, c)
		armB, okB := b.Assign(exampleExperiment, c)
		if !okA || !okB || armA != armB {
			t.Fatalf("Assign(%q) = %q, %v on one copy and %q, %v on the other, want the same arm", c, armA, okA, armB, okB)
		}
		in := exampleInput(c, "51")
		for _, p := range []*Policy{a, b} {
			res, err := p.Decide(ctx, in)
			if err != nil {
				t.Fatalf("Decide(%s) error = %v", c, err)
			}
			want := ExperimentArm{ID: exampleExperiment, Arm: armA}
			if res.Experiment != want {
				t.Fatalf("Decide(%s).Experiment = %+v, want %+v", c, res.Experiment, want)
			}
		}
	}
	if arm, ok := a.Assign(exampleExperiment, ""); ok {
		t.Errorf("Assign(%q, \"\") = %q, true; want no arm for a customer without an id", exampleExperiment, arm)
	}
	if arm, ok := a.Assign("no-such-experiment", "c-1"); ok {
		t.Errorf("Assign(no-such-experiment, c-1) = %q, true; want false", arm)
	}
}

// TestAssignSplit: over 10,000 synthetic customers each arm's share is within 4 standard
// deviations of its binomial expectation.
func TestAssignSplit(t *testing.T) {
	p := loadExample(t)
	const n = 10_000
	counts := map[string]int{}
	for i := range n {
		arm, ok := p.Assign(exampleExperiment, fmt.Sprintf("synthetic-%08d", i))
		if !ok {
			t.Fatalf("Assign(synthetic-%08d) = false, want an arm", i)
		}
		counts[arm]++
	}
	want := map[string]float64{HoldoutArm: 0.10, ChampionArm: 0.45, "challenger-fast": 0.45}
	for arm, share := range want {
		mean := n * share
		sd := math.Sqrt(n * share * (1 - share))
		if got := float64(counts[arm]); math.Abs(got-mean) > 4*sd {
			t.Errorf("arm %s has %v of %d customers, want %v ± %.0f (4 standard deviations)", arm, got, n, mean, 4*sd)
		}
	}
	if len(counts) != len(want) {
		t.Errorf("customers landed in arms %v, want only %v", counts, want)
	}
	wantArms := []Arm{
		{Name: HoldoutArm, Holdout: true, Buckets: 1000, Params: map[string]any{"max_soft_retries": int64(4)}},
		{Name: ChampionArm, Champion: true, Weight: 45, Buckets: 4500, Params: map[string]any{"max_soft_retries": int64(4)}},
		{Name: "challenger-fast", Weight: 45, Buckets: 4500, Rules: []string{"payment-soft-retry"},
			Params: map[string]any{"max_soft_retries": int64(3)}},
	}
	xs := p.Experiments()
	if len(xs) != 1 {
		t.Fatalf("Experiments() has %d experiments, want 1", len(xs))
	}
	if diff := cmp.Diff(wantArms, xs[0].Arms); diff != "" {
		t.Errorf("Experiments()[0].Arms mismatch (-want +got):\n%s", diff)
	}
}

// exampleInput is a Visa payment failure with decline code for customer, at noon in London
// with service consent on every channel.
func exampleInput(customer, code string) *Input {
	in := &Input{
		Event: Event{ID: "evt-" + customer, Type: EventPaymentFailed, Payment: &PaymentFailure{DeclineCode: code,
			Network: NetworkVisa, AmountMinor: 4999, Currency: "GBP", Acquirer: "acq-a", CardRef: "tok_1",
			Initiator: InitiatorMerchant, MerchantID: "m-1"}},
		Customer: Customer{ID: customer, Timezone: "Europe/London",
			PreferredChannels: []Channel{ChannelEmail, ChannelPush, ChannelSMS}},
		Now: testNow,
	}
	for ch := ChannelEmail; ch < channelCount; ch++ {
		in.Customer.Consents = append(in.Customer.Consents, Consent{Channel: ch, Purpose: PurposeService, Granted: true})
	}
	return in
}

// TestExperimentChallengerBehaves: the challenger's own rule shows in its decisions (an
// earlier retry), the champion keeps the bundle's.
func TestExperimentChallengerBehaves(t *testing.T) {
	p := loadExample(t)
	tests := []struct {
		arm           string
		wantNotBefore time.Time
	}{
		{ChampionArm, testNow.Add(4 * time.Hour)},
		{"challenger-fast", testNow.Add(time.Hour)},
	}
	for _, tc := range tests {
		t.Run(tc.arm, func(t *testing.T) {
			c := customerIn(t, p, exampleExperiment, tc.arm)
			res, err := p.Decide(context.Background(), exampleInput(c, "51"))
			if err != nil {
				t.Fatalf("Decide() error = %v", err)
			}
			if res.Action != ActionRetry || !res.Retry.NotBefore.Equal(tc.wantNotBefore) {
				t.Errorf("Decide(%s in %s) = %s, want RETRY not before %v", c, tc.arm, describeResult(res), tc.wantNotBefore)
			}
		})
	}
}

// TestExperimentGuardrailsEveryArm: no arm can breach a guardrail. The same protected
// customer gets the same protection in the champion, the challenger and the holdout.
func TestExperimentGuardrailsEveryArm(t *testing.T) {
	p := loadExample(t)
	tests := []struct {
		name   string
		code   string
		modify func(*Input)
		// wantAction is the answer in every arm; wantReason must be among its reasons.
		wantAction Action
		wantReason string
	}{
		{
			name: "opted out", code: "41",
			modify:     func(in *Input) { in.State.Features = map[string]any{"opted_out": true} },
			wantAction: ActionSuppress, wantReason: CodeOptedOut,
		},
		{
			name: "no consent", code: "41",
			modify:     func(in *Input) { in.Customer.Consents = nil },
			wantAction: ActionSuppress, wantReason: CodeNoConsent,
		},
		{
			name: "vulnerable", code: "51",
			modify:     func(in *Input) { in.Customer.Vulnerable = true },
			wantAction: ActionEscalate, wantReason: CodeVulnerableCustomer,
		},
		{
			name: "hardship feature", code: "41",
			modify:     func(in *Input) { in.State.Features = map[string]any{"hardship": true} },
			wantAction: ActionEscalate, wantReason: CodeVulnerableCustomer,
		},
		{
			name: "degraded state", code: "51",
			modify:     func(in *Input) { in.Degraded = true },
			wantAction: ActionSuppress, wantReason: CodeStoreUnavailable,
		},
	}
	arms := []string{ChampionArm, "challenger-fast", HoldoutArm}
	for _, tc := range tests {
		for _, arm := range arms {
			t.Run(tc.name+"/"+arm, func(t *testing.T) {
				in := exampleInput(customerIn(t, p, exampleExperiment, arm), tc.code)
				tc.modify(in)
				res, err := p.Decide(context.Background(), in)
				if err != nil {
					t.Fatalf("Decide() error = %v", err)
				}
				if res.Action != tc.wantAction || !hasReason(res.Reasons, tc.wantReason) {
					t.Errorf("Decide(%s, %s) = %s, want %s with %s", tc.name, arm, describeResult(res),
						bundleActionName(tc.wantAction), tc.wantReason)
				}
				if want := (ExperimentArm{ID: exampleExperiment, Arm: arm}); res.Experiment != want {
					t.Errorf("Decide(%s, %s).Experiment = %+v, want %+v", tc.name, arm, res.Experiment, want)
				}
			})
		}
	}
	// Quiet hours: a message the champion or challenger gives at night waits for the morning;
	// the holdout gives none.
	for _, arm := range arms {
		in := exampleInput(customerIn(t, p, exampleExperiment, arm), "41")
		in.Now = time.Date(2026, 3, 10, 23, 0, 0, 0, time.UTC)
		res, err := p.Decide(context.Background(), in)
		if err != nil {
			t.Fatalf("Decide() error = %v", err)
		}
		morning := time.Date(2026, 3, 11, 8, 0, 0, 0, time.UTC)
		switch {
		case arm == HoldoutArm:
			if res.Action != ActionSuppress || res.Reasons[0].Code != CodeExperimentHoldout {
				t.Errorf("Decide(quiet hours, holdout) = %s, want SUPPRESS with %s first", describeResult(res), CodeExperimentHoldout)
			}
		case res.Action != ActionMessage || res.Message.SendAt.Before(morning) || !hasReason(res.Reasons, CodeQuietHours):
			t.Errorf("Decide(quiet hours, %s) = %s, want MESSAGE at or after %v with %s", arm, describeResult(res), morning, CodeQuietHours)
		}
	}
}

// TestExperimentChallengerCannotBreachGuardrails: a challenger whose rule would message every
// customer, opted-out or not, at any hour, is still held by the guardrails.
func TestExperimentChallengerCannotBreachGuardrails(t *testing.T) {
	p := mustParse(t, `id: t
version: "1"
rules:
  - {id: remind, on: [INBOUND_CONTACT], action: SUPPRESS, reasons: [QUIET]}
experiments:
  - id: pushy
    arms:
      - {name: champion, weight: 1}
      - name: challenger
        weight: 1
        rules:
          - {id: remind, on: [INBOUND_CONTACT], priority: 9, action: MESSAGE, message: {template: t, purpose: MARKETING}, reasons: [PUSH]}
`)
	c := customerIn(t, p, "pushy", "challenger")
	tests := []struct {
		name       string
		modify     func(*Input)
		wantAction Action
		wantReason string
	}{
		{"allowed", func(in *Input) {}, ActionMessage, "PUSH"},
		{"opted out", func(in *Input) { in.State.Features = map[string]any{"opted_out": true} }, ActionSuppress, CodeOptedOut},
		{"no marketing consent", func(in *Input) { in.Customer.Consents = in.Customer.Consents[:1] }, ActionSuppress, CodeNoConsent},
		{"fraud hold", func(in *Input) { in.State.Features = map[string]any{"fraud_hold": true} }, ActionSuppress, CodeFraudHold},
		{"quiet hours", func(in *Input) { in.Now = time.Date(2026, 3, 10, 22, 0, 0, 0, time.UTC) }, ActionMessage, CodeQuietHours},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := testInput(EventInboundContact)
			in.Customer.ID = c
			in.Customer.Consents = append(in.Customer.Consents, Consent{Channel: ChannelEmail, Purpose: PurposeMarketing, Granted: true})
			in.Customer.Consents[0].Purpose = PurposeCollections
			tc.modify(in)
			res, err := p.Decide(context.Background(), in)
			if err != nil {
				t.Fatalf("Decide() error = %v", err)
			}
			if res.Action != tc.wantAction || !hasReason(res.Reasons, tc.wantReason) {
				t.Errorf("Decide(%s) = %s, want %s with %s", tc.name, describeResult(res), bundleActionName(tc.wantAction), tc.wantReason)
			}
			if tc.name == "quiet hours" && res.Message.SendAt.Before(time.Date(2026, 3, 11, 8, 0, 0, 0, time.UTC)) {
				t.Errorf("Decide(quiet hours).Message.SendAt = %v, want the end of quiet hours", res.Message.SendAt)
			}
		})
	}
}

// TestExperimentHoldout: the holdout's answer is the champion's with the automated outreach
// withheld: MESSAGE and RETRY become SUPPRESS with EXPERIMENT_HOLDOUT; ESCALATE and SUPPRESS
// stay as they are, and commit the same ledger entries.
func TestExperimentHoldout(t *testing.T) {
	p := loadExample(t)
	champ := customerIn(t, p, exampleExperiment, ChampionArm)
	hold := customerIn(t, p, exampleExperiment, HoldoutArm)
	tests := []struct {
		name      string
		code      string
		champion  Action // the champion's answer
		withholds bool
	}{
		{"soft decline retried", "51", ActionRetry, true},
		{"generic decline retried", "05", ActionRetry, true},
		{"hard decline messaged", "41", ActionMessage, true},
		{"expired card messaged", "54", ActionMessage, true},
		{"suspected fraud escalated", "59", ActionEscalate, false},
		{"stop order suppressed", "R1", ActionSuppress, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			c, err := p.Decide(ctx, exampleInput(champ, tc.code))
			if err != nil {
				t.Fatalf("Decide(champion) error = %v", err)
			}
			if c.Action != tc.champion {
				t.Fatalf("Decide(champion, %s) = %s, want %s", tc.code, describeResult(c), bundleActionName(tc.champion))
			}
			h, err := p.Decide(ctx, exampleInput(hold, tc.code))
			if err != nil {
				t.Fatalf("Decide(holdout) error = %v", err)
			}
			if want := (ExperimentArm{ID: exampleExperiment, Arm: HoldoutArm}); h.Experiment != want {
				t.Errorf("Decide(holdout).Experiment = %+v, want %+v", h.Experiment, want)
			}
			if !tc.withholds {
				if h.Action != c.Action || hasReason(h.Reasons, CodeExperimentHoldout) {
					t.Errorf("Decide(holdout, %s) = %s, want the champion's %s", tc.code, describeResult(h), describeResult(c))
				}
				return
			}
			if h.Action != ActionSuppress || h.Retry != nil || h.Message != nil || h.Suppress == nil {
				t.Fatalf("Decide(holdout, %s) = %s, want SUPPRESS", tc.code, describeResult(h))
			}
			want := Reason{Code: CodeExperimentHoldout, RuleID: "experiment:" + exampleExperiment,
				Message: "holdout of experiment " + exampleExperiment + ": the " + bundleActionName(tc.champion) + " is withheld"}
			if diff := cmp.Diff(want, h.Reasons[0]); diff != "" {
				t.Errorf("Decide(holdout, %s).Reasons[0] mismatch (-want +got):\n%s", tc.code, diff)
			}
			for _, r := range c.Reasons {
				if !strings.HasPrefix(r.RuleID, "guardrail:") && !hasReason(h.Reasons, r.Code) {
					t.Errorf("Decide(holdout, %s) reasons = %s, want the champion's rule reason %s kept", tc.code, describeResult(h), r.Code)
				}
			}
			if h.Effects.Message != nil || len(h.Effects.CapChecks) > 0 {
				t.Errorf("Decide(holdout, %s).Effects reserve a message slot: %+v", tc.code, h.Effects)
			}
			for _, e := range h.Effects.Ledger {
				if e.Kind == LedgerRetry {
					t.Errorf("Decide(holdout, %s).Effects.Ledger records a retry: %+v", tc.code, h.Effects.Ledger)
				}
			}
		})
	}
}

// TestExperimentOutside: an event type outside the experiment, and a customer without an
// id, decide with the bundle's rules and carry no experiment.
func TestExperimentOutside(t *testing.T) {
	p := loadExample(t)
	ctx := context.Background()
	hold := customerIn(t, p, exampleExperiment, HoldoutArm)
	in := exampleInput(hold, "51")
	in.Event.Type, in.Event.Payment = EventCardExpiring, nil
	res, err := p.Decide(ctx, in)
	if err != nil {
		t.Fatalf("Decide() error = %v", err)
	}
	if res.Action != ActionMessage || res.Experiment != (ExperimentArm{}) {
		t.Errorf("Decide(card expiring) = %s, experiment %+v; want MESSAGE in no experiment", describeResult(res), res.Experiment)
	}
	res, err = p.Decide(ctx, exampleInput("", "51"))
	if err != nil {
		t.Fatalf("Decide() error = %v", err)
	}
	if res.Action != ActionRetry || !res.Retry.NotBefore.Equal(testNow.Add(4*time.Hour)) || res.Experiment != (ExperimentArm{}) {
		t.Errorf("Decide(no customer id) = %s, experiment %+v; want the champion's RETRY in no experiment", describeResult(res), res.Experiment)
	}
}

// TestExperimentCEL: rules read experiment.id, experiment.arm and experiment.params; outside
// an experiment they are empty.
func TestExperimentCEL(t *testing.T) {
	p := mustParse(t, `id: t
version: "1"
rules:
  - {id: arm-b, on: [INBOUND_CONTACT], when: 'experiment.arm == "b" && experiment.id == "x"', priority: 3, action: ESCALATE, escalate: {queue: b}, reasons: [ARM_B]}
  - {id: big, on: [INBOUND_CONTACT], when: 'experiment.params.?level.orValue(0) > 1', priority: 2, action: ESCALATE, escalate: {queue: big}, reasons: [BIG]}
  - {id: none, on: [INBOUND_CONTACT], when: 'experiment.arm == "" && size(experiment.params) == 0', priority: 1, action: ESCALATE, escalate: {queue: none}, reasons: [NONE]}
  - {id: rest, on: [INBOUND_CONTACT, RISKY_LOGIN], action: SUPPRESS, reasons: [REST]}
experiments:
  - id: x
    on: [INBOUND_CONTACT]
    arms:
      - {name: champion, weight: 1, params: {level: 2}}
      - {name: b, weight: 1, params: {level: 1}}
`)
	tests := []struct {
		arm   string
		event EventType
		want  string // the queue, or "" for SUPPRESS
	}{
		{"b", EventInboundContact, "b"},
		{ChampionArm, EventInboundContact, "big"},
		{"", EventInboundContact, "none"}, // no customer id
	}
	for _, tc := range tests {
		t.Run(cmpOr(tc.arm, "no id"), func(t *testing.T) {
			in := testInput(tc.event)
			in.Customer.ID = ""
			if tc.arm != "" {
				in.Customer.ID = customerIn(t, p, "x", tc.arm)
			}
			res, err := p.Decide(context.Background(), in)
			if err != nil {
				t.Fatalf("Decide() error = %v", err)
			}
			if res.Escalate == nil || res.Escalate.Queue != tc.want {
				t.Errorf("Decide(arm %q) = %s, want ESCALATE to %s", tc.arm, describeResult(res), tc.want)
			}
		})
	}
}

// TestExperimentExplanation: the explanation names the experiment and arm, and what the
// holdout withheld.
func TestExperimentExplanation(t *testing.T) {
	p := loadExample(t)
	in := exampleInput(customerIn(t, p, exampleExperiment, HoldoutArm), "51")
	in.Explain = true
	res, err := p.Decide(context.Background(), in)
	if err != nil {
		t.Fatalf("Decide() error = %v", err)
	}
	wantSummary := "; experiment " + exampleExperiment + " arm holdout (RETRY withheld)"
	if !strings.HasSuffix(res.Explanation.Summary, wantSummary) {
		t.Errorf("Explanation.Summary = %q, want it to end with %q", res.Explanation.Summary, wantSummary)
	}
	text := RenderExplanation(res)
	if want := "experiment: " + exampleExperiment + ", arm holdout\n"; !strings.Contains(text, want) {
		t.Errorf("RenderExplanation() = %q, want it to contain %q", text, want)
	}
	// The explanation does not change the answer.
	in.Explain = false
	plain, err := p.Decide(context.Background(), in)
	if err != nil {
		t.Fatalf("Decide() error = %v", err)
	}
	res.Explanation = nil
	if diff := cmp.Diff(plain, res); diff != "" {
		t.Errorf("Decide() with and without Explain differ (-without +with):\n%s", diff)
	}
}

// TestExperimentTestExpect: a test case's expect.experiment and expect.arm are checked
// against the decision, and at load against the bundle.
func TestExperimentTestExpect(t *testing.T) {
	p := loadExample(t)
	tc := p.Tests()[0] // the champion's soft decline
	tc.Expect.Arm = "challenger-fast"
	r := p.RunTest(context.Background(), &tc)
	want := []string{`experiment.arm = "champion", want "challenger-fast"`}
	if diff := cmp.Diff(want, r.Failures); diff != "" {
		t.Errorf("RunTest(wrong arm).Failures mismatch (-want +got):\n%s", diff)
	}
}

// TestExperimentLoadErrors: every problem of an experiment is reported at its line.
func TestExperimentLoadErrors(t *testing.T) {
	const head = "id: t\nversion: \"1\"\nrules:\n  - {id: r, on: [PAYMENT_FAILED], action: SUPPRESS, reasons: [A]}\n" +
		"  - {id: s, on: [INBOUND_CONTACT], action: SUPPRESS, reasons: [B]}\nexperiments:\n"
	// Line 7 is the first line after head.
	tests := []struct {
		name string
		exps string
		want []string
	}{
		{
			name: "no id, no arms",
			exps: "  - {holdout: 5%}\n",
			want: []string{
				"bundle.yaml:7: experiment #1: id: required",
				"bundle.yaml:7: experiment #1: arms: at least the champion arm is required",
			},
		},
		{
			name: "duplicate ids and overlapping events",
			exps: "  - {id: a, on: [PAYMENT_FAILED], arms: [{name: champion, weight: 1}]}\n" +
				"  - {id: a, arms: [{name: champion, weight: 1}]}\n",
			want: []string{
				"bundle.yaml:8: experiment a: id: duplicate of the experiment at line 7",
				"bundle.yaml:8: experiment a: applies to PAYMENT_FAILED, as experiment a does: a customer is in at most one experiment per event type",
			},
		},
		{
			name: "unknown event type",
			exps: "  - id: a\n    on: [PAYMENT_FAIL]\n    arms: [{name: champion, weight: 1}]\n",
			want: []string{`bundle.yaml:8: experiment a: on: unknown event type "PAYMENT_FAIL"`},
		},
		{
			name: "holdout out of range or malformed",
			exps: "  - {id: a, holdout: 60%, arms: [{name: champion, weight: 1}]}\n" +
				"  - {id: b, on: [RISKY_LOGIN], holdout: \"0.1\", arms: [{name: champion, weight: 1}]}\n" +
				"  - {id: c, on: [INBOUND_CONTACT], holdout: 1.125%, arms: [{name: champion, weight: 1}]}\n",
			want: []string{
				"bundle.yaml:7: experiment a: holdout: 60% is more than 50%",
				`bundle.yaml:8: experiment b: applies to RISKY_LOGIN, as experiment a does: a customer is in at most one experiment per event type`,
				`bundle.yaml:8: experiment b: holdout: "0.1" must be a percentage such as 10%`,
				`bundle.yaml:9: experiment c: applies to INBOUND_CONTACT, as experiment a does: a customer is in at most one experiment per event type`,
				`bundle.yaml:9: experiment c: holdout: "1.125%" has more than two decimals`,
			},
		},
		{
			name: "no champion, bad weights, reserved and duplicate names",
			exps: "  - id: a\n    arms:\n" +
				"      - {name: fast, weight: 0}\n" +
				"      - {name: holdout, weight: 1}\n" +
				"      - {name: fast, weight: 20000}\n",
			want: []string{
				"bundle.yaml:9: experiment a: arm fast: weight: 0 must be a whole number from 1 to 10000",
				`bundle.yaml:10: experiment a: arm holdout: name: "holdout" is the holdout's; set the experiment's holdout share instead`,
				"bundle.yaml:11: experiment a: arm fast: name: duplicate of the arm at line 9",
				"bundle.yaml:11: experiment a: arm fast: weight: 20000 must be a whole number from 1 to 10000",
				"bundle.yaml:8: experiment a: arms: no arm is named champion: one arm must be the champion (the bundle's own rules)",
			},
		},
		{
			name: "too many arms",
			exps: "  - id: a\n    arms: [{name: champion, weight: 1}, {name: b, weight: 1}, {name: c, weight: 1}, {name: d, weight: 1}, " +
				"{name: e, weight: 1}, {name: f, weight: 1}, {name: g, weight: 1}, {name: h, weight: 1}, {name: i, weight: 1}]\n",
			want: []string{"bundle.yaml:8: experiment a: arms: 9 arms, at most 8"},
		},
		{
			name: "an arm with no bucket",
			exps: "  - id: a\n    holdout: 50%\n    arms:\n      - {name: champion, weight: 10000}\n      - {name: tiny, weight: 1}\n      - {name: tinier, weight: 1}\n",
			want: []string{"bundle.yaml:11: experiment a: arm tiny: weight 1 of 10002 gives it no bucket of 5000: raise it"},
		},
		{
			name: "unknown, twice replaced, invalid and removed rules",
			exps: "  - id: a\n    arms:\n      - {name: champion, weight: 1, remove: [r]}\n      - name: b\n        weight: 1\n        remove: [nope, r]\n        rules:\n" +
				"          - {id: ghost, action: SUPPRESS, reasons: [A]}\n" +
				"          - {id: r, on: [PAYMENT_FAILED], action: SUPPRESS, reasons: [A]}\n" +
				"          - {id: r, on: [PAYMENT_FAILED], action: SUPPRESS, reasons: [A]}\n" +
				"          - id: s\n            when: nope.x\n            action: SUPPRESS\n            reasons: [B]\n",
			want: []string{
				"bundle.yaml:9: experiment a: arm champion: the champion decides with the bundle's own rules: put rules and remove in a challenger",
				"bundle.yaml:14: rule ghost: experiment a: arm b: not a rule of the bundle: an arm's rules replace the bundle's rules of the same id",
				"bundle.yaml:16: rule r: experiment a: arm b: rule replaced twice",
				"bundle.yaml:18: rule s: experiment a: arm b: when: line 1 col 1: undeclared reference to 'nope'",
				`bundle.yaml:12: experiment a: arm b: remove: "nope" is not a rule of the bundle`,
				"bundle.yaml:12: experiment a: arm b: remove: rule r is also replaced",
			},
		},
		{
			name: "a replacement outside the experiment's events",
			exps: "  - id: a\n    on: [PAYMENT_FAILED]\n    arms:\n      - {name: champion, weight: 1}\n      - name: b\n        weight: 1\n        rules:\n" +
				"          - {id: s, on: [INBOUND_CONTACT], action: SUPPRESS, reasons: [B]}\n",
			want: []string{"bundle.yaml:14: rule s: experiment a: arm b: the rule applies to none of the experiment's event types"},
		},
		{
			name: "params: bad names, values, differing keys",
			exps: "  - id: a\n    arms:\n      - {name: champion, weight: 1, params: {x: 1, Bad: 2}}\n      - name: b\n        weight: 1\n        params: {x: [1], y: true}\n",
			want: []string{
				`bundle.yaml:9: experiment a: arm champion: params: "Bad" must be lower case letters, digits or '_', not starting with a digit`,
				"bundle.yaml:12: experiment a: arm b: params.x: must be a string, number or bool",
				"bundle.yaml:12: experiment a: arm b: params: keys [y] differ from the champion's [x]: every arm sets the same parameters",
			},
		},
		{
			name: "unknown field",
			exps: "  - id: a\n    arms:\n      - {name: champion, weight: 1, share: 3}\n",
			want: []string{"bundle.yaml:9: field share not found in type arm"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkBundleErrors(t, map[string][]byte{"bundle.yaml": []byte(head + tc.exps)}, tc.want)
		})
	}
}

// TestExperimentTestCaseChecks: a test case that expects an unknown experiment or arm is a
// load error.
func TestExperimentTestCaseChecks(t *testing.T) {
	const bundle = "id: t\nversion: \"1\"\nrules:\n  - {id: r, on: [PAYMENT_FAILED], action: SUPPRESS, reasons: [A]}\n" +
		"experiments:\n  - {id: a, arms: [{name: champion, weight: 1}]}\ntests:\n"
	const tcase = "  - {name: %s, now: 2026-03-10T12:00:00Z, event: {type: PAYMENT_FAILED}, expect: {action: SUPPRESS, %s}}\n"
	cases := fmt.Sprintf(tcase, "x", "experiment: b") + fmt.Sprintf(tcase, "y", "experiment: a, arm: holdout") +
		fmt.Sprintf(tcase, "z", "arm: champion")
	_, err := ParsePolicy(map[string][]byte{"bundle.yaml": []byte(bundle + cases)})
	var got []string
	for _, be := range BundleErrors(err) {
		got = append(got, be.Error())
	}
	want := []string{
		`bundle.yaml: test "x": expect.experiment: no experiment "b" in the bundle`,
		`bundle.yaml: test "y": expect.arm: experiment a has no arm "holdout"`,
		`bundle.yaml: test "z": expect.arm: needs expect.experiment`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ParsePolicy() errors mismatch (-want +got):\n%s", diff)
	}
}

// TestParseHoldout covers the percentage syntax.
func TestParseHoldout(t *testing.T) {
	tests := []struct {
		in   string
		want int
		ok   bool
	}{
		{"", 0, true},
		{"0%", 0, true},
		{"10%", 1000, true},
		{" 12.5% ", 1250, true},
		{"0.01%", 1, true},
		{"50%", 5000, true},
		{"10", 0, false},
		{"-5%", 0, false},
		{"+5%", 0, false},
		{"5.-1%", 0, false},
		{"x%", 0, false},
		{"101%", 0, false},
	}
	for _, tc := range tests {
		got, err := parseHoldout(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseHoldout(%q) = %d, %v; want %d, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

// TestExperimentAllocs: assigning the arm and reading experiment.id, experiment.arm and
// experiment.params allocates nothing: deciding in an experiment costs the allocations of
// deciding outside it.
func TestExperimentAllocs(t *testing.T) {
	p := mustParse(t, `id: t
version: "1"
rules:
  - {id: r, on: [INBOUND_CONTACT], when: 'experiment.arm in ["champion", ""] || experiment.id == "nope" || has(experiment.params.level)', action: ESCALATE, escalate: {queue: q}, reasons: [A]}
experiments:
  - id: x
    arms:
      - {name: champion, weight: 1, params: {level: 2}}
      - {name: b, weight: 1, params: {level: 1}}
`)
	ctx := context.Background()
	in := testInput(EventInboundContact)
	in.Customer.ID = customerIn(t, p, "x", ChampionArm)
	outside := testInput(EventInboundContact)
	outside.Customer.ID = ""
	decide := func(in *Input) float64 {
		return testing.AllocsPerRun(200, func() {
			if _, err := p.Decide(ctx, in); err != nil {
				t.Fatal(err)
			}
		})
	}
	slack := 0.0
	if raceEnabled {
		slack = 1 // the engine's pooled scratch space is allocated again at random
	}
	if got, base := decide(in), decide(outside); got > base+slack {
		t.Errorf("Decide allocates %v times in the experiment, %v outside it; want no more", got, base)
	}
}
