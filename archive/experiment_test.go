package archive_test

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/arbiter-dev/arbiter/archive"
	"github.com/arbiter-dev/arbiter/archive/archivetest"
)

func TestExperimentArms(t *testing.T) {
	a := open(t, archivetest.NewDB(t))
	ctx := t.Context()
	in := func(id, cust, arm, action string, at time.Time) archive.Record {
		r := rec(id, cust, at)
		r.ExperimentID, r.ExperimentArm, r.Action = "exp-1", arm, action
		return r
	}
	other := rec("x1", "carol", now)
	other.ExperimentID, other.ExperimentArm = "exp-2", "champion"
	degraded := in("g1", "dave", "champion", "ACTION_SUPPRESS", now)
	degraded.Degraded = true
	recs := []archive.Record{
		in("a1", "alice", "champion", "ACTION_RETRY", now),
		in("a2", "alice", "champion", "ACTION_MESSAGE", now.Add(time.Hour)),
		in("b1", "bob", "champion", "ACTION_MESSAGE", now),
		in("h1", "hana", "holdout", "ACTION_SUPPRESS", now),
		in("old", "olga", "champion", "ACTION_MESSAGE", now.Add(-40*24*time.Hour)),
		other, degraded, rec("n1", "nina", now),
	}
	if _, err := a.Append(ctx, recs); err != nil {
		t.Fatalf("Append() = %v", err)
	}
	at := func(d time.Duration) time.Time { return now.Add(d) }
	if _, err := a.AppendOutcomes(ctx, []archive.Outcome{
		{DecisionID: "a2", Outcome: "OUTCOME_PAID", OccurredAt: at(3 * time.Hour), RecordedAt: at(3 * time.Hour)},
		{DecisionID: "a1", Outcome: "OUTCOME_RETRY_APPROVED", OccurredAt: at(5 * time.Hour), RecordedAt: at(5 * time.Hour)},
		{DecisionID: "b1", Outcome: "OUTCOME_OPTED_OUT", OccurredAt: at(time.Hour), RecordedAt: at(time.Hour)},
		{DecisionID: "b1", Outcome: "OUTCOME_COMPLAINED", OccurredAt: at(time.Hour), RecordedAt: at(time.Hour)},
		{DecisionID: "h1", Outcome: "OUTCOME_PAID", OccurredAt: at(-time.Hour), RecordedAt: at(time.Hour)},
		{DecisionID: "x1", Outcome: "OUTCOME_PAID", OccurredAt: at(time.Hour), RecordedAt: at(time.Hour)},
	}); err != nil {
		t.Fatalf("AppendOutcomes() = %v", err)
	}
	got, err := a.ExperimentArms(ctx, "exp-1", now.Add(-30*24*time.Hour))
	if err != nil {
		t.Fatalf("ExperimentArms() = %v", err)
	}
	want := []archive.ArmStats{
		{Arm: "champion", Customers: 2, Decisions: 3, Messages: 2, Retries: 1, Recovered: 1, OptedOut: 1, Complained: 1,
			TimeToPay: []time.Duration{3 * time.Hour}},
		{Arm: "holdout", Customers: 1, Decisions: 1, Recovered: 1, TimeToPay: []time.Duration{0}},
	}
	if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("ExperimentArms(exp-1) (-want +got):\n%s", diff)
	}
	if got, err := a.ExperimentArms(ctx, "none", time.Time{}); err != nil || len(got) != 0 {
		t.Errorf("ExperimentArms(none) = %v, %v, want nothing", got, err)
	}
	r, err := a.Get(ctx, "a1")
	if err != nil || r.ExperimentID != "exp-1" || r.ExperimentArm != "champion" {
		t.Errorf("Get(a1) = %q/%q, %v; want the experiment columns back", r.ExperimentID, r.ExperimentArm, err)
	}
}
