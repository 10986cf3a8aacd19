package decision

// guardrailNames are the guardrails, as explanations name them, in the order coverage
// reports them.
var guardrailNames = []string{grStore, grOptOut, grConsent, grQuietHours, grTimezone, grCaps,
	grFraudHold, grVulnerable, grFailing, grChannels, grPayments}

// Coverage is what a bundle's test cases exercised: every rule with the cases it matched and
// won in, and every guardrail with the cases it blocked or changed a candidate in.
type Coverage struct {
	// Cases is the number of results counted: those that carry an explanation.
	Cases      int
	Rules      []RuleCoverage      // in bundle order
	Guardrails []GuardrailCoverage // in a fixed order
}

// RuleCoverage is how often the cases exercised one rule.
type RuleCoverage struct {
	RuleID string
	File   string
	Line   int
	// Matched counts the cases in which the rule's condition held (it proposed a candidate),
	// Won those in which its candidate was the answer.
	Matched, Won int
}

// Covered reports whether some case matched the rule.
func (r RuleCoverage) Covered() bool { return r.Matched > 0 }

// GuardrailCoverage is how often the cases exercised one guardrail, as the explanations
// record it: a guardrail that rules out some of a message's channels but not all (consent,
// failing channels, a cap on one channel) shows as guardrail:channels changing the channel;
// it counts for itself when it blocks the candidate.
type GuardrailCoverage struct {
	Guardrail string // "guardrail:quiet_hours", ...
	// Blocked counts the cases in which the guardrail blocked a candidate, Modified those in
	// which it changed one (a later send time, another channel or acquirer) or added the
	// candidate it requires (the vulnerable customer's escalation).
	Blocked, Modified int
}

// Covered reports whether some case made the guardrail act.
func (g GuardrailCoverage) Covered() bool { return g.Blocked+g.Modified > 0 }

// Coverage returns what the test results exercised. Only results decided with the
// explanation count (run the cases with TestCase.Explain set); a case counts once per rule
// and guardrail however many candidates it touched.
func (p *Policy) Coverage(results []TestResult) Coverage {
	cov := Coverage{Rules: make([]RuleCoverage, len(p.rules)), Guardrails: make([]GuardrailCoverage, len(guardrailNames))}
	ruleIdx := make(map[string]int, len(p.rules))
	for i, r := range p.rules {
		cov.Rules[i] = RuleCoverage{RuleID: r.id, File: r.file, Line: r.line}
		ruleIdx[r.id] = i
	}
	guardIdx := make(map[string]int, len(guardrailNames))
	for i, g := range guardrailNames {
		cov.Guardrails[i].Guardrail = g
		guardIdx[g] = i
	}
	for _, res := range results {
		if res.Result == nil || res.Result.Explanation == nil {
			continue
		}
		cov.Cases++
		x := res.Result.Explanation
		matched := make([]bool, len(p.rules))
		won := make([]bool, len(p.rules))
		blocked := make([]bool, len(guardrailNames))
		modified := make([]bool, len(guardrailNames))
		for _, rt := range x.Rules {
			if i, ok := ruleIdx[rt.RuleID]; ok && rt.Matched {
				matched[i] = true
			}
		}
		for _, c := range x.Candidates {
			if i, ok := ruleIdx[c.RuleID]; ok && c.Outcome == "won" {
				won[i] = true
			}
			if i, ok := guardIdx[c.RuleID]; ok { // a candidate a guardrail requires
				modified[i] = true
			}
		}
		for _, g := range x.Guardrails {
			i, ok := guardIdx[g.Guardrail]
			if !ok {
				continue
			}
			switch g.Verdict {
			case "block":
				blocked[i] = true
			case "modify":
				modified[i] = true
			}
		}
		for i := range cov.Rules {
			if matched[i] {
				cov.Rules[i].Matched++
			}
			if won[i] {
				cov.Rules[i].Won++
			}
		}
		for i := range cov.Guardrails {
			if blocked[i] {
				cov.Guardrails[i].Blocked++
			}
			if modified[i] {
				cov.Guardrails[i].Modified++
			}
		}
	}
	return cov
}
