package console

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
)

func TestDiffText(t *testing.T) {
	for _, tc := range []struct {
		name, a, b string
		want       []diffLine
	}{
		{"same", "x\ny\n", "x\ny\n", []diffLine{{" ", "x"}, {" ", "y"}}},
		{"changed line", "id: p\naction: MESSAGE\nprio: 1\n", "id: p\naction: ESCALATE\nprio: 1\n",
			[]diffLine{{" ", "id: p"}, {"-", "action: MESSAGE"}, {"+", "action: ESCALATE"}, {" ", "prio: 1"}}},
		{"added file", "", "a\n", []diffLine{{"+", "a"}}},
		{"removed tail", "a\nb\n", "a\n", []diffLine{{" ", "a"}, {"-", "b"}}},
	} {
		if diff := cmp.Diff(tc.want, diffText("f", tc.a, tc.b).Lines, cmp.AllowUnexported(diffLine{})); diff != "" {
			t.Errorf("%s: diffText (-want +got):\n%s", tc.name, diff)
		}
	}
	files := diffFiles(map[string][]byte{"a.yaml": []byte("1\n"), "same.yaml": []byte("s\n")},
		map[string][]byte{"a.yaml": []byte("2\n"), "same.yaml": []byte("s\n"), "new.yaml": []byte("n\n")})
	var names []string
	for _, f := range files {
		names = append(names, f.Name)
	}
	if diff := cmp.Diff([]string{"a.yaml", "new.yaml"}, names); diff != "" {
		t.Errorf("diffFiles names (-want +got):\n%s", diff)
	}
	long := strings.Repeat("x\n", maxDiffLines+1)
	if !diffText("big", long, "y\n").TooLong {
		t.Errorf("diffText of %d lines: TooLong false, want true", maxDiffLines+1)
	}
}

func TestMix(t *testing.T) {
	m := NewMix()
	t0 := time.Date(2026, 12, 4, 10, 0, 5, 0, time.UTC)
	guardrail := &arbiterv1.Reason{Code: "QUIET_HOURS", RuleId: "guardrail:quiet_hours"}
	m.Add(t0, &arbiterv1.DecideResponse{Action: arbiterv1.Action_ACTION_MESSAGE, Reasons: []*arbiterv1.Reason{{Code: "OVERDUE_REMINDER", RuleId: "r"}}})
	m.Add(t0.Add(time.Second), &arbiterv1.DecideResponse{Action: arbiterv1.Action_ACTION_SUPPRESS, Reasons: []*arbiterv1.Reason{guardrail}})
	m.Add(t0.Add(time.Minute), &arbiterv1.DecideResponse{Action: arbiterv1.Action_ACTION_ESCALATE, Degraded: true,
		Reasons: []*arbiterv1.Reason{{Code: "STORE_UNAVAILABLE", RuleId: "guardrail:store"}}})
	// A minute that fell out of the window is not shown, and its slot is reused.
	m.Add(t0.Add(-MixMinutes*time.Minute), &arbiterv1.DecideResponse{Action: arbiterv1.Action_ACTION_RETRY})

	got := m.Snapshot(t0.Add(time.Minute + time.Second))
	want := []MixRow{
		{Minute: time.Date(2026, 12, 4, 10, 1, 0, 0, time.UTC), Total: 1, Degraded: 1, Guardrail: 1, Escalate: 1,
			TopReasons: []ReasonCount{{"STORE_UNAVAILABLE", 1}}},
		{Minute: time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC), Total: 2, Guardrail: 1, Message: 1, Suppress: 1,
			TopReasons: []ReasonCount{{"OVERDUE_REMINDER", 1}, {"QUIET_HOURS", 1}}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Snapshot (-want +got):\n%s", diff)
	}
	if rows := m.Snapshot(t0.Add(MixMinutes*time.Minute + time.Minute)); len(rows) != 0 {
		t.Errorf("Snapshot %d minutes later = %v, want nothing", MixMinutes+1, rows)
	}
}

func TestExplain(t *testing.T) {
	rec := &arbiterv1.DecisionRecord{
		Policy: &arbiterv1.PolicyRef{Version: "7"},
		Response: &arbiterv1.DecideResponse{
			Action:  arbiterv1.Action_ACTION_SUPPRESS,
			Reasons: []*arbiterv1.Reason{{Code: "QUIET_HOURS", RuleId: "guardrail:quiet_hours", Message: "night"}},
			Explanation: &arbiterv1.Explanation{
				Rules:      []*arbiterv1.RuleTrace{{RuleId: "remind", Matched: true}},
				Guardrails: []*arbiterv1.GuardrailCheck{{Guardrail: "quiet_hours", Verdict: "blocked", ReasonCode: "QUIET_HOURS"}},
				Candidates: []*arbiterv1.CandidateTrace{{RuleId: "remind", Action: arbiterv1.Action_ACTION_MESSAGE, Outcome: "blocked", Why: "quiet hours"}},
				Summary:    "SUPPRESS",
			},
		},
	}
	want := []traceStep{
		{Kind: "rule", Subject: "remind", Verdict: "matched"},
		{Kind: "guardrail", Subject: "quiet_hours", Verdict: "blocked", Why: "QUIET_HOURS", Blocked: true},
		{Kind: "candidate", Subject: "remind → MESSAGE", Verdict: "blocked", Why: "quiet hours", Blocked: true},
		{Kind: "reason", Subject: "QUIET_HOURS", Verdict: "guardrail:quiet_hours", Why: "night", Blocked: true},
		{Kind: "answer", Subject: "SUPPRESS", Verdict: "policy 7", Why: "SUPPRESS"},
	}
	if diff := cmp.Diff(want, explain(rec, rec.GetResponse().GetExplanation())); diff != "" {
		t.Errorf("explain (-want +got):\n%s", diff)
	}
}

func TestOpenAPIDocumentExamples(t *testing.T) {
	doc, err := openAPIDocument()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"examples"`, `"evt-0001"`, `"required": false`} {
		if !strings.Contains(string(doc), want) {
			t.Errorf("openAPIDocument() lacks %s", want)
		}
	}
}

func BenchmarkMixAdd(b *testing.B) {
	m := NewMix()
	d := &arbiterv1.DecideResponse{Action: arbiterv1.Action_ACTION_MESSAGE,
		Reasons: []*arbiterv1.Reason{{Code: "OVERDUE_REMINDER", RuleId: "r"}, {Code: "QUIET_HOURS", RuleId: "guardrail:quiet_hours"}}}
	now := time.Now()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.Add(now, d)
		}
	})
}

// TestMixAddNoAllocs: counting a decision on the Decide path allocates nothing once its minute
// and reasons are known.
func TestMixAddNoAllocs(t *testing.T) {
	m := NewMix()
	d := &arbiterv1.DecideResponse{Action: arbiterv1.Action_ACTION_MESSAGE, Reasons: []*arbiterv1.Reason{{Code: "OVERDUE_REMINDER"}}}
	now := time.Now()
	m.Add(now, d)
	if n := testing.AllocsPerRun(100, func() { m.Add(now, d) }); n != 0 {
		t.Errorf("Mix.Add allocates %v times per decision, want 0", n)
	}
}
