package featurestore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

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
// store on it.
func openRedis(t *testing.T) func(t *testing.T) storetest.Store {
	addr := redistest.Start(t)
	raw := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { raw.Close() })
	return func(t *testing.T) storetest.Store {
		if err := raw.FlushAll(context.Background()).Err(); err != nil {
			t.Fatalf("FLUSHALL: %v", err)
		}
		client, err := featurestore.Dial("redis://" + addr)
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
