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

// ExampleNew builds a server on the embedded store and the default policy and asks it for a
// decision directly (in production, register it with NewGRPCServer and serve).
func ExampleNew() {
	noon := func() time.Time { return time.Date(2026, time.March, 10, 12, 0, 0, 0, time.UTC) }
	srv := server.New(featurestore.NewMemory(), rollout.NewHolder(decision.DefaultPolicy()), server.WithClock(noon))

	resp, err := srv.Decide(context.Background(), &arbiterv1.DecideRequest{
		Event: &arbiterv1.Event{Id: "evt-1", Type: arbiterv1.EventType_EVENT_TYPE_INVOICE_OVERDUE},
		Customer: &arbiterv1.Customer{
			Id:       "cust-1",
			Timezone: "Europe/London",
			Consents: []*arbiterv1.Consent{
				{Channel: arbiterv1.Channel_CHANNEL_EMAIL, Purpose: arbiterv1.Purpose_PURPOSE_COLLECTIONS, Granted: true},
			},
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(resp.GetAction(), resp.GetMessage().GetChannel())

	// A bad request names the field.
	_, err = srv.Decide(context.Background(), &arbiterv1.DecideRequest{Event: &arbiterv1.Event{Id: "evt-2"}})
	fmt.Println(err)
	// Output:
	// ACTION_MESSAGE CHANNEL_EMAIL
	// rpc error: code = InvalidArgument desc = invalid event.type: required
}
