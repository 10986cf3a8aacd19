package archive_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/arbiter-dev/arbiter/archive"
	"github.com/arbiter-dev/arbiter/archive/archivetest"
)

// Erase deletes a customer's archived decisions and their outcomes, leaves other customers
// alone, and keeps the erased ids marked: a relay that appends one of them afterwards, or an
// outcome of one, archives nothing.
func TestErase(t *testing.T) {
	dsn := archivetest.NewDB(t)
	a := open(t, dsn)
	ctx := t.Context()
	if _, err := a.Append(ctx, []archive.Record{
		rec("a1", "alice", now.Add(-40*24*time.Hour)),
		rec("a2", "alice", now.Add(-time.Hour)),
		rec("b1", "bob", now.Add(-time.Hour)),
	}); err != nil {
		t.Fatalf("Append() = %v", err)
	}
	at := now.Add(-30 * time.Minute)
	if _, err := a.AppendOutcomes(ctx, []archive.Outcome{
		{DecisionID: "a2", Outcome: "delivered", OccurredAt: at, RecordedAt: at},
		{DecisionID: "b1", Outcome: "delivered", OccurredAt: at, RecordedAt: at},
	}); err != nil {
		t.Fatalf("AppendOutcomes() = %v", err)
	}

	kept := json.RawMessage(`{"features":{"opted_out":true}}`)
	got, err := a.Erase(ctx, archive.Erasure{
		CustomerID: "alice", ErasedAt: now, Actor: "dpo", Reason: "ticket 7",
		Erased: map[string]int64{"features": 3}, Kept: kept,
		DecisionIDs: []string{"a2", "a3"}, // a3: in the outbox, not archived yet
	})
	if err != nil {
		t.Fatalf("Erase() = %v", err)
	}
	wantErased := map[string]int64{"features": 3, "archived_decisions": 2, "archived_outcomes": 1}
	if diff := cmp.Diff(wantErased, got.Erased); diff != "" {
		t.Errorf("Erase() erased (-want +got):\n%s", diff)
	}

	// The relay catches up with a3 and a2's late outcome, and a new decision a4 after the
	// erasure: only a4 is archived.
	if n, err := a.Append(ctx, []archive.Record{rec("a3", "alice", now.Add(-time.Minute)), rec("a4", "alice", now.Add(time.Minute))}); n != 1 || err != nil {
		t.Errorf("Append(a3 erased, a4 new) = %d, %v, want 1, nil", n, err)
	}
	if n, err := a.AppendOutcomes(ctx, []archive.Outcome{
		{DecisionID: "a3", Outcome: "opened", OccurredAt: now, RecordedAt: now},
		{DecisionID: "a4", Outcome: "opened", OccurredAt: now, RecordedAt: now},
	}); n != 1 || err != nil {
		t.Errorf("AppendOutcomes(a3 erased, a4 new) = %d, %v, want 1, nil", n, err)
	}
	hist, err := a.CustomerHistory(ctx, "alice", time.Time{})
	if err != nil {
		t.Fatalf("CustomerHistory(alice) = %v", err)
	}
	if diff := cmp.Diff([]string{"a4"}, ids(hist)); diff != "" {
		t.Errorf("CustomerHistory(alice) after Erase (-want +got):\n%s", diff)
	}
	if hist, _ := a.CustomerHistory(ctx, "bob", time.Time{}); len(hist) != 1 {
		t.Errorf("CustomerHistory(bob) = %d records, want 1: another customer's decisions are kept", len(hist))
	}
	if outs, _ := a.Outcomes(ctx, "b1"); len(outs) != 1 {
		t.Errorf("Outcomes(b1) = %d, want 1", len(outs))
	}
	for _, id := range []string{"a1", "a2", "a3"} {
		if _, err := a.Get(ctx, id); err == nil {
			t.Errorf("Get(%s) after Erase found it", id)
		}
	}

	tombs, err := a.Erasures(ctx, "alice")
	if err != nil {
		t.Fatalf("Erasures(alice) = %v", err)
	}
	want := []archive.Erasure{{CustomerID: "alice", ErasedAt: now, Actor: "dpo", Reason: "ticket 7", Erased: wantErased, Kept: kept}}
	if diff := cmp.Diff(want, tombs, cmpopts.EquateEmpty(), cmp.Comparer(func(a, b json.RawMessage) bool {
		var x, y any
		return json.Unmarshal(a, &x) == nil && json.Unmarshal(b, &y) == nil && cmp.Equal(x, y)
	})); diff != "" {
		t.Errorf("Erasures(alice) (-want +got):\n%s", diff)
	}
	if tombs, _ := a.Erasures(ctx, "bob"); len(tombs) != 0 {
		t.Errorf("Erasures(bob) = %v, want none", tombs)
	}

	// Erasing again finds nothing more but leaves a second tombstone.
	again, err := a.Erase(ctx, archive.Erasure{CustomerID: "alice", ErasedAt: now.Add(time.Hour), Actor: "dpo"})
	if err != nil || again.Erased["archived_decisions"] != 1 {
		t.Errorf("Erase(again) = %v, %v, want a4 erased", again.Erased, err)
	}
	if _, err := a.Erase(ctx, archive.Erasure{}); err == nil {
		t.Errorf("Erase(no customer) = nil, want an error")
	}
}
