package decision

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// This file holds the test harness of the guardrails: a minimal engine that runs hand-built
// candidates through the guardrails in the engine's order (facts, mandatory, apply,
// arbitration, effects), and an in-memory store that applies Effects the way the real stores
// do, re-checking every cap and ledger check first.

func mustGuardrails(t testing.TB, gc GuardrailConfig, pc PaymentConfig) *guardrails {
	t.Helper()
	g, err := newGuardrails(gc, pc)
	if err != nil {
		t.Fatalf("newGuardrails() = %v, want no error", err)
	}
	return g
}

// actionRank is the documented tie-break between candidates of equal priority.
func actionRank(a Action) int {
	switch a {
	case ActionEscalate:
		return 4
	case ActionRetry:
		return 3
	case ActionMessage:
		return 2
	case ActionSuppress:
		return 1
	}
	return 0
}

// simDecide decides in with the candidates cands (copied), as the engine does.
func simDecide(g *guardrails, in *Input, cands []Candidate) *Result {
	f := g.facts(in)
	cs := slices.Clone(cands)
	for i := range cs {
		cs[i].Order = i
	}
	if m := g.mandatory(in, &f); m != nil {
		cs = append(cs, *m)
	}
	var tr *Explanation
	if in.Explain {
		tr = &Explanation{}
	}
	for i := range cs {
		g.apply(in, &f, &cs[i], tr)
	}
	var w *Candidate
	for i := range cs {
		c := &cs[i]
		if c.Blocked {
			continue
		}
		if w == nil || c.Priority > w.Priority ||
			(c.Priority == w.Priority && actionRank(c.Action) > actionRank(w.Action)) ||
			(c.Priority == w.Priority && c.Action == w.Action && c.Order < w.Order) {
			w = c
		}
	}
	res := &Result{Explanation: tr}
	if w == nil {
		res.Action, res.Suppress = ActionSuppress, &Suppress{}
		for _, c := range cs {
			res.Reasons = append(res.Reasons, c.Reasons...)
		}
	} else {
		res.Action, res.Retry, res.Message, res.Escalate, res.Suppress = w.Action, w.Retry, w.Message, w.Escalate, w.Suppress
		for _, code := range w.ReasonCodes {
			res.Reasons = append(res.Reasons, Reason{Code: code, RuleID: w.RuleID})
		}
		res.Reasons = append(res.Reasons, w.Reasons...)
	}
	g.effects(in, &f, res)
	return res
}

// codes returns the reason codes of rs.
func codes(rs []Reason) []string {
	out := make([]string, 0, len(rs))
	for _, r := range rs {
		out = append(out, r.Code)
	}
	return out
}

// simStore applies decisions' Effects and outcomes to one customer's State.
type simStore struct {
	st   State
	next int
}

// commit applies eff as the store would: every check must hold first.
func (s *simStore) commit(eff Effects) error {
	if eff.Message != nil {
		for _, c := range eff.CapChecks {
			if n := c.Count(s.st.Messages); n >= c.Limit {
				return fmt.Errorf("cap check %s: %d >= %d", c.Name, n, c.Limit)
			}
		}
	}
	for _, c := range eff.LedgerChecks {
		if n := c.Count(s.st.Ledger); n >= c.Limit {
			return fmt.Errorf("ledger check %s: %d >= %d", c.Name, n, c.Limit)
		}
	}
	for _, c := range eff.StopChecks {
		if c.Blocks(s.st.Stops) {
			return fmt.Errorf("stop check %s: a stop is in force", c.Name)
		}
	}
	if eff.Message != nil {
		s.next++
		m := *eff.Message
		m.DecisionID = fmt.Sprint("d", s.next)
		s.st.Messages = append(s.st.Messages, m)
	}
	s.st.Ledger = append(s.st.Ledger, eff.Ledger...)
	s.st.Stops = append(s.st.Stops, eff.Stops...)
	for _, fu := range eff.Features {
		if s.st.Features == nil {
			s.st.Features = map[string]any{}
		}
		if fu.Value == nil {
			delete(s.st.Features, fu.Name)
		} else {
			s.st.Features[fu.Name] = fu.Value
		}
	}
	return nil
}

// record adds a decision to the recent decisions, newest first, keeping as many as the
// stores do.
func (s *simStore) record(d DecisionSummary) {
	s.st.Recent = slices.Insert(s.st.Recent, 0, d)
	if len(s.st.Recent) > 20 {
		s.st.Recent = s.st.Recent[:20]
	}
}

// outcome applies the effects of an outcome.
func (s *simStore) outcome(oe OutcomeEffects) {
	if m := oe.ReleaseMessage; m != nil {
		if i := slices.IndexFunc(s.st.Messages, func(x SentMessage) bool {
			return x.Channel == m.Channel && x.Purpose == m.Purpose && x.At.Equal(m.At)
		}); i >= 0 {
			s.st.Messages = slices.Delete(s.st.Messages, i, i+1)
		}
	}
	if fc := oe.FailChannel; fc != nil {
		s.st.FailingChannels = append(s.st.FailingChannels, *fc)
	}
	if r := oe.ResetLedger; r != nil {
		s.st.Ledger = slices.DeleteFunc(s.st.Ledger, func(e LedgerEntry) bool { return e.CardRef == r.CardRef })
	}
}

// expire drops what the store's windows no longer hold at now.
func (s *simStore) expire(now time.Time) {
	month := now.Add(-31 * day)
	s.st.Messages = slices.DeleteFunc(s.st.Messages, func(m SentMessage) bool { return m.At.Before(month) })
	s.st.Ledger = slices.DeleteFunc(s.st.Ledger, func(e LedgerEntry) bool { return e.At.Before(month) })
	s.st.Stops = slices.DeleteFunc(s.st.Stops, func(r RetryStop) bool { return !r.Until.After(now) })
	s.st.FailingChannels = slices.DeleteFunc(s.st.FailingChannels, func(c ChannelFailure) bool { return !c.Until.After(now) })
}

// clone returns a copy of the state that later commits do not change.
func (s *simStore) clone() State {
	st := s.st
	st.Messages = slices.Clone(st.Messages)
	st.Ledger = slices.Clone(st.Ledger)
	st.Stops = slices.Clone(st.Stops)
	st.FailingChannels = slices.Clone(st.FailingChannels)
	st.Recent = slices.Clone(st.Recent)
	st.Features = make(map[string]any, len(s.st.Features))
	for k, v := range s.st.Features {
		st.Features[k] = v
	}
	return st
}
