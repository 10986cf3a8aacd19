// Package decision turns one customer event and the customer's stored state into one
// explainable action: RETRY, MESSAGE, ESCALATE or SUPPRESS.
//
// The package is pure and deterministic: it does no I/O during evaluation, reads no clock and
// holds no globals. The same Input (event, customer, state and time) under the same Policy
// always gives the same Result, which is what makes golden tests and replay possible.
//
// A Policy is a compiled policy bundle: rules written in CEL that propose candidate actions,
// and parameters for the guardrails. Guardrails are Go code that no rule can switch off:
// rules are evaluated in arbitration order, and each candidate a rule proposes passes through
// the guardrails at once; the first candidate they let through wins, so guardrails and
// arbitration interleave and no later rule is evaluated (unless an explanation is asked for).
package decision
