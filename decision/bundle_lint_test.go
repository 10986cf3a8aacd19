package decision

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestLintNeverWins: a rule ranked below an always-true ESCALATE or SUPPRESS rule on every
// event type it applies to can never win, whether the higher rule has no `when` or one that is
// constantly true; a higher rule the guardrails can block, one that does not always match, or
// one that covers only some of the lower rule's event types leaves it a chance.
func TestLintNeverWins(t *testing.T) {
	const head = "id: t\nversion: \"1\"\ntests:\n  - {name: a, now: 2026-03-10T12:00:00Z, event: {type: INBOUND_CONTACT}, expect: {action: ESCALATE}}\nrules:\n"
	tests := []struct {
		name  string
		rules string
		want  []BundleError
	}{
		{
			name: "constant true condition",
			rules: `  - {id: catch-all, on: [INBOUND_CONTACT], when: "true", priority: 10, action: ESCALATE, escalate: {queue: general}, reasons: [A]}
  - {id: fraud, on: [INBOUND_CONTACT], when: 'features.?fraud.orValue(false) == true', priority: 5, action: ESCALATE, escalate: {queue: fraud}, reasons: [B]}
`,
			want: []BundleError{{File: "bundle.yaml", Line: 7, Rule: "fraud",
				Msg: "rule fraud can never win: rule catch-all always matches, ranks higher and is never blocked"}},
		},
		{
			name: "condition that folds to true",
			rules: `  - {id: quiet, when: "1 < 2 || customer.vulnerable", action: SUPPRESS, reasons: [A]}
  - {id: later, when: "customer.vulnerable", action: SUPPRESS, reasons: [B]}
`,
			want: []BundleError{{File: "bundle.yaml", Line: 7, Rule: "later",
				Msg: "rule later can never win: rule quiet always matches, ranks higher and is never blocked"}},
		},
		{
			name: "same priority, higher action rank",
			rules: `  - {id: msg, on: [INBOUND_CONTACT], action: MESSAGE, message: {template: t, purpose: SERVICE}, reasons: [B]}
  - {id: human, on: [INBOUND_CONTACT], action: ESCALATE, escalate: {queue: q}, reasons: [A]}
`,
			want: []BundleError{{File: "bundle.yaml", Line: 6, Rule: "msg",
				Msg: "rule msg can never win: rule human always matches, ranks higher and is never blocked"}},
		},
		{
			name: "the higher rule can be blocked",
			rules: `  - {id: retry, on: [PAYMENT_FAILED], priority: 10, action: RETRY, reasons: [A]}
  - {id: tell, on: [PAYMENT_FAILED], priority: 5, action: MESSAGE, message: {template: t, purpose: SERVICE}, reasons: [B]}
`,
		},
		{
			name: "the higher rule does not always match",
			rules: `  - {id: maybe, on: [INBOUND_CONTACT], when: "customer.vulnerable || false", priority: 10, action: ESCALATE, escalate: {queue: q}, reasons: [A]}
  - {id: other, on: [INBOUND_CONTACT], priority: 5, action: ESCALATE, escalate: {queue: r}, reasons: [B]}
`,
		},
		{
			name: "the higher rule covers only some event types",
			rules: `  - {id: contact, on: [INBOUND_CONTACT], priority: 10, action: ESCALATE, escalate: {queue: q}, reasons: [A]}
  - {id: both, on: [INBOUND_CONTACT, RISKY_LOGIN], priority: 5, action: ESCALATE, escalate: {queue: r}, reasons: [B]}
`,
		},
		{
			name: "the lower rule ranks higher after all",
			rules: `  - {id: low, on: [INBOUND_CONTACT], priority: 1, action: SUPPRESS, reasons: [A]}
  - {id: high, on: [INBOUND_CONTACT], when: "customer.vulnerable", priority: 2, action: MESSAGE, message: {template: t, purpose: SERVICE}, reasons: [B]}
`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := mustParse(t, head+tc.rules)
			if diff := cmp.Diff(tc.want, p.LintFindings()); diff != "" {
				t.Errorf("LintFindings() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestLintServicePurpose: a SERVICE message whose template or reason codes suggest promotion
// is flagged, unless it is MARKETING already or not promotional; purpose_ack keeps the finding
// but marks it acknowledged with the reason.
func TestLintServicePurpose(t *testing.T) {
	const head = "id: t\nversion: \"1\"\ntests:\n  - {name: a, now: 2026-03-10T12:00:00Z, event: {type: INBOUND_CONTACT}, expect: {action: ESCALATE}}\nrules:\n"
	tests := []struct {
		name  string
		rules string
		want  []BundleError
	}{
		{
			name:  "promotional template as SERVICE",
			rules: "  - {id: nudge, on: [CHECKOUT_ABANDONED], action: MESSAGE, message: {template: checkout_reminder, purpose: SERVICE}, reasons: [REMIND]}\n",
			want: []BundleError{{File: "bundle.yaml", Line: 6, Rule: "nudge",
				Msg: `rule nudge has purpose SERVICE but its template checkout_reminder suggests promotion ("checkout"): direct marketing needs purpose MARKETING; if it is not marketing, say why with purpose_ack: "..."`}},
		},
		{
			name:  "promotional reason as SERVICE",
			rules: "  - {id: tell, on: [CARD_EXPIRING], action: MESSAGE, message: {template: card_note, purpose: SERVICE}, reasons: [CARD_EXPIRING, SPRING_PROMOTION]}\n",
			want: []BundleError{{File: "bundle.yaml", Line: 6, Rule: "tell",
				Msg: `rule tell has purpose SERVICE but its reason SPRING_PROMOTION suggests promotion ("promotion"): direct marketing needs purpose MARKETING; if it is not marketing, say why with purpose_ack: "..."`}},
		},
		{
			name:  "acknowledged",
			rules: "  - {id: nudge, on: [CHECKOUT_ABANDONED], action: MESSAGE, message: {template: checkout_receipt, purpose: SERVICE}, reasons: [RECEIPT], purpose_ack: \"receipt of a completed order\"}\n",
			want: []BundleError{{File: "bundle.yaml", Line: 6, Rule: "nudge",
				Msg: `rule nudge has purpose SERVICE but its template checkout_receipt suggests promotion ("checkout"): acknowledged: receipt of a completed order`}},
		},
		{
			name:  "promotional template as MARKETING",
			rules: "  - {id: nudge, on: [CHECKOUT_ABANDONED], action: MESSAGE, message: {template: checkout_reminder, purpose: MARKETING}, reasons: [REMIND]}\n",
		},
		{
			name:  "service template as SERVICE",
			rules: "  - {id: tell, on: [CARD_EXPIRING], action: MESSAGE, message: {template: card_expiring, purpose: SERVICE}, reasons: [CARD_EXPIRING]}\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := mustParse(t, head+tc.rules)
			if diff := cmp.Diff(tc.want, p.LintFindings()); diff != "" {
				t.Errorf("LintFindings() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// An experiment arm's replacement rule is linted like a bundle rule.
func TestLintExperimentArmPurpose(t *testing.T) {
	p := mustParse(t, `id: t
version: "1"
tests:
  - {name: a, now: 2026-03-10T12:00:00Z, event: {type: INBOUND_CONTACT}, expect: {action: ESCALATE}}
rules:
  - {id: tell, on: [CARD_EXPIRING], action: MESSAGE, message: {template: card_expiring, purpose: SERVICE}, reasons: [CARD_EXPIRING]}
experiments:
  - id: x
    arms:
      - {name: champion, weight: 1}
      - name: upsell
        weight: 1
        rules:
          - {id: tell, on: [CARD_EXPIRING], action: MESSAGE, message: {template: card_upgrade_offer, purpose: SERVICE}, reasons: [CARD_EXPIRING]}
`)
	var got []string
	for _, f := range p.LintFindings() {
		got = append(got, f.Msg)
	}
	want := []string{`experiment x, arm upsell: rule tell has purpose SERVICE but its template card_upgrade_offer suggests promotion ("upgrade"): direct marketing needs purpose MARKETING; if it is not marketing, say why with purpose_ack: "..."`}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("LintFindings() mismatch (-want +got):\n%s", diff)
	}
}

// TestLintDefaultPolicyPurposes: the default policy has no unacknowledged purpose warning.
func TestLintDefaultPolicyPurposes(t *testing.T) {
	p := DefaultPolicy()
	for _, f := range p.LintFindings() {
		if strings.Contains(f.Msg, "suggests promotion") && !strings.Contains(f.Msg, "acknowledged:") {
			t.Errorf("default policy: %s:%d: %s", f.File, f.Line, f.Msg)
		}
	}
}

// TestLintExperimentArmNeverWins: an arm that replaces a rule with one that always matches
// can shadow a rule that wins in the bundle; the finding names the arm, on the experiment's
// event types only, and a rule that never wins in the bundle is not reported again per arm.
func TestLintExperimentArmNeverWins(t *testing.T) {
	p := mustParse(t, `id: t
version: "1"
tests:
  - {name: a, now: 2026-03-10T12:00:00Z, event: {type: INBOUND_CONTACT}, expect: {action: ESCALATE}}
rules:
  - {id: gate, on: [CARD_EXPIRING, INVOICE_OVERDUE], when: "customer.vulnerable", priority: 10, action: SUPPRESS, reasons: [GATE]}
  - {id: tell, on: [CARD_EXPIRING], action: MESSAGE, message: {template: card_expiring, purpose: SERVICE}, reasons: [CARD_EXPIRING]}
  - {id: remind, on: [INVOICE_OVERDUE], action: MESSAGE, message: {template: invoice_overdue, purpose: SERVICE}, reasons: [OVERDUE]}
  - {id: human, on: [INBOUND_CONTACT], action: ESCALATE, escalate: {queue: q}, reasons: [CONTACT]}
  - {id: never, on: [INBOUND_CONTACT], action: MESSAGE, message: {template: t, purpose: SERVICE}, reasons: [NEVER]}
experiments:
  - id: x
    on: [CARD_EXPIRING, INBOUND_CONTACT]
    arms:
      - {name: champion, weight: 1}
      - name: strict
        weight: 1
        rules:
          - {id: gate, on: [CARD_EXPIRING, INVOICE_OVERDUE], priority: 10, action: SUPPRESS, reasons: [GATE]}
`)
	var got []BundleError
	for _, f := range p.LintFindings() {
		if strings.Contains(f.Msg, "can never win") {
			got = append(got, f)
		}
	}
	// remind is shadowed in the arm's index too, but the arm decides only CARD_EXPIRING and
	// INBOUND_CONTACT; never is shadowed by human in the bundle and in the arm alike.
	want := []BundleError{
		{File: "bundle.yaml", Line: 10, Rule: "never",
			Msg: "rule never can never win: rule human always matches, ranks higher and is never blocked"},
		{File: "bundle.yaml", Line: 7, Rule: "tell",
			Msg: "experiment x, arm strict: rule tell can never win: rule gate always matches, ranks higher and is never blocked"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("LintFindings() mismatch (-want +got):\n%s", diff)
	}
}
