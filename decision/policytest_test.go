package decision

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestDefaultPolicy runs the default bundle's own test cases as subtests.
func TestDefaultPolicy(t *testing.T) {
	p := DefaultPolicy()
	if n := len(p.Tests()); n < 40 {
		t.Errorf("default policy ships %d test cases, want at least 40", n)
	}
	runBundleTests(t, p)
}

// runBundleTests runs p's own test cases as subtests.
func runBundleTests(t *testing.T, p *Policy) {
	t.Helper()
	for i := range p.Tests() {
		tc := &p.Tests()[i]
		t.Run(tc.Name, func(t *testing.T) {
			r := p.RunTest(context.Background(), tc)
			if !r.Passed() {
				t.Errorf("%s: %s\n%s", tc.File, strings.Join(r.Failures, "\n"), describeResult(r.Result))
			}
		})
	}
}

// TestCoverage: the rules a case matched and won in, the guardrails that blocked or changed a
// candidate, and nothing for what no case reached or for results without an explanation.
func TestCoverage(t *testing.T) {
	p := mustParse(t, `id: t
version: "1"
rules:
  - {id: fraud, on: [INBOUND_CONTACT], when: 'features.?fraud.orValue(false) == true', priority: 10, action: ESCALATE, escalate: {queue: fraud}, reasons: [A]}
  - {id: remind, on: [INBOUND_CONTACT], priority: 5, action: MESSAGE, message: {template: t, purpose: COLLECTIONS}, reasons: [B]}
  - {id: fallback, on: [INBOUND_CONTACT], action: SUPPRESS, reasons: [C]}
  - {id: login, on: [RISKY_LOGIN], action: SUPPRESS, reasons: [D]}
tests:
  - name: fraud
    now: 2026-03-10T12:00:00Z
    event: {type: INBOUND_CONTACT}
    customer: {timezone: Europe/London, consents: [{channel: ALL, purpose: COLLECTIONS, granted: true}]}
    state: {features: {fraud: true}}
    expect: {action: ESCALATE}
  - name: opted out
    now: 2026-03-10T12:00:00Z
    event: {type: INBOUND_CONTACT}
    customer: {timezone: Europe/London, consents: [{channel: ALL, purpose: COLLECTIONS, granted: true}]}
    state: {features: {opted_out: true}}
    expect: {action: SUPPRESS}
  - name: at night
    now: 2026-03-10T23:00:00Z
    event: {type: INBOUND_CONTACT}
    customer: {timezone: Europe/London, consents: [{channel: ALL, purpose: COLLECTIONS, granted: true}]}
    expect: {action: MESSAGE}
`)
	var results []TestResult
	for i := range p.Tests() {
		tc := p.Tests()[i]
		tc.Explain = true
		results = append(results, p.RunTest(context.Background(), &tc))
	}
	// Without the explanation a result counts for nothing.
	results = append(results, p.RunTest(context.Background(), &p.Tests()[0]))
	for _, r := range results {
		if !r.Passed() {
			t.Fatalf("case %q failed: %v", r.Case.Name, r.Failures)
		}
	}
	cov := p.Coverage(results)
	if cov.Cases != 3 {
		t.Errorf("Coverage().Cases = %d, want 3", cov.Cases)
	}
	wantRules := []RuleCoverage{
		{RuleID: "fraud", File: "bundle.yaml", Line: 4, Matched: 1, Won: 1},
		{RuleID: "remind", File: "bundle.yaml", Line: 5, Matched: 3, Won: 1},
		{RuleID: "fallback", File: "bundle.yaml", Line: 6, Matched: 3, Won: 1},
		{RuleID: "login", File: "bundle.yaml", Line: 7},
	}
	if diff := cmp.Diff(wantRules, cov.Rules); diff != "" {
		t.Errorf("Coverage().Rules mismatch (-want +got):\n%s", diff)
	}
	acted := map[string]GuardrailCoverage{}
	for _, g := range cov.Guardrails {
		if g.Covered() {
			acted[g.Guardrail] = g
		}
	}
	wantGuards := map[string]GuardrailCoverage{
		"guardrail:opt_out":     {Guardrail: "guardrail:opt_out", Blocked: 1},
		"guardrail:quiet_hours": {Guardrail: "guardrail:quiet_hours", Modified: 1},
	}
	if diff := cmp.Diff(wantGuards, acted); diff != "" {
		t.Errorf("guardrails the cases made act mismatch (-want +got):\n%s", diff)
	}
	if len(cov.Guardrails) != len(guardrailNames) {
		t.Errorf("Coverage().Guardrails has %d entries, want every guardrail (%d)", len(cov.Guardrails), len(guardrailNames))
	}
}
