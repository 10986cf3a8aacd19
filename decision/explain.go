package decision

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
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

// RenderExplanation renders a decision and its explanation (when present) as readable text:
// the action, the reasons with the rule or guardrail behind each, the rules evaluated, the
// guardrail verdicts, every candidate with why it won, lost or was blocked, and the features
// and counters read. The policy digest is left out so that the text is stable across edits.
func RenderExplanation(res *Result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "decision: %s", bundleActionName(res.Action))
	switch {
	case res.Message != nil:
		m := res.Message
		fmt.Fprintf(&b, " via %s, template %s, purpose %s, send at %s", bundleChannelName(m.Channel), m.TemplateID,
			bundlePurposeName(m.Purpose), m.SendAt.UTC().Format(time.RFC3339))
		if len(m.FallbackChannels) > 0 {
			names := make([]string, 0, len(m.FallbackChannels))
			for _, c := range m.FallbackChannels {
				names = append(names, bundleChannelName(c))
			}
			fmt.Fprintf(&b, ", fallback %s", strings.Join(names, " > "))
		}
	case res.Retry != nil:
		fmt.Fprintf(&b, " not before %s through %q, attempt %d", res.Retry.NotBefore.UTC().Format(time.RFC3339), res.Retry.Acquirer, res.Retry.Attempt)
	case res.Escalate != nil:
		fmt.Fprintf(&b, " to queue %s, priority %d", res.Escalate.Queue, res.Escalate.Priority)
		keys := slices.Sorted(maps.Keys(res.Escalate.Context))
		for _, k := range keys {
			fmt.Fprintf(&b, "\n  context %s = %s", k, res.Escalate.Context[k])
		}
	case res.Suppress != nil && !res.Suppress.Until.IsZero():
		fmt.Fprintf(&b, " until %s", res.Suppress.Until.UTC().Format(time.RFC3339))
	}
	fmt.Fprintf(&b, "\npolicy: %s %s\n", res.Policy.ID, res.Policy.Version)
	if x := res.Experiment; x.ID != "" {
		fmt.Fprintf(&b, "experiment: %s, arm %s\n", x.ID, x.Arm)
	}
	b.WriteString("reasons:\n")
	for _, r := range res.Reasons {
		fmt.Fprintf(&b, "  %-24s %s", r.Code, cmpOr(r.RuleID, "-"))
		if r.Message != "" {
			fmt.Fprintf(&b, ": %s", r.Message)
		}
		b.WriteByte('\n')
	}
	tr := res.Explanation
	if tr == nil {
		return b.String()
	}
	fmt.Fprintf(&b, "summary: %s\n", tr.Summary)
	if tr.DeclineClass != "" {
		fmt.Fprintf(&b, "decline class: %s\n", tr.DeclineClass)
	}
	b.WriteString("rules evaluated:\n")
	for _, r := range tr.Rules {
		mark := " "
		if r.Matched {
			mark = "x"
		}
		fmt.Fprintf(&b, "  [%s] %s", mark, r.RuleID)
		if r.Error != "" {
			fmt.Fprintf(&b, " (error: %s)", r.Error)
		}
		b.WriteByte('\n')
	}
	if len(tr.Guardrails) > 0 {
		b.WriteString("guardrails:\n")
		for _, g := range tr.Guardrails {
			fmt.Fprintf(&b, "  %-28s on %-28s %s", g.Guardrail, g.RuleID, g.Verdict)
			if g.ReasonCode != "" {
				fmt.Fprintf(&b, " %s", g.ReasonCode)
			}
			if g.Detail != "" {
				fmt.Fprintf(&b, ": %s", g.Detail)
			}
			b.WriteByte('\n')
		}
	}
	b.WriteString("candidates:\n")
	for _, c := range tr.Candidates {
		fmt.Fprintf(&b, "  %-7s %-28s %-8s priority %d", c.Outcome, c.RuleID, bundleActionName(c.Action), c.Priority)
		if c.Channel != ChannelUnspecified {
			fmt.Fprintf(&b, " channel %s", bundleChannelName(c.Channel))
		}
		if c.Queue != "" {
			fmt.Fprintf(&b, " queue %s", c.Queue)
		}
		fmt.Fprintf(&b, " [%s]: %s\n", strings.Join(c.ReasonCodes, ","), c.Why)
	}
	if len(tr.Features) > 0 {
		b.WriteString("features:\n")
		for _, k := range slices.Sorted(maps.Keys(tr.Features)) {
			fmt.Fprintf(&b, "  %s = %v\n", k, tr.Features[k])
		}
	}
	if len(tr.Counters) > 0 {
		b.WriteString("counters:\n")
		for _, c := range tr.Counters {
			fmt.Fprintf(&b, "  %-24s %d of %d in %s\n", c.Name, c.Count, c.Limit, c.Window)
		}
	}
	return b.String()
}
