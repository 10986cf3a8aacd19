package featurestore_test

import (
	"context"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

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

// benchLoadCommit is the store's part of one Decide: Load, then a Commit that reserves a
// message under three caps and appends a ledger entry under a retry limit.
func benchLoadCommit(b *testing.B, s benchStore, raw *redis.Client) {
	ctx := context.Background()
	const customers = 1000
	if err := s.PutFeaturesBatch(ctx, featurestore.BenchFeatures(customers)); err != nil {
		b.Fatal(err)
	}
	ids := make([]string, customers)
	for i := range ids {
		ids[i] = "cust-" + strconv.Itoa(i)
	}
	now := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	b.ReportAllocs()
	var self0, server0 time.Duration
	if raw != nil {
		self0, server0 = featurestore.CPUTimes(b, raw)
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
		c := featurestore.BenchCommit(cust, event, t, l.Version)
		if got, err := s.Commit(ctx, c); err != nil || got.Conflict != "" {
			b.Fatalf("Commit() = %+v, %v", got, err)
		}
	}
	if raw != nil {
		self1, server1 := featurestore.CPUTimes(b, raw)
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

// BenchmarkRedisLoadCommitParallel is BenchmarkRedisLoadCommit from 32 goroutines at once:
// the same customers and history per b.N, but with many calls in flight, Redis and the client
// serve several per wake-up.
func BenchmarkRedisLoadCommitParallel(b *testing.B) {
	s, addr := benchRedisAddr(b)
	raw := redis.NewClient(&redis.Options{Addr: addr})
	defer raw.Close()
	ctx := context.Background()
	const customers = 1000 // as in benchLoadCommit
	if err := s.PutFeaturesBatch(ctx, featurestore.BenchFeatures(customers)); err != nil {
		b.Fatal(err)
	}
	now := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	var next atomic.Int64
	b.SetParallelism(16)
	b.ReportAllocs()
	self0, server0 := featurestore.CPUTimes(b, raw)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := next.Add(1)
			cust := "cust-" + strconv.Itoa(int(i%customers))
			event := "ev-" + strconv.Itoa(int(i))
			t := now.Add(time.Duration(i) * time.Millisecond)
			l, err := s.Load(ctx, cust, event, t)
			if err != nil {
				b.Error(err)
				return
			}
			if got, err := s.Commit(ctx, featurestore.BenchCommit(cust, event, t, l.Version)); err != nil || got.Conflict != "" || got.Record != nil {
				b.Errorf("Commit() = %+v, %v, want applied", got, err)
				return
			}
		}
	})
	self1, server1 := featurestore.CPUTimes(b, raw)
	n := float64(next.Load())
	b.ReportMetric(float64((self1-self0).Microseconds())/n, "client-cpu-µs/op")
	b.ReportMetric(float64((server1-server0).Microseconds())/n, "redis-cpu-µs/op")
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
	items := featurestore.BenchFeatures(batch)
	b.ReportAllocs()
	self0, server0 := featurestore.CPUTimes(b, raw)
	start := time.Now()
	n := 0
	for b.Loop() {
		if err := s.PutFeaturesBatch(ctx, items); err != nil {
			b.Fatal(err)
		}
		n += batch
	}
	b.ReportMetric(float64(n)/time.Since(start).Seconds(), "customers/s")
	self1, server1 := featurestore.CPUTimes(b, raw)
	b.ReportMetric(float64((self1-self0).Microseconds())/float64(n), "client-cpu-µs/customer")
	b.ReportMetric(float64((server1-server0).Microseconds())/float64(n), "redis-cpu-µs/customer")
}

// BenchmarkRedisRoundTripFloor is BenchmarkRedisLoadCommitParallel's shape with the work taken
// out: per op, the same two round trips from the same client (a MULTI/EXEC of one GET, then
// an EVALSHA of a script that returns at once), 32 in flight. What it costs Redis and the
// client is the floor of a Decide that reads its state and commits its effects in two round
// trips, whatever its commands; the difference to BenchmarkRedisLoadCommitParallel is what
// the commands themselves cost (docs/perf-log/2026-12.md, "the design's floor").
func BenchmarkRedisRoundTripFloor(b *testing.B) {
	addr := redistest.Start(b)
	client, err := featurestore.Dial("redis://" + addr)
	if err != nil {
		b.Fatal(err)
	}
	defer client.Close()
	raw := redis.NewClient(&redis.Options{Addr: addr})
	defer raw.Close()
	ctx := context.Background()
	noop := redis.NewScript(`return {0}`)
	if err := noop.Load(ctx, client).Err(); err != nil {
		b.Fatal(err)
	}
	var next atomic.Int64
	b.SetParallelism(16)
	b.ReportAllocs()
	self0, server0 := featurestore.CPUTimes(b, raw)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			k := "{c" + strconv.Itoa(int(next.Add(1)%1000)) + "}:v"
			if _, err := client.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.Get(ctx, k)
				return nil
			}); err != nil && err != redis.Nil {
				b.Error(err)
				return
			}
			if err := noop.EvalSha(ctx, client, []string{k}).Err(); err != nil {
				b.Error(err)
				return
			}
		}
	})
	self1, server1 := featurestore.CPUTimes(b, raw)
	n := float64(next.Load())
	b.ReportMetric(float64((self1-self0).Microseconds())/n, "client-cpu-µs/op")
	b.ReportMetric(float64((server1-server0).Microseconds())/n, "redis-cpu-µs/op")
}
