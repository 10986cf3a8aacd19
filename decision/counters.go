package decision

import "time"

// Counters returns the policy's frequency caps as counters over the reserved messages of st
// at now: the values a decision made at now would read. A deferred message (at after now)
// counts in every window, as it does for decisions. The server shows them in
// GetCustomerState.
func (p *Policy) Counters(st State, now time.Time) []CounterValue {
	caps := p.guards.capList
	out := make([]CounterValue, len(caps))
	for i := range caps {
		c := &caps[i]
		out[i] = CounterValue{Name: c.check.Name, Channel: c.check.Channel, Purposes: c.check.Purposes,
			Window: c.window, Limit: c.check.Limit}
	}
	for j := range st.Messages {
		m := &st.Messages[j]
		age := now.Sub(m.At)
		for i := range caps {
			if c := &caps[i]; age <= c.window && c.check.Matches(*m) {
				out[i].Count++
			}
		}
	}
	return out
}
