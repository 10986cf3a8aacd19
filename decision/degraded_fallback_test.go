package decision

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// degradedFallbackBundle names a fallback for payment failures that applies only while the
// store is unavailable (CEL input degraded), and a rule that tries to message customers in
// that state, which the guardrails must still block.
const degradedFallbackBundle = `id: degraded-fallback
version: "1"
rules:
  - id: retry
    on: [PAYMENT_FAILED]
    priority: 500
    action: RETRY
    reasons: [SOFT_DECLINE]
  - id: outage-message
    on: [PAYMENT_FAILED]
    when: degraded
    priority: 400
    action: MESSAGE
    message: {channels: [EMAIL], template: payment_failed, purpose: SERVICE}
    reasons: [OUTAGE_NOTICE]
  - id: outage-review
    on: [PAYMENT_FAILED]
    when: degraded && event.payment.amount_minor >= 10000
    priority: 300
    action: ESCALATE
    escalate: {queue: payments-review, priority: 2}
    reasons: [OUTAGE_REVIEW]
tests:
  - name: healthy retries
    now: 2026-03-10T12:00:00Z
    event: &visa51
      type: PAYMENT_FAILED
      payment: {decline_code: "51", network: VISA, amount_minor: 25000, currency: GBP, acquirer: acq-a, card_ref: tok_1, initiator: MERCHANT, merchant_id: m-1}
    customer: &customer
      id: c-1
      timezone: Europe/London
      consents: [{channel: ALL, purpose: SERVICE, granted: true}]
    expect: {action: RETRY, rule: retry}
  - name: healthy hard decline is not sent to the outage fallback
    now: 2026-03-10T12:00:00Z
    event:
      type: PAYMENT_FAILED
      payment: {decline_code: "04", network: VISA, amount_minor: 25000, currency: GBP, acquirer: acq-a, card_ref: tok_1, initiator: MERCHANT, merchant_id: m-1}
    customer: *customer
    expect: {action: SUPPRESS, not_reasons: [OUTAGE_REVIEW, STORE_UNAVAILABLE]}
  - name: degraded large payment goes to the named fallback, never a message
    now: 2026-03-10T12:00:00Z
    degraded: true
    event: *visa51
    customer: *customer
    expect: {action: ESCALATE, queue: payments-review, rule: outage-review, reasons: [STORE_UNAVAILABLE]}
  - name: degraded small payment without a fallback is suppressed
    now: 2026-03-10T12:00:00Z
    degraded: true
    event:
      type: PAYMENT_FAILED
      payment: {decline_code: "51", network: VISA, amount_minor: 500, currency: GBP, acquirer: acq-a, card_ref: tok_1, initiator: MERCHANT, merchant_id: m-1}
    customer: *customer
    expect: {action: SUPPRESS, reasons: [STORE_UNAVAILABLE]}
`

// TestDegradedFallback: a policy can name a safer action per event type for the degraded
// state through the degraded input, and no rule can reach the customer in that state.
func TestDegradedFallback(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bundle.yaml")
	if err := os.WriteFile(path, []byte(degradedFallbackBundle), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := LoadPolicy(path)
	if err != nil {
		t.Fatalf("LoadPolicy() = %v", err)
	}
	results := p.RunTests(context.Background())
	if len(results) != 4 {
		t.Fatalf("RunTests() ran %d cases, want 4", len(results))
	}
	for _, r := range results {
		if !r.Passed() {
			t.Errorf("case %q failed: %v", r.Case.Name, r.Failures)
		}
	}
}
