package featurestore_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/arbiter-dev/arbiter/decision"
	"github.com/arbiter-dev/arbiter/featurestore"
	"github.com/arbiter-dev/arbiter/featurestore/redistest"
	"github.com/arbiter-dev/arbiter/featurestore/storetest"
)

// redisStore lets the conformance suite plant malformed data in Redis, a single node or a
// cluster.
type redisStore struct {
	*featurestore.Redis
	raw redis.UniversalClient
}

var _ storetest.Corrupter = redisStore{}

func (r redisStore) Corrupt(ctx context.Context, customerID string, c storetest.Corruption, at time.Time) error {
	w, err := corruption(customerID, c, at)
	if err != nil {
		return err
	}
	if w.replace {
		if err := r.raw.Del(ctx, w.key).Err(); err != nil {
			return err
		}
	}
	switch v := w.value.(type) {
	case string:
		return r.raw.Set(ctx, w.key, v, 0).Err()
	case map[string]string:
		return r.raw.HSet(ctx, w.key, v).Err()
	case map[string]float64:
		for m, s := range v {
			if err := r.raw.ZAdd(ctx, w.key, redis.Z{Score: s, Member: m}).Err(); err != nil {
				return err
			}
		}
		return nil
	case []string:
		return r.raw.RPush(ctx, w.key, v).Err()
	}
	return errors.New("unknown raw value")
}

// openRedis starts a redis-server for the test and returns a function that opens an empty
// store on it, through a client made by Dial (RESP2) and any query options of its URL.
func openRedis(t *testing.T, query ...string) func(t *testing.T) storetest.Store {
	addr := redistest.Start(t)
	raw := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { raw.Close() })
	return func(t *testing.T) storetest.Store {
		if err := raw.FlushAll(context.Background()).Err(); err != nil {
			t.Fatalf("FLUSHALL: %v", err)
		}
		url := "redis://" + addr
		if len(query) > 0 {
			url += "?" + strings.Join(query, "&")
		}
		client, err := featurestore.Dial(url)
		if err != nil {
			t.Fatalf("Dial() = %v", err)
		}
		s := featurestore.NewRedis(client)
		t.Cleanup(func() { s.Close() })
		return redisStore{Redis: s, raw: raw}
	}
}

func TestRedisConformance(t *testing.T) {
	storetest.Run(t, openRedis(t))
}

// TestRedisConformanceRESP3: NewRedis accepts any client, and RESP3 shapes replies
// differently (maps, score pairs).
func TestRedisConformanceRESP3(t *testing.T) {
	storetest.Run(t, openRedis(t, "protocol=3"))
}

// TestRedisCurrentVersionSkipsChecks: a commit made on the current version does not re-read
// the customer's messages; the engine's checks on that same state stand. A check that the
// stored messages would fail shows it: on the current version it applies, on a version that
// is not the current one it conflicts.
func TestRedisCurrentVersionSkipsChecks(t *testing.T) {
	s := openRedis(t)(t)
	ctx := context.Background()
	now := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	const cust = "cust-fast"
	msg := func(ev string, limit int) *featurestore.Commit {
		id := featurestore.NewDecisionID(cust, now)
		return &featurestore.Commit{
			CustomerID: cust, EventID: ev, DecisionID: id, Now: now, Record: []byte(ev),
			Summary: decision.DecisionSummary{DecisionID: id, EventID: ev, EventType: decision.EventInvoiceOverdue,
				Action: decision.ActionMessage, DecidedAt: now},
			Effects: decision.Effects{
				Message: &decision.SentMessage{DecisionID: id, Channel: decision.ChannelEmail, Purpose: decision.PurposeService, At: now},
				CapChecks: []decision.CapCheck{{Name: "cap", Channel: decision.ChannelEmail,
					Purposes: decision.PurposesOf(decision.PurposeService), Since: now.Add(-time.Hour), Limit: limit}},
			},
		}
	}
	if got, err := s.Commit(ctx, msg("seed", 10)); err != nil || got.Conflict != "" {
		t.Fatalf("Commit(seed) = %+v, %v", got, err)
	}
	l, err := s.Load(ctx, cust, "stale", now)
	if err != nil || l.Version == "" {
		t.Fatalf("Load() = version %q, %v; want a version after a message", l.Version, err)
	}
	stale := msg("stale", 1)
	stale.Version = "not-the-version"
	if got, err := s.Commit(ctx, stale); err != nil || got.Conflict != "cap" {
		t.Errorf("Commit(over the cap, other version) = %+v, %v; want Conflict cap", got, err)
	}
	current := msg("current", 1)
	current.Version = l.Version
	if got, err := s.Commit(ctx, current); err != nil || got.Conflict != "" {
		t.Errorf("Commit(current version) = %+v, %v; want applied without re-checking", got, err)
	}
	if l2, err := s.Load(ctx, cust, "next", now); err != nil || l2.Version == l.Version {
		t.Errorf("Load() after a message = version %q, %v; want a new version", l2.Version, err)
	}
}
