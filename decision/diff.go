package decision

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Diff is how the decisions on a set of inputs change from one policy to another.
type Diff struct {
	Total   int // inputs evaluated
	Changed int // inputs whose action, detail or reason codes differ
	// Actions counts transitions "OLD -> NEW" by action, for every input (unchanged ones as
	// "MESSAGE -> MESSAGE").
	Actions map[string]int
	// ReasonsAdded and ReasonsRemoved count reason codes that appear in (disappear from) the
	// new decision.
	ReasonsAdded   map[string]int
	ReasonsRemoved map[string]int
	// Examples are the first changed decisions, at most the limit given to DiffPolicies.
	Examples []DiffExample
}

// DiffExample is one input whose decision changed.
type DiffExample struct {
	EventID   string
	EventType string
	Old, New  string // one-line summaries: action, detail and reason codes
}

// DiffPolicies decides every input under old and new and reports the differences, with up to
// examples changed decisions.
func DiffPolicies(ctx context.Context, old, new *Policy, inputs []*Input, examples int) (*Diff, error) {
	d := &Diff{Actions: map[string]int{}, ReasonsAdded: map[string]int{}, ReasonsRemoved: map[string]int{}}
	for _, in := range inputs {
		a, err := old.Decide(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("decide %s under %s: %w", in.Event.ID, old.Ref().Version, err)
		}
		b, err := new.Decide(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("decide %s under %s: %w", in.Event.ID, new.Ref().Version, err)
		}
		d.Total++
		d.Actions[bundleActionName(a.Action)+" -> "+bundleActionName(b.Action)]++
		ac, bc := reasonCodes(a), reasonCodes(b)
		for _, c := range bc {
			if !slices.Contains(ac, c) {
				d.ReasonsAdded[c]++
			}
		}
		for _, c := range ac {
			if !slices.Contains(bc, c) {
				d.ReasonsRemoved[c]++
			}
		}
		sa, sb := summarize(a, in.Now), summarize(b, in.Now)
		if sa == sb {
			continue
		}
		d.Changed++
		if len(d.Examples) < examples {
			d.Examples = append(d.Examples, DiffExample{EventID: in.Event.ID, EventType: bundleEventTypeName(in.Event.Type), Old: sa, New: sb})
		}
	}
	return d, nil
}

func reasonCodes(r *Result) []string {
	out := make([]string, 0, len(r.Reasons))
	for _, x := range r.Reasons {
		out = append(out, x.Code)
	}
	slices.Sort(out)
	return out
}

// summarize is a one-line view of a decision for comparisons and examples.
func summarize(r *Result, now time.Time) string {
	var b strings.Builder
	b.WriteString(bundleActionName(r.Action))
	switch {
	case r.Message != nil:
		fmt.Fprintf(&b, " %s/%s", bundleChannelName(r.Message.Channel), r.Message.TemplateID)
		if d := r.Message.SendAt.Sub(now); d > 0 {
			fmt.Fprintf(&b, " in %s", d)
		}
	case r.Escalate != nil:
		fmt.Fprintf(&b, " %s", r.Escalate.Queue)
	case r.Retry != nil:
		fmt.Fprintf(&b, " in %s via %q", r.Retry.NotBefore.Sub(now), r.Retry.Acquirer)
	}
	fmt.Fprintf(&b, " [%s]", strings.Join(reasonCodes(r), ","))
	return b.String()
}

// String renders the diff as a report: totals, transitions, reason changes and examples.
func (d *Diff) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d decisions, %d changed\n\nactions (old -> new):\n", d.Total, d.Changed)
	writeCounts(&b, d.Actions)
	if len(d.ReasonsAdded) > 0 {
		b.WriteString("\nreasons added:\n")
		writeCounts(&b, d.ReasonsAdded)
	}
	if len(d.ReasonsRemoved) > 0 {
		b.WriteString("\nreasons removed:\n")
		writeCounts(&b, d.ReasonsRemoved)
	}
	if len(d.Examples) > 0 {
		b.WriteString("\nexamples:\n")
		for _, e := range d.Examples {
			fmt.Fprintf(&b, "  %s (%s)\n    old: %s\n    new: %s\n", e.EventID, e.EventType, e.Old, e.New)
		}
	}
	return b.String()
}

// writeCounts writes counts, largest first.
func writeCounts(b *strings.Builder, m map[string]int) {
	keys := slices.Collect(maps.Keys(m))
	slices.SortFunc(keys, func(x, y string) int {
		if c := cmp.Compare(m[y], m[x]); c != 0 {
			return c
		}
		return strings.Compare(x, y)
	})
	for _, k := range keys {
		fmt.Fprintf(b, "  %6d  %s\n", m[k], k)
	}
}

// CodeChanges returns the distinct reason codes of after that are not in before (added) and
// those of before that are not in after (removed), each in order of first appearance.
func CodeChanges(before, after []string) (added, removed []string) {
	return codesNotIn(after, before), codesNotIn(before, after)
}

func codesNotIn(a, b []string) []string {
	var out []string
	for _, c := range a {
		if !slices.Contains(b, c) && !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	return out
}
