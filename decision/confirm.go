package decision

import "time"

// ConfirmValidity is how long after its send time (MESSAGE) or not_before (RETRY) a decision
// may still be executed; Confirm answers EXPIRED after it.
const ConfirmValidity = 24 * time.Hour

// Pending is a MESSAGE or RETRY decision as it was handed out, awaiting execution.
type Pending struct {
	DecisionID string
	EventType  EventType
	Action     Action
	DecidedAt  time.Time
	// Channel, Purpose and SendAt are a MESSAGE's.
	Channel Channel
	Purpose Purpose
	SendAt  time.Time
	// NotBefore is a RETRY's.
	NotBefore time.Time
	// Paid is set when the payment was made or the retry approved since the decision (an
	// outcome PAID or RETRY_APPROVED, or a retry's ledger entry cleared by a payment).
	Paid bool
}

// Recheck re-checks pd, which was decided on in's event and customer, against the customer's
// state now (in.State, in.Now): the guardrails that a change since the decision can break. It
// returns the reasons not to execute pd, or nil when it may go ahead. Like the guardrails it
// fails closed: an action other than MESSAGE or RETRY, or a message whose customer's zone is
// unknown, is not confirmed.
func (p *Policy) Recheck(in *Input, pd *Pending) []Reason {
	g := p.guards
	var out []Reason
	add := func(code, rule, why string) { out = append(out, Reason{Code: code, Message: why, RuleID: rule}) }
	due := pd.SendAt
	if pd.Action == ActionRetry {
		due = pd.NotBefore
	}
	if due.IsZero() {
		due = pd.DecidedAt
	}
	if in.Now.After(due.Add(ConfirmValidity)) {
		add(CodeExpired, "", "more than "+ConfirmValidity.String()+" past its time")
	}
	if pd.Paid {
		add(CodeAlreadyPaid, "", "paid or approved since the decision")
	}
	for _, r := range in.State.Recent {
		if r.DecisionID != pd.DecisionID && r.EventType == pd.EventType && r.DecidedAt.After(pd.DecidedAt) {
			add(CodeSuperseded, "", "decision "+r.DecisionID+" replaced it")
			break
		}
	}
	f := g.facts(in)
	switch pd.Action {
	case ActionMessage:
		pu, restricted := strictPurpose(pd.Purpose)
		if f.optedOut && pu != PurposeSecurity {
			add(CodeOptedOut, grOptOut, "customer opted out")
		}
		if !g.consent(in, pd.Channel, pu) {
			add(CodeNoConsent, grConsent, "no consent for "+pu.name()+" on "+pd.Channel.name())
		}
		if f.vulnerable && restricted {
			add(CodeVulnerableCustomer, grVulnerable, "vulnerable customer: no automated "+pu.name()+" message")
		}
		if f.fraudHold && restricted {
			add(CodeFraudHold, grFraudHold, "fraud hold: no "+pu.name()+" message")
		}
		if pu != PurposeSecurity {
			if f.loc == nil {
				add(CodeTimezoneUnknown, grTimezone, "timezone unknown or invalid: no message now")
			} else if _, quiet := g.quiet[pu].deferFrom(latest(in.Now, pd.SendAt), f.loc); quiet {
				// At the send time when it is still ahead: an executor that confirms a deferred
				// message a little early sends it at send_at, not now.
				add(CodeQuietHours, grQuietHours, "quiet hours now")
			}
		}
	case ActionRetry:
		if f.vulnerable {
			add(CodeVulnerableCustomer, grVulnerable, "vulnerable customer: no automated retry")
		}
		if f.fraudHold {
			add(CodeFraudHold, grFraudHold, "fraud hold: no automated retry")
		}
		if pay := in.Event.Payment; pay != nil {
			if i := retryStopCheck(pay, in.Now).index(in.State.Stops); i >= 0 {
				add(CodeRetryStopped, grPayments, "retries stopped for the credential ("+in.State.Stops[i].ReasonCode+")")
			}
		}
	default:
		add(CodeRetryNotApplicable, "", "only MESSAGE and RETRY decisions are confirmed")
	}
	return out
}

// latest returns the later of a and b.
func latest(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
