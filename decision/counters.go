package decision

import "time"

// Counters returns the policy's frequency caps as counters over the reserved messages of st
// at now: the values a decision made at now would read. A deferred message (at after now)
// counts in every window, as it does for decisions. The server shows them in
// GetCustomerState.
func (p *Policy) Counters(st State, now time.Time) []CounterValue {
	return p.guards.countCaps(nil, st.Messages, now)
}
