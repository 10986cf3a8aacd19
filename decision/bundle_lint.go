package decision

import (
	"fmt"
	"slices"
	"strings"

	"cel.dev/cel-go/cel"
	celast "cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/types"
)

// Lint returns warnings about a compiled bundle as text, "file:line: message" (see
// LintFindings).
func (p *Policy) Lint() []string {
	fs := p.LintFindings()
	out := make([]string, len(fs))
	for i, f := range fs {
		if f.File == "" {
			out[i] = f.Msg
			continue
		}
		out[i] = fmt.Sprintf("%s:%d: %s", f.File, f.Line, f.Msg)
	}
	return out
}

// LintFindings returns warnings about a compiled bundle: things that compile but are probably
// not what the author meant, each with the file and line of the rule it is about (File is
// empty for a warning about the whole bundle). Today:
//
//   - a rule that can never win: on every event type it applies to, a rule that always
//     matches and that the guardrails never block outranks it in arbitration (see
//     docs/policies.md: priority, then action, then position). A rule always matches when
//     it has no `when`, or when its `when` folds to the constant true ("true", "1 == 1",
//     "true || features.x"); only ESCALATE and SUPPRESS candidates are never blocked. An
//     experiment arm that replaces or removes rules is checked with its own arbitration
//     order, on the experiment's event types, for rules that can never win there but can in
//     the bundle;
//   - a MESSAGE rule of purpose SERVICE whose template or reason codes suggest promotion
//     (a word such as promo, offer, discount, checkout, cart, upsell: see promotionalWords):
//     direct marketing needs purpose MARKETING (docs/guardrails.md, "Message purposes"). A rule
//     field `purpose_ack: "why"` acknowledges it: the finding stays, marked acknowledged with
//     the reason, so a reviewer still sees it. Experiment arms' replacement rules are checked
//     too;
//   - a bundle without test cases.
func (p *Policy) LintFindings() []BundleError {
	var out []BundleError
	if len(p.tests) == 0 {
		out = append(out, BundleError{Msg: "the bundle has no test cases"})
	}
	for _, r := range p.rules {
		if f, ok := purposeFinding(r); ok {
			out = append(out, f)
		}
	}
	// An experiment arm's replacement rules message customers as much as the bundle's do.
	for _, e := range p.experiments {
		for _, a := range e.arms {
			for _, r := range a.replace {
				if f, ok := purposeFinding(r); ok {
					f.Msg = "experiment " + e.id + ", arm " + a.name + ": " + f.Msg
					out = append(out, f)
				}
			}
		}
	}
	always := p.alwaysMatching()
	everyEvent := func(EventType) bool { return true }
	bundleNever := neverWins(&p.byEvent, p.rules, always, everyEvent)
	for _, r := range p.rules {
		if shadow, ok := bundleNever[r]; ok {
			out = append(out, BundleError{File: r.file, Line: r.line, Rule: r.id,
				Msg: fmt.Sprintf("rule %s can never win: rule %s always matches, ranks higher and is never blocked", r.id, shadow.id)})
		}
	}
	// An arm that replaces or removes rules arbitrates with its own index, on the
	// experiment's event types: a rule can lose there that wins in the bundle.
	for _, e := range p.experiments {
		covered := func(t EventType) bool { return p.expByEvent[t] == e }
		for _, a := range e.arms {
			if a.byEvent == nil {
				continue
			}
			rules := armRules(a)
			never := neverWins(a.byEvent, rules, always, covered)
			for _, r := range rules {
				shadow, ok := never[r]
				if !ok {
					continue
				}
				if _, known := bundleNever[r]; known {
					continue // reported for the bundle already
				}
				out = append(out, BundleError{File: r.file, Line: r.line, Rule: r.id,
					Msg: fmt.Sprintf("experiment %s, arm %s: rule %s can never win: rule %s always matches, ranks higher and is never blocked",
						e.id, a.name, r.id, shadow.id)})
			}
		}
	}
	return out
}

// neverWins returns, for each rule of rules that applies to at least one event type that on
// accepts and that on every one of them ranks below a rule that always matches and is never
// blocked (ESCALATE or SUPPRESS), such a rule, in the arbitration order byEvent.
func neverWins(byEvent *[eventTypeCount][]ruleSlot, rules []*rule, always map[*rule]bool, on func(EventType) bool) map[*rule]*rule {
	out := make(map[*rule]*rule)
	for _, r := range rules {
		var shadow *rule
		applies, shadowedOn := 0, 0
		for t := EventType(1); t < eventTypeCount; t++ {
			if !on(t) {
				continue
			}
			slots := byEvent[t]
			idx := slices.IndexFunc(slots, func(s ruleSlot) bool { return s.r == r })
			if idx < 0 {
				continue
			}
			applies++
			for i := range idx {
				s := slots[i].r
				if always[s] && (s.cand.Action == ActionEscalate || s.cand.Action == ActionSuppress) {
					shadow = s
					shadowedOn++
					break
				}
			}
		}
		if applies > 0 && shadowedOn == applies {
			out[r] = shadow
		}
	}
	return out
}

// armRules returns the rules arm a arbitrates with, each once, in the order of its index.
func armRules(a *arm) []*rule {
	var out []*rule
	seen := make(map[*rule]bool)
	for t := EventType(1); t < eventTypeCount; t++ {
		for _, s := range a.byEvent[t] {
			if !seen[s.r] {
				seen[s.r] = true
				out = append(out, s.r)
			}
		}
	}
	return out
}

// alwaysMatching returns the rules, the bundle's and the experiment arms' replacements, whose
// condition is always true: no `when`, or a `when` that constant folding reduces to true.
// Lint compiles the conditions again to fold them; evaluation never does.
func (p *Policy) alwaysMatching() map[*rule]bool {
	rules := slices.Clone(p.rules)
	for _, e := range p.experiments {
		for _, a := range e.arms {
			rules = append(rules, a.replace...)
		}
	}
	out := make(map[*rule]bool, len(rules))
	var env *cel.Env
	var folder *cel.StaticOptimizer
	for _, r := range rules {
		if r.when == nil {
			out[r] = true
			continue
		}
		if env == nil {
			e, err := newCELEnv()
			if err != nil {
				return out // the rules compiled with this environment: not expected
			}
			f, err := cel.NewConstantFoldingOptimizer()
			if err != nil {
				return out
			}
			if folder, err = cel.NewStaticOptimizer(f); err != nil {
				return out
			}
			env = e
		}
		out[r] = constantTrue(env, folder, r.when.src)
	}
	return out
}

// constantTrue reports whether the CEL expression src folds to the constant true.
func constantTrue(env *cel.Env, folder *cel.StaticOptimizer, src string) bool {
	checked, iss := env.Compile(src)
	if iss.Err() != nil {
		return false
	}
	folded, iss := folder.Optimize(env, checked)
	if iss.Err() != nil {
		return false
	}
	e := folded.NativeRep().Expr()
	return e.Kind() == celast.LiteralKind && e.AsLiteral() == types.True
}

// promotionalWords are the words, as parts of a template ID or reason code split at '_', '-'
// and '.', that suggest a message promotes a sale. A word ending in '*' matches as a prefix.
var promotionalWords = []string{
	"promo*", "promotion*", "offer", "offers", "discount*", "deal", "deals", "sale", "sales",
	"coupon*", "voucher*", "checkout", "cart", "basket", "abandon*", "upsell*", "upgrade",
	"crosssell", "newsletter*", "winback", "recommend*", "marketing",
}

// purposeFinding returns the lint finding for a SERVICE message rule whose template or reason
// codes contain a promotional word, and false when there is none.
func purposeFinding(r *rule) (BundleError, bool) {
	c := &r.cand
	if c.Action != ActionMessage || c.Purpose != PurposeService {
		return BundleError{}, false
	}
	what, word := "", ""
	if w := promotionalWord(c.TemplateID); w != "" {
		what, word = "template "+c.TemplateID, w
	} else {
		for _, code := range c.ReasonCodes {
			if w := promotionalWord(code); w != "" {
				what, word = "reason "+code, w
				break
			}
		}
	}
	if word == "" {
		return BundleError{}, false
	}
	msg := fmt.Sprintf("rule %s has purpose SERVICE but its %s suggests promotion (%q): direct marketing needs purpose MARKETING", r.id, what, word)
	if r.purposeAck != "" {
		msg = fmt.Sprintf("rule %s has purpose SERVICE but its %s suggests promotion (%q): acknowledged: %s", r.id, what, word, r.purposeAck)
	} else {
		msg += `; if it is not marketing, say why with purpose_ack: "..."`
	}
	return BundleError{File: r.file, Line: r.line, Rule: r.id, Msg: msg}, true
}

// promotionalWord returns the first promotional word in id, or "".
func promotionalWord(id string) string {
	parts := strings.FieldsFunc(strings.ToLower(id), func(c rune) bool { return c == '_' || c == '-' || c == '.' })
	for _, p := range parts {
		for _, w := range promotionalWords {
			if pre, ok := strings.CutSuffix(w, "*"); ok {
				if strings.HasPrefix(p, pre) {
					return p
				}
			} else if p == w {
				return p
			}
		}
	}
	return ""
}
