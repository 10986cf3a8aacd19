package decision

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ReasonNoRuleMatched is the reason of a SUPPRESS when no rule of the policy proposed an
// action for the event. Its rule_id is "engine".
const ReasonNoRuleMatched = "NO_RULE_MATCHED"

// ErrNilInput is returned by Decide for a nil Input.
var ErrNilInput = errors.New("decide: nil input")

// Decide evaluates in under the policy and returns one action with its reasons, the policy
// ref, the state changes to commit and, when in.Explain is set, the explanation.
//
// The flow: the guardrails work out the facts of the decision; the rules indexed for the
// event type are evaluated in arbitration order (priority, then action rank ESCALATE > RETRY
// > MESSAGE > SUPPRESS, then position in the bundle, then rule id); each matching rule's
// candidate, and any candidate a guardrail requires, passes through the guardrails; the first
// candidate they leave standing wins. Without Explain, evaluation stops at the winner, so a
// decision costs only the rules that rank above it. When the guardrails leave nothing, the
// answer is SUPPRESS with every reason that applied.
//
// When the event type is in one of the bundle's experiments and the customer has an id, the
// customer's arm (see Assign) decides with its own rules, the guardrails unchanged, and
// Result.Experiment names it; in the holdout a MESSAGE or RETRY becomes SUPPRESS with
// CodeExperimentHoldout (docs/experiments.md).
//
// Decide honours ctx: it checks for cancellation before each CEL program it runs, and rules
// that iterate are interrupted. A rule whose condition fails to evaluate (for example a
// missing feature read without has) does not match; the explanation records the error.
func (p *Policy) Decide(ctx context.Context, in *Input) (*Result, error) {
	if in == nil {
		return nil, ErrNilInput
	}
	s := p.scratch.Get().(*scratch)
	defer p.release(s)
	p.guards.fill(in, &s.f)
	s.act.reset(in, &s.f)

	var tr *Explanation
	if in.Explain {
		tr = &Explanation{}
	}
	var slots []ruleSlot
	var arm *arm
	if in.Event.Type < eventTypeCount {
		slots = p.byEvent[in.Event.Type]
		if e := p.expByEvent[in.Event.Type]; e != nil {
			// An experiment applies: the customer's arm decides with its own rules, if any.
			if arm = e.assign(in.Customer.ID); arm != nil && arm.byEvent != nil {
				slots = arm.byEvent[in.Event.Type]
			}
		}
	}
	s.act.arm = arm
	var mand Candidate
	hasMand := false
	if m := p.guards.mandatory(in, &s.f); m != nil {
		mand, hasMand = *m, true
		mand.Order = -1 // a required candidate wins ties
	}
	best := -1
	for k := range slots {
		sl := &slots[k]
		if sl.guarded && !sl.admits(&s.act) {
			// The rule's first guard fails: it cannot match. Rules skipped here propose
			// nothing, so the required candidate is still placed correctly below.
			if tr != nil {
				tr.Rules = append(tr.Rules, RuleTrace{RuleID: sl.r.id})
			}
			continue
		}
		r := sl.r
		if hasMand && compareCandidates(&mand, &r.cand) <= 0 {
			hasMand = false
			if i := s.add(&mand); p.consider(in, s, i, tr) && tr == nil {
				best = i
				break
			}
		}
		matched := true
		var evalErr error
		if r.when != nil {
			matched, evalErr = r.when.eval(ctx, &s.act)
			if evalErr != nil {
				if err := ctx.Err(); err != nil {
					return nil, fmt.Errorf("policy %s: rule %s: %w", p.ref.ID, r.id, err)
				}
				matched = false
			}
		}
		if tr != nil {
			rt := RuleTrace{RuleID: r.id, Matched: matched}
			if evalErr != nil {
				rt.Error = evalErr.Error()
			}
			tr.Rules = append(tr.Rules, rt)
		}
		if !matched {
			continue
		}
		if i := s.add(&r.cand); p.consider(in, s, i, tr) && tr == nil {
			best = i
			break
		}
	}
	if best < 0 && hasMand {
		s.add(&mand)
		p.consider(in, s, len(s.cands)-1, tr)
	}
	if best < 0 {
		best = s.best()
	}
	res := p.result(in, s, best)
	res.Explanation = tr
	withheld := ActionUnspecified
	if arm != nil {
		res.Experiment = ExperimentArm{ID: arm.exp.id, Arm: arm.name}
		if arm.holdout {
			var w *Candidate
			if best >= 0 {
				w = &s.cands[best]
			}
			withheld = withhold(res, w, arm.exp.id)
		}
	}
	p.guards.effects(in, &s.f, res)
	if tr != nil {
		p.explain(in, s, best, res)
		if arm != nil {
			tr.Summary += experimentSummary(arm, withheld)
		}
	}
	return res, nil
}

// consider passes candidate i through the guardrails and resolves what they leave to the
// engine. It reports whether the candidate survived.
func (p *Policy) consider(in *Input, s *scratch, i int, tr *Explanation) bool {
	c := &s.cands[i]
	p.guards.apply(in, &s.f, c, tr)
	if c.Blocked {
		return false
	}
	// The guardrails resolve every action they let through: ESCALATE and SUPPRESS always, and
	// RETRY and MESSAGE unless something is missing, which fails closed here.
	switch {
	case c.Action == ActionRetry && c.Retry == nil:
		c.Blocked, c.Why = true, "retry not resolved by the guardrails"
	case c.Action == ActionMessage && c.Message == nil:
		c.Blocked, c.Why = true, "message not resolved by the guardrails"
	}
	return !c.Blocked
}

// compareCandidates orders candidates for arbitration: negative when a ranks before b. Higher
// priority first, then action rank (ESCALATE > RETRY > MESSAGE > SUPPRESS), then position in
// the bundle, then rule id.
func compareCandidates(a, b *Candidate) int {
	if a.Priority != b.Priority {
		return cmp.Compare(b.Priority, a.Priority)
	}
	if ra, rb := bundleActionRank(a.Action), bundleActionRank(b.Action); ra != rb {
		return cmp.Compare(rb, ra)
	}
	if a.Order != b.Order {
		return cmp.Compare(a.Order, b.Order)
	}
	return strings.Compare(a.RuleID, b.RuleID)
}

// resultBlock holds a Result with room for its usual reasons and detail, so that a decision
// allocates its answer once.
type resultBlock struct {
	res     Result
	reasons [4]Reason
	esc     Escalate
	sup     Suppress
}

// reasonSlice returns an empty slice for n reasons, in the block when they fit.
func (b *resultBlock) reasonSlice(n int) []Reason {
	if n <= len(b.reasons) {
		return b.reasons[:0]
	}
	return make([]Reason, 0, n)
}

// result builds the Result for the winning candidate (best < 0: none survived).
func (p *Policy) result(in *Input, s *scratch, best int) *Result {
	blk := &resultBlock{}
	res := &blk.res
	res.Policy = p.ref
	if best < 0 {
		n := 0
		for i := range s.cands {
			n += len(s.cands[i].ReasonCodes) + len(s.cands[i].Reasons)
		}
		res.Action = ActionSuppress
		res.Suppress = &blk.sup
		res.Reasons = blk.reasonSlice(n + 1)
		for i := range s.cands {
			c := &s.cands[i]
			for _, code := range c.ReasonCodes {
				res.Reasons = addReason(res.Reasons, Reason{Code: code, RuleID: c.RuleID})
			}
			for _, r := range c.Reasons {
				res.Reasons = addReason(res.Reasons, r)
			}
		}
		if len(res.Reasons) == 0 {
			res.Reasons = append(res.Reasons, Reason{Code: ReasonNoRuleMatched, Message: "no rule of the policy applies", RuleID: "engine"})
		}
		return res
	}
	w := &s.cands[best]
	n := len(w.ReasonCodes) + len(w.Reasons)
	for i := range s.cands {
		if c := &s.cands[i]; c.Blocked && compareCandidates(c, w) < 0 {
			n += len(c.Reasons)
		}
	}
	res.Action = w.Action
	res.Retry, res.Message, res.Escalate, res.Suppress = w.Retry, w.Message, w.Escalate, w.Suppress
	res.Reasons = blk.reasonSlice(n + 1) // +1: the decline-class reason effects may add
	for _, code := range w.ReasonCodes {
		res.Reasons = addReason(res.Reasons, Reason{Code: code, RuleID: w.RuleID})
	}
	for _, r := range w.Reasons {
		res.Reasons = addReason(res.Reasons, r)
	}
	// Why a better action did not happen: the guardrail reasons of the candidates that
	// outranked the winner and were blocked.
	for i := range s.cands {
		if c := &s.cands[i]; c.Blocked && compareCandidates(c, w) < 0 {
			for _, r := range c.Reasons {
				res.Reasons = addReason(res.Reasons, r)
			}
		}
	}
	if res.Action == ActionEscalate {
		// A fresh detail: the rule's own context map is shared and read-only.
		blk.esc = *res.Escalate
		blk.esc.Context = escalateContext(in, &s.f, w, blk.esc.Context)
		res.Escalate = &blk.esc
	}
	return res
}

// addReason appends r unless a reason with its code is already there.
func addReason(rs []Reason, r Reason) []Reason {
	for _, have := range rs {
		if have.Code == r.Code {
			return rs
		}
	}
	return append(rs, r)
}

// escalateContext is what an agent needs to pick up the case: the event, the rule's own
// context, the payment failure, the well-known features and the recent history. It holds
// ids, codes and numbers only, never personal data.
func escalateContext(in *Input, f *facts, w *Candidate, own map[string]string) map[string]string {
	m := make(map[string]string, 8) // one group: most contexts have 6 to 8 keys
	for k, v := range own {
		m[k] = v
	}
	m["event_type"] = bundleEventTypeName(in.Event.Type)
	m["event_id"] = in.Event.ID
	if w.RuleID != "" {
		m["rule"] = w.RuleID
	}
	if p := in.Event.Payment; p != nil {
		m["decline_code"] = p.DeclineCode
		if c := factsClass(f); c != ClassNone {
			m["decline_class"] = declineClassName(c)
		}
		m["amount"] = strconv.FormatInt(p.AmountMinor, 10) + " " + p.Currency
	}
	for _, k := range []string{"days_past_due", "risk_score", "hardship", "vulnerable", "fraud_hold"} {
		if v, ok := in.State.Features[k]; ok && v != nil {
			m[k] = featureString(v)
		}
	}
	if in.Customer.Vulnerable {
		m["vulnerable"] = "true"
	}
	m["open_payment_failures"] = strconv.Itoa(recentDeclines(in))
	if len(in.State.Recent) > 0 {
		var b strings.Builder
		for i, d := range in.State.Recent {
			if i == recentShown {
				break
			}
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(d.DecidedAt.UTC().Format(time.DateOnly))
			b.WriteByte(' ')
			b.WriteString(bundleEventTypeName(d.EventType))
			b.WriteString(": ")
			b.WriteString(bundleActionName(d.Action))
		}
		m["recent_decisions"] = b.String()
	}
	return m
}

// featureString formats a stored feature value for an agent.
func featureString(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case bool:
		return strconv.FormatBool(v)
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case int:
		return strconv.Itoa(v)
	case int64:
		return strconv.FormatInt(v, 10)
	}
	return fmt.Sprint(v)
}

// scratch is the pooled working memory of one decision.
type scratch struct {
	act   activation
	f     facts
	cands []Candidate
}

func newScratch(p *Policy) *scratch {
	return &scratch{act: activation{consts: p.consts, adapter: p.adapter}, cands: make([]Candidate, 0, 16)}
}

// add appends a copy of c, reusing the pooled reasons slice of the slot.
func (s *scratch) add(c *Candidate) int {
	n := len(s.cands)
	var reasons []Reason
	if n < cap(s.cands) {
		reasons = s.cands[:n+1][n].Reasons[:0]
	}
	s.cands = append(s.cands, *c)
	s.cands[n].Reasons = append(reasons, c.Reasons...)
	return n
}

// best returns the index of the best surviving candidate, or -1.
func (s *scratch) best() int {
	best := -1
	for i := range s.cands {
		if c := &s.cands[i]; !c.Blocked && (best < 0 || compareCandidates(c, &s.cands[best]) < 0) {
			best = i
		}
	}
	return best
}

func (p *Policy) release(s *scratch) {
	s.act.reset(nil, nil) // s.f is refilled by the next decision and keeps its memory
	if cap(s.cands) > 256 {
		return // let an unusually large scratch go
	}
	for i := range s.cands {
		r := s.cands[i].Reasons[:0]
		clear(r[:cap(r)])
		s.cands[i] = Candidate{Reasons: r}
	}
	s.cands = s.cands[:0]
	p.scratch.Put(s)
}

// ruleSlot is a rule in an event type's index, with its first guard inline so that skipping
// a rule that cannot match reads only this contiguous array.
type ruleSlot struct {
	r       *rule
	guarded bool
	v       celVar
	val     string   // the guard's value when it has one
	vals    []string // the guard's values when it has several
}

func newRuleSlot(r *rule) ruleSlot {
	sl := ruleSlot{r: r}
	if r.when != nil && len(r.when.guards) > 0 {
		g := r.when.guards[0]
		sl.guarded, sl.v = true, g.v
		if len(g.vals) == 1 {
			sl.val = g.vals[0]
		} else {
			sl.vals = g.vals
		}
	}
	return sl
}

func (sl *ruleSlot) admits(a *activation) bool {
	v := a.stringOf(sl.v)
	if sl.vals == nil {
		return v == sl.val
	}
	for _, x := range sl.vals {
		if x == v {
			return true
		}
	}
	return false
}
