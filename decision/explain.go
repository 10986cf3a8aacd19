package decision

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// explain fills res.Explanation from the decision's working memory: the candidates and what
// became of each, the facts read, and a one-line summary. The rules evaluated and the
// guardrail verdicts were recorded during evaluation.
func (p *Policy) explain(in *Input, s *scratch, best int, res *Result) {
	tr := res.Explanation
	tr.DeclineClass = declineClassName(factsClass(&s.f))
	tr.Features = maps.Clone(in.State.Features)
	tr.Counters = slices.Clone(factsCounters(&s.f))
	var w *Candidate
	if best >= 0 {
		w = &s.cands[best]
	}
	blocked := 0
	for i := range s.cands {
		c := &s.cands[i]
		ct := CandidateTrace{RuleID: c.RuleID, Action: c.Action, Priority: c.Priority, Queue: c.Queue}
		ct.ReasonCodes = slices.Clone(c.ReasonCodes)
		for _, r := range c.Reasons {
			ct.ReasonCodes = append(ct.ReasonCodes, r.Code)
		}
		if c.Message != nil {
			ct.Channel = c.Message.Channel
		} else if len(c.Channels) > 0 {
			ct.Channel = c.Channels[0]
		}
		if c.Escalate != nil {
			ct.Queue = c.Escalate.Queue
		}
		switch {
		case c.Blocked:
			blocked++
			ct.Outcome = "blocked"
			ct.Why = c.Why
			if ct.Why == "" {
				ct.Why = "blocked by the guardrails"
			}
		case i == best:
			ct.Outcome = "won"
			ct.Why = "highest-ranked candidate the guardrails allowed"
		default:
			ct.Outcome = "lost"
			ct.Why = lossReason(w, c)
		}
		tr.Candidates = append(tr.Candidates, ct)
	}
	matched := 0
	for _, r := range tr.Rules {
		if r.Matched {
			matched++
		}
	}
	var b strings.Builder
	b.WriteString(bundleActionName(res.Action))
	switch {
	case res.Message != nil:
		fmt.Fprintf(&b, " via %s (%s)", bundleChannelName(res.Message.Channel), res.Message.TemplateID)
	case res.Escalate != nil:
		fmt.Fprintf(&b, " to %s", res.Escalate.Queue)
	}
	if w != nil {
		fmt.Fprintf(&b, " from %s", w.RuleID)
	} else {
		b.WriteString(": no candidate left")
	}
	codes := make([]string, 0, len(res.Reasons))
	for _, r := range res.Reasons {
		codes = append(codes, r.Code)
	}
	fmt.Fprintf(&b, " [%s]; %d rules evaluated, %d matched, %d candidates, %d blocked",
		strings.Join(codes, ","), len(tr.Rules), matched, len(s.cands), blocked)
	tr.Summary = b.String()
}

// lossReason says why c lost to the winner w.
func lossReason(w, c *Candidate) string {
	if w == nil {
		return "no winner"
	}
	switch {
	case c.Priority < w.Priority:
		return fmt.Sprintf("lost to %s: lower priority (%d < %d)", w.RuleID, c.Priority, w.Priority)
	case bundleActionRank(c.Action) < bundleActionRank(w.Action):
		return fmt.Sprintf("lost to %s: same priority, %s outranks %s", w.RuleID, bundleActionName(w.Action), bundleActionName(c.Action))
	case c.Order > w.Order:
		return fmt.Sprintf("lost to %s: same priority and action, later in the bundle", w.RuleID)
	}
	return fmt.Sprintf("lost to %s: same priority, action and position, rule id sorts later", w.RuleID)
}
