package opa

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"

	"github.com/arbiter-dev/arbiter/decision"
)

// opaInput is what the Rego policy reads: the same inputs the CEL rules read.
func opaInput(in *decision.Input) map[string]any {
	ev := map[string]any{"type": eventName(in.Event.Type), "id": in.Event.ID}
	if len(in.Event.Attributes) > 0 {
		attrs := map[string]any{}
		for k, v := range in.Event.Attributes {
			attrs[k] = v
		}
		ev["attributes"] = attrs
	}
	if p := in.Event.Payment; p != nil {
		ev["payment"] = map[string]any{
			"decline_code":         p.DeclineCode,
			"decline_class":        decision.Classify(p.Network, p.DeclineCode, p.MerchantAdviceCode, p.Initiator).String(),
			"merchant_advice_code": p.MerchantAdviceCode,
			"amount_minor":         p.AmountMinor,
			"currency":             p.Currency,
		}
	}
	feats := map[string]any{}
	for k, v := range in.State.Features {
		feats[k] = v
	}
	declines := 0
	for _, e := range in.State.Ledger {
		if e.Kind == decision.LedgerDecline && !e.At.Before(in.Now.Add(-30*24*time.Hour)) {
			declines++
		}
	}
	return map[string]any{
		"event":    ev,
		"customer": map[string]any{"id": in.Customer.ID, "vulnerable": in.Customer.Vulnerable, "segment": in.Customer.Segment},
		"features": feats,
		"recent":   map[string]any{"declines_30d": declines},
	}
}

func eventName(t decision.EventType) string {
	return [...]string{"", "PAYMENT_FAILED", "CARD_EXPIRING", "INVOICE_OVERDUE", "PAYMENT_PLAN_MISSED",
		"CHECKOUT_ABANDONED", "RISKY_LOGIN", "FRAUD_FLAG_RAISED", "FRAUD_FLAG_CLEARED", "MESSAGE_UNOPENED", "INBOUND_CONTACT"}[t]
}

type corpus struct {
	policy *decision.Policy
	inputs []*decision.Input
	values []ast.Value
	query  rego.PreparedEvalQuery
}

func load(tb testing.TB) *corpus {
	tb.Helper()
	c := &corpus{policy: decision.DefaultPolicy()}
	for i := range c.policy.Tests() {
		in, err := c.policy.Tests()[i].Input()
		if err != nil {
			tb.Fatal(err)
		}
		v, err := ast.InterfaceToValue(opaInput(in))
		if err != nil {
			tb.Fatal(err)
		}
		c.inputs = append(c.inputs, in)
		c.values = append(c.values, v)
	}
	q, err := rego.New(rego.Query("data.arbiter.winner"), rego.Module("arbiter.rego", Rego)).PrepareForEval(context.Background())
	if err != nil {
		tb.Fatalf("PrepareForEval() error = %v", err)
	}
	c.query = q
	return c
}

func (c *corpus) opaWinner(tb testing.TB, i int) (string, []string) {
	rs, err := c.query.Eval(context.Background(), rego.EvalParsedInput(c.values[i]))
	if err != nil || len(rs) != 1 || len(rs[0].Expressions) != 1 {
		tb.Fatalf("Eval(case %d) = %v, %v", i, rs, err)
	}
	m := rs[0].Expressions[0].Value.(map[string]any)
	var ranked []string
	for _, r := range m["ranked"].([]any) {
		ranked = append(ranked, r.(string))
	}
	return m["rule"].(string), ranked
}

// TestRegoAgrees checks that the Rego policy is the same policy: on every case, the rules it
// finds matching, in arbitration order, are the rules Arbiter's engine evaluates as matching,
// in its order.
func TestRegoAgrees(t *testing.T) {
	c := load(t)
	for i, in := range c.inputs {
		x := *in
		x.Explain = true
		res, err := c.policy.Decide(context.Background(), &x)
		if err != nil {
			t.Fatal(err)
		}
		var want []string
		for _, r := range res.Explanation.Rules {
			if r.Matched {
				want = append(want, r.RuleID)
			}
		}
		_, got := c.opaWinner(t, i)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("case %q: matching rules mismatch (-arbiter +opa):\n%s", c.policy.Tests()[i].Name, diff)
		}
	}
	if len(c.inputs) < 40 {
		t.Errorf("%d cases, want the default policy's 40 or more", len(c.inputs))
	}
}

func cpu() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkArbiter is Arbiter's full Decide (rules, guardrails, arbitration, effects) over the
// default policy's cases, one decision per iteration.
func BenchmarkArbiter(b *testing.B) {
	c := load(b)
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	c0 := cpu()
	for b.Loop() {
		if _, err := c.policy.Decide(ctx, c.inputs[i%len(c.inputs)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64(cpu()-c0)/float64(i), "cpu-ns/op")
}

// BenchmarkOPA is the Rego policy (rules and arbitration only) over the same cases with a
// prepared query, one evaluation per iteration.
func BenchmarkOPA(b *testing.B) {
	c := load(b)
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	c0 := cpu()
	for b.Loop() {
		rs, err := c.query.Eval(ctx, rego.EvalParsedInput(c.values[i%len(c.values)]))
		if err != nil || len(rs) != 1 {
			b.Fatal(rs, err)
		}
		i++
	}
	b.ReportMetric(float64(cpu()-c0)/float64(i), "cpu-ns/op")
}
