package server

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/arbiter-dev/arbiter/breaker"
	"github.com/arbiter-dev/arbiter/featurestore/redistest"
	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
)

// TestFaultRedisLoading restarts Redis on a dump it takes seconds to read back. While it
// answers LOADING (the Load's MULTI/EXEC then fails with EXECABORT), every Decide must degrade
// or answer UNAVAILABLE, never INTERNAL; the breaker must open; and once the data is loaded
// the service must decide from the store again by itself.
func TestFaultRedisLoading(t *testing.T) {
	addr := redistest.StartLoading(t, 20000, 100*time.Microsecond)
	probe := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { _ = probe.Close() })
	stillLoading := func() bool {
		return redis.HasErrorPrefix(probe.Get(context.Background(), "x").Err(), "LOADING")
	}
	if !stillLoading() {
		t.Fatal("the restarted Redis is not LOADING: the test would prove nothing")
	}

	var opened atomic.Int32
	br, err := breaker.NewSet(breaker.WithThreshold(3), breaker.WithCoolDown(100*time.Millisecond),
		breaker.WithOnChange(func(_ string, _, to breaker.State) {
			if to == breaker.Open {
				opened.Add(1)
			}
		}))
	if err != nil {
		t.Fatal(err)
	}
	dc := serveOn(t, dialStore(t, "redis://"+addr), WithBreakers(br), WithStoreBudget(Budget{Max: faultBudget}))
	call := func(i int) (*arbiterv1.DecideResponse, error) {
		ctx, cancel := context.WithTimeout(t.Context(), faultDeadline)
		defer cancel()
		return dc.Decide(ctx, overdueFor(fmt.Sprintf("ld-ev-%d", i), fmt.Sprintf("ld-cust-%d", i)))
	}

	degraded, unavailable := 0, 0
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; ; i++ {
		loading := stillLoading()
		resp, err := call(i)
		switch {
		case status.Code(err) == codes.Unavailable:
			unavailable++
		case err != nil:
			t.Fatalf("Decide while Redis loads its data = %v (%v); want a degraded answer or UNAVAILABLE", status.Code(err), err)
		case resp.GetDegraded():
			degraded++
		case loading && stillLoading():
			// Loading before and after the call (it never resumes once over): the call was
			// answered from the store while Redis could not have answered it.
			t.Fatalf("Decide while Redis answered LOADING = %v, not degraded", resp.GetAction())
		case loading:
			// Redis finished loading during the call: the next round checks the answer.
			continue
		default:
			if resp.GetAction() != arbiterv1.Action_ACTION_MESSAGE {
				t.Fatalf("Decide after loading = %v, want MESSAGE", resp.GetAction())
			}
			if degraded+unavailable < 3 {
				t.Fatalf("only %d degraded answers while loading: the test did not see the fault", degraded+unavailable)
			}
			if opened.Load() == 0 {
				t.Error("the breaker never opened while Redis answered LOADING")
			}
			t.Logf("while loading: %d degraded, %d UNAVAILABLE; breaker opened %d times", degraded, unavailable, opened.Load())
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no answer from the store 30s after the restart (loading %v)", loading)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
