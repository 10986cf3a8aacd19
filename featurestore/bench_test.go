package featurestore_test

import (
	"context"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/arbiter-dev/arbiter/decision"
	"github.com/arbiter-dev/arbiter/featurestore"
	"github.com/arbiter-dev/arbiter/featurestore/redistest"
)

type benchStore interface {
	Load(ctx context.Context, customerID, eventID string, now time.Time) (featurestore.Loaded, error)
	Commit(ctx context.Context, c *featurestore.Commit) (featurestore.Committed, error)
	PutFeaturesBatch(ctx context.Context, items []featurestore.FeatureRecord) error
}

func benchRedis(b *testing.B) *featurestore.Redis {
	s, _ := benchRedisAddr(b)
	return s
}

func benchRedisAddr(b *testing.B) (*featurestore.Redis, string) {
	addr := redistest.Start(b)
	client, err := featurestore.Dial("redis://" + addr)
	if err != nil {
		b.Fatal(err)
	}
	s := featurestore.NewRedis(client)
	b.Cleanup(func() { s.Close() })
	return s, addr
}

// cpuTimes returns the CPU time used so far by this process and by the redis-server at addr.
// On a shared machine wall-clock throughput says little; CPU per item says what an idle
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

func seedFeatures(n int) []featurestore.FeatureRecord {
	items := make([]featurestore.FeatureRecord, n)
	for i := range items {
		items[i] = featurestore.FeatureRecord{CustomerID: "cust-" + strconv.Itoa(i), Features: map[string]any{
			"opted_out": i%50 == 0, "fraud_hold": false, "vulnerable": i%97 == 0, "hardship": false,
			"days_past_due": float64(i % 40), "risk_score": 0.25, "timezone": "Europe/London", "segment": "retail",
		}}
	}
	return items
}

// benchLoadCommit is the store's part of one Decide: Load, then a Commit that reserves a
// message under three caps and appends a ledger entry under a retry limit.
func benchLoadCommit(b *testing.B, s benchStore, raw *redis.Client) {
	ctx := context.Background()
	const customers = 1000
	if err := s.PutFeaturesBatch(ctx, seedFeatures(customers)); err != nil {
		b.Fatal(err)
	}
	ids := make([]string, customers)
	for i := range ids {
		ids[i] = "cust-" + strconv.Itoa(i)
	}
	now := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	service := decision.PurposesOf(decision.PurposeService, decision.PurposeCollections)
	b.ReportAllocs()
	var self0, server0 time.Duration
	if raw != nil {
		self0, server0 = cpuTimes(b, raw)
	}
	i := 0
	for b.Loop() {
		cust := ids[i%customers]
		event := "ev-" + strconv.Itoa(i)
		t := now.Add(time.Duration(i) * time.Millisecond)
		i++
		l, err := s.Load(ctx, cust, event, t)
		if err != nil {
			b.Fatal(err)
		}
		id := featurestore.NewDecisionID(cust, t)
		c := &featurestore.Commit{
			CustomerID: cust, EventID: event, DecisionID: id, Now: t, Record: make([]byte, 600), Version: l.Version,
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
		if got, err := s.Commit(ctx, c); err != nil || got.Conflict != "" {
			b.Fatalf("Commit() = %+v, %v", got, err)
		}
	}
	if raw != nil {
		self1, server1 := cpuTimes(b, raw)
		b.ReportMetric(float64((self1-self0).Microseconds())/float64(i), "client-cpu-µs/op")
		b.ReportMetric(float64((server1-server0).Microseconds())/float64(i), "redis-cpu-µs/op")
		if stats, err := raw.Info(ctx, "commandstats").Result(); err == nil {
			for _, line := range strings.Split(stats, "\r\n") {
				if strings.Contains(line, "evalsha") || strings.Contains(line, "cmdstat_exec") {
					b.Log(line)
				}
			}
		}
	}
}

func BenchmarkRedisLoadCommit(b *testing.B) {
	s, addr := benchRedisAddr(b)
	raw := redis.NewClient(&redis.Options{Addr: addr})
	defer raw.Close()
	benchLoadCommit(b, s, raw)
}

func BenchmarkMemoryLoadCommit(b *testing.B) { benchLoadCommit(b, featurestore.NewMemory(), nil) }

// BenchmarkRedisPutFeaturesBatch measures seeding: customers/s into a local Redis (target:
// 50,000/s).
func BenchmarkRedisPutFeaturesBatch(b *testing.B) {
	const batch = 10000
	s, addr := benchRedisAddr(b)
	raw := redis.NewClient(&redis.Options{Addr: addr})
	defer raw.Close()
	ctx := context.Background()
	items := seedFeatures(batch)
	b.ReportAllocs()
	self0, server0 := cpuTimes(b, raw)
	start := time.Now()
	n := 0
	for b.Loop() {
		if err := s.PutFeaturesBatch(ctx, items); err != nil {
			b.Fatal(err)
		}
		n += batch
	}
	b.ReportMetric(float64(n)/time.Since(start).Seconds(), "customers/s")
	self1, server1 := cpuTimes(b, raw)
	b.ReportMetric(float64((self1-self0).Microseconds())/float64(n), "client-cpu-µs/customer")
	b.ReportMetric(float64((server1-server0).Microseconds())/float64(n), "redis-cpu-µs/customer")
}
