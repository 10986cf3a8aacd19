package server

import (
	"strconv"
	"testing"
	"time"

	"github.com/arbiter-dev/arbiter/decision"
	"github.com/arbiter-dev/arbiter/featurestore"
	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
)

// BenchmarkDecide measures the whole Decide pipeline (validate, load, evaluate, commit) without
// the gRPC transport, on each store, for new events of 1,000 customers.
func BenchmarkDecide(b *testing.B) {
	for _, sf := range stores() {
		b.Run(sf.name, func(b *testing.B) {
			c := newClock(testNow)
			store := sf.make(b, c)
			srv := New(store, NewPolicyHolder(decision.DefaultPolicy()), WithClock(c.Now))
			reqs := make([]*arbiterv1.DecideRequest, 1000)
			for i := range reqs {
				reqs[i] = overdue("", "cust-"+strconv.Itoa(i))
			}
			ctx := b.Context()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				req := reqs[i%len(reqs)]
				req.Event.Id = "ev-" + strconv.Itoa(i)
				if _, err := srv.Decide(ctx, req); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}

// BenchmarkDecideHistory measures how a decision's cost grows with the customer's history:
// one customer whose retry ledger holds n entries from the last 30 days (other cards' declines,
// all read, counted and recorded in the decision's snapshot), deciding an overdue invoice, on
// the embedded store.
func BenchmarkDecideHistory(b *testing.B) {
	for _, n := range []int{0, 100, 300} {
		b.Run("ledger="+strconv.Itoa(n), func(b *testing.B) {
			c := newClock(testNow)
			store := featurestore.NewMemory(featurestore.WithClock(c.Now))
			entries := make([]decision.LedgerEntry, n)
			for i := range entries {
				entries[i] = decision.LedgerEntry{Kind: decision.LedgerDecline, EventID: "old-" + strconv.Itoa(i),
					CardRef: "tok-" + strconv.Itoa(i%7), MerchantID: "m-1", AmountMinor: 1999, Currency: "GBP",
					Initiator: decision.InitiatorMerchant, Network: decision.NetworkVisa, At: testNow.Add(-time.Duration(i+1) * time.Hour)}
			}
			const cust = "cust-history"
			id := featurestore.NewDecisionID(cust, testNow)
			if _, err := store.Commit(b.Context(), &featurestore.Commit{CustomerID: cust, EventID: "seed", DecisionID: id,
				Now: testNow, Record: []byte("seed"), Summary: decision.DecisionSummary{DecisionID: id, EventID: "seed",
					EventType: decision.EventPaymentFailed, Action: decision.ActionSuppress, DecidedAt: testNow},
				Effects: decision.Effects{Ledger: entries}}); err != nil {
				b.Fatal(err)
			}
			srv := New(store, NewPolicyHolder(decision.DefaultPolicy()), WithClock(c.Now))
			req := overdue("", cust)
			ctx := b.Context()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				req.Event.Id = "ev-" + strconv.Itoa(i)
				if _, err := srv.Decide(ctx, req); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}
