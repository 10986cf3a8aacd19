package console

import (
	"fmt"
	"strings"

	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
)

// traceStep is one line of a decision's explanation as the console shows it: what was looked
// at (a rule, a guardrail, a candidate), what came of it, and why.
type traceStep struct {
	Kind, Subject, Verdict, Why string
	Blocked                     bool
}

// explain returns rec's explanation ex as a readable trace, in the order the engine worked:
// rules, guardrails, candidates, then the answer's reasons. Without ex, the reasons are the
// trace.
func explain(rec *arbiterv1.DecisionRecord, ex *arbiterv1.Explanation) []traceStep {
	resp := rec.GetResponse()
	steps := make([]traceStep, 0, 16)
	for _, r := range ex.GetRules() {
		v := "no match"
		if r.GetMatched() {
			v = "matched"
		}
		if r.GetError() != "" {
			v = "error: " + r.GetError()
		}
		steps = append(steps, traceStep{Kind: "rule", Subject: r.GetRuleId(), Verdict: v})
	}
	for _, g := range ex.GetGuardrails() {
		why := g.GetDetail()
		if g.GetReasonCode() != "" {
			why = strings.TrimSpace(g.GetReasonCode() + " " + why)
		}
		steps = append(steps, traceStep{Kind: "guardrail", Subject: g.GetGuardrail(), Verdict: g.GetVerdict(), Why: why,
			Blocked: g.GetVerdict() != "" && g.GetVerdict() != "pass" && g.GetVerdict() != "allow"})
	}
	for _, c := range ex.GetCandidates() {
		subj := fmt.Sprintf("%s → %s", c.GetRuleId(), strings.TrimPrefix(c.GetAction().String(), "ACTION_"))
		steps = append(steps, traceStep{Kind: "candidate", Subject: subj, Verdict: c.GetOutcome(), Why: c.GetWhy(),
			Blocked: c.GetOutcome() == "blocked"})
	}
	for _, r := range resp.GetReasons() {
		by := r.GetRuleId()
		if by == "" {
			by = "server"
		}
		steps = append(steps, traceStep{Kind: "reason", Subject: r.GetCode(), Verdict: by, Why: r.GetMessage(),
			Blocked: strings.HasPrefix(by, "guardrail:")})
	}
	steps = append(steps, traceStep{Kind: "answer", Subject: strings.TrimPrefix(resp.GetAction().String(), "ACTION_"),
		Verdict: "policy " + rec.GetPolicy().GetVersion(), Why: ex.GetSummary()})
	return steps
}
