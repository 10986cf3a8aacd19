package server

import (
	"errors"
	"strings"
	"testing"
	"time"

	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
)

// TestExplainDecision: a decision made without options.explain is explained again from its
// record with the same trace an explained decision gets; a record the loaded policy did not
// make is refused.
func TestExplainDecision(t *testing.T) {
	c := newClock(time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC))
	h := newHarness(t, memoryStore(t, c), c)
	plain, err := h.dc.Decide(t.Context(), overdue("evt-plain", "cust-1"))
	if err != nil {
		t.Fatal(err)
	}
	req := overdue("evt-explained", "cust-2")
	req.Options = &arbiterv1.DecideOptions{Explain: true}
	explained, err := h.dc.Decide(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := h.dc.GetDecision(t.Context(), &arbiterv1.GetDecisionRequest{DecisionId: plain.GetDecisionId()})
	if err != nil {
		t.Fatal(err)
	}
	if rec.GetRecord().GetResponse().GetExplanation() != nil {
		t.Fatal("the record of a decision without options.explain holds an explanation; the test needs one without")
	}
	got, err := h.srv.ExplainDecision(t.Context(), rec.GetRecord())
	if err != nil {
		t.Fatalf("ExplainDecision = %v", err)
	}
	if got.GetSummary() != explained.GetExplanation().GetSummary() || len(got.GetRules()) != len(explained.GetExplanation().GetRules()) {
		t.Errorf("ExplainDecision summary %q with %d rules, want %q with %d as an explained decision got",
			got.GetSummary(), len(got.GetRules()), explained.GetExplanation().GetSummary(), len(explained.GetExplanation().GetRules()))
	}

	other := rec.GetRecord()
	other.Policy.Digest = "sha256:another"
	if _, err := h.srv.ExplainDecision(t.Context(), other); !errors.Is(err, ErrNotExplainable) || !strings.Contains(err.Error(), "not the one loaded") {
		t.Errorf("ExplainDecision of another policy's record = %v, want ErrNotExplainable", err)
	}
}
