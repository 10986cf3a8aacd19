package server

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/arbiter-dev/arbiter/breaker"
	"github.com/arbiter-dev/arbiter/decision"
	"github.com/arbiter-dev/arbiter/featurestore"
	"github.com/arbiter-dev/arbiter/featurestore/redistest"
	arbiterv1 "github.com/arbiter-dev/arbiter/gen/arbiter/v1"
	"github.com/arbiter-dev/arbiter/guard"
	"github.com/arbiter-dev/arbiter/rollout"
	"github.com/arbiter-dev/arbiter/spool"
)

// Fault-test settings: callers give every Decide faultDeadline; the store budget is at most
// faultBudget of it; the breaker opens after 3 failures and probes every 200 ms. The deadline
// is far above the budget so that a busy 2-core machine (race detector, parallel packages)
// does not fail the tests by scheduling delays; it still catches a missing budget, since a
// stalled Redis would hold a call for the whole deadline and it would end in
// DEADLINE_EXCEEDED.
const (
	faultDeadline = 400 * time.Millisecond
	faultBudget   = 50 * time.Millisecond
	// faultRecovery bounds how long after a fault ends the service must answer from the
	// store again.
	faultRecovery = 5 * time.Second
)

// faultNow is a weekday noon in London, outside every quiet period of the default policy.
var faultNow = time.Date(2026, time.March, 10, 12, 0, 0, 0, time.UTC)

// faultEnv is one Arbiter server on a real redis-server behind a Toxiproxy proxy, over a real
// loopback gRPC connection.
type faultEnv struct {
	t        *testing.T
	redis    string // the real redis-server
	proxy    *faultProxy
	rdb      redis.UniversalClient
	store    *featurestore.Redis
	breakers *breaker.Set
	spool    *spool.Spool
	srv      *Server
	dc       arbiterv1.DecisionServiceClient
	seq      atomic.Int64
}

// faultStore lets a test make the next commits lose their reply after they were applied.
type faultStore struct {
	Store
	loseReplies atomic.Int32
}

func (s *faultStore) Commit(ctx context.Context, c *featurestore.Commit) (featurestore.Committed, error) {
	got, err := s.Store.Commit(ctx, c)
	if err == nil && s.loseReplies.Add(-1) >= 0 {
		return featurestore.Committed{}, fmt.Errorf("commit: %w: reply lost (test)", featurestore.ErrUnavailable)
	}
	return got, err
}

func newFaultEnv(t *testing.T, grpcOpts ...grpc.ServerOption) (*faultEnv, *faultStore) {
	t.Helper()
	e := &faultEnv{t: t, redis: redistest.Start(t)}
	e.proxy = startFaultProxy(t, e.redis)
	rdb, err := featurestore.Dial(e.proxy.Addr())
	if err != nil {
		t.Fatal(err)
	}
	e.rdb = rdb
	e.store = featurestore.NewRedis(rdb)
	t.Cleanup(func() { _ = e.store.Close() })
	e.breakers, err = breaker.NewSet(breaker.WithThreshold(3), breaker.WithCoolDown(200*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	fs := &faultStore{Store: e.store} // not a ShardedStore: one breaker, shard ""
	e.spool = openTestSpool(t)
	e.srv = New(fs, rollout.NewHolder(decision.DefaultPolicy()),
		WithClock(func() time.Time { return faultNow }),
		WithStoreBudget(Budget{Max: faultBudget}),
		WithBreakers(e.breakers),
		WithAuditSpool(e.spool),
		WithGRPCOptions(grpcOpts...),
	)
	conn := serveLoopback(t, e.srv)
	e.dc = arbiterv1.NewDecisionServiceClient(conn)
	// Warm up: the first calls dial Redis and load the scripts, which on a busy machine can
	// take longer than the store budget.
	e.waitRecovery(time.Now())
	return e, fs
}

// request returns a new event for a new customer: odd ones an overdue invoice (MESSAGE when
// healthy), even ones a soft card decline (RETRY when healthy).
func (e *faultEnv) request() *arbiterv1.DecideRequest {
	return e.requestN(e.seq.Add(1))
}

// overdue returns a new overdue-invoice event for a new customer.
func (e *faultEnv) overdue() *arbiterv1.DecideRequest {
	return e.requestN(e.seq.Add(2)&^1 | 1)
}

func (e *faultEnv) requestN(n int64) *arbiterv1.DecideRequest {
	cust := &arbiterv1.Customer{
		Id:       fmt.Sprintf("fault-cust-%d", n),
		Timezone: "Europe/London",
		Consents: []*arbiterv1.Consent{
			{Channel: arbiterv1.Channel_CHANNEL_EMAIL, Purpose: arbiterv1.Purpose_PURPOSE_COLLECTIONS, Granted: true},
		},
		PreferredChannels: []arbiterv1.Channel{arbiterv1.Channel_CHANNEL_EMAIL},
	}
	ev := &arbiterv1.Event{Id: fmt.Sprintf("fault-ev-%d", n), Type: arbiterv1.EventType_EVENT_TYPE_INVOICE_OVERDUE, Source: "billing"}
	if n%2 == 0 {
		ev.Type = arbiterv1.EventType_EVENT_TYPE_PAYMENT_FAILED
		ev.Payment = &arbiterv1.PaymentFailure{
			DeclineCode: "51", Network: arbiterv1.CardNetwork_CARD_NETWORK_VISA, AmountMinor: 1999,
			Currency: "GBP", Acquirer: "acq-a", CardRef: "tok_fault", Initiator: arbiterv1.Initiator_INITIATOR_MERCHANT,
			MerchantId: "m-1",
		}
	}
	return &arbiterv1.DecideRequest{Event: ev, Customer: cust}
}

// decide calls Decide with the fault deadline and returns the answer and how long it took.
func (e *faultEnv) decide(req *arbiterv1.DecideRequest) (*arbiterv1.DecideResponse, time.Duration, error) {
	ctx, cancel := context.WithTimeout(e.t.Context(), faultDeadline)
	defer cancel()
	start := time.Now()
	resp, err := e.dc.Decide(ctx, req)
	return resp, time.Since(start), err
}

// expectMostlyHealthy checks, after a recovery, that at least 9 of 10 decisions are answered
// from the store (on a busy 2-core machine one call can exceed the store budget).
func (e *faultEnv) expectMostlyHealthy() {
	e.t.Helper()
	bad := 0
	for range 10 {
		resp, _, err := e.decide(e.request())
		if err != nil || resp.GetDegraded() {
			bad++
		}
	}
	if bad > 1 {
		e.t.Errorf("%d of 10 decisions after the recovery degraded, want at most 1", bad)
	}
}

// expectDegraded sends n decisions from 4 goroutines during a fault and checks every answer:
// OK before the caller's deadline, degraded, STORE_UNAVAILABLE, and neither MESSAGE nor RETRY.
// It returns the answer times.
func (e *faultEnv) expectDegraded(n int) []time.Duration {
	e.t.Helper()
	var (
		mu    sync.Mutex
		times []time.Duration
		wg    sync.WaitGroup
		next  atomic.Int32
	)
	for range 4 {
		wg.Go(func() {
			for next.Add(1) <= int32(n) {
				req := e.request()
				resp, took, err := e.decide(req)
				mu.Lock()
				times = append(times, took)
				mu.Unlock()
				if err != nil {
					e.t.Errorf("Decide(%s) during the fault = %v after %v, want an answer before the %v deadline", req.GetEvent().GetId(), err, took, faultDeadline)
					continue
				}
				if !resp.GetDegraded() || !faultHasReason(resp, ReasonStoreUnavailable) {
					e.t.Errorf("Decide(%s) during the fault = degraded %v reasons %v, want degraded with %s", req.GetEvent().GetId(), resp.GetDegraded(), faultReasonCodes(resp), ReasonStoreUnavailable)
				}
				if a := resp.GetAction(); a == arbiterv1.Action_ACTION_MESSAGE || a == arbiterv1.Action_ACTION_RETRY {
					e.t.Errorf("Decide(%s) during the fault = %v, want a fail-closed action (no MESSAGE, no RETRY)", req.GetEvent().GetId(), a)
				}
			}
		})
	}
	wg.Wait()
	slices.Sort(times)
	return times
}

// waitRecovery polls Decide until an answer is not degraded and returns how long that took
// from the end of the fault.
func (e *faultEnv) waitRecovery(healed time.Time) time.Duration {
	e.t.Helper()
	for {
		resp, _, err := e.decide(e.request())
		if err == nil && !resp.GetDegraded() {
			return time.Since(healed)
		}
		if time.Since(healed) > faultRecovery {
			e.t.Fatalf("still degraded %v after the fault ended (last: %v, %v), want recovery within %v", time.Since(healed), resp.GetReasons(), err, faultRecovery)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// resources is a snapshot of what a fault must not make grow.
type resources struct {
	goroutines, clientConns, redisClients int
	heap                                  uint64
}

func (e *faultEnv) resources() resources {
	e.t.Helper()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	direct := redis.NewClient(&redis.Options{Addr: e.redis})
	defer direct.Close()
	list, err := direct.ClientList(e.t.Context()).Result()
	if err != nil {
		e.t.Fatalf("CLIENT LIST: %v", err)
	}
	clients := 0
	for _, c := range list {
		if c == '\n' {
			clients++
		}
	}
	return resources{
		goroutines:   len(ownGoroutines()),
		clientConns:  int(e.rdb.PoolStats().TotalConns),
		redisClients: clients - 1, // less the CLIENT LIST connection itself
		heap:         ms.HeapAlloc,
	}
}

// ownGoroutines returns the stacks of the process's goroutines, less the in-process Toxiproxy's
// (about five per proxied connection, which the connection pool bounds).
func ownGoroutines() []string {
	buf := make([]byte, 4<<20)
	buf = buf[:runtime.Stack(buf, true)]
	var own []string
	for g := range strings.SplitSeq(string(buf), "\n\n") {
		if !strings.Contains(g, "Shopify/toxiproxy") {
			own = append(own, g)
		}
	}
	return own
}

// checkBounded compares resources after a fault and its recovery with the baseline.
func (e *faultEnv) checkBounded(base resources) {
	e.t.Helper()
	// Connections and goroutines of broken links take a moment to be reaped. The slack covers
	// the test's own helpers (each redis-server started adds its process-wait goroutines).
	// Goroutines are counted without the in-process Toxiproxy's (see ownGoroutines); the
	// connections they serve are checked against the pool size below.
	var now resources
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		now = e.resources()
		if now.goroutines <= base.goroutines+20 || time.Now().After(deadline) {
			break
		}
	}
	// Four callers at a time never need more connections than this, whatever the pool's size
	// (64): a fault that made the store dial without bound would pass it.
	const poolSize = 20
	if now.goroutines > base.goroutines+20 {
		e.t.Logf("goroutines:\n%s", strings.Join(ownGoroutines(), "\n\n"))
		e.t.Errorf("goroutines after the fault = %d, want at most %d (baseline %d + 20)", now.goroutines, base.goroutines+20, base.goroutines)
	}
	if now.clientConns > poolSize {
		e.t.Errorf("client pool connections after the fault = %d, want at most the pool size %d", now.clientConns, poolSize)
	}
	if now.redisClients > poolSize+2 {
		e.t.Errorf("redis-server clients after the fault = %d, want at most %d", now.redisClients, poolSize+2)
	}
	if now.heap > base.heap+32<<20 {
		e.t.Errorf("heap after the fault = %d MiB, want at most 32 MiB above the baseline %d MiB", now.heap>>20, base.heap>>20)
	}
	e.t.Logf("after recovery: %d goroutines (baseline %d), %d pooled connections, %d redis-server clients, heap %d MiB (baseline %d MiB)",
		now.goroutines, base.goroutines, now.clientConns, now.redisClients, now.heap>>20, base.heap>>20)
}

func faultHasReason(resp *arbiterv1.DecideResponse, code string) bool {
	return slices.Contains(faultReasonCodes(resp), code)
}

func faultReasonCodes(resp *arbiterv1.DecideResponse) []string {
	var codes []string
	for _, r := range resp.GetReasons() {
		codes = append(codes, r.GetCode())
	}
	return codes
}

func faultQuantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(float64(len(sorted))*q))]
}

// TestFaults runs Arbiter on a real redis-server behind Toxiproxy and injects one fault after
// another. During each, every Decide answers before the caller's deadline, degraded with
// STORE_UNAVAILABLE and a fail-closed action; afterwards it recovers by itself within seconds,
// and goroutines, connections and memory stay bounded.
func TestFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server and injects faults for several seconds")
	}
	e, _ := newFaultEnv(t)
	e.expectMostlyHealthy() // warm the connection pool
	base := e.resources()

	faults := []struct {
		name  string
		start func()
		end   func()
	}{
		{"latency beyond the budget", func() { e.proxy.Latency(200 * time.Millisecond) }, e.proxy.Heal},
		{"stalled connections", e.proxy.Stall, e.proxy.Heal},
		{"connections reset", e.proxy.ResetPeer, e.proxy.Heal},
		{"redis down", e.proxy.Down, e.proxy.Up},
		{"redis paused", func() {
			direct := redis.NewClient(&redis.Options{Addr: e.redis})
			defer direct.Close()
			if err := direct.Do(t.Context(), "CLIENT", "PAUSE", 1500, "ALL").Err(); err != nil {
				t.Fatalf("CLIENT PAUSE: %v", err)
			}
		}, func() {
			direct := redis.NewClient(&redis.Options{Addr: e.redis})
			defer direct.Close()
			// CLIENT UNPAUSE is itself allowed during a pause.
			if err := direct.Do(t.Context(), "CLIENT", "UNPAUSE").Err(); err != nil {
				t.Fatalf("CLIENT UNPAUSE: %v", err)
			}
		}},
		{"redis restarted empty", e.proxy.Down, func() {
			// A new redis-server: no data, no scripts loaded.
			e.redis = redistest.Start(t)
			e.proxy.Retarget(e.redis)
		}},
	}
	for _, f := range faults {
		t.Run(f.name, func(t *testing.T) {
			e.t = t
			f.start()
			times := e.expectDegraded(40)
			during := e.breakers.State("")
			// The breaker, not the budget, answers most calls during the fault: each call that
			// waited for Redis costs the whole budget, an open breaker costs microseconds.
			if during == breaker.Closed {
				t.Errorf("breaker during the fault = %v, want open or half-open", during)
			}
			if p50 := faultQuantile(times, 0.5); p50 >= faultBudget/2 {
				t.Errorf("median answer time during the fault = %v, want under %v (an open breaker answers without waiting for Redis)", p50, faultBudget/2)
			}
			f.end()
			healed := time.Now()
			rec := e.waitRecovery(healed)
			e.expectMostlyHealthy()
			t.Logf("answer time during the fault: p50 %v, p99 %v, max %v; breaker %v; recovered %v after the fault ended",
				faultQuantile(times, 0.5), faultQuantile(times, 0.99), faultQuantile(times, 1), during, rec.Round(time.Millisecond))
			e.checkBounded(base)
		})
	}
}

// TestFaultScriptCacheFlushed checks that losing Redis's script cache (SCRIPT FLUSH, as after
// a restart or failover) is repaired by itself: the store sends its scripts again.
func TestFaultScriptCacheFlushed(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server")
	}
	e, _ := newFaultEnv(t)
	e.expectMostlyHealthy()
	direct := redis.NewClient(&redis.Options{Addr: e.redis})
	defer direct.Close()
	if err := direct.ScriptFlush(t.Context()).Err(); err != nil {
		t.Fatal(err)
	}
	// The first call after the flush gets NOSCRIPT and sends the script again (slower, which
	// under the race detector can exceed the store budget); then all is as before.
	e.waitRecovery(time.Now())
	e.expectMostlyHealthy()
}

// TestFaultLostCommitReply checks that a commit whose reply is lost is never answered as
// another decision: the server reads the event again and answers with the committed decision
// (issue 18: a commit that outlived the store budget used to be applied, reserving a message,
// and answered as a degraded SUPPRESS, so the message was never sent). A retry with the same
// event id replays it, and the event has one record.
func TestFaultLostCommitReply(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server")
	}
	e, fs := newFaultEnv(t)
	req := e.overdue() // MESSAGE when healthy
	fs.loseReplies.Store(1)
	first, _, err := e.decide(req)
	// Asked again if the machine was too busy for the store budget (a degraded answer before
	// the commit commits nothing).
	for deadline := time.Now().Add(faultRecovery); err == nil && first.GetDegraded() && time.Now().Before(deadline); {
		first, _, err = e.decide(req)
	}
	if err != nil {
		t.Fatalf("Decide(%s) with the commit reply lost = %v", req.GetEvent().GetId(), err)
	}
	if first.GetDegraded() || first.GetAction() != arbiterv1.Action_ACTION_MESSAGE {
		t.Errorf("Decide(%s) with the commit reply lost = %v degraded %v reasons %v, want the committed MESSAGE", req.GetEvent().GetId(), first.GetAction(), first.GetDegraded(), faultReasonCodes(first))
	}
	again, _, err := e.decide(req)
	if err != nil {
		t.Fatalf("retried Decide(%s) = %v", req.GetEvent().GetId(), err)
	}
	if !again.GetReplayed() || again.GetDecisionId() != first.GetDecisionId() {
		t.Errorf("retried Decide(%s) = %s replayed %v, want %s replayed", req.GetEvent().GetId(), again.GetDecisionId(), again.GetReplayed(), first.GetDecisionId())
	}
	if _, err := e.spool.Drain(t.Context(), e.store); err != nil {
		t.Fatalf("Drain() = %v", err)
	}
	raw, _, err := e.store.GetDecision(t.Context(), first.GetDecisionId())
	var rec arbiterv1.DecisionRecord
	if err == nil {
		err = proto.Unmarshal(raw, &rec)
	}
	if err != nil || rec.GetResponse().GetDegraded() {
		t.Errorf("GetDecision(%s) = degraded %v, %v; want the committed decision", first.GetDecisionId(), rec.GetResponse().GetDegraded(), err)
	}
	st, err := e.store.State(t.Context(), req.GetCustomer().GetId(), faultNow)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(st.Messages); n != 1 {
		t.Errorf("reserved messages after a lost reply and a retry = %d, want 1", n)
	}

	// The same at the store: a commit re-sent by the client (go-redis retries a command whose
	// reply timed out) applies nothing the second time.
	req = e.overdue()
	fs.loseReplies.Store(1)
	// Until the commit ran (a call that degraded before it commits nothing).
	for deadline := time.Now().Add(faultRecovery); fs.loseReplies.Load() > 0; {
		if _, _, err := e.decide(req); err != nil || time.Now().After(deadline) {
			t.Fatalf("Decide(%s) with the reply to be lost = %v, or its commit never ran", req.GetEvent().GetId(), err)
		}
	}
	raw, _, err = e.store.GetDecision(t.Context(), faultDecisionIDOfEvent(t, e, req))
	if err != nil {
		t.Fatal(err)
	}
	c := &featurestore.Commit{
		CustomerID: req.GetCustomer().GetId(), EventID: req.GetEvent().GetId(),
		DecisionID: featurestore.NewDecisionID(req.GetCustomer().GetId(), faultNow), Now: faultNow,
		Record:  raw,
		Effects: decision.Effects{Message: &decision.SentMessage{DecisionID: "re-sent", Channel: decision.ChannelEmail, Purpose: decision.PurposeCollections, At: faultNow}},
	}
	got, err := e.store.Commit(t.Context(), c)
	if err != nil || got.Record == nil {
		t.Errorf("Commit(event already committed) = record %d bytes, %v; want the stored record, nil", len(got.Record), err)
	}
	st, err = e.store.State(t.Context(), req.GetCustomer().GetId(), faultNow)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(st.Messages); n > 1 {
		t.Errorf("reserved messages after a re-sent commit = %d, want at most 1", n)
	}
}

// faultDecisionIDOfEvent finds the decision stored for req's event by replaying it.
func faultDecisionIDOfEvent(t *testing.T, e *faultEnv, req *arbiterv1.DecideRequest) string {
	t.Helper()
	resp, _, err := e.decide(req)
	for deadline := time.Now().Add(faultRecovery); err == nil && resp.GetDegraded() && time.Now().Before(deadline); {
		resp, _, err = e.decide(req)
	}
	if err != nil || !resp.GetReplayed() {
		t.Fatalf("Decide(%s) again = replayed %v, %v; want a replay", req.GetEvent().GetId(), resp.GetReplayed(), err)
	}
	return resp.GetDecisionId()
}

// TestFaultShedding checks load shedding end to end: with the store slowed down and more
// concurrent calls than the limit, the excess gets RESOURCE_EXHAUSTED at once and the rest
// an answer.
func TestFaultShedding(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server")
	}
	shed, err := guard.NewShedder(4)
	if err != nil {
		t.Fatal(err)
	}
	e, _ := newFaultEnv(t, grpc.ChainUnaryInterceptor(shed.UnaryServerInterceptor()))
	e.proxy.Latency(20 * time.Millisecond) // under the budget: answers are slow but not degraded
	var (
		wg               sync.WaitGroup
		ok, shedN, other atomic.Int32
		slowestShed      atomic.Int64
	)
	for range 16 {
		wg.Go(func() {
			_, took, err := e.decide(e.request())
			switch status.Code(err) {
			case codes.OK:
				ok.Add(1)
			case codes.ResourceExhausted:
				shedN.Add(1)
				for {
					cur := slowestShed.Load()
					if int64(took) <= cur || slowestShed.CompareAndSwap(cur, int64(took)) {
						break
					}
				}
			default:
				other.Add(1)
				t.Errorf("Decide under overload = %v, want OK or RESOURCE_EXHAUSTED", err)
			}
		})
	}
	wg.Wait()
	if shedN.Load() == 0 || ok.Load() == 0 {
		t.Errorf("16 concurrent calls with limit 4: %d OK, %d shed; want some of each", ok.Load(), shedN.Load())
	}
	t.Logf("16 concurrent calls, limit 4: %d answered, %d shed (slowest refusal %v)", ok.Load(), shedN.Load(), time.Duration(slowestShed.Load()))
}

// BenchmarkDecideStoreDown is what a Decide costs while Redis is down and the breaker is open:
// the whole pipeline without gRPC, answering degraded, its record fsynced to the audit spool.
// One caller at a time: each Decide waits for its own fsync.
func BenchmarkDecideStoreDown(b *testing.B) {
	srv, req := storeDownServer(b)
	ctx := b.Context()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := srv.Decide(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDecideStoreDownParallel is BenchmarkDecideStoreDown with 64 callers per CPU at once:
// the spool writes their records with one fsync per group, so ns/op is the cost per decision
// at that concurrency.
func BenchmarkDecideStoreDownParallel(b *testing.B) {
	srv, req := storeDownServer(b)
	ctx := b.Context()
	b.ReportAllocs()
	b.SetParallelism(64)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := srv.Decide(ctx, req); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// storeDownServer returns a server whose Redis is down and whose breaker is open, and a request.
func storeDownServer(b *testing.B) (*Server, *arbiterv1.DecideRequest) {
	br, err := breaker.NewSet(breaker.WithThreshold(1), breaker.WithCoolDown(time.Hour))
	if err != nil {
		b.Fatal(err)
	}
	const addr = "127.0.0.1:1" // nothing listens on port 1
	rdb, err := featurestore.Dial(addr)
	if err != nil {
		b.Fatal(err)
	}
	store := featurestore.NewRedis(rdb)
	b.Cleanup(func() { store.Close() })
	srv := New(store, rollout.NewHolder(decision.DefaultPolicy()),
		WithClock(func() time.Time { return faultNow }), WithBreakers(br), WithAuditSpool(openTestSpool(b)))
	e := &faultEnv{}
	req := e.request()
	if resp, err := srv.Decide(b.Context(), req); err != nil || !resp.GetDegraded() {
		b.Fatalf("Decide with Redis down = degraded %v, %v; want degraded", resp.GetDegraded(), err)
	}
	if br.State(addr) != breaker.Open {
		b.Fatalf("breaker of %s = %v after a failure, want open", addr, br.State(addr))
	}
	return srv, req
}
