package console

import (
	"cmp"
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"

	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
)

// MixMinutes is how many minutes of decisions the Mix keeps.
const MixMinutes = 15

// Mix counts the decisions served per minute for the console: actions, reasons, guardrail
// blocks and degraded answers, over the last MixMinutes minutes. It is fed by its gRPC
// interceptor, so it sees every Decide however it came (gRPC, gRPC-Web, Connect). Safe for
// concurrent use; one short lock per decision.
type Mix struct {
	mu      sync.Mutex
	minutes [MixMinutes]mixMinute
}

type mixMinute struct {
	start     int64 // Unix minute
	total     int
	degraded  int
	guardrail int
	actions   map[arbiterv1.Action]int
	reasons   map[string]int
}

// NewMix returns an empty Mix.
func NewMix() *Mix { return &Mix{} }

// UnaryInterceptor counts every successful Decide answer (replays and dry runs included, as
// served).
func (m *Mix) UnaryInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		resp, err := handler(ctx, req)
		if d, ok := resp.(*arbiterv1.DecideResponse); ok && err == nil {
			m.Add(time.Now(), d)
		}
		return resp, err
	}
}

// Add counts d as served at now.
func (m *Mix) Add(now time.Time, d *arbiterv1.DecideResponse) {
	minute := now.Unix() / 60
	m.mu.Lock()
	defer m.mu.Unlock()
	b := &m.minutes[minute%MixMinutes]
	if b.start > minute {
		return // older than the window this slot holds now
	}
	if b.start != minute {
		*b = mixMinute{start: minute, actions: map[arbiterv1.Action]int{}, reasons: map[string]int{}}
	}
	b.total++
	b.actions[d.GetAction()]++
	if d.GetDegraded() {
		b.degraded++
	}
	blocked := false
	for _, r := range d.GetReasons() {
		b.reasons[r.GetCode()]++
		blocked = blocked || strings.HasPrefix(r.GetRuleId(), "guardrail:")
	}
	if blocked {
		b.guardrail++
	}
}

// MixRow is one minute of the mix.
type MixRow struct {
	Minute                     time.Time
	Total, Degraded, Guardrail int
	Retry, Message, Escalate   int
	Suppress                   int
	TopReasons                 []ReasonCount
}

// ReasonCount is a reason code and how many decisions gave it.
type ReasonCount struct {
	Code  string
	Count int
}

// Snapshot returns the minutes with decisions, newest first, as of now.
func (m *Mix) Snapshot(now time.Time) []MixRow {
	cur := now.Unix() / 60
	m.mu.Lock()
	defer m.mu.Unlock()
	rows := make([]MixRow, 0, MixMinutes)
	for _, b := range m.minutes {
		if b.total == 0 || cur-b.start >= MixMinutes {
			continue
		}
		row := MixRow{Minute: time.Unix(b.start*60, 0).UTC(), Total: b.total, Degraded: b.degraded, Guardrail: b.guardrail,
			Retry: b.actions[arbiterv1.Action_ACTION_RETRY], Message: b.actions[arbiterv1.Action_ACTION_MESSAGE],
			Escalate: b.actions[arbiterv1.Action_ACTION_ESCALATE], Suppress: b.actions[arbiterv1.Action_ACTION_SUPPRESS]}
		for code, n := range b.reasons {
			row.TopReasons = append(row.TopReasons, ReasonCount{code, n})
		}
		slices.SortFunc(row.TopReasons, func(a, b ReasonCount) int {
			return cmp.Or(cmp.Compare(b.Count, a.Count), strings.Compare(a.Code, b.Code))
		})
		row.TopReasons = row.TopReasons[:min(3, len(row.TopReasons))]
		rows = append(rows, row)
	}
	slices.SortFunc(rows, func(a, b MixRow) int { return b.Minute.Compare(a.Minute) })
	return rows
}
