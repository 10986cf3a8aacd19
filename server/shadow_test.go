package server

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/arbiter-dev/arbiter/decision"
	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
	"github.com/arbiter-dev/arbiter/policystore"
	"github.com/arbiter-dev/arbiter/rollout"
)

// TestShadowIsolation runs the same traffic through two servers with the same active policy,
// one of them with a candidate in shadow on all of it. The candidate answers MESSAGE where the
// active policy escalates, so had anything of its result leaked, the shadowed server would have
// reserved message slots. The answers and the stored state must be identical, and the shadow
// report must count every difference.
func TestShadowIsolation(t *testing.T) {
	ctx := context.Background()
	now := func() time.Time { return govNow }
	active := mustParse(t, govBundle("A", "escalate"))
	candidate := mustParse(t, govBundle("B", "message"))

	policies := policystore.NewMemory()
	for _, v := range []string{"A", "B"} {
		if _, _, err := policies.PublishPolicy(ctx, policystore.Bundle{PolicyVersion: policystore.PolicyVersion{Version: v, Digest: v}}); err != nil {
			t.Fatal(err)
		}
	}
	change, err := policies.SetShadowPolicy(ctx, policystore.Change{To: "B", ShadowShare: 1, Actor: "ops", At: govNow, Comment: "try B"})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := policies.ShadowPolicy(ctx)
	if err != nil || cfg.Epoch != change.ID {
		t.Fatalf("ShadowPolicy() = %+v, %v", cfg, err)
	}
	sh := rollout.NewShadow(nil)
	sh.Set(cfg, candidate)

	shadowed := New(newMemoryFeatureStore(t, now), rollout.NewHolder(active), WithClock(now), WithShadow(sh), WithStoreBudget(slowMachineBudget))
	plain := New(newMemoryFeatureStore(t, now), rollout.NewHolder(active), WithClock(now), WithStoreBudget(slowMachineBudget))

	const n = 30
	ignoreIDs := protocmp.IgnoreFields(&arbiterv1.DecideResponse{}, "decision_id")
	for i := range n {
		req := govOverdue(fmt.Sprintf("evt-%d", i), fmt.Sprintf("cust-%d", i%3))
		got, err := shadowed.Decide(ctx, req)
		if err != nil {
			t.Fatalf("shadowed Decide(%d): %v", i, err)
		}
		want, err := plain.Decide(ctx, req)
		if err != nil {
			t.Fatalf("plain Decide(%d): %v", i, err)
		}
		if diff := cmp.Diff(want, got, protocmp.Transform(), ignoreIDs); diff != "" {
			t.Fatalf("Decide(%d) with a shadow differs from without (-without +with):\n%s", i, diff)
		}
		if got.GetAction() != arbiterv1.Action_ACTION_ESCALATE {
			t.Fatalf("Decide(%d).Action = %v, want the active policy's ESCALATE", i, got.GetAction())
		}
	}
	for c := range 3 {
		id := fmt.Sprintf("cust-%d", c)
		got, err := shadowed.GetCustomerState(ctx, &arbiterv1.GetCustomerStateRequest{CustomerId: id})
		if err != nil {
			t.Fatal(err)
		}
		want, err := plain.GetCustomerState(ctx, &arbiterv1.GetCustomerStateRequest{CustomerId: id})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got, protocmp.Transform(),
			protocmp.IgnoreFields(&arbiterv1.DecisionSummary{}, "decision_id"),
			protocmp.IgnoreFields(&arbiterv1.SentMessage{}, "decision_id")); diff != "" {
			t.Errorf("GetCustomerState(%s) with a shadow differs from without (-without +with):\n%s", id, diff)
		}
		if len(got.GetMessages()) != 0 {
			t.Errorf("GetCustomerState(%s).Messages = %v, want none: the shadow's MESSAGE answers reserve nothing", id, got.GetMessages())
		}
	}

	if err := sh.Flush(ctx, policies); err != nil {
		t.Fatal(err)
	}
	rep, err := policies.ShadowReport(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantCounts := policystore.ShadowCounts{
		Evaluated: n, Different: n,
		Actions:        map[policystore.ActionPair]int64{{Active: decision.ActionEscalate, Shadow: decision.ActionMessage}: n},
		ReasonsAdded:   map[string]int64{"OVERDUE_REMINDER": n},
		ReasonsRemoved: map[string]int64{"COLLECTIONS_REFERRAL": n},
	}
	if diff := cmp.Diff(wantCounts, rep.Counts); diff != "" {
		t.Errorf("ShadowReport().Counts mismatch (-want +got):\n%s", diff)
	}
	if len(rep.Samples) != policystore.ShadowSamplesKept || rep.Samples[0].EventID != fmt.Sprintf("evt-%d", n-1) {
		t.Errorf("ShadowReport().Samples = %d, newest %+v; want %d, newest evt-%d", len(rep.Samples), rep.Samples[0], policystore.ShadowSamplesKept, n-1)
	}
	want := policystore.ShadowSample{
		EventID: fmt.Sprintf("evt-%d", n-1), EventType: decision.EventInvoiceOverdue,
		ActiveAction: decision.ActionEscalate, ActiveReasons: []string{"COLLECTIONS_REFERRAL"},
		ShadowAction: decision.ActionMessage, ShadowReasons: []string{"OVERDUE_REMINDER"}, ChangedFields: []string{"action"}, At: govNow,
	}
	if diff := cmp.Diff(want, rep.Samples[0]); diff != "" {
		t.Errorf("ShadowReport().Samples[0] mismatch (-want +got):\n%s", diff)
	}

	// The report through the service, as `arbiter policy shadow-report` shows it.
	resp, err := newTestPolicyService(policies).GetShadowReport(ctx, &arbiterv1.GetShadowReportRequest{})
	if err != nil {
		t.Fatal(err)
	}
	wantResp := &arbiterv1.GetShadowReportResponse{
		ShadowVersion: "B", Share: 1, Since: ts(govNow), Evaluated: n, Different: n,
		Actions: []*arbiterv1.ActionChange{{Active: arbiterv1.Action_ACTION_ESCALATE, Shadow: arbiterv1.Action_ACTION_MESSAGE, Count: n}},
		Reasons: []*arbiterv1.ReasonChange{{Code: "COLLECTIONS_REFERRAL", Removed: n}, {Code: "OVERDUE_REMINDER", Added: n}},
	}
	if diff := cmp.Diff(wantResp, resp, protocmp.Transform(), protocmp.IgnoreFields(&arbiterv1.GetShadowReportResponse{}, "samples")); diff != "" {
		t.Errorf("GetShadowReport() mismatch (-want +got):\n%s", diff)
	}
}

// BenchmarkShadowObserve is the cost a shadow adds to one decision it evaluates: the
// candidate's evaluation and the comparison, with no I/O.
func BenchmarkShadowObserve(b *testing.B) {
	candidate := mustParse(b, govBundle("B", "message"))
	sh := rollout.NewShadow(nil)
	sh.Set(policystore.ShadowConfig{Version: "B", Share: 1, Epoch: "e"}, candidate)
	in := decision.Input{Now: govNow, Event: decision.Event{ID: "evt-1", Type: decision.EventInvoiceOverdue},
		Customer: decision.Customer{ID: "c-1", Timezone: "Europe/London", PreferredChannels: []decision.Channel{decision.ChannelEmail},
			Consents: []decision.Consent{{Channel: decision.ChannelEmail, Purpose: decision.PurposeCollections, Granted: true}}}}
	active := &decision.Result{Action: decision.ActionMessage, Reasons: []decision.Reason{{Code: "OVERDUE_REMINDER"}}}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		sh.Observe(ctx, &in, active)
	}
}
