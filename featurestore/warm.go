package featurestore

import (
	"context"
	"errors"
	"sync"

	"github.com/redis/go-redis/v9"
)

// storeScripts are every script the store runs; Warm loads them all.
var storeScripts = []*redis.Script{commitScript, getDecisionScript, outcomeScript, appendScript, rebuildScript, confirmScript}

// Warm readies the store for its first decisions, so that none of them pays for a cold start:
// it loads every script into every master (a script's first run otherwise sends its whole
// source and compiles it) and opens the connections the pool keeps idle. A server calls it
// before it reports ready; it is safe to call again, and after a Redis restart.
func (r *Redis) Warm(ctx context.Context) error {
	if c := r.shards.cluster; c != nil {
		err := c.ForEachMaster(ctx, warmNode)
		if err != nil {
			return storeErr("warm", "", err)
		}
		r.shards.routed.Store(true) // ForEachMaster loaded the slot map
		return nil
	}
	c, ok := r.client.(*redis.Client)
	if !ok {
		return nil
	}
	if err := warmNode(ctx, c); err != nil {
		return storeErr("warm", "", err)
	}
	return nil
}

// warmNode loads the scripts into one node and opens its pool's idle connections, each with
// a PING of its own.
func warmNode(ctx context.Context, c *redis.Client) error {
	for _, s := range storeScripts {
		if err := s.Load(ctx, c).Err(); err != nil {
			return err
		}
	}
	n := max(c.Options().MinIdleConns, 1)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = c.Ping(ctx).Err() })
	}
	wg.Wait()
	return errors.Join(errs...)
}
