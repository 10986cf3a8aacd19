package decision

import (
	"slices"

	celast "cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/types"
)

// A guard is a necessary condition read off a rule's `when` at load: a top-level conjunct
// such as `event.payment.decline_class == "LATER"` or `customer.segment in ["a", "b"]` over a
// string input. Before running the CEL program, the engine compares the input with the
// guard's values in Go; a rule whose guard fails cannot match and costs a string comparison
// instead of an evaluation. This is what keeps a bundle of a thousand segment or merchant
// rules as cheap as a small one. When every conjunct is a guard, the program is not run at
// all. Guards never change a rule's meaning: `false && x` is false in CEL whatever x is.
type guard struct {
	v    celVar
	vals []string
}

// guardable reports whether v is a plain string input the engine can read without CEL.
func guardable(v celVar) bool {
	switch v {
	case varEventType, varEventID, varEventSource, varPaymentDeclineCode, varPaymentDeclineClass,
		varPaymentNetwork, varPaymentMAC, varPaymentCurrency, varPaymentAcquirer, varPaymentInitiator,
		varPaymentMerchantID, varCustomerID, varCustomerTimezone, varCustomerLocale, varCustomerSegment,
		varExperimentID, varExperimentArm:
		return true
	}
	return false
}

// extractGuards returns the guards among the top-level conjuncts of a checked expression,
// and whether the conjuncts are all guards.
func extractGuards(a *celast.AST) ([]guard, bool) {
	var conj []celast.Expr
	var flatten func(e celast.Expr)
	flatten = func(e celast.Expr) {
		if e.Kind() == celast.CallKind && e.AsCall().FunctionName() == "_&&_" {
			for _, arg := range e.AsCall().Args() {
				flatten(arg)
			}
			return
		}
		conj = append(conj, e)
	}
	flatten(a.Expr())
	var gs []guard
	for _, e := range conj {
		if g, ok := guardOf(a, e); ok {
			gs = append(gs, g)
		}
	}
	return gs, len(gs) == len(conj)
}

// guardOf recognises `input == "lit"`, `"lit" == input` and `input in ["lit", ...]`.
func guardOf(a *celast.AST, e celast.Expr) (guard, bool) {
	if e.Kind() != celast.CallKind {
		return guard{}, false
	}
	call := e.AsCall()
	args := call.Args()
	if len(args) != 2 {
		return guard{}, false
	}
	switch call.FunctionName() {
	case "_==_":
		if v, ok := guardVar(a, args[0]); ok {
			if s, ok := stringLit(args[1]); ok {
				return guard{v: v, vals: []string{s}}, true
			}
		}
		if v, ok := guardVar(a, args[1]); ok {
			if s, ok := stringLit(args[0]); ok {
				return guard{v: v, vals: []string{s}}, true
			}
		}
	case "@in":
		v, ok := guardVar(a, args[0])
		if !ok || args[1].Kind() != celast.ListKind {
			return guard{}, false
		}
		var vals []string
		for _, el := range args[1].AsList().Elements() {
			s, ok := stringLit(el)
			if !ok {
				return guard{}, false
			}
			vals = append(vals, s)
		}
		return guard{v: v, vals: vals}, true
	}
	return guard{}, false
}

func guardVar(a *celast.AST, e celast.Expr) (celVar, bool) {
	ref, ok := a.ReferenceMap()[e.ID()]
	if !ok || ref.Value != nil {
		return 0, false
	}
	v, ok := celVarOf(ref.Name)
	return v, ok && guardable(v)
}

func stringLit(e celast.Expr) (string, bool) {
	if e.Kind() != celast.LiteralKind {
		return "", false
	}
	s, ok := e.AsLiteral().(types.String)
	return string(s), ok
}

// admits reports whether the input passes every guard.
func (a *activation) admits(gs []guard) bool {
	for i := range gs {
		if !slices.Contains(gs[i].vals, a.stringOf(gs[i].v)) {
			return false
		}
	}
	return true
}

// stringOf returns a guardable input as a Go string, exactly as resolve gives it to CEL.
func (a *activation) stringOf(v celVar) string {
	in := a.in
	p := in.Event.Payment
	if p == nil {
		p = &PaymentFailure{}
	}
	switch v {
	case varEventType:
		return bundleEventTypeName(in.Event.Type)
	case varEventID:
		return in.Event.ID
	case varEventSource:
		return in.Event.Source
	case varPaymentDeclineCode:
		return p.DeclineCode
	case varPaymentDeclineClass:
		return factsClass(a.f).String()
	case varPaymentNetwork:
		return bundleNetworkName(p.Network)
	case varPaymentMAC:
		return p.MerchantAdviceCode
	case varPaymentCurrency:
		return p.Currency
	case varPaymentAcquirer:
		return p.Acquirer
	case varPaymentInitiator:
		return bundleInitiatorName(p.Initiator)
	case varPaymentMerchantID:
		return p.MerchantID
	case varCustomerID:
		return in.Customer.ID
	case varCustomerTimezone:
		return in.Customer.Timezone
	case varCustomerLocale:
		return in.Customer.Locale
	case varCustomerSegment:
		return in.Customer.Segment
	case varExperimentID:
		if a.arm != nil {
			return a.arm.exp.id
		}
	case varExperimentArm:
		if a.arm != nil {
			return a.arm.name
		}
	}
	return ""
}
