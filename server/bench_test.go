package server

import (
	"strconv"
	"testing"
	"time"

	"github.com/arbiter-dev/arbiter/decision"
	"github.com/arbiter-dev/arbiter/featurestore"
	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
	"github.com/arbiter-dev/arbiter/rollout"
)

// BenchmarkDecide measures the whole Decide pipeline (validate, load, evaluate, commit) without
// the gRPC transport, on each store, for new events of 1,000 customers.
func BenchmarkDecide(b *testing.B) {
	for _, sf := range stores() {
		b.Run(sf.name, func(b *testing.B) {
			c := newClock(testNow)
			store := sf.make(b, c)
			srv := New(store, rollout.NewHolder(decision.DefaultPolicy()), WithClock(c.Now))
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
// customers whose retry ledgers hold n entries from the last 30 days, over seven cards, on
// the embedded store. Every decision reads the whole ledger; an overdue invoice records none
// of it (decision.Narrow), a decline on one of the cards that card's seventh. Each decline adds
// an entry, so declines cycle over 1,000 customers to keep their ledgers near n.
func BenchmarkDecideHistory(b *testing.B) {
	for _, event := range []string{"overdue", "decline"} {
		for _, n := range []int{0, 50, 100} {
			b.Run(event+"/ledger="+strconv.Itoa(n), func(b *testing.B) {
				c := newClock(testNow)
				store := featurestore.NewMemory(featurestore.WithClock(c.Now))
				customers := 1
				if event == "decline" {
					customers = 1000
				}
				custs := make([]string, customers)
				for k := range custs {
					custs[k] = "cust-history-" + strconv.Itoa(k)
					seedLedger(b, store, custs[k], n)
				}
				srv := New(store, rollout.NewHolder(decision.DefaultPolicy()), WithClock(c.Now))
				req := overdue("", "")
				if event == "decline" {
					// A do-not-honour decline on a card the ledger holds.
					req = declined("", "")
					req.Event.Payment.CardRef, req.Event.Payment.DeclineCode = "tok-0", "05"
				}
				ctx := b.Context()
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					req.Event.Id = "ev-" + strconv.Itoa(i)
					req.Customer.Id = custs[i%customers]
					if _, err := srv.Decide(ctx, req); err != nil {
						b.Fatal(err)
					}
					i++
				}
			})
		}
	}
}

// seedLedger commits n declines over seven cards, an hour apart, to cust's ledger.
func seedLedger(b *testing.B, store *featurestore.Memory, cust string, n int) {
	entries := make([]decision.LedgerEntry, n)
	for i := range entries {
		entries[i] = decision.LedgerEntry{Kind: decision.LedgerDecline, EventID: "old-" + strconv.Itoa(i),
			CardRef: "tok-" + strconv.Itoa(i%7), MerchantID: "m-1", AmountMinor: 1999, Currency: "GBP",
			Initiator: decision.InitiatorMerchant, Network: decision.NetworkVisa, At: testNow.Add(-time.Duration(i+1) * time.Hour)}
	}
	id := featurestore.NewDecisionID(cust, testNow)
	if _, err := store.Commit(b.Context(), &featurestore.Commit{CustomerID: cust, EventID: "seed", DecisionID: id,
		Now: testNow, Record: []byte("seed"), Summary: decision.DecisionSummary{DecisionID: id, EventID: "seed",
			EventType: decision.EventPaymentFailed, Action: decision.ActionSuppress, DecidedAt: testNow},
		Effects: decision.Effects{Ledger: entries}}); err != nil {
		b.Fatal(err)
	}
}
