package decision

import (
	"fmt"
	"strings"
)

// describeResult renders a result for failure messages.
func describeResult(r *Result) string {
	if r == nil {
		return "<nil result>"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "action %s", bundleActionName(r.Action))
	if m := r.Message; m != nil {
		fmt.Fprintf(&b, " channel %s template %s send_at %s fallback %v", bundleChannelName(m.Channel), m.TemplateID, m.SendAt.UTC().Format("2006-01-02T15:04Z"), m.FallbackChannels)
	}
	if e := r.Escalate; e != nil {
		fmt.Fprintf(&b, " queue %s context %v", e.Queue, e.Context)
	}
	if rt := r.Retry; rt != nil {
		fmt.Fprintf(&b, " not_before %s acquirer %s", rt.NotBefore.UTC().Format("2006-01-02T15:04Z"), rt.Acquirer)
	}
	for _, rs := range r.Reasons {
		fmt.Fprintf(&b, "\n  %s (%s) %s", rs.Code, rs.RuleID, rs.Message)
	}
	return b.String()
}
