package decision

import "time"

// guardrails are the compliance and card-network rules that no policy can switch off.
//
// TODO(guardrails): replaced by the real guardrails.
type guardrails struct{}

// facts are what the guardrails work out once per decision.
type facts struct {
	loc *time.Location
}

func (g *guardrails) facts(in *Input) facts { return facts{loc: time.UTC} }

// mandatory returns a candidate the guardrails require (for example an escalation for a
// vulnerable customer), or nil.
func (g *guardrails) mandatory(in *Input, f *facts) *Candidate { return nil }

// apply resolves c's detail and blocks or modifies it, recording verdicts in tr when tr is set.
func (g *guardrails) apply(in *Input, f *facts, c *Candidate, tr *Explanation) {
	switch c.Action {
	case ActionRetry:
		c.Retry = &Retry{NotBefore: in.Now.Add(c.Delay), Attempt: 1}
		if in.Event.Payment != nil {
			c.Retry.Acquirer = in.Event.Payment.Acquirer
		}
	}
}

// effects fills res.Effects for the winning action.
func (g *guardrails) effects(in *Input, f *facts, res *Result) {
	if p := in.Event.Payment; p != nil && in.Event.Type == EventPaymentFailed {
		e := LedgerEntry{Kind: LedgerDecline, EventID: in.Event.ID, CardRef: p.CardRef, MerchantID: p.MerchantID,
			AmountMinor: p.AmountMinor, Currency: p.Currency, Initiator: p.Initiator, Network: p.Network, At: in.Now}
		res.Effects.Ledger = append(res.Effects.Ledger, e)
		if res.Action == ActionRetry {
			e.Kind = LedgerRetry
			res.Effects.Ledger = append(res.Effects.Ledger, e)
		}
	}
}

// outcome returns the state changes of an outcome.
func (g *guardrails) outcome(in *Input, res *Result, o Outcome, now time.Time) OutcomeEffects {
	return OutcomeEffects{}
}
