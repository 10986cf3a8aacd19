package decision_test

import (
	"context"
	"fmt"
	"time"

	"github.com/arbiter-dev/arbiter/decision"
)

func ExampleParsePolicy() {
	bundle := `
id: example
version: "1"
rules:
  # Callers in arrears talk to collections; everyone else to the general queue.
  - id: arrears
    on: [INBOUND_CONTACT]
    when: features.?days_past_due.orValue(0) > 0
    priority: 10
    action: ESCALATE
    escalate: {queue: collections}
    reasons: [ROUTE_COLLECTIONS]
  - id: general
    on: [INBOUND_CONTACT]
    action: ESCALATE
    escalate: {queue: general}
    reasons: [ROUTE_GENERAL]
`
	p, err := decision.ParsePolicy(map[string][]byte{"bundle.yaml": []byte(bundle)})
	if err != nil {
		fmt.Println(err)
		return
	}
	res, err := p.Decide(context.Background(), &decision.Input{
		Event:    decision.Event{ID: "evt-1", Type: decision.EventInboundContact},
		Customer: decision.Customer{ID: "c-1"},
		State:    decision.State{Features: map[string]any{"days_past_due": 12.0}},
		Now:      time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(res.Escalate.Queue, res.Reasons[0].Code, res.Reasons[0].RuleID)
	// Output: collections ROUTE_COLLECTIONS arrears
}

func ExampleParsePolicy_error() {
	_, err := decision.ParsePolicy(map[string][]byte{"rules.yaml": []byte(`id: broken
version: "1"
rules:
  - id: typo
    action: SUPPRESS
    reasons: [X]
    when: customer.vulnerabel
`)})
	fmt.Println(err)
	// Output:
	// invalid policy bundle:
	// rules.yaml:7: rule typo: when: line 1 col 9: undeclared reference to 'customer.vulnerabel' (did you mean 'customer.vulnerable'?)
}
