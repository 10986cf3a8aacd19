package featurestore

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/arbiter-dev/arbiter/decision"
)

// cpuTimes returns the CPU time used so far by this process and by the redis-server behind
// raw. On a shared machine wall-clock throughput says little; CPU per item says what an idle
// machine would do.
func cpuTimes(b *testing.B, raw *redis.Client) (self, server time.Duration) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	info, err := raw.Info(context.Background(), "cpu").Result()
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(info, "\r\n") {
		k, v, _ := strings.Cut(line, ":")
		if k == "used_cpu_sys" || k == "used_cpu_user" {
			f, _ := strconv.ParseFloat(v, 64)
			server += time.Duration(f * float64(time.Second))
		}
	}
	return self, server
}

// benchFeatures are the features of n customers, cust-0 to cust-<n-1>.
func benchFeatures(n int) []FeatureRecord {
	items := make([]FeatureRecord, n)
	for i := range items {
		items[i] = FeatureRecord{CustomerID: "cust-" + strconv.Itoa(i), Features: map[string]any{
			"opted_out": i%50 == 0, "fraud_hold": false, "vulnerable": i%97 == 0, "hardship": false,
			"days_past_due": float64(i % 40), "risk_score": 0.25, "timezone": "Europe/London", "segment": "retail",
		}}
	}
	return items
}

// benchCommit is the Commit of a benchmark's decision, made on version: a message reserved
// under three caps and a ledger entry appended under a retry limit.
func benchCommit(cust, event string, t time.Time, version string) *Commit {
	id := NewDecisionID(cust, t)
	service := decision.PurposesOf(decision.PurposeService, decision.PurposeCollections)
	return &Commit{
		CustomerID: cust, EventID: event, DecisionID: id, Now: t, Record: make([]byte, 600), Version: version,
		Summary: decision.DecisionSummary{DecisionID: id, EventID: event, EventType: decision.EventPaymentFailed,
			Action: decision.ActionMessage, ReasonCodes: []string{"SOFT_DECLINE"}, DecidedAt: t},
		Effects: decision.Effects{
			Message: &decision.SentMessage{DecisionID: id, Channel: decision.ChannelEmail, Purpose: decision.PurposeService, At: t},
			CapChecks: []decision.CapCheck{
				{Name: "day", Channel: decision.ChannelEmail, Purposes: service, Since: t.Add(-24 * time.Hour), Limit: 1 << 20},
				{Name: "week", Purposes: service, Since: t.Add(-7 * 24 * time.Hour), Limit: 1 << 20},
				{Name: "month", Purposes: service, Since: t.Add(-30 * 24 * time.Hour), Limit: 1 << 20},
			},
			Ledger: []decision.LedgerEntry{{Kind: decision.LedgerDecline, EventID: event, CardRef: "tok-1", MerchantID: "m-1",
				AmountMinor: 1999, Currency: "GBP", Initiator: decision.InitiatorMerchant, Network: decision.NetworkVisa, At: t}},
			LedgerChecks: []decision.LedgerCheck{{Name: "visa", Kind: decision.LedgerDecline, CardRef: "tok-1",
				AnyAmount: true, Initiator: decision.InitiatorMerchant, Since: t.Add(-30 * 24 * time.Hour), Limit: 1 << 20}},
		},
	}
}

// BenchmarkRedisLoadCommitBatched is BenchmarkRedisLoadCommit's Load and Commit as they would
// cost if concurrent decisions shared round trips: each iteration sends the Loads of batch
// customers in one MULTI/EXEC and their Commits in one pipeline. Its figures are per decision.
// Against batch=1 it shows what coalescing round trips could save of Redis's and the client's
// CPU, and what it could not: the commands themselves (docs/perf-log/2026-12.md, "the
// throughput target's floor").
func BenchmarkRedisLoadCommitBatched(b *testing.B) {
	for _, batch := range []int{1, 8, 32} {
		b.Run("batch="+strconv.Itoa(batch), func(b *testing.B) { benchLoadCommitBatched(b, batch) })
	}
}

func benchLoadCommitBatched(b *testing.B, batch int) {
	ctx := context.Background()
	s, raw := newTestRedis(b)
	// The customers grow with the batch so that, for the same b.N, every variant's customers
	// carry the same history: a Load's cost grows with it.
	customers := 1024 * batch
	if err := s.PutFeaturesBatch(ctx, benchFeatures(customers)); err != nil {
		b.Fatal(err)
	}
	if err := commitScript.Load(ctx, s.client).Err(); err != nil {
		b.Fatal(err)
	}
	var (
		custs   = make([]string, batch)
		keys    = make([]customerKeys, batch)
		events  = make([]string, batch)
		loads   = make([]loadCmds, batch)
		commits = make([]*redis.Cmd, batch)
		now     = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
		n       int
	)
	b.ReportAllocs()
	self0, server0 := cpuTimes(b, raw)
	for b.Loop() {
		t := now.Add(time.Duration(n) * time.Millisecond)
		for j := range batch {
			custs[j] = "cust-" + strconv.Itoa((n+j)%customers)
			keys[j] = keysOf(custs[j])
			events[j] = key(keyEvent, keys[j].bucket, custs[j], "ev-"+strconv.Itoa(n+j))
		}
		if _, err := s.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
			for j := range batch {
				loads[j] = s.queueLoad(ctx, p, &keys[j], events[j], true, t)
			}
			return nil
		}); err != nil && !errors.Is(err, redis.Nil) {
			b.Fatal(err)
		}
		cs := make([]*Commit, batch)
		for j := range batch {
			l, err := s.loaded(ctx, "load", &keys[j], events[j], &loads[j], t, nil)
			if err != nil || l.Record != nil {
				b.Fatalf("Load() = %+v, %v", l, err)
			}
			cs[j] = benchCommit(custs[j], "ev-"+strconv.Itoa(n+j), t, l.Version)
		}
		if _, err := s.client.Pipelined(ctx, func(p redis.Pipeliner) error {
			for j, c := range cs {
				event, ks, args, err := s.commitArgs(c)
				if err != nil || event != events[j] {
					b.Fatalf("commitArgs() = %q, %v, want event %q", event, err, events[j])
				}
				commits[j] = commitScript.EvalSha(ctx, p, ks, args...)
			}
			return nil
		}); err != nil {
			b.Fatal(err)
		}
		for j, cmd := range commits {
			arr, status, err := reply("commit", events[j], cmd.Val())
			if err != nil {
				b.Fatal(err)
			}
			if got, err := committed(events[j], arr, status); err != nil || got.Conflict != "" || got.Record != nil {
				b.Fatalf("Commit() = %+v, %v, want applied", got, err)
			}
		}
		n += batch
	}
	self1, server1 := cpuTimes(b, raw)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(n), "ns/decision")
	b.ReportMetric(float64((self1-self0).Microseconds())/float64(n), "client-cpu-µs/decision")
	b.ReportMetric(float64((server1-server0).Microseconds())/float64(n), "redis-cpu-µs/decision")
}
