// Package opa is the peer comparison of issue 3: the default policy's rules and arbitration
// written in Open Policy Agent's Rego (arbiter.rego), evaluated in-process with a prepared
// query over the same test cases as Arbiter's own benchmark. It is a separate Go module so
// that OPA is not a dependency of the service.
//
//	cd bench/opa && go test -run '^$' -bench . -benchtime 2000x
//
// The comparison is conservative in OPA's favour: the Rego policy has no guardrails (Arbiter's
// Decide runs them), the decline class is computed beforehand and handed to OPA in its input,
// and the inputs are converted to OPA values before the timer starts.
package opa

import _ "embed"

// Rego is the Rego module of the default policy.
//
//go:embed arbiter.rego
var Rego string
