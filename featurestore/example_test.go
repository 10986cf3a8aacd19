package featurestore_test

import (
	"context"
	"fmt"
	"time"

	"github.com/arbiter-dev/arbiter/decision"
	"github.com/arbiter-dev/arbiter/featurestore"
)

// A decision reserves a message slot only while the frequency cap holds: the store re-checks
// the cap atomically with the write, so concurrent decisions cannot overshoot it.
func ExampleNewMemory() {
	ctx := context.Background()
	store := featurestore.NewMemory()
	defer store.Close()

	now := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	oneEmailPerDay := decision.CapCheck{
		Name: "email_per_day", Channel: decision.ChannelEmail,
		Purposes: decision.PurposesOf(decision.PurposeCollections), Since: now.Add(-24 * time.Hour), Limit: 1,
	}
	decide := func(eventID string) *featurestore.Commit {
		id := featurestore.NewDecisionID("cust-1", now)
		return &featurestore.Commit{
			CustomerID: "cust-1", EventID: eventID, DecisionID: id, Now: now,
			Record:  []byte("encoded DecisionRecord"),
			Summary: decision.DecisionSummary{DecisionID: id, EventID: eventID, Action: decision.ActionMessage, DecidedAt: now},
			Effects: decision.Effects{
				Message:   &decision.SentMessage{DecisionID: id, Channel: decision.ChannelEmail, Purpose: decision.PurposeCollections, At: now},
				CapChecks: []decision.CapCheck{oneEmailPerDay},
			},
		}
	}

	first, _ := store.Commit(ctx, decide("invoice-overdue-1"))
	fmt.Printf("first: applied=%v\n", first.Record == nil && first.Conflict == "")
	again, _ := store.Commit(ctx, decide("invoice-overdue-1"))
	fmt.Printf("same event again: replayed=%v\n", again.Record != nil)
	second, _ := store.Commit(ctx, decide("invoice-overdue-2"))
	fmt.Printf("second event: conflict=%s\n", second.Conflict)

	loaded, _ := store.Load(ctx, "cust-1", "invoice-overdue-3", now)
	fmt.Printf("messages reserved: %d\n", len(loaded.State.Messages))
	// Output:
	// first: applied=true
	// same event again: replayed=true
	// second event: conflict=email_per_day
	// messages reserved: 1
}

// Dial accepts a single node or a cluster; the store owns the client.
func ExampleDial() {
	client, err := featurestore.Dial("redis+cluster://10.0.0.1:7000,10.0.0.2:7000")
	if err != nil {
		fmt.Println(err)
		return
	}
	store := featurestore.NewRedis(client, featurestore.WithRetention(90*24*time.Hour))
	defer store.Close()
	fmt.Printf("%T\n", client)
	// Output: *redis.ClusterClient
}
