package server

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/arbiter-dev/arbiter/decision"
	"github.com/arbiter-dev/arbiter/featurestore/redistest"
	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
	"github.com/arbiter-dev/arbiter/rollout"
)

// connectionsReceived reads Redis's count of connections it ever accepted.
func connectionsReceived(t *testing.T, rdb *redis.Client) int {
	t.Helper()
	info, err := rdb.Info(context.Background(), "stats").Result()
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "total_connections_received:"); ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no total_connections_received in INFO stats")
	return 0
}

// TestFaultBudgetKeepsConnections: a call that outlives its store budget degrades, but its
// connection is healthy: it must go back to the pool when the reply comes, not be closed and
// dialled again (before, every budget overrun cost a reconnection, which under load fed the
// overload it came from).
func TestFaultBudgetKeepsConnections(t *testing.T) {
	addr := redistest.Start(t)
	raw := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { _ = raw.Close() })
	proxy := startFaultProxy(t, addr)
	dc := serveOn(t, dialStore(t, "redis://"+proxy.Addr()), WithStoreBudget(Budget{Max: 5 * time.Millisecond}))
	call := func(i int) (bool, error) {
		ctx, cancel := context.WithTimeout(t.Context(), faultDeadline)
		defer cancel()
		resp, err := dc.Decide(ctx, overdueFor(fmt.Sprintf("kc-ev-%d", i), fmt.Sprintf("kc-cust-%d", i)))
		return resp.GetDegraded(), err
	}
	if _, err := call(0); err != nil { // opens the pool
		t.Fatal(err)
	}

	proxy.Latency(20 * time.Millisecond)
	before := connectionsReceived(t, raw)
	const calls = 60
	degraded := 0
	for i := 1; i <= calls; i++ {
		d, err := call(i)
		if err != nil {
			t.Fatalf("Decide with a slow store = %v, want a degraded answer", err)
		}
		if d {
			degraded++
		}
	}
	time.Sleep(100 * time.Millisecond) // the last replies come back
	dialled := connectionsReceived(t, raw) - before
	t.Logf("%d calls over a 20 ms store on a 5 ms budget: %d degraded, %d new connections", calls, degraded, dialled)
	if degraded < calls/2 {
		t.Fatalf("only %d of %d calls degraded: the store budget was not overrun, the test shows nothing", degraded, calls)
	}
	if dialled > calls/4 {
		t.Errorf("%d new connections for %d budget overruns: calls cut by their budget discard their connection", dialled, calls)
	}
}

// overloadRun sends Decides from callers closed-loop callers for d and counts the answers.
func overloadRun(t *testing.T, dc arbiterv1.DecisionServiceClient, callers int, d time.Duration) (ok, degraded, shed int) {
	t.Helper()
	var mu sync.Mutex
	var seq atomic.Int64
	stop := time.Now().Add(d)
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			for time.Now().Before(stop) {
				n := seq.Add(1)
				ctx, cancel := context.WithTimeout(t.Context(), faultDeadline)
				resp, err := dc.Decide(ctx, overdueFor(fmt.Sprintf("ol-ev-%d", n), fmt.Sprintf("ol-cust-%d", n)))
				cancel()
				mu.Lock()
				switch {
				case status.Code(err) == codes.ResourceExhausted:
					shed++
					if d := retryDelay(err); d <= 0 {
						t.Errorf("RESOURCE_EXHAUSTED without a retry delay: %v", err)
					}
				case err != nil:
					t.Errorf("Decide under overload = %v, want an answer or RESOURCE_EXHAUSTED", err)
				case resp.GetDegraded():
					degraded++
				default:
					ok++
				}
				mu.Unlock()
				if status.Code(err) == codes.ResourceExhausted {
					time.Sleep(retryDelay(err))
				}
			}
		})
	}
	wg.Wait()
	return ok, degraded, shed
}

// retryDelay is the RetryInfo delay of a status error, zero without one.
func retryDelay(err error) time.Duration {
	for _, d := range status.Convert(err).Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok {
			return ri.GetRetryDelay().AsDuration()
		}
	}
	return 0
}

// TestFaultOverloadSheds: more callers than the store can serve within the budget (a pool of
// 4 connections to a Redis 5 ms away, 48 callers). Without admission nearly every call waits
// for a connection past its budget and degrades: a SUPPRESS for each, whatever the event. With
// admission, the excess is refused at once with RESOURCE_EXHAUSTED and a retry delay, and the
// calls admitted are decided from the store.
func TestFaultOverloadSheds(t *testing.T) {
	addr := redistest.Start(t)
	proxy := startFaultProxy(t, addr)
	url := "redis://" + proxy.Addr() + "?pool_size=4&min_idle_conns=2"
	proxy.Latency(5 * time.Millisecond)
	budget := WithStoreBudget(Budget{Max: 40 * time.Millisecond})

	withoutShare := 1.0 // the degraded share of the answers without admission
	t.Run("WithoutAdmission", func(t *testing.T) {
		dc := serveOn(t, dialStore(t, url), budget)
		ok, degraded, shed := overloadRun(t, dc, 48, time.Second)
		t.Logf("without admission: %d from the store, %d degraded, %d shed", ok, degraded, shed)
		if ok+degraded > 0 {
			withoutShare = float64(degraded) / float64(ok+degraded)
		}
		if degraded <= ok {
			t.Errorf("without admission %d degraded and %d decided: the overload did not show", degraded, ok)
		}
	})
	t.Run("WithAdmission", func(t *testing.T) {
		dc := serveOn(t, dialStore(t, url), budget, WithAdmission(2, 256))
		ok, degraded, shed := overloadRun(t, dc, 48, 1500*time.Millisecond)
		t.Logf("with admission: %d from the store, %d degraded, %d shed", ok, degraded, shed)
		if shed == 0 {
			t.Error("no call shed under overload")
		}
		// Without admission next to nothing is decided from the store; with it, most of the
		// answers are (the rest: calls admitted while the limit was still being learned).
		// On a quiet machine under half as many degrade as are decided from the store; on a
		// loaded one (make test's other packages) the admitted calls' CPU time stretches too,
		// so the check is against the run without admission: a much smaller degraded share.
		share := float64(degraded) / float64(max(ok+degraded, 1))
		if ok == 0 || share > 0.75*withoutShare {
			t.Errorf("with admission %d degraded for %d decided from the store (share %.2f): want well under the %.2f without admission",
				degraded, ok, share, withoutShare)
		}
	})
}

// TestFaultBudgetFollowsLatency: with Budget.Min, the store budget is sized from the measured
// latency. A store ~1 ms away gets a budget near the floor, so a stall is given up on early; a store 15 ms
// away (a busy machine) gets several times its p99, not a constant it would overrun.
func TestFaultBudgetFollowsLatency(t *testing.T) {
	addr := redistest.Start(t)
	proxy := startFaultProxy(t, addr)
	srv := New(dialStore(t, "redis://"+proxy.Addr()), rollout.NewHolder(decision.DefaultPolicy()),
		WithClock(func() time.Time { return faultNow }), WithAuditSpool(openTestSpool(t)),
		WithStoreBudget(Budget{Max: 300 * time.Millisecond, Min: 8 * time.Millisecond}))
	run := func(prefix string, n int) (degraded int) {
		for i := range n {
			resp, err := srv.Decide(t.Context(), overdueFor(fmt.Sprintf("%s-ev-%d", prefix, i), fmt.Sprintf("%s-cust-%d", prefix, i)))
			if err != nil {
				t.Fatalf("Decide() = %v", err)
			}
			if resp.GetDegraded() {
				degraded++
			}
		}
		return degraded
	}
	run("fast", 2*latencyEvery/2) // 128 decisions, two store calls each
	if got := srv.budget().Max; got > 100*time.Millisecond {
		t.Errorf("budget on a fast store = %v (p99 %v), want it sized well below the 300ms ceiling", got, srv.latency.P99())
	}
	proxy.Latency(15 * time.Millisecond)
	// The first calls on the slow store overrun the small budget and degrade; a call cut by
	// its budget counts at the budget, so the next p99 raises the budget by the headroom
	// (4×), enough for the slow store's calls to succeed, and the p99 after those is the
	// store's real latency. Two windows of calls (each decision makes one or two) see both
	// steps whatever the alignment of the recomputation.
	run("warm", 2*latencyEvery)
	if got := srv.budget().Max; got < 45*time.Millisecond {
		t.Errorf("budget on a store 15ms away = %v (p99 %v), want at least 3×15ms", got, srv.latency.P99())
	}
	if d := run("slow", 50); d > 5 {
		t.Errorf("%d of 50 decisions degraded on a steady store 15ms away, want next to none", d)
	}
}
