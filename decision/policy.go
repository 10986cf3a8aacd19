package decision

import (
	"slices"
	"sync"
	"time"

	"cel.dev/cel-go/common/types"
)

// Policy is a compiled policy bundle: its rules, indexed by event type and compiled to CEL
// programs, and its guardrail parameters. It is immutable and safe for concurrent use; load
// one with LoadPolicy, LoadPolicyFS, ParsePolicy or DefaultPolicy.
type Policy struct {
	ref         PolicyRef
	description string
	guards      *guardrails
	rules       []*rule // in bundle order
	byEvent     [eventTypeCount][]ruleSlot
	// experiments are the bundle's experiments in bundle order; expByEvent the one that
	// applies to each event type (at most one: overlaps are refused at load).
	experiments []*experiment
	expByEvent  [eventTypeCount]*experiment
	tests       []TestCase
	files       map[string][]byte
	consts      *celConsts
	adapter     types.Adapter
	// scratch pools the per-decision working memory (activation, candidates), so a decision
	// allocates only what its Result keeps.
	scratch sync.Pool
}

// Ref names the policy: its id, version and content digest.
func (p *Policy) Ref() PolicyRef { return p.ref }

// Description returns the bundle's description.
func (p *Policy) Description() string { return p.description }

// RuleCount returns the number of rules in the bundle.
func (p *Policy) RuleCount() int { return len(p.rules) }

// Tests returns the test cases the bundle ships, in file order. The slice must not be
// modified.
func (p *Policy) Tests() []TestCase { return p.tests }

// Files returns the bundle's files by name, as loaded. The map must not be modified.
func (p *Policy) Files() map[string][]byte { return p.files }

// Outcome returns the state changes of an outcome reported for a recorded decision: rec is
// the decision's input and res its result.
func (p *Policy) Outcome(rec *Input, res *Result, o Outcome, now time.Time) OutcomeEffects {
	return p.guards.outcome(rec, res, o, now)
}

// Effects returns the state changes that the recorded decision res, made from rec, committed:
// the reserved message slot (without its decision id, which the caller knows), the ledger
// entries and the stops, as Decide computed them, without the checks that guarded them. It
// is for rebuilding a customer's state from recorded decisions after the store lost it. A
// degraded decision committed nothing.
func (p *Policy) Effects(rec *Input, res *Result) Effects {
	if rec.Degraded {
		return Effects{}
	}
	f := p.guards.facts(rec)
	r := Result{Action: res.Action, Retry: res.Retry, Message: res.Message, Escalate: res.Escalate,
		Suppress: res.Suppress, Reasons: slices.Clone(res.Reasons)}
	p.guards.effects(rec, &f, &r)
	return r.Effects
}
