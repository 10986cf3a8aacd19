package featurestore_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/arbiter-dev/arbiter/featurestore"
	"github.com/arbiter-dev/arbiter/featurestore/redistest"
)

// TestRedisMemoryPerCustomer measures the hot state Redis keeps per active customer (for
// sizing, docs/operations.md): 1,000 customers with six features each, five decisions each
// within the state window, each reserving a message and appending a ledger entry; the sum of
// MEMORY USAGE over each customer's keys (features, messages, ledger, recent decisions,
// version; not the per-decision event ids and records), divided by the customers.
func TestRedisMemoryPerCustomer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts redis-server")
	}
	addr := redistest.Start(t)
	raw := redis.NewClient(&redis.Options{Addr: addr})
	defer raw.Close()
	s := featurestore.NewRedis(raw)
	ctx := context.Background()
	const customers, each = 1000, 5
	if err := s.PutFeaturesBatch(ctx, featurestore.BenchFeatures(customers)); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for i := range customers * each {
		cust := "cust-" + strconv.Itoa(i%customers)
		ev := "ev-" + strconv.Itoa(i)
		at := now.Add(time.Duration(i) * time.Millisecond)
		l, err := s.Load(ctx, cust, ev, at)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Commit(ctx, featurestore.BenchCommit(cust, ev, at, l.Version)); err != nil {
			t.Fatal(err)
		}
	}
	var total int64
	iter := raw.Scan(ctx, 0, "{b:*}:c:*", 1000).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		if strings.Contains(k, ":e:") {
			continue // an event id: the decision's, not the customer's
		}
		n, err := raw.MemoryUsage(ctx, k).Result()
		if err != nil {
			t.Fatal(err)
		}
		total += n
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	per := total / customers
	t.Logf("Redis keeps %d bytes of hot state per active customer (%d decisions each in the window)", per, each)
	if per == 0 || per > 4096 {
		t.Errorf("hot state per customer = %d bytes, want between 1 and 4096: the measurement or the layout is off", per)
	}
}
