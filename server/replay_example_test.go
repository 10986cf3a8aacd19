package server_test

import (
	"context"
	"fmt"
	"time"

	"github.com/arbiter-dev/arbiter/decision"
	"github.com/arbiter-dev/arbiter/featurestore"
	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
	"github.com/arbiter-dev/arbiter/rollout"
	"github.com/arbiter-dev/arbiter/server"
)

// Replay the audit trail under the version that made the decisions: every one reproduces.
func ExampleReplay() {
	ctx := context.Background()
	now := func() time.Time { return time.Date(2026, time.March, 10, 12, 0, 0, 0, time.UTC) }
	store := featurestore.NewMemory(featurestore.WithClock(now))
	defer store.Close()
	srv := server.New(store, rollout.NewHolder(decision.DefaultPolicy()), server.WithClock(now))
	for i := range 3 {
		_, err := srv.Decide(ctx, &arbiterv1.DecideRequest{
			Event: &arbiterv1.Event{Id: fmt.Sprintf("evt-%d", i), Type: arbiterv1.EventType_EVENT_TYPE_INVOICE_OVERDUE},
			Customer: &arbiterv1.Customer{Id: fmt.Sprintf("cust-%d", i), Timezone: "Europe/London",
				Consents: []*arbiterv1.Consent{{Channel: arbiterv1.Channel_CHANNEL_EMAIL, Purpose: arbiterv1.Purpose_PURPOSE_COLLECTIONS, Granted: true}}},
		})
		if err != nil {
			fmt.Println(err)
			return
		}
	}
	rep, err := server.Replay(ctx, store, decision.DefaultPolicy(), server.ReplayOptions{})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("replayed %d, same %d, changed %d\n", rep.Replayed, rep.Same, rep.Changed)
	// Output: replayed 3, same 3, changed 0
}
