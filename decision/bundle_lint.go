package decision

import "fmt"

// Lint returns warnings about a compiled bundle: things that compile but are probably not
// what the author meant. Today: rules that can never win because a rule that always matches
// and that the guardrails never block (ESCALATE or SUPPRESS without a condition) outranks
// them on every event type they apply to, and a bundle without test cases.
func (p *Policy) Lint() []string {
	var warns []string
	if len(p.tests) == 0 {
		warns = append(warns, "the bundle has no test cases")
	}
	for _, r := range p.rules {
		var shadow *rule
		applies := 0
		shadowedOn := 0
		for t := EventType(1); t < eventTypeCount; t++ {
			slots := p.byEvent[t]
			idx := -1
			for i := range slots {
				if slots[i].r == r {
					idx = i
					break
				}
			}
			if idx < 0 {
				continue
			}
			applies++
			for i := range idx {
				s := slots[i].r
				if s.when == nil && (s.cand.Action == ActionEscalate || s.cand.Action == ActionSuppress) {
					shadow = s
					shadowedOn++
					break
				}
			}
		}
		if applies > 0 && shadowedOn == applies {
			warns = append(warns, fmt.Sprintf("%s:%d: rule %s can never win: rule %s always matches, ranks higher and is never blocked",
				r.file, r.line, r.id, shadow.id))
		}
	}
	return warns
}
