package decision

import (
	"context"
	"time"
)

// Policy is a compiled policy bundle. It is immutable and safe for concurrent use.
//
// TODO(policy engine): replaced by the YAML/CEL bundle loader.
type Policy struct {
	ref    PolicyRef
	guards *guardrails
}

// DefaultPolicy returns a minimal built-in policy.
func DefaultPolicy() *Policy {
	return &Policy{ref: PolicyRef{ID: "builtin", Version: "0", Digest: "none"}, guards: &guardrails{}}
}

// Ref names the policy.
func (p *Policy) Ref() PolicyRef { return p.ref }

// Decide evaluates in under the policy. It honours ctx's deadline during rule evaluation.
func (p *Policy) Decide(ctx context.Context, in *Input) (*Result, error) {
	f := p.guards.facts(in)
	var cands []Candidate
	if in.Event.Type == EventPaymentFailed {
		cands = append(cands, Candidate{RuleID: "retry", Action: ActionRetry, Delay: 4 * time.Hour, ReasonCodes: []string{"SOFT_DECLINE"}})
	}
	if m := p.guards.mandatory(in, &f); m != nil {
		cands = append(cands, *m)
	}
	var tr *Explanation
	if in.Explain {
		tr = &Explanation{}
	}
	for i := range cands {
		p.guards.apply(in, &f, &cands[i], tr)
	}
	res := &Result{Action: ActionSuppress, Suppress: &Suppress{}, Policy: p.ref, Explanation: tr}
	for _, c := range cands {
		if c.Blocked {
			continue
		}
		res.Action, res.Retry = c.Action, c.Retry
		for _, code := range c.ReasonCodes {
			res.Reasons = append(res.Reasons, Reason{Code: code, RuleID: c.RuleID})
		}
		res.Suppress = nil
		break
	}
	p.guards.effects(in, &f, res)
	return res, nil
}

// Outcome returns the state changes of an outcome reported for a recorded decision.
func (p *Policy) Outcome(rec *Input, res *Result, o Outcome, now time.Time) OutcomeEffects {
	return p.guards.outcome(rec, res, o, now)
}
