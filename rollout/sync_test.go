package rollout

import (
	"context"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"

	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
)

func newRedisClientForTest(t *testing.T, addr string) *redis.Client {
	rdb := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// runInBackground runs f until the test ends, and waits for it to return.
func runInBackground(t *testing.T, f func(ctx context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = f(ctx) })
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
}

// quietSource is a policy source whose change notifications never arrive, as when Pub/Sub
// messages are lost: only the periodic check can bring a replica in line.
type quietSource struct{ Source }

func (quietSource) WatchPolicy(ctx context.Context) (<-chan struct{}, error) {
	return make(chan struct{}), nil
}

// govOverdue is an invoice-overdue event for a customer with e-mail consent for collections.
func govOverdue(eventID, customerID string) *arbiterv1.DecideRequest {
	return &arbiterv1.DecideRequest{
		Event: &arbiterv1.Event{Id: eventID, Type: arbiterv1.EventType_EVENT_TYPE_INVOICE_OVERDUE, Source: "billing"},
		Customer: &arbiterv1.Customer{
			Id: customerID, Timezone: "Europe/London",
			Consents: []*arbiterv1.Consent{
				{Channel: arbiterv1.Channel_CHANNEL_EMAIL, Purpose: arbiterv1.Purpose_PURPOSE_COLLECTIONS, Granted: true},
			},
			PreferredChannels: []arbiterv1.Channel{arbiterv1.Channel_CHANNEL_EMAIL},
		},
	}
}
