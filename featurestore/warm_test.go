package featurestore_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/arbiter-dev/arbiter/decision"
	"github.com/arbiter-dev/arbiter/featurestore"
	"github.com/arbiter-dev/arbiter/featurestore/redistest"
)

// TestRedisWarm: after Warm, a fresh Redis holds every script and the pool its idle
// connections, so the first Commit runs by EVALSHA alone: Redis counts no EVAL (which a cold
// script costs: its source sent and compiled on a decision's time).
func TestRedisWarm(t *testing.T) {
	addr := redistest.Start(t)
	raw := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { raw.Close() })
	client, err := featurestore.Dial("redis://" + addr)
	if err != nil {
		t.Fatal(err)
	}
	s := featurestore.NewRedis(client)
	t.Cleanup(func() { s.Close() })
	ctx := context.Background()

	if err := s.Warm(ctx); err != nil {
		t.Fatalf("Warm() = %v", err)
	}
	if got, want := client.PoolStats().TotalConns, uint32(8); got < want {
		t.Errorf("connections after Warm = %d, want at least the %d kept idle", got, want)
	}
	if err := raw.ConfigResetStat(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	id := featurestore.NewDecisionID("cust-warm", now)
	c := &featurestore.Commit{CustomerID: "cust-warm", EventID: "ev-1", DecisionID: id, Now: now, Record: []byte("r"),
		Summary: decision.DecisionSummary{DecisionID: id, EventID: "ev-1", EventType: decision.EventInvoiceOverdue,
			Action: decision.ActionSuppress, DecidedAt: now}}
	if got, err := s.Commit(ctx, c); err != nil || got.Conflict != "" {
		t.Fatalf("Commit() = %+v, %v", got, err)
	}
	stats, err := raw.Info(ctx, "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stats, "cmdstat_evalsha:") {
		t.Fatalf("no EVALSHA after a Commit: the test measures nothing\n%s", stats)
	}
	if strings.Contains(stats, "cmdstat_eval:") {
		t.Errorf("the first Commit after Warm sent its script's source (EVAL):\n%s", stats)
	}
}
