package decision

import "time"

// recentDeclines counts the declines on any card in the 30 days before the decision.
func recentDeclines(in *Input) int {
	if in.State.Narrowed {
		return in.State.LedgerDeclines30d
	}
	return countDeclines(in.State.Ledger, in.Now)
}

// countDeclines counts the declines in entries within the 30 days before now.
func countDeclines(entries []LedgerEntry, now time.Time) int {
	n := 0
	since := now.Add(-30 * day)
	for i := range entries {
		if e := &entries[i]; e.Kind == LedgerDecline && !e.At.Before(since) {
			n++
		}
	}
	return n
}

// recentDecisions counts the customer's decisions in the 24 hours before the decision.
func recentDecisions(in *Input) int {
	if in.State.Narrowed {
		return in.State.RecentDecisions24h
	}
	return countDecisions(in.State.Recent, in.Now)
}

func countDecisions(recent []DecisionSummary, now time.Time) int {
	n := 0
	since := now.Add(-day)
	for i := range recent {
		if !recent[i].DecidedAt.Before(since) {
			n++
		}
	}
	return n
}

// recentShown is how many recent decisions an escalation context shows, and Narrow keeps.
const recentShown = 3

// NarrowedLedger says which ledger entries Narrow keeps for a decision on ev: those of the
// card cardRef when payment is set (a PAYMENT_FAILED event with a payment), else none. A store
// that decodes only those (featurestore's LoadNarrow) gives what Narrow would.
func NarrowedLedger(ev *Event) (payment bool, cardRef string) {
	if p := ev.Payment; p != nil && ev.Type == EventPaymentFailed {
		return true, p.CardRef
	}
	return false, ""
}

// RecentShown is how many recent decisions Narrow keeps, the newest.
const RecentShown = recentShown

// Narrow keeps of in.State only what a decision on in reads, after counting what rules and
// escalation contexts read of the rest: the declines on any card in the 30 days before in.Now
// (recent.declines_30d, open_payment_failures) and the decisions in the 24 hours before it
// (recent.decisions_24h). Every retry limit is per card: a PAYMENT_FAILED event with a payment
// keeps its card's ledger entries, any other event none. Recent keeps the newest three, which
// escalation contexts show.
//
// The decision on the narrowed input is the same as on the whole state, but its cost and the
// size of its record no longer grow with the customer's history. Narrow filters in place,
// reusing the state's storage, and does nothing to a state narrowed before.
func Narrow(in *Input) {
	st := &in.State
	if st.Narrowed {
		return
	}
	st.Narrowed = true
	st.LedgerDeclines30d = countDeclines(st.Ledger, in.Now)
	st.RecentDecisions24h = countDecisions(st.Recent, in.Now)
	if len(st.Recent) > recentShown {
		clear(st.Recent[recentShown:])
		st.Recent = st.Recent[:recentShown:recentShown]
	}
	payment, card := NarrowedLedger(&in.Event)
	if !payment {
		st.Ledger = nil
		return
	}
	kept := st.Ledger[:0]
	for _, e := range st.Ledger {
		if e.CardRef == card {
			kept = append(kept, e)
		}
	}
	clear(st.Ledger[len(kept):])
	st.Ledger = kept
	if len(kept) == 0 {
		st.Ledger = nil
	}
}
