package featurestore_test

import (
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/arbiter-dev/arbiter/decision"
	"github.com/arbiter-dev/arbiter/featurestore"
	"github.com/arbiter-dev/arbiter/featurestore/redistest"
)

// TestRebuildAndStateMarker: with WithStateMarker, Load reports a customer Redis cannot vouch
// for as Unverified; Rebuild merges the recomputed state (twice is the same as once), marks it
// whole, and Load then sees the messages, ledger, stops and failing channels; FLUSHALL (Redis
// losing its data) makes the customer Unverified again.
func TestRebuildAndStateMarker(t *testing.T) {
	addr := redistest.Start(t)
	client := redis.NewClient(&redis.Options{Addr: addr})
	defer client.Close()
	s := featurestore.NewRedis(client, featurestore.WithStateMarker())
	ctx := t.Context()
	now := time.Now().Truncate(time.Millisecond)
	const cust = "rebuild-cust"

	l, err := s.Load(ctx, cust, "ev-1", now)
	if err != nil || !l.Unverified {
		t.Fatalf("Load(new customer) = Unverified %v, %v; want true", l.Unverified, err)
	}
	st := &featurestore.Rebuilt{
		Messages: []decision.SentMessage{{DecisionID: featurestore.NewDecisionID(cust, now), Channel: decision.ChannelEmail,
			Purpose: decision.PurposeCollections, At: now.Add(-time.Hour)}},
		Ledger: []decision.LedgerEntry{{Kind: decision.LedgerDecline, EventID: "ev-0", CardRef: "tok_1", MerchantID: "m-1",
			AmountMinor: 1999, Currency: "GBP", Initiator: decision.InitiatorMerchant, Network: decision.NetworkVisa, At: now.Add(-2 * time.Hour)}},
		Stops:   []decision.RetryStop{{CardRef: "tok_2", Until: now.Add(24 * time.Hour), ReasonCode: "TEST_STOP"}},
		Failing: map[decision.Channel]time.Time{decision.ChannelSMS: now.Add(time.Hour)},
	}
	for range 2 {
		if err := s.Rebuild(ctx, cust, st, now); err != nil {
			t.Fatalf("Rebuild() = %v", err)
		}
	}
	l, err = s.Load(ctx, cust, "ev-1", now)
	if err != nil || l.Unverified {
		t.Fatalf("Load(after Rebuild) = Unverified %v, %v; want false", l.Unverified, err)
	}
	if len(l.State.Messages) != 1 || len(l.State.Ledger) != 1 || len(l.State.Stops) != 1 || len(l.State.FailingChannels) != 1 {
		t.Errorf("Load(after two Rebuilds) = %d messages, %d ledger entries, %d stops, %d failing; want 1 of each",
			len(l.State.Messages), len(l.State.Ledger), len(l.State.Stops), len(l.State.FailingChannels))
	}
	if err := client.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if l, err := s.Load(ctx, cust, "ev-1", now); err != nil || !l.Unverified {
		t.Errorf("Load(after FLUSHALL) = Unverified %v, %v; want true", l.Unverified, err)
	}
	// Without the option, Load never reports it.
	plain := featurestore.NewRedis(client)
	if l, err := plain.Load(ctx, "other", "ev-1", now); err != nil || l.Unverified {
		t.Errorf("Load(no state marker) = Unverified %v, %v; want false", l.Unverified, err)
	}
}
