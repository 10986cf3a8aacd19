package server

import (
	"strconv"
	"testing"

	"github.com/arbiter-dev/arbiter/decision"
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
